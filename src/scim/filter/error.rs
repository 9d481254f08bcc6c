//! Syntax errors for filters and PATCH paths: where (byte offset, line, column), what,
//! and a hint that suggests the fix, plus [`ParseError::render`] for a caret display.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use crate::scim::error::ScimError;

/// Which language the text was parsed as; it decides the wording and the `scimType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Grammar {
    /// A `filter` (RFC 7644 §3.4.2.2).
    Filter,
    /// A PATCH operation's `path` (RFC 7644 §3.5.2).
    Path,
    /// A lone `attrPath` (`attributes`, `sortBy`, …).
    AttrPath,
}

impl Grammar {
    /// The noun for messages: "filter", "path", "attribute path".
    pub fn noun(self) -> &'static str {
        match self {
            Grammar::Filter => "filter",
            Grammar::Path => "path",
            Grammar::AttrPath => "attribute path",
        }
    }

    /// RFC 7644 §3.12's `scimType` for a syntax error in this language.
    pub fn scim_type(self) -> &'static str {
        match self {
            Grammar::Filter => "invalidFilter",
            Grammar::Path | Grammar::AttrPath => "invalidPath",
        }
    }
}

/// What went wrong. Quoted input (`found`, `attr`, …) is cut to 40 characters, so an
/// error about a megabyte-long token stays small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "camelCase")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Nothing but whitespace.
    Empty,
    /// Where an attribute name must start.
    ExpectedAttrPath {
        found: String,
    },
    /// A `.` not followed by a sub-attribute name.
    ExpectedSubAttr {
        found: String,
    },
    /// A character that may not appear in an attribute name (`$` outside `$ref`).
    InvalidNameChar {
        found: char,
    },
    /// `a.b.c`: attrPath allows one sub-attribute.
    TooManySubAttrs {
        path: String,
    },
    /// The part before the last `:` is not a URI (no `scheme:`).
    BadUri {
        uri: String,
    },
    /// After an attribute path.
    ExpectedCompareOp {
        attr: String,
        found: String,
    },
    /// The RFC's `SP` is missing after a keyword.
    ExpectedSpace {
        after: String,
    },
    /// The RFC's `SP` is missing before `and` / `or`: `(a pr)and(b pr)`.
    ExpectedSpaceBefore {
        word: String,
    },
    /// After a comparison operator.
    ExpectedValue {
        op: String,
        found: String,
    },
    UnterminatedString,
    InvalidEscape {
        found: String,
    },
    /// A raw control character (U+0000–U+001F) inside a string.
    ControlChar {
        codepoint: u32,
    },
    /// A `\uD800`–`\uDFFF` escape without its other half.
    LoneSurrogate {
        found: String,
    },
    InvalidNumber {
        found: String,
    },
    NumberOutOfRange {
        found: String,
    },
    /// After `and`, `or`, `(` or `[`.
    ExpectedFilter {
        after: String,
    },
    UnclosedParen {
        open_column: usize,
    },
    UnclosedBracket {
        open_column: usize,
    },
    /// A `)` or `]` that nothing opened.
    UnbalancedClose {
        found: char,
    },
    /// `emails[addresses[…]]`.
    NestedValuePath {
        attr: String,
    },
    /// `emails [type eq "work"]`.
    SpaceBeforeBracket {
        attr: String,
    },
    /// `emails[type eq "work"].value` in a filter (only PATCH paths take it).
    SubAttrAfterValuePath,
    /// Input left over where `expected` was due.
    Unexpected {
        found: String,
        expected: String,
    },
    /// More than [`super::MAX_DEPTH`] nested parentheses and brackets.
    TooDeep {
        limit: usize,
    },
}

const VALUES: &str = r#"values are JSON: "a string", 42, true, false or null"#;

impl ErrorKind {
    /// The one-line description, without position.
    pub fn message(&self, grammar: Grammar) -> String {
        match self {
            ErrorKind::Empty => format!("the {} is empty", grammar.noun()),
            ErrorKind::ExpectedAttrPath { found } => {
                format!("expected an attribute name, found {}", quote(found))
            }
            ErrorKind::ExpectedSubAttr { found } => {
                format!(
                    "expected a sub-attribute name after `.`, found {}",
                    quote(found)
                )
            }
            ErrorKind::InvalidNameChar { found } => {
                format!("`{found}` is not allowed in an attribute name")
            }
            ErrorKind::TooManySubAttrs { path } => {
                format!("`{path}` has more than one sub-attribute")
            }
            ErrorKind::BadUri { uri } => format!("`{uri}` is not a schema URI"),
            ErrorKind::ExpectedCompareOp { attr, .. } => {
                format!("expected a comparison operator after `{attr}`")
            }
            ErrorKind::ExpectedSpace { after } => format!("expected a space after `{after}`"),
            ErrorKind::ExpectedSpaceBefore { word } => format!("expected a space before `{word}`"),
            ErrorKind::ExpectedValue { op, .. } => format!("expected a value after `{op}`"),
            ErrorKind::UnterminatedString => "unterminated string; missing closing `\"`".into(),
            ErrorKind::InvalidEscape { found } => format!("invalid escape `{found}` in a string"),
            ErrorKind::ControlChar { codepoint } => {
                format!("raw control character U+{codepoint:04X} in a string")
            }
            ErrorKind::LoneSurrogate { found } => {
                format!("`{found}` is half of a UTF-16 surrogate pair")
            }
            ErrorKind::InvalidNumber { found } => format!("invalid number `{found}`"),
            ErrorKind::NumberOutOfRange { found } => format!("number `{found}` is out of range"),
            ErrorKind::ExpectedFilter { after } => format!("expected a filter after `{after}`"),
            ErrorKind::UnclosedParen { .. } => "unclosed parenthesis; missing `)`".into(),
            ErrorKind::UnclosedBracket { .. } => "unclosed value filter; missing `]`".into(),
            ErrorKind::UnbalancedClose { found } => format!("unbalanced `{found}`"),
            ErrorKind::NestedValuePath { attr } => {
                format!("value filter `{attr}[…]` inside another value filter")
            }
            ErrorKind::SpaceBeforeBracket { attr } => {
                format!("unexpected space between `{attr}` and `[`")
            }
            ErrorKind::SubAttrAfterValuePath => {
                "a sub-attribute after `]` is only allowed in a PATCH path".into()
            }
            ErrorKind::Unexpected { found, .. } => format!("unexpected {}", quote(found)),
            ErrorKind::TooDeep { limit } => {
                format!("more than {limit} nested parentheses and brackets")
            }
        }
    }

    /// What to do about it, if there is something useful to say.
    pub fn hint(&self, grammar: Grammar) -> Option<String> {
        let hint = match self {
            ErrorKind::Empty => match grammar {
                Grammar::Filter => r#"e.g. userName eq "bjensen""#.into(),
                Grammar::Path => r#"e.g. members, name.givenName or emails[type eq "work"].value"#.into(),
                Grammar::AttrPath => "e.g. userName or name.givenName".into(),
            },
            ErrorKind::ExpectedAttrPath { found } if found.starts_with('"') => {
                r#"a filter starts with the attribute: userName eq "bjensen""#.into()
            }
            ErrorKind::ExpectedAttrPath { .. } => {
                "attribute names start with a letter: userName, name.givenName, \
                 urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"
                    .into()
            }
            ErrorKind::ExpectedSubAttr { .. } => "e.g. name.givenName".into(),
            ErrorKind::InvalidNameChar { .. } => {
                "names are a letter then letters, digits, `-` and `_` (or `$ref`)".into()
            }
            ErrorKind::TooManySubAttrs { .. } => {
                "an attribute path has at most one `.subAttr` (RFC 7644 §3.4.2.2); put a \
                 schema URN before the name with `:`"
                    .into()
            }
            ErrorKind::BadUri { .. } => {
                "prefix the name with a full schema URN, e.g. \
                 urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"
                    .into()
            }
            // Suggest `eq` alone: it is the comparison every SCIM service takes, and the
            // only one AWS IAM Identity Center does (Limitations › Filter limitations).
            ErrorKind::ExpectedCompareOp { found, .. } => match found.as_str() {
                "=" | "==" => r#"SCIM spells `=` as `eq`: userName eq "bjensen""#.into(),
                _ => r#"compare with `eq`: userName eq "bjensen""#.into(),
            },
            ErrorKind::ExpectedSpace { .. } | ErrorKind::ExpectedSpaceBefore { .. } => {
                "the RFC puts one space between attribute, operator and value, and around \
                 `and`/`or`"
                    .into()
            }
            ErrorKind::ExpectedValue { found, .. } => value_hint(found),
            ErrorKind::UnterminatedString => {
                r#"a quote inside a string is written \""#.into()
            }
            ErrorKind::InvalidEscape { .. } => {
                r#"JSON escapes are \" \\ \/ \b \f \n \r \t and \uXXXX"#.into()
            }
            ErrorKind::ControlChar { codepoint } => {
                format!(r"write it escaped, e.g. \n, \t or \u{codepoint:04x}")
            }
            ErrorKind::LoneSurrogate { .. } => {
                r"a high surrogate \uD800-\uDBFF must be followed by a low one \uDC00-\uDFFF"
                    .into()
            }
            ErrorKind::InvalidNumber { .. } => {
                "JSON numbers look like 42, -7, 3.14 or 1e3 (no leading zero, no `+`, \
                 digits after `.`)"
                    .into()
            }
            ErrorKind::NumberOutOfRange { .. } => "numbers must fit a 64-bit float".into(),
            ErrorKind::ExpectedFilter { after } => match after.as_str() {
                "(" | "[" => format!("`{after}` must hold an expression such as `title pr`"),
                _ => format!("`{after}` joins two expressions: `title pr {after} active eq true`"),
            },
            ErrorKind::UnclosedParen { open_column } => {
                format!("the `(` at column {open_column} is never closed")
            }
            ErrorKind::UnclosedBracket { open_column } => {
                format!("the `[` at column {open_column} is never closed")
            }
            ErrorKind::UnbalancedClose { found } => {
                let open = if *found == ')' { '(' } else { '[' };
                format!("no `{open}` opens it")
            }
            ErrorKind::NestedValuePath { .. } => {
                "the filter in brackets tests sub-attributes of its parent (RFC 7644 \
                 §3.4.2.2), and sub-attributes are never multi-valued complex ones (RFC 7643 \
                 §2.3.8)"
                    .into()
            }
            ErrorKind::SpaceBeforeBracket { attr } => format!("write `{attr}[…]`"),
            ErrorKind::SubAttrAfterValuePath => {
                r#"move the test into the brackets: emails[type eq "work" and value co "@example.com"]"#
                    .into()
            }
            ErrorKind::Unexpected { expected, .. } => format!("expected {expected}"),
            ErrorKind::TooDeep { .. } => {
                "deeper input is refused so that hostile filters cannot exhaust the stack; \
                 drop redundant parentheses"
                    .into()
            }
        };
        Some(hint)
    }
}

fn quote(found: &str) -> String {
    if found.is_empty() {
        "the end of the input".into()
    } else {
        format!("`{found}`")
    }
}

fn value_hint(found: &str) -> String {
    if found.starts_with('\'') {
        return r#"strings take double quotes: "bjensen""#.into();
    }
    if ["true", "false", "null"]
        .iter()
        .any(|lit| lit.eq_ignore_ascii_case(found))
    {
        return format!(
            "JSON literals are lower-case: {}",
            found.to_ascii_lowercase()
        );
    }
    if found.starts_with('+') {
        return "JSON numbers have no leading `+`".into();
    }
    if found.starts_with(|c: char| c.is_ascii_alphabetic()) {
        let mut word = String::new();
        super::write_json_string(&mut word, found).ok();
        return format!("did you mean {word}? {VALUES}");
    }
    VALUES.into()
}

/// A syntax error in a filter or PATCH path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParseError {
    pub grammar: Grammar,
    /// Byte offset of the offending character in the input.
    pub offset: usize,
    /// 1-based line (filters rarely have more than one).
    pub line: usize,
    /// 1-based column, in characters, within that line.
    pub column: usize,
    #[serde(flatten)]
    pub kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn new(grammar: Grammar, input: &str, offset: usize, kind: ErrorKind) -> Self {
        let (line, column) = line_column(input, offset);
        ParseError {
            grammar,
            offset,
            line,
            column,
            kind,
        }
    }

    /// The one-line description, without position.
    pub fn message(&self) -> String {
        self.kind.message(self.grammar)
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        self.kind.hint(self.grammar)
    }

    /// RFC 7644 §3.12's `scimType`: `invalidFilter` or `invalidPath`.
    pub fn scim_type(&self) -> &'static str {
        self.grammar.scim_type()
    }

    /// The `400` SCIM error body to answer with.
    pub fn to_scim_error(&self) -> ScimError {
        ScimError::new(400, format!("invalid {}: {self}", self.grammar.noun()))
            .with_scim_type(self.scim_type())
    }

    /// A multi-line explanation for a person: the input line (cut to a window around
    /// the error if it is long), a caret under the offending column, and the message
    /// with its hint.
    ///
    /// ```text
    /// userName xx "jdoe"
    ///          ^
    /// expected a comparison operator after `userName` at column 10 (compare with `eq`: userName eq "bjensen")
    /// ```
    pub fn render(&self, input: &str) -> String {
        let offset = floor_char_boundary(input, self.offset);
        let line_start = input[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = input[offset..]
            .find('\n')
            .map_or(input.len(), |i| offset + i);
        let line: Vec<char> = input[line_start..line_end].chars().collect();
        let caret = input[line_start..offset].chars().count();

        // Show at most 100 characters: past that the caret is off-screen on a terminal.
        const WIDTH: usize = 100;
        const BEFORE: usize = 60;
        let (from, to) = if line.len() <= WIDTH {
            (0, line.len())
        } else {
            let from = caret.saturating_sub(BEFORE).min(line.len() - WIDTH);
            (from, from + WIDTH)
        };
        let mut shown = String::new();
        if from > 0 {
            shown.push('…');
        }
        // Tabs and other control characters would shift the caret; show each as one
        // visible character so the columns line up.
        shown.extend(line[from..to].iter().map(|&c| match c {
            '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        }));
        if to < line.len() {
            shown.push('…');
        }
        let pad = caret - from + usize::from(from > 0);
        format!("{shown}\n{}^\n{self}", " ".repeat(pad))
    }
}

impl Display for ParseError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())?;
        if self.line > 1 {
            write!(f, " at line {}, column {}", self.line, self.column)?;
        } else {
            write!(f, " at column {}", self.column)?;
        }
        if let Some(hint) = self.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

/// 1-based line and character column of byte `offset`.
pub(crate) fn line_column(input: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(input, offset);
    let before = &input[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The largest char boundary `<= offset` (offsets always are boundaries when they come
/// from the parser; this keeps `render` total for hand-made errors).
fn floor_char_boundary(input: &str, offset: usize) -> usize {
    let mut offset = offset.min(input.len());
    while !input.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
