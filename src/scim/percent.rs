//! Percent-decoding (RFC 3986 §2.1) for URL paths and query strings.

use std::borrow::Cow;

use thiserror::Error;

/// Why a percent-encoded string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PercentError {
    /// A `%` not followed by two hex digits, at this byte offset.
    #[error("`%` at byte {offset} is not followed by two hex digits")]
    BadEscape { offset: usize },
    /// The decoded bytes are not UTF-8; `offset` is the first bad byte of the decoded
    /// text.
    #[error("the decoded text is not UTF-8 (byte {offset})")]
    InvalidUtf8 { offset: usize },
}

/// Decodes `%XX` escapes, and `+` as a space when `plus_is_space` (the
/// `application/x-www-form-urlencoded` convention IdPs use in query strings, e.g.
/// `filter=userName+eq+%22jdoe%22`; in paths `+` is a literal plus).
///
/// Borrows when there is nothing to decode, which is the common case for ids.
pub fn percent_decode(input: &str, plus_is_space: bool) -> Result<Cow<'_, str>, PercentError> {
    let special = |b: u8| b == b'%' || (plus_is_space && b == b'+');
    if !input.bytes().any(special) {
        return Ok(Cow::Borrowed(input));
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = |k: usize| bytes.get(i + k).and_then(|&h| char::from(h).to_digit(16));
                match (hex(1), hex(2)) {
                    // Two hex digits are at most 0xFF, so the cast is lossless.
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err(PercentError::BadEscape { offset: i }),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|e| PercentError::InvalidUtf8 {
            offset: e.utf8_error().valid_up_to(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_plus() {
        let cases: &[(&str, bool, &str)] = &[
            ("abc", true, "abc"),
            ("userName+eq+%22jdoe%22", true, r#"userName eq "jdoe""#),
            ("userName+eq+%22jdoe%22", false, r#"userName+eq+"jdoe""#),
            ("a%2Bb", true, "a+b"),
            ("%C3%A9%e2%82%ac", true, "é€"),
            ("%25", true, "%"),
            ("", true, ""),
        ];
        for (input, plus, expected) in cases {
            assert_eq!(
                percent_decode(input, *plus).as_deref(),
                Ok(*expected),
                "{input}"
            );
        }
        assert!(matches!(percent_decode("abc", true), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn refuses_bad_escapes_and_invalid_utf8() {
        assert_eq!(
            percent_decode("a%2", true),
            Err(PercentError::BadEscape { offset: 1 })
        );
        assert_eq!(
            percent_decode("a%zz", true),
            Err(PercentError::BadEscape { offset: 1 })
        );
        assert_eq!(
            percent_decode("%", false),
            Err(PercentError::BadEscape { offset: 0 })
        );
        assert_eq!(
            percent_decode("ab%FF", true),
            Err(PercentError::InvalidUtf8 { offset: 2 })
        );
        // An overlong encoding of '/' and a lone continuation byte are not UTF-8 either.
        assert!(percent_decode("%C0%AF", true).is_err());
        assert!(percent_decode("%80", true).is_err());
    }
}
