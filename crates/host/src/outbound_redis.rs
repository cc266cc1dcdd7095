//! Outbound Redis (`fermyon:spin/redis@2.0.0`, spin-sdk 5.2's
//! `spin_sdk::redis`), a capability (see `crate::capability`) served as
//! Spin 4.0.2 serves it (`crates/factor-outbound-redis`):
//!
//! - `open(address)` is refused with `invalid-address` unless the component's
//!   `allowed_outbound_hosts` admits `redis://host:port` (6379 by default),
//!   checked with the same matcher as outbound HTTP ([`AllowedHosts`]);
//!   an address that is not a `redis://` URL (TLS, Unix sockets, junk) is
//!   `invalid-address` too. A refusal is logged with the host and port only,
//!   never the URL's password.
//! - Each opened resource is one multiplexed connection of its own (as in
//!   Spin), closed when the guest drops it or the instance ends; nothing is
//!   shared between resources or instances, so connection state a guest sets
//!   through `execute` (`SELECT`, `MULTI`, `CLIENT SETNAME`) stays its own.
//! - Unlike Spin, connecting and every command are bounded in time
//!   ([`CONNECT_TIMEOUT`], [`RESPONSE_TIMEOUT`]): a Redis that stops answering
//!   fails the call with an `other` error instead of holding the guest, and an
//!   instance holds at most [`MAX_OPEN_PER_INSTANCE`] connections at once.
//! - `execute` sends any command; its reply is flattened into a list as
//!   Spin does (see [`Replies`]). A Redis error reply is `other` with the
//!   `redis` crate's text of it, e.g. `An error was signalled by the server -
//!   ResponseError: The ID specified in XADD is equal or smaller than the
//!   target stream top item`; a broken or refused connection is `other` with
//!   the I/O error's text instead.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, ConnectionAddr, FromRedisValue, Value};
use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::fermyon::spin::redis as wit;
use crate::capability::{AppContext, Capability, ComponentContext};
use crate::outbound_http::AllowedHosts;
use crate::state::InstanceState;

/// How long `open` may take: TCP connect, plus `AUTH` / `SELECT` when the
/// address names a password or a database.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one command may wait for its reply; a blocking command
/// (`BLPOP`, `XREAD BLOCK`) that waits longer fails with a time-out.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one instance may hold open at once; past it `open` answers
/// `too-many-connections` (Spin's limit is its resource table's 1,024).
pub const MAX_OPEN_PER_INSTANCE: usize = 16;
/// The largest reply a `get` or `execute` hands to the guest, counted as
/// Spin counts it (`MAX_HOST_BUFFERED_BYTES`, 128 MiB).
const MAX_REPLY_BYTES: usize = 128 << 20;

/// The outbound Redis capability. It has no configuration of its own: the
/// guest names the address, and each component's allow-list decides.
pub struct OutboundRedis {
    connect_timeout: Duration,
    response_timeout: Duration,
}

/// A component's share: who it is (for logs) and what it may reach.
#[derive(Clone, Default)]
pub struct RedisComponent {
    redis: Option<Arc<OutboundRedis>>,
    allowed: Arc<AllowedHosts>,
    component: Arc<str>,
}

/// One instance's state: its component's share and how many of its
/// connections are open.
pub struct RedisInstance {
    share: RedisComponent,
    open: usize,
}

/// An open connection in an instance's resource table; dropping the last
/// handle of a multiplexed connection closes its socket.
pub struct RedisConnection {
    conn: MultiplexedConnection,
}

impl Capability for OutboundRedis {
    const NAME: &'static str = "outbound-redis";
    type Component = RedisComponent;
    type Instance = RedisInstance;

    fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
        wit::add_to_linker::<_, HasSelf<InstanceState>>(linker, |s| s)
    }

    fn configure(_app: &AppContext<'_>) -> Result<Self> {
        Ok(Self { connect_timeout: CONNECT_TIMEOUT, response_timeout: RESPONSE_TIMEOUT })
    }

    fn configure_component(self: &Arc<Self>, c: &ComponentContext<'_>) -> Result<RedisComponent> {
        Ok(RedisComponent { redis: Some(self.clone()), allowed: c.allowed_hosts.clone(), component: c.id.into() })
    }

    fn new_instance(component: &RedisComponent) -> RedisInstance {
        RedisInstance { share: component.clone(), open: 0 }
    }
}

/// Why `open` refused an address before connecting.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum Refused {
    /// Not a URL the `redis` crate reads as `redis://host[:port][/db]`.
    #[error("not a redis://host:port address")]
    Unreadable,
    /// A TLS or Unix-socket address: the runner connects over plain TCP only.
    #[error("only redis:// over TCP is supported")]
    Unsupported,
    /// Readable, but the component's `allowed_outbound_hosts` does not admit it.
    #[error("redis://{host}:{port} is not in the component's allowed_outbound_hosts")]
    NotAllowed { host: String, port: u16 },
}

/// Reads `address` and checks it against the allow-list, as Spin's
/// `check_url(address, "redis")`: what is checked is the host and port the
/// `redis` crate will connect to, so the two cannot disagree.
fn admit(address: &str, allowed: &AllowedHosts) -> Result<redis::Client, Refused> {
    let scheme = address.split_once("://").map(|(s, _)| s).ok_or(Refused::Unreadable)?;
    if !scheme.eq_ignore_ascii_case("redis") {
        return Err(Refused::Unsupported);
    }
    let client = redis::Client::open(address).map_err(|_| Refused::Unreadable)?;
    match &client.get_connection_info().addr {
        ConnectionAddr::Tcp(host, port) => {
            if allowed.allows("redis", host, *port) {
                Ok(client)
            } else {
                let host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
                Err(Refused::NotAllowed { host, port: *port })
            }
        }
        _ => Err(Refused::Unsupported),
    }
}

/// The guest-visible error for a failed command or connection: its text, as
/// Spin gives it (`error::other(string)`).
fn other(e: impl std::fmt::Display) -> wit::Error {
    wit::Error::Other(e.to_string())
}

/// The `execute` reply as Spin hands it to the guest: one flat list, arrays
/// and sets spliced in depth-first (so `XRANGE` gives id, field, value, id,
/// ...), `OK` and other simple strings as `status`, integers and booleans as
/// `int64`, bulk strings as `binary`, doubles and big numbers as their
/// decimal text in `binary`, nil as `nil`. Maps, attributes, verbatim
/// strings and pushes (RESP3 only) are a type error, as in Spin.
#[derive(Debug)]
pub struct Replies(pub Vec<wit::RedisResult>);

impl FromRedisValue for Replies {
    fn from_redis_value(value: &Value) -> redis::RedisResult<Self> {
        fn unsupported(detail: &str) -> redis::RedisError {
            redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "Could not convert Redis response",
                detail.to_string(),
            ))
        }
        fn append(out: &mut Vec<wit::RedisResult>, value: &Value) -> redis::RedisResult<()> {
            match value {
                Value::Nil => out.push(wit::RedisResult::Nil),
                Value::Int(v) => out.push(wit::RedisResult::Int64(*v)),
                Value::BulkString(bytes) => out.push(wit::RedisResult::Binary(bytes.clone())),
                Value::SimpleString(s) => out.push(wit::RedisResult::Status(s.clone())),
                Value::Okay => out.push(wit::RedisResult::Status("OK".to_string())),
                Value::Array(items) | Value::Set(items) => return items.iter().try_for_each(|v| append(out, v)),
                Value::Double(v) => out.push(wit::RedisResult::Binary(v.to_string().into_bytes())),
                Value::Boolean(v) => out.push(wit::RedisResult::Int64(i64::from(*v))),
                Value::BigNumber(v) => out.push(wit::RedisResult::Binary(v.to_string().into_bytes())),
                Value::Map(_) => return Err(unsupported("Redis Map type is not supported")),
                Value::Attribute { .. } => return Err(unsupported("Redis Attribute type is not supported")),
                Value::VerbatimString { .. } => {
                    return Err(unsupported("Redis string with format attribute is not supported"))
                }
                Value::Push { .. } => return Err(unsupported("Redis Pub/Sub types are not supported")),
                Value::ServerError(e) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::ResponseError,
                        "Server error",
                        format!("{e:?}"),
                    )))
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        append(&mut out, value)?;
        Ok(Replies(out))
    }
}

impl Replies {
    /// The bytes Spin counts against its limit for these replies.
    fn size(&self) -> usize {
        let each = size_of::<wit::RedisResult>();
        size_of::<Vec<wit::RedisResult>>()
            + self
                .0
                .iter()
                .map(|r| match r {
                    wit::RedisResult::Nil | wit::RedisResult::Int64(_) => each,
                    wit::RedisResult::Binary(b) => each + b.len(),
                    wit::RedisResult::Status(s) => each + s.len(),
                })
                .sum::<usize>()
    }
}

fn too_large() -> wit::Error {
    wit::Error::Other(format!("query result exceeds limit of {MAX_REPLY_BYTES} bytes"))
}

/// A handle on the connection behind `this` (a clone: the multiplexed
/// connection is shared by its handles, so no borrow of the table is held
/// across the command).
fn connection(state: &InstanceState, this: &Resource<RedisConnection>) -> Result<MultiplexedConnection, wit::Error> {
    state.table.get(this).map(|c| c.conn.clone()).map_err(|_| other("could not find connection for resource"))
}

impl wit::Host for InstanceState {}

impl wit::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Result<Resource<RedisConnection>, wit::Error> {
        let instance = &self.caps.redis;
        let Some(redis) = instance.share.redis.clone() else {
            return Err(other("outbound Redis is not available to this component"));
        };
        let client = match admit(&address, &instance.share.allowed) {
            Ok(client) => client,
            Err(refused) => {
                tracing::warn!(
                    component = %instance.share.component,
                    reason = %refused,
                    "outbound Redis connection refused"
                );
                return Err(wit::Error::InvalidAddress);
            }
        };
        if instance.open >= MAX_OPEN_PER_INSTANCE {
            return Err(wit::Error::TooManyConnections);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(redis.connect_timeout)
            .set_response_timeout(redis.response_timeout);
        let conn = client.get_multiplexed_async_connection_with_config(&config).await.map_err(other)?;
        let resource = self.table.push(RedisConnection { conn }).map_err(|_| wit::Error::TooManyConnections)?;
        self.caps.redis.open += 1;
        Ok(resource)
    }

    async fn publish(
        &mut self,
        this: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), wit::Error> {
        let mut conn = connection(self, &this)?;
        let () = conn.publish(&channel, &payload).await.map_err(other)?;
        Ok(())
    }

    async fn get(&mut self, this: Resource<RedisConnection>, key: String) -> Result<Option<Vec<u8>>, wit::Error> {
        let mut conn = connection(self, &this)?;
        let value: Option<Vec<u8>> = conn.get(&key).await.map_err(other)?;
        if size_of::<Option<Vec<u8>>>() + value.as_ref().map_or(0, Vec::len) > MAX_REPLY_BYTES {
            return Err(too_large());
        }
        Ok(value)
    }

    async fn set(&mut self, this: Resource<RedisConnection>, key: String, value: Vec<u8>) -> Result<(), wit::Error> {
        let mut conn = connection(self, &this)?;
        let () = conn.set(&key, &value).await.map_err(other)?;
        Ok(())
    }

    async fn incr(&mut self, this: Resource<RedisConnection>, key: String) -> Result<i64, wit::Error> {
        let mut conn = connection(self, &this)?;
        conn.incr(&key, 1).await.map_err(other)
    }

    async fn del(&mut self, this: Resource<RedisConnection>, keys: Vec<String>) -> Result<u32, wit::Error> {
        let mut conn = connection(self, &this)?;
        conn.del(&keys).await.map_err(other)
    }

    async fn sadd(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, wit::Error> {
        let mut conn = connection(self, &this)?;
        // As Spin: only SADD tells a reply of the wrong type apart.
        conn.sadd(&key, &values).await.map_err(|e| {
            if e.kind() == redis::ErrorKind::TypeError {
                wit::Error::TypeError
            } else {
                other(e)
            }
        })
    }

    async fn smembers(&mut self, this: Resource<RedisConnection>, key: String) -> Result<Vec<String>, wit::Error> {
        let mut conn = connection(self, &this)?;
        conn.smembers(&key).await.map_err(other)
    }

    async fn srem(
        &mut self,
        this: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<u32, wit::Error> {
        let mut conn = connection(self, &this)?;
        conn.srem(&key, &values).await.map_err(other)
    }

    async fn execute(
        &mut self,
        this: Resource<RedisConnection>,
        command: String,
        arguments: Vec<wit::RedisParameter>,
    ) -> Result<Vec<wit::RedisResult>, wit::Error> {
        let mut conn = connection(self, &this)?;
        let mut cmd = redis::cmd(&command);
        for argument in arguments {
            match argument {
                wit::RedisParameter::Int64(v) => cmd.arg(v),
                wit::RedisParameter::Binary(v) => cmd.arg(v),
            };
        }
        let replies: Replies = cmd.query_async(&mut conn).await.map_err(other)?;
        if replies.size() > MAX_REPLY_BYTES {
            return Err(too_large());
        }
        Ok(replies.0)
    }

    async fn drop(&mut self, this: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.caps.redis.open = self.caps.redis.open.saturating_sub(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).expect("valid entries")
    }

    fn refusal(address: &str, allowed: &AllowedHosts) -> Option<Refused> {
        admit(address, allowed).err()
    }

    #[test]
    fn an_address_opens_only_when_its_host_and_port_are_admitted() {
        let allowed = hosts(&["redis://127.0.0.1:6380", "redis://cache.internal"]);
        assert_eq!(refusal("redis://127.0.0.1:6380", &allowed), None);
        assert_eq!(refusal("redis://:secret@127.0.0.1:6380/2", &allowed), None);
        assert_eq!(refusal("redis://cache.internal", &allowed), None, "6379 by default");
        assert_eq!(refusal("redis://CACHE.internal:6379/0", &allowed), None);
        assert_eq!(
            refusal("redis://user:secret@127.0.0.1:6381", &allowed),
            Some(Refused::NotAllowed { host: "127.0.0.1".into(), port: 6381 })
        );
        assert_eq!(
            refusal("redis://cache.internal.evil:6379", &allowed),
            Some(Refused::NotAllowed { host: "cache.internal.evil".into(), port: 6379 })
        );
        // An HTTP entry for the same host and port admits no Redis.
        assert!(refusal("redis://10.0.0.1:80", &hosts(&["http://10.0.0.1:80"])).is_some());
        assert_eq!(refusal("redis://10.0.0.1:7000", &hosts(&["*://10.0.0.1:7000..7010"])), None);
    }

    #[test]
    fn a_refusal_never_shows_the_password() {
        let allowed = hosts(&["redis://127.0.0.1:6379"]);
        let Some(r) = refusal("redis://admin:hunter2@10.1.2.3:6379", &allowed) else { panic!("refused") };
        let text = r.to_string();
        assert_eq!(text, "redis://10.1.2.3:6379 is not in the component's allowed_outbound_hosts");
        assert!(!text.contains("hunter2") && !text.contains("admin"));
    }

    #[test]
    fn tls_unix_sockets_and_junk_are_refused_before_any_connection() {
        let anything = hosts(&["*://*:*"]);
        assert_eq!(refusal("rediss://127.0.0.1:6379", &anything), Some(Refused::Unsupported));
        assert_eq!(refusal("redis+unix:///tmp/redis.sock", &anything), Some(Refused::Unsupported));
        assert_eq!(refusal("unix:///tmp/redis.sock", &anything), Some(Refused::Unsupported));
        assert_eq!(refusal("127.0.0.1:6379", &anything), Some(Refused::Unreadable));
        assert_eq!(refusal("redis://", &anything), Some(Refused::Unreadable));
        assert_eq!(refusal("", &anything), Some(Refused::Unreadable));
        assert_eq!(
            refusal("redis://127.0.0.1:6379", &hosts(&[])),
            Some(Refused::NotAllowed { host: "127.0.0.1".into(), port: 6379 })
        );
    }

    /// Replies as one line: `nil`, `status:S`, `int:N`, `bin:TEXT`, space-separated.
    fn convert(value: Value) -> Result<String, String> {
        let replies = Replies::from_redis_value(&value).map_err(|e| e.to_string())?;
        Ok(replies
            .0
            .iter()
            .map(|r| match r {
                wit::RedisResult::Nil => "nil".to_string(),
                wit::RedisResult::Status(s) => format!("status:{s}"),
                wit::RedisResult::Int64(n) => format!("int:{n}"),
                wit::RedisResult::Binary(b) => format!("bin:{}", String::from_utf8_lossy(b)),
            })
            .collect::<Vec<_>>()
            .join(" "))
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn bin(s: &str) -> wit::RedisResult {
        wit::RedisResult::Binary(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_convert_as_spin_converts_them() {
        let ok = |s: &str| Ok(s.to_string());
        assert_eq!(convert(Value::Nil), ok("nil"));
        assert_eq!(convert(Value::Okay), ok("status:OK"));
        assert_eq!(convert(Value::SimpleString("PONG".into())), ok("status:PONG"));
        assert_eq!(convert(Value::Int(-42)), ok("int:-42"));
        assert_eq!(convert(Value::BulkString(b"\xff".to_vec())), ok("bin:\u{fffd}"));
        assert_eq!(convert(Value::Boolean(true)), ok("int:1"));
        assert_eq!(convert(Value::Double(1.5)), ok("bin:1.5"));
        assert_eq!(convert(Value::Array(vec![])), ok(""));
        // XRANGE: [[id, [field, value, ...]], ...] flattened depth-first.
        let xrange = Value::Array(vec![
            Value::Array(vec![bulk("5-0"), Value::Array(vec![bulk("f"), bulk("v")])]),
            Value::Array(vec![bulk("6-0"), Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")])]),
        ]);
        assert_eq!(convert(xrange), ok("bin:5-0 bin:f bin:v bin:6-0 bin:a bin:1 bin:b bin:2"));
        assert_eq!(convert(Value::Set(vec![Value::Int(1), Value::Nil, Value::Okay])), ok("int:1 nil status:OK"));
    }

    #[test]
    fn resp3_only_shapes_are_a_type_error_with_spins_text() {
        let e = convert(Value::Map(vec![(bulk("k"), bulk("v"))])).err().unwrap_or_default();
        assert_eq!(e, "Could not convert Redis response - TypeError: Redis Map type is not supported");
        let e =
            convert(Value::Array(vec![Value::Int(1), Value::Push { kind: redis::PushKind::Message, data: vec![] }]))
                .err()
                .unwrap_or_default();
        assert_eq!(e, "Could not convert Redis response - TypeError: Redis Pub/Sub types are not supported");
    }

    #[test]
    fn the_size_limit_counts_as_spin_counts() {
        let r = Replies(vec![wit::RedisResult::Nil, bin("abc")]);
        let each = size_of::<wit::RedisResult>();
        assert_eq!(r.size(), size_of::<Vec<wit::RedisResult>>() + 2 * each + 3);
    }
}
