//! The runner's outbound Redis (`fermyon:spin/redis@2.0.0`, spin-sdk 5.2's
//! `spin_sdk::redis`), end to end: the probe-redis component on the real
//! runner, over HTTP, against a real `redis-server` each test starts on a
//! free port (tests/src/services.rs).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use stepwise_e2e::services::Redis;
use stepwise_e2e::{poll_until, Runner, RunnerConfig};

const APP: &str = "tests/apps/probe-redis.toml";

/// The app, with `redis` as its Redis and its origin admitted.
fn app(redis: &Redis) -> RunnerConfig {
    RunnerConfig::new(APP).var("redis_url", &redis.url()).var("redis_origin", &redis.url())
}

/// Runs `script` (one call a line) on one connection; the status and the answer's lines.
fn run(r: &Runner, address: Option<&str>, script: &str) -> (u16, Vec<String>) {
    let path = match address {
        Some(a) => format!("/redis?address={}", a.replace(':', "%3A").replace('/', "%2F").replace('@', "%40")),
        None => "/redis".to_string(),
    };
    let a = r.send("POST", &path, &[], Some(script.as_bytes()));
    (a.status, a.body.lines().map(str::to_string).collect())
}

/// Clients connected to `redis` other than the one asking.
fn clients(redis: &Redis) -> usize {
    redis.command(&["CLIENT", "LIST"]).lines().filter(|l| l.starts_with("id=")).count().saturating_sub(1)
}

#[test]
fn typed_calls_and_execute_round_trip_and_a_redis_error_reply_names_itself() {
    let redis = Redis::start();
    let r = app(&redis).start();
    let script = "\
        set greeting hello\n\
        get greeting\n\
        get missing\n\
        incr counter\n\
        incr counter\n\
        execute XADD events 5-0 kind start\n\
        execute XADD events 5-0 kind again\n\
        execute XADD events 6-0 kind next n int:7\n\
        execute XRANGE events - +\n\
        execute XRANGE events 9 +\n\
        execute SET plain x\n\
        execute GET plain\n\
        execute GET nothing\n\
        execute INCRBY counter int:40\n\
        execute PING\n\
        execute NOSUCHCOMMAND a\n\
        incr greeting\n\
        del greeting counter nothing\n\
        sadd members a b c\n\
        srem members a\n\
        smembers members\n\
        publish channel hi\n\
        execute SMEMBERS events\n";
    let (status, lines) = run(&r, None, script);
    assert_eq!(status, 200, "{lines:?}");
    let expected: [&dyn Fn(&str) -> bool; 23] = [
        &|l| l == "ok",
        &|l| l == "ok bin:hello",
        &|l| l == "ok nil",
        &|l| l == "ok int:1",
        &|l| l == "ok int:2",
        &|l| l == "ok bin:5-0",
        // The same id again: Redis refuses it, and the guest gets the reply's text.
        &|l| {
            l == "err Error::Other(\"An error was signalled by the server - ResponseError: \
                  The ID specified in XADD is equal or smaller than the target stream top item\")"
        },
        &|l| l == "ok bin:6-0",
        // Nested arrays ([[id, [field, value, ...]], ...]) come back flat, as on Spin.
        &|l| l == "ok bin:5-0 bin:kind bin:start bin:6-0 bin:kind bin:next bin:n bin:7",
        &|l| l == "ok",
        &|l| l == "ok status:OK",
        &|l| l == "ok bin:x",
        &|l| l == "ok nil",
        &|l| l == "ok int:42",
        &|l| l == "ok status:PONG",
        &|l| l.starts_with("err Error::Other(\"An error was signalled by the server - ResponseError: unknown command"),
        &|l| {
            l == "err Error::Other(\"An error was signalled by the server - ResponseError: value is not an integer or out of range\")"
        },
        &|l| l == "ok int:2",
        &|l| l == "ok int:3",
        &|l| l == "ok int:1",
        &|l| l == "ok b c",
        &|l| l == "ok",
        // Redis's own error codes other than ERR keep their name.
        &|l| l.starts_with("err Error::Other(\"WRONGTYPE: Operation against a key holding the wrong kind of value"),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (i, (line, ok)) in lines.iter().zip(expected.iter()).enumerate() {
        assert!(
            ok(line),
            "line {} of the script ({}): {line}",
            i + 1,
            script.lines().nth(i).unwrap_or_default().trim()
        );
    }

    // What the guest wrote is in Redis.
    assert_eq!(redis.command(&["XLEN", "events"]), ":2");
    assert_eq!(redis.command(&["GET", "plain"]), "$1\nx");
    assert_eq!(redis.command(&["EXISTS", "greeting"]), ":0");
    assert_eq!(
        redis.command(&["XRANGE", "events", "-", "+", "COUNT", "1"]),
        "*1\n*2\n$3\n5-0\n*2\n$4\nkind\n$5\nstart"
    );

    // Each open is a connection of its own; an instance holds at most 16, and
    // every one is closed when the request ends.
    let (status, lines) = run(&r, None, "hold 15\nhold 1\nexecute PING");
    assert_eq!(status, 200);
    assert_eq!(lines, ["ok int:15", "err Error::TooManyConnections", "ok status:PONG"]);
    poll_until(Duration::from_secs(10), "the instances' connections to close", || (clients(&redis) == 0).then_some(()));
    let (_, lines) = run(&r, None, "hold 15");
    assert_eq!(lines, ["ok int:15"], "the next instance starts with none");
    poll_until(Duration::from_secs(10), "the connections to close", || (clients(&redis) == 0).then_some(()));
}

#[test]
fn open_is_refused_unless_allowed_outbound_hosts_admit_the_address() {
    let redis = Redis::start();
    let r = app(&redis).start();
    // Something listening where the guest must not connect.
    let trap = TcpListener::bind("127.0.0.1:0").expect("bind");
    trap.set_nonblocking(true).expect("nonblocking");
    let port = trap.local_addr().expect("addr").port();
    for address in [
        format!("redis://127.0.0.1:{port}"),
        format!("redis://default:hunter2@127.0.0.1:{port}/0"),
        format!("redis://localhost:{port}"),
        // The admitted host and port, but TLS or a Unix socket.
        format!("rediss://127.0.0.1:{}", redis.port),
        "redis+unix:///tmp/redis.sock".to_string(),
        "not-an-address".to_string(),
    ] {
        let (status, lines) = run(&r, Some(&address), "execute PING");
        assert_eq!((status, lines.join("\n")), (403, "Error::InvalidAddress".to_string()), "{address}");
    }
    assert!(trap.accept().is_err(), "nothing connected to the refused address");
    let logs = r.logs();
    assert!(logs.contains("outbound Redis connection refused"), "{logs}");
    assert!(
        logs.contains(&format!("redis://127.0.0.1:{port} is not in the component's allowed_outbound_hosts")),
        "{logs}"
    );
    assert!(!logs.contains("hunter2"), "no password in the logs: {logs}");

    // The admitted address, with a database number, opens and answers.
    let (status, lines) = run(&r, Some(&format!("{}/3", redis.url())), "set k v\nexecute CLIENT INFO");
    assert_eq!(status, 200, "{lines:?}");
    assert!(lines[1].contains(" db=3 "), "{lines:?}");
}

#[test]
fn a_refused_connection_is_an_error_at_once_and_a_silent_server_one_after_the_connect_timeout() {
    // A port where nothing listens, and a listener that never answers (the
    // kernel completes the TCP handshake; the Redis handshake gets no reply).
    let dead = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let redis = Redis::start();
    let r = app(&redis).var("extra_origin", "redis://127.0.0.1:*").start();

    let started = Instant::now();
    let (status, lines) = run(&r, Some(&format!("redis://127.0.0.1:{dead}")), "execute PING");
    assert_eq!(status, 403);
    assert!(lines[0].starts_with("Error::Other(") && lines[0].contains("refused"), "{lines:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    let started = Instant::now();
    let (status, lines) = run(&r, Some(&format!("redis://127.0.0.1:{silent_port}/1")), "execute PING");
    let took = started.elapsed();
    assert_eq!(status, 403);
    assert!(lines[0].starts_with("Error::Other(") && lines[0].contains("timed out"), "{lines:?}");
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(15), "the 5 s connect timeout: {took:?}");
    drop(silent);
}

#[test]
fn a_command_with_no_reply_fails_after_the_response_timeout_not_never() {
    let redis = Redis::start();
    let r = app(&redis).start();
    let started = Instant::now();
    // BLPOP with no timeout: Redis holds the reply until the list has an item.
    let (status, lines) = run(&r, None, "execute BLPOP nothing int:0");
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("err Error::Other(") && lines[0].contains("timed out"), "{lines:?}");
    assert!(took >= Duration::from_secs(9) && took < Duration::from_secs(20), "the 10 s response timeout: {took:?}");
    // The instance is gone, and its connection (still blocked in Redis) with it.
    poll_until(Duration::from_secs(10), "the blocked connection to close", || (clients(&redis) == 0).then_some(()));
    assert_eq!(run(&r, None, "execute PING").1, ["ok status:PONG"]);
}
