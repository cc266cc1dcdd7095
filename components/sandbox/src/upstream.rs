//! Serves one upstream protocol call: validate, then — in one `BEGIN
//! IMMEDIATE` transaction — count it in flight, replay a stored answer for a
//! repeated request_id or decide and apply the call, store its answer and
//! record the call; then sleep the binding's latency (and a `slow:` delay)
//! before answering, and count it out.

use crate::machine::{decide_call, decide_start, Action, StartDecision, TxnState};
use crate::protocol::{parse_call, parse_txn_id, txn_label, CallInput, Op, Target, TxnView};
use stepwise_web::ApiError;

use crate::reply::{error, error_body, internal, Reply};
use crate::script::sleep_ms;
use crate::store::{now_ms, CallRecord, Store, StoredAnswer};

/// A decided answer, before it is stored.
struct Answer {
    stored: StoredAnswer,
    otp_ok: Option<bool>,
    /// Sleep after committing (`slow:<ms>`).
    delay_ms: u64,
}

fn view(id: i64, binding_id: &str, txn: &TxnState, balance: i64) -> TxnView {
    TxnView {
        id: txn_label(id),
        binding_id: binding_id.to_string(),
        status: txn.status.as_str(),
        reason: txn.reason.clone(),
        otp_required: txn.otp_required,
        amount: txn.amount,
        balance,
    }
}

/// Serves a call to `target` with its `X-Request-Id` header and body.
pub fn handle(store: &Store, target: &Target, header: Option<&str>, body: &[u8]) -> Reply {
    let received_at_ms = now_ms();
    let op = target.op;
    let txn_id = target.raw_id.as_deref().and_then(parse_txn_id);
    let header_owned = header.map(str::to_string);

    let input = match parse_call(op, body, header) {
        Ok(input) => input,
        Err(rejection) => {
            let binding_id = match (op, txn_id) {
                (Op::Start, _) => rejection.binding_id.clone(),
                (_, Some(id)) => store.txn_binding(id).ok().flatten().map(|(b, _)| b),
                _ => None,
            };
            let record = CallRecord {
                received_at_ms,
                op: op.as_str(),
                binding_id,
                transaction_id: target.raw_id.clone(),
                request_id: rejection.request_id.clone(),
                header_request_id: header_owned,
                duplicate: false,
                rejected: true,
                status_code: rejection.error.status,
                otp_ok: None,
            };
            if let Err(e) = store.record_call(&record) {
                return error(&e);
            }
            return error(&rejection.error);
        }
    };

    // The binding (for the in-flight count and the latency) is known from the
    // body for a start, from the transaction otherwise.
    let located = match (op, txn_id) {
        (Op::Start, _) => match input.binding_id.as_deref() {
            Some(b) => store.binding_latency(b).map(|lat| Some((b.to_string(), lat))),
            None => Ok(None),
        },
        (_, Some(id)) => store.txn_binding(id),
        (_, None) => Ok(None),
    };
    let located = match located {
        Ok(l) => l,
        Err(e) => return error(&e),
    };
    // The call counts as in flight from here (counted in the same transaction
    // as the work) until its answer leaves, latency included.
    let result = store.immediate(|s| {
        if let Some((binding_id, _)) = &located {
            s.inflight_enter(binding_id)?;
        }
        let mut record = CallRecord {
            received_at_ms,
            op: op.as_str(),
            binding_id: located.as_ref().map(|(b, _)| b.clone()),
            transaction_id: target.raw_id.clone(),
            request_id: Some(input.request_id.clone()),
            header_request_id: header_owned.clone(),
            duplicate: false,
            rejected: false,
            status_code: 0,
            otp_ok: None,
        };
        let answer = match s.stored_answer(&input.request_id)? {
            Some(stored) => {
                record.duplicate = true;
                Answer { stored, otp_ok: None, delay_ms: 0 }
            }
            None => {
                let answer = match op {
                    Op::Start => start(s, &input)?,
                    _ => on_transaction(s, op, target, txn_id, &input)?,
                };
                s.store_answer(&input.request_id, op.as_str(), &answer.stored)?;
                answer
            }
        };
        if answer.stored.transaction_id.is_some() {
            record.transaction_id = answer.stored.transaction_id.clone();
        }
        if record.binding_id.is_none() {
            record.binding_id = answer.stored.binding_id.clone();
        }
        record.status_code = answer.stored.status;
        record.otp_ok = answer.otp_ok;
        s.record_call(&record)?;
        Ok(answer)
    });

    let latency = located.as_ref().map(|(_, lat)| *lat).unwrap_or(0);
    // A failed transaction rolled its in-flight count back: nothing to take off.
    let counted = result.is_ok();
    let reply = match result {
        Ok(answer) => {
            sleep_ms(latency.saturating_add(answer.delay_ms));
            Reply { status: answer.stored.status, body: answer.stored.body }
        }
        Err(e) => {
            sleep_ms(latency);
            error(&e)
        }
    };
    if let (true, Some((binding_id, _))) = (counted, &located) {
        if let Err(e) = store.inflight_exit(binding_id) {
            eprintln!("sandbox: cannot decrement in-flight count of {binding_id}: {}", e.message);
        }
    }
    reply
}

/// `/start`: create a transaction from the binding's next outcome.
fn start(s: &Store, input: &CallInput) -> Result<Answer, ApiError> {
    let binding_id = input.binding_id.as_deref().ok_or_else(|| internal("start without binding_id"))?;
    let b = s.start_binding(binding_id)?;
    match decide_start(b.balance, b.amount, &b.next_outcome) {
        StartDecision::Error { status } => {
            s.advance_outcome(binding_id)?;
            let err = ApiError::new(status, "upstream_error", format!("scripted outcome error:{status}"));
            Ok(Answer {
                stored: StoredAnswer {
                    status,
                    body: error_body(&err),
                    binding_id: Some(binding_id.to_string()),
                    transaction_id: None,
                },
                otp_ok: None,
                delay_ms: 0,
            })
        }
        StartDecision::Create { txn, debit, consumed, delay_ms } => {
            if consumed {
                s.advance_outcome(binding_id)?;
            }
            let balance = if debit { s.debit(binding_id, txn.amount)? } else { b.balance };
            let outcome =
                if consumed { b.next_outcome.to_string() } else { "insufficient_balance_before_start".to_string() };
            let id = s.insert_txn(binding_id, &txn, &outcome, &input.request_id)?;
            let reply = Reply::json(200, &view(id, binding_id, &txn, balance));
            Ok(Answer {
                stored: StoredAnswer {
                    status: reply.status,
                    body: reply.body,
                    binding_id: Some(binding_id.to_string()),
                    transaction_id: Some(txn_label(id)),
                },
                otp_ok: None,
                delay_ms,
            })
        }
    }
}

/// `/otp`, `/continue`, `/check`, `/pause`, `/resume`, `/stop` on a transaction.
fn on_transaction(
    s: &Store,
    op: Op,
    target: &Target,
    txn_id: Option<i64>,
    input: &CallInput,
) -> Result<Answer, ApiError> {
    let row = match txn_id {
        Some(id) => s.load_txn(id)?,
        None => None,
    };
    let Some(row) = row else {
        let raw = target.raw_id.as_deref().unwrap_or("");
        let err = ApiError::new(404, "unknown_transaction", format!("no transaction `{raw}`"));
        return Ok(Answer {
            stored: StoredAnswer { status: 404, body: error_body(&err), binding_id: None, transaction_id: None },
            otp_ok: None,
            delay_ms: 0,
        });
    };
    let (balance, expected_otp) = s.balance_and_otp(&row.binding_id)?;
    let given = input.otp.as_deref().unwrap_or("");
    let action = match op {
        Op::Otp => Action::Otp { given, expected: &expected_otp },
        Op::Continue | Op::Check => Action::Poll,
        Op::Pause => Action::Pause,
        Op::Resume => Action::Resume,
        Op::Stop => Action::Stop,
        Op::Start => return Err(internal("start on a transaction")),
    };
    let step = decide_call(&row.state, action, balance);
    if step.txn != row.state {
        s.save_txn(row.id, &step.txn)?;
    }
    let balance = if step.debit { s.debit(&row.binding_id, step.txn.amount)? } else { balance };
    let reply = Reply::json(200, &view(row.id, &row.binding_id, &step.txn, balance));
    Ok(Answer {
        stored: StoredAnswer {
            status: reply.status,
            body: reply.body,
            binding_id: Some(row.binding_id.clone()),
            transaction_id: Some(txn_label(row.id)),
        },
        otp_ok: step.otp_ok,
        delay_ms: 0,
    })
}
