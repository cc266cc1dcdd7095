//! Percent-decoding of path segments and query strings.

/// Decodes `%XX` escapes (and, in query strings, `+` as a space). `None` for a
/// broken escape or a result that is not UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Splits a query string into decoded `(name, value)` pairs, in order; a name
/// without `=` has an empty value. `Err` names the part that does not decode.
pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, String> {
    q.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            match (percent_decode(k, true), percent_decode(v, true)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(format!("cannot decode query parameter `{part}`")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(percent_decode("b%2F1", false).as_deref(), Some("b/1"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%E2%9C%93", false).as_deref(), Some("✓"));
        assert_eq!(percent_decode("%", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%FF", false), None);
    }

    #[test]
    fn queries() {
        assert_eq!(
            parse_query("binding_id=b%2D1&op=start&&flag").unwrap(),
            vec![("binding_id".into(), "b-1".into()), ("op".into(), "start".into()), ("flag".into(), String::new())]
        );
        assert_eq!(parse_query("").unwrap(), vec![]);
        assert!(parse_query("a=%").is_err());
    }
}
