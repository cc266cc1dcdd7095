//! How the stepper delivers a subscription's events: one event per call, in
//! `seq` order, signed for a webhook or added to a Redis stream.

use stepwise_engine::machine::Machine;
use stepwise_engine::subscription::{self as sub, Delivery, Destination, Next, Outcome, Signal, Subscription};
use stepwise_engine::time::Millis;
use stepwise_store::{metrics, outbox, subscriptions, Db, StoreError};

use crate::step::{CallResult, Config, Judged, LogEntry, Outbound, Stepped};

/// How the stepper delivers: one event per call, in `seq` order.
impl Stepped for Subscription {
    fn prepare(&mut self, db: &Db, now: Millis) -> Result<(), StoreError> {
        if self.wants_look() {
            let (next, head) = outbox::next_after(db, self.cursor(), self.types().names())?;
            self.on_signal(Signal::Looked { next, head }, now)?;
        } else if let Next::Deliver { delivery, .. } = self.next() {
            // A retry may come after the keeping time (a subscription
            // disabled and resumed): an event purged meanwhile is passed.
            if delivery.attempt > 1 && outbox::get(db, delivery.seq)?.is_none() {
                self.on_signal(Signal::Replay { from_seq: delivery.seq + 1 }, now)?;
            }
        }
        Ok(())
    }

    fn log_entry(&self, call: &Delivery) -> LogEntry {
        LogEntry {
            operation: "deliver".into(),
            target: Some(call.seq.to_string()),
            attempt: call.attempt,
            operation_key: format!("deliver:{}", call.seq),
        }
    }

    fn outbound(
        &self,
        db: &Db,
        _cfg: &Config,
        call: &Delivery,
        request_id: &str,
        now: Millis,
    ) -> Result<(Outbound, String), StoreError> {
        let event = outbox::get(db, call.seq)?
            .ok_or_else(|| StoreError::Corrupt(format!("event {} is not in the outbox", call.seq)))?;
        let body = serde_json::to_vec(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let logged = String::from_utf8_lossy(&body).into_owned();
        let out = match self.destination() {
            Destination::Webhook { url } => {
                let id = self.message_id(call.seq);
                let ts = now.div_euclid(1000);
                let signature = sub::signature(self.secret(), &id, ts, &body)?;
                Outbound {
                    method: "POST",
                    url: url.clone(),
                    headers: vec![
                        ("webhook-id".into(), id),
                        ("webhook-timestamp".into(), ts.to_string()),
                        ("webhook-signature".into(), signature),
                        ("x-request-id".into(), request_id.to_string()),
                    ],
                    body,
                    timeout_ms: self.policy().timeout_ms,
                }
            }
            Destination::RedisStream { url, stream } => Outbound {
                method: "XADD",
                url: url.clone(),
                headers: vec![("stream".into(), stream.clone()), ("entry-id".into(), Subscription::entry_id(call.seq))],
                body,
                timeout_ms: self.policy().timeout_ms,
            },
        };
        Ok((out, logged))
    }

    fn judge(&self, _call: &Delivery, r: &CallResult) -> Judged<Outcome> {
        let redis = matches!(self.destination(), Destination::RedisStream { .. });
        let answer = match r.status_code {
            Some(s)
                if redis
                    && (s == subscriptions::redis_answer::ADDED || s == subscriptions::redis_answer::ALREADY_THERE) =>
            {
                Outcome::Delivered
            }
            Some(s) if !redis && (200..300).contains(&s) => Outcome::Delivered,
            Some(_) if redis => Outcome::Failed(format!(
                "redis: {}",
                String::from_utf8_lossy(&r.body).chars().take(200).collect::<String>()
            )),
            Some(s) => Outcome::Failed(format!("status {s}")),
            None if r.timed_out => Outcome::Failed("timeout".into()),
            None => Outcome::Failed("unreachable".into()),
        };
        let (response_code, response_message, is_success) = match &answer {
            Outcome::Delivered => ("delivered".to_string(), None, true),
            Outcome::Failed(reason) => ("failed".to_string(), Some(reason.clone()), false),
        };
        Judged { answer, response_code, response_message, is_success }
    }

    /// `stepwise_deliveries{subscription, result}` and
    /// `stepwise_delivery_duration_seconds{subscription}`.
    fn observe(&self, metrics: &mut metrics::Batch, judged: &Judged<Outcome>, r: &CallResult) {
        metrics.inc(subscriptions::DELIVERIES, &[("subscription", self.id()), ("result", &judged.response_code)], 1);
        metrics.observe(subscriptions::DELIVERY_SECONDS, &[("subscription", self.id())], r.duration_ms as f64 / 1e3);
    }
}
