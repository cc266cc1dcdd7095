//! API keys and what each scope may do (CONTRACT sections 3 and 9).
//!
//! A key has one [`Scope`]; scopes are ordered (`read` < `operate` <
//! `admin`) and a key may do what its scope and every smaller one allow.
//! Secrets are shown once and stored only as [`secret_hash`]. What the
//! console may offer a key is [`Scope::actions`]: the console asks the API
//! for it instead of deciding again.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::FieldError;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every GET, `/metrics`, the console's views.
    Read,
    /// `read`, and workers, OTPs, accounts, transfers, starting, rolling back
    /// and retrying sagas, event subscriptions.
    Operate,
    /// `operate`, and saga definitions, keys and the audit trail.
    Admin,
}

/// The actions the console offers, each allowed from one scope up.
const ACTIONS: &[(&str, Scope)] = &[
    ("workers.start", Scope::Operate),
    ("workers.control", Scope::Operate),
    ("otp.submit", Scope::Operate),
    ("sagas.start", Scope::Operate),
    ("sagas.rollback", Scope::Operate),
    ("sagas.retry", Scope::Operate),
    ("accounts.create", Scope::Operate),
    ("accounts.freeze", Scope::Operate),
    ("transfers.create", Scope::Operate),
    ("subscriptions.manage", Scope::Operate),
    ("definitions.create", Scope::Admin),
    ("keys.manage", Scope::Admin),
    ("audit.read", Scope::Admin),
];

impl Scope {
    /// Every scope, smallest first.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Operate, Scope::Admin];

    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    /// Parses a scope's name.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Whether a key of this scope may do what `needed` allows.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }

    /// The console's actions this scope allows (names such as
    /// `workers.control`), in a fixed order.
    pub fn actions(self) -> Vec<&'static str> {
        ACTIONS.iter().filter(|(_, needed)| self.allows(*needed)).map(|(name, _)| *name).collect()
    }
}

/// How a key's secret begins, so a leaked one is recognisable in a scan.
pub const SECRET_PREFIX: &str = "swk_";

/// Makes a secret from 32 random bytes: [`SECRET_PREFIX`] and 64 hex digits.
pub fn secret_from(random: &[u8; 32]) -> String {
    format!("{SECRET_PREFIX}{}", hex::encode(random))
}

/// Makes a key id from 8 random bytes: `key_` and 16 hex digits.
pub fn key_id_from(random: &[u8; 8]) -> String {
    format!("key_{}", hex::encode(random))
}

/// What is stored of a secret: its SHA-256, in hex. A secret carries 256
/// random bits, so a fast hash is enough (no password stretching needed).
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The id and name the audit trail records for the bootstrap key, the
/// `api_token` variable.
pub const BOOTSTRAP_KEY: &str = "api_token";

/// Checks a key's name: 1 to 64 printable ASCII characters.
pub fn validate_name(name: &str) -> Result<(), FieldError> {
    crate::text::printable_ascii(name, "name", 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered() {
        assert!(Scope::Admin.allows(Scope::Operate));
        assert!(Scope::Operate.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Operate));
        assert!(!Scope::Operate.allows(Scope::Admin));
        assert_eq!(Scope::parse("operate"), Some(Scope::Operate));
        assert_eq!(Scope::parse("root"), None);
        assert_eq!(serde_json::to_string(&Scope::Admin).unwrap(), "\"admin\"");
    }

    #[test]
    fn a_read_key_is_offered_no_action() {
        assert!(Scope::Read.actions().is_empty());
        assert!(Scope::Operate.actions().contains(&"workers.control"));
        assert!(!Scope::Operate.actions().contains(&"definitions.create"));
        assert_eq!(Scope::Admin.actions().len(), ACTIONS.len());
    }

    #[test]
    fn secrets_are_prefixed_and_stored_hashed() {
        let s = secret_from(&[7; 32]);
        assert!(s.starts_with("swk_") && s.len() == 4 + 64);
        let h = secret_hash(&s);
        assert_eq!(h.len(), 64);
        assert_ne!(h, s);
        assert_eq!(h, secret_hash(&s));
        assert_eq!(key_id_from(&[0xab; 8]), "key_abababababababab");
    }
}
