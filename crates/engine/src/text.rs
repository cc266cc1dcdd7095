//! Rules for short identifiers and labels that clients send as text.

use crate::FieldError;

/// Checks that `s` is 1 to `max` printable ASCII characters (space included):
/// idempotency keys, correlation ids, reasons.
pub fn printable_ascii(s: &str, field: &str, max: usize) -> Result<(), FieldError> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(FieldError::new(field, format!("must be 1 to {max} printable ASCII characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_is_bounded_and_refuses_controls_and_non_ascii() {
        assert!(printable_ascii("k-1 x", "f", 5).is_ok());
        assert!(printable_ascii("", "f", 5).is_err());
        assert!(printable_ascii("123456", "f", 5).is_err());
        assert!(printable_ascii("a\tb", "f", 5).is_err());
        assert_eq!(printable_ascii("é", "f", 5).unwrap_err().field, "f");
    }
}
