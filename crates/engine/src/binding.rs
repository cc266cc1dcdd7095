//! Binding ids: 1 to 64 characters of `[A-Za-z0-9._:-]`.

use crate::FieldError;

/// Longest binding id.
pub const MAX_LEN: usize = 64;

/// Most binding ids in one request (start and bulk control).
pub const MAX_IDS: usize = 1000;

/// Checks one binding id; `field` names it in the error.
pub fn validate(id: &str, field: &str) -> Result<(), FieldError> {
    if id.is_empty() || id.len() > MAX_LEN {
        return Err(FieldError::new(field, format!("must be 1 to {MAX_LEN} characters")));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))) {
        return Err(FieldError::new(field, format!("invalid character {c:?}: use A-Z a-z 0-9 . _ : -")));
    }
    Ok(())
}

/// Checks a list of 1 to `max` ids; one bad id rejects the list.
pub fn validate_list(ids: &[String], max: usize, field: &str) -> Result<(), FieldError> {
    if ids.is_empty() || ids.len() > max {
        return Err(FieldError::new(field, format!("must hold 1 to {max} binding ids")));
    }
    for (i, id) in ids.iter().enumerate() {
        validate(id, &format!("{field}[{i}]"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contract_alphabet() {
        assert!(validate("b-1", "id").is_ok());
        assert!(validate("A.z_0:9-", "id").is_ok());
        assert!(validate(&"x".repeat(64), "id").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_odd_characters() {
        assert!(validate("", "id").is_err());
        assert!(validate(&"x".repeat(65), "id").is_err());
        let e = validate("b 1", "binding_ids[3]").unwrap_err();
        assert_eq!(e.field, "binding_ids[3]");
        assert!(validate("b/1", "id").is_err());
        assert!(validate("é", "id").is_err());
    }

    #[test]
    fn lists_are_all_or_nothing() {
        assert!(validate_list(&[], 1000, "binding_ids").is_err());
        let ids: Vec<String> = vec!["a".into(), "b!".into()];
        assert_eq!(validate_list(&ids, 1000, "binding_ids").unwrap_err().field, "binding_ids[1]");
        let many: Vec<String> = (0..1001).map(|i| format!("b{i}")).collect();
        assert!(validate_list(&many, 1000, "binding_ids").is_err());
    }
}
