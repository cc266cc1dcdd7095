//! One tick ([`run`]): claims due machines of every kind, keeps up to
//! `concurrency` calls in flight, records answers in batches and executes
//! transfers, until its budget runs out.

use std::collections::HashSet;

use futures::future::{select, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use stepwise_engine::machine::{Kind, Machine};
use stepwise_engine::saga::Saga;
use stepwise_engine::subscription::Subscription;
use stepwise_engine::time::Millis;
use stepwise_engine::worker::Worker;
use stepwise_store::machines::{self, Due};
use stepwise_store::{Db, StoreError};

use crate::step::*;

/// A tick's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Machines found due (counted once per machine per tick).
    pub due: u32,
    /// Steps claimed (calls made).
    pub claimed: u32,
    /// Answers recorded (those of machines taken over are counted in `discarded`).
    pub recorded: u32,
    /// Answers discarded because another stepper took the machine over.
    pub discarded: u32,
    /// Claims or records that failed with a storage error (each machine's
    /// in a savepoint of its own, so the others in its batch stand), and
    /// transfers whose execution could not be recorded.
    pub errors: u32,
    /// Transfers executed (completed or failed).
    pub transfers: u32,
}

/// A claim of any kind of machine.
enum AnyClaim {
    Worker(Claimed<<Worker as Machine>::Call>),
    Saga(Claimed<<Saga as Machine>::Call>),
    Subscription(Claimed<<Subscription as Machine>::Call>),
}

impl AnyClaim {
    fn outbound(&self) -> &Outbound {
        match self {
            AnyClaim::Worker(c) => &c.outbound,
            AnyClaim::Saga(c) => &c.outbound,
            AnyClaim::Subscription(c) => &c.outbound,
        }
    }
}

fn log_error(what: &str, kind: Kind, id: &str, e: &StoreError) {
    eprintln!(
        "{}",
        serde_json::json!({ "event": "tick_error", "during": what, "kind": kind.as_str(), "id": id, "error": e.to_string() })
    );
}

fn log_step<C>(kind: Kind, c: &Claimed<C>, r: &CallResult, code: Option<&str>) {
    println!(
        "{}",
        serde_json::json!({
            "event": "step", "kind": kind.as_str(), "id": c.id,
            "binding_id": (kind == Kind::Worker).then_some(c.id.as_str()),
            "request_id": c.request_id, "operation": c.operation, "attempt": c.attempt,
            "status_code": r.status_code, "result": code, "duration_ms": r.duration_ms,
        })
    );
}

/// Claims the due machines of kind `M` (one transaction).
#[allow(clippy::too_many_arguments)]
fn claim_kind<M: Stepped, C: Clock>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    clock: &C,
    due: &[Due],
    failed: &mut HashSet<Due>,
    totals: &mut Totals,
    wrap: fn(Claimed<M::Call>) -> AnyClaim,
) -> Result<Vec<AnyClaim>, StoreError> {
    let ids: Vec<String> =
        due.iter().filter(|d| d.kind == M::KIND && !failed.contains(d)).map(|d| d.id.clone()).collect();
    let mut out = Vec::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let t0 = clock.micros();
    let claims = claim_many::<M>(db, cfg, owner, &ids, clock.now())?;
    let share = (clock.micros() - t0) / ids.len() as i64;
    for (id, c) in claims {
        match c {
            Ok(Some(c)) => out.push(wrap(Claimed { claim_us: share, ..c })),
            Ok(None) => {}
            Err(e) => {
                totals.errors += 1;
                log_error("claim", M::KIND, &id, &e);
                failed.insert(Due { kind: M::KIND, id });
            }
        }
    }
    Ok(out)
}

/// Claims the due machines (one transaction per kind); returns the claims.
/// A machine whose claim fails is put in `failed` and not tried again in
/// this tick (it is logged once per tick, not at every look).
fn claim_due<C: Clock>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    clock: &C,
    due: &[Due],
    failed: &mut HashSet<Due>,
    totals: &mut Totals,
) -> Result<Vec<AnyClaim>, StoreError> {
    let mut out = claim_kind::<Worker, C>(db, cfg, owner, clock, due, failed, totals, AnyClaim::Worker)?;
    out.extend(claim_kind::<Saga, C>(db, cfg, owner, clock, due, failed, totals, AnyClaim::Saga)?);
    out.extend(claim_kind::<Subscription, C>(db, cfg, owner, clock, due, failed, totals, AnyClaim::Subscription)?);
    Ok(out)
}

/// Records the answers of kind `M` (one transaction); returns the next claims.
#[allow(clippy::too_many_arguments)]
fn record_kind<M: Stepped, C: Clock>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    clock: &C,
    done: Vec<(Claimed<M::Call>, CallResult)>,
    claim_next: bool,
    totals: &mut Totals,
    wrap: fn(Claimed<M::Call>) -> AnyClaim,
) -> Result<Vec<AnyClaim>, StoreError> {
    let mut next = Vec::new();
    if done.is_empty() {
        return Ok(next);
    }
    let t0 = clock.micros();
    let outcomes = record_many::<M>(db, cfg, owner, &done, clock.now(), claim_next)?;
    let share = (clock.micros() - t0) / done.len() as i64;
    for ((c, r), o) in done.iter().zip(outcomes) {
        match o {
            Ok(RecordOutcome { recorded, next: n }) => {
                let code = match &recorded {
                    Recorded::Done { response_code, .. } => {
                        totals.recorded += 1;
                        Some(response_code.as_str())
                    }
                    Recorded::Stale => {
                        totals.discarded += 1;
                        None
                    }
                };
                log_step(M::KIND, c, r, code);
                if let Some(n) = n {
                    totals.claimed += 1;
                    next.push(wrap(Claimed { claim_us: share, ..n }));
                }
            }
            Err(e) => {
                totals.errors += 1;
                log_error("record", M::KIND, &c.id, &e);
            }
        }
    }
    Ok(next)
}

/// Records a batch of answers (one transaction per kind) and returns the
/// next steps claimed in the same transactions.
fn record_batch<C: Clock>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    clock: &C,
    done: Vec<(AnyClaim, CallResult)>,
    claim_next: bool,
    totals: &mut Totals,
) -> Result<Vec<AnyClaim>, StoreError> {
    let mut workers = Vec::new();
    let mut sagas = Vec::new();
    let mut subscriptions = Vec::new();
    for (c, r) in done {
        match c {
            AnyClaim::Worker(c) => workers.push((c, r)),
            AnyClaim::Saga(c) => sagas.push((c, r)),
            AnyClaim::Subscription(c) => subscriptions.push((c, r)),
        }
    }
    let mut next = record_kind::<Worker, C>(db, cfg, owner, clock, workers, claim_next, totals, AnyClaim::Worker)?;
    next.extend(record_kind::<Saga, C>(db, cfg, owner, clock, sagas, claim_next, totals, AnyClaim::Saga)?);
    next.extend(record_kind::<Subscription, C>(
        db,
        cfg,
        owner,
        clock,
        subscriptions,
        claim_next,
        totals,
        AnyClaim::Subscription,
    )?);
    Ok(next)
}

/// One tick: steps due machines until `cfg.budget_ms` has passed (and what
/// is in flight then has been recorded). `owner` names this tick's leases.
///
/// Claims are made in batches (every machine due when the tick looks, one
/// transaction); the answers that are in when the tick wakes are recorded
/// together in one transaction, which also claims the next step of each
/// machine due again at once. Up to `cfg.concurrency` calls are in flight.
pub async fn run<T: Transport, C: Clock>(
    db: &Db,
    cfg: &Config,
    owner: &str,
    transport: &T,
    clock: &C,
) -> Result<Totals, StoreError> {
    let deadline = clock.now().saturating_add(cfg.budget_ms as i64);
    let mut totals = Totals::default();
    let mut seen: HashSet<Due> = HashSet::new();
    let mut failed: HashSet<Due> = HashSet::new();
    let mut active = FuturesUnordered::new();
    let send = |c: AnyClaim| async move {
        let r = transport.send(c.outbound()).await;
        (c, r)
    };
    let mut next_query = i64::MIN;
    let mut next_execute = i64::MIN;
    let mut first = true;
    let mut first_execute = true;
    // The outbox's head as this tick last saw it (idle subscriptions are
    // woken when it grows).
    let mut outbox_head = 0;
    loop {
        let now = clock.now();
        // Accepted transfers: a local step, no call. A full batch means more
        // are waiting: execute again at once.
        if (first_execute || now < deadline) && now >= next_execute {
            first_execute = false;
            next_execute = now + IDLE_POLL_MS;
            match stepwise_store::transfers::execute_due(db, stepwise_store::transfers::EXECUTE_BATCH, || clock.now()) {
                Ok(done) => {
                    totals.transfers += done.completed + done.failed;
                    totals.errors += done.errors;
                    if done.due == stepwise_store::transfers::EXECUTE_BATCH {
                        next_execute = now;
                    }
                }
                Err(e) => {
                    eprintln!("tick: executing transfers failed (they stay processing): {e}");
                    totals.errors += 1;
                }
            }
        }
        // The first pass always looks, so a zero budget still steps each due
        // machine once.
        if (first || now < deadline) && active.len() < cfg.concurrency && now >= next_query {
            first = false;
            let room = (cfg.concurrency - active.len()).min(cfg.batch as usize) as u32;
            if let Err(e) = stepwise_store::subscriptions::wake(db, now, &mut outbox_head) {
                eprintln!("tick: waking subscriptions failed: {e}");
                totals.errors += 1;
            }
            let due = machines::due(db, now, room)?;
            for d in &due {
                if seen.insert(d.clone()) {
                    totals.due += 1;
                }
            }
            for c in claim_due(db, cfg, owner, clock, &due, &mut failed, &mut totals)? {
                totals.claimed += 1;
                active.push(send(c));
            }
            next_query = now + IDLE_POLL_MS;
        }
        if active.is_empty() {
            if now >= deadline {
                break;
            }
            clock.sleep_until(next_query.min(next_execute).max(now + 1).min(deadline)).await;
            continue;
        }
        // Wake for the next due query only while there is room for more
        // machines; otherwise wait for answers. The wake time is always in
        // the future, so waiting really waits (and lets the runtime make
        // progress on the calls in flight).
        let wake = if now >= deadline {
            Millis::MAX
        } else if active.len() < cfg.concurrency {
            next_query.min(next_execute).max(now + 1).min(deadline)
        } else {
            next_execute.max(now + 1).min(deadline)
        };
        // Every answer that is in, at least one (polled with the real
        // context, so calls still pending are woken when they complete).
        let answers = std::future::poll_fn(|cx| {
            let mut got = Vec::new();
            while let std::task::Poll::Ready(Some(x)) = active.poll_next_unpin(cx) {
                got.push(x);
            }
            if got.is_empty() {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(got)
            }
        });
        let done = if wake == Millis::MAX {
            answers.await
        } else {
            match select(std::pin::pin!(answers), std::pin::pin!(clock.sleep_until(wake))).await {
                Either::Left((got, _)) => got,
                Either::Right(((), _)) => Vec::new(),
            }
        };
        if done.is_empty() {
            continue;
        }
        let claim_next = clock.now() < deadline;
        for c in record_batch(db, cfg, owner, clock, done, claim_next, &mut totals)? {
            active.push(send(c));
        }
        // More may be due now (another runner's machine whose lease ran out,
        // a new start): look at once rather than after the idle interval.
        next_query = clock.now();
    }
    Ok(totals)
}
