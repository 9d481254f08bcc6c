//! SCIM filters (RFC 7644 §3.4.2.2): the syntax tree, its canonical text form, and
//! [`parse_filter`].
//!
//! The tree keeps what a client sent (attribute names keep their case, numbers their
//! JSON value) and drops what carries no meaning (operator case, redundant parentheses,
//! extra whitespace), so `parse_filter(&f.to_string()) == Ok(f)` for every parsed `f`.
//!
//! `and` and `or` are n-ary and flattened: `a and (b and c)` is one `And` of three.
//! Besides making the canonical form unique, this keeps the tree shallow: a 10,000-term
//! `or` chain is depth 2, not depth 10,000, so the derived recursive `Drop`, `PartialEq`,
//! `Display` and `Serialize` can never exhaust the stack on a parsed filter (nesting
//! itself is capped at [`MAX_DEPTH`] while parsing).

mod error;
pub(crate) mod grammar;

#[cfg(test)]
mod differential;
#[cfg(test)]
pub(crate) mod tests;

use std::fmt::{self, Display, Formatter, Write as _};

use serde::Serialize;

pub use error::{ErrorKind, Grammar, ParseError};
pub use grammar::MAX_DEPTH;

/// A parsed SCIM filter expression.
///
/// Invariants of a tree that [`parse_filter`] returns (and that [`Filter::and`] /
/// [`Filter::or`] keep): `And` and `Or` hold at least two operands, an `And` never
/// holds an `And` directly (nor an `Or` an `Or`), and the filter inside a `ValuePath`
/// contains no `ValuePath`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Filter {
    /// `attrPath SP compareOp SP compValue`, e.g. `userName eq "bjensen"`.
    Compare {
        attr: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `attrPath SP "pr"`, e.g. `title pr`.
    Present { attr: AttrPath },
    /// Every operand must match.
    And(Vec<Filter>),
    /// At least one operand must match.
    Or(Vec<Filter>),
    /// `not (FILTER)`.
    Not(Box<Filter>),
    /// `attrPath "[" valFilter "]"`, e.g. `emails[type eq "work" and primary eq true]`:
    /// matches when one value of the multi-valued `attr` matches `filter`, whose
    /// attribute names are sub-attributes of `attr`.
    #[serde(rename_all = "camelCase")]
    ValuePath { attr: AttrPath, filter: Box<Filter> },
}

impl Filter {
    /// `lhs and rhs`, flattening `And` operands as the parser does.
    pub fn and(lhs: Filter, rhs: Filter) -> Filter {
        Filter::And(join(lhs, rhs, Filter::is_and))
    }

    /// `lhs or rhs`, flattening `Or` operands as the parser does.
    pub fn or(lhs: Filter, rhs: Filter) -> Filter {
        Filter::Or(join(lhs, rhs, Filter::is_or))
    }

    /// `not (inner)`.
    pub fn negate(inner: Filter) -> Filter {
        Filter::Not(Box::new(inner))
    }

    /// `attr eq "value"` with a string value: the one shape AWS accepts.
    pub fn eq_str(attr: AttrPath, value: impl Into<String>) -> Filter {
        Filter::Compare {
            attr,
            op: CompareOp::Eq,
            value: CompValue::String(value.into()),
        }
    }

    fn is_and(&self) -> bool {
        matches!(self, Filter::And(_))
    }

    fn is_or(&self) -> bool {
        matches!(self, Filter::Or(_))
    }

    /// The logical operators the filter uses, each once, in text order: `and`, `or`,
    /// `not`, and `[ ] (value filter)` for a value path. AWS accepts `and` alone, so
    /// rules list the others back to the admin.
    pub fn logical_operators(&self) -> Vec<&'static str> {
        fn walk(f: &Filter, out: &mut Vec<&'static str>) {
            let mut add = |op: &'static str| {
                if !out.contains(&op) {
                    out.push(op);
                }
            };
            match f {
                Filter::And(items) => {
                    add("and");
                    items.iter().for_each(|i| walk(i, out));
                }
                Filter::Or(items) => {
                    add("or");
                    items.iter().for_each(|i| walk(i, out));
                }
                Filter::Not(inner) => {
                    add("not");
                    walk(inner, out);
                }
                Filter::ValuePath { filter, .. } => {
                    add("[ ] (value filter)");
                    walk(filter, out);
                }
                Filter::Compare { .. } | Filter::Present { .. } => {}
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// Every attribute expression (`Compare` and `Present`) in the tree, in text order,
    /// each with the value-path attribute it sits under (`emails` for the `type` in
    /// `emails[type eq "work"]`). Rules use it to list the attributes a filter touches.
    pub fn terms(&self) -> Vec<Term<'_>> {
        let mut out = Vec::new();
        collect_terms(self, None, &mut out);
        out
    }
}

/// One attribute expression of a filter, as [`Filter::terms`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term<'a> {
    /// The multi-valued attribute of the enclosing value path, if any.
    pub parent: Option<&'a AttrPath>,
    pub attr: &'a AttrPath,
    /// `None` for `pr`.
    pub op: Option<CompareOp>,
    /// `None` for `pr`.
    pub value: Option<&'a CompValue>,
    /// Whether an odd number of `not` encloses the term.
    pub negated: bool,
}

fn collect_terms<'a>(f: &'a Filter, parent: Option<&'a AttrPath>, out: &mut Vec<Term<'a>>) {
    collect_terms_in(f, parent, false, out);
}

fn collect_terms_in<'a>(
    f: &'a Filter,
    parent: Option<&'a AttrPath>,
    negated: bool,
    out: &mut Vec<Term<'a>>,
) {
    match f {
        Filter::Compare { attr, op, value } => out.push(Term {
            parent,
            attr,
            op: Some(*op),
            value: Some(value),
            negated,
        }),
        Filter::Present { attr } => out.push(Term {
            parent,
            attr,
            op: None,
            value: None,
            negated,
        }),
        Filter::And(items) | Filter::Or(items) => {
            for item in items {
                collect_terms_in(item, parent, negated, out);
            }
        }
        Filter::Not(inner) => collect_terms_in(inner, parent, !negated, out),
        Filter::ValuePath { attr, filter } => collect_terms_in(filter, Some(attr), negated, out),
    }
}

/// Concatenates two operands into one operand list, splicing in the operands of either
/// side that is already the same operator (`same`), so chains stay flat.
fn join(lhs: Filter, rhs: Filter, same: fn(&Filter) -> bool) -> Vec<Filter> {
    let mut items = Vec::with_capacity(2);
    push_flat(&mut items, lhs, same);
    push_flat(&mut items, rhs, same);
    items
}

/// Appends `f` to an `And`/`Or` operand list, splicing it in if it is the same operator.
pub(crate) fn push_flat(items: &mut Vec<Filter>, f: Filter, same: fn(&Filter) -> bool) {
    if same(&f) {
        if let Filter::And(inner) | Filter::Or(inner) = f {
            items.extend(inner);
        }
    } else {
        items.push(f);
    }
}

/// `attrPath = [URI ":"] ATTRNAME *1subAttr` (RFC 7644 §3.4.2.2).
///
/// Names keep the case they were sent in: SCIM attribute names are case-insensitive
/// (RFC 7643 §2.1), so compare them with [`AttrPath::eq_ignore_case`] or
/// [`AttrPath::is`], never with `==`, which is exact and exists for round-trip tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttrPath {
    /// Schema URI prefix, without the `:` that joins it to the name, e.g.
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urn: Option<String>,
    /// `ATTRNAME`, e.g. `userName`, `manager`.
    pub name: String,
    /// The `subAttr` name without its dot, e.g. `givenName` in `name.givenName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A bare attribute name.
    pub fn new(name: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            name: name.into(),
            sub_attr: None,
        }
    }

    /// `name.sub_attr`.
    pub fn with_sub_attr(name: impl Into<String>, sub_attr: impl Into<String>) -> Self {
        AttrPath {
            urn: None,
            name: name.into(),
            sub_attr: Some(sub_attr.into()),
        }
    }

    /// `urn:name`.
    pub fn with_urn(urn: impl Into<String>, name: impl Into<String>) -> Self {
        AttrPath {
            urn: Some(urn.into()),
            name: name.into(),
            sub_attr: None,
        }
    }

    /// Equality as SCIM means it: attribute names and schema URIs ignore ASCII case
    /// (RFC 7643 §2.1 for names; schema URNs are compared the same way by every
    /// server we know, AWS included).
    pub fn eq_ignore_case(&self, other: &AttrPath) -> bool {
        opt_eq_ignore_case(self.urn.as_deref(), other.urn.as_deref())
            && self.name.eq_ignore_ascii_case(&other.name)
            && opt_eq_ignore_case(self.sub_attr.as_deref(), other.sub_attr.as_deref())
    }

    /// Whether this is the top-level attribute `name` with no URN and no sub-attribute,
    /// ignoring case: `path.is("userName")`.
    pub fn is(&self, name: &str) -> bool {
        self.urn.is_none() && self.sub_attr.is_none() && self.name.eq_ignore_ascii_case(name)
    }

    /// Whether the URN prefix (if any) is `urn`, ignoring case.
    pub fn urn_is(&self, urn: &str) -> bool {
        self.urn
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(urn))
    }
}

fn opt_eq_ignore_case(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// `compareOp` (RFC 7644 §3.4.2.2, Table 3). Parsed case-insensitively, printed lower-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

impl CompareOp {
    /// All nine operators, in the RFC's order.
    pub const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Lt,
        CompareOp::Ge,
        CompareOp::Le,
    ];

    /// The canonical (lower-case) keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Lt => "lt",
            CompareOp::Ge => "ge",
            CompareOp::Le => "le",
        }
    }

    /// The operator spelled `word` in any case, if any.
    pub fn from_keyword(word: &str) -> Option<CompareOp> {
        CompareOp::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }
}

impl Display for CompareOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `compValue = false / null / true / number / string` with JSON's rules (RFC 7159).
///
/// Serializes as the JSON value itself, so `--json` trees read naturally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum CompValue {
    Null,
    Bool(bool),
    /// Kept as a JSON number: integers stay exact up to 64 bits, the rest is an `f64`
    /// (out-of-range numbers such as `1e400` are refused when parsing).
    Number(serde_json::Number),
    /// The unescaped string.
    String(String),
}

impl CompValue {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            CompValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a `serde_json::Value`, for comparing with resource attributes.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            CompValue::Null => serde_json::Value::Null,
            CompValue::Bool(b) => serde_json::Value::Bool(*b),
            CompValue::Number(n) => serde_json::Value::Number(n.clone()),
            CompValue::String(s) => serde_json::Value::String(s.clone()),
        }
    }
}

impl Display for CompValue {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(true) => f.write_str("true"),
            CompValue::Bool(false) => f.write_str("false"),
            CompValue::Number(n) => Display::fmt(n, f),
            CompValue::String(s) => write_json_string(f, s),
        }
    }
}

/// Writes `s` as a JSON string literal: `"` and `\` escaped, control characters as
/// `\n`-style or `\u00XX` escapes, everything else (non-ASCII included) as is.
pub(crate) fn write_json_string(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            c if c < ' ' => "",
            _ => continue,
        };
        f.write_str(&s[start..i])?;
        if escape.is_empty() {
            write!(f, "\\u{:04x}", u32::from(c))?;
        } else {
            f.write_str(escape)?;
        }
        // Every escaped character is ASCII, so the next run starts one byte later.
        start = i + 1;
    }
    f.write_str(&s[start..])?;
    f.write_char('"')
}

impl Display for AttrPath {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            f.write_str(urn)?;
            f.write_char(':')?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub_attr {
            f.write_char('.')?;
            f.write_str(sub)?;
        }
        Ok(())
    }
}

/// The canonical form: lower-case keywords, one space between tokens, strings
/// JSON-escaped, and parentheses only where `or` sits under `and` (the one place
/// precedence needs them) and after `not`, which the grammar requires.
impl Display for Filter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { attr, op, value } => write!(f, "{attr} {op} {value}"),
            Filter::Present { attr } => write!(f, "{attr} pr"),
            Filter::And(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    if item.is_or() {
                        write!(f, "({item})")?;
                    } else {
                        write!(f, "{item}")?;
                    }
                }
                Ok(())
            }
            Filter::Or(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

/// Parses a SCIM filter (RFC 7644 §3.4.2.2), e.g. `userName eq "bjensen"`.
///
/// `input` is the decoded filter text (after percent-decoding a query string; see
/// [`crate::scim::query::Query`]). Whitespace around the whole filter and just inside
/// parentheses and brackets is tolerated; between tokens, any run of spaces, tabs, CRs
/// and LFs counts as the RFC's single `SP`.
///
/// Errors carry the byte offset, line and column, and a hint; use
/// [`ParseError::render`] to show them to a person.
pub fn parse_filter(input: &str) -> Result<Filter, ParseError> {
    grammar::parse_complete(input, Grammar::Filter, |i| grammar::filter(i, 0))
}

impl std::str::FromStr for Filter {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_filter(s)
    }
}

impl std::str::FromStr for AttrPath {
    type Err = ParseError;

    /// Parses a lone `attrPath`, e.g. `name.givenName`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        grammar::parse_complete(s, Grammar::AttrPath, |i| {
            grammar::attr_path(i).map(|(rest, a)| (rest, a.into_attr_path()))
        })
    }
}
