//! `scripts/bench callgrind`'s set-up (not a benchmark itself): prepares a
//! state dir the measured runner (under valgrind, with the tick kept from
//! firing) then serves, with what its requests need and a native runner can
//! make quickly:
//!
//! - accounts `bank` (IDR, `allow_negative`) and `u0`..`u9` (IDR), for
//!   transfers from the bank that are never refused;
//! - N checkout sagas (argument 2) waiting for their payment, made by a
//!   native runner ticking every 5 ms against `bench-upstream`;
//! - a file of N signed Midtrans settlement notifications (argument 3), one
//!   JSON body a line, one per waiting saga, each accepted once.
//!
//! Usage: `bench-callgrind-setup STATE_DIR N NOTIFICATIONS_FILE`. The API
//! token is [`app::TOKEN`] and the Midtrans key [`KEY`]: the measured runner
//! must be given the same (scripts/bench passes them).

use sha2::{Digest, Sha512};
use stepwise_e2e::app::{self, App};
use stepwise_e2e::{json, ledger, BenchUpstream, Value};

/// The Midtrans server key shared with scripts/bench's measured runner.
const KEY: &str = "SB-Mid-server-bench";
const SERVICES: [&str; 7] = ["users", "products", "payment", "payment_api", "wallet", "risk", "betting"];

fn checkout(i: usize) -> Value {
    json!({"definition": "checkout", "input": {"user_token": "bench", "items": [{"product_id": format!("p{}", i % 50), "price": 10000, "quantity": 2}],
           "payment_ttl_ms": 3_600_000}})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, state, n, out] = &args[..] else {
        panic!("usage: bench-callgrind-setup STATE_DIR N NOTIFICATIONS_FILE");
    };
    let n: usize = n.parse().expect("N: a number of sagas");
    let services = BenchUpstream::start(0);
    let mut cfg = app::config()
        .var("midtrans_server_key", KEY)
        .var("tick_budget_ms", "200")
        .env("STEPWISE_LOG", "warn")
        .state_dir(std::path::Path::new(state))
        .tick_ms(5);
    for s in SERVICES {
        cfg = cfg.var(&format!("{s}_url"), &format!("http://127.0.0.1:{}", services.port));
    }
    let mut app = App::with(cfg);
    ledger::account_created(&app, "bank", "IDR", true);
    for i in 0..10 {
        ledger::account_created(&app, &format!("u{i}"), "IDR", false);
    }
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let a = app.api("POST", "/api/sagas", Some(checkout(i)));
            assert_eq!(a.status, 202, "{}", a.body);
            a.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    stepwise_e2e::bench::wait_checkouts_waiting(&app, n);
    let mut text = String::new();
    for id in &ids {
        let sig = hex::encode(Sha512::digest(format!("{id}20020000.00{KEY}")));
        text.push_str(
            &json!({"order_id": id, "status_code": "200", "gross_amount": "20000.00", "transaction_status": "settlement",
                "fraud_status": "accept", "signature_key": sig})
            .to_string(),
        );
        text.push('\n');
    }
    std::fs::write(out, text).expect("the notifications file is written");
    // A clean stop: the measured runner starts on this state dir next.
    let status = app.runner.terminate();
    assert!(status.success(), "the set-up runner stopped with {status}");
    println!("{n} sagas waiting, 11 accounts, token {}", app::TOKEN);
}
