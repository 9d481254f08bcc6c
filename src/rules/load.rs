//! Reading a rules file: TOML → validated [`Rule`]s, or a [`RulesError`] with the file,
//! the line and the fix.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::{Action, Check, Rule};
use crate::scim::operation::Operation;

/// A rules file that cannot be used. Start-up stops with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    pub origin: String,
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{line}: {}. Fix: {}",
                self.origin, self.message, self.fix
            ),
            None => write!(f, "{}: {}. Fix: {}", self.origin, self.message, self.fix),
        }
    }
}

impl std::error::Error for RulesError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    hint: Vec<super::Hint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    operations: Spanned<Vec<String>>,
    check: Check,
    action: Spanned<String>,
    message: String,
    source: String,
    #[serde(default)]
    aws_detail: Option<String>,
    #[serde(default)]
    aws_accepts: bool,
}

/// Byte offset → 1-based line number.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Every operation name, for the error that lists them.
fn operation_names() -> String {
    Operation::ALL
        .iter()
        .map(|op| op.name())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn parse(text: &str, origin: &str) -> Result<(Vec<Rule>, Vec<super::Hint>), RulesError> {
    let error = |offset: Option<usize>, message: String, fix: &str| RulesError {
        origin: origin.to_owned(),
        line: offset.map(|o| line_of(text, o)),
        message,
        fix: fix.to_owned(),
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        error(
            e.span().map(|s| s.start),
            e.message().trim().to_owned(),
            "see rules/README.md for the rule schema and every check kind",
        )
    })?;
    if raw.rule.is_empty() {
        return Err(error(
            None,
            "the file has no [[rule]]".into(),
            "add rules, or leave out --rules to use the embedded ones",
        ));
    }

    let raw_hints = raw.hint;
    let mut seen = HashSet::new();
    let mut rules = Vec::with_capacity(raw.rule.len());
    for spanned in raw.rule {
        let at = spanned.span().start;
        let raw = spanned.into_inner();
        let id = raw.id.get_ref().clone();
        let id_at = Some(raw.id.span().start);
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return Err(error(
                id_at,
                format!("rule id `{id}` is not a dotted lowercase name"),
                "use ids like `user.emails.single-value`",
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(error(
                id_at,
                format!("rule id `{id}` is used twice"),
                "give every rule its own id",
            ));
        }

        let ops_at = Some(raw.operations.span().start);
        let mut operations = Vec::new();
        for name in raw.operations.get_ref() {
            let op = Operation::from_name(name).ok_or_else(|| {
                error(
                    ops_at,
                    format!("rule `{id}`: unknown operation `{name}`"),
                    &format!("use one of {}", operation_names()),
                )
            })?;
            operations.push(op);
        }
        if operations.is_empty() {
            return Err(error(
                ops_at,
                format!("rule `{id}` applies to no operation"),
                "list at least one operation",
            ));
        }

        let action_at = Some(raw.action.span().start);
        let action: Action = raw.action.get_ref().parse().map_err(|e: String| {
            error(
                action_at,
                format!("rule `{id}`: {e}"),
                "set action to reject, rewrite, warn or off",
            )
        })?;
        if !raw.check.supports(action) {
            return Err(error(
                action_at,
                format!(
                    "rule `{id}`: check `{}` has no safe fix, so it cannot rewrite",
                    raw.check.kind()
                ),
                &format!("use {}", raw.check.supported_actions()),
            ));
        }
        if let Check::PatchValues { checks } = &raw.check {
            if let Some(bad) = checks.iter().find(|c| !c.applies_to_values()) {
                return Err(error(
                    Some(at),
                    format!("rule `{id}`: check `{}` cannot run inside patch-values", bad.kind()),
                    "patch-values takes body checks only: drop-attributes, drop-sub-attributes, single-value, primary-email, empty-string, manager-object, refused-characters, attribute-types, max-length, email-address",
                ));
            }
        }
        if let Some(name) = unknown_placeholder(&raw.message) {
            return Err(error(
                Some(at),
                format!("rule `{id}`: the message names the unknown placeholder {{{name}}}"),
                &format!(
                    "use one of {}, or write a literal brace as {{{{ or }}}}",
                    PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if raw.message.trim().is_empty() || raw.source.trim().is_empty() {
            return Err(error(Some(at), format!("rule `{id}` needs a message and a source"), "cite the guide section (\"CreateUser › Constraints\") or `observed: <AWS's message>`"));
        }
        rules.push(Rule {
            id,
            operations,
            check: raw.check,
            action,
            message: raw.message,
            source: raw.source,
            aws_detail: raw.aws_detail,
            aws_accepts: raw.aws_accepts,
        });
    }
    Ok((rules, raw_hints))
}

impl Check {
    /// Whether the check reads a resource body, so it can also run on PATCH values.
    pub(crate) fn applies_to_values(&self) -> bool {
        matches!(
            self,
            Check::DropAttributes { .. }
                | Check::DropSubAttributes { .. }
                | Check::SingleValue { .. }
                | Check::PrimaryEmail
                | Check::EmptyString
                | Check::ManagerObject
                | Check::RefusedCharacters { .. }
                | Check::AttributeTypes { .. }
                | Check::MaxLength { .. }
                | Check::EmailAddress { .. }
        )
    }
}

/// Every placeholder a check fills in some finding (`{location}` in all of them).
const PLACEHOLDERS: [&str; 31] = [
    "location",
    "attribute",
    "attributes",
    "batches",
    "character",
    "column",
    "count",
    "detail",
    "dropped",
    "effect",
    "filter",
    "fixed",
    "found",
    "hint",
    "index",
    "kept",
    "length",
    "max",
    "member",
    "members",
    "op",
    "operation",
    "operators",
    "parameter",
    "path",
    "position",
    "primary",
    "problem",
    "requests",
    "sent",
    "supported",
];

/// The first `{name}` of a message template that no check fills (`urn`, `value` and
/// `wanted` as well), as [`super::render_template`] reads placeholders.
fn unknown_placeholder(template: &str) -> Option<String> {
    let known =
        |name: &str| PLACEHOLDERS.contains(&name) || ["urn", "value", "wanted"].contains(&name);
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            rest = after;
            continue;
        }
        let close = tail[1..].find('}')?;
        let name = &tail[1..1 + close];
        if !known(name) {
            return Some(name.to_owned());
        }
        rest = &tail[close + 2..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::unknown_placeholder;

    #[test]
    fn finds_an_unknown_placeholder_and_skips_escaped_braces() {
        assert_eq!(unknown_placeholder("{attribute} at {location}"), None);
        assert_eq!(
            unknown_placeholder("{{\"value\": \"{member}\"}} {atribute}"),
            Some("atribute".to_owned())
        );
        assert_eq!(unknown_placeholder("open { only"), None);
    }
}
