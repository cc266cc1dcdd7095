//! Idempotency keys, once for every API that takes one: what a valid key is,
//! how a request's fingerprint is computed, how long each scope keeps its
//! keys, and what a key already stored means for a request.
//!
//! A client sends a key with a request that creates something (a transfer, a
//! saga). The store remembers the key with the request's fingerprint and the
//! id of what it created, until the scope's lifetime has passed; [`decide`]
//! then tells a new request from the same one sent again (answered with what
//! it created) and from another request under the same key (refused with
//! [`Error::IdempotencyKeyReused`], HTTP 409 `idempotency_key_reused`).

use sha2::{Digest, Sha256};

use crate::time::Millis;
use crate::{Error, FieldError};

/// The longest key, in characters.
pub const MAX_KEY_LEN: usize = 255;

/// Which API a key belongs to: keys are unique per scope, and each scope has
/// its own lifetime and names its key as its clients send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `POST /api/transfers`, the key in the `Idempotency-Key` header.
    Transfer,
    /// `POST /api/sagas`, the key in the body's `idempotency_key`.
    Saga,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 2] = [Scope::Transfer, Scope::Saga];

    /// The name stored with each key. Keys already stored are found by it,
    /// so it never changes.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Transfer => "transfer",
            Scope::Saga => "saga",
        }
    }

    /// Where the client puts the key, as errors about it name it.
    pub fn field(self) -> &'static str {
        match self {
            Scope::Transfer => "Idempotency-Key",
            Scope::Saga => "idempotency_key",
        }
    }

    /// How long a key is kept after its request. Transfers: 25 hours (the
    /// contract's "at least 24 hours", so a client retrying for a day is
    /// always answered). Sagas: 7 days.
    pub fn keep_ms(self) -> i64 {
        match self {
            Scope::Transfer => 25 * 3_600_000,
            Scope::Saga => 7 * 86_400_000,
        }
    }

    /// When a key remembered at `now` expires (it no longer answers from
    /// then on, and may be purged).
    pub fn expires_at(self, now: Millis) -> Millis {
        now.saturating_add(self.keep_ms())
    }

    /// Checks a key: 1 to [`MAX_KEY_LEN`] printable ASCII characters (space
    /// included), the error naming the scope's [`field`](Self::field).
    pub fn check_key(self, key: &str) -> Result<(), FieldError> {
        crate::text::printable_ascii(key, self.field(), MAX_KEY_LEN)
    }

    /// The refusal of another request under a key already used.
    pub fn reused(self) -> Error {
        Error::IdempotencyKeyReused(self)
    }
}

/// A request's fingerprint: the SHA-256 of its canonical JSON (compact, the
/// keys of objects sorted), in lower-case hex. Stored with the key, so a
/// request's canonical JSON never changes shape: a key stored earlier would
/// stop answering its request.
pub fn fingerprint(canonical: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(canonical.to_string()))
}

/// A key as the store holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored<'a> {
    /// The fingerprint of the request it came with.
    pub fingerprint: &'a str,
    /// The id of what that request created.
    pub subject: &'a str,
    /// When it stops answering.
    pub expires_at: Millis,
}

/// What a key means for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not seen, or expired: the request is new, and its key is remembered
    /// with what it creates.
    New,
    /// The same request again: the id of what it created, answered again.
    Repeat(String),
    /// Another request under a used key: refused with
    /// [`Scope::reused`].
    Reused,
}

/// What the key `stored` (if any) means at `now` for a request whose
/// fingerprint is `fingerprint`.
pub fn decide(stored: Option<Stored<'_>>, fingerprint: &str, now: Millis) -> Seen {
    match stored {
        Some(s) if s.expires_at > now => {
            if s.fingerprint == fingerprint {
                Seen::Repeat(s.subject.to_string())
            } else {
                Seen::Reused
            }
        }
        _ => Seen::New,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_is_1_to_255_printable_characters_and_its_error_names_the_scopes_field() {
        for scope in Scope::ALL {
            assert!(scope.check_key("k-1 x").is_ok());
            assert!(scope.check_key(&"k".repeat(255)).is_ok());
            let printable: String = (0x20u8..0x7F).map(char::from).collect();
            assert!(scope.check_key(&printable).is_ok());
            for bad in ["".to_string(), "k".repeat(256), "k\n".into(), "a\u{7f}".into(), "é".into()] {
                let e = scope.check_key(&bad).unwrap_err();
                assert_eq!(e.field, scope.field(), "{bad:?}");
                assert_eq!(e.message, "must be 1 to 255 printable ASCII characters");
            }
        }
        assert_eq!(
            Scope::Transfer.check_key("").unwrap_err().to_string(),
            "Idempotency-Key: must be 1 to 255 printable ASCII characters"
        );
        assert_eq!(
            Scope::Saga.check_key("").unwrap_err().to_string(),
            "idempotency_key: must be 1 to 255 printable ASCII characters"
        );
    }

    #[test]
    fn each_scope_has_its_stored_name_and_lifetime() {
        assert_eq!((Scope::Transfer.name(), Scope::Saga.name()), ("transfer", "saga"));
        let hour = 3_600_000;
        assert_eq!(Scope::Transfer.keep_ms(), 25 * hour);
        assert_eq!(Scope::Saga.keep_ms(), 7 * 24 * hour);
        assert_eq!(Scope::Transfer.expires_at(1_000), 1_000 + 25 * hour);
        assert_eq!(Scope::Saga.expires_at(i64::MAX - 1), i64::MAX, "never overflows");
    }

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_compact_sorted_json() {
        // Fixed values: a change here is a change of every stored key's meaning.
        assert_eq!(
            fingerprint(&json!(["a", "b", 5, "IDR", null])),
            "377272b595c737ac6ec92c6d16408f321d17ff3cbd6c679a2746ea16553a1aa0"
        );
        assert_eq!(
            fingerprint(&json!({"b": 1, "a": [true, "x"]})),
            fingerprint(&serde_json::from_str(r#"{ "a" : [ true, "x" ], "b": 1 }"#).unwrap()),
            "keys sorted, no spaces"
        );
        assert_ne!(fingerprint(&json!([1])), fingerprint(&json!(["1"])));
    }

    #[test]
    fn a_stored_key_answers_its_request_refuses_another_and_expires() {
        let stored = Stored { fingerprint: "f1", subject: "7", expires_at: 100 };
        assert_eq!(decide(None, "f1", 0), Seen::New);
        assert_eq!(decide(Some(stored), "f1", 99), Seen::Repeat("7".into()));
        assert_eq!(decide(Some(stored), "f2", 99), Seen::Reused);
        assert_eq!(decide(Some(stored), "f1", 100), Seen::New, "expired");
        assert_eq!(decide(Some(stored), "f2", 100), Seen::New, "expired, whatever the request");
    }

    #[test]
    fn another_request_is_refused_naming_the_scopes_field() {
        assert_eq!(Scope::Transfer.reused().to_string(), "this Idempotency-Key was used with another request");
        assert_eq!(Scope::Saga.reused().to_string(), "this idempotency_key was used with another request");
    }
}
