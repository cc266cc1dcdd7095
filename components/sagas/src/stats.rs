//! `GET /api/stats`: per definition, sagas by status, step durations (p50 and
//! p99 over the newest sagas), failures, compensations and retries.

use std::collections::BTreeMap;

use spin_sdk::http::{Params, Request};
use stepwise_engine::saga::machine::Saga;
use stepwise_store::{metrics, sagas, Db};
use stepwise_web::{json, json_response, query, ApiResult, Value};

/// Sagas per definition whose step durations are summarised.
const SAMPLE: u32 = 1000;

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// `GET /api/stats`.
pub fn stats(req: &Request, _: &Params) -> ApiResult {
    query(req, &[])?;
    let db = Db::open()?;
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (def, status, n) in sagas::count_by_definition_and_status(&db)? {
        let e = out.entry(def).or_insert_with(|| json!({ "by_status": {} }));
        e["by_status"][status] = json!(n);
    }
    let events = metrics::counters(&db)?;
    for c in events.iter().filter(|c| c.name == "stepwise_saga_events") {
        let labels = metrics::parse_labels(&c.labels);
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let (def, kind) = (get("definition"), get("type"));
        let field = match kind.as_str() {
            "step_failed" => "failures",
            "compensation_completed" => "compensations",
            "step_retry_scheduled" | "compensation_retry_scheduled" => "retries",
            _ => continue,
        };
        let e = out.entry(def).or_insert_with(|| json!({ "by_status": {} }));
        e[field] = json!(e[field].as_i64().unwrap_or(0) + c.value);
    }
    for (def, entry) in out.iter_mut() {
        let (page, _) = sagas::list(&db, Some(def), None, SAMPLE, None)?;
        let mut durations: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for s in &page {
            collect(s, &mut durations);
        }
        let steps: BTreeMap<String, Value> = durations
            .into_iter()
            .map(|(name, mut d)| {
                d.sort();
                (name, json!({ "count": d.len(), "p50_ms": percentile(&d, 0.5), "p99_ms": percentile(&d, 0.99) }))
            })
            .collect();
        entry["steps"] = json!(steps);
        for k in ["failures", "compensations", "retries"] {
            if entry.get(k).is_none() {
                entry[k] = json!(0);
            }
        }
    }
    Ok(json_response(200, &json!({ "definitions": out })))
}

fn collect(s: &Saga, into: &mut BTreeMap<String, Vec<i64>>) {
    for r in s.steps() {
        if let (Some(a), Some(b)) = (r.started_at(), r.ended_at()) {
            into.entry(r.name().to_string()).or_default().push(b - a);
        }
    }
}
