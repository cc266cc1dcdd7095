//! The operator console: a single page of plain HTML, CSS and JavaScript
//! (files under `assets/`, embedded at build time, no build step, nothing
//! fetched from outside), served at `/` and `/console/...` by the catch-all
//! route `/...`; app.js is an ES module that imports the others from the same
//! directory (kit.js, list.js, shell.js, the view modules workers.js, sagas.js,
//! events.js, accounts.js, transfers.js, subscriptions.js, overview.js, the saga
//! timeline timeline.js, money.js, and uPlot under vendor/, bundled). The more specific
//! routes (`/api/...`, `/v1/transactions/...`, `/sandbox/...`) keep winning
//! over it.
//!
//! Every asset answers with a strong `ETag` (FNV-1a 64 of its bytes, computed
//! at compile time) and `Cache-Control: no-cache`, so a browser always
//! revalidates and gets `304 Not Modified` while the asset is unchanged, and
//! the new asset at once after a deploy. Unknown paths answer a plain 404.

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: u64,
}

/// FNV-1a, 64 bits.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {{
        const BODY: &str = include_str!(concat!("../assets/", $file));
        Asset { body: BODY, content_type: $content_type, etag: fnv1a(BODY.as_bytes()) }
    }};
}

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
static CSS: Asset = asset!("app.css", "text/css; charset=utf-8");
static JS: Asset = asset!("app.js", "application/javascript; charset=utf-8");
// The ES modules app.js imports (the Accounts, Transfers and Subscriptions views, money formatting).
static ACCOUNTS_JS: Asset = asset!("accounts.js", "application/javascript; charset=utf-8");
static TRANSFERS_JS: Asset = asset!("transfers.js", "application/javascript; charset=utf-8");
static MONEY_JS: Asset = asset!("money.js", "application/javascript; charset=utf-8");
static SUBSCRIPTIONS_JS: Asset = asset!("subscriptions.js", "application/javascript; charset=utf-8");
// The shared toolkit, the list view, the shell, the Workers, Sagas and Events views and the saga timeline.
static KIT_JS: Asset = asset!("kit.js", "application/javascript; charset=utf-8");
static LIST_JS: Asset = asset!("list.js", "application/javascript; charset=utf-8");
static SHELL_JS: Asset = asset!("shell.js", "application/javascript; charset=utf-8");
static WORKERS_JS: Asset = asset!("workers.js", "application/javascript; charset=utf-8");
static SAGAS_JS: Asset = asset!("sagas.js", "application/javascript; charset=utf-8");
static EVENTS_JS: Asset = asset!("events.js", "application/javascript; charset=utf-8");
static TIMELINE_JS: Asset = asset!("timeline.js", "application/javascript; charset=utf-8");
static OVERVIEW_JS: Asset = asset!("overview.js", "application/javascript; charset=utf-8");
// uPlot 1.6.32 (MIT, vendor/uPlot.LICENSE): the Overview's charts, bundled, never fetched from elsewhere.
static UPLOT_JS: Asset = asset!("vendor/uPlot.esm.js", "application/javascript; charset=utf-8");
static UPLOT_CSS: Asset = asset!("vendor/uPlot.min.css", "text/css; charset=utf-8");
static UPLOT_LICENSE: Asset = asset!("vendor/uPlot.LICENSE", "text/plain; charset=utf-8");

/// The page may only load its own assets and talk to its own origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The asset served at `path`, if any.
fn lookup(path: &str) -> Option<&'static Asset> {
    match path {
        "" | "/" | "/index.html" | "/console" | "/console/" | "/console/index.html" => Some(&INDEX),
        "/console/app.css" => Some(&CSS),
        "/console/app.js" => Some(&JS),
        "/console/accounts.js" => Some(&ACCOUNTS_JS),
        "/console/transfers.js" => Some(&TRANSFERS_JS),
        "/console/money.js" => Some(&MONEY_JS),
        "/console/subscriptions.js" => Some(&SUBSCRIPTIONS_JS),
        "/console/kit.js" => Some(&KIT_JS),
        "/console/list.js" => Some(&LIST_JS),
        "/console/shell.js" => Some(&SHELL_JS),
        "/console/workers.js" => Some(&WORKERS_JS),
        "/console/sagas.js" => Some(&SAGAS_JS),
        "/console/events.js" => Some(&EVENTS_JS),
        "/console/timeline.js" => Some(&TIMELINE_JS),
        "/console/overview.js" => Some(&OVERVIEW_JS),
        "/console/vendor/uPlot.esm.js" => Some(&UPLOT_JS),
        "/console/vendor/uPlot.min.css" => Some(&UPLOT_CSS),
        "/console/vendor/uPlot.LICENSE" => Some(&UPLOT_LICENSE),
        _ => None,
    }
}

/// The quoted entity tag of an asset.
fn etag(asset: &Asset) -> String {
    format!("\"{:016x}\"", asset.etag)
}

/// Whether an `If-None-Match` header value matches `etag` (weak comparison,
/// as RFC 9110 asks for `If-None-Match`; `*` matches any current entity).
fn none_match(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn text(status: u16, body: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .body(body.to_string())
        .build()
}

fn serve(asset: &Asset, if_none_match: Option<&str>, head: bool) -> Response {
    let tag = etag(asset);
    let mut b = Response::builder();
    b.header("etag", tag.as_str()).header("cache-control", "no-cache").header("x-content-type-options", "nosniff");
    if asset.content_type.starts_with("text/html") {
        b.header("content-security-policy", CSP)
            .header("referrer-policy", "no-referrer")
            .header("x-frame-options", "DENY");
    }
    if if_none_match.is_some_and(|h| none_match(h, &tag)) {
        return b.status(304).body(Vec::<u8>::new()).build();
    }
    b.status(200).header("content-type", asset.content_type);
    if head {
        b.body(Vec::<u8>::new()).build()
    } else {
        b.body(asset.body).build()
    }
}

/// Serves the console's assets to GET and HEAD; a path that is not an
/// asset is 404 whatever the method (the catch-all route must not make
/// another app's paths look served), and another method on an asset is 405.
#[http_component]
fn handle(req: Request) -> Response {
    let Some(asset) = lookup(req.path()) else {
        return text(404, &format!("not found: {}\n", req.path()));
    };
    let head = match req.method() {
        Method::Get => false,
        Method::Head => true,
        _ => {
            let mut r = text(405, "method not allowed: the console serves GET and HEAD\n");
            r.set_header("allow", "GET, HEAD");
            return r;
        }
    };
    serve(asset, req.header("if-none-match").and_then(|h| h.as_str()), head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn routes() {
        assert!(std::ptr::eq(lookup("/").unwrap(), &INDEX));
        assert!(std::ptr::eq(lookup("/console/").unwrap(), &INDEX));
        assert!(std::ptr::eq(lookup("/console/app.js").unwrap(), &JS));
        assert!(std::ptr::eq(lookup("/console/app.css").unwrap(), &CSS));
        assert!(std::ptr::eq(lookup("/console/accounts.js").unwrap(), &ACCOUNTS_JS));
        assert!(std::ptr::eq(lookup("/console/transfers.js").unwrap(), &TRANSFERS_JS));
        assert!(std::ptr::eq(lookup("/console/money.js").unwrap(), &MONEY_JS));
        assert!(std::ptr::eq(lookup("/console/subscriptions.js").unwrap(), &SUBSCRIPTIONS_JS));
        for (path, asset) in [
            ("/console/kit.js", &KIT_JS),
            ("/console/list.js", &LIST_JS),
            ("/console/shell.js", &SHELL_JS),
            ("/console/workers.js", &WORKERS_JS),
            ("/console/sagas.js", &SAGAS_JS),
            ("/console/events.js", &EVENTS_JS),
            ("/console/timeline.js", &TIMELINE_JS),
            ("/console/overview.js", &OVERVIEW_JS),
            ("/console/vendor/uPlot.esm.js", &UPLOT_JS),
        ] {
            assert!(std::ptr::eq(lookup(path).unwrap(), asset), "{path}");
            assert_eq!(asset.content_type, "application/javascript; charset=utf-8");
        }
        assert!(std::ptr::eq(lookup("/console/vendor/uPlot.min.css").unwrap(), &UPLOT_CSS));
        assert!(std::ptr::eq(lookup("/console/vendor/uPlot.LICENSE").unwrap(), &UPLOT_LICENSE));
        assert!(UPLOT_LICENSE.body.starts_with("The MIT License"));
        assert!(lookup("/console/nope.js").is_none());
        assert!(lookup("/metrics").is_none());
    }

    #[test]
    fn if_none_match() {
        let tag = "\"00000000000000ab\"";
        assert!(none_match(tag, tag));
        assert!(none_match(&format!("W/{tag}"), tag));
        assert!(none_match(&format!("\"x\", {tag}"), tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"00000000000000ac\"", tag));
        assert!(!none_match("", tag));
    }
}
