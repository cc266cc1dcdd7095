//! Event subscriptions (CONTRACT section 11): a durable machine per
//! subscription that delivers the outbox's events to one destination, in
//! `seq` order, at least once, one delivery in flight at a time.
//!
//! The machine keeps a cursor: every event up to it has been delivered or
//! is not of a type the subscription takes. The store looks for the next
//! event after the cursor ([`Signal::Looked`]) when the machine asks
//! ([`Subscription::wants_look`]); the machine then delivers it, retries it
//! with backoff and jitter until it is taken, and moves on. A subscription
//! that has had no success for its disable window is disabled and says so
//! with a `subscription.disabled` event ([`Effect::Disabled`]).
//!
//! Webhook deliveries are signed as Standard Webhooks says ([`signature`]);
//! Redis stream entries take the event's `seq` as their id, so Redis itself
//! refuses a second copy.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::machine::{InFlight, Kind, Machine, Step};
use crate::time::Millis;
use crate::{Error, FieldError};

/// The prefix of a webhook subscription's signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a signing secret.
pub const SECRET_BYTES: usize = 24;

/// The retry delays after the 1st, 2nd, ... failure of one event, in ms
/// (about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; the last repeats).
pub const DEFAULT_RETRY_MS: [u64; 7] = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];

/// How long a subscription may fail without a success before it is disabled (3 days).
pub const DEFAULT_DISABLE_AFTER_MS: u64 = 3 * 86_400_000;

/// How long one delivery may take, by default.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The most event types one subscription names.
pub const MAX_TYPES: usize = 50;

/// The event type a disabled subscription appends.
pub const DISABLED_EVENT: &str = "subscription.disabled";

/// Where a subscription's events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Destination {
    /// HTTP POSTs to `url`, signed.
    Webhook {
        /// The URL (its origin is one of `event_destinations`).
        url: String,
    },
    /// `XADD <stream> <seq>-0` on the Redis at `url`.
    RedisStream {
        /// `redis://host:port`.
        url: String,
        /// The stream's key.
        stream: String,
    },
}

impl Destination {
    /// Its kind as the API names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Webhook { .. } => "webhook",
            Destination::RedisStream { .. } => "redis_stream",
        }
    }

    /// The destination's URL: the webhook's, or the Redis server's (`redis://host:port`).
    pub fn url(&self) -> &str {
        match self {
            Destination::Webhook { url } | Destination::RedisStream { url, .. } => url,
        }
    }

    /// Checks a destination from the API: the URL's form for its kind, and
    /// no credentials in it. Whether it may be used is [`Destination::allowed_by`].
    pub fn parse(kind: &str, url: &str, stream: Option<&str>) -> Result<Destination, FieldError> {
        let parsed = url::Url::parse(url).map_err(|e| FieldError::new("url", format!("not a URL: {e}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(FieldError::new("url", "must not carry credentials"));
        }
        let dest = match kind {
            "webhook" => {
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(FieldError::new("url", "a webhook URL starts with http:// or https://"));
                }
                if parsed.fragment().is_some() {
                    return Err(FieldError::new("url", "must not have a fragment"));
                }
                if stream.is_some() {
                    return Err(FieldError::new("stream", "only a redis_stream subscription has a stream"));
                }
                Destination::Webhook { url: parsed.to_string() }
            }
            "redis_stream" => {
                if parsed.scheme() != "redis"
                    || parsed.port().is_none()
                    || !matches!(parsed.path(), "" | "/")
                    || parsed.query().is_some()
                {
                    return Err(FieldError::new("url", "a Redis stream's URL is redis://host:port"));
                }
                let stream =
                    stream.ok_or_else(|| FieldError::new("stream", "is required for a redis_stream subscription"))?;
                if stream.is_empty() || stream.len() > 128 || !stream.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(FieldError::new("stream", "must be 1 to 128 printable ASCII characters"));
                }
                Destination::RedisStream { url: origin_of(&parsed), stream: stream.to_string() }
            }
            _ => return Err(FieldError::new("kind", "must be webhook or redis_stream")),
        };
        Ok(dest)
    }

    /// Whether its origin is one of `allowed` (the `event_destinations`).
    pub fn allowed_by(&self, allowed: &[String]) -> bool {
        allowed_origin(self.url(), allowed)
    }
}

/// `scheme://host:port`, with the scheme's default port made explicit.
fn origin_of(u: &url::Url) -> String {
    let host = u.host_str().unwrap_or_default();
    match u.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    }
}

/// Whether `url`'s origin is one of `allowed` (origins compared with their
/// default ports made explicit, hosts case-insensitively).
pub fn allowed_origin(url: &str, allowed: &[String]) -> bool {
    let Ok(u) = url::Url::parse(url) else { return false };
    let origin = origin_of(&u);
    allowed.iter().filter_map(|a| url::Url::parse(a).ok()).any(|a| origin_of(&a) == origin)
}

/// Reads `event_destinations`: comma-separated origins (`scheme://host[:port]`,
/// no path). An origin on the reserved `.invalid` domain (RFC 6761: it never
/// resolves) stands for none: the manifest's default is one, because Spin
/// refuses an `allowed_outbound_hosts` entry that a variable leaves empty.
pub fn parse_destinations(list: &str) -> Result<Vec<String>, FieldError> {
    let fault = |m: String| FieldError::new("event_destinations", m);
    let mut out = Vec::new();
    for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let u = url::Url::parse(s).map_err(|e| fault(format!("{s:?} is not an origin: {e}")))?;
        let bare = matches!(u.path(), "" | "/")
            && u.query().is_none()
            && u.fragment().is_none()
            && u.username().is_empty()
            && u.password().is_none();
        let Some(host) = u.host_str().filter(|_| bare && matches!(u.scheme(), "http" | "https" | "redis")) else {
            return Err(fault(format!("{s:?} must be an origin: http(s)://host[:port] or redis://host:port")));
        };
        if host != "invalid" && !host.ends_with(".invalid") {
            out.push(s.trim_end_matches('/').to_string());
        }
    }
    Ok(out)
}

/// The event types a subscription takes: `["*"]` for all, or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Types(Vec<String>);

impl Types {
    /// Checks a list from the API: `["*"]` alone, or 1 to [`MAX_TYPES`]
    /// type names of 1-64 characters `[a-z0-9._-]`, each once.
    pub fn parse(types: Vec<String>) -> Result<Types, FieldError> {
        if types == ["*"] {
            return Ok(Types(types));
        }
        if types.is_empty() || types.len() > MAX_TYPES {
            return Err(FieldError::new("types", format!("must be [\"*\"] or 1 to {MAX_TYPES} event types")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &types {
            let ok = (1..=64).contains(&t.len())
                && t.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
            if !ok {
                return Err(FieldError::new(
                    "types",
                    format!("{t:?} is not an event type (1-64 of a-z 0-9 . _ -; \"*\" only alone)"),
                ));
            }
            if !seen.insert(t) {
                return Err(FieldError::new("types", format!("{t:?} is named twice")));
            }
        }
        Ok(Types(types))
    }

    /// Every type, or `None` for all.
    pub fn names(&self) -> Option<&[String]> {
        (self.0 != ["*"]).then_some(&self.0)
    }

    /// As the API shows them.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// How deliveries are retried and when a failing subscription is disabled,
/// fixed at creation from the variables (as a worker's policy is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPolicy {
    /// Delays after the 1st, 2nd, ... failure of one event; the last repeats.
    pub retry_ms: Vec<u64>,
    /// No success for this long disables the subscription.
    pub disable_after_ms: u64,
    /// How long one delivery may take before it counts as failed.
    pub timeout_ms: u64,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            retry_ms: DEFAULT_RETRY_MS.to_vec(),
            disable_after_ms: DEFAULT_DISABLE_AFTER_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

impl DeliveryPolicy {
    /// Reads `event_retry_ms` (comma-separated delays, 1 ms to 1 day each,
    /// 1 to 20 of them), `event_disable_after_ms` (1 s to 30 days) and
    /// `event_timeout_ms` (100 ms to 60 s); an empty or missing variable
    /// keeps the default.
    pub fn from_variables(get: impl Fn(&str) -> Option<String>) -> Result<Self, FieldError> {
        let mut p = Self::default();
        if let Some(list) = get("event_retry_ms").filter(|v| !v.trim().is_empty()) {
            let delays: Result<Vec<u64>, _> = list.split(',').map(|d| d.trim().parse::<u64>()).collect();
            match delays {
                Ok(d) if (1..=20).contains(&d.len()) && d.iter().all(|ms| (1..=86_400_000).contains(ms)) => {
                    p.retry_ms = d
                }
                _ => {
                    return Err(FieldError::new(
                        "event_retry_ms",
                        format!("must be 1 to 20 comma-separated delays of 1 to 86400000 ms, not {list:?}"),
                    ))
                }
            }
        }
        if let Some(v) = get("event_disable_after_ms").filter(|v| !v.trim().is_empty()) {
            match v.trim().parse::<u64>() {
                Ok(ms) if (1_000..=30 * 86_400_000).contains(&ms) => p.disable_after_ms = ms,
                _ => {
                    return Err(FieldError::new(
                        "event_disable_after_ms",
                        format!("must be 1000 to 2592000000 ms, not {v:?}"),
                    ))
                }
            }
        }
        if let Some(v) = get("event_timeout_ms").filter(|v| !v.trim().is_empty()) {
            match v.trim().parse::<u64>() {
                Ok(ms) if (100..=60_000).contains(&ms) => p.timeout_ms = ms,
                _ => return Err(FieldError::new("event_timeout_ms", format!("must be 100 to 60000 ms, not {v:?}"))),
            }
        }
        Ok(p)
    }

    /// The delay after the `failures`-th failure of one event, spread by
    /// up to ±20 % with `spread` (any number; the same number gives the
    /// same delay), so that subscriptions failing together do not retry
    /// together.
    pub fn delay_ms(&self, failures: u32, spread: u64) -> u64 {
        let i = (failures.max(1) as usize - 1).min(self.retry_ms.len().saturating_sub(1));
        let base = self.retry_ms.get(i).copied().unwrap_or(DEFAULT_RETRY_MS[0]);
        // 80 % to 120 %, in 41 steps.
        let percent = 80 + spread % 41;
        (base.saturating_mul(percent) / 100).max(1)
    }
}

/// Whether the subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Delivering its events in `seq` order, one at a time.
    Active,
    /// Paused by an operator: nothing is sent until resumed.
    Paused,
    /// No success for the disable window: nothing is sent until resumed.
    Disabled {
        /// When it was disabled: at the first failure `disable_after_ms` or more after failing began.
        at: Millis,
    },
}

impl Status {
    /// The stored and shown name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Disabled { .. } => "disabled",
        }
    }
}

/// One delivery: an event and its attempt number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The event's `seq`.
    pub seq: i64,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// What the subscription does next about its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "next", rename_all = "snake_case")]
pub enum Next {
    /// Look for the next event after the cursor (due since `since`).
    Look {
        /// When it became due to look (made, delivered, resumed, retyped or replayed).
        since: Millis,
    },
    /// Looked: none after the cursor. Woken when the outbox grows.
    CaughtUp,
    /// Deliver this event at `at`.
    Deliver {
        /// The event to send and its attempt number.
        delivery: Delivery,
        /// When the attempt is due; a retry waits the retry delay after the failure.
        at: Millis,
    },
    /// A delivery sent and not yet answered.
    Sending {
        /// The delivery sent and not yet answered, with its request id.
        flight: InFlight<Delivery>,
    },
}

/// The last failure, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// The `seq` of the event whose delivery failed.
    pub seq: i64,
    /// When the failed answer (or time-out) was recorded.
    pub at: Millis,
    /// What happened (`status 500`, `timeout`, `unreachable`, ...).
    pub message: String,
}

/// What a delivery came to, as judged from the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken (a 2xx; for a Redis stream, added or already there).
    Delivered,
    /// Not taken: retried later.
    Failed(String),
}

/// An outside event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The store looked for the next event after the cursor: `next` is the
    /// first one of the subscription's types, or none up to `head`.
    Looked {
        /// The next event's `seq`.
        next: Option<i64>,
        /// The outbox's last `seq` when it looked.
        head: i64,
    },
    /// Stop delivering (a delivery in flight is still recorded).
    Pause,
    /// Deliver again (from where it stopped), after a pause or a disable.
    Resume,
    /// Take these types from now on.
    SetTypes(Types),
    /// Deliver again from `from_seq` on: the same bodies and ids.
    Replay {
        /// The first event to send again.
        from_seq: i64,
    },
}

/// Something the store does in the same transaction as the save.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Append `subscription.disabled` to the outbox.
    Disabled {
        /// The disabled subscription's id (the event's `subscription_id`).
        id: String,
        /// The failing event.
        seq: i64,
        /// Since when it failed.
        failing_since: Millis,
    },
}

/// Pushes the outbox's events of its types to one destination, at least once, in `seq` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    id: String,
    destination: Destination,
    types: Types,
    description: Option<String>,
    /// The signing secret (`whsec_...`); never shown after creation.
    secret: String,
    policy: DeliveryPolicy,
    created_at: Millis,
    updated_at: Millis,
    status: Status,
    /// Every event up to this `seq` is delivered or not of its types.
    cursor: i64,
    next: Next,
    delivered: u64,
    last_success_at: Option<Millis>,
    /// The first failure since the last success.
    failing_since: Option<Millis>,
    last_error: Option<LastError>,
    #[serde(skip)]
    effects: Vec<Effect>,
}

impl Subscription {
    /// A new subscription at `now`, delivering events after `after` (the
    /// outbox's head when it is made: it takes what comes next).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &str,
        destination: Destination,
        types: Types,
        description: Option<String>,
        secret: String,
        policy: DeliveryPolicy,
        after: i64,
        now: Millis,
    ) -> Self {
        Self {
            id: id.to_string(),
            destination,
            types,
            description,
            secret,
            policy,
            created_at: now,
            updated_at: now,
            status: Status::Active,
            cursor: after,
            next: Next::Look { since: now },
            delivered: 0,
            last_success_at: None,
            failing_since: None,
            last_error: None,
            effects: Vec::new(),
        }
    }

    /// Where it delivers.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }
    /// The event types it delivers: `*`, or up to [`MAX_TYPES`] names.
    pub fn types(&self) -> &Types {
        &self.types
    }
    /// The operator's free text, if one was given; never read by the engine.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// How its deliveries are retried and bounded.
    pub fn policy(&self) -> &DeliveryPolicy {
        &self.policy
    }
    /// The signing secret (for signing only).
    pub fn secret(&self) -> &str {
        &self.secret
    }
    /// Active, paused by an operator, or disabled after failing past the disable window.
    pub fn status(&self) -> &Status {
        &self.status
    }
    /// Every event up to this `seq` is delivered or not of its types.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }
    /// Events after its cursor when the outbox's last `seq` is `head`.
    pub fn lag(&self, head: i64) -> i64 {
        (head - self.cursor).max(0)
    }
    /// What it does next.
    pub fn next(&self) -> &Next {
        &self.next
    }
    /// Successful deliveries since it was made (an event replayed counts again).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
    /// When it last delivered.
    pub fn last_success_at(&self) -> Option<Millis> {
        self.last_success_at
    }
    /// Since when it fails, if it does.
    pub fn failing_since(&self) -> Option<Millis> {
        self.failing_since
    }
    /// The last failed delivery; kept after later successes.
    pub fn last_error(&self) -> Option<&LastError> {
        self.last_error.as_ref()
    }
    /// When it was made.
    pub fn created_at(&self) -> Millis {
        self.created_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> Millis {
        self.updated_at
    }

    /// Whether the store should look for its next event before polling it.
    pub fn wants_look(&self) -> bool {
        self.status == Status::Active && matches!(self.next, Next::Look { .. } | Next::CaughtUp)
    }

    /// The `webhook-id` of an event: unique per event and subscription, the
    /// same on every attempt and replay.
    pub fn message_id(&self, seq: i64) -> String {
        format!("{}_{seq}", self.id)
    }

    /// The Redis stream entry id of an event.
    pub fn entry_id(seq: i64) -> String {
        format!("{seq}-0")
    }

    /// A number that spreads this event's retries (see [`DeliveryPolicy::delay_ms`]).
    fn spread(&self, d: &Delivery) -> u64 {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(self.id.as_bytes())
            .chain_update(d.seq.to_le_bytes())
            .chain_update(d.attempt.to_le_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }

    fn delivery_in_flight(&self) -> Option<&Delivery> {
        match &self.next {
            Next::Sending { flight } => Some(&flight.call),
            _ => None,
        }
    }
}

/// The Standard Webhooks signature of a message: `v1,` and the base64
/// HMAC-SHA256, keyed with the secret's bytes (after `whsec_`), of
/// `{id}.{timestamp}.{body}`.
pub fn signature(secret: &str, id: &str, timestamp_s: i64, body: &[u8]) -> Result<String, Error> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|e| Error::Corrupt(format!("signing secret: {e}")))?;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|e| Error::Corrupt(format!("signing secret: {e}")))?;
    mac.update(format!("{id}.{timestamp_s}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", b64.encode(mac.finalize().into_bytes())))
}

/// A secret from [`SECRET_BYTES`] random bytes.
pub fn secret_from(random: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(random))
}

impl Machine for Subscription {
    type Call = Delivery;
    type Answer = Outcome;
    type Signal = Signal;
    type Effect = Effect;

    const KIND: Kind = Kind::Subscription;

    fn id(&self) -> &str {
        &self.id
    }

    fn run(&self) -> u64 {
        1
    }

    fn state_name(&self) -> &'static str {
        self.status.as_str()
    }

    fn poll(&mut self, now: Millis) -> Step<Delivery> {
        match (&self.status, &self.next) {
            // A delivery whose answer was never recorded (its lease ran
            // out): sent again, with the same id, while active; otherwise
            // it waits for the resume.
            (Status::Active, Next::Sending { flight }) => Step::Resend(flight.clone()),
            (_, Next::Sending { flight }) => {
                let delivery = flight.call.clone();
                self.next = Next::Deliver { delivery, at: now };
                Step::Idle
            }
            (Status::Active, Next::Deliver { delivery, at }) if *at <= now => Step::Call(delivery.clone()),
            (Status::Active, Next::Deliver { at, .. }) => Step::Wait(*at),
            _ => Step::Idle,
        }
    }

    fn begin(&mut self, call: Delivery, request_id: String, now: Millis) -> Result<(), Error> {
        self.next = Next::Sending { flight: InFlight { call, request_id, sent_at: now } };
        self.updated_at = now;
        Ok(())
    }

    fn on_answer(&mut self, request_id: &str, answer: Outcome, now: Millis) -> Result<(), Error> {
        let delivery = match &self.next {
            Next::Sending { flight } if flight.request_id == request_id => flight.call.clone(),
            _ => return Err(Error::Stale(format!("subscription {} has no delivery {request_id} in flight", self.id))),
        };
        self.updated_at = now;
        match answer {
            Outcome::Delivered => {
                self.cursor = self.cursor.max(delivery.seq);
                self.delivered += 1;
                self.last_success_at = Some(now);
                self.failing_since = None;
                self.next = Next::Look { since: now };
            }
            Outcome::Failed(message) => {
                let since = *self.failing_since.get_or_insert(now);
                self.last_error = Some(LastError { seq: delivery.seq, at: now, message });
                let again = Delivery { seq: delivery.seq, attempt: delivery.attempt.saturating_add(1) };
                if now.saturating_sub(since) >= self.policy.disable_after_ms as i64 && self.status == Status::Active {
                    self.status = Status::Disabled { at: now };
                    self.effects.push(Effect::Disabled {
                        id: self.id.clone(),
                        seq: delivery.seq,
                        failing_since: since,
                    });
                    self.next = Next::Deliver { delivery: again, at: now };
                } else {
                    let at = now.saturating_add(self.policy.delay_ms(delivery.attempt, self.spread(&delivery)) as i64);
                    self.next = Next::Deliver { delivery: again, at };
                }
            }
        }
        Ok(())
    }

    fn on_signal(&mut self, signal: Signal, now: Millis) -> Result<(), Error> {
        match signal {
            Signal::Looked { next, head } => {
                if !self.wants_look() {
                    return Ok(());
                }
                match next {
                    Some(seq) if seq > self.cursor => {
                        // Every event between the cursor and it is of other types.
                        self.cursor = seq - 1;
                        self.next = Next::Deliver { delivery: Delivery { seq, attempt: 1 }, at: now };
                    }
                    _ => {
                        self.cursor = self.cursor.max(head);
                        self.next = Next::CaughtUp;
                    }
                }
                return Ok(());
            }
            Signal::Pause => match self.status {
                Status::Active => self.status = Status::Paused,
                Status::Paused => {}
                Status::Disabled { .. } => {
                    return Err(Error::Conflict("the subscription is disabled: resume it".into()))
                }
            },
            Signal::Resume => {
                if self.status != Status::Active {
                    self.status = Status::Active;
                    // A fresh start: the disable window counts from the next failure.
                    self.failing_since = None;
                    match &mut self.next {
                        Next::Deliver { at, .. } => *at = now,
                        // Events may have come while it was held: look.
                        Next::CaughtUp => self.next = Next::Look { since: now },
                        Next::Look { .. } | Next::Sending { .. } => {}
                    }
                }
            }
            Signal::SetTypes(types) => {
                self.types = types;
                if matches!(self.next, Next::CaughtUp) {
                    self.next = Next::Look { since: now };
                }
            }
            Signal::Replay { from_seq } => {
                if from_seq < 1 {
                    return Err(FieldError::new("from_seq", "must be 1 or more").into());
                }
                // A replay sends again what was sent; a later start would
                // pass over events not yet delivered.
                if from_seq > self.cursor.saturating_add(1) {
                    let last = self.cursor.saturating_add(1);
                    return Err(FieldError::new(
                        "from_seq",
                        format!("must be at most {last}: a replay never passes over an event not yet delivered"),
                    )
                    .into());
                }
                if self.delivery_in_flight().is_some() {
                    return Err(Error::Conflict("a delivery is in flight: replay once it is answered".into()));
                }
                self.cursor = from_seq - 1;
                self.next = Next::Look { since: now };
            }
        }
        self.updated_at = now;
        Ok(())
    }

    fn next_due(&self) -> Option<Millis> {
        match (&self.status, &self.next) {
            (_, Next::Sending { flight }) => Some(flight.sent_at),
            (Status::Active, Next::Look { since }) => Some(*since),
            (Status::Active, Next::Deliver { at, .. }) => Some(*at),
            _ => None,
        }
    }

    fn drain_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn calling(&self) -> bool {
        matches!(self.next, Next::Sending { .. })
    }
}

#[cfg(test)]
mod tests;
