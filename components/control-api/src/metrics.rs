//! `GET /metrics`: the Prometheus (OpenMetrics) text exposition, encoded with
//! `prometheus-client` from a snapshot read from the database on each scrape,
//! so the figures are exact whatever runner process serves the scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use spin_sdk::http::{Params, Request, Response};
use stepwise_engine::machine::Machine;
use stepwise_engine::transfer::Status as TransferStatus;
use stepwise_store::metrics::{self, BUCKETS};
use stepwise_store::{otp_queue, outbox, retention, sagas, subscriptions, transfers, workers, Db};
use stepwise_web::{now_ms, query, ApiError, ApiResult};

type Labels = Vec<(String, String)>;

/// What one scrape reads.
#[derive(Debug, Default)]
struct Snapshot {
    counters: Vec<(String, Labels, u64)>,
    gauges: Vec<(String, Labels, f64)>,
    histograms: Vec<HistogramSeries>,
}

/// One histogram series as the encoder takes it.
#[derive(Debug)]
struct HistogramSeries {
    name: String,
    labels: Labels,
    /// (upper bound, count in this bucket alone); `f64::MAX` is +Inf.
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

fn help(name: &str) -> &'static str {
    match name {
        "stepwise_steps" => "Outbound steps recorded, by machine kind, operation and result",
        "stepwise_step_duration_seconds" => "A step from claim to record, by operation",
        "stepwise_upstream_call_duration_seconds" => "Upstream call latency, by operation and HTTP status",
        "stepwise_iterations" => "Worker iterations finished, by outcome",
        "stepwise_ticks" => "Ticks run",
        "stepwise_tick_claimed" => "Workers claimed by ticks",
        "stepwise_tick_duration_seconds" => "Duration of a tick",
        "stepwise_workers" => "Workers, by state",
        "stepwise_otp_queue_length" => "Transactions waiting for an OTP",
        "stepwise_otp_oldest_age_seconds" => "Age of the oldest transaction waiting for an OTP",
        "stepwise_sagas" => "Sagas, by definition and status",
        "stepwise_saga_events" => {
            "Saga history events, by definition and type (step_failed, compensation_completed, ...)"
        }
        "stepwise_webhook_notifications" => "Payment notifications received, by result",
        "stepwise_transfers" => "Transfers, by status (executing lasts only inside the execution transaction)",
        "stepwise_transfers_queued" => "Transfers accepted and not yet executed (their amounts held)",
        "stepwise_transfers_executed" => "Transfers executed by the tick, by result (completed, failed)",
        "stepwise_transfer_accept_seconds" => "Acceptance of a new transfer, from the request to its commit",
        "stepwise_transfer_execution_seconds" => "A transfer from its acceptance to its execution, by result",
        "stepwise_tick_transfers" => "Transfers executed by ticks",
        "stepwise_purged_rows" => "Rows purged by the tick past their keeping time, by table",
        "stepwise_deliveries" => "Event deliveries attempted, by subscription and result (delivered, failed)",
        "stepwise_delivery_duration_seconds" => "One event delivery attempt's latency, by subscription",
        "stepwise_subscription_lag_events" => "Outbox events after a subscription's delivered seq, by subscription",
        "stepwise_subscription_lag_seconds" => {
            "How long the oldest event a subscription has not delivered has waited, by subscription"
        }
        _ => "Stepwise metric",
    }
}

/// Encodes `series` (sorted by name) as metric families of type `kind`,
/// one descriptor per name, one sample per label set.
fn encode_families<T>(
    encoder: &mut DescriptorEncoder<'_>,
    series: &[T],
    kind: MetricType,
    name_labels: impl Fn(&T) -> (&str, &Labels),
    mut sample: impl FnMut(prometheus_client::encoding::MetricEncoder<'_>, &T) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    let mut i = 0;
    while i < series.len() {
        let name = name_labels(&series[i]).0;
        let mut family = encoder.encode_descriptor(name, help(name), None, kind)?;
        while i < series.len() && name_labels(&series[i]).0 == name {
            sample(family.encode_family(name_labels(&series[i]).1)?, &series[i])?;
            i += 1;
        }
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_families(
            &mut encoder,
            &self.counters,
            MetricType::Counter,
            |c| (&c.0, &c.1),
            |mut m, c| m.encode_counter::<Labels, u64, f64>(&c.2, None),
        )?;
        encode_families(
            &mut encoder,
            &self.gauges,
            MetricType::Gauge,
            |g| (&g.0, &g.1),
            |mut m, g| m.encode_gauge(&g.2),
        )?;
        encode_families(
            &mut encoder,
            &self.histograms,
            MetricType::Histogram,
            |h| (&h.name, &h.labels),
            |mut m, h| m.encode_histogram::<Labels>(h.sum, h.count, &h.buckets, None),
        )
    }
}

/// The counter families, each shown from the first scrape (at zero, with
/// the labels whose values are known before anything happened).
const COUNTERS: &[(&str, &[(&str, &str)])] = &[
    ("stepwise_steps", &[]),
    ("stepwise_iterations", &[]),
    ("stepwise_ticks", &[]),
    ("stepwise_tick_claimed", &[]),
    ("stepwise_tick_transfers", &[]),
    ("stepwise_saga_events", &[]),
    ("stepwise_webhook_notifications", &[("result", "accepted")]),
    ("stepwise_transfers_executed", &[("status", "completed")]),
    ("stepwise_transfers_executed", &[("status", "failed")]),
];

/// The histogram families, each shown from the first scrape.
const HISTOGRAMS: &[&str] = &[
    "stepwise_step_duration_seconds",
    "stepwise_upstream_call_duration_seconds",
    "stepwise_tick_duration_seconds",
    "stepwise_transfer_accept_seconds",
    "stepwise_transfer_execution_seconds",
];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Adds a zero series for each family (or known label set) nothing has
/// counted yet, then sorts by name so each family is encoded once.
fn with_zeros(s: &mut Snapshot) {
    let purged = retention::TABLES.map(|table| [("table", table)]);
    let purged = purged.iter().map(|labels| (retention::METRIC, &labels[..]));
    for (name, pairs) in COUNTERS.iter().copied().chain(purged) {
        let wanted = labels(pairs);
        let present = s.counters.iter().any(|c| c.0 == *name && (pairs.is_empty() || c.1 == wanted));
        if !present {
            s.counters.push((name.to_string(), wanted, 0));
        }
    }
    for name in HISTOGRAMS {
        if !s.histograms.iter().any(|h| h.name == *name) {
            let buckets = BUCKETS.iter().copied().chain([f64::MAX]).map(|b| (b, 0)).collect();
            s.histograms.push(HistogramSeries {
                name: name.to_string(),
                labels: Vec::new(),
                buckets,
                sum: 0.0,
                count: 0,
            });
        }
    }
    if !s.gauges.iter().any(|g| g.0 == "stepwise_sagas") {
        s.gauges.push(("stepwise_sagas".into(), Vec::new(), 0.0));
    }
    s.counters.sort_by(|a, b| a.0.cmp(&b.0));
    s.histograms.sort_by(|a, b| a.name.cmp(&b.name));
    s.gauges.sort_by(|a, b| a.0.cmp(&b.0));
}

fn snapshot(db: &Db) -> Result<Snapshot, ApiError> {
    let mut s = Snapshot::default();
    for c in metrics::counters(db)? {
        s.counters.push((c.name, metrics::parse_labels(&c.labels), c.value.max(0) as u64));
    }
    for h in metrics::histograms(db)? {
        // Per-bucket counts: the encoder accumulates them; `f64::MAX` is its +Inf.
        let buckets: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| (BUCKETS.get(i).copied().unwrap_or(f64::MAX), (*n).max(0) as u64))
            .collect();
        let count = buckets.iter().map(|b| b.1).sum();
        s.histograms.push(HistogramSeries {
            name: h.name,
            labels: metrics::parse_labels(&h.labels),
            buckets,
            sum: h.sum,
            count,
        });
    }
    let mut by_state: Vec<(String, i64)> =
        ["running", "pausing", "paused", "stopping", "stopped"].iter().map(|st| (st.to_string(), 0)).collect();
    for (state, n) in workers::count_by_state(db)? {
        if let Some(slot) = by_state.iter_mut().find(|(st, _)| *st == state) {
            slot.1 = n;
        }
    }
    for (state, n) in by_state {
        s.gauges.push(("stepwise_workers".into(), vec![("state".into(), state)], n as f64));
    }
    for (definition, status, n) in sagas::count_by_definition_and_status(db)? {
        s.gauges.push((
            "stepwise_sagas".into(),
            vec![("definition".into(), definition), ("status".into(), status)],
            n as f64,
        ));
    }
    let by_status = transfers::counts_by_status(db)?;
    let count = |st: TransferStatus| by_status.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
    for st in TransferStatus::ALL {
        s.gauges.push(("stepwise_transfers".into(), vec![("status".into(), st.as_str().into())], count(st) as f64));
    }
    s.gauges.push(("stepwise_transfers_queued".into(), Vec::new(), count(TransferStatus::Processing) as f64));
    let now = now_ms();
    let (waiting, oldest) = otp_queue::stats(db, now)?;
    s.gauges.push(("stepwise_otp_queue_length".into(), Vec::new(), waiting as f64));
    let age = oldest.map(|t| (now - t).max(0) as f64 / 1e3).unwrap_or(0.0);
    s.gauges.push(("stepwise_otp_oldest_age_seconds".into(), Vec::new(), age));
    let head = outbox::head(db)?;
    let mut after = None;
    loop {
        let (page, next) = subscriptions::list(db, 500, after.as_deref())?;
        for sub in &page {
            let (events, seconds) = subscriptions::lag(db, sub, head, now)?;
            let labels = vec![("subscription".to_string(), sub.id().to_string())];
            s.gauges.push(("stepwise_subscription_lag_events".into(), labels.clone(), events as f64));
            s.gauges.push(("stepwise_subscription_lag_seconds".into(), labels, seconds));
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    with_zeros(&mut s);
    Ok(s)
}

/// `GET /metrics` (a `read` key, which Prometheus sends as
/// `authorization: Bearer ...`). A scrape only reads.
pub fn metrics(req: &Request, _: &Params) -> ApiResult {
    query(req, &[])?;
    let db = Db::open()?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot(&db)?));
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &registry)
        .map_err(|e| ApiError::internal("cannot encode the metrics", e))?;
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
        .header("cache-control", "no-store")
        .body(body)
        .build())
}
