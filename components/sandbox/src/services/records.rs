//! What tests read back of the simulated services, and their scripts:
//!
//! - `GET /sandbox/effects?service=&operation=&key=` → `{"effects": [{"service", "operation", "key", "count"}], "total"}`:
//!   the calls that did their work, counted per idempotency key (a count
//!   above 1 is an effect applied twice), oldest first.
//! - `GET /sandbox/service-calls?service=&operation=&key=&subject=&after_seq=&limit=` → `{"calls": [...]}`, oldest first.
//! - `GET /sandbox/services` and `GET /sandbox/services/{service}`: each service's script and counts.
//! - `PUT /sandbox/services/{service}`: replaces its fault script ([`faults`]).

use serde_json::{json, Value};
use spin_sdk::http::{Params, Request};
use stepwise_web::{path_param, ApiError};

use crate::records::{parse_limit, query, DEFAULT_LIMIT, MAX_LIMIT};
use crate::reply::{bad_request, Reply};
use crate::services::faults::{self, FaultScript};
use crate::services::{operations, Service};
use crate::store::{int, text, Store};

/// Equality filters on `sandbox_svc_calls` from the query string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Filter {
    clauses: Vec<&'static str>,
    values: Vec<String>,
    after_seq: Option<i64>,
    limit: Option<i64>,
}

impl Filter {
    fn from_request(req: &Request, known: &[&str]) -> Result<Filter, ApiError> {
        let mut f = Filter::default();
        for (k, v) in query(req, known)? {
            if v.is_empty() {
                continue;
            }
            let column = match k.as_str() {
                "service" => {
                    Service::parse(&v).ok_or_else(|| bad_request("invalid_query", format!("unknown service `{v}`")))?;
                    "service = ?"
                }
                "operation" => "operation = ?",
                "key" => "idem_key = ?",
                "subject" => "subject = ?",
                "after_seq" => {
                    f.after_seq = Some(
                        v.parse()
                            .map_err(|_| bad_request("invalid_query", format!("after_seq `{v}` is not an integer")))?,
                    );
                    continue;
                }
                "limit" => {
                    f.limit = Some(parse_limit(&v, MAX_LIMIT)?);
                    continue;
                }
                _ => continue,
            };
            f.clauses.push(column);
            f.values.push(v);
        }
        Ok(f)
    }

    fn sql(&self) -> (String, Vec<stepwise_store::db::Value>) {
        let mut clauses: Vec<&str> = self.clauses.clone();
        let mut params: Vec<_> = self.values.iter().map(text).collect();
        if let Some(s) = self.after_seq {
            clauses.push("seq > ?");
            params.push(int(s));
        }
        let where_ = if clauses.is_empty() { String::new() } else { format!(" WHERE {}", clauses.join(" AND ")) };
        (where_, params)
    }
}

/// `GET /sandbox/effects`.
pub fn effects(req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let mut f = Filter::from_request(req, &["service", "operation", "key"])?;
    f.clauses.push("effect = 1");
    let (where_, params) = f.sql();
    let r = Store::open()?.exec(
        &format!(
            "SELECT service, operation, idem_key, COUNT(*) AS n FROM sandbox_svc_calls{where_}
             GROUP BY service, operation, idem_key ORDER BY MIN(seq)"
        ),
        &params,
    )?;
    let effects: Vec<Value> = r
        .rows()
        .map(|row| {
            json!({
                "service": row.get::<&str>("service"), "operation": row.get::<&str>("operation"),
                "key": row.get::<&str>("idem_key"), "count": row.get::<i64>("n").unwrap_or(0),
            })
        })
        .collect();
    let total: i64 = effects.iter().filter_map(|e| e["count"].as_i64()).sum();
    Ok(Reply::json(200, &json!({ "effects": effects, "total": total })))
}

/// `GET /sandbox/service-calls`.
pub fn calls(req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let f = Filter::from_request(req, &["service", "operation", "key", "subject", "after_seq", "limit"])?;
    let (where_, mut params) = f.sql();
    params.push(int(f.limit.unwrap_or(DEFAULT_LIMIT)));
    let r = Store::open()?.exec(
        &format!(
            "SELECT seq, received_at_ms, service, operation, subject, idem_key, request_id, status_code,
                    duplicate, injected, refused, effect
             FROM sandbox_svc_calls{where_} ORDER BY seq LIMIT ?"
        ),
        &params,
    )?;
    let calls: Vec<Value> = r
        .rows()
        .map(|row| {
            json!({
                "seq": row.get::<i64>("seq"), "received_at_ms": row.get::<i64>("received_at_ms"),
                "service": row.get::<&str>("service"), "operation": row.get::<&str>("operation"),
                "subject": row.get::<&str>("subject"), "key": row.get::<&str>("idem_key"),
                "request_id": row.get::<&str>("request_id"), "status_code": row.get::<i64>("status_code"),
                "duplicate": row.get::<bool>("duplicate"), "injected": row.get::<bool>("injected"),
                "refused": row.get::<bool>("refused"), "effect": row.get::<bool>("effect"),
            })
        })
        .collect();
    Ok(Reply::json(200, &json!({ "calls": calls })))
}

fn service_param(params: &Params) -> Result<Service, ApiError> {
    let name = path_param(params, "service")?;
    Service::parse(&name).ok_or_else(|| {
        let known: Vec<&str> = Service::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::new(404, "unknown_service", format!("no service `{name}`; the services: {}", known.join(", ")))
    })
}

fn summary(s: &Store, service: Service) -> Result<Value, ApiError> {
    let r = s.exec(
        "SELECT COUNT(*) AS calls, COALESCE(SUM(duplicate), 0) AS duplicates, COALESCE(SUM(injected), 0) AS injected,
                COALESCE(SUM(refused), 0) AS refused, COALESCE(SUM(effect), 0) AS effects
         FROM sandbox_svc_calls WHERE service = ?",
        &[text(service.as_str())],
    )?;
    let row = r.rows().next();
    let n = |c: &str| row.as_ref().and_then(|r| r.get::<i64>(c)).unwrap_or(0);
    Ok(json!({
        "service": service.as_str(),
        "operations": operations(service),
        "script": faults::load(s, service)?,
        "calls": n("calls"), "duplicates": n("duplicates"), "injected": n("injected"),
        "refused": n("refused"), "effects": n("effects"),
    }))
}

/// `GET /sandbox/services/{service}`: `{"service", "operations", "script",
/// "calls", "duplicates", "injected", "refused", "effects"}`.
pub fn get_service(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    let service = service_param(params)?;
    Ok(Reply::json(200, &summary(&Store::open()?, service)?))
}

/// `GET /sandbox/services`: every service's summary.
pub fn list_services(_: &Request, _: &Params) -> Result<Reply, ApiError> {
    let store = Store::open()?;
    let all = Service::ALL.iter().map(|s| summary(&store, *s)).collect::<Result<Vec<_>, _>>()?;
    Ok(Reply::json(200, &json!({ "services": all })))
}

/// `PUT /sandbox/services/{service}`: replaces the fault script (an empty
/// body clears it), answers the summary.
pub fn put_service(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let service = service_param(params)?;
    let script = FaultScript::parse(service, req.body())?;
    let store = Store::open()?;
    faults::save(&store, service, &script)?;
    Ok(Reply::json(200, &summary(&store, service)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(q: &str, known: &[&str]) -> Result<Filter, ApiError> {
        let req = Request::builder().method(spin_sdk::http::Method::Get).uri(format!("/sandbox/effects?{q}")).build();
        Filter::from_request(&req, known)
    }

    #[test]
    fn filters() {
        let all = ["service", "operation", "key", "subject", "after_seq", "limit"];
        let f =
            filter("service=products&key=s1%3Areserve_stock%3Aaction&after_seq=3&limit=9&operation=", &all).unwrap();
        assert_eq!(f.clauses, vec!["service = ?", "idem_key = ?"]);
        assert_eq!(f.values, vec!["products".to_string(), "s1:reserve_stock:action".to_string()]);
        assert_eq!((f.after_seq, f.limit), (Some(3), Some(9)));
        assert_eq!(f.sql().0, " WHERE service = ? AND idem_key = ? AND seq > ?");
        for bad in ["service=wallets", "limit=0", "after_seq=x", "subject=x"] {
            assert_eq!(filter(bad, &["service", "limit", "after_seq"]).unwrap_err().code, "invalid_query", "{bad}");
        }
    }
}
