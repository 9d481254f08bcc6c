//! The productions of RFC 7644 §3.4.2.2, Figure 1 ("ABNF Specification of SCIM
//! Filters"), one nom 8 parser each, named after the production it implements and
//! documented with its ABNF line. `path.rs` builds §3.5.2's PATH from these.
//!
//! Two things the ABNF leaves open are settled here:
//! - Precedence: `logExp = FILTER SP ("and" / "or") SP FILTER` is ambiguous and
//!   left-recursive; the prose decides ("not" takes precedence over "and", which
//!   takes precedence over "or", §3.4.2.2's order of operations), so
//!   [`log_exp`] is an `or` list of `and` lists, parsed with loops rather than
//!   recursion, which also keeps a 100,000-term chain off the stack.
//! - Whitespace: the RFC writes a single `SP` between tokens; any run of JSON
//!   whitespace (SP, HTAB, CR, LF: RFC 7159's `ws`) is accepted there, and optional
//!   whitespace is accepted around the whole input, just inside `(`…`)` and `[`…`]`,
//!   and between `not` and `(` (the ABNF has none there, the RFC's own examples do).
//!
//! Errors: a production that cannot start returns `nom::Err::Error` so callers may try
//! something else; once the input is committed (an attribute name was read, a `(` was
//! opened…) it returns `nom::Err::Failure` with a precise [`Problem`], which
//! [`parse_complete`] turns into a [`ParseError`] with a hint. Internally errors borrow
//! the input and never allocate, so backtracking stays cheap.

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_till, take_while, take_while1, take_while_m_n};
use nom::character::complete::{char, digit1, one_of, satisfy};
use nom::combinator::{opt, recognize};
use nom::{IResult, Parser};

use super::error::{line_column, ErrorKind, Grammar, ParseError};
use super::{push_flat, AttrPath, CompValue, CompareOp, Filter};

/// How many parentheses and brackets may nest. Each level costs the recursive parser
/// seven stack frames, measured at under 2 KiB per level optimized and under 16 KiB
/// unoptimized: 32 levels need under 64 KiB (512 KiB in a debug build), well inside the
/// 2 MiB of a Rust or tokio thread, while real filters nest two or three levels.
pub const MAX_DEPTH: usize = 32;

pub(crate) type PResult<'a, O> = IResult<&'a str, O, Fail<'a>>;

/// The parser's error: where (`at`, a suffix or subslice of the input) and what.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fail<'a> {
    pub(crate) at: &'a str,
    pub(crate) problem: Problem<'a>,
}

impl<'a> nom::error::ParseError<&'a str> for Fail<'a> {
    fn from_error_kind(input: &'a str, _kind: nom::error::ErrorKind) -> Self {
        Fail {
            at: input,
            problem: Problem::Syntax,
        }
    }

    fn append(_input: &'a str, _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// What went wrong, borrowing the text it concerns; see [`ErrorKind`] for the meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Problem<'a> {
    /// A nom combinator did not match (only seen by callers that backtrack).
    Syntax,
    ExpectedAttrPath,
    ExpectedSubAttr,
    InvalidNameChar,
    TooManySubAttrs {
        path: &'a str,
    },
    BadUri {
        uri: &'a str,
    },
    ExpectedCompareOp {
        attr: &'a str,
    },
    ExpectedSpace {
        after: &'a str,
    },
    ExpectedSpaceBefore {
        word: &'a str,
    },
    ExpectedValue {
        op: &'a str,
    },
    UnterminatedString,
    InvalidEscape {
        escape: &'a str,
    },
    ControlChar,
    LoneSurrogate {
        escape: &'a str,
    },
    InvalidNumber,
    NumberOutOfRange {
        text: &'a str,
    },
    ExpectedFilter {
        after: &'a str,
    },
    UnclosedParen {
        open: &'a str,
    },
    UnclosedBracket {
        open: &'a str,
    },
    UnbalancedClose,
    NestedValuePath {
        attr: &'a str,
    },
    SpaceBeforeBracket {
        attr: &'a str,
    },
    SubAttrAfterValuePath,
    Unexpected {
        expected: &'static str,
    },
    TooDeep,
}

/// A committed error: no alternative will be tried.
pub(crate) fn failure<'a>(at: &'a str, problem: Problem<'a>) -> nom::Err<Fail<'a>> {
    nom::Err::Failure(Fail { at, problem })
}

pub(crate) fn fail<'a, T>(at: &'a str, problem: Problem<'a>) -> PResult<'a, T> {
    Err(failure(at, problem))
}

/// Where a filter may be: at the top (`FILTER`) or inside brackets (`valFilter`,
/// which has no `valuePath`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Filter,
    ValFilter,
}

/// `nameChar  = "-" / "_" / DIGIT / ALPHA`
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The characters an attrPath is made of: nameChar, `.` (subAttr, and versions such
/// as `2.0` in URNs), `:` (URN separators) and `$` (`$ref`). Real schema URNs use no
/// other characters; a URN needing more would be rejected with a clear error.
fn is_path_char(c: char) -> bool {
    is_name_char(c) || matches!(c, '.' | ':' | '$')
}

/// JSON whitespace (RFC 7159 §2: SP, HTAB, LF, CR).
fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Skips optional whitespace.
///
/// Not nom's `multispace0`, nor `digit0` below: in nom 8.0.0 the `character::complete`
/// `*0` parsers, when they consume all of a `&str`, return an empty remainder that
/// points at the *start* of the input, which breaks `recognize` and every offset
/// computed from the remainder (`recognize((one_of("123456789"), digit0))` gives "1"
/// for "123"). `take_while` and std's trimming keep the pointer right.
pub(crate) fn ws0(input: &str) -> &str {
    input.trim_start_matches(is_ws)
}

/// Skips required whitespace (the ABNF's `SP`); `None` if there is none.
fn ws1(input: &str) -> Option<&str> {
    let rest = ws0(input);
    (rest.len() < input.len()).then_some(rest)
}

/// `FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"`
///
/// `depth` counts the parentheses and brackets already open around `input`.
pub(crate) fn filter(input: &str, depth: usize) -> PResult<'_, Filter> {
    log_exp(input, depth, Scope::Filter)
}

/// `valFilter = attrExp / logExp / *1"not" "(" valFilter ")"`
///
/// The operands of a `logExp` inside brackets are valFilters too: RFC 7644 §3.4.2.2
/// says the bracketed filter "uses sub-attributes of a parent attrPath", and RFC 7643
/// §2.3.8 forbids sub-attributes that are themselves complex, so a nested valuePath
/// could never match anything.
pub(crate) fn val_filter(input: &str, depth: usize) -> PResult<'_, Filter> {
    log_exp(input, depth, Scope::ValFilter)
}

/// `logExp    = FILTER SP ("and" / "or") SP FILTER`
///
/// Parsed as `or`-separated lists of `and`-separated operands, so `and` binds tighter
/// (RFC 7644 §3.4.2.2's order of operations); a one-operand list is just that operand.
fn log_exp(input: &str, depth: usize, scope: Scope) -> PResult<'_, Filter> {
    chain(input, "or", |i| {
        chain(i, "and", |j| filter_operand(j, depth, scope))
    })
}

/// One `keyword`-separated list of operands, flattened into a single `And` / `Or`.
fn chain<'a>(
    input: &'a str,
    keyword: &'static str,
    mut operand: impl FnMut(&'a str) -> PResult<'a, Filter>,
) -> PResult<'a, Filter> {
    let (rest, first) = operand(input)?;
    let Some(mut next) = logical_op(rest, keyword)? else {
        return Ok((rest, first));
    };
    let same: fn(&Filter) -> bool = if keyword == "and" {
        |f| matches!(f, Filter::And(_))
    } else {
        |f| matches!(f, Filter::Or(_))
    };
    let mut items = Vec::with_capacity(2);
    push_flat(&mut items, first, same);
    loop {
        let (rest, item) = operand(next)?;
        push_flat(&mut items, item, same);
        match logical_op(rest, keyword)? {
            Some(after) => next = after,
            None if keyword == "and" => return Ok((rest, Filter::And(items))),
            None => return Ok((rest, Filter::Or(items))),
        }
    }
}

/// `SP ("and" / "or") SP`, the middle of logExp, for one `keyword`.
///
/// Returns the input after it, or `None` (consuming nothing) when the next word is not
/// `keyword`, so the caller can look for `or`, `)`, `]` or the end instead.
fn logical_op<'a>(
    input: &'a str,
    keyword: &'static str,
) -> Result<Option<&'a str>, nom::Err<Fail<'a>>> {
    let Some(word_start) = ws1(input) else {
        return Ok(None);
    };
    let word: PResult<'_, &str> = take_while1(is_name_char).parse(word_start);
    let Ok((after, word)) = word else {
        return Ok(None);
    };
    if !word.eq_ignore_ascii_case(keyword) {
        return Ok(None);
    }
    let next = ws1(after);
    let operand = next.unwrap_or(after);
    if operand.is_empty() || operand.starts_with([')', ']']) {
        return Err(failure(operand, Problem::ExpectedFilter { after: word }));
    }
    match next {
        Some(next) => Ok(Some(next)),
        None => Err(failure(after, Problem::ExpectedSpace { after: word })),
    }
}

/// One operand of logExp: FILTER's alternatives other than logExp itself,
/// `attrExp / valuePath / *1"not" "(" FILTER ")"` (no valuePath in a valFilter).
///
/// attrExp and valuePath both start with attrPath, so it is parsed once here and the
/// next character (`[` or not) picks the production.
fn filter_operand(input: &str, depth: usize, scope: Scope) -> PResult<'_, Filter> {
    if input.starts_with('(') || not_keyword(input).is_some() {
        return grouping(input, depth, scope);
    }
    let (rest, attr) = attr_path(input)?;
    if rest.starts_with('[') {
        return match scope {
            Scope::Filter => value_path(attr, rest, depth),
            Scope::ValFilter => fail(input, Problem::NestedValuePath { attr: attr.text }),
        };
    }
    no_space_before_bracket(attr, rest)?;
    attr_exp(attr, rest)
}

/// Refuses `emails [type eq "work"]`: the ABNF joins attrPath and `[` directly, and a
/// space there reads as a comparison with a missing operator.
pub(crate) fn no_space_before_bracket<'a>(
    attr: AttrRef<'a>,
    rest: &'a str,
) -> Result<(), nom::Err<Fail<'a>>> {
    match ws1(rest) {
        Some(after) if after.starts_with('[') => Err(failure(
            rest,
            Problem::SpaceBeforeBracket { attr: attr.text },
        )),
        _ => Ok(()),
    }
}

/// `*1"not" "(" FILTER ")"` (and `*1"not" "(" valFilter ")"` inside brackets).
fn grouping(input: &str, depth: usize, scope: Scope) -> PResult<'_, Filter> {
    let (open, negated) = match not_keyword(input) {
        Some(open) => (open, true),
        None => (input, false),
    };
    let (after_open, _) = char('(').parse(open)?;
    if depth >= MAX_DEPTH {
        return fail(open, Problem::TooDeep);
    }
    let start = ws0(after_open);
    if start.is_empty() || start.starts_with(')') {
        return fail(start, Problem::ExpectedFilter { after: "(" });
    }
    let (before_ws, inner) = log_exp(start, depth + 1, scope)?;
    let rest = ws0(before_ws);
    match rest.chars().next() {
        Some(')') => {
            let inner = if negated {
                Filter::negate(inner)
            } else {
                inner
            };
            Ok((&rest[1..], inner))
        }
        None => fail(rest, Problem::UnclosedParen { open }),
        Some(_) => fail(rest, unexpected(before_ws, rest, "`and`, `or` or `)`")),
    }
}

/// `"not"` (any case, as every ABNF string) when a `(` follows it, after optional
/// whitespace; returns the input at that `(`. Without the `(`, `not` is an ordinary
/// attribute name (`not pr` is a valid attrExp).
fn not_keyword(input: &str) -> Option<&str> {
    let (rest, _) = tag_no_case::<_, _, Fail>("not").parse(input).ok()?;
    let rest = ws0(rest);
    rest.starts_with('(').then_some(rest)
}

/// `valuePath = attrPath "[" valFilter "]"`
///
/// Called with the attrPath already parsed by [`filter_operand`].
fn value_path<'a>(attr: AttrRef<'a>, input: &'a str, depth: usize) -> PResult<'a, Filter> {
    let (rest, filter) = value_filter(input, depth)?;
    Ok((
        rest,
        Filter::ValuePath {
            attr: attr.into_attr_path(),
            filter: Box::new(filter),
        },
    ))
}

/// `"[" valFilter "]"`, the bracketed half of valuePath, shared with PATH (§3.5.2).
pub(crate) fn value_filter(input: &str, depth: usize) -> PResult<'_, Filter> {
    let (after_open, _) = char('[').parse(input)?;
    if depth >= MAX_DEPTH {
        return fail(input, Problem::TooDeep);
    }
    let start = ws0(after_open);
    if start.is_empty() || start.starts_with(']') {
        return fail(start, Problem::ExpectedFilter { after: "[" });
    }
    let (before_ws, inner) = val_filter(start, depth + 1)?;
    let rest = ws0(before_ws);
    match rest.chars().next() {
        Some(']') => Ok((&rest[1..], inner)),
        None => fail(rest, Problem::UnclosedBracket { open: input }),
        Some(_) => fail(rest, unexpected(before_ws, rest, "`and`, `or` or `]`")),
    }
}

/// `attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)`
///
/// Called with the attrPath already parsed by [`filter_operand`].
fn attr_exp<'a>(attr: AttrRef<'a>, input: &'a str) -> PResult<'a, Filter> {
    let expected_op =
        |at: &'a str| Err(failure(at, Problem::ExpectedCompareOp { attr: attr.text }));
    let Some(op_start) = ws1(input) else {
        return expected_op(input);
    };
    let Ok((rest, op)) = compare_op(op_start) else {
        return expected_op(op_start);
    };
    let Some(op) = op else {
        let attr = attr.into_attr_path();
        return Ok((rest, Filter::Present { attr }));
    };
    let op_text = &op_start[..op_start.len() - rest.len()];
    let value_start = match ws1(rest) {
        Some(start) => start,
        None if rest.is_empty() => return fail(rest, Problem::ExpectedValue { op: op_text }),
        None => return fail(rest, Problem::ExpectedSpace { after: op_text }),
    };
    let (rest, value) = comp_value(value_start, op_text)?;
    let attr = attr.into_attr_path();
    Ok((rest, Filter::Compare { attr, op, value }))
}

/// `compareOp = "eq" / "ne" / "co" / "sw" / "ew" / "gt" / "lt" / "ge" / "le"`
///
/// Also recognises attrExp's `"pr"`, which stands in the same place, as `None`. ABNF
/// strings ignore case (RFC 5234 §2.3), so `EQ` and `Eq` are `eq`.
fn compare_op(input: &str) -> PResult<'_, Option<CompareOp>> {
    let (rest, word) = take_while1(is_name_char).parse(input)?;
    if word.eq_ignore_ascii_case("pr") {
        return Ok((rest, None));
    }
    match CompareOp::from_keyword(word) {
        Some(op) => Ok((rest, Some(op))),
        None => Err(nom::Err::Error(Fail {
            at: input,
            problem: Problem::Syntax,
        })),
    }
}

/// `compValue = false / null / true / number / string`
/// `; rules from JSON Data Interchange format RFC 7159`
///
/// Unlike ABNF strings, JSON's literals are case-sensitive: `True` is refused.
fn comp_value<'a>(input: &'a str, op: &'a str) -> PResult<'a, CompValue> {
    match input.as_bytes().first() {
        Some(b'"') => json_string(input).map(|(rest, s)| (rest, CompValue::String(s))),
        Some(b'-' | b'0'..=b'9') => {
            json_number(input).map(|(rest, n)| (rest, CompValue::Number(n)))
        }
        _ => {
            let word: PResult<'_, &str> = take_while1(is_name_char).parse(input);
            match word {
                Ok((rest, "true")) => Ok((rest, CompValue::Bool(true))),
                Ok((rest, "false")) => Ok((rest, CompValue::Bool(false))),
                Ok((rest, "null")) => Ok((rest, CompValue::Null)),
                _ => fail(input, Problem::ExpectedValue { op }),
            }
        }
    }
}

/// `string = quotation-mark *char quotation-mark` (RFC 7159 §7)
///
/// `char = unescaped / escape (…)`, `unescaped = %x20-21 / %x23-5B / %x5D-10FFFF`.
/// Runs of unescaped characters are copied whole, so a string without escapes costs
/// one allocation.
fn json_string(input: &str) -> PResult<'_, String> {
    let (mut rest, _) = char('"').parse(input)?;
    let mut out = String::new();
    loop {
        let (after, run) = take_till(|c: char| c == '"' || c == '\\' || c < ' ').parse(rest)?;
        out.push_str(run);
        match after.as_bytes().first() {
            Some(b'"') => return Ok((&after[1..], out)),
            Some(b'\\') => {
                let (after_escape, c) = escape(after)?;
                out.push(c);
                rest = after_escape;
            }
            Some(_) => return fail(after, Problem::ControlChar),
            None => return fail(input, Problem::UnterminatedString),
        }
    }
}

/// `escape = %x5C ( %x22 / %x5C / %x2F / %x62 / %x66 / %x6E / %x72 / %x74 / %x75 4HEXDIG )`
/// (RFC 7159 §7: `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX`)
fn escape(input: &str) -> PResult<'_, char> {
    let (after, _) = char('\\').parse(input)?;
    let decoded = match after.chars().next() {
        Some('"') => '"',
        Some('\\') => '\\',
        Some('/') => '/',
        Some('b') => '\u{8}',
        Some('f') => '\u{c}',
        Some('n') => '\n',
        Some('r') => '\r',
        Some('t') => '\t',
        Some('u') => return unicode_escape(input),
        other => {
            let len = 1 + other.map_or(0, char::len_utf8);
            return fail(
                input,
                Problem::InvalidEscape {
                    escape: &input[..len],
                },
            );
        }
    };
    Ok((&after[1..], decoded))
}

/// `%x75 4HEXDIG`, joining a UTF-16 surrogate pair (`\uD83D\uDE00`) into one char, as
/// RFC 7159 §7 spells characters outside the Basic Multilingual Plane.
fn unicode_escape(input: &str) -> PResult<'_, char> {
    let (rest, unit) = hex_unit(input)?;
    let code = match unit {
        0xD800..=0xDBFF => match hex_unit(rest) {
            Ok((after, low @ 0xDC00..=0xDFFF)) => {
                let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                return match char::from_u32(code) {
                    Some(c) => Ok((after, c)),
                    None => fail(
                        input,
                        Problem::LoneSurrogate {
                            escape: &input[..6],
                        },
                    ),
                };
            }
            _ => unit,
        },
        _ => unit,
    };
    match char::from_u32(code) {
        Some(c) => Ok((rest, c)),
        // 0xD800..=0xDFFF without its other half: a Rust string cannot hold it.
        None => fail(
            input,
            Problem::LoneSurrogate {
                escape: &input[..6],
            },
        ),
    }
}

/// `"\u" 4HEXDIG` as a UTF-16 code unit.
fn hex_unit(input: &str) -> PResult<'_, u32> {
    let digits: PResult<'_, &str> = (
        tag("\\u"),
        take_while_m_n(4, 4, |c: char| c.is_ascii_hexdigit()),
    )
        .parse(input)
        .map(|(rest, (_, digits))| (rest, digits));
    match digits {
        Ok((rest, digits)) => match u32::from_str_radix(digits, 16) {
            Ok(unit) => Ok((rest, unit)),
            Err(_) => Err(nom::Err::Error(Fail {
                at: input,
                problem: Problem::Syntax,
            })),
        },
        Err(_) => {
            // Report `\u12` or `\u12zz` as written: "\u" plus the hex digits present.
            // After a high surrogate the next escape may be anything (`\ߚ`), so the
            // length is counted in chars, never assumed.
            let len = match input.strip_prefix("\\u") {
                Some(hex) => {
                    2 + hex
                        .chars()
                        .take(4)
                        .take_while(char::is_ascii_hexdigit)
                        .count()
                }
                None => input.chars().take(2).map(char::len_utf8).sum(),
            };
            fail(
                input,
                Problem::InvalidEscape {
                    escape: &input[..len],
                },
            )
        }
    }
}

/// `number = [ minus ] int [ frac ] [ exp ]` (RFC 7159 §6), with
/// `int = zero / ( digit1-9 *DIGIT )`, `frac = decimal-point 1*DIGIT`,
/// `exp = e [ minus / plus ] 1*DIGIT`.
fn json_number(input: &str) -> PResult<'_, serde_json::Number> {
    let digits0 = take_while(|c: char| c.is_ascii_digit());
    let int = alt((tag("0"), recognize((one_of("123456789"), digits0))));
    let frac = (char('.'), digit1);
    let exp = (one_of("eE"), opt(one_of("+-")), digit1);
    let number: PResult<'_, &str> =
        recognize((opt(char('-')), int, opt(frac), opt(exp))).parse(input);
    let Ok((rest, text)) = number else {
        return fail(input, Problem::InvalidNumber);
    };
    // `01`, `1.`, `1e`, `1x`, `1+2`: JSON has no such numbers, and `1and` lacks the SP.
    if rest.starts_with(|c: char| is_name_char(c) || c == '.' || c == '+') {
        return fail(input, Problem::InvalidNumber);
    }
    match json_number_value(text) {
        Some(n) => Ok((rest, n)),
        None => fail(input, Problem::NumberOutOfRange { text }),
    }
}

/// The value of a JSON number's text: integers that fit `u64`/`i64` stay exact, the
/// rest is the nearest `f64` (`None` past ±1.8e308). std's float parser is correctly
/// rounded; serde_json's default one is not (it read `-8.112180120974837e-75` as
/// `…838e-75`), which broke `parse(display(ast)) == ast` in the last digit.
fn json_number_value(text: &str) -> Option<serde_json::Number> {
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(n) = text.parse::<u64>() {
            return Some(n.into());
        }
        if let Ok(n) = text.parse::<i64>() {
            return Some(n.into());
        }
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
}

/// An attrPath as slices of the input; allocation waits until the parse commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttrRef<'a> {
    /// The whole path as written, for messages.
    pub(crate) text: &'a str,
    pub(crate) urn: Option<&'a str>,
    pub(crate) name: &'a str,
    pub(crate) sub_attr: Option<&'a str>,
}

impl AttrRef<'_> {
    pub(crate) fn into_attr_path(self) -> AttrPath {
        AttrPath {
            urn: self.urn.map(str::to_owned),
            name: self.name.to_owned(),
            sub_attr: self.sub_attr.map(str::to_owned),
        }
    }
}

/// `attrPath  = [URI ":"] ATTRNAME *1subAttr`
///
/// An attrPath is one run of [`is_path_char`]s. ATTRNAME and subAttr contain no `:`,
/// so the URI is everything before the last `:` of the run; that URI may itself hold
/// dots (`…:2.0:User`), which is why the run is split at the colon first.
pub(crate) fn attr_path(input: &str) -> PResult<'_, AttrRef<'_>> {
    let token: PResult<'_, &str> = take_while1(is_path_char).parse(input);
    let Ok((rest, text)) = token else {
        return fail(input, Problem::ExpectedAttrPath);
    };
    let (urn, local) = match text.rfind(':') {
        Some(colon) => (Some(uri(&text[..colon])?), &text[colon + 1..]),
        None => (None, text),
    };
    let Ok((after_name, name)) = attr_name(local) else {
        let problem = if local.starts_with('$') {
            Problem::InvalidNameChar
        } else {
            Problem::ExpectedAttrPath
        };
        return fail(local, problem);
    };
    let (after_sub, sub_attr) = opt(sub_attr).parse(after_name)?;
    match after_sub.chars().next() {
        None => Ok((
            rest,
            AttrRef {
                text,
                urn,
                name,
                sub_attr,
            },
        )),
        Some('.') => fail(after_sub, Problem::TooManySubAttrs { path: text }),
        Some(_) => fail(after_sub, Problem::InvalidNameChar),
    }
}

/// `URI` (RFC 3986 §3), here a schema URI such as
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`: checked as
/// `scheme ":" *( nameChar / "." / ":" )` with
/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`. RFC 3986 allows more
/// characters (`$`, `/`, `%`…), but no schema URN uses them, and keeping them out
/// keeps `$` for `$ref` alone.
fn uri(text: &str) -> Result<&str, nom::Err<Fail<'_>>> {
    let scheme = (
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')),
    );
    let rest = take_while(|c: char| is_name_char(c) || matches!(c, '.' | ':'));
    let parsed: PResult<'_, _> = (scheme, char(':'), rest).parse(text);
    match parsed {
        Ok(("", _)) => Ok(text),
        _ => Err(failure(text, Problem::BadUri { uri: text })),
    }
}

/// `ATTRNAME  = ALPHA *(nameChar)`
///
/// Plus `$ref`, the one attribute name RFC 7643 defines outside this rule (the
/// `members.$ref` of §4.2, the `manager.$ref` of §4.3), which clients filter and patch.
pub(crate) fn attr_name(input: &str) -> PResult<'_, &str> {
    let dollar_ref: PResult<'_, &str> = tag_no_case("$ref").parse(input);
    if let Ok((rest, name)) = dollar_ref {
        if !rest.starts_with(is_name_char) {
            return Ok((rest, name));
        }
    }
    recognize((
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(is_name_char),
    ))
    .parse(input)
}

/// `subAttr   = "." ATTRNAME`
///
/// Backtracks (`Err::Error`) without a `.`; fails for a `.` without a name.
pub(crate) fn sub_attr(input: &str) -> PResult<'_, &str> {
    let (after_dot, _) = char('.').parse(input)?;
    match attr_name(after_dot) {
        Ok(done) => Ok(done),
        Err(_) => fail(after_dot, Problem::ExpectedSubAttr),
    }
}

/// Runs `parser` over the whole of `input` (surrounding whitespace allowed) and turns
/// leftovers and failures into a [`ParseError`].
pub(crate) fn parse_complete<'a, T>(
    input: &'a str,
    grammar: Grammar,
    parser: impl FnOnce(&'a str) -> PResult<'a, T>,
) -> Result<T, ParseError> {
    let start = ws0(input);
    if start.is_empty() {
        return Err(ParseError::new(
            grammar,
            input,
            input.len(),
            ErrorKind::Empty,
        ));
    }
    let parsed = parser(start).and_then(|(before_ws, value)| {
        let rest = ws0(before_ws);
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(nom::Err::Failure(leftover(input, before_ws, rest, grammar)))
        }
    });
    parsed.map_err(|e| match e {
        nom::Err::Error(f) | nom::Err::Failure(f) => to_parse_error(input, grammar, f),
        // Only streaming parsers ask for more input; every parser here is complete.
        nom::Err::Incomplete(_) => ParseError::new(
            grammar,
            input,
            input.len(),
            ErrorKind::Unexpected {
                found: String::new(),
                expected: format!("a complete {}", grammar.noun()),
            },
        ),
    })
}

/// The error for input left after a complete parse (`rest`, after the whitespace that
/// ends `before_ws`).
fn leftover<'a>(input: &'a str, before_ws: &'a str, rest: &'a str, grammar: Grammar) -> Fail<'a> {
    let offset = offset_in(input, rest);
    let problem = match rest.as_bytes().first() {
        Some(b')' | b']') => Problem::UnbalancedClose,
        Some(b'.') if grammar == Grammar::Filter && input[..offset].ends_with(']') => {
            Problem::SubAttrAfterValuePath
        }
        _ => unexpected(
            before_ws,
            rest,
            match grammar {
                Grammar::Filter => "`and`, `or` or the end of the filter",
                Grammar::Path => {
                    "the end of the path (one attribute, with an optional [filter] \
                     and .subAttribute)"
                }
                Grammar::AttrPath => "the end of the attribute path",
            },
        ),
    };
    Fail { at: rest, problem }
}

/// The problem with `rest` (`before_ws` minus leading whitespace), found where
/// `expected` was due: `and`/`or` glued to the previous token (`(a pr)and(b pr)`,
/// `"x"or`) lacks its SP; anything else is unexpected.
fn unexpected<'a>(before_ws: &'a str, rest: &'a str, expected: &'static str) -> Problem<'a> {
    let glued = before_ws.len() == rest.len();
    let word: PResult<'_, &str> = take_while1(is_name_char).parse(rest);
    match word {
        Ok((_, word))
            if glued && (word.eq_ignore_ascii_case("and") || word.eq_ignore_ascii_case("or")) =>
        {
            Problem::ExpectedSpaceBefore { word }
        }
        _ => Problem::Unexpected { expected },
    }
}

/// Byte offset of `at`, a subslice of `input`.
fn offset_in(input: &str, at: &str) -> usize {
    (at.as_ptr() as usize)
        .saturating_sub(input.as_ptr() as usize)
        .min(input.len())
}

/// Text quoted in messages is cut to this many characters, so an error about a
/// megabyte-long token stays one line.
const CLIP: usize = 40;

fn clip(s: &str) -> String {
    match s.char_indices().nth(CLIP) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// The token at `at`, for "found `…`": a name, a run of operator-like symbols, a quoted
/// word up to the next space, or one character.
fn snippet(at: &str) -> String {
    let Some(first) = at.chars().next() else {
        return String::new();
    };
    let end = if is_path_char(first) {
        at.find(|c: char| !is_path_char(c))
    } else if matches!(first, '=' | '!' | '<' | '>') {
        at.find(|c: char| !matches!(c, '=' | '!' | '<' | '>'))
    } else if matches!(first, '"' | '\'') {
        at.find(char::is_whitespace)
    } else {
        Some(first.len_utf8())
    };
    clip(&at[..end.unwrap_or(at.len())])
}

fn to_parse_error(input: &str, grammar: Grammar, fail: Fail<'_>) -> ParseError {
    let at = fail.at;
    let column_of = |s: &str| line_column(input, offset_in(input, s)).1;
    let kind = match fail.problem {
        Problem::Syntax => ErrorKind::Unexpected {
            found: snippet(at),
            expected: format!("a valid {}", grammar.noun()),
        },
        Problem::ExpectedAttrPath => ErrorKind::ExpectedAttrPath { found: snippet(at) },
        Problem::ExpectedSubAttr => ErrorKind::ExpectedSubAttr { found: snippet(at) },
        Problem::InvalidNameChar => ErrorKind::InvalidNameChar {
            found: at.chars().next().unwrap_or('$'),
        },
        Problem::TooManySubAttrs { path } => ErrorKind::TooManySubAttrs { path: clip(path) },
        Problem::BadUri { uri } => ErrorKind::BadUri { uri: clip(uri) },
        Problem::ExpectedCompareOp { attr } => ErrorKind::ExpectedCompareOp {
            attr: clip(attr),
            found: snippet(at),
        },
        Problem::ExpectedSpace { after } => ErrorKind::ExpectedSpace { after: clip(after) },
        Problem::ExpectedSpaceBefore { word } => ErrorKind::ExpectedSpaceBefore {
            word: word.to_owned(),
        },
        Problem::ExpectedValue { op } => ErrorKind::ExpectedValue {
            op: clip(op),
            found: snippet(at),
        },
        Problem::UnterminatedString => ErrorKind::UnterminatedString,
        Problem::InvalidEscape { escape } => ErrorKind::InvalidEscape {
            found: escape.to_owned(),
        },
        Problem::ControlChar => ErrorKind::ControlChar {
            codepoint: at.chars().next().map_or(0, u32::from),
        },
        Problem::LoneSurrogate { escape } => ErrorKind::LoneSurrogate {
            found: escape.to_owned(),
        },
        Problem::InvalidNumber => {
            let end = at
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-')))
                .unwrap_or(at.len());
            ErrorKind::InvalidNumber {
                found: clip(&at[..end]),
            }
        }
        Problem::NumberOutOfRange { text } => ErrorKind::NumberOutOfRange { found: clip(text) },
        Problem::ExpectedFilter { after } => ErrorKind::ExpectedFilter { after: clip(after) },
        Problem::UnclosedParen { open } => ErrorKind::UnclosedParen {
            open_column: column_of(open),
        },
        Problem::UnclosedBracket { open } => ErrorKind::UnclosedBracket {
            open_column: column_of(open),
        },
        Problem::UnbalancedClose => ErrorKind::UnbalancedClose {
            found: at.chars().next().unwrap_or(')'),
        },
        Problem::NestedValuePath { attr } => ErrorKind::NestedValuePath { attr: clip(attr) },
        Problem::SpaceBeforeBracket { attr } => ErrorKind::SpaceBeforeBracket { attr: clip(attr) },
        Problem::SubAttrAfterValuePath => ErrorKind::SubAttrAfterValuePath,
        Problem::Unexpected { expected } => ErrorKind::Unexpected {
            found: snippet(at),
            expected: expected.to_owned(),
        },
        Problem::TooDeep => ErrorKind::TooDeep { limit: MAX_DEPTH },
    };
    ParseError::new(grammar, input, offset_in(input, at), kind)
}
