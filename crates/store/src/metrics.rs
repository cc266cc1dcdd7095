//! Metrics kept in the database, updated inside the transaction that records
//! the fact they count, so every runner process sharing the state sees the
//! same exact figures. `/metrics` renders them with gauges read from the
//! tables themselves (workers by state, the OTP queue).

use crate::db::{col, text, Db, StoreError};

/// Upper bounds (seconds) of the duration histograms' buckets.
pub const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Adds `by` to the counter `name{labels}`.
pub fn inc(db: &Db, name: &str, labels: &[(&str, &str)], by: i64) -> Result<(), StoreError> {
    db.exec(
        "INSERT INTO metric_counters (name, labels, value) VALUES (?, ?, ?)
         ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
        &[text(name), text(label_string(labels)), crate::db::int(by)],
    )?;
    Ok(())
}

/// Records one observation of `seconds` in the histogram `name{labels}`.
pub fn observe(db: &Db, name: &str, labels: &[(&str, &str)], seconds: f64) -> Result<(), StoreError> {
    let bucket = BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(BUCKETS.len()) as i64;
    db.exec(
        "INSERT INTO metric_histograms (name, labels, bucket, count, sum) VALUES (?, ?, ?, 1, ?)
         ON CONFLICT (name, labels, bucket) DO UPDATE SET count = count + 1, sum = sum + excluded.sum",
        &[text(name), text(label_string(labels)), crate::db::int(bucket), spin_sdk::sqlite3::Value::Real(seconds)],
    )?;
    Ok(())
}

/// The stored form of a label set: a JSON list of `[name, value]` pairs.
pub fn label_string(labels: &[(&str, &str)]) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "[]".to_string())
}

/// Reads a stored label set back.
pub fn parse_labels(stored: &str) -> Vec<(String, String)> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// A counter series.
pub struct Counter {
    /// Metric name.
    pub name: String,
    /// Labels, as stored (see [`parse_labels`]).
    pub labels: String,
    /// Value.
    pub value: i64,
}

/// A histogram series: per-bucket (non-cumulative) counts and the sum.
pub struct Histogram {
    /// Metric name.
    pub name: String,
    /// Labels, as stored (see [`parse_labels`]).
    pub labels: String,
    /// Counts per bucket index (`BUCKETS.len()` is +Inf).
    pub buckets: Vec<i64>,
    /// Sum of observations.
    pub sum: f64,
}

/// Every stored counter.
pub fn counters(db: &Db) -> Result<Vec<Counter>, StoreError> {
    let r = db.exec("SELECT name, labels, value FROM metric_counters ORDER BY name, labels", &[])?;
    r.rows()
        .map(|row| {
            Ok(Counter {
                name: col::<&str>(&row, "name")?.to_string(),
                labels: col::<&str>(&row, "labels")?.to_string(),
                value: col(&row, "value")?,
            })
        })
        .collect()
}

/// Every stored histogram.
pub fn histograms(db: &Db) -> Result<Vec<Histogram>, StoreError> {
    let r = db.exec("SELECT name, labels, bucket, count, sum FROM metric_histograms ORDER BY name, labels, bucket", &[])?;
    let mut out: Vec<Histogram> = Vec::new();
    for row in r.rows() {
        let name: &str = col(&row, "name")?;
        let labels: &str = col(&row, "labels")?;
        let bucket: i64 = col(&row, "bucket")?;
        let count: i64 = col(&row, "count")?;
        let sum: f64 = col(&row, "sum")?;
        let same = out.last().is_some_and(|h| h.name == name && h.labels == labels);
        if !same {
            out.push(Histogram { name: name.into(), labels: labels.into(), buckets: vec![0; BUCKETS.len() + 1], sum: 0.0 });
        }
        if let Some(h) = out.last_mut() {
            if let Some(slot) = h.buckets.get_mut(bucket as usize) {
                *slot += count;
            }
            h.sum += sum;
        }
    }
    Ok(out)
}
