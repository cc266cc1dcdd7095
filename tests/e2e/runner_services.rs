//! The runner's external services, end to end: PostgreSQL
//! (`spin:postgres/postgres@4.0.0`) and Redis key-value stores, against a
//! real PostgreSQL cluster and a real Redis server each test starts on free
//! ports (tests/src/services.rs), through the probe-pg component.

use std::net::TcpListener;

use stepwise_e2e::services::{Postgres, Redis};
use stepwise_e2e::{Runner, RunnerConfig};

const SERVICES: &str = "tests/apps/probe-services.toml";

fn app(pg: &Postgres) -> RunnerConfig {
    RunnerConfig::new(SERVICES).var("database_url", &pg.url()).var("database_origin", &pg.origin())
}

fn post(r: &Runner, path: &str, body: &str) -> (u16, String) {
    let a = r.send("POST", path, &[], Some(body.as_bytes()));
    (a.status, a.body)
}

const ITEMS: &str = "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL)";

#[test]
fn postgres_round_trip_with_identity_returning_and_every_value_type() {
    let pg = Postgres::start();
    let r = app(&pg).start();
    assert_eq!(post(&r, "/pg/execute", ITEMS), (200, "0".to_string()));

    let (status, body) = post(&r, "/pg/insert?name=first", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("id:DbDataType::Int64\n"), "{body}");
    assert!(body.ends_with("DbValue::Int64(1)"), "{body}");
    let (_, body) = post(&r, "/pg/insert?name=second", "");
    assert!(body.ends_with("DbValue::Int64(2)"), "{body}");
    assert_eq!(pg.psql("SELECT id, name FROM items ORDER BY id"), "1|first\n2|second");

    let (status, body) = post(&r, "/pg/query", "SELECT id, name FROM items ORDER BY id");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "id:DbDataType::Int64 | name:DbDataType::Str\n\
         DbValue::Int64(1) | DbValue::Str(\"first\")\n\
         DbValue::Int64(2) | DbValue::Str(\"second\")"
    );
    // No rows: the columns are still described.
    let (_, body) = post(&r, "/pg/query", "SELECT id FROM items WHERE false");
    assert_eq!(body, "id:DbDataType::Int64");
    assert_eq!(post(&r, "/pg/execute", "UPDATE items SET name = upper(name)"), (200, "2".to_string()));

    let a = r.get("/pg/types");
    assert_eq!(a.status, 200, "{}", a.body);
    let mut lines = a.body.lines();
    let columns = lines.next().unwrap_or_default();
    let values: Vec<&str> = lines.next().unwrap_or_default().split(" | ").collect();
    for expected in [
        "b:DbDataType::Boolean",
        "i2:DbDataType::Int16",
        "ts:DbDataType::Datetime",
        "u:DbDataType::Uuid",
        "j:DbDataType::Jsonb",
        "n:DbDataType::Decimal",
        "astr:DbDataType::ArrayStr",
        "iv:DbDataType::Interval",
        "c:DbDataType::Int8",
        "other:DbDataType::Other(\"inet\")",
    ] {
        assert!(columns.contains(expected), "{expected} in {columns}");
    }
    let expected = [
        "DbValue::Boolean(true)",
        "DbValue::Int16(-7)",
        "DbValue::Int32(123456)",
        "DbValue::Int64(9000000000)",
        "DbValue::Floating32(1.5)",
        "DbValue::Floating64(2.25)",
        "DbValue::Str(\"héllo\")",
        "DbValue::Binary([0, 1, 255])",
        "DbValue::Date((2024, 2, 29))",
        "DbValue::Time((13, 14, 15, 500000000))",
        "DbValue::Datetime((2024, 2, 29, 13, 14, 15, 0))",
        "DbValue::Datetime((2023, 11, 14, 22, 13, 20, 0))",
        "DbValue::Uuid(\"67e55044-10b1-426f-9247-bb680e5fe0c8\")",
        // jsonb comes back in PostgreSQL's own spelling of the document.
        &format!("DbValue::Jsonb({:?})", br#"{"a": [1, 2]}"#.to_vec()),
        "DbValue::Decimal(\"12345.6789\")",
        "DbValue::ArrayInt32([Some(1), None, Some(3)])",
        "DbValue::ArrayInt64([Some(4)])",
        "DbValue::ArrayStr([Some(\"x\"), None])",
        "DbValue::ArrayDecimal([Some(\"0.5\")])",
        "DbValue::Interval(Interval { micros: 1000000, days: 2, months: 3 })",
        "DbValue::DbNull",
        "DbValue::Int8(97)",
        // inet has no variant: its bytes as PostgreSQL sent them.
        "DbValue::Unsupported([2, 32, 0, 4, 10, 0, 0, 1])",
    ];
    assert_eq!(values.len(), expected.len(), "{}", a.body);
    for (got, want) in values.iter().zip(expected.iter()) {
        assert_eq!(got, want);
    }

    // A database error carries its SQLSTATE.
    let (status, body) = post(&r, "/pg/execute", "INSERT INTO nowhere VALUES (1)");
    assert_eq!(status, 500);
    assert!(body.contains("QueryFailed(QueryError::DbError") && body.contains("code: \"42P01\""), "{body}");
    let (_, body) = post(&r, "/pg/execute", "INSERT INTO items (id, name) VALUES (1, 'x')");
    assert!(body.contains("code: \"428C9\""), "an identity column GENERATED ALWAYS refuses an id: {body}");
}

#[test]
fn a_transaction_spans_calls_on_one_connection_and_commits() {
    let pg = Postgres::start();
    let r = app(&pg).start();
    post(&r, "/pg/execute", ITEMS);
    let (status, body) = post(&r, "/pg/tx?name=in-tx", "");
    assert_eq!(status, 200, "{body}");
    // The transaction's own insert is visible to its next statement (the same connection).
    assert!(body.ends_with("count:DbDataType::Int64\nDbValue::Int64(1)"), "{body}");
    assert_eq!(pg.psql("SELECT name FROM items"), "in-tx");
}

#[test]
fn a_guest_that_traps_or_returns_mid_transaction_never_leaves_it_to_the_next() {
    let pg = Postgres::start();
    // One pooled connection: every request gets the same one.
    let r = app(&pg).arg("--postgres-pool-size").arg("1").start();
    post(&r, "/pg/execute", ITEMS);
    let pid = |r: &Runner| post(r, "/pg/query", "SELECT pg_backend_pid()").1;
    let before = pid(&r);

    for round in 0..5 {
        let (status, body) = post(&r, &format!("/pg/trap?name=trapped-{round}"), "");
        assert_eq!(status, 500, "the trap answers 500: {body}");
        let (status, body) = post(&r, &format!("/pg/abandon?name=abandoned-{round}"), "");
        assert_eq!(status, 200, "{body}");
        let (status, body) = post(&r, &format!("/pg/tx?name=after-{round}"), "");
        assert_eq!(status, 200, "{body}");
        assert!(body.ends_with(&format!("DbValue::Int64({})", round + 1)), "only committed rows are seen: {body}");
    }
    assert_eq!(
        pg.psql("SELECT string_agg(name, ',' ORDER BY id) FROM items"),
        "after-0,after-1,after-2,after-3,after-4"
    );
    assert_eq!(pid(&r), before, "the same connection, rolled back and reused (not replaced)");
    assert_eq!(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"), "0");
}

#[test]
fn allowed_outbound_hosts_refuses_a_postgres_address_not_listed() {
    let pg = Postgres::start();
    let r = app(&pg).start();
    // Something listening where the guest must not connect.
    let trap = TcpListener::bind("127.0.0.1:0").expect("bind");
    trap.set_nonblocking(true).expect("nonblocking");
    let port = trap.local_addr().expect("addr").port();
    for address in [
        format!("postgres%3A%2F%2Fpostgres%40127.0.0.1%3A{port}%2Fpostgres%3Fsslmode%3Ddisable"),
        format!("host%3D127.0.0.1 port%3D{port} user%3Dpostgres"),
        // The allowed host, with `hostaddr` pointing elsewhere.
        format!("host%3D127.0.0.1 hostaddr%3D127.0.0.1 port%3D{port} user%3Dpostgres"),
    ] {
        let a = r.get(&format!("/pg/open?address={}", address.replace(' ', "%20")));
        assert_eq!(a.status, 403, "{address}: {}", a.body);
        assert!(a.body.contains("ConnectionFailed") && a.body.contains("not permitted"), "{}", a.body);
    }
    assert!(trap.accept().is_err(), "nothing connected to the refused address");
    // The allowed one opens.
    let allowed =
        pg.url().replace(':', "%3A").replace('/', "%2F").replace('@', "%40").replace('?', "%3F").replace('=', "%3D");
    let a = r.get(&format!("/pg/open?address={allowed}"));
    assert_eq!((a.status, a.body.as_str()), (200, "opened"));
}

fn redis_config(url: &str) -> String {
    format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{url}\"\n")
}

#[test]
fn redis_key_value_store_serves_the_default_label_from_redis() {
    let redis = Redis::start();
    let r = RunnerConfig::new(SERVICES).runtime_config(&redis_config(&redis.url())).start();

    let a = r.send("PUT", "/kv?key=greeting", &[], Some(b"hello"));
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(redis.command(&["GET", "greeting"]), "$5\nhello", "stored in Redis under the bare key");
    assert_eq!(r.get("/kv?key=greeting").body, "hello");
    assert_eq!(r.get("/kv-exists?key=greeting").body, "true");
    assert_eq!(r.get("/kv-exists?key=missing").body, "false");
    assert_eq!(r.get("/kv?key=missing").status, 404);

    // Keys written by someone else are the store's too (no prefix).
    redis.command(&["SET", "other", "x"]);
    r.send("PUT", "/kv?key=third", &[], Some(b"3"));
    assert_eq!(r.get("/kv-keys").body, "greeting\nother\nthird");

    let a = r.send("DELETE", "/kv?key=greeting", &[], None);
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(redis.command(&["EXISTS", "greeting"]), ":0");
    assert_eq!(r.get("/kv?key=greeting").status, 404);
}

#[test]
fn an_unreachable_redis_is_an_error_to_the_guest_not_a_crash() {
    // A port where nothing listens.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut r = RunnerConfig::new(SERVICES).runtime_config(&redis_config(&format!("redis://127.0.0.1:{port}"))).start();
    for _ in 0..3 {
        let a = r.send("PUT", "/kv?key=k", &[], Some(b"v"));
        assert_eq!(a.status, 500, "{}", a.body);
        assert!(a.body.contains("Error::Other"), "{}", a.body);
        assert_eq!(r.get("/kv?key=k").status, 500);
    }
    assert!(r.is_running(), "the runner is still up");
    // The rest of the app still answers.
    assert_eq!(r.get("/elsewhere").status, 404);
}

#[test]
fn a_bad_redis_store_config_stops_the_start_with_an_error_naming_it() {
    for (config, expected) in [
        ("[key_value_store.default]\ntype = \"redis\"\n", "url"),
        ("[key_value_store.default]\ntype = \"redis\"\nurl = \"http://x\"\n", "[key_value_store.default]"),
        ("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://x:1\"\npath = \"a\"\n", "path"),
        ("[key_value_store.default]\ntype = \"azure_cosmos\"\n", "azure_cosmos"),
    ] {
        let e = match RunnerConfig::new(SERVICES).runtime_config(config).try_start() {
            Ok(_) => panic!("started with {config}"),
            Err(e) => e,
        };
        assert!(e.contains(expected), "{config}: {e}");
    }
}
