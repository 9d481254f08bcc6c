//! PATCH paths (RFC 7644 §3.5.2): `members`, `name.givenName`,
//! `members[value eq "2819c223"]`, `emails[type eq "work"].value`,
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
//!
//! Built from the filter grammar's own productions (attrPath, `"[" valFilter "]"`,
//! subAttr), so a path's filter and a `?filter=` are parsed by the same code.

use std::fmt::{self, Display, Formatter};

use nom::combinator::opt;
use nom::Parser;
use serde::Serialize;

use crate::scim::filter::grammar::{self, PResult};
use crate::scim::filter::{AttrPath, Filter, Grammar, ParseError};

/// A parsed PATCH `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PatchPath {
    /// `attrPath`: `members`, `name.givenName`, `urn:…:User:manager.value`.
    Attr(AttrPath),
    /// `valuePath [subAttr]`: the values of multi-valued `attr` that match `filter`
    /// (which contains no value path), or their `sub_attr` if given.
    #[serde(rename_all = "camelCase")]
    ValuePath {
        attr: AttrPath,
        filter: Filter,
        #[serde(skip_serializing_if = "Option::is_none")]
        sub_attr: Option<String>,
    },
}

impl PatchPath {
    /// The attribute the path starts from (`emails` in `emails[type eq "work"].value`).
    pub fn attr(&self) -> &AttrPath {
        match self {
            PatchPath::Attr(attr) | PatchPath::ValuePath { attr, .. } => attr,
        }
    }

    /// The value filter, if the path has one.
    pub fn filter(&self) -> Option<&Filter> {
        match self {
            PatchPath::Attr(_) => None,
            PatchPath::ValuePath { filter, .. } => Some(filter),
        }
    }

    /// The sub-attribute the path ends in, wherever it is written:
    /// `givenName` for `name.givenName`, `value` for `emails[type eq "work"].value`.
    pub fn target_sub_attr(&self) -> Option<&str> {
        match self {
            PatchPath::Attr(attr) => attr.sub_attr.as_deref(),
            PatchPath::ValuePath { sub_attr, attr, .. } => {
                sub_attr.as_deref().or(attr.sub_attr.as_deref())
            }
        }
    }
}

/// The canonical form, as [`Filter`]'s: lower-case keywords, one space, escaped strings.
impl Display for PatchPath {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            PatchPath::Attr(attr) => write!(f, "{attr}"),
            PatchPath::ValuePath {
                attr,
                filter,
                sub_attr,
            } => {
                write!(f, "{attr}[{filter}]")?;
                if let Some(sub) = sub_attr {
                    write!(f, ".{sub}")?;
                }
                Ok(())
            }
        }
    }
}

/// `PATH = attrPath / valuePath [subAttr]` (RFC 7644 §3.5.2)
fn path(input: &str) -> PResult<'_, PatchPath> {
    let (rest, attr) = grammar::attr_path(input)?;
    if !rest.starts_with('[') {
        grammar::no_space_before_bracket(attr, rest)?;
        return Ok((rest, PatchPath::Attr(attr.into_attr_path())));
    }
    let (rest, filter) = grammar::value_filter(rest, 0)?;
    let (rest, sub_attr) = opt(grammar::sub_attr).parse(rest)?;
    Ok((
        rest,
        PatchPath::ValuePath {
            attr: attr.into_attr_path(),
            filter,
            sub_attr: sub_attr.map(str::to_owned),
        },
    ))
}

/// Parses a PATCH operation's `path` (RFC 7644 §3.5.2).
///
/// Whitespace rules and error reporting are those of [`crate::scim::filter::parse_filter`].
pub fn parse_path(input: &str) -> Result<PatchPath, ParseError> {
    grammar::parse_complete(input, Grammar::Path, path)
}

impl std::str::FromStr for PatchPath {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_path(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::filter::{parse_filter, CompValue, CompareOp, ErrorKind};

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn attr(s: &str) -> AttrPath {
        s.parse().expect("test attribute path")
    }

    fn vp(a: &str, filter: &str, sub: Option<&str>) -> PatchPath {
        PatchPath::ValuePath {
            attr: attr(a),
            filter: parse_filter(filter).expect("test filter"),
            sub_attr: sub.map(str::to_owned),
        }
    }

    /// Known answers: `(path, expected tree, canonical form)`.
    fn known() -> Vec<(&'static str, PatchPath, &'static str)> {
        let member = r#"value eq "2819c223-7f76-453a-919d-413861904646""#;
        vec![
            // The AWS guide's PATCH examples (PatchGroup member operations, PatchUser).
            (
                "members",
                PatchPath::Attr(AttrPath::new("members")),
                "members",
            ),
            ("active", PatchPath::Attr(AttrPath::new("active")), "active"),
            // RFC 7644 §3.5.2 "path" examples and those of §3.5.2.1–§3.5.2.3.
            (
                "name.familyName",
                PatchPath::Attr(AttrPath::with_sub_attr("name", "familyName")),
                "name.familyName",
            ),
            (
                r#"addresses[type eq "work"]"#,
                vp("addresses", r#"type eq "work""#, None),
                r#"addresses[type eq "work"]"#,
            ),
            (
                r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
                vp("members", member, None),
                r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
            ),
            (
                r#"members[value eq "2819c223-7f76-453a-919d-413861904646"].displayName"#,
                vp("members", member, Some("displayName")),
                r#"members[value eq "2819c223-7f76-453a-919d-413861904646"].displayName"#,
            ),
            (
                r#"emails[type eq "work" and value ew "example.com"]"#,
                vp(
                    "emails",
                    r#"type eq "work" and value ew "example.com""#,
                    None,
                ),
                r#"emails[type eq "work" and value ew "example.com"]"#,
            ),
            (
                r#"addresses[type eq "work"].streetAddress"#,
                vp("addresses", r#"type eq "work""#, Some("streetAddress")),
                r#"addresses[type eq "work"].streetAddress"#,
            ),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
                PatchPath::Attr(AttrPath {
                    urn: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
                    name: "name".into(),
                    sub_attr: Some("familyName".into()),
                }),
                "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
            ),
            // The issue's examples.
            (
                r#"members[value eq "2819c223"]"#,
                vp("members", r#"value eq "2819c223""#, None),
                r#"members[value eq "2819c223"]"#,
            ),
            (
                r#"emails[type eq "work"].value"#,
                vp("emails", r#"type eq "work""#, Some("value")),
                r#"emails[type eq "work"].value"#,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                PatchPath::Attr(AttrPath::with_urn(ENTERPRISE, "manager")),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                PatchPath::Attr(AttrPath {
                    urn: Some(ENTERPRISE.into()),
                    name: "manager".into(),
                    sub_attr: Some("value".into()),
                }),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
            ),
            // What IdPs send besides: Entra's enterprise employeeNumber, Okta's case.
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
                PatchPath::Attr(AttrPath::with_urn(ENTERPRISE, "employeeNumber")),
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            ),
            (
                r#"emails[type eq "work" and primary eq true].value"#,
                vp(
                    "emails",
                    r#"type eq "work" and primary eq true"#,
                    Some("value"),
                ),
                r#"emails[type eq "work" and primary eq true].value"#,
            ),
            (
                r#"phoneNumbers[Type EQ "mobile"]"#,
                vp("phoneNumbers", r#"Type eq "mobile""#, None),
                r#"phoneNumbers[Type eq "mobile"]"#,
            ),
            (
                "members.$ref",
                PatchPath::Attr(AttrPath::with_sub_attr("members", "$ref")),
                "members.$ref",
            ),
            (
                r#"  members[ value eq "a" ]  "#,
                vp("members", r#"value eq "a""#, None),
                r#"members[value eq "a"]"#,
            ),
        ]
    }

    #[test]
    fn known_paths_parse_to_their_tree_and_canonical_form() {
        for (input, expected, canonical) in known() {
            let parsed = parse_path(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed, expected, "{input}");
            assert_eq!(parsed.to_string(), canonical, "{input}");
            assert_eq!(parse_path(canonical).as_ref(), Ok(&parsed), "{canonical}");
        }
    }

    #[test]
    fn bad_paths_are_refused_with_the_right_error() {
        type Check = fn(&ErrorKind) -> bool;
        let cases: &[(&str, usize, Check)] = &[
            ("", 0, |k| matches!(k, ErrorKind::Empty)),
            ("members and x", 8, |k| {
                matches!(k, ErrorKind::Unexpected { .. })
            }),
            ("a.b.c", 3, |k| {
                matches!(k, ErrorKind::TooManySubAttrs { .. })
            }),
            (r#"emails[type eq "work""#, 21, |k| {
                matches!(k, ErrorKind::UnclosedBracket { open_column: 7 })
            }),
            (r#"emails[type eq "work"]."#, 23, |k| {
                matches!(k, ErrorKind::ExpectedSubAttr { .. })
            }),
            (r#"emails[type eq "work"].value.x"#, 28, |k| {
                matches!(k, ErrorKind::Unexpected { .. })
            }),
            (r#"emails [type eq "work"]"#, 6, |k| {
                matches!(k, ErrorKind::SpaceBeforeBracket { .. })
            }),
            (r#"emails[]"#, 7, |k| {
                matches!(k, ErrorKind::ExpectedFilter { .. })
            }),
            (r#"emails[x[y pr]]"#, 7, |k| {
                matches!(k, ErrorKind::NestedValuePath { .. })
            }),
            ("members]", 7, |k| {
                matches!(k, ErrorKind::UnbalancedClose { found: ']' })
            }),
            ("9lives", 0, |k| {
                matches!(k, ErrorKind::ExpectedAttrPath { .. })
            }),
            (r#""members""#, 0, |k| {
                matches!(k, ErrorKind::ExpectedAttrPath { .. })
            }),
            ("nourn:members", 0, |k| {
                matches!(k, ErrorKind::BadUri { .. })
            }),
        ];
        for (input, offset, check) in cases {
            let err = parse_path(input).expect_err(input);
            assert_eq!(err.offset, *offset, "{input}: {err}");
            assert!(check(&err.kind), "{input}: {:?}", err.kind);
            assert_eq!(err.scim_type(), "invalidPath");
        }
    }

    #[test]
    fn accessors_find_attr_filter_and_target() {
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert!(p.attr().is("EMAILS"));
        assert_eq!(p.target_sub_attr(), Some("value"));
        let Some(Filter::Compare { op, value, .. }) = p.filter() else {
            panic!("{p:?}")
        };
        assert_eq!(
            (*op, value),
            (CompareOp::Eq, &CompValue::String("work".into()))
        );
        let p = parse_path("name.givenName").unwrap();
        assert_eq!((p.filter(), p.target_sub_attr()), (None, Some("givenName")));
    }

    #[test]
    fn json_tree_is_readable() {
        let p = parse_path(r#"members[value eq "u1"]"#).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"valuePath": {
                "attr": {"name": "members"},
                "filter": {"compare": {"attr": {"name": "value"}, "op": "eq", "value": "u1"}}
            }})
        );
    }

    #[test]
    fn hostile_paths_fail_cleanly() {
        let deep = format!("a[{}b pr{}]", "(".repeat(10_000), ")".repeat(10_000));
        let err = parse_path(&deep).unwrap_err();
        assert!(
            matches!(err.kind, ErrorKind::TooDeep { limit: 32 }),
            "{err}"
        );
        let long = format!("a{}", "b".repeat(1 << 20));
        assert_eq!(parse_path(&long).unwrap().attr().name.len(), 1 << 20 | 1);
    }

    mod properties {
        use super::super::*;
        use crate::scim::filter::tests::strategies::{arb_attr_path, arb_name, arb_val_filter};
        use proptest::prelude::*;

        fn arb_path() -> impl Strategy<Value = PatchPath> {
            prop_oneof![
                arb_attr_path().prop_map(PatchPath::Attr),
                (
                    arb_attr_path(),
                    arb_val_filter(),
                    proptest::option::of(arb_name())
                )
                    .prop_map(|(attr, filter, sub_attr)| PatchPath::ValuePath {
                        attr,
                        filter,
                        sub_attr
                    }),
            ]
        }

        proptest! {
            #![proptest_config(crate::scim::filter::tests::config(256))]

            #[test]
            fn display_then_parse_is_identity(p in arb_path()) {
                let text = p.to_string();
                prop_assert_eq!(parse_path(&text), Ok(p), "{}", text);
            }

            #[test]
            fn arbitrary_text_never_panics(s in "\\PC{0,64}") {
                if let Ok(p) = parse_path(&s) {
                    prop_assert_eq!(parse_path(&p.to_string()), Ok(p));
                }
            }
        }
    }
}
