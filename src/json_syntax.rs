//! A syntax-only JSON check for the recorder's hot path.
//!
//! A capture embeds a body verbatim (`"body":{"json":…}`) only when the bytes are one JSON
//! value; anything else is written as an escaped string, so a line always parses. Asking
//! serde_json (`from_str::<&RawValue>`) cost 15k instructions for the 1.3 KB user AWS
//! answers a CreateUser with, a quarter of what recording adds to a proxied request
//! (callgrind). Nothing is built here: strings are skipped eight bytes at a time and the
//! nesting is a bit stack.
//!
//! The contract is one-sided: [`is_json`] returns `true` only for text that
//! `serde_json` reads as one value. It returns `false` for nesting deeper than
//! [`MAX_DEPTH`], which serde_json would take; the body is then recorded as a string,
//! still byte-exact. The tests hold it to serde_json's answer on random inputs.

/// Deepest nesting checked here. SCIM bodies nest 4 levels (a PatchOp's member list);
/// 128 keeps the stack in one `u128` and matches serde_json's own recursion limit.
pub const MAX_DEPTH: u32 = 128;

/// Whether `text` is exactly one JSON value (RFC 8259, as serde_json reads it: the four
/// whitespace bytes around tokens, escapes checked, `\u` needing four hex digits and
/// nothing said about surrogates). See the module note for the one-sided contract.
pub fn is_json(text: &str) -> bool {
    Scanner {
        bytes: text.as_bytes(),
        at: 0,
    }
    .document()
    .is_some()
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    /// One value and nothing after it but whitespace. `None`: not JSON.
    fn document(&mut self) -> Option<()> {
        // Bit `d` of `objects` is set when the container at depth `d + 1` is an object.
        let mut objects: u128 = 0;
        let mut depth: u32 = 0;
        'value: loop {
            self.skip_whitespace();
            match self.next()? {
                b'"' => self.string()?,
                b'{' => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    objects |= 1 << depth;
                    depth += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                        depth -= 1;
                        objects &= !(1 << depth);
                    } else {
                        self.member_name()?;
                        continue 'value;
                    }
                }
                b'[' => {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    depth += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.at += 1;
                        depth -= 1;
                    } else {
                        continue 'value;
                    }
                }
                b't' => self.literal(b"rue")?,
                b'f' => self.literal(b"alse")?,
                b'n' => self.literal(b"ull")?,
                b'-' | b'0'..=b'9' => self.at = number(self.bytes, self.at - 1)?.end,
                _ => return None,
            }
            // A value ended: close containers until one continues with a comma.
            loop {
                self.skip_whitespace();
                if depth == 0 {
                    return (self.at == self.bytes.len()).then_some(());
                }
                let in_object = objects & (1 << (depth - 1)) != 0;
                match (self.next()?, in_object) {
                    (b',', true) => {
                        self.skip_whitespace();
                        self.member_name()?;
                        continue 'value;
                    }
                    (b',', false) => continue 'value,
                    (b'}', true) | (b']', false) => {
                        depth -= 1;
                        objects &= !(1 << depth);
                    }
                    _ => return None,
                }
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn skip_whitespace(&mut self) {
        self.at = skip_whitespace(self.bytes, self.at);
    }

    /// `"name"` then `:`, with the whitespace before the colon.
    fn member_name(&mut self) -> Option<()> {
        if self.next()? != b'"' {
            return None;
        }
        self.string()?;
        self.skip_whitespace();
        (self.next()? == b':').then_some(())
    }

    /// The rest of a string after its opening quote. Inlined into its two callers: a
    /// call's register saves cost 15 instructions, a quarter of an average SCIM string.
    #[inline(always)]
    fn string(&mut self) -> Option<()> {
        loop {
            self.at = special_from(self.bytes, self.at);
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.bytes.get(self.at..self.at + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.at += 4;
                    }
                    _ => return None,
                },
                // A raw control character (below 0x20): JSON wants it escaped.
                _ => return None,
            }
        }
    }

    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        if self.bytes.get(self.at..self.at + rest.len())? != rest {
            return None;
        }
        self.at += rest.len();
        Some(())
    }
}

/// The index of the first byte at or after `at` that is not JSON whitespace (the four
/// bytes RFC 8259 allows around tokens).
pub(crate) fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(at) {
        at += 1;
    }
    at
}

/// A number token: where it ends, and how many digits its exponent has (0 without one).
pub(crate) struct Number {
    pub end: usize,
    #[allow(dead_code)] // read by no one since the rules stopped screening bodies
    pub exponent_digits: usize,
}

/// The number starting at `at` (an optional `-`, then digits), by RFC 8259's grammar as
/// serde_json reads it; `None` when the bytes there are not one.
pub(crate) fn number(bytes: &[u8], mut at: usize) -> Option<Number> {
    let digits = |at: &mut usize| {
        let start = *at;
        while let Some(b'0'..=b'9') = bytes.get(*at) {
            *at += 1;
        }
        *at - start
    };
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    match bytes.get(at)? {
        // One leading zero and no digit after it.
        b'0' if matches!(bytes.get(at + 1), Some(b'0'..=b'9')) => return None,
        b'0' => at += 1,
        b'1'..=b'9' => {
            digits(&mut at);
        }
        _ => return None,
    }
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        if digits(&mut at) == 0 {
            return None;
        }
    }
    let mut exponent_digits = 0;
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        exponent_digits = digits(&mut at);
        if exponent_digits == 0 {
            return None;
        }
    }
    Some(Number {
        end: at,
        exponent_digits,
    })
}

/// The index of the first `"`, `\\` or byte below 0x20 at or after `from`, or the
/// length. Eight bytes a step (the SWAR zero-byte test): strings are most of a SCIM body.
pub(crate) fn special_from(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `x` that is zero, or that borrowed from one that is.
    // The lowest flagged byte is always a true match, which is all this needs.
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    // Bytes below 0x21 after flipping bit 1 (for bytes below 0x80; higher ones never
    // borrow): exactly the control characters and `"` (0x22 ^ 0x02 = 0x20), one test
    // for two.
    let control_or_quote = |x: u64| {
        let flipped = x ^ (ONES * 0x02);
        flipped.wrapping_sub(ONES * 0x21) & !flipped & HIGHS
    };
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let found = control_or_quote(x) | zero_bytes(x ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if b < 0x20 || b == b'"' || b == b'\\' {
            break;
        }
        at += 1;
    }
    at
}

/// Generated JSON-ish text for the property tests of this check and of the screening
/// tree (`rules::tree`), which are both held to serde_json.
#[cfg(test)]
pub(crate) mod strategy {
    use proptest::prelude::*;

    /// Values from a small grammar: strings with every kind of escape (lone surrogates
    /// too) and raw control characters, numbers up to 21 digits with exponents up to 3,
    /// keys that collide ignoring case, all four whitespace bytes.
    pub fn json_ish() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "\"([a-z\\u{e9}\\u{1F600} ]|\\\\[\"\\\\/bfnrtux]|\\\\u[0-9a-fA-F]{4}|\\\\u[dD][89abAB][0-9a-f]{2}|[\\x00-\\x1f])*\"",
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
        ];
        leaf.prop_recursive(5, 48, 5, |inner| {
            let ws = prop::sample::select(vec!["", "", " ", "\n", "\t", "\r"]);
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..5), ws.clone())
                    .prop_map(|(items, ws)| format!("[{ws}{}]", items.join(&format!(",{ws}")))),
                (prop::collection::vec(("\"[aAbB]{0,2}\"", inner), 0..5), ws).prop_map(
                    |(members, ws)| {
                        let members: Vec<String> = members
                            .iter()
                            .map(|(k, v)| format!("{k}{ws}:{ws}{v}"))
                            .collect();
                        format!("{{{}}}", members.join(","))
                    }
                ),
            ]
        })
    }

    /// What [`damage`] puts into a value.
    pub fn splice() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "", ",", "]", "}", "\"", "\\", ":", "0", "-", "e", "{", "[", " ", "\u{0}", "\u{e9}",
        ])
    }

    /// `text` with `splice` put in at `cut` (moved back to a character boundary), and
    /// `text` cut there.
    pub fn damage<'t>(text: &'t str, cut: prop::sample::Index, splice: &str) -> (String, &'t str) {
        let at = cut.index(text.len() + 1);
        let at = (0..=at)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        (
            format!("{}{splice}{}", &text[..at], &text[at..]),
            &text[..at],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::strategy::{damage, json_ish, splice};
    use super::*;
    use proptest::prelude::*;

    fn serde_reads(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn accepts_json_values() {
        for text in [
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"jdoe","active":true}"#,
            r#"[1,-0,0.5,-12.75e+3,1E9,2e-2,null,false,true,"",{}]"#,
            "{}",
            "[]",
            " { \"a\" : [ 1 , { } ] } \r\n",
            r#""\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00""#,
            r#""\ud800""#,
            "\"caf\u{e9} \u{1F600}\"",
            "0",
            "-7",
        ] {
            assert!(is_json(text), "{text}");
            assert!(serde_reads(text), "{text}");
        }
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for text in [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "[,1]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{\"a\" 1}",
            "{1:2}",
            "[1 2]",
            "[1}",
            "{\"a\":1]",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nul",
            "True",
            "\"a",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"\\u12\"",
            "\"tab\there\"",
            "{} {}",
            "[]]",
            "\"a\"x",
        ] {
            assert!(!is_json(text), "{text:?}");
            assert!(!serde_reads(text), "{text:?}");
        }
    }

    #[test]
    fn nesting_to_the_limit_is_checked_and_deeper_is_declined() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(is_json(&nested(MAX_DEPTH as usize)));
        assert!(!is_json(&nested(MAX_DEPTH as usize + 1)));
        let objects = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(is_json(&objects(MAX_DEPTH as usize)));
        assert!(!is_json(&objects(MAX_DEPTH as usize + 1)));
        // Mixed containers close in order.
        assert!(is_json(r#"[{"a":[{"b":[]}]}]"#));
        assert!(!is_json(r#"[{"a":[{"b":[}]}]"#));
    }

    #[test]
    fn special_from_finds_the_first_special_byte() {
        let text = b"abcdefgh\"ijklmnop\\qrstuvw\x01xyz";
        assert_eq!(special_from(text, 0), 8);
        assert_eq!(special_from(text, 9), 17);
        assert_eq!(special_from(text, 18), 25);
        assert_eq!(special_from(b"plain", 0), 5);
        // A byte above 0x80 is neither a quote nor a control character.
        assert_eq!(special_from("\u{e9}\u{e9}\u{e9}\u{e9}\"".as_bytes(), 0), 8);
    }

    #[test]
    fn special_from_agrees_with_a_byte_scan_for_every_byte_anywhere() {
        let naive = |bytes: &[u8], from: usize| {
            (from..bytes.len())
                .find(|&i| bytes[i] < 0x20 || bytes[i] == b'"' || bytes[i] == b'\\')
                .unwrap_or(bytes.len())
        };
        for filler in [b'a', 0xff, 0x80, 0x21, 0x20, 0x23, 0x7f, 0x5d] {
            for len in [1, 7, 8, 9, 16, 17] {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut bytes = vec![filler; len];
                        bytes[at] = b;
                        for from in [0, 1.min(len)] {
                            assert_eq!(
                                special_from(&bytes, from),
                                naive(&bytes, from),
                                "{bytes:?} from {from}"
                            );
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_serde_json_on_values(text in json_ish()) {
            prop_assert_eq!(is_json(&text), serde_reads(&text), "{:?}", text);
        }

        #[test]
        fn agrees_with_serde_json_on_damaged_values(
            text in json_ish(),
            cut in any::<prop::sample::Index>(),
            splice in splice(),
        ) {
            let (damaged, truncated) = damage(&text, cut, splice);
            prop_assert_eq!(is_json(&damaged), serde_reads(&damaged), "{:?}", damaged);
            prop_assert_eq!(is_json(truncated), serde_reads(truncated), "{:?}", truncated);
        }

        #[test]
        fn never_claims_what_serde_json_denies(text in "[\\[\\]{}\",:0-9a-z\\\\. \\-+]{0,40}") {
            if is_json(&text) {
                prop_assert!(serde_reads(&text), "{:?}", text);
            }
        }
    }
}
