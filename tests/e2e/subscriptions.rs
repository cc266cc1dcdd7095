//! Event subscriptions end to end (CONTRACT section 11): the real runner and
//! components deliver the outbox's events to a webhook receiver in its own
//! process (Python, verifying every signature with the `standardwebhooks`
//! package from PyPI), through failures, a SIGKILL of the runner, a replay,
//! and a receiver down past the disable window; destinations outside
//! `event_destinations` are refused.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use stepwise_e2e::app::{self, App};
use stepwise_e2e::ledger::{self, account_created};
use stepwise_e2e::receiver::Receiver;
use stepwise_e2e::services::Redis;
use stepwise_e2e::{json, poll_until, Value};

/// The app, allowed to deliver to `receiver`, retrying at once (1, 2, then
/// 4 ms after each failure) and timing out a hung delivery after 300 ms.
fn config(receiver: &Receiver) -> stepwise_e2e::RunnerConfig {
    app::config()
        .var("event_destinations", &receiver.origin())
        .var("event_retry_ms", "1,2,4")
        .var("event_timeout_ms", "300")
}

/// Events for the flaky receiver: 10,000 on SQLite; on PostgreSQL's pass,
/// which proves the same properties on the other dialect, 2,000, to keep
/// `scripts/test` within its time.
fn flaky_events() -> usize {
    match app::Database::from_env() {
        app::Database::Sqlite => 10_000,
        app::Database::Postgres => 2_000,
    }
}

/// Subscribes the receiver to every event; answers the subscription and
/// tells the receiver its secret.
fn subscribe(app: &App, receiver: &Receiver) -> Value {
    let a = app.api(
        "POST",
        "/api/subscriptions",
        Some(json!({ "kind": "webhook", "url": receiver.url("/hooks"), "types": ["*"] })),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let s = a.json();
    let secret = s["secret"].as_str().unwrap_or_else(|| panic!("a webhook's secret is shown at creation: {s}"));
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.set_secret(secret);
    s
}

/// Posts `n` transfers from 8 clients: each completes and appends one
/// `transfer.completed` event.
fn transfers(app: &App, n: usize, tag: &str) {
    if ledger::create_account(app, "src", "IDR", true).status == 201 {
        account_created(app, "dst", "IDR", false);
    }
    std::thread::scope(|s| {
        for client in 0..8 {
            s.spawn(move || {
                for i in (client..n).step_by(8) {
                    ledger::accepted(app, &format!("{tag}-{i}"), &ledger::body("src", "dst", 100, "IDR"));
                }
            });
        }
    });
}

/// Waits until the subscription has delivered up to the outbox's head.
fn wait_caught_up(app: &App, id: &str, within: Duration) -> Value {
    poll_until(within, &format!("subscription {id} to catch up"), || {
        let s = app.api("GET", &format!("/api/subscriptions/{id}"), None).json();
        (s["lag"] == 0 && s["pending"].is_null() && s["status"] == "active").then_some(s)
    })
}

fn is_success(entry: &Value) -> bool {
    matches!(entry["status"].as_u64(), Some(200..=299))
}

fn seq_of(entry: &Value) -> i64 {
    serde_json::from_str::<Value>(entry["body"].as_str().unwrap_or_default())
        .ok()
        .and_then(|b| b["seq"].as_i64())
        .unwrap_or(-1)
}

/// Checks what the receiver got against the outbox: every event after
/// `after` arrived with a 2xx, the first successes are in `seq` order, every
/// signature verified, a `webhook-id` always came with the same body (the
/// event as `GET /api/events` shows it). Answers the first success per id.
fn check_received(app: &App, sub_id: &str, received: &[Value], after: i64) -> BTreeMap<String, Value> {
    let expected: Vec<Value> =
        ledger::events(app, "").into_iter().filter(|e| e["seq"].as_i64().unwrap_or(0) > after).collect();
    let unverified: Vec<&Value> = received.iter().filter(|e| e["verified"] != true).collect();
    assert!(
        unverified.is_empty(),
        "{} deliveries failed verification, e.g. {:?}",
        unverified.len(),
        unverified.first()
    );
    let mut bodies: HashMap<&str, &str> = HashMap::new();
    for e in received {
        let (id, body) = (e["id"].as_str().unwrap_or_default(), e["body"].as_str().unwrap_or_default());
        let first = bodies.entry(id).or_insert(body);
        assert_eq!(*first, body, "webhook-id {id} came with two bodies");
    }
    let mut first_success: BTreeMap<String, Value> = BTreeMap::new();
    let mut last_seq = after;
    for e in received.iter().filter(|e| is_success(e)) {
        let id = e["id"].as_str().unwrap_or_default().to_string();
        if first_success.contains_key(&id) {
            continue;
        }
        let seq = seq_of(e);
        assert!(seq > last_seq, "first successes out of order: {seq} after {last_seq}");
        last_seq = seq;
        first_success.insert(id, e.clone());
    }
    for event in &expected {
        let seq = event["seq"].as_i64().unwrap_or_default();
        let id = format!("{sub_id}_{seq}");
        let got = first_success.get(&id).unwrap_or_else(|| panic!("event {seq} never arrived with a 2xx"));
        let body: Value = serde_json::from_str(got["body"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(&body, event, "the delivery is the event as GET /api/events shows it");
    }
    assert_eq!(first_success.len(), expected.len(), "nothing else arrived");
    first_success
}

#[test]
fn thousands_of_events_reach_a_flaky_receiver_in_order_signed_and_replay_byte_identical() {
    let n = flaky_events();
    let receiver = Receiver::start();
    let app = App::with(config(&receiver));
    let sub = subscribe(&app, &receiver);
    let id = sub["id"].as_str().unwrap().to_string();
    // About 30 % of requests fail (500s, resets, hangs past the time-out),
    // and some answer slowly.
    receiver.set_mode(
        json!({ "fail": 0.235, "reset": 0.06, "hang": 0.005, "hang_ms": 700, "slow": 0.05, "slow_ms": 20, "seed": 7 }),
    );
    transfers(&app, n, "t");
    ledger::wait_all_final(&app, Duration::from_secs(120));
    let s = wait_caught_up(&app, &id, Duration::from_secs(600));
    let received = receiver.received();
    let failed = received.iter().filter(|e| !is_success(e)).count();
    eprintln!("{} deliveries for {n} events, {failed} of them failed; subscription: {s}", received.len());
    assert!(failed > n / 5, "the receiver failed about 30 % of requests: {failed}");
    assert!(
        received.iter().any(|e| e["status"] == "hang") && received.iter().any(|e| e["status"] == "reset"),
        "time-outs and resets among them"
    );
    let first = check_received(&app, &id, &received, 0);
    assert_eq!(first.len(), n);
    assert_eq!(s["delivered"], n, "{s}");
    assert!(s["last_error"]["message"].is_string(), "the last failure is shown: {s}");

    // The attempts, newest first, with the first bytes of the answer.
    let attempts = app.api("GET", &format!("/api/subscriptions/{id}/deliveries?limit=500"), None).json();
    let attempts = attempts["deliveries"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 500);
    assert!(attempts.windows(2).all(|w| w[0]["request_id"].as_i64() > w[1]["request_id"].as_i64()), "newest first");
    let failure = attempts
        .iter()
        .find(|a| a["status_code"] == 500)
        .unwrap_or_else(|| panic!("a 500 among the last 500 attempts: {attempts:?}"));
    assert_eq!(
        (failure["result"].as_str(), failure["error"].as_str()),
        (Some("failed"), Some("status 500")),
        "{failure}"
    );
    assert!(failure["response"].as_str().is_some_and(|r| r.contains("try later")), "{failure}");

    // Replay the last 100: the same ids and bodies, byte for byte.
    receiver.set_mode(json!({}));
    let events = ledger::events(&app, "");
    let from = events[events.len() - 100]["seq"].as_i64().unwrap();
    let before = received.len();
    let a = app.api("POST", &format!("/api/subscriptions/{id}/replay"), Some(json!({ "from_seq": from })));
    assert_eq!(a.status, 200, "{}", a.body);
    wait_caught_up(&app, &id, Duration::from_secs(120));
    let again = receiver.received();
    let replayed: Vec<&Value> = again[before..].iter().filter(|e| is_success(e)).collect();
    assert_eq!(replayed.len(), 100, "each replayed event once");
    for e in replayed {
        let original = &first[e["id"].as_str().unwrap()];
        assert_eq!(e["body"], original["body"], "byte-identical body");
        assert!(seq_of(e) >= from);
    }
    app.assert_changes_audited();
}

#[test]
fn a_runner_killed_mid_delivery_loses_nothing_and_delivers_in_order() {
    let receiver = Receiver::start();
    let mut app = App::with(config(&receiver));
    let sub = subscribe(&app, &receiver);
    let id = sub["id"].as_str().unwrap().to_string();
    // Every delivery takes 10 ms: 2,000 take 20 s or more, so the kill lands mid-run.
    receiver.set_mode(json!({ "slow": 1.0, "slow_ms": 10 }));
    transfers(&app, 2_000, "k");
    poll_until(Duration::from_secs(60), "deliveries under way", || (receiver.received().len() >= 300).then_some(()));
    app.runner.kill();
    let at_kill = receiver.received().iter().filter(|e| is_success(e)).count();
    assert!((300..1_900).contains(&at_kill), "killed mid-delivery: {at_kill} of 2000 delivered");
    app.runner.restart();
    wait_caught_up(&app, &id, Duration::from_secs(120));
    let received = receiver.received();
    let first = check_received(&app, &id, &received, 0);
    assert_eq!(first.len(), 2_000);
    eprintln!("{at_kill} delivered at the kill; {} deliveries in all for 2000 events", received.len());
}

#[test]
fn a_receiver_down_past_the_window_disables_the_subscription_and_resume_delivers_the_backlog_in_order() {
    let mut receiver = Receiver::start();
    let port = receiver.port;
    let app = App::with(config(&receiver).var("event_disable_after_ms", "1000").var("event_retry_ms", "100,200"));
    let sub = subscribe(&app, &receiver);
    let id = sub["id"].as_str().unwrap().to_string();
    let secret = sub["secret"].as_str().unwrap().to_string();
    receiver.kill();
    transfers(&app, 20, "d");
    let s = poll_until(Duration::from_secs(30), "the subscription to be disabled", || {
        let s = app.api("GET", &format!("/api/subscriptions/{id}"), None).json();
        (s["status"] == "disabled").then_some(s)
    });
    assert_eq!(s["last_error"]["message"], "unreachable", "{s}");
    assert_eq!(s["allowed_actions"], json!(["resume", "replay", "delete"]), "{s}");
    let disabled = ledger::events(&app, "subscription.disabled");
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    assert_eq!(disabled[0]["subscription_id"], id.as_str());
    // Disabled, it sends nothing: ticks go by and the attempts stay as they are.
    let attempts = app.api("GET", &format!("/api/subscriptions/{id}/deliveries?limit=500"), None).json()["deliveries"]
        .as_array()
        .map(Vec::len);
    app.wait_ticks(5);
    assert_eq!(
        app.api("GET", &format!("/api/subscriptions/{id}/deliveries?limit=500"), None).json()["deliveries"]
            .as_array()
            .map(Vec::len),
        attempts
    );
    assert_eq!(
        app.api("PATCH", &format!("/api/subscriptions/{id}"), Some(json!({ "status": "paused" }))).status,
        409,
        "a disabled subscription is resumed, not paused"
    );

    let receiver = Receiver::start_on(port);
    receiver.set_secret(&secret);
    let a = app.api("PATCH", &format!("/api/subscriptions/{id}"), Some(json!({ "status": "active" })));
    assert_eq!(a.status, 200, "{}", a.body);
    wait_caught_up(&app, &id, Duration::from_secs(60));
    let first = check_received(&app, &id, &receiver.received(), 0);
    assert_eq!(first.len(), 21, "the 20 transfers' events and the subscription.disabled event, in order");

    // /metrics: each attempt counted by result, timed, and no lag left.
    let attempts = app.api("GET", &format!("/api/subscriptions/{id}/deliveries?limit=500"), None).json()["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let failed = attempts.iter().filter(|a| a["result"] == "failed").count() as f64;
    assert!(failed >= 2.0, "{attempts:?}");
    let sample = |name: &str, extra: &str| metric_with(&app, name, &[&format!("subscription=\"{id}\""), extra]);
    assert_eq!(sample("stepwise_deliveries_total", "result=\"delivered\""), Some(21.0));
    assert_eq!(sample("stepwise_deliveries_total", "result=\"failed\""), Some(failed));
    assert_eq!(sample("stepwise_delivery_duration_seconds_count", ""), Some(attempts.len() as f64));
    assert_eq!(sample("stepwise_subscription_lag_events", ""), Some(0.0));
    assert_eq!(sample("stepwise_subscription_lag_seconds", ""), Some(0.0));
}

/// The value of the `/metrics` sample of `name` whose labels include each of `labels`.
fn metric_with(app: &App, name: &str, labels: &[&str]) -> Option<f64> {
    let m = app.api("GET", "/metrics", None).body;
    m.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|want| set.split(',').any(|l| l == *want) || want.is_empty())
            .then(|| value.trim().parse().ok())?
    })
}

#[test]
fn subscriptions_are_checked_and_only_allowed_destinations_are_accepted() {
    let receiver = Receiver::start();
    let app = App::with(config(&receiver));
    let post = |body: Value| app.api("POST", "/api/subscriptions", Some(body));
    let refused = [
        json!({ "kind": "webhook", "url": "http://127.0.0.2:9/hooks", "types": ["*"] }),
        json!({ "kind": "webhook", "url": format!("https://127.0.0.1:{}/hooks", receiver.port), "types": ["*"] }),
        json!({ "kind": "redis_stream", "url": "redis://127.0.0.1:6379", "stream": "events", "types": ["*"] }),
    ];
    for body in refused {
        let a = post(body.clone());
        assert_eq!(
            (a.status, ledger::error_code(&a)),
            (422, "destination_not_allowed".to_string()),
            "{body}: {}",
            a.body
        );
    }
    let malformed = [
        json!({ "kind": "webhook", "url": "not a url", "types": ["*"] }),
        json!({ "kind": "webhook", "url": receiver.url("/h"), "types": [] }),
        json!({ "kind": "webhook", "url": receiver.url("/h"), "types": ["*", "committed"] }),
        json!({ "kind": "webhook", "url": receiver.url("/h"), "types": ["Bad Type"] }),
        json!({ "kind": "kafka", "url": receiver.url("/h"), "types": ["*"] }),
        json!({ "kind": "webhook", "url": receiver.url("/h"), "types": ["*"], "extra": 1 }),
        json!({ "kind": "webhook", "url": receiver.url("/h"), "types": ["*"], "description": "x".repeat(201) }),
    ];
    for body in malformed {
        assert_eq!(post(body.clone()).status, 400, "{body}");
    }
    // A read key sees subscriptions and changes none.
    let read = app.create_key("reader", "read");
    let a = app.api_as(
        read["secret"].as_str().unwrap(),
        "POST",
        "/api/subscriptions",
        Some(json!({ "kind": "webhook", "url": receiver.url("/h"), "types": ["*"] })),
    );
    assert_eq!(a.status, 403, "{}", a.body);

    // Made: the secret is in the creation's answer only.
    let created = post(
        json!({ "kind": "webhook", "url": receiver.url("/h"), "types": ["transfer.failed"], "description": "failures" }),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let sub = created.json();
    let id = sub["id"].as_str().unwrap();
    let secret = sub["secret"].as_str().unwrap();
    let shown = app.api("GET", &format!("/api/subscriptions/{id}"), None);
    assert_eq!(shown.status, 200);
    assert!(!shown.body.contains(secret) && shown.json().get("secret").is_none(), "{}", shown.body);
    let listed = app.api("GET", "/api/subscriptions", None);
    assert!(!listed.body.contains(secret), "{}", listed.body);
    assert_eq!(listed.json()["subscriptions"][0]["types"], json!(["transfer.failed"]));
    let trail = app.audit_trail();
    assert!(!serde_json::to_string(&trail).unwrap().contains(secret), "the audit trail never holds the secret");
    // Only the types it names: completed transfers pass it by, and its cursor follows.
    transfers(&app, 5, "f");
    ledger::wait_all_final(&app, Duration::from_secs(30));
    let head = ledger::events(&app, "").last().and_then(|e| e["seq"].as_i64()).unwrap();
    let s = poll_until(Duration::from_secs(30), "the cursor to pass the other types", || {
        let s = app.api("GET", &format!("/api/subscriptions/{id}"), None).json();
        (s["delivered_seq"] == head).then_some(s)
    });
    assert_eq!((s["delivered"].as_u64(), s["lag"].as_i64()), (Some(0), Some(0)), "{s}");
    assert!(receiver.received().is_empty());
    // A replay goes back, never past an event not yet delivered.
    let ahead = app.api("POST", &format!("/api/subscriptions/{id}/replay"), Some(json!({ "from_seq": head + 2 })));
    assert_eq!(ahead.status, 400, "{}", ahead.body);
    assert_eq!(
        app.api("GET", &format!("/api/subscriptions/{id}"), None).json()["delivered_seq"],
        head,
        "nothing skipped"
    );
    // Pause, types, delete.
    let paused =
        app.api("PATCH", &format!("/api/subscriptions/{id}"), Some(json!({ "status": "paused", "types": ["*"] })));
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!((paused.json()["status"].as_str(), paused.json()["types"].clone()), (Some("paused"), json!(["*"])));
    assert_eq!(app.api("PATCH", &format!("/api/subscriptions/{id}"), Some(json!({ "status": "gone" }))).status, 400);
    assert_eq!(app.api("DELETE", &format!("/api/subscriptions/{id}"), None).status, 200);
    assert_eq!(app.api("GET", &format!("/api/subscriptions/{id}"), None).status, 404);
    app.assert_changes_audited();

    // With no event_destinations (the default), nothing is allowed.
    let closed = App::with(app::config());
    let a = closed.api(
        "POST",
        "/api/subscriptions",
        Some(json!({ "kind": "webhook", "url": receiver.url("/h"), "types": ["*"] })),
    );
    assert_eq!((a.status, ledger::error_code(&a)), (422, "destination_not_allowed".to_string()), "{}", a.body);
}

/// A Redis stream's entries: `(id, event JSON)` in stream order.
fn stream_entries(redis: &Redis, stream: &str) -> Vec<(String, Value)> {
    let reply = redis.command(&["XRANGE", stream, "-", "+"]);
    let lines: Vec<&str> = reply.lines().collect();
    let bulks: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with('$'))
        .filter_map(|(i, _)| lines.get(i + 1).copied())
        .collect();
    bulks
        .chunks(3)
        .map(|c| {
            assert_eq!(c.get(1), Some(&"event"), "each entry is one field, event: {c:?}");
            (c[0].to_string(), serde_json::from_str(c.get(2).copied().unwrap_or_default()).unwrap_or_default())
        })
        .collect()
}

#[test]
fn a_redis_stream_holds_each_event_once_in_order_through_a_sigkill_and_a_replay() {
    let redis = Redis::start();
    let mut app = App::with(app::config().var("event_destinations", &redis.url()));
    let a = app.api(
        "POST",
        "/api/subscriptions",
        Some(json!({ "kind": "redis_stream", "url": redis.url(), "stream": "stepwise", "types": ["*"] })),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    let sub = a.json();
    assert!(sub.get("secret").is_none(), "a stream has no signing secret: {sub}");
    let id = sub["id"].as_str().unwrap().to_string();
    // The events first, the subscription paused: then a run of XADDs to cut.
    assert_eq!(app.api("PATCH", &format!("/api/subscriptions/{id}"), Some(json!({ "status": "paused" }))).status, 200);
    transfers(&app, 3_000, "r");
    ledger::wait_all_final(&app, Duration::from_secs(120));
    assert_eq!(app.api("PATCH", &format!("/api/subscriptions/{id}"), Some(json!({ "status": "active" }))).status, 200);
    poll_until(Duration::from_secs(60), "XADDs under way", || {
        (redis.command(&["XLEN", "stepwise"]) != ":0").then_some(())
    });
    app.runner.kill();
    let at_kill = redis.command(&["XLEN", "stepwise"]);
    app.runner.restart();
    wait_caught_up(&app, &id, Duration::from_secs(120));
    let events = ledger::events(&app, "");
    let check = |what: &str| {
        let entries = stream_entries(&redis, "stepwise");
        assert_eq!(entries.len(), events.len(), "{what}: each event once");
        for ((entry_id, body), event) in entries.iter().zip(&events) {
            assert_eq!(entry_id, &format!("{}-0", event["seq"]), "{what}: the entry id is the seq, in order");
            assert_eq!(body, event, "{what}: the entry is the event as GET /api/events shows it");
        }
    };
    check("after the SIGKILL");
    eprintln!("{at_kill} entries at the kill, of {}", events.len());
    assert!(at_kill != format!(":{}", events.len()), "the kill came mid-run: {at_kill}");

    // A replay sends every event again: Redis refuses each as not newer.
    let a = app.api("POST", &format!("/api/subscriptions/{id}/replay"), Some(json!({ "from_seq": 1 })));
    assert_eq!(a.status, 200, "{}", a.body);
    wait_caught_up(&app, &id, Duration::from_secs(120));
    check("after the replay");
    let attempts = app.api("GET", &format!("/api/subscriptions/{id}/deliveries?limit=10"), None).json();
    let newest = &attempts["deliveries"][0];
    assert_eq!(
        (newest["status_code"].as_i64(), newest["result"].as_str()),
        (Some(409), Some("delivered")),
        "{attempts}"
    );
    assert!(newest["response"].as_str().is_some_and(|r| r.contains("equal or smaller")), "{newest}");
}
