//! `GET /api/stats`: per definition, sagas by status, step durations (p50 and
//! p99 over the newest sagas), failures, compensations and retries.

use std::collections::BTreeMap;

use spin_sdk::http::{Params, Request};
use stepwise_engine::saga::machine::Saga;
use stepwise_engine::views::sagas::{DefinitionStats, SagaStats, StepDurations};
use stepwise_store::{metrics, sagas, Db};
use stepwise_web::{query, view_response, ApiResult};

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
    let mut out: BTreeMap<String, DefinitionStats> = BTreeMap::new();
    for (def, status, n) in sagas::count_by_definition_and_status(&db)? {
        out.entry(def).or_default().by_status.insert(status, n as u64);
    }
    let events = metrics::counters(&db)?;
    for c in events.iter().filter(|c| c.name == "stepwise_saga_events") {
        let labels = metrics::parse_labels(&c.labels);
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let (def, kind) = (get("definition"), get("type"));
        let e = out.entry(def).or_default();
        match kind.as_str() {
            "step_failed" => e.failures += c.value,
            "compensation_completed" => e.compensations += c.value,
            "step_retry_scheduled" | "compensation_retry_scheduled" => e.retries += c.value,
            _ => continue,
        }
    }
    for (def, entry) in out.iter_mut() {
        let (page, _) = sagas::list(&db, Some(def), None, SAMPLE, None)?;
        let mut durations: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for s in &page {
            collect(s, &mut durations);
        }
        entry.steps = durations
            .into_iter()
            .map(|(name, mut d)| {
                d.sort();
                let figures =
                    StepDurations { count: d.len() as u64, p50_ms: percentile(&d, 0.5), p99_ms: percentile(&d, 0.99) };
                (name, figures)
            })
            .collect();
    }
    view_response(200, &SagaStats { definitions: out })
}

fn collect(s: &Saga, into: &mut BTreeMap<String, Vec<i64>>) {
    for r in s.steps() {
        if let (Some(a), Some(b)) = (r.started_at(), r.ended_at()) {
            into.entry(r.name().to_string()).or_default().push(b - a);
        }
    }
}
