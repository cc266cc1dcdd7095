//! One-time passwords: their format, and the mask that stands for them
//! wherever they would otherwise appear.

use crate::FieldError;

/// `POST /api/otp/{transaction_id}`'s body.
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// 4 to 8 digits.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]{4,8}$", example = "123456"))]
    pub otp: String,
}

/// What an OTP looks like in logs and answers.
pub const MASK: &str = "******";

/// Checks an OTP: 4 to 8 ASCII digits.
pub fn validate(otp: &str) -> Result<(), FieldError> {
    if (4..=8).contains(&otp.len()) && otp.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(FieldError::new("otp", "must be 4 to 8 digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_to_eight_digits() {
        assert!(validate("1234").is_ok());
        assert!(validate("12345678").is_ok());
        assert!(validate("123").is_err());
        assert!(validate("123456789").is_err());
        assert!(validate("12a456").is_err());
        assert!(validate("١٢٣٤").is_err(), "non-ASCII digits are refused");
        assert_eq!(validate("x").unwrap_err().field, "otp");
    }
}
