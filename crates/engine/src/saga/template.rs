//! Templates in saga definitions: a JSON string that is exactly a path
//! (`$.input.items`, `$.steps.reserve_stock.output.total`, `$.saga.id`) is
//! replaced by the value found there, of any JSON type; `{$.path}` inside a
//! longer string interpolates a string or a number. Paths are checked when
//! a definition is loaded ([`check`]); one that finds nothing at run time is
//! a `template_error` ([`render`]).
//!
//! A whole-string path ending in `?` (`"$.input.customer?"`) is optional:
//! when it finds nothing, the object key that holds it is left out (an
//! array item becomes `null`). Values interpolated into a request path are
//! percent-encoded as one path segment ([`render_path`]).

use serde_json::Value;

use crate::FieldError;

/// What a template may read under `$.saga` (`$.saga.id` is also the payment order id).
pub const SAGA_FIELDS: [&str; 4] = ["id", "correlation_id", "definition", "reason"];

/// A path's segments after `$.`, e.g. `["steps", "reserve_stock", "output", "total"]`.
fn segments(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix("$.")?;
    let segs: Vec<&str> = rest.split('.').collect();
    if segs.iter().any(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
        return None;
    }
    Some(segs)
}

/// Whether `s` is meant as a path (starts with `$.`).
fn is_path(s: &str) -> bool {
    s.starts_with("$.")
}

/// A whole-string path and whether it is optional (`?` at the end).
fn whole_path(s: &str) -> Option<(&str, bool)> {
    if !is_path(s) {
        return None;
    }
    Some(match s.strip_suffix('?') {
        Some(p) => (p, true),
        None => (s, false),
    })
}

/// Checks one path, found at `at` in a template, against what exists
/// before the step that uses it: `earlier` are the names of the steps before it.
fn check_path(path: &str, at: &str, earlier: &[&str], all: &[&str]) -> Result<(), FieldError> {
    let fault = |m: String| FieldError::new(at, m);
    let segs = segments(path).ok_or_else(|| {
        fault(format!("malformed path {path:?} (use $.input..., $.steps.<step>.output..., $.saga.<field>)"))
    })?;
    match segs.as_slice() {
        ["input", ..] => Ok(()),
        ["saga", field] if SAGA_FIELDS.contains(field) => Ok(()),
        ["saga", ..] => Err(fault(format!("path {path:?}: $.saga has only {}", SAGA_FIELDS.join(", ")))),
        ["steps", step, "output", ..] => {
            if earlier.contains(step) {
                Ok(())
            } else if all.contains(step) {
                Err(fault(format!("path {path:?} refers to step {step:?}, which does not run before this one")))
            } else {
                Err(fault(format!("path {path:?} refers to unknown step {step:?}")))
            }
        }
        ["steps", ..] => Err(fault(format!("path {path:?}: a step's value is $.steps.<step>.output..."))),
        _ => Err(fault(format!("path {path:?} must start with $.input, $.steps or $.saga"))),
    }
}

/// The `{$.path}` pieces of a longer string.
fn interpolations(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{$.") {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) => {
                out.push(&after[..j]);
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// Checks every path in `t` (a template: any JSON value); the error's
/// field is where inside `t` the fault is (`.items[0]`, or empty for `t` itself).
pub fn check(t: &Value, earlier: &[&str], all: &[&str]) -> Result<(), FieldError> {
    fn walk(t: &Value, at: &str, earlier: &[&str], all: &[&str]) -> Result<(), FieldError> {
        match t {
            Value::String(s) if is_path(s) => {
                let (p, _) = whole_path(s).unwrap_or((s, false));
                check_path(p, at, earlier, all)
            }
            Value::String(s) => {
                for p in interpolations(s) {
                    check_path(p, at, earlier, all)?;
                }
                if s.contains("{$.") && interpolations(s).is_empty() {
                    return Err(FieldError::new(at, format!("unclosed {{$.path}} in {s:?}")));
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{at}[{i}]"), earlier, all)?;
                }
                Ok(())
            }
            Value::Object(m) => {
                for (k, v) in m {
                    walk(v, &format!("{at}.{k}"), earlier, all)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(t, "", earlier, all)
}

/// Looks `path` up in `ctx`.
pub fn lookup<'a>(ctx: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = ctx;
    for seg in segments(path)? {
        v = match v {
            Value::Object(m) => m.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!v.is_null()).then_some(v)
}

/// Renders `t` against `ctx`; the error names the first path that found
/// nothing (or found a value that cannot be interpolated into a string).
pub fn render(t: &Value, ctx: &Value) -> Result<Value, FieldError> {
    Ok(render_opt(t, ctx, &|s| s.to_string())?.unwrap_or(Value::Null))
}

/// Renders a request path: like [`render`], with every interpolated value
/// percent-encoded as one path segment.
pub fn render_path(t: &str, ctx: &Value) -> Result<String, FieldError> {
    match render_opt(&Value::String(t.to_string()), ctx, &crate::upstream::encode_segment)? {
        Some(Value::String(s)) => Ok(s),
        _ => Err(FieldError::new(t, "must render to a string")),
    }
}

/// `None`: an optional path that found nothing.
fn render_opt(t: &Value, ctx: &Value, encode: &dyn Fn(&str) -> String) -> Result<Option<Value>, FieldError> {
    match t {
        Value::String(s) if is_path(s) => {
            let (p, optional) = whole_path(s).unwrap_or((s, false));
            match lookup(ctx, p) {
                Some(v) => Ok(Some(v.clone())),
                None if optional => Ok(None),
                None => Err(FieldError::new(p, "found nothing")),
            }
        }
        Value::String(s) if s.contains("{$.") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find("{$.") {
                out.push_str(&rest[..i]);
                let after = &rest[i + 1..];
                let Some(j) = after.find('}') else { break };
                let path = &after[..j];
                match lookup(ctx, path) {
                    Some(Value::String(v)) => out.push_str(&encode(v)),
                    Some(Value::Number(n)) => out.push_str(&n.to_string()),
                    Some(_) => return Err(FieldError::new(path, "is not a string or a number")),
                    None => return Err(FieldError::new(path, "found nothing")),
                }
                rest = &after[j + 1..];
            }
            out.push_str(rest);
            Ok(Some(Value::String(out)))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for v in items {
                out.push(render_opt(v, ctx, encode)?.unwrap_or(Value::Null));
            }
            Ok(Some(Value::Array(out)))
        }
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                if let Some(r) = render_opt(v, ctx, encode)? {
                    out.insert(k.clone(), r);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        other => Ok(Some(other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "saga": {"id": "s-1", "correlation_id": "c-1", "definition": "checkout", "reason": null},
            "input": {"items": [{"product_id": "p1", "quantity": 2}], "user_token": "tok"},
            "steps": {"reserve_stock": {"output": {"total": 20000, "status": "reserved"}}}
        })
    }

    #[test]
    fn a_whole_path_keeps_its_type_and_an_interpolation_makes_a_string() {
        let t = json!({"items": "$.input.items", "total": "$.steps.reserve_stock.output.total", "id": "$.saga.id",
                       "path": "/v1/reservations/{$.saga.id}/total/{$.steps.reserve_stock.output.total}", "n": 5});
        let v = render(&t, &ctx()).unwrap();
        assert_eq!(v["items"], json!([{"product_id": "p1", "quantity": 2}]));
        assert_eq!(v["total"], json!(20000));
        assert_eq!(v["path"], json!("/v1/reservations/s-1/total/20000"));
        assert_eq!(v["n"], json!(5));
        assert_eq!(lookup(&ctx(), "$.input.items.0.product_id"), Some(&json!("p1")));
    }

    #[test]
    fn a_path_that_finds_nothing_is_an_error_naming_it() {
        assert_eq!(
            render(&json!("$.input.nope"), &ctx()).unwrap_err(),
            FieldError::new("$.input.nope", "found nothing")
        );
        assert_eq!(
            render(&json!("$.saga.reason"), &ctx()).unwrap_err(),
            FieldError::new("$.saga.reason", "found nothing"),
            "null counts as nothing"
        );
        assert!(render(&json!("/x/{$.input.items}"), &ctx()).unwrap_err().message.contains("not a string or a number"));
    }

    #[test]
    fn an_optional_path_leaves_its_key_out_and_path_values_are_encoded() {
        let t = json!({"customer_details": "$.input.customer?", "token": "$.input.user_token?"});
        assert_eq!(render(&t, &ctx()).unwrap(), json!({"token": "tok"}));
        let c = json!({"input": {"id": "a/b c"}});
        assert_eq!(render_path("/v1/slips/{$.input.id}/validate", &c).unwrap(), "/v1/slips/a%2Fb%20c/validate");
        assert!(check(&json!("$.input.customer?"), &[], &[]).is_ok());
    }

    #[test]
    fn paths_are_checked_against_the_steps_before() {
        let all = ["authorize_user", "reserve_stock", "create_payment"];
        let earlier = ["authorize_user"];
        assert!(check(&json!({"a": "$.steps.authorize_user.output.user_id"}), &earlier, &all).is_ok());
        let FieldError { field: at, message: m } =
            check(&json!({"b": ["x", "$.steps.create_payment.output.token"]}), &earlier, &all).unwrap_err();
        assert_eq!(at, ".b[1]");
        assert!(m.contains("does not run before"), "{m}");
        let m = check(&json!("$.steps.wallets.output"), &earlier, &all).unwrap_err().message;
        assert!(m.contains("unknown step \"wallets\""), "{m}");
        assert!(check(&json!("$.saga.nope"), &earlier, &all).is_err());
        assert!(check(&json!("$.other"), &earlier, &all).is_err());
        assert!(check(&json!("/r/{$.steps.later.output.x}"), &earlier, &all).is_err());
        assert!(check(&json!("/r/{$.saga.id"), &earlier, &all).is_err(), "unclosed");
        assert!(check(&json!("plain text with $ signs"), &earlier, &all).is_ok());
    }
}
