//! Accounts, transfers and journals (CONTRACT section 7) over the app's HTTP
//! API, for the transfers suite, the real-Spin suite and the benchmark:
//! creating accounts, posting transfers with their `Idempotency-Key`,
//! reading every page of a list, and checking the ledger against itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::app::{App, TOKEN};
use crate::{poll_until, Answer};

/// A schedule that never comes due while a test runs (the next 29 February
/// at midnight): a runner started with it accepts transfers and never
/// executes one (`RunnerConfig::cron_expression`).
pub const NEVER: &str = "0 0 0 29 2 *";

/// The body of `POST /api/transfers`.
pub fn body(from: &str, to: &str, amount: u64, currency: &str) -> Value {
    json!({ "from": from, "to": to, "amount": amount, "currency": currency })
}

/// `POST /api/accounts`.
pub fn create_account(app: &App, id: &str, currency: &str, allow_negative: bool) -> Answer {
    app.api("POST", "/api/accounts", Some(json!({ "id": id, "currency": currency, "allow_negative": allow_negative })))
}

/// `POST /api/accounts`, expecting 201; the account.
pub fn account_created(app: &App, id: &str, currency: &str, allow_negative: bool) -> Value {
    let a = create_account(app, id, currency, allow_negative);
    assert_eq!(a.status, 201, "create account {id}: {}", a.body);
    a.json()
}

/// `GET /api/accounts/{id}`, expecting 200.
pub fn account(app: &App, id: &str) -> Value {
    let a = app.api("GET", &format!("/api/accounts/{id}"), None);
    assert_eq!(a.status, 200, "account {id}: {}", a.body);
    a.json()
}

/// `POST /api/transfers` with a raw body and these headers (authorization
/// and content type are added); `key: None` sends no `Idempotency-Key`.
pub fn post_raw(app: &App, query: &str, key: Option<&str>, body: &str) -> Answer {
    let auth = format!("Bearer {TOKEN}");
    let mut headers = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    app.send_change("POST", &format!("/api/transfers{query}"), &headers, Some(body.as_bytes()))
}

/// `POST /api/transfers` with `Idempotency-Key: key`.
pub fn post(app: &App, key: &str, body: &Value) -> Answer {
    post_raw(app, "", Some(key), &body.to_string())
}

/// `POST /api/transfers`, expecting 202; the transfer.
pub fn accepted(app: &App, key: &str, body: &Value) -> Value {
    let a = post(app, key, body);
    assert_eq!(a.status, 202, "transfer {body} (key {key}): {}", a.body);
    a.json()
}

/// `POST /api/transfers?wait=true`, expecting 200 and `completed`.
pub fn completed(app: &App, key: &str, body: &Value) -> Value {
    let a = post_raw(app, "?wait=true", Some(key), &body.to_string());
    assert_eq!(a.status, 200, "transfer {body} (key {key}) with wait=true: {}", a.body);
    let t = a.json();
    assert_eq!(t["status"], "completed", "{t}");
    t
}

/// `GET /api/transfers/{code}`.
pub fn get_transfer(app: &App, code: &str) -> Answer {
    app.api("GET", &format!("/api/transfers/{code}"), None)
}

/// `GET /api/transfers/{code}`, expecting 200.
pub fn transfer(app: &App, code: &str) -> Value {
    let a = get_transfer(app, code);
    assert_eq!(a.status, 200, "transfer {code}: {}", a.body);
    a.json()
}

/// Polls the transfer until it is final (`completed` or `failed`).
pub fn wait_final(app: &App, code: &str, within: Duration) -> Value {
    poll_until(within, &format!("transfer {code} final"), || {
        let t = transfer(app, code);
        matches!(t["status"].as_str(), Some("completed" | "failed")).then_some(t)
    })
}

/// The error code of a JSON error answer.
pub fn error_code(a: &Answer) -> String {
    serde_json::from_str::<Value>(&a.body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Every item of a cursor-paged list (`{"<key>": [...], "next_cursor"}`),
/// `path` already holding its other query parameters (or none).
pub fn all_pages(app: &App, path: &str, key: &str, limit: u32) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100_000 {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let a = app.api("GET", &url, None);
        assert_eq!(a.status, 200, "GET {url}: {}", a.body);
        let page = a.json();
        let items = page[key].as_array().unwrap_or_else(|| panic!("GET {url}: no {key}: {page}"));
        assert!(items.len() <= limit as usize, "GET {url}: {} items over the limit", items.len());
        out.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) if !c.is_empty() => {
                assert!(!items.is_empty(), "GET {url}: an empty page with a next_cursor");
                cursor = Some(c.to_string());
            }
            _ => return out,
        }
    }
    panic!("{path}: more than 100,000 pages");
}

/// Every transfer (newest first), with a query (`"account=a&status=completed"`) or `""`.
pub fn transfers(app: &App, query: &str) -> Vec<Value> {
    let path = if query.is_empty() { "/api/transfers".to_string() } else { format!("/api/transfers?{query}") };
    all_pages(app, &path, "transfers", 100)
}

/// Every account.
pub fn accounts(app: &App) -> Vec<Value> {
    all_pages(app, "/api/accounts", "accounts", 100)
}

/// `GET /api/journals/{id}`, expecting 200.
pub fn journal(app: &App, id: &Value) -> Value {
    let id = id.as_str().map(str::to_string).unwrap_or_else(|| id.to_string());
    let a = app.api("GET", &format!("/api/journals/{id}"), None);
    assert_eq!(a.status, 200, "journal {id}: {}", a.body);
    a.json()
}

/// `GET /api/journals?external_ref=`: the journals of a receipt.
pub fn journals_of(app: &App, external_ref: &str) -> Vec<Value> {
    let a = app.api("GET", &format!("/api/journals?external_ref={external_ref}"), None);
    assert_eq!(a.status, 200, "journals of {external_ref}: {}", a.body);
    a.json()["journals"].as_array().unwrap_or_else(|| panic!("no journals: {}", a.body)).clone()
}

/// Every event of the outbox (of `kind`, or all with `""`), read page by
/// page with `next_after`, in `seq` order.
pub fn events(app: &App, kind: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let ty = if kind.is_empty() { String::new() } else { format!("&type={kind}") };
        let a = app.api("GET", &format!("/api/events?after={after}&limit=1000{ty}"), None);
        assert_eq!(a.status, 200, "events: {}", a.body);
        let page = a.json();
        let evs = page["events"].as_array().unwrap().clone();
        if evs.is_empty() {
            return out;
        }
        after = page["next_after"].as_u64().unwrap_or_else(|| panic!("no next_after: {page}"));
        out.extend(evs);
    }
}

/// An integer field of a JSON object (panics with the object if it is not one).
pub fn int(v: &Value, field: &str) -> i64 {
    v[field].as_i64().unwrap_or_else(|| panic!("{field} is not an integer in {v}"))
}

/// One sample of `/metrics` by its series as written
/// (`stepwise_transfers{status="completed"}`), or `None` when absent.
pub fn metric(app: &App, series: &str) -> Option<f64> {
    let m = app.api("GET", "/metrics", None).body;
    // A series without labels may be written `name{} value`.
    m.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix("{}").unwrap_or(rest).strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Checks one journal of a transfer: it has the receipt as `external_ref`,
/// balances, and is the two lines the contract names (debit `from`, credit
/// `to`, both the amount). Returns its lines as `(account, debit, credit)`.
pub fn check_journal(t: &Value, j: &Value) -> Vec<(String, i64, i64)> {
    let code = t["receipt_code"].as_str().unwrap();
    assert_eq!(j["external_ref"], code, "the journal's external_ref is the receipt code: {j}");
    if !t["journal_id"].is_null() {
        assert_eq!(j["id"], t["journal_id"], "{t}\n{j}");
    }
    let lines: Vec<(String, i64, i64)> = j["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("no lines: {j}"))
        .iter()
        .map(|l| (l["account"].as_str().unwrap().to_string(), int(l, "debit"), int(l, "credit")))
        .collect();
    let debits: i64 = lines.iter().map(|l| l.1).sum();
    let credits: i64 = lines.iter().map(|l| l.2).sum();
    assert_eq!(debits, credits, "the journal balances: {j}");
    let amount = int(t, "amount");
    let mut got = lines.clone();
    got.sort();
    let mut want =
        vec![(t["from"].as_str().unwrap().to_string(), amount, 0), (t["to"].as_str().unwrap().to_string(), 0, amount)];
    want.sort();
    assert_eq!(got, want, "debit from, credit to: {t}\n{j}");
    assert!(j["posted_at"].is_string(), "{j}");
    lines
}

/// The ledger checked against itself once nothing is in flight: every
/// transfer is final; every completed one has exactly one journal (found by
/// its receipt code), balanced, debit `from` and credit `to`; a failed one
/// has none; every account's balance is the sum of the lines of those
/// journals (credits − debits), with nothing held; its recent lines are
/// lines of those journals, newest first; no account without
/// `allow_negative` is below zero; and the total over all accounts is 0
/// (every account starts at 0: funds enter through an `allow_negative` one).
/// Returns the transfers and the accounts (details) by id.
pub fn check_ledger(app: &App) -> (Vec<Value>, BTreeMap<String, Value>) {
    let all = transfers(app, "");
    let mut sums: HashMap<String, i64> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    // (receipt code, account) -> (debit, credit)
    let mut posted: HashMap<(String, String), (i64, i64)> = HashMap::new();
    for t in &all {
        let code = t["receipt_code"].as_str().unwrap();
        let js = journals_of(app, code);
        match t["status"].as_str() {
            Some("completed") => {
                assert_eq!(js.len(), 1, "{code}: exactly one journal, found {js:?}");
                assert!(t["journal_id"].is_number() || t["journal_id"].is_string(), "{t}");
                let created = t["created_at"]
                    .as_str()
                    .and_then(crate::timestamp_micros)
                    .unwrap_or_else(|| panic!("created_at: {t}"));
                let completed = t["completed_at"]
                    .as_str()
                    .and_then(crate::timestamp_micros)
                    .unwrap_or_else(|| panic!("completed_at: {t}"));
                assert!(completed >= created, "{code} completed before it was accepted: {t}");
                let j = journal(app, &t["journal_id"]);
                assert_eq!(j, js[0], "the journal by id and by external_ref");
                let posted_at = j["posted_at"]
                    .as_str()
                    .and_then(crate::timestamp_micros)
                    .unwrap_or_else(|| panic!("posted_at: {j}"));
                assert!(posted_at >= created, "{code}'s journal posted before the transfer was accepted: {t}\n{j}");
                for (acc, debit, credit) in check_journal(t, &j) {
                    *sums.entry(acc.clone()).or_default() += credit - debit;
                    *counts.entry(acc.clone()).or_default() += 1;
                    posted.insert((code.to_string(), acc), (debit, credit));
                }
            }
            Some("failed") => {
                assert!(js.is_empty(), "{code} failed, yet has journals {js:?}");
                assert!(t["journal_id"].is_null(), "{t}");
            }
            _ => panic!("a transfer still in flight: {t}"),
        }
    }
    let listed: Vec<String> = accounts(app).iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    let mut by_id = BTreeMap::new();
    let mut total = 0;
    for id in &listed {
        let a = account(app, id);
        let (balance, held, available) = (int(&a, "balance"), int(&a, "held"), int(&a, "available"));
        assert_eq!(balance, sums.get(id).copied().unwrap_or(0), "{id}: the balance is the sum of its lines: {a}");
        assert_eq!(held, 0, "{id}: nothing held with nothing in flight: {a}");
        assert_eq!(available, balance - held, "{id}: {a}");
        if a["allow_negative"] == false {
            assert!(balance >= 0, "{id} went negative: {a}");
        }
        let lines = a["lines"].as_array().unwrap_or_else(|| panic!("{id}: no lines: {a}"));
        let n = counts.get(id).copied().unwrap_or(0);
        assert_eq!(lines.len(), n.min(20), "{id}: its newest 20 lines of {n}: {a}");
        for l in lines {
            let code = l["external_ref"].as_str().unwrap_or_else(|| panic!("{id}: a line without external_ref: {l}"));
            let want = posted
                .get(&(code.to_string(), id.clone()))
                .unwrap_or_else(|| panic!("{id}: a line of no completed transfer's journal: {l}"));
            assert_eq!((int(l, "debit"), int(l, "credit")), *want, "{id}: {l}");
            assert!(l["journal_id"].is_number() || l["journal_id"].is_string(), "{l}");
        }
        let times: Vec<i64> = lines
            .iter()
            .map(|l| {
                l["posted_at"].as_str().and_then(crate::timestamp_micros).unwrap_or_else(|| panic!("posted_at: {l}"))
            })
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{id}: lines newest first: {lines:?}");
        if n <= 20 {
            let s: i64 = lines.iter().map(|l| int(l, "credit") - int(l, "debit")).sum();
            assert_eq!(s, balance, "{id}: the sum of all its lines is its balance");
        }
        total += balance;
        by_id.insert(id.clone(), a);
    }
    assert_eq!(by_id.len(), listed.len(), "every account listed once: {listed:?}");
    for id in sums.keys() {
        assert!(by_id.contains_key(id), "lines on {id}, an account the list does not have");
    }
    assert_eq!(total, 0, "money is conserved");
    (all, by_id)
}

/// A transfer's receipt code.
pub fn code_of(t: &Value) -> String {
    t["receipt_code"].as_str().unwrap_or_else(|| panic!("no receipt_code: {t}")).to_string()
}

/// Waits until no transfer is `processing` or `executing`.
pub fn wait_all_final(app: &App, within: Duration) {
    poll_until(within, "every transfer final", || {
        let busy = ["processing", "executing"].iter().any(|s| {
            let a = app.api("GET", &format!("/api/transfers?status={s}&limit=1"), None);
            assert_eq!(a.status, 200, "{}", a.body);
            !a.json()["transfers"].as_array().unwrap().is_empty()
        });
        (!busy).then_some(())
    });
}

/// Sixteen clients send 1,600 seeded random transfers among 20 accounts
/// (a bank and 19 funded users), spread over `apps` (replicas sharing one
/// database, or one app): meanwhile no balance goes below zero; then every
/// accepted transfer completes once, with its one event, and the ledger
/// balances (money is conserved).
pub fn sixteen_clients_1600_random_transfers(apps: &[&App]) {
    let app = apps[0];
    let users: Vec<String> = (0..19).map(|i| format!("u{i:02}")).collect();
    let mut ids = vec!["bank".to_string()];
    ids.extend(users.iter().cloned());
    account_created(app, "bank", "IDR", true);
    for u in &users {
        account_created(app, u, "IDR", false);
        completed(app, &format!("fund-{u}"), &body("bank", u, 3_000, "IDR"));
    }

    let done = AtomicBool::new(false);
    let samples = AtomicUsize::new(0);
    let accepted: Mutex<Vec<(String, Value)>> = Mutex::new(Vec::new());
    let refused = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // Meanwhile nobody's available balance ever goes below zero.
        let monitor = s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                for u in &users {
                    let a = account(app, u);
                    assert!(int(&a, "balance") >= 0 && int(&a, "available") >= 0, "{u} below zero: {a}");
                }
                samples.fetch_add(1, Ordering::Relaxed);
            }
        });
        let clients: Vec<_> = (0..16u64)
            .map(|c| {
                let (ids, accepted, refused, app) = (&ids, &accepted, &refused, apps[c as usize % apps.len()]);
                s.spawn(move || {
                    // Seeded: the same transfers on every run.
                    let mut rng = fastrand::Rng::with_seed(1000 + c);
                    for i in 0..100 {
                        let from = rng.usize(..20);
                        let to = (from + 1 + rng.usize(..19)) % 20;
                        let b = body(&ids[from], &ids[to], rng.u64(1..=2_000), "IDR");
                        let a = post(app, &format!("c{c}-{i}"), &b);
                        match (a.status, error_code(&a).as_str()) {
                            (202, _) => accepted.lock().unwrap().push((code_of(&a.json()), b)),
                            (422, "insufficient_balance") => {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => panic!("{b}: {} {}", a.status, a.body),
                        }
                    }
                })
            })
            .collect();
        // A client that failed stops the monitor too, so the test ends with its message.
        let failed: Vec<_> = clients.into_iter().map(|c| c.join()).filter_map(Result::err).collect();
        if failed.is_empty() {
            wait_all_final(app, Duration::from_secs(120));
        }
        done.store(true, Ordering::Relaxed);
        monitor.join().unwrap();
        if let Some(panic) = failed.into_iter().next() {
            std::panic::resume_unwind(panic);
        }
    });
    let accepted = accepted.into_inner().unwrap();
    let refused = refused.into_inner();
    eprintln!(
        "1,600 transfers: {} accepted, {refused} refused for insufficient balance; {} balance samples",
        accepted.len(),
        samples.into_inner()
    );
    assert_eq!(accepted.len() + refused, 1_600);
    assert!(accepted.len() >= 800, "most are accepted: {}", accepted.len());

    let (all, _) = check_ledger(app);
    let by_code: HashMap<&str, &Value> = all.iter().map(|t| (t["receipt_code"].as_str().unwrap(), t)).collect();
    assert_eq!(by_code.len(), all.len(), "receipt codes are unique");
    assert_eq!(all.len(), 19 + accepted.len(), "the fundings and every accepted transfer, no refused one");
    for (code, b) in &accepted {
        let t = by_code.get(code.as_str()).unwrap_or_else(|| panic!("{code} is not listed"));
        assert_eq!(t["status"], "completed", "every accepted transfer completes: {t}");
        assert_eq!((&t["from"], &t["to"], &t["amount"]), (&b["from"], &b["to"], &b["amount"]), "{t}");
    }
    let evs = events(app, "transfer.completed");
    let mut per: HashMap<&str, usize> = HashMap::new();
    for e in &evs {
        *per.entry(e["receipt_code"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(per.len(), all.len(), "a transfer.completed for each");
    assert!(per.values().all(|n| *n == 1), "each once");
    assert_eq!(metric(app, r#"stepwise_transfers{status="completed"}"#), Some(all.len() as f64));
}
