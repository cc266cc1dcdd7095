//! Accounts, transfers with receipts and the double-entry ledger end to
//! end (CONTRACT section 7, and section 6 for the transfer events): the
//! real runner with the real components (the ledger API, the tick that
//! executes transfers) over HTTP. One test per proof item of issue 9, and
//! the rest of section 7 (accounts, failures, `?wait=true`, listing).
//!
//! The ledger is checked against itself through the API only
//! (`stepwise_e2e::ledger::check_ledger`): every balance is summed again
//! from the journals of the completed transfers. The tests that need
//! transfers accepted and not executed start the runner with a cron
//! schedule that does not come due (`ledger::NEVER`), so the tick does not
//! run at all, and restart it on the same state dir with the usual one.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stepwise_e2e::app::{self, App};
use stepwise_e2e::ledger::{self, body, code_of, int, wait_all_final};
use stepwise_e2e::{json, poll_until, request, Answer, Value};
use stepwise_engine::receipt::Key;

const IDR: &str = "IDR";

/// The app with the tick not running: transfers are accepted, not executed.
fn app_without_tick() -> App {
    App::with(app::config().cron_expression(ledger::NEVER))
}

/// What a refused request must leave alone: every account (balance, held,
/// status, lines), every transfer, every event, the transfer gauges.
fn state(app: &App) -> Value {
    let accounts: Vec<Value> =
        ledger::accounts(app).iter().map(|a| ledger::account(app, a["id"].as_str().unwrap())).collect();
    let m = app.api("GET", "/metrics", None).body;
    let gauges: Vec<&str> = m.lines().filter(|l| l.starts_with("stepwise_transfers")).collect();
    json!({ "accounts": accounts, "transfers": ledger::transfers(app, ""), "events": ledger::events(app, ""), "gauges": gauges })
}

/// The sum of every sample of a metric family's series (any labels).
fn metric_sum(app: &App, name: &str) -> f64 {
    let m = app.api("GET", "/metrics", None).body;
    let found: Vec<f64> = m
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
        .collect();
    assert!(!found.is_empty(), "no series {name} in /metrics:\n{m}");
    found.iter().sum()
}

fn assert_error(a: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!((a.status, ledger::error_code(a).as_str()), (status, code), "{what}: {}", a.body);
    assert!(a.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a message: {}", a.body);
}

#[test]
fn bank_to_user_to_another_user_posts_balanced_journals_named_by_the_receipt_and_balances_are_the_sum_of_lines() {
    let app = App::start();
    let bank = ledger::account_created(&app, "bank", IDR, true);
    assert_eq!((bank["allow_negative"].as_bool(), bank["status"].as_str()), (Some(true), Some("active")), "{bank}");
    for id in ["alice", "bob"] {
        let a = ledger::account_created(&app, id, IDR, false);
        assert_eq!((int(&a, "balance"), int(&a, "held"), int(&a, "available")), (0, 0, 0), "{a}");
        assert_eq!(a["lines"], json!([]), "{a}");
    }

    // The bank pays alice, and the request waits until it is done.
    let mut first = body("bank", "alice", 10_000, IDR);
    first["description"] = json!("salary");
    let t1 = ledger::completed(&app, "pay-alice", &first);
    let c1 = code_of(&t1);
    assert!(
        stepwise_engine::receipt::is_valid(&c1) && c1.starts_with("TR-") && c1.len() == "TR-XXXXXXXX-C".len(),
        "{c1}"
    );
    assert_eq!(
        (
            t1["from"].as_str(),
            t1["to"].as_str(),
            t1["amount"].as_i64(),
            t1["currency"].as_str(),
            t1["description"].as_str()
        ),
        (Some("bank"), Some("alice"), Some(10_000), Some(IDR), Some("salary")),
        "{t1}"
    );
    assert!(t1["reason"].is_null(), "{t1}");
    let (created, done) = (
        t1["created_at"].as_str().and_then(stepwise_e2e::timestamp_micros),
        t1["completed_at"].as_str().and_then(stepwise_e2e::timestamp_micros),
    );
    assert!(created.is_some() && done >= created, "created_at, then completed_at: {t1}");

    // Alice pays bob: 202 at once, processing, completed by the tick.
    let a2 = ledger::post(&app, "alice-pays-bob", &body("alice", "bob", 2_500, IDR));
    assert_eq!(a2.status, 202, "{}", a2.body);
    let t2 = a2.json();
    assert_eq!(t2["status"], "processing", "answered before it executes: {t2}");
    let c2 = code_of(&t2);
    assert_ne!(c1, c2);
    let t2 = ledger::wait_final(&app, &c2, Duration::from_secs(30));
    assert_eq!(t2["status"], "completed", "{t2}");

    // Each posted one journal named by its receipt: debit from, credit to.
    for (t, from, to, amount) in [(&t1, "bank", "alice", 10_000), (&t2, "alice", "bob", 2_500)] {
        let code = code_of(t);
        let j = ledger::journal(&app, &t["journal_id"]);
        let lines = ledger::check_journal(t, &j);
        assert_eq!(lines.len(), 2, "{j}");
        assert!(lines.contains(&(from.into(), amount, 0)) && lines.contains(&(to.into(), 0, amount)), "{j}");
        let by_ref = ledger::journals_of(&app, &code);
        assert_eq!(by_ref, vec![j], "GET /api/journals?external_ref={code}");
        assert_eq!(ledger::transfer(&app, &code)["journal_id"], t["journal_id"]);
    }
    assert!(ledger::journals_of(&app, "TR-NOTHING0-0").is_empty());

    // Balances, and each account's lines (newest first) sum to its balance.
    let (_, accounts) = ledger::check_ledger(&app);
    let balances: BTreeMap<&str, i64> = accounts.iter().map(|(id, a)| (id.as_str(), int(a, "balance"))).collect();
    assert_eq!(balances, BTreeMap::from([("alice", 7_500), ("bank", -10_000), ("bob", 2_500)]));
    let alice = &accounts["alice"];
    let refs: Vec<&str> =
        alice["lines"].as_array().unwrap().iter().map(|l| l["external_ref"].as_str().unwrap()).collect();
    assert_eq!(refs, [c2.as_str(), c1.as_str()], "newest first: {alice}");
    assert_eq!(alice["lines"][0]["journal_id"], t2["journal_id"]);
    assert_eq!((int(&alice["lines"][0], "debit"), int(&alice["lines"][0], "credit")), (2_500, 0));

    // Listing: by account, by status, newest first.
    let codes = |q: &str| ledger::transfers(&app, q).iter().map(code_of).collect::<Vec<_>>();
    assert_eq!(codes("account=alice"), [c2.clone(), c1.clone()]);
    assert_eq!(codes("account=bob"), std::slice::from_ref(&c2));
    assert_eq!(codes("account=bank"), std::slice::from_ref(&c1));
    assert_eq!(codes("status=completed"), [c2.clone(), c1.clone()]);
    assert!(codes("status=failed").is_empty());
    assert!(codes("account=nobody").is_empty());
    let a = app.api("GET", "/api/transfers?limit=1", None).json();
    assert_eq!(a["transfers"].as_array().unwrap().len(), 1, "{a}");
    assert!(a["next_cursor"].is_string(), "a second page: {a}");

    // The outbox: one transfer.completed per transfer, with its receipt.
    let evs = ledger::events(&app, "transfer.completed");
    let mut got: Vec<&str> = evs.iter().map(|e| e["receipt_code"].as_str().unwrap()).collect();
    got.sort();
    let mut want = vec![c1.as_str(), c2.as_str()];
    want.sort();
    assert_eq!(got, want, "{evs:?}");
    assert!(evs.iter().all(|e| e["type"] == "transfer.completed" && e["seq"].is_u64()), "{evs:?}");
    assert!(ledger::events(&app, "transfer.failed").is_empty());

    // Metrics: by status, the queue, both latencies.
    assert_eq!(ledger::metric(&app, r#"stepwise_transfers{status="completed"}"#), Some(2.0));
    assert_eq!(ledger::metric(&app, "stepwise_transfers_queued"), Some(0.0));
    assert!(metric_sum(&app, "stepwise_transfer_accept_seconds_count") >= 2.0);
    assert!(metric_sum(&app, "stepwise_transfer_execution_seconds_count") >= 2.0);
}

#[test]
fn each_pre_check_answers_its_422_and_changes_nothing() {
    let app = App::start();
    ledger::account_created(&app, "bank", IDR, true);
    for id in ["alice", "bob", "carol"] {
        ledger::account_created(&app, id, IDR, false);
    }
    ledger::account_created(&app, "eve", "USD", false);
    ledger::completed(&app, "fund-alice", &body("bank", "alice", 1_000, IDR));
    ledger::completed(&app, "fund-carol", &body("bank", "carol", 1_000, IDR));
    let f = app.api("POST", "/api/accounts/carol/freeze", None);
    assert_eq!((f.status, f.json()["status"].as_str()), (200, Some("frozen")), "{}", f.body);

    let before = state(&app);
    let cases = [
        (body("alice", "nobody", 10, IDR), "account_not_found"),
        (body("nobody", "alice", 10, IDR), "account_not_found"),
        (body("alice", "carol", 10, IDR), "account_frozen"),
        (body("carol", "alice", 10, IDR), "account_frozen"),
        (body("alice", "eve", 10, IDR), "currency_mismatch"),
        (body("alice", "bob", 10, "USD"), "currency_mismatch"),
        (body("alice", "alice", 10, IDR), "same_account"),
        (body("bank", "bank", 10, IDR), "same_account"),
        (body("alice", "bob", 1_001, IDR), "insufficient_balance"),
        (body("bob", "alice", 1, IDR), "insufficient_balance"),
    ];
    for (i, (b, code)) in cases.iter().enumerate() {
        let a = ledger::post(&app, &format!("refused-{i}"), b);
        assert_error(&a, 422, code, &b.to_string());
        assert!(a.json().get("receipt_code").is_none(), "no receipt: {}", a.body);
        // Asked again with the same key: the same refusal, nothing stored.
        assert_error(&ledger::post(&app, &format!("refused-{i}"), b), 422, code, &b.to_string());
    }
    assert_eq!(state(&app), before, "the refused transfers changed nothing");

    // A refused transfer kept no idempotency key: the key is free for another body.
    let ok = ledger::accepted(&app, "refused-0", &body("alice", "bob", 600, IDR));
    // The hold counts at once, executed or not: 400 of 1,000 left.
    assert_error(
        &ledger::post(&app, "over-held", &body("alice", "bob", 401, IDR)),
        422,
        "insufficient_balance",
        "over the rest",
    );
    ledger::accepted(&app, "the-rest", &body("alice", "bob", 400, IDR));
    assert_error(
        &ledger::post(&app, "one-more", &body("alice", "bob", 1, IDR)),
        422,
        "insufficient_balance",
        "nothing left",
    );
    wait_all_final(&app, Duration::from_secs(30));
    assert_eq!(ledger::transfer(&app, &code_of(&ok))["status"], "completed");
    let (all, accounts) = ledger::check_ledger(&app);
    assert_eq!(all.len(), 4, "two fundings and two transfers, no refused one: {all:?}");
    assert_eq!((int(&accounts["alice"], "balance"), int(&accounts["bob"], "balance")), (0, 1_000));
}

#[test]
fn amounts_that_are_not_integers_from_1_to_2_pow_53_minus_1_and_a_bad_or_missing_idempotency_key_answer_400() {
    let app = App::start();
    ledger::account_created(&app, "bank", IDR, true);
    ledger::account_created(&app, "alice", IDR, false);
    ledger::completed(&app, "fund", &body("bank", "alice", 50, IDR));
    let raw = |amount: &str| format!(r#"{{"from": "bank", "to": "alice", "amount": {amount}, "currency": "IDR"}}"#);
    let before = state(&app);
    let bad_amounts = [
        "0",
        "-1",
        "-9007199254740991",
        "1.0",
        "1.5",
        "1e3",
        "\"5\"",
        "9007199254740992",
        "18446744073709551616",
        "null",
        "true",
        "[1]",
        "{}",
    ];
    for (i, amount) in bad_amounts.iter().enumerate() {
        let a = ledger::post_raw(&app, "", Some(format!("bad-amount-{i}").as_str()), &raw(amount));
        assert_eq!(a.status, 400, "amount {amount}: {}", a.body);
        assert!(a.json()["error"]["message"].as_str().unwrap_or("").contains("amount"), "names the field: {}", a.body);
    }
    // Past f64's range the body is no JSON number at all: 400, from the JSON reader.
    assert_eq!(ledger::post_raw(&app, "", Some("huge"), &raw("1e400")).status, 400, "1e400");
    let a = ledger::post_raw(&app, "", Some("no-amount"), r#"{"from": "bank", "to": "alice", "currency": "IDR"}"#);
    assert_eq!(a.status, 400, "no amount: {}", a.body);
    for (what, b) in [
        ("not JSON", "{\"from\": "),
        ("no to", r#"{"from": "bank", "amount": 5, "currency": "IDR"}"#),
        ("an array", "[]"),
    ] {
        assert_eq!(ledger::post_raw(&app, "", Some("bad-body"), b).status, 400, "{what}");
    }
    // The key: missing, empty, 256 characters.
    let good = raw("5");
    let a = ledger::post_raw(&app, "", None, &good);
    assert_eq!(a.status, 400, "no Idempotency-Key: {}", a.body);
    assert!(a.body.to_ascii_lowercase().contains("idempotency"), "names the header: {}", a.body);
    assert_eq!(ledger::post_raw(&app, "", Some(""), &good).status, 400, "an empty key");
    let long = "k".repeat(256);
    assert_eq!(ledger::post_raw(&app, "", Some(long.as_str()), &good).status, 400, "a 256-character key");
    assert_eq!(state(&app), before, "no 400 changed anything");

    // The edges that pass: 1, 2^53 − 1, a 255-character key of printable characters.
    ledger::accepted(&app, "one", &body("bank", "alice", 1, IDR));
    let max = ledger::post_raw(&app, "", Some("max"), &raw("9007199254740991"));
    assert_eq!(max.status, 202, "2^53 - 1: {}", max.body);
    assert_eq!(max.json()["amount"].as_u64(), Some((1 << 53) - 1));
    let printable: String = (0x21u8..0x7F).map(char::from).cycle().take(255).collect();
    assert_eq!(ledger::post_raw(&app, "", Some(printable.as_str()), &good).status, 202, "a 255-character key");
    wait_all_final(&app, Duration::from_secs(30));
    let (_, accounts) = ledger::check_ledger(&app);
    assert_eq!(int(&accounts["alice"], "balance"), 50 + 1 + 9_007_199_254_740_991 + 5);
}

#[test]
fn the_same_key_with_the_same_body_gives_the_same_receipt_and_another_body_409() {
    let app = App::start();
    ledger::account_created(&app, "bank", IDR, true);
    ledger::account_created(&app, "alice", IDR, false);
    ledger::account_created(&app, "bob", IDR, false);
    let mut b = body("bank", "alice", 700, IDR);
    b["description"] = json!("invoice 7");
    let first = ledger::accepted(&app, "order-7", &b);
    assert_eq!(first["status"], "processing");
    let code = code_of(&first);
    let again = ledger::post(&app, "order-7", &b);
    assert!(matches!(again.status, 200 | 202), "{}", again.body);
    assert_eq!(code_of(&again.json()), code, "the same receipt");
    ledger::wait_final(&app, &code, Duration::from_secs(30));
    let later = ledger::post(&app, "order-7", &b);
    assert!(matches!(later.status, 200 | 202), "{}", later.body);
    let later = later.json();
    assert_eq!(
        (code_of(&later), later["status"].as_str()),
        (code.clone(), Some("completed")),
        "the current status: {later}"
    );

    let mut others = vec![
        body("bank", "alice", 701, IDR),
        body("bank", "bob", 700, IDR),
        body("alice", "bob", 700, IDR),
        body("bank", "alice", 700, "USD"),
    ];
    others.push({
        let mut o = b.clone();
        o["description"] = json!("invoice 8");
        o
    });
    others.push(body("bank", "alice", 700, IDR)); // the description left out
    for o in &others {
        assert_error(&ledger::post(&app, "order-7", o), 409, "idempotency_key_reused", &o.to_string());
    }
    // Another key with the same body is another transfer.
    let second = ledger::accepted(&app, "order-7b", &b);
    assert_ne!(code_of(&second), code);

    // One key sent by 8 clients at once: one transfer.
    let race = body("bank", "bob", 300, IDR);
    let codes: HashSet<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let a = ledger::post(&app, "race", &race);
                    assert!(matches!(a.status, 200 | 202), "{}", a.body);
                    code_of(&a.json())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes.len(), 1, "{codes:?}");
    wait_all_final(&app, Duration::from_secs(30));
    let (all, accounts) = ledger::check_ledger(&app);
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!((int(&accounts["alice"], "balance"), int(&accounts["bob"], "balance")), (1_400, 300), "each moved once");
}

#[test]
fn every_single_character_typo_of_a_receipt_code_answers_400_and_an_unknown_well_formed_code_404() {
    let app = App::start();
    ledger::account_created(&app, "bank", IDR, true);
    ledger::account_created(&app, "alice", IDR, false);
    let code = code_of(&ledger::completed(&app, "t", &body("bank", "alice", 5, IDR)));
    assert_eq!(ledger::get_transfer(&app, &code).status, 200);
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let auth = format!("Bearer {}", app::TOKEN);
    let get = |c: &str| -> (u16, String) {
        match agent.get(&app.runner.url(&format!("/api/transfers/{c}"))).set("authorization", &auth).call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("GET {c}: {e}"),
        }
    };
    let bytes = code.as_bytes();
    let mut typos = 0;
    for i in 0..bytes.len() {
        for &ch in ALPHABET.iter().filter(|&&ch| ch != bytes[i]) {
            let mut t = bytes.to_vec();
            t[i] = ch;
            let typo = String::from_utf8(t).unwrap();
            let (status, body) = get(&typo);
            assert_eq!(status, 400, "{code} mistyped as {typo}: {body}");
            assert!(body.contains("\"invalid_receipt_code\""), "{typo}: {body}");
            typos += 1;
        }
    }
    // 35 other characters at each position, 36 where the code has a '-'.
    assert_eq!(typos, bytes.len() * 35 + bytes.iter().filter(|&&b| b == b'-').count());
    // Neighbours swapped, lower case, and shapes that are no code at all.
    for i in 0..bytes.len() - 1 {
        if bytes[i] != bytes[i + 1] {
            let mut t = bytes.to_vec();
            t.swap(i, i + 1);
            let swapped = String::from_utf8(t).unwrap();
            assert_eq!(get(&swapped).0, 400, "{code} swapped as {swapped}");
        }
    }
    for bad in [
        code.to_ascii_lowercase(),
        format!("{code}0"),
        code[..code.len() - 2].to_string(),
        "TR-XYZ".into(),
        "nonsense".into(),
    ] {
        let (status, body) = get(&bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("\"invalid_receipt_code\""), "{bad}: {body}");
    }
    // Well formed, check right, never issued: 404. Among them the code the
    // first transfer had before databases had their own key: guessing it
    // with the source in hand finds nothing.
    let legacy = stepwise_engine::receipt::code(&Key::legacy(), "TR", 1);
    let other_key = Key::new(&[0xEE; 32]);
    let others =
        [1u64 << 40, 36u64.pow(8) - 1, 987_654_321].map(|id| stepwise_engine::receipt::code(&other_key, "TR", id));
    for unknown in std::iter::once(legacy).chain(others) {
        assert!(stepwise_engine::receipt::is_valid(&unknown));
        let (status, body) = get(&unknown);
        assert_eq!(status, 404, "{unknown}: {body}");
    }
}

#[test]
fn sixteen_clients_sending_1600_random_transfers_among_20_accounts_every_accepted_one_completes_and_money_is_conserved()
{
    let app = App::start();
    ledger::sixteen_clients_1600_random_transfers(&[&app]);
}

/// `n` transfers from the bank to users u0..u9, accepted (from 4 clients);
/// their receipt codes and bodies by key.
fn accept_from_the_bank(app: &App, n: usize) -> BTreeMap<String, (String, Value)> {
    let out = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for c in 0..4 {
            let out = &out;
            s.spawn(move || {
                for i in (c..n).step_by(4) {
                    let key = format!("k{i}");
                    let b = body("bank", &format!("u{}", i % 10), 100 + i as u64, IDR);
                    let t = ledger::accepted(app, &key, &b);
                    out.lock().unwrap().insert(key, (code_of(&t), b));
                }
            });
        }
    });
    out.into_inner().unwrap()
}

fn accounts_for_the_bank(app: &App) {
    ledger::account_created(app, "bank", IDR, true);
    for i in 0..10 {
        ledger::account_created(app, &format!("u{i}"), IDR, false);
    }
}

/// After a crash and restart: every transfer accepted before it completed,
/// with one journal and one event each, and its key still answers its receipt.
fn check_all_completed_once(app: &App, accepted: &BTreeMap<String, (String, Value)>) {
    wait_all_final(app, Duration::from_secs(120));
    let (all, accounts) = ledger::check_ledger(app);
    assert_eq!(all.len(), accepted.len());
    assert!(all.iter().all(|t| t["status"] == "completed"), "all complete");
    let total: i64 = accepted.values().map(|(_, b)| int(b, "amount")).sum();
    assert_eq!(int(&accounts["bank"], "balance"), -total);
    let evs = ledger::events(app, "transfer.completed");
    let codes: HashSet<&str> = evs.iter().map(|e| e["receipt_code"].as_str().unwrap()).collect();
    assert_eq!((evs.len(), codes.len()), (accepted.len(), accepted.len()), "one transfer.completed each");
    for (key, (code, b)) in accepted.iter().take(5) {
        let a = ledger::post(app, key, b);
        assert!(matches!(a.status, 200 | 202), "{}", a.body);
        let t = a.json();
        assert_eq!(
            (code_of(&t), t["status"].as_str()),
            (code.clone(), Some("completed")),
            "the key outlived the crash"
        );
    }
}

#[test]
fn sigkill_with_300_transfers_accepted_and_not_executed_then_restart_completes_each_with_exactly_one_journal() {
    let mut app = app_without_tick();
    accounts_for_the_bank(&app);
    let accepted = accept_from_the_bank(&app, 300);
    assert_eq!(accepted.len(), 300);

    // Accepted, held, not executed: the tick has not run.
    let listed = ledger::transfers(&app, "");
    assert_eq!(listed.len(), 300);
    assert!(listed.iter().all(|t| t["status"] == "processing" && t["journal_id"].is_null()), "none executed");
    let total: i64 = accepted.values().map(|(_, b)| int(b, "amount")).sum();
    let bank = ledger::account(&app, "bank");
    assert_eq!((int(&bank, "balance"), int(&bank, "held"), int(&bank, "available")), (0, total, -total), "{bank}");
    assert_eq!(int(&ledger::account(&app, "u3"), "balance"), 0);
    assert_eq!(ledger::metric(&app, "stepwise_transfers_queued"), Some(300.0));
    assert_eq!(app.ticks(), 0, "no tick ran");

    app.runner.kill();
    app.restart_with(app::config());
    check_all_completed_once(&app, &accepted);
    assert_eq!(ledger::metric(&app, "stepwise_transfers_queued"), Some(0.0));
}

#[test]
fn sigkill_while_the_tick_executes_a_backlog_then_restart_completes_each_exactly_once() {
    let mut app = app_without_tick();
    accounts_for_the_bank(&app);
    // 6,000: executed at about 17,000/s, the backlog lasts a third of a
    // second, well past the moment the first completion is seen.
    let accepted = accept_from_the_bank(&app, 6_000);
    app.runner.kill();
    // The tick starts on the backlog; killed as soon as the first has completed.
    app.restart_with(app::config());
    let t0 = Instant::now();
    poll_until(Duration::from_secs(60), "a first transfer completed", || {
        let a = app.api("GET", "/api/transfers?status=completed&limit=1", None);
        (!a.json()["transfers"].as_array().unwrap().is_empty()).then_some(())
    });
    app.runner.kill();
    // Read from the database itself, with no runner: the kill came mid-batch
    // work, with transfers executed and transfers still to execute.
    let processing = app.scalar("SELECT count(*) FROM transfers WHERE status = 'processing'");
    let completed = app.scalar("SELECT count(*) FROM transfers WHERE status = 'completed'");
    eprintln!("killed {:?} after the restart: {completed} completed, {processing} processing", t0.elapsed());
    assert!(
        completed > 0 && processing > 0,
        "the kill must land while the backlog executes: {completed} completed, {processing} processing"
    );
    app.runner.restart();
    check_all_completed_once(&app, &accepted);
}

#[test]
fn a_transfer_to_an_account_frozen_after_acceptance_fails_releases_its_hold_and_wait_answers_202_after_10_s() {
    let mut app = app_without_tick();
    ledger::account_created(&app, "bank", IDR, true);
    ledger::account_created(&app, "alice", IDR, false);
    ledger::account_created(&app, "bob", IDR, false);
    let doomed = code_of(&ledger::accepted(&app, "to-alice", &body("bank", "alice", 500, IDR)));
    // Waited for, but nothing executes it: 202 after 10 s.
    let t0 = Instant::now();
    let a = ledger::post_raw(&app, "?wait=true", Some("to-bob"), &body("bank", "bob", 700, IDR).to_string());
    let waited = t0.elapsed();
    assert_eq!((a.status, a.json()["status"].as_str()), (202, Some("processing")), "{}", a.body);
    assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(30), "answered after {waited:?}");
    let fine = code_of(&a.json());
    let f = app.api("POST", "/api/accounts/alice/freeze", None);
    assert_eq!((f.status, f.json()["status"].as_str()), (200, Some("frozen")), "{}", f.body);
    assert_eq!(int(&ledger::account(&app, "bank"), "held"), 1_200);

    app.restart_with(app::config());
    let t = ledger::wait_final(&app, &doomed, Duration::from_secs(30));
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["reason"], "account_frozen", "{t}");
    assert!(t["journal_id"].is_null(), "{t}");
    assert_eq!(ledger::wait_final(&app, &fine, Duration::from_secs(30))["status"], "completed");
    let (_, accounts) = ledger::check_ledger(&app);
    assert_eq!((int(&accounts["bank"], "balance"), int(&accounts["bank"], "held")), (-700, 0), "the hold is released");
    assert_eq!(int(&accounts["alice"], "balance"), 0);
    let failed = ledger::events(&app, "transfer.failed");
    assert_eq!(
        failed.iter().map(|e| e["receipt_code"].as_str().unwrap()).collect::<Vec<_>>(),
        [doomed.as_str()],
        "{failed:?}"
    );
    assert_eq!(failed[0]["data"]["reason"], "account_frozen", "the event names the reason: {failed:?}");
    assert_eq!(ledger::metric(&app, r#"stepwise_transfers{status="failed"}"#), Some(1.0));

    // Unfrozen, alice takes transfers again.
    let u = app.api("POST", "/api/accounts/alice/unfreeze", None);
    assert_eq!((u.status, u.json()["status"].as_str()), (200, Some("active")), "{}", u.body);
    ledger::completed(&app, "to-alice-again", &body("bank", "alice", 500, IDR));
    assert_eq!(int(&ledger::account(&app, "alice"), "balance"), 500);
}

#[test]
fn accounts_are_created_once_frozen_and_unfrozen_listed_page_by_page_and_need_the_token() {
    let app = App::start();
    let created = ledger::create_account(&app, "acc-1", IDR, false);
    assert_eq!(created.status, 201, "{}", created.body);
    let a = created.json();
    assert_eq!(
        (a["id"].as_str(), a["currency"].as_str(), a["status"].as_str(), a["allow_negative"].as_bool()),
        (Some("acc-1"), Some(IDR), Some("active"), Some(false)),
        "{a}"
    );
    let again = ledger::create_account(&app, "acc-1", IDR, false);
    assert_eq!(again.status, 200, "the same body again: {}", again.body);
    assert_eq!(again.json()["id"], "acc-1");
    for other in [
        json!({"id": "acc-1", "currency": "USD"}),
        json!({"id": "acc-1", "currency": IDR, "allow_negative": true}),
        json!({"id": "acc-1", "currency": IDR, "name": "Ann"}),
    ] {
        let a = app.api("POST", "/api/accounts", Some(other.clone()));
        assert_error(&a, 409, "account_exists", &other.to_string());
    }
    let named = app.api("POST", "/api/accounts", Some(json!({"id": "acc-2", "currency": IDR, "name": "Ann"})));
    assert_eq!(
        (named.status, named.json()["name"].as_str(), named.json()["allow_negative"].as_bool()),
        (201, Some("Ann"), Some(false)),
        "{}",
        named.body
    );
    for bad in [
        json!({"id": "acc-3", "currency": "idr"}),
        json!({"id": "acc-3", "currency": "RUPIAH"}),
        json!({"id": "acc-3"}),
        json!({"currency": IDR}),
        json!({"id": "acc-3", "currency": IDR, "allow_negative": "yes"}),
    ] {
        assert_eq!(app.api("POST", "/api/accounts", Some(bad.clone())).status, 400, "{bad}");
    }
    assert_eq!(app.api("GET", "/api/accounts/acc-3", None).status, 404, "no bad request created one");
    assert_eq!(app.api("POST", "/api/accounts/nobody/freeze", None).status, 404);

    assert_eq!(a["allowed_actions"], json!(["freeze"]), "an active account may be frozen: {a}");
    let f = app.api("POST", "/api/accounts/acc-1/freeze", None);
    assert_eq!((f.status, f.json()["status"].as_str()), (200, Some("frozen")), "{}", f.body);
    assert_eq!(f.json()["allowed_actions"], json!(["unfreeze"]), "{}", f.body);
    assert_eq!(ledger::account(&app, "acc-1")["status"], "frozen");
    let u = app.api("POST", "/api/accounts/acc-1/unfreeze", None);
    assert_eq!((u.status, u.json()["status"].as_str()), (200, Some("active")), "{}", u.body);
    assert_eq!(u.json()["allowed_actions"], json!(["freeze"]), "{}", u.body);

    for i in 0..25 {
        ledger::account_created(&app, &format!("many-{i:02}"), "EUR", false);
    }
    let listed: Vec<String> = ledger::all_pages(&app, "/api/accounts", "accounts", 10)
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!((listed.len(), unique.len()), (27, 27), "every account once over pages of 10: {listed:?}");

    for (method, path) in [
        ("GET", "/api/accounts"),
        ("POST", "/api/accounts"),
        ("GET", "/api/transfers"),
        ("POST", "/api/transfers"),
        ("GET", "/api/journals?external_ref=x"),
    ] {
        let a = request(method, &app.runner.url(path), &[("idempotency-key", "x")], Some("{}".as_bytes())).unwrap();
        assert_eq!(a.status, 401, "{method} {path} without the token");
    }
}

/// What a new database issues first: a transfer's receipt code, a saga (order)
/// id, a worker iteration's receipt code and the worker's request ids.
fn first_ids(app: &App) -> (String, String, String, HashSet<u64>) {
    ledger::account_created(app, "bank", IDR, true);
    ledger::account_created(app, "alice", IDR, false);
    let transfer = code_of(&ledger::completed(app, "t", &body("bank", "alice", 5, IDR)));
    let input = json!({"user_token": "tok", "items": [{"product_id": "p1", "price": 10000, "quantity": 2}], "payment_ttl_ms": 600000});
    let a = app.api("POST", "/api/sagas", Some(json!({ "definition": "checkout", "input": input })));
    assert_eq!(a.status, 202, "{}", a.body);
    let saga = a.json()["id"].as_str().unwrap().to_string();
    app.start_workers(&["b-1"], json!({ "max_iterations": 1 }));
    assert_eq!(app.wait_stopped("b-1")["successes"], 1);
    let its = app.api("GET", "/api/workers/b-1/iterations", None).json();
    let iteration = its["iterations"][0]["receipt_code"].as_str().unwrap().to_string();
    let requests: HashSet<u64> =
        app.request_log("b-1").iter().map(|r| r["request_id"].as_str().unwrap().parse().unwrap()).collect();
    (transfer, saga, iteration, requests)
}

/// Two new state dirs (after a wipe, or a staging app beside production):
/// the request ids they send upstream are disjoint, and their receipt codes
/// and saga (order) ids are unrelated to each other's and to what the legacy
/// scheme written in the source makes.
#[test]
fn two_fresh_state_dirs_issue_disjoint_request_ids_and_unrelated_receipt_codes_and_saga_ids() {
    let (a, b) = (App::start(), App::start());
    let (ta, sa, wa, ra) = first_ids(&a);
    let (tb, sb, wb, rb) = first_ids(&b);
    let legacy = Key::legacy();
    for (t, s, w) in [(&ta, &sa, &wa), (&tb, &sb, &wb)] {
        assert!(t.starts_with("TR-") && s.starts_with("SG-") && w.starts_with("SW-"), "{t} {s} {w}");
        assert_ne!(
            *t,
            stepwise_engine::receipt::code(&legacy, "TR", 1),
            "the first transfer's code is not the source's"
        );
        assert_ne!(
            *w,
            stepwise_engine::receipt::code(&legacy, "SW", 1),
            "the first iteration's code is not the source's"
        );
    }
    assert_ne!(ta, tb);
    assert_ne!(sa, sb);
    assert_ne!(wa, wb);
    assert!(!ra.is_empty() && !rb.is_empty());
    assert!(ra.is_disjoint(&rb), "request ids shared by two new databases: {ra:?} {rb:?}");
    for id in ra.iter().chain(&rb) {
        assert!(*id > 1 && *id < 1 << 53, "request id {id}");
    }
}

/// A state dir of the release before databases had their own key: its
/// transfers keep their receipt codes (the detail answers them), and new
/// transfers follow the same scheme, after the old ones.
#[test]
fn a_state_dir_of_the_release_before_keys_keeps_resolving_its_receipt_codes() {
    let legacy = Key::legacy();
    let old = stepwise_engine::receipt::code(&legacy, "TR", 1);
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("sqlite_db.db")).unwrap();
        c.execute_batch(include_str!("../../crates/store/tests/fixtures/schema_v7.sql")).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0);
             INSERT INTO accounts VALUES ('bank', 'IDR', 'active', 1, NULL, -5, 0, 0, 0), ('alice', 'IDR', 'active', 0, NULL, 5, 0, 0, 0);
             INSERT INTO transfers (id, from_account, to_account, amount, currency, status, journal_id, created_at, completed_at)
                 VALUES (1, 'bank', 'alice', 5, 'IDR', 'completed', 1, 1795000000000, 1795000000001);",
        )
        .unwrap();
        c.execute("INSERT INTO journals (id, external_ref, posted_at) VALUES (1, ?1, 1795000000001)", [&old]).unwrap();
        c.execute_batch("INSERT INTO ledger_lines (journal_id, account, debit, credit) VALUES (1, 'bank', 5, 0), (1, 'alice', 0, 5)").unwrap();
    }
    // The old release's state is a SQLite file, whatever database the other tests use.
    let app = App::with(app::config().state_dir(dir.path()).var("database_url", ""));
    let t = ledger::get_transfer(&app, &old);
    assert_eq!(t.status, 200, "{}", t.body);
    assert_eq!((t.json()["receipt_code"].as_str(), t.json()["amount"].as_u64()), (Some(old.as_str()), Some(5)));
    let new = code_of(&ledger::completed(&app, "t2", &body("bank", "alice", 3, IDR)));
    assert_eq!(new, stepwise_engine::receipt::code(&legacy, "TR", 2), "new codes follow the old scheme");
    assert_eq!(ledger::get_transfer(&app, &new).status, 200);
    let page = app.api("GET", "/api/transfers?limit=1", None).json();
    assert_eq!(page["next_cursor"], new.as_str());
    let next = app.api("GET", &format!("/api/transfers?limit=1&cursor={new}"), None).json();
    assert_eq!(next["transfers"][0]["receipt_code"], old.as_str(), "{next}");
}

#[test]
fn a_corrupt_or_orphaned_processing_transfer_fails_alone_with_its_reason_and_the_transfers_after_it_complete_in_the_same_tick(
) {
    let mut app = app_without_tick();
    ledger::account_created(&app, "bank", IDR, true);
    for id in ["alice", "bob", "ghost"] {
        ledger::account_created(&app, id, IDR, false);
    }
    // Accepted while nothing executes; the two to be damaged first, at the
    // head of the id order that execution follows.
    let unreadable = code_of(&ledger::accepted(&app, "unreadable", &body("bank", "alice", 300, IDR)));
    let orphan = code_of(&ledger::accepted(&app, "orphan", &body("bank", "ghost", 200, IDR)));
    let later: Vec<String> = (0..5)
        .map(|i| code_of(&ledger::accepted(&app, &format!("later-{i}"), &body("bank", "bob", 10 + i, IDR))))
        .collect();
    // The rows in acceptance order (ids are the database's own).
    let ids = app.column_i64("SELECT id FROM transfers ORDER BY id");
    // The first one's amount made unreadable: text where a number belongs
    // (SQLite keeps it); PostgreSQL's column takes no text, so a NULL there.
    let (u, o) = (ids[0] as u64, ids[1] as u64);
    app.execute(&match app.postgres {
        Some(_) => format!("ALTER TABLE transfers ALTER COLUMN amount DROP NOT NULL; UPDATE transfers SET amount = NULL WHERE id = {u}"),
        None => format!("UPDATE transfers SET amount = 'three hundred' WHERE id = {u}"),
    });
    // The second one orphaned: its account `to` deleted.
    app.execute("DELETE FROM accounts WHERE id = 'ghost'");
    assert_eq!(app.scalar("SELECT count(*) FROM transfers WHERE status = 'processing'"), 7);
    assert_eq!(ledger::get_transfer(&app, &unreadable).status, 500, "the damaged row cannot be read");

    app.restart_with(app::config());
    for code in &later {
        assert_eq!(
            ledger::wait_final(&app, code, Duration::from_secs(30))["status"],
            "completed",
            "{code} completes despite the damaged ones before it"
        );
    }
    // The orphan: failed with its reason, its hold on the bank released.
    let t = ledger::wait_final(&app, &orphan, Duration::from_secs(30));
    assert_eq!((t["status"].as_str(), t["reason"].as_str()), (Some("failed"), Some("account_missing")), "{t}");
    assert!(t["journal_id"].is_null() && t["completed_at"].is_string(), "{t}");
    // The unreadable one: failed with its reason, in the same batch as the rest.
    let failed = |id: u64| {
        app.scalar(&format!("SELECT count(*) FROM transfers WHERE id = {id} AND status = 'failed' AND reason = 'unreadable' AND journal_id IS NULL AND completed_at IS NOT NULL"))
    };
    assert_eq!(failed(u), 1, "the unreadable transfer failed with reason unreadable");
    assert_eq!(app.scalar("SELECT count(*) FROM transfers WHERE status = 'processing'"), 0);
    assert_eq!(app.scalar("SELECT count(DISTINCT completed_at) FROM transfers"), 1, "all seven ended in one batch");
    assert_eq!(app.scalar(&format!("SELECT count(*) FROM transfers WHERE id IN ({u}, {o}) AND status = 'failed'")), 2);
    // Each has its transfer.failed with its reason; the unreadable amount is null.
    let evs = ledger::events(&app, "transfer.failed");
    let by_code: BTreeMap<&str, &Value> =
        evs.iter().map(|e| (e["receipt_code"].as_str().unwrap(), &e["data"])).collect();
    assert_eq!(by_code.len(), evs.len(), "one event each: {evs:?}");
    assert_eq!(by_code.keys().copied().collect::<Vec<_>>(), {
        let mut want = vec![unreadable.as_str(), orphan.as_str()];
        want.sort();
        want
    });
    assert_eq!(
        by_code[unreadable.as_str()],
        &json!({"from": "bank", "to": "alice", "amount": null, "currency": IDR, "reason": "unreadable"})
    );
    assert_eq!(
        by_code[orphan.as_str()],
        &json!({"from": "bank", "to": "ghost", "amount": 200, "currency": IDR, "reason": "account_missing"})
    );
    assert_eq!(ledger::events(&app, "transfer.completed").len(), 5);
    assert_eq!(ledger::metric(&app, r#"stepwise_transfers{status="failed"}"#), Some(2.0));
    assert_eq!(ledger::metric(&app, r#"stepwise_transfers_executed_total{status="failed"}"#), Some(2.0));
    assert_eq!(ledger::metric(&app, r#"stepwise_transfers_executed_total{status="completed"}"#), Some(5.0));
    // The orphan's 200 is released; the unreadable one's hold cannot be
    // known from its row, so it stays held for an operator, not guessed.
    let bank = ledger::account(&app, "bank");
    assert_eq!((int(&bank, "balance"), int(&bank, "held")), (-60, 300), "{bank}");
    assert_eq!(int(&ledger::account(&app, "bob"), "balance"), 60);
    // Ticks go on without it: another transfer completes.
    ledger::completed(&app, "after", &body("bank", "alice", 7, IDR));

    // An operator repairs the row and releases its hold: then it answers as
    // failed, with its reason, and the ledger checks out.
    app.execute(&format!(
        "UPDATE transfers SET amount = 300 WHERE id = {u}; UPDATE accounts SET held = held - 300 WHERE id = 'bank'"
    ));
    let t = ledger::transfer(&app, &unreadable);
    assert_eq!(
        (t["status"].as_str(), t["reason"].as_str(), t["amount"].as_i64()),
        (Some("failed"), Some("unreadable"), Some(300)),
        "{t}"
    );
    let (all, accounts) = ledger::check_ledger(&app);
    assert_eq!(all.len(), 8);
    assert_eq!(
        (int(&accounts["bank"], "balance"), int(&accounts["alice"], "balance"), int(&accounts["bob"], "balance")),
        (-67, 7, 60)
    );
}

/// The largest amount a transfer may carry: 2^53 − 1.
const MAX_AMOUNT: u64 = (1 << 53) - 1;

/// Transfers accepted together that would take a balance past ±2^62: each
/// passed its pre-checks alone (the receiver was empty), and at execution,
/// oldest first by one executor, the first 512 fit under the limit and the 513th fails
/// with `balance_limit`, its hold released and its `transfer.failed` event
/// carrying the reason. Once the receiver is near the limit, a transfer
/// that would pass it is refused at acceptance (422 `balance_limit`).
#[test]
fn transfers_accepted_together_past_the_balance_limit_fail_the_one_that_would_pass_it() {
    let mut app = app_without_tick();
    for bank in ["bank1", "bank2"] {
        ledger::account_created(&app, bank, IDR, true);
    }
    ledger::account_created(&app, "alice", IDR, false);
    let mut codes = Vec::new();
    for i in 0..513 {
        let from = if i % 2 == 0 { "bank1" } else { "bank2" };
        codes.push(code_of(&ledger::accepted(&app, &format!("big-{i}"), &body(from, "alice", MAX_AMOUNT, IDR))));
    }
    // One executor, batch after batch (the manifest's 1-second cron with
    // the tests' short budget): overlapping runs would take disjoint batches,
    // and on PostgreSQL a later batch may commit first (docs/behaviour.md),
    // so which transfer passes the limit would not be the 513th.
    app.restart_with(app::config().cron_schedule());
    wait_all_final(&app, Duration::from_secs(60));
    let last = ledger::transfer(&app, &codes[512]);
    assert_eq!((last["status"].as_str(), last["reason"].as_str()), (Some("failed"), Some("balance_limit")), "{last}");
    for code in &codes[..512] {
        assert_eq!(ledger::transfer(&app, code)["status"], "completed", "{code}: the 512 before it fit");
    }
    let failed = ledger::events(&app, "transfer.failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (failed[0]["receipt_code"].as_str(), failed[0]["data"]["reason"].as_str()),
        (Some(&codes[512][..]), Some("balance_limit")),
        "{failed:?}"
    );
    let (_, accounts) = ledger::check_ledger(&app);
    let near = 512 * MAX_AMOUNT as i64;
    assert_eq!(int(&accounts["alice"], "balance"), near, "2^62 − 512");
    assert_eq!(int(&accounts["bank1"], "held"), 0, "the failed transfer's hold is released");
    // Near the limit, acceptance refuses what would pass it, and takes what fits.
    let over = ledger::post(&app, "over", &body("bank1", "alice", 513, IDR));
    assert_error(&over, 422, "balance_limit", "513 more would pass 2^62");
    ledger::completed(&app, "exactly", &body("bank1", "alice", 512, IDR));
    assert_eq!(int(&ledger::account(&app, "alice"), "balance"), 1 << 62, "exactly at the limit is allowed");
}

/// SQLite's write lock held by another process on the database file for
/// longer than the 5 s lock wait: a transfer is answered 503
/// `database_busy` with `Retry-After`, and nothing of it is written (no
/// transfer, no hold, the key unused). Once the lock is free, the same
/// request with the same key is accepted, once. SQLite's lock, so on SQLite
/// whatever `STEPWISE_E2E_DATABASE` says.
#[test]
fn a_transfer_that_finds_the_database_busy_past_its_lock_wait_is_a_503_to_retry_and_writes_nothing() {
    let app = App::with_database(app::config().cron_expression(ledger::NEVER), app::Database::Sqlite);
    ledger::account_created(&app, "bank", IDR, true);
    ledger::account_created(&app, "u0", IDR, false);
    let before = state(&app);
    let other = app.runner.database();
    other.execute_batch("BEGIN IMMEDIATE").expect("another process takes the write lock");
    let started = Instant::now();
    let a = ledger::post(&app, "busy-1", &body("bank", "u0", 700, IDR));
    let waited = started.elapsed();
    other.execute_batch("ROLLBACK").expect("the lock is let go");
    assert_error(&a, 503, "database_busy", "while another process held the write lock");
    assert_eq!(a.header("retry-after"), Some("1"), "a 503 says when to try again: {:?}", a.headers);
    assert!(waited >= Duration::from_secs(4), "refused after the lock wait, not at once: {waited:?}");
    assert_eq!(state(&app), before, "a refused transfer writes nothing");
    let t = ledger::accepted(&app, "busy-1", &body("bank", "u0", 700, IDR));
    assert_eq!(ledger::transfers(&app, "").len(), 1, "accepted once: {t}");
}

/// The tick executes accepted transfers in the order they were accepted:
/// the journals of 600 transfers accepted with no tick running are posted
/// in acceptance order (their receipt codes, being keyed permutations,
/// have no order of their own). The runs fire on the manifest's 1-second
/// cron, so one executor takes batch after batch; overlapping runs (the
/// tests' fast `--tick-ms`, or replicas) take disjoint batches, and on
/// PostgreSQL a later batch may then commit first (docs/behaviour.md).
#[test]
fn accepted_transfers_are_executed_oldest_first() {
    let mut app = app_without_tick();
    accounts_for_the_bank(&app);
    let codes: Vec<String> = (0..600)
        .map(|i| code_of(&ledger::accepted(&app, &format!("o{i}"), &body("bank", &format!("u{}", i % 10), 100, IDR))))
        .collect();
    app.restart_with(app::config().cron_schedule());
    wait_all_final(&app, Duration::from_secs(60));
    let journals: Vec<i64> = codes
        .iter()
        .map(|c| {
            let t = ledger::transfer(&app, c);
            assert_eq!(t["status"], "completed", "{t}");
            t["journal_id"].as_i64().unwrap_or_else(|| panic!("a journal id: {t}"))
        })
        .collect();
    let out_of_order: Vec<(usize, i64, i64)> =
        journals.windows(2).enumerate().filter(|(_, w)| w[0] >= w[1]).map(|(i, w)| (i, w[0], w[1])).collect();
    assert!(
        out_of_order.is_empty(),
        "journals in acceptance order; out of order at (index, journal, next): {out_of_order:?}"
    );
}

/// An idempotency key is kept 25 hours, then purged by the tick: the
/// runner is restarted with the guests' clock 1 minute short of 25 hours
/// ahead (the key still answers its transfer, another body 409), then
/// 1 minute past (the tick purges the key, and it takes a new transfer).
#[test]
fn an_idempotency_key_is_kept_25_hours_then_purged_and_takes_a_new_transfer() {
    const HOUR_MS: i64 = 3_600_000;
    let mut app = App::start();
    ledger::account_created(&app, "bank", IDR, true);
    ledger::account_created(&app, "alice", IDR, false);
    let first = ledger::completed(&app, "k-25h", &body("bank", "alice", 100, IDR));
    let keys = |app: &App| app.scalar("SELECT count(*) FROM idempotency_keys WHERE key = 'k-25h'");
    assert_eq!(keys(&app), 1);

    let offset = |ms: i64| app::config().arg("--guest-clock-offset-ms").arg(&ms.to_string());
    app.restart_with(offset(25 * HOUR_MS - 60_000));
    app.wait_ticks(3);
    assert_eq!(keys(&app), 1, "not purged before 25 hours");
    let again = ledger::post(&app, "k-25h", &body("bank", "alice", 100, IDR));
    assert!(matches!(again.status, 200 | 202), "{}", again.body);
    assert_eq!(code_of(&again.json()), code_of(&first), "the same transfer: {}", again.body);
    assert_error(
        &ledger::post(&app, "k-25h", &body("bank", "alice", 7, IDR)),
        409,
        "idempotency_key_reused",
        "another body within 25 hours",
    );

    app.restart_with(offset(25 * HOUR_MS + 60_000));
    poll_until(Duration::from_secs(30), "the tick to purge the key", || (keys(&app) == 0).then_some(()));
    let fresh = ledger::completed(&app, "k-25h", &body("bank", "alice", 7, IDR));
    assert_ne!(code_of(&fresh), code_of(&first), "a new transfer under the purged key");
    assert_eq!(ledger::transfer(&app, &code_of(&first))["status"], "completed", "the old transfer stays");
    assert_eq!(int(&ledger::account(&app, "alice"), "balance"), 107);
}
