//! A test component for the runner's services: PostgreSQL through
//! `spin_sdk::pg4` (the database at the `database_url` variable) and
//! key-value through the default store. Answers plain text.

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::pg4::{Connection, ParameterValue as P, RowSet};

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query().split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| {
        v.replace("%2F", "/").replace("%3A", ":").replace("%40", "@").replace("%3F", "?").replace("%3D", "=")
    })
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response::builder().status(status).header("content-type", "text/plain").body(body.into()).build()
}

fn database() -> anyhow::Result<Connection> {
    let url = spin_sdk::variables::get("database_url")?;
    Ok(Connection::open(&url)?)
}

/// Columns (`name:type`) on the first line, then one line per row of `Debug` values.
fn render(rows: &RowSet) -> String {
    let mut out: Vec<String> =
        vec![rows.columns.iter().map(|c| format!("{}:{:?}", c.name, c.data_type)).collect::<Vec<_>>().join(" | ")];
    for r in &rows.rows {
        out.push(r.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(" | "));
    }
    out.join("\n")
}

fn body(req: &Request) -> String {
    String::from_utf8_lossy(req.body()).into_owned()
}

#[http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let info = req.header("spin-path-info").and_then(|h| h.as_str()).unwrap_or("").to_string();
    Ok(match (req.method(), info.as_str()) {
        // The body is one statement.
        (Method::Post, "/pg/execute") => match database()?.execute(&body(&req), &[]) {
            Ok(n) => text(200, n.to_string()),
            Err(e) => text(500, format!("{e:?}")),
        },
        (Method::Post, "/pg/query") => match database()?.query(&body(&req), &[]) {
            Ok(rows) => text(200, render(&rows)),
            Err(e) => text(500, format!("{e:?}")),
        },
        // Every parameter type, sent and read back.
        (_, "/pg/types") => {
            let params = [
                P::Boolean(true),
                P::Int16(-7),
                P::Int32(123_456),
                P::Int64(9_000_000_000),
                P::Floating32(1.5),
                P::Floating64(2.25),
                P::Str("héllo".into()),
                P::Binary(vec![0, 1, 255]),
                P::Date((2024, 2, 29)),
                P::Time((13, 14, 15, 500_000_000)),
                P::Datetime((2024, 2, 29, 13, 14, 15, 0)),
                P::Timestamp(1_700_000_000),
                P::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
                P::Jsonb(br#"{"a": [1, 2]}"#.to_vec()),
                P::Decimal("12345.6789".into()),
                P::ArrayInt32(vec![Some(1), None, Some(3)]),
                P::ArrayInt64(vec![Some(4)]),
                P::ArrayStr(vec![Some("x".into()), None]),
                P::ArrayDecimal(vec![Some("0.5".into())]),
                P::Interval(spin_sdk::pg4::Interval { micros: 1_000_000, days: 2, months: 3 }),
                P::DbNull,
            ];
            let sql = "SELECT $1::bool AS b, $2::int2 AS i2, $3::int4 AS i4, $4::int8 AS i8, $5::float4 AS f4, \
                       $6::float8 AS f8, $7::text AS s, $8::bytea AS bin, $9::date AS d, $10::time AS t, \
                       $11::timestamp AS dt, $12::timestamptz AS ts, $13::uuid AS u, $14::jsonb AS j, \
                       $15::numeric AS n, $16::int4[] AS ai4, $17::int8[] AS ai8, $18::text[] AS astr, \
                       $19::numeric[] AS an, $20::interval AS iv, $21::text AS nothing, \
                       'a'::\"char\" AS c, '10.0.0.1'::inet AS other";
            match database()?.query(sql, &params) {
                Ok(rows) => text(200, render(&rows)),
                Err(e) => text(500, format!("{e:?}")),
            }
        }
        // An insert with RETURNING on an identity column, with parameters.
        (Method::Post, "/pg/insert") => {
            let name = query_param(&req, "name").unwrap_or_default();
            let db = database()?;
            match db.query("INSERT INTO items (name) VALUES ($1) RETURNING id", &[P::Str(name)]) {
                Ok(rows) => text(200, render(&rows)),
                Err(e) => text(500, format!("{e:?}")),
            }
        }
        // BEGIN, INSERT ... RETURNING, COMMIT: three calls on one connection.
        (Method::Post, "/pg/tx") => {
            let name = query_param(&req, "name").unwrap_or_default();
            let db = database()?;
            db.execute("BEGIN", &[])?;
            let rows = db.query("INSERT INTO items (name) VALUES ($1) RETURNING id", &[P::Str(name)])?;
            let seen = db.query("SELECT count(*) FROM items", &[])?;
            db.execute("COMMIT", &[])?;
            text(200, format!("{}\n{}", render(&rows), render(&seen)))
        }
        // BEGIN, INSERT, then a trap: the insert must never be committed.
        (Method::Post, "/pg/trap") => {
            let name = query_param(&req, "name").unwrap_or_default();
            let db = database()?;
            db.execute("BEGIN", &[])?;
            db.execute("INSERT INTO items (name) VALUES ($1)", &[P::Str(name)])?;
            panic!("probe-pg traps mid-transaction");
        }
        // BEGIN, INSERT, then an answer without COMMIT.
        (Method::Post, "/pg/abandon") => {
            let name = query_param(&req, "name").unwrap_or_default();
            let db = database()?;
            db.execute("BEGIN", &[])?;
            db.execute("INSERT INTO items (name) VALUES ($1)", &[P::Str(name)])?;
            text(200, "left open")
        }
        // Opens the address in `?address=` (percent-encoded `:/@?=`).
        (_, "/pg/open") => {
            let address = query_param(&req, "address").unwrap_or_default();
            match Connection::open(&address) {
                Ok(_) => text(200, "opened"),
                Err(e) => text(403, format!("{e:?}")),
            }
        }
        (Method::Put, "/kv") => {
            let key = query_param(&req, "key").unwrap_or_default();
            match Store::open_default().and_then(|s| s.set(&key, req.body())) {
                Ok(()) => text(204, ""),
                Err(e) => text(500, format!("{e:?}")),
            }
        }
        (Method::Get, "/kv") => {
            let key = query_param(&req, "key").unwrap_or_default();
            match Store::open_default().and_then(|s| s.get(&key)) {
                Ok(Some(v)) => text(200, String::from_utf8_lossy(&v).into_owned()),
                Ok(None) => text(404, "no such key"),
                Err(e) => text(500, format!("{e:?}")),
            }
        }
        (Method::Delete, "/kv") => {
            let key = query_param(&req, "key").unwrap_or_default();
            match Store::open_default().and_then(|s| s.delete(&key)) {
                Ok(()) => text(204, ""),
                Err(e) => text(500, format!("{e:?}")),
            }
        }
        (_, "/kv-exists") => {
            let key = query_param(&req, "key").unwrap_or_default();
            match Store::open_default().and_then(|s| s.exists(&key)) {
                Ok(b) => text(200, b.to_string()),
                Err(e) => text(500, format!("{e:?}")),
            }
        }
        (_, "/kv-keys") => match Store::open_default().and_then(|s| s.get_keys()) {
            Ok(mut keys) => {
                keys.sort();
                text(200, keys.join("\n"))
            }
            Err(e) => text(500, format!("{e:?}")),
        },
        _ => text(404, format!("probe-pg: nothing at {info}")),
    })
}
