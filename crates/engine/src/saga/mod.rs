//! Sagas (declarative, with compensation): the definition model and its
//! validation ([`definition`]), templates ([`template`]), the saga
//! machine ([`machine`]) and the saga as the API answers it ([`view`]).

pub mod definition;
pub mod machine;
pub mod request;
pub mod template;
pub mod view;

pub use definition::{Definition, Service};
pub use machine::Saga;
pub use view::SagaView;

/// The [`idempotency::fingerprint`](crate::idempotency::fingerprint) of a
/// saga's start (`POST /api/sagas`), to tell a repeat from another request
/// under the same `idempotency_key`: over `{"definition", "input",
/// "correlation_id"}`, as every release has stored it.
pub fn start_fingerprint(definition: &str, input: &serde_json::Value, correlation_id: Option<&str>) -> String {
    crate::idempotency::fingerprint(&serde_json::json!({
        "definition": definition,
        "input": input,
        "correlation_id": correlation_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_starts_fingerprint_is_the_one_earlier_releases_stored() {
        let input = json!({"user_token": "tok", "items": [{"product_id": "p1", "price": 10000, "quantity": 2}], "payment_ttl_ms": 600000});
        // How the previous release's sagas component computed it, spelled
        // out: keys it stored still answer.
        use sha2::{Digest, Sha256};
        let before = |definition: String, input: &serde_json::Value, correlation_id: Option<String>| {
            hex::encode(Sha256::digest(
                json!({ "definition": definition, "input": input, "correlation_id": correlation_id }).to_string(),
            ))
        };
        let plain = start_fingerprint("checkout", &input, None);
        assert_eq!(plain, before("checkout".into(), &input, None));
        assert_eq!(plain, "c29de876932a67a400398b768d74a9fbaae6baa980dd574116f50ac547d06268");
        let correlated = start_fingerprint("checkout", &input, Some("c-1"));
        assert_eq!(correlated, before("checkout".into(), &input, Some("c-1".into())));
        assert_eq!(correlated, "96aa6f40bffd7d76e0b0271caf25057ba13b15c27a40b8038da123dec9460dd0");
        assert_ne!(start_fingerprint("cashout", &input, None), plain);
    }
}
