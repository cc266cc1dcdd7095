//! Metrics kept in the database, updated inside the transaction that records
//! the fact they count, so every runner process sharing the state sees the
//! same exact figures. `/metrics` renders them with gauges read from the
//! tables themselves (workers by state, the OTP queue).

use crate::db::{col, text, Db, StoreError};

/// Upper bounds (seconds) of the duration histograms' buckets.
pub const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Adds `by` to the counter `name{labels}`: with the rest of the open
/// transaction's metrics just before it commits (see [`Batch`]), or at once
/// outside a transaction.
pub fn inc(db: &Db, name: &str, labels: &[(&str, &str)], by: i64) -> Result<(), StoreError> {
    let mut b = Batch::default();
    b.inc(name, labels, by);
    b.flush(db)
}

/// Records one observation of `seconds` in the histogram `name{labels}`
/// (written as [`inc`] is).
pub fn observe(db: &Db, name: &str, labels: &[(&str, &str)], seconds: f64) -> Result<(), StoreError> {
    let mut b = Batch::default();
    b.observe(name, labels, seconds);
    b.flush(db)
}

/// Counter increments and histogram observations gathered over a
/// transaction and written together just before it commits
/// ([`crate::db::Db::transaction`]): one upsert statement for the counters
/// and one for the histograms, whatever the number of steps, and the hot
/// rows (every step counts in the same few series) are locked only from
/// there to the commit, always in the same (sorted) order.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    counters: std::collections::BTreeMap<(String, String), i64>,
    histograms: std::collections::BTreeMap<(String, String, i64), (i64, f64)>,
}

impl Batch {
    /// Adds `by` to the counter `name{labels}`.
    pub fn inc(&mut self, name: &str, labels: &[(&str, &str)], by: i64) {
        *self.counters.entry((name.to_string(), label_string(labels))).or_default() += by;
    }

    /// Records one observation of `seconds` in the histogram `name{labels}`.
    pub fn observe(&mut self, name: &str, labels: &[(&str, &str)], seconds: f64) {
        let bucket = BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(BUCKETS.len()) as i64;
        let slot = self.histograms.entry((name.to_string(), label_string(labels), bucket)).or_default();
        slot.0 += 1;
        slot.1 += seconds;
    }

    /// Moves everything in `other` into this batch.
    pub fn merge(&mut self, other: Batch) {
        for (k, v) in other.counters {
            *self.counters.entry(k).or_default() += v;
        }
        for (k, (n, sum)) in other.histograms {
            let slot = self.histograms.entry(k).or_default();
            slot.0 += n;
            slot.1 += sum;
        }
    }

    /// Hands the batch to the caller's transaction, to be written with its
    /// other metrics when it commits (at once outside a transaction), and
    /// empties it.
    pub fn flush(&mut self, db: &Db) -> Result<(), StoreError> {
        let batch = std::mem::take(self);
        if db.in_transaction() {
            db.defer_metrics(batch);
            Ok(())
        } else {
            batch.write(db)
        }
    }

    fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.histograms.is_empty()
    }

    /// Writes the batch: one statement for the counters, one for the
    /// histograms (each series appears once, in sorted order).
    pub(crate) fn write(self, db: &Db) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        if !self.counters.is_empty() {
            let rows = vec!["(?, ?, ?)"; self.counters.len()].join(", ");
            let params: Vec<_> = self
                .counters
                .into_iter()
                .flat_map(|((name, labels), by)| [text(name), text(labels), crate::db::int(by)])
                .collect();
            db.exec(
                &format!(
                    "INSERT INTO metric_counters (name, labels, value) VALUES {rows}
                     ON CONFLICT (name, labels) DO UPDATE SET value = metric_counters.value + excluded.value"
                ),
                &params,
            )?;
        }
        if !self.histograms.is_empty() {
            let rows = vec!["(?, ?, ?, ?, ?)"; self.histograms.len()].join(", ");
            let params: Vec<_> = self
                .histograms
                .into_iter()
                .flat_map(|((name, labels, bucket), (n, sum))| {
                    [text(name), text(labels), crate::db::int(bucket), crate::db::int(n), crate::db::Value::Real(sum)]
                })
                .collect();
            db.exec(
                &format!(
                    "INSERT INTO metric_histograms (name, labels, bucket, count, sum) VALUES {rows}
                     ON CONFLICT (name, labels, bucket) DO UPDATE SET count = metric_histograms.count + excluded.count,
                       sum = metric_histograms.sum + excluded.sum"
                ),
                &params,
            )?;
        }
        Ok(())
    }
}

/// The stored form of a label set: a JSON list of `[name, value]` pairs.
pub fn label_string(labels: &[(&str, &str)]) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "[]".to_string())
}

/// Reads a stored label set back.
pub fn parse_labels(stored: &str) -> Vec<(String, String)> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// One counter series as stored (table `metric_counters`): only ever added to.
pub struct Counter {
    /// As stored, without the `_total` the exposition adds (e.g. `stepwise_deliveries`).
    pub name: String,
    /// Labels, as stored (see [`parse_labels`]).
    pub labels: String,
    /// The sum of every increment written so far.
    pub value: i64,
}

/// A histogram series: per-bucket (non-cumulative) counts and the sum.
pub struct Histogram {
    /// The metric's name, e.g. `stepwise_delivery_duration_seconds`.
    pub name: String,
    /// Labels, as stored (see [`parse_labels`]).
    pub labels: String,
    /// Counts per bucket index (`BUCKETS.len()` is +Inf).
    pub buckets: Vec<i64>,
    /// The sum of every observed value (Prometheus' `_sum`).
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
    let r =
        db.exec("SELECT name, labels, bucket, count, sum FROM metric_histograms ORDER BY name, labels, bucket", &[])?;
    let mut out: Vec<Histogram> = Vec::new();
    for row in r.rows() {
        let name: &str = col(&row, "name")?;
        let labels: &str = col(&row, "labels")?;
        let bucket: i64 = col(&row, "bucket")?;
        let count: i64 = col(&row, "count")?;
        let sum: f64 = col(&row, "sum")?;
        let same = out.last().is_some_and(|h| h.name == name && h.labels == labels);
        if !same {
            out.push(Histogram {
                name: name.into(),
                labels: labels.into(),
                buckets: vec![0; BUCKETS.len() + 1],
                sum: 0.0,
            });
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
