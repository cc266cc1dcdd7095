//! Event subscriptions (CONTRACT section 11): `POST|GET /api/subscriptions`,
//! `GET|PATCH|DELETE /api/subscriptions/{id}`, `GET .../deliveries`,
//! `POST .../replay`. The machine is the engine's; the tick delivers. Answers
//! are built from the view types below, which the OpenAPI document is
//! generated from; a webhook's signing secret is shown once, at creation.

use serde::{Deserialize, Serialize};
use spin_sdk::http::{Params, Request};
use stepwise_engine::machine::Machine;
use stepwise_engine::subscription::{self as sub, DeliveryPolicy, Destination, Next, Signal, Subscription, Types};
use stepwise_engine::time::rfc3339;
use stepwise_store::{outbox, subscriptions, Db, StoreError};
use stepwise_web::auth::random_bytes;
use stepwise_web::{
    json_body, limit, now_ms, param, path_param, query, variable, view_response, ApiError, ApiResult, Caller,
};

/// `POST /api/subscriptions`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// `webhook` or `redis_stream`.
    kind: String,
    /// A webhook's URL, or `redis://host:port`; its origin must be in
    /// `event_destinations` (else 422).
    url: String,
    /// A Redis stream's key (redis_stream only).
    #[serde(default)]
    stream: Option<String>,
    /// Event types (`transfer.completed`, ...), or `["*"]` for all.
    types: Vec<String>,
    /// Up to 200 characters.
    #[serde(default)]
    description: Option<String>,
}

/// `PATCH /api/subscriptions/{id}`: any of these.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSubscription {
    /// `paused` to pause, `active` to resume (also a disabled one).
    #[serde(default)]
    status: Option<String>,
    /// New types, or `["*"]`.
    #[serde(default)]
    types: Option<Vec<String>>,
}

/// `POST /api/subscriptions/{id}/replay`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// The first event to send again: it and every later one of the
    /// subscription's types go out again, with the same bodies and ids. At
    /// most `delivered_seq + 1`: a replay never skips an undelivered event.
    from_seq: i64,
}

/// A subscription as shown: never its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    /// `sub_` and 16 hex digits.
    id: String,
    /// `webhook` or `redis_stream`.
    kind: &'static str,
    url: String,
    /// A Redis stream's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    types: Vec<String>,
    description: Option<String>,
    /// `active`, `paused` or `disabled`.
    status: &'static str,
    /// Every event up to this `seq` is delivered (or not of its types).
    delivered_seq: i64,
    /// The outbox's last `seq` minus `delivered_seq`.
    lag: i64,
    /// Events delivered since it was made (replays count again).
    delivered: u64,
    /// The event being delivered or retried, and its attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<PendingView>,
    /// RFC 3339; null before the first success.
    last_success_at: Option<String>,
    /// RFC 3339: the first failure since the last success; null when not failing.
    failing_since: Option<String>,
    last_error: Option<LastErrorView>,
    /// RFC 3339, when disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_at: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// What this subscription's status allows: `pause`, `resume`, `replay`, `delete`.
    allowed_actions: Vec<&'static str>,
}

/// The event a subscription is delivering.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PendingView {
    seq: i64,
    attempt: u32,
    /// RFC 3339: when it is (or was) sent.
    at: String,
}

/// A subscription's last failure.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LastErrorView {
    seq: i64,
    /// RFC 3339.
    at: String,
    /// `status 500`, `timeout`, `unreachable`, or Redis's error.
    message: String,
}

impl SubscriptionView {
    fn of(s: &Subscription, head: i64) -> Self {
        let (url, stream) = match s.destination() {
            Destination::Webhook { url } => (url.clone(), None),
            Destination::RedisStream { url, stream } => (url.clone(), Some(stream.clone())),
        };
        let pending = match s.next() {
            Next::Deliver { delivery, at } => {
                Some(PendingView { seq: delivery.seq, attempt: delivery.attempt, at: rfc3339(*at) })
            }
            Next::Sending { flight } => {
                Some(PendingView { seq: flight.call.seq, attempt: flight.call.attempt, at: rfc3339(flight.sent_at) })
            }
            Next::Look { .. } | Next::CaughtUp => None,
        };
        let status = s.status();
        let allowed_actions = match status {
            sub::Status::Active => vec!["pause", "replay", "delete"],
            sub::Status::Paused | sub::Status::Disabled { .. } => vec!["resume", "replay", "delete"],
        };
        SubscriptionView {
            id: s.id().to_string(),
            kind: s.destination().kind(),
            url,
            stream,
            types: s.types().as_slice().to_vec(),
            description: s.description().map(str::to_string),
            status: status.as_str(),
            delivered_seq: s.cursor(),
            lag: s.lag(head),
            delivered: s.delivered(),
            pending,
            last_success_at: s.last_success_at().map(rfc3339),
            failing_since: s.failing_since().map(rfc3339),
            last_error: s.last_error().map(|e| LastErrorView {
                seq: e.seq,
                at: rfc3339(e.at),
                message: e.message.clone(),
            }),
            disabled_at: match status {
                sub::Status::Disabled { at } => Some(rfc3339(*at)),
                _ => None,
            },
            created_at: rfc3339(s.created_at()),
            allowed_actions,
        }
    }
}

/// The answer to `POST /api/subscriptions`: the subscription and, this
/// once, a webhook's signing secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSubscription {
    #[serde(flatten)]
    subscription: SubscriptionView,
    /// `whsec_` and base64: the Standard Webhooks signing secret (webhooks
    /// only); shown only here.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// `GET /api/subscriptions`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    /// By id.
    subscriptions: Vec<SubscriptionView>,
    /// Pass as `after` for the next page; null at the end.
    next_after: Option<String>,
}

/// One delivery attempt.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The attempt's request id (the request log's).
    request_id: i64,
    /// The `seq` of the event delivered.
    seq: i64,
    attempt: i64,
    /// `delivered`, `failed`, or `sending`.
    result: String,
    /// The HTTP status; for a Redis stream 200 (added) or 409 (already there).
    status_code: Option<i64>,
    error: Option<String>,
    latency_ms: Option<i64>,
    /// The first 256 bytes of the answer.
    response: Option<String>,
    /// RFC 3339.
    at: String,
}

/// `GET /api/subscriptions/{id}/deliveries`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    deliveries: Vec<DeliveryView>,
}

/// `event_destinations`, checked.
fn destinations() -> Result<Vec<String>, ApiError> {
    sub::parse_destinations(&variable("event_destinations")?)
        .map_err(|e| ApiError::internal("the variable event_destinations is invalid", e))
}

fn types(list: Vec<String>) -> Result<Types, ApiError> {
    Ok(Types::parse(list)?)
}

fn load(db: &Db, id: &str) -> Result<subscriptions::Stored, ApiError> {
    subscriptions::load(db, id)?.ok_or_else(|| ApiError::not_found(format!("no subscription {id}")))
}

/// `POST /api/subscriptions` (operate).
pub fn create(req: &Request, _: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let body: CreateSubscription = json_body(req)?;
    let destination = Destination::parse(&body.kind, &body.url, body.stream.as_deref())?;
    if !destination.allowed_by(&destinations()?) {
        return Err(ApiError::new(422, "destination_not_allowed", "url: its origin is not one of event_destinations"));
    }
    let types = types(body.types)?;
    if body.description.as_ref().is_some_and(|d| d.chars().count() > 200) {
        return Err(ApiError::bad_field("description", "must be at most 200 characters"));
    }
    let policy = DeliveryPolicy::from_variables(|name| spin_sdk::variables::get(name).ok())
        .map_err(|e| ApiError::internal("the event delivery variables are invalid", e))?;
    let webhook = matches!(destination, Destination::Webhook { .. });
    let secret = sub::secret_from(&random_bytes::<{ sub::SECRET_BYTES }>()?);
    let id = format!("sub_{}", hex::encode(random_bytes::<8>()?));
    let now = now_ms();
    let db = Db::open()?;
    let (s, head) = db.immediate(|db| {
        let head = outbox::head(db)?;
        let s = Subscription::new(
            &id,
            destination.clone(),
            types.clone(),
            body.description.clone(),
            secret.clone(),
            policy.clone(),
            head,
            now,
        );
        subscriptions::save(db, &s, None, now)?;
        caller.audit(db, vec![id.clone()], None, 201)?;
        Ok::<_, StoreError>((s, head))
    })?;
    let created =
        CreatedSubscription { subscription: SubscriptionView::of(&s, head), secret: webhook.then_some(secret) };
    view_response(201, &created)
}

/// `GET /api/subscriptions`.
pub fn list(req: &Request, _: &Params) -> ApiResult {
    let q = query(req, &["limit", "after"])?;
    let limit = limit(&q, 100, 1000)?;
    let db = Db::open()?;
    let (page, next) = subscriptions::list(&db, limit, param(&q, "after").filter(|a| !a.is_empty()))?;
    let head = outbox::head(&db)?;
    view_response(
        200,
        &SubscriptionList {
            subscriptions: page.iter().map(|s| SubscriptionView::of(s, head)).collect(),
            next_after: next,
        },
    )
}

/// `GET /api/subscriptions/{id}`.
pub fn detail(req: &Request, params: &Params) -> ApiResult {
    query(req, &[])?;
    let id = path_param(params, "id")?;
    let db = Db::open()?;
    let s = load(&db, &id)?;
    view_response(200, &SubscriptionView::of(&s.machine, outbox::head(&db)?))
}

/// Applies `signals` to one subscription, keeping a lease it holds (a
/// delivery in flight is still recorded), and audits the change.
fn change(id: &str, caller: &Caller, signals: Vec<Signal>) -> ApiResult {
    let now = now_ms();
    let db = Db::open()?;
    let (s, head) = db.immediate(|db| {
        let mut stored = load(db, id)?;
        for signal in signals.iter().cloned() {
            stored.machine.on_signal(signal, now).map_err(ApiError::from)?;
        }
        subscriptions::save(db, &stored.machine, stored.lease.as_ref(), now)?;
        caller.audit(db, vec![id.to_string()], None, 200)?;
        Ok::<_, ApiError>((stored.machine, outbox::head(db)?))
    })?;
    view_response(200, &SubscriptionView::of(&s, head))
}

/// `PATCH /api/subscriptions/{id}`: pause, resume, types.
pub fn patch(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let id = path_param(params, "id")?;
    let body: PatchSubscription = json_body(req)?;
    let mut signals = Vec::new();
    if let Some(t) = body.types {
        signals.push(Signal::SetTypes(types(t)?));
    }
    match body.status.as_deref() {
        None => {}
        Some("paused") => signals.push(Signal::Pause),
        Some("active") => signals.push(Signal::Resume),
        Some(_) => return Err(ApiError::bad_field("status", "must be paused or active")),
    }
    if signals.is_empty() {
        return Err(ApiError::bad_field("body", "give status, types or both"));
    }
    change(&id, caller, signals)
}

/// `POST /api/subscriptions/{id}/replay`.
pub fn replay(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let id = path_param(params, "id")?;
    let body: Replay = json_body(req)?;
    change(&id, caller, vec![Signal::Replay { from_seq: body.from_seq }])
}

/// `DELETE /api/subscriptions/{id}`: gone at once; a delivery in flight is
/// not recorded.
pub fn delete(req: &Request, params: &Params, caller: &Caller) -> ApiResult {
    query(req, &[])?;
    let id = path_param(params, "id")?;
    let db = Db::open()?;
    let (s, head) = db.immediate(|db| {
        let s = load(db, &id)?;
        subscriptions::delete(db, &id)?;
        caller.audit(db, vec![id.clone()], None, 200)?;
        Ok::<_, ApiError>((s.machine, outbox::head(db)?))
    })?;
    view_response(200, &SubscriptionView::of(&s, head))
}

/// `GET /api/subscriptions/{id}/deliveries?limit=`.
pub fn deliveries(req: &Request, params: &Params) -> ApiResult {
    let q = query(req, &["limit"])?;
    let limit = limit(&q, 50, 500)?;
    let id = path_param(params, "id")?;
    let db = Db::open()?;
    load(&db, &id)?;
    let deliveries = subscriptions::attempts(&db, &id, limit)?
        .into_iter()
        .map(|a| DeliveryView {
            request_id: a.id,
            seq: a.seq,
            attempt: a.attempt,
            result: a.result,
            status_code: a.status_code,
            error: a.error,
            latency_ms: a.latency_ms,
            response: a.response,
            at: rfc3339(a.at),
        })
        .collect();
    view_response(200, &DeliveryList { deliveries })
}
