//! The users service: `POST /v1/users/authorize {"token"}` → 200
//! `{"user_id"}`, 401 `unauthorized` / 403 `forbidden` for a token scripted
//! so (`PUT /sandbox/users/{token}` `{"user_id"?, "status": "ok|unauthorized|forbidden"}`).
//!
//! A token never scripted is a demo token: it is accepted as user
//! `user-<token>` when it is 1 to 128 characters of `A-Z a-z 0-9 . _ -`,
//! and refused 401 `invalid_token` otherwise.

use serde::Deserialize;
use serde_json::json;
use spin_sdk::http::{Params, Request};
use stepwise_web::{path_param, ApiError};

use crate::reply::{bad_request, Reply};
use crate::script::parse_body;
use crate::services::call::{self, Call, Done};
use crate::services::Service;
use crate::store::{text, Store};

/// The statements that create its tables, run when the store's schema version changes.
pub const SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS sandbox_users (
        token TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        status TEXT NOT NULL
    )"];

/// The tables `DELETE /sandbox` empties.
pub const TABLES: &[&str] = &["sandbox_users"];

/// The longest demo token.
pub const MAX_TOKEN_LEN: usize = 128;

/// What a token is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// Valid: the call answers the token's user id.
    Ok,
    /// Not valid: 401 `unauthorized`.
    Unauthorized,
    /// Valid, but the user may not check out: 403 `forbidden`.
    Forbidden,
}

impl TokenStatus {
    /// As scripted and stored: `ok`, `unauthorized` or `forbidden`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Ok => "ok",
            TokenStatus::Unauthorized => "unauthorized",
            TokenStatus::Forbidden => "forbidden",
        }
    }

    fn parse(s: &str) -> Option<TokenStatus> {
        [TokenStatus::Ok, TokenStatus::Unauthorized, TokenStatus::Forbidden].into_iter().find(|t| t.as_str() == s)
    }
}

/// A token's script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The user it stands for.
    pub user_id: String,
    /// What authorizing it answers.
    pub status: TokenStatus,
}

/// A never scripted token: `user-<token>` if it looks like a demo token.
pub fn demo(token: &str) -> Option<Token> {
    let ok = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| Token { user_id: format!("user-{token}"), status: TokenStatus::Ok })
}

/// What authorizing `token` (scripted as `scripted`, if at all) answers.
pub fn authorize(token: &str, scripted: Option<Token>) -> Result<String, ApiError> {
    let Some(t) = scripted.or_else(|| demo(token)) else {
        return Err(ApiError::new(401, "invalid_token", "the token is not a known user's"));
    };
    match t.status {
        TokenStatus::Ok => Ok(t.user_id),
        TokenStatus::Unauthorized => Err(ApiError::new(401, "unauthorized", "the token is not valid")),
        TokenStatus::Forbidden => Err(ApiError::new(403, "forbidden", format!("user {} may not check out", t.user_id))),
    }
}

#[derive(Debug, Default, Deserialize)]
struct AuthorizeBody {
    token: Option<String>,
}

fn load(s: &Store, token: &str) -> Result<Option<Token>, ApiError> {
    let r = s.exec("SELECT user_id, status FROM sandbox_users WHERE token = ?", &[text(token)])?;
    let found = r.rows().next().and_then(|row| {
        Some(Token {
            user_id: row.get::<&str>("user_id")?.to_string(),
            status: TokenStatus::parse(row.get::<&str>("status")?)?,
        })
    });
    Ok(found)
}

/// `POST /v1/users/authorize`.
pub fn authorize_call(req: &Request, _: &Params) -> Result<Reply, ApiError> {
    let input = call::body::<AuthorizeBody>(req)
        .and_then(|b| b.token.ok_or_else(|| ApiError::bad_field("token", "a string is required")));
    let subject = input.as_deref().unwrap_or("").to_string();
    call::serve(req, Call { service: Service::Users, operation: "authorize", subject: &subject }, input, |s, token| {
        let user_id = authorize(&token, load(s, &token)?)?;
        Ok(Done::no_effect(200, json!({ "user_id": user_id })))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenScript {
    user_id: Option<String>,
    status: Option<TokenStatus>,
}

fn view(token: &str, t: &Token) -> Reply {
    Reply::json(200, &json!({ "token": token, "user_id": t.user_id, "status": t.status.as_str() }))
}

/// `PUT /sandbox/users/{token}` `{"user_id"?, "status"?}` (an empty body is all defaults:
/// `user-<token>`, `ok`).
pub fn put(req: &Request, params: &Params) -> Result<Reply, ApiError> {
    let token = path_param(params, "token")?;
    let body: TokenScript = parse_body(req.body())?.unwrap_or_default();
    let t = Token {
        user_id: body.user_id.unwrap_or_else(|| format!("user-{token}")),
        status: body.status.unwrap_or(TokenStatus::Ok),
    };
    if t.user_id.is_empty() || t.user_id.len() > 200 {
        return Err(bad_request("invalid_script", "user_id must be 1 to 200 bytes"));
    }
    Store::open()?.exec(
        "INSERT OR REPLACE INTO sandbox_users (token, user_id, status) VALUES (?, ?, ?)",
        &[text(&token), text(&t.user_id), text(t.status.as_str())],
    )?;
    Ok(view(&token, &t))
}

/// `GET /sandbox/users/{token}`: the script, or what a demo token is worth.
pub fn get(_: &Request, params: &Params) -> Result<Reply, ApiError> {
    let token = path_param(params, "token")?;
    match load(&Store::open()?, &token)?.or_else(|| demo(&token)) {
        Some(t) => Ok(view(&token, &t)),
        None => Err(ApiError::new(404, "unknown_token", "never scripted, and not a demo token")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_tokens() {
        assert_eq!(authorize("tok", None), Ok("user-tok".to_string()));
        assert_eq!(authorize("demo-alice_1.x", None), Ok("user-demo-alice_1.x".to_string()));
        for bad in ["", "has space", "a/b", &"t".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(authorize(bad, None).unwrap_err().status, 401, "{bad:?}");
        }
    }

    #[test]
    fn scripted_tokens() {
        let t = |status| Some(Token { user_id: "u1".into(), status });
        assert_eq!(authorize("x", t(TokenStatus::Ok)), Ok("u1".to_string()));
        let e = authorize("tok", t(TokenStatus::Unauthorized)).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (401, "unauthorized"));
        let e = authorize("tok", t(TokenStatus::Forbidden)).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (403, "forbidden"));
        // A scripted token need not look like a demo token.
        assert_eq!(authorize("odd token", t(TokenStatus::Ok)), Ok("u1".to_string()));
    }
}
