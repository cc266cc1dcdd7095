//! Receipt codes: unique, short, and checkable by eye.
//!
//! A code is a prefix, the issuing row's unique database id in base 36, and a
//! check character (the id's digits weighted mod 36), e.g. `SW-00002S-K`. The
//! database id makes it unique; the check character catches a mistyped code.

const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn base36(mut n: u64, width: usize) -> String {
    let mut out = Vec::new();
    while n > 0 {
        out.push(ALPHABET[(n % 36) as usize]);
        n /= 36;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn check_char(body: &str) -> char {
    let sum: u64 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| (i as u64 + 1) * ALPHABET.iter().position(|a| *a == b).unwrap_or(0) as u64)
        .sum();
    ALPHABET[(sum % 36) as usize] as char
}

/// The receipt code for the row with database id `id`, under `prefix`
/// (`SW` for worker iterations, `TR` for transfers).
pub fn code(prefix: &str, id: u64) -> String {
    let body = base36(id, 6);
    format!("{prefix}-{body}-{}", check_char(&body))
}

/// Whether `code` is well formed with a correct check character.
pub fn is_valid(code: &str) -> bool {
    let mut parts = code.split('-');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(p), Some(body), Some(check), None) => {
            !p.is_empty()
                && body.len() >= 6
                && body.bytes().all(|b| ALPHABET.contains(&b))
                && check.len() == 1
                && check.starts_with(check_char(body))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for id in 1..5000u64 {
            let c = code("SW", id);
            assert!(is_valid(&c), "{c}");
            assert!(seen.insert(c));
        }
        assert_eq!(code("SW", 100), "SW-00002S-Y");
    }

    #[test]
    fn a_typo_is_caught() {
        let c = code("TR", 123_456);
        let mut bad = c.clone().into_bytes();
        bad[4] = if bad[4] == b'1' { b'2' } else { b'1' };
        assert!(!is_valid(&String::from_utf8(bad).unwrap()));
        assert!(!is_valid("TR-XYZ"));
        assert!(!is_valid("nonsense"));
    }
}
