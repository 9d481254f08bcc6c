//! What `scimguard parse filter|path EXPR [--json]` prints: the CLI only writes the
//! text and exits 0 or 1.

use serde::Serialize;

use crate::scim::filter::{parse_filter, ParseError};
use crate::scim::path::parse_path;

/// Explains a filter: its canonical form (or, with `json`, its syntax tree) when it
/// parses, else the input with a caret under the error and the message. The flag is
/// whether it parsed (exit 0) or not (exit 1).
pub fn explain_filter(expr: &str, json: bool) -> (String, bool) {
    explain(expr, json, parse_filter(expr))
}

/// Explains a PATCH path, as [`explain_filter`] does a filter.
pub fn explain_path(expr: &str, json: bool) -> (String, bool) {
    explain(expr, json, parse_path(expr))
}

fn explain<T: Serialize + std::fmt::Display>(
    expr: &str,
    json: bool,
    parsed: Result<T, ParseError>,
) -> (String, bool) {
    match (parsed, json) {
        (Ok(tree), false) => (tree.to_string(), true),
        (Ok(tree), true) => (to_json(&tree), true),
        (Err(e), false) => (e.render(expr), false),
        (Err(e), true) => (to_json(&JsonError::new(&e)), false),
    }
}

/// `--json` output for an error: the position and kind, plus the readable message.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonError<'a> {
    error: &'a ParseError,
    message: String,
    hint: Option<String>,
    scim_type: &'static str,
}

impl<'a> JsonError<'a> {
    fn new(error: &'a ParseError) -> Self {
        JsonError {
            error,
            message: error.message(),
            hint: error.hint(),
            scim_type: error.scim_type(),
        }
    }
}

fn to_json(value: &impl Serialize) -> String {
    // The trees and errors hold only strings, numbers and enums: this cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_explanations() {
        assert_eq!(
            explain_filter(r#"userName EQ "bjensen""#, false),
            (r#"userName eq "bjensen""#.to_owned(), true)
        );
        let (text, ok) = explain_filter("title pr", true);
        assert!(ok);
        let tree: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            tree,
            serde_json::json!({"present": {"attr": {"name": "title"}}})
        );
        let (text, ok) = explain_filter(r#"userName xx "jdoe""#, false);
        assert!(!ok);
        assert_eq!(
            text,
            "userName xx \"jdoe\"\n         ^\nexpected a comparison operator after \
             `userName` at column 10 (compare with `eq`: userName eq \"bjensen\")"
        );
        let (text, ok) = explain_filter("a pr)", true);
        assert!(!ok);
        let err: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["error"]["code"], "unbalancedClose");
        assert_eq!(err["error"]["column"], 5);
        assert_eq!(err["scimType"], "invalidFilter");
        assert_eq!(err["message"], "unbalanced `)`");
    }

    #[test]
    fn path_explanations() {
        assert_eq!(
            explain_path(r#"emails[TYPE Eq "work"].value"#, false),
            (r#"emails[TYPE eq "work"].value"#.to_owned(), true)
        );
        let (text, ok) = explain_path("members[value eq \"x\"", false);
        assert!(!ok);
        assert!(
            text.contains("unclosed value filter; missing `]`"),
            "{text}"
        );
        let (text, ok) = explain_path("name.givenName", true);
        assert!(ok);
        let tree: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(tree["attr"]["subAttr"], "givenName");
    }
}
