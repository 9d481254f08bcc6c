//! Known-answer, error, hostile-input and property tests for the filter parser.

use super::*;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn attr(s: &str) -> AttrPath {
    s.parse().expect("test attribute path")
}

fn cmp(a: &str, op: CompareOp, value: CompValue) -> Filter {
    Filter::Compare {
        attr: attr(a),
        op,
        value,
    }
}

fn s(v: &str) -> CompValue {
    CompValue::String(v.into())
}

fn num(text: &str) -> CompValue {
    CompValue::Number(text.parse().expect("test number"))
}

fn pr(a: &str) -> Filter {
    Filter::Present { attr: attr(a) }
}

/// Filters that must parse, with their canonical form.
///
/// Sources: every filter of the AWS guide (ListUsers and ListGroups examples, as
/// printed, line wraps included), every example of RFC 7644 §3.4.2.2 (Figure 2 and the
/// case-insensitivity examples of the prose) and §3.4.3, and what IdPs send.
pub(crate) const CANONICAL: &[(&str, &str)] = &[
    // AWS guide: ListGroups
    (r#"displayName eq "Group Bar""#, r#"displayName eq "Group Bar""#),
    ("displayName  \neq \"Group Bar\"", r#"displayName eq "Group Bar""#),
    (r#"externalId eq "705167""#, r#"externalId eq "705167""#),
    ("externalId\n  eq \"705167\"", r#"externalId eq "705167""#),
    (
        "id\n  eq \"90677c608a-a9f17294-7931-41a5-9c00-6e7ace3c2c11\" and members eq\n  \
         \"90677c608a-787142a0-3f27-4cd3-afb6-8aed7ce87094\"",
        r#"id eq "90677c608a-a9f17294-7931-41a5-9c00-6e7ace3c2c11" and members eq "90677c608a-787142a0-3f27-4cd3-afb6-8aed7ce87094""#,
    ),
    (
        r#"members eq "90677c608a-787142a0-3f27-4cd3-afb6-8aed7ce87094" and id eq "90677c608a-a9f17294-7931-41a5-9c00-6e7ace3c2c11""#,
        r#"members eq "90677c608a-787142a0-3f27-4cd3-afb6-8aed7ce87094" and id eq "90677c608a-a9f17294-7931-41a5-9c00-6e7ace3c2c11""#,
    ),
    (r#"member eq "u1" and id eq "g1""#, r#"member eq "u1" and id eq "g1""#),
    // AWS guide: ListUsers
    ("externalId eq  \n\"705167\"", r#"externalId eq "705167""#),
    ("userName eq\n\"jdoe\"", r#"userName eq "jdoe""#),
    (
        "id eq\n\"90677c608a-7afcdc23-0bd4-4fb7-b2ff-10ccffdff447\" and manager eq \
         \"9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734\"",
        r#"id eq "90677c608a-7afcdc23-0bd4-4fb7-b2ff-10ccffdff447" and manager eq "9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734""#,
    ),
    (
        r#"manager eq "9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734" and id eq "90677c608a-7afcdc23-0bd4-4fb7-b2ff-10ccffdff447""#,
        r#"manager eq "9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734" and id eq "90677c608a-7afcdc23-0bd4-4fb7-b2ff-10ccffdff447""#,
    ),
    // RFC 7644 §3.4.2.2, Figure 2
    (r#"userName eq "bjensen""#, r#"userName eq "bjensen""#),
    (r#"name.familyName co "O'Malley""#, r#"name.familyName co "O'Malley""#),
    (r#"userName sw "J""#, r#"userName sw "J""#),
    (
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
    ),
    ("title pr", "title pr"),
    (
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
    ),
    (
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
    ),
    (
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
    ),
    (
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
    ),
    (
        r#"title pr and userType eq "Employee""#,
        r#"title pr and userType eq "Employee""#,
    ),
    (
        r#"title pr or userType eq "Intern""#,
        r#"title pr or userType eq "Intern""#,
    ),
    (
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
    ),
    (
        "userType eq \"Employee\" and (emails co \"example.com\" or\n  emails.value co \"example.org\")",
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
    ),
    (
        "userType ne \"Employee\" and not (emails co \"example.com\" or\n  emails.value co \"example.org\")",
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
    ),
    (
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails.type eq "work""#,
    ),
    (
        "userType eq \"Employee\" and emails[type eq \"work\" and\n  value co \"@example.com\"]",
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
    ),
    (
        "emails[type eq \"work\" and value co \"@example.com\"] or\n  ims[type eq \"xmpp\" and value co \"@foo.com\"]",
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
    ),
    // RFC 7644 §3.4.2.2 prose: "userName Eq "john"" and "Username eq "john"" are equal.
    (r#"userName Eq "john""#, r#"userName eq "john""#),
    (r#"Username eq "john""#, r#"Username eq "john""#),
    // RFC 7644 §3.4.3's POST .search body, then a type query IdPs send.
    (r#"displayName sw "smith""#, r#"displayName sw "smith""#),
    (
        r#"meta.resourceType eq "User" or meta.resourceType eq "Group""#,
        r#"meta.resourceType eq "User" or meta.resourceType eq "Group""#,
    ),
    // The issue's examples and what IdPs send.
    (
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1""#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m1""#,
    ),
    (
        r#"emails[type eq "work" and primary eq true]"#,
        r#"emails[type eq "work" and primary eq true]"#,
    ),
    (r#"userName eq "bjensen@example.com""#, r#"userName eq "bjensen@example.com""#),
    (r#"externalId eq "00u1ab2cd3EF4gh5i6j7""#, r#"externalId eq "00u1ab2cd3EF4gh5i6j7""#),
    (r#"active eq false"#, r#"active eq false"#),
    (r#"x eq null"#, r#"x eq null"#),
    (r#"x ne true"#, r#"x ne true"#),
    // Operators and keywords in any case; whitespace normalised.
    (
        r#"a PR AND b Pr Or NOT (c pr)"#,
        r#"a pr and b pr or not (c pr)"#,
    ),
    ("\t a pr \r\n", "a pr"),
    ("( a pr )", "a pr"),
    ("not(a pr)", "not (a pr)"),
    ("emails[ type eq \"work\" ]", r#"emails[type eq "work"]"#),
    // Precedence and minimal parentheses.
    ("a pr or b pr and c pr", "a pr or b pr and c pr"),
    ("(a pr or b pr) and c pr", "(a pr or b pr) and c pr"),
    ("a pr and (b pr and c pr)", "a pr and b pr and c pr"),
    ("((a pr))", "a pr"),
    ("a pr or (b pr or (c pr or d pr))", "a pr or b pr or c pr or d pr"),
    ("not (not (a pr))", "not (not (a pr))"),
    ("not (a pr or b pr) and c pr", "not (a pr or b pr) and c pr"),
    // Numbers as JSON has them.
    ("x gt 0", "x gt 0"),
    ("x gt 123", "x gt 123"),
    ("x gt -12", "x gt -12"),
    ("x gt 3.25", "x gt 3.25"),
    ("x gt 1e3", "x gt 1000.0"),
    ("x gt 1E-2", "x gt 0.01"),
    ("x gt 18446744073709551615", "x gt 18446744073709551615"),
    ("x gt -9223372036854775808", "x gt -9223372036854775808"),
    // Past u64 a number is an f64, like serde_json's.
    ("x gt 18446744073709551616", "x gt 1.8446744073709552e+19"),
    ("x gt -0", "x gt 0"),
    // Found by the round-trip property: the last digit must survive.
    ("x eq -8.112180120974837e-75", "x eq -8.112180120974837e-75"),
    ("x eq 2.4005210952711422e-275", "x eq 2.4005210952711422e-275"),
    // Strings with every JSON escape.
    (
        r#"x eq "q\" b\\ s\/ \b\f\n\r\t \u00e9 \uD83D\uDE00""#,
        "x eq \"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t é 😀\"",
    ),
    (r#"x eq "\u0000\u001f""#, r#"x eq "\u0000\u001f""#),
    (r#"x eq """#, r#"x eq """#),
    ("x eq \"naïve 日本\"", "x eq \"naïve 日本\""),
    // Names that look like keywords are names where the grammar wants a name.
    ("not pr", "not pr"),
    ("and pr and or pr", "and pr and or pr"),
    ("pr pr", "pr pr"),
    ("true eq true", "true eq true"),
    ("eq eq \"eq\"", r#"eq eq "eq""#),
    ("members.$ref eq \"https://x/Users/1\"", r#"members.$ref eq "https://x/Users/1""#),
    ("a-b_c9 pr", "a-b_c9 pr"),
];

#[test]
fn known_filters_parse_to_their_canonical_form() {
    for (input, canonical) in CANONICAL {
        let parsed = parse_filter(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(parsed.to_string(), *canonical, "{input:?}");
        assert_eq!(parse_filter(canonical), Ok(parsed), "{canonical:?}");
    }
}

#[test]
fn known_filters_have_the_expected_tree() {
    use CompareOp::*;
    let cases: Vec<(&str, Filter)> = vec![
        (
            r#"userName eq "bjensen""#,
            cmp("userName", Eq, s("bjensen")),
        ),
        (
            r#"id eq "i" and manager eq "m""#,
            Filter::And(vec![cmp("id", Eq, s("i")), cmp("manager", Eq, s("m"))]),
        ),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
            Filter::Compare {
                attr: AttrPath::with_urn(CORE_USER, "userName"),
                op: Sw,
                value: s("J"),
            },
        ),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m""#,
            Filter::Compare {
                attr: AttrPath {
                    urn: Some(ENTERPRISE.into()),
                    name: "manager".into(),
                    sub_attr: Some("value".into()),
                },
                op: Eq,
                value: s("m"),
            },
        ),
        (
            "a pr or b pr and c pr",
            Filter::Or(vec![pr("a"), Filter::And(vec![pr("b"), pr("c")])]),
        ),
        (
            r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
            Filter::And(vec![
                cmp("userType", Ne, s("Employee")),
                Filter::negate(Filter::Or(vec![
                    cmp("emails", Co, s("example.com")),
                    cmp("emails.value", Co, s("example.org")),
                ])),
            ]),
        ),
        (
            r#"emails[type eq "work" and primary eq true]"#,
            Filter::ValuePath {
                attr: attr("emails"),
                filter: Box::new(Filter::And(vec![
                    cmp("type", Eq, s("work")),
                    cmp("primary", Eq, CompValue::Bool(true)),
                ])),
            },
        ),
        ("x gt -1.5e2", cmp("x", Gt, num("-150.0"))),
        ("x le 7", cmp("x", Le, num("7"))),
        ("x eq null", cmp("x", Eq, CompValue::Null)),
        ("x ew false", cmp("x", Ew, CompValue::Bool(false))),
        ("x GE 1", cmp("x", Ge, num("1"))),
        ("x Lt 1", cmp("x", Lt, num("1"))),
        ("UserName EQ \"A\"", cmp("UserName", Eq, s("A"))),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_filter(input), Ok(expected), "{input}");
    }
}

/// Inputs that must be refused, with the byte offset of the error and its kind.
#[test]
fn bad_filters_are_refused_at_the_right_place() {
    type Check = fn(&ErrorKind) -> bool;
    let cases: &[(&str, usize, Check)] = &[
        ("", 0, |k| matches!(k, ErrorKind::Empty)),
        ("   ", 3, |k| matches!(k, ErrorKind::Empty)),
        (
            r#"userName xx "jdoe""#,
            9,
            |k| matches!(k, ErrorKind::ExpectedCompareOp { attr, found } if attr == "userName" && found == "xx"),
        ),
        (
            r#"userName="jdoe""#,
            8,
            |k| matches!(k, ErrorKind::ExpectedCompareOp { found, .. } if found == "="),
        ),
        ("userName", 8, |k| {
            matches!(k, ErrorKind::ExpectedCompareOp { .. })
        }),
        (
            r#"userName eq"jdoe""#,
            11,
            |k| matches!(k, ErrorKind::ExpectedSpace { after } if after == "eq"),
        ),
        ("userName eq", 11, |k| {
            matches!(k, ErrorKind::ExpectedValue { .. })
        }),
        (
            "userName eq jdoe",
            12,
            |k| matches!(k, ErrorKind::ExpectedValue { found, .. } if found == "jdoe"),
        ),
        ("userName eq 'jdoe'", 12, |k| {
            matches!(k, ErrorKind::ExpectedValue { .. })
        }),
        ("active eq TRUE", 10, |k| {
            matches!(k, ErrorKind::ExpectedValue { .. })
        }),
        ("x eq +1", 5, |k| {
            matches!(k, ErrorKind::ExpectedValue { .. })
        }),
        (r#"userName eq "jdoe"#, 12, |k| {
            matches!(k, ErrorKind::UnterminatedString)
        }),
        (
            r#"x eq "a\qb""#,
            7,
            |k| matches!(k, ErrorKind::InvalidEscape { found } if found == "\\q"),
        ),
        (
            r#"x eq "\u12""#,
            6,
            |k| matches!(k, ErrorKind::InvalidEscape { found } if found == "\\u12"),
        ),
        (r#"x eq "\uD83D""#, 6, |k| {
            matches!(k, ErrorKind::LoneSurrogate { .. })
        }),
        (r#"x eq "\uDE00\uD83D""#, 6, |k| {
            matches!(k, ErrorKind::LoneSurrogate { .. })
        }),
        ("x eq \"a\tb\"", 7, |k| {
            matches!(k, ErrorKind::ControlChar { codepoint: 9 })
        }),
        (
            "x eq 01",
            5,
            |k| matches!(k, ErrorKind::InvalidNumber { found } if found == "01"),
        ),
        ("x eq 1.", 5, |k| {
            matches!(k, ErrorKind::InvalidNumber { .. })
        }),
        ("x eq .5", 5, |k| {
            matches!(k, ErrorKind::ExpectedValue { .. })
        }),
        ("x eq -", 5, |k| {
            matches!(k, ErrorKind::InvalidNumber { .. })
        }),
        ("x eq 1e", 5, |k| {
            matches!(k, ErrorKind::InvalidNumber { .. })
        }),
        ("x eq 1and y pr", 5, |k| {
            matches!(k, ErrorKind::InvalidNumber { .. })
        }),
        ("x eq 1e400", 5, |k| {
            matches!(k, ErrorKind::NumberOutOfRange { .. })
        }),
        (
            "a pr and",
            8,
            |k| matches!(k, ErrorKind::ExpectedFilter { after } if after == "and"),
        ),
        ("a pr and ", 9, |k| {
            matches!(k, ErrorKind::ExpectedFilter { .. })
        }),
        (
            "a pr or(b pr)",
            7,
            |k| matches!(k, ErrorKind::ExpectedSpace { after } if after == "or"),
        ),
        (
            "(a pr)and(b pr)",
            6,
            |k| matches!(k, ErrorKind::ExpectedSpaceBefore { word } if word == "and"),
        ),
        (
            r#"a eq "x"OR b pr"#,
            8,
            |k| matches!(k, ErrorKind::ExpectedSpaceBefore { word } if word == "OR"),
        ),
        (
            "(a pr and(b pr))",
            9,
            |k| matches!(k, ErrorKind::ExpectedSpace { after } if after == "and"),
        ),
        ("((a pr)or b pr)", 7, |k| {
            matches!(k, ErrorKind::ExpectedSpaceBefore { .. })
        }),
        (
            "a pr adn b pr",
            5,
            |k| matches!(k, ErrorKind::Unexpected { found, .. } if found == "adn"),
        ),
        ("a pr b pr", 5, |k| {
            matches!(k, ErrorKind::Unexpected { .. })
        }),
        ("(a pr", 5, |k| {
            matches!(k, ErrorKind::UnclosedParen { open_column: 1 })
        }),
        ("((a pr)", 7, |k| {
            matches!(k, ErrorKind::UnclosedParen { open_column: 1 })
        }),
        ("a pr)", 4, |k| {
            matches!(k, ErrorKind::UnbalancedClose { found: ')' })
        }),
        (
            "()",
            1,
            |k| matches!(k, ErrorKind::ExpectedFilter { after } if after == "("),
        ),
        (
            "not a pr",
            4,
            |k| matches!(k, ErrorKind::ExpectedCompareOp { attr, .. } if attr == "not"),
        ),
        ("not", 3, |k| {
            matches!(k, ErrorKind::ExpectedCompareOp { .. })
        }),
        (r#"emails[type eq "work""#, 21, |k| {
            matches!(k, ErrorKind::UnclosedBracket { open_column: 7 })
        }),
        (r#"emails[type eq "work")"#, 21, |k| {
            matches!(k, ErrorKind::Unexpected { .. })
        }),
        ("emails[]", 7, |k| {
            matches!(k, ErrorKind::ExpectedFilter { .. })
        }),
        (
            "a]",
            1,
            |k| matches!(k, ErrorKind::ExpectedCompareOp { found, .. } if found == "]"),
        ),
        ("a pr]", 4, |k| {
            matches!(k, ErrorKind::UnbalancedClose { found: ']' })
        }),
        ("(a pr   ", 8, |k| {
            matches!(k, ErrorKind::UnclosedParen { open_column: 1 })
        }),
        (r#"emails [type eq "work"]"#, 6, |k| {
            matches!(k, ErrorKind::SpaceBeforeBracket { .. })
        }),
        (r#"emails[type eq "work"].value eq "x""#, 22, |k| {
            matches!(k, ErrorKind::SubAttrAfterValuePath)
        }),
        (
            r#"emails[addresses[type pr]]"#,
            7,
            |k| matches!(k, ErrorKind::NestedValuePath { attr } if attr == "addresses"),
        ),
        ("name.given.family pr", 10, |k| {
            matches!(k, ErrorKind::TooManySubAttrs { .. })
        }),
        ("name. pr", 5, |k| {
            matches!(k, ErrorKind::ExpectedSubAttr { .. })
        }),
        ("1abc pr", 0, |k| {
            matches!(k, ErrorKind::ExpectedAttrPath { .. })
        }),
        (r#""userName" eq "x""#, 0, |k| {
            matches!(k, ErrorKind::ExpectedAttrPath { .. })
        }),
        ("a$b pr", 1, |k| {
            matches!(k, ErrorKind::InvalidNameChar { found: '$' })
        }),
        ("$x pr", 0, |k| {
            matches!(k, ErrorKind::InvalidNameChar { .. })
        }),
        ("urn:$x:name pr", 0, |k| {
            matches!(k, ErrorKind::BadUri { .. })
        }),
        (
            "user:name eq 1",
            0,
            |k| matches!(k, ErrorKind::BadUri { uri } if uri == "user"),
        ),
        ("urn:x: pr", 6, |k| {
            matches!(k, ErrorKind::ExpectedAttrPath { .. })
        }),
        ("<filterAttribute> eq \"<filterValue>\"", 0, |k| {
            matches!(k, ErrorKind::ExpectedAttrPath { .. })
        }),
        ("a pr\u{a0}and b pr", 4, |k| {
            matches!(k, ErrorKind::Unexpected { .. })
        }),
    ];
    for (input, offset, check) in cases {
        let err = parse_filter(input).expect_err(input);
        assert_eq!(err.offset, *offset, "{input:?}: {err}");
        assert!(check(&err.kind), "{input:?}: {:?}", err.kind);
        assert_eq!(err.scim_type(), "invalidFilter");
        // Every error explains itself and renders without panicking.
        assert!(err.hint().is_some_and(|h| !h.is_empty()), "{input:?}");
        assert!(err.render(input).contains('^'));
    }
}

#[test]
fn error_messages_read_as_the_issue_asks() {
    let err = parse_filter(r#"userName xx "jdoe""#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected a comparison operator after `userName` at column 10 \
         (compare with `eq`: userName eq \"bjensen\")"
    );
    let err = parse_filter(r#"emails[type eq "work""#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unclosed value filter; missing `]` at column 22 (the `[` at column 7 is never closed)"
    );
    let err = parse_filter("userName eq jdoe").unwrap_err();
    assert!(err.to_string().contains(r#"did you mean "jdoe"?"#), "{err}");
    let err = parse_filter("userName = \"jdoe\"").unwrap_err();
    assert!(err.to_string().contains("SCIM spells `=` as `eq`"), "{err}");
    let err = parse_filter("userName eq 'jdoe'").unwrap_err();
    assert!(err.to_string().contains("double quotes"), "{err}");
    let err = parse_filter("active eq True").unwrap_err();
    assert!(err.to_string().contains("lower-case: true"), "{err}");
    let err = parse_filter("a pr and\n  b xx 1").unwrap_err();
    assert!(err.to_string().contains("at line 2, column 5"), "{err}");
}

#[test]
fn render_puts_a_caret_under_the_column() {
    let input = r#"userName xx "jdoe""#;
    let err = parse_filter(input).unwrap_err();
    assert_eq!(
        err.render(input),
        "userName xx \"jdoe\"\n         ^\nexpected a comparison operator after `userName` \
         at column 10 (compare with `eq`: userName eq \"bjensen\")"
    );
    // Columns count characters, not bytes.
    let input = "x eq \"é\" yy";
    let err = parse_filter(input).unwrap_err();
    assert_eq!(err.column, 10);
    assert!(err.render(input).starts_with("x eq \"é\" yy\n         ^\n"));
    // Only the offending line is shown, tabs are one column.
    let input = "a pr and\n\tb xx 1";
    let err = parse_filter(input).unwrap_err();
    assert!(
        err.render(input).starts_with(" b xx 1\n   ^\n"),
        "{}",
        err.render(input)
    );
    // A long line is cut to a window around the caret.
    let input = format!("{} eq \"{}\" zz", "a".repeat(300), "v".repeat(300));
    let err = parse_filter(&input).unwrap_err();
    let rendered = err.render(&input);
    let mut lines = rendered.lines();
    let (shown, caret) = (lines.next().unwrap(), lines.next().unwrap());
    assert!(
        shown.starts_with('…') && shown.chars().count() <= 102,
        "{shown}"
    );
    let caret_col = caret.chars().count() - 1;
    assert_eq!(shown.chars().nth(caret_col), Some('z'), "{rendered}");
}

#[test]
fn attribute_comparison_ignores_case_but_equality_does_not() {
    let a = parse_filter(r#"USERNAME eq "x""#).unwrap();
    let Filter::Compare { attr, .. } = &a else {
        panic!("{a:?}")
    };
    assert!(attr.is("userName"));
    assert!(attr.eq_ignore_case(&AttrPath::new("username")));
    assert_ne!(attr, &AttrPath::new("userName"));
    let m: AttrPath = "URN:IETF:params:scim:schemas:extension:enterprise:2.0:User:Manager.Value"
        .parse()
        .unwrap();
    assert!(m.urn_is(ENTERPRISE));
    assert!(m.eq_ignore_case(&AttrPath {
        urn: Some(ENTERPRISE.into()),
        name: "manager".into(),
        sub_attr: Some("value".into()),
    }));
    assert!(!m.is("manager"));
}

#[test]
fn terms_list_every_attribute_expression() {
    let f = parse_filter(r#"a eq 1 and not (b pr or emails[type eq "work"])"#).unwrap();
    let terms = f.terms();
    let described: Vec<String> = terms
        .iter()
        .map(|t| {
            format!(
                "{}{}{}{}",
                t.parent.map(|p| format!("{p}/")).unwrap_or_default(),
                t.attr,
                t.op.map(|o| format!(" {o}")).unwrap_or_default(),
                if t.negated { " (negated)" } else { "" }
            )
        })
        .collect();
    assert_eq!(
        described,
        ["a eq", "b (negated)", "emails/type eq (negated)"]
    );
}

#[test]
fn json_tree_is_readable() {
    let f = parse_filter(r#"emails[type eq "work"] and x gt 1.5 or not (y pr)"#).unwrap();
    assert_eq!(
        serde_json::to_value(&f).unwrap(),
        serde_json::json!({"or": [
            {"and": [
                {"valuePath": {
                    "attr": {"name": "emails"},
                    "filter": {"compare": {"attr": {"name": "type"}, "op": "eq", "value": "work"}}
                }},
                {"compare": {"attr": {"name": "x"}, "op": "gt", "value": 1.5}}
            ]},
            {"not": {"present": {"attr": {"name": "y"}}}}
        ]})
    );
    let f = parse_filter(&format!("{ENTERPRISE}:manager.value eq null")).unwrap();
    assert_eq!(
        serde_json::to_value(&f).unwrap(),
        serde_json::json!({"compare": {
            "attr": {"urn": ENTERPRISE, "name": "manager", "subAttr": "value"},
            "op": "eq",
            "value": null
        }})
    );
}

#[test]
fn parse_error_converts_to_a_scim_error() {
    let err = parse_filter("a xx 1").unwrap_err();
    let body = err.to_scim_error();
    assert_eq!(body.status, "400");
    assert_eq!(body.scim_type.as_deref(), Some("invalidFilter"));
    assert!(body
        .detail
        .starts_with("invalid filter: expected a comparison operator"));
    let json = serde_json::to_value(&err).unwrap();
    assert_eq!(json["code"], "expectedCompareOp");
    assert_eq!(json["column"], 3);
    assert_eq!(json["attr"], "a");
}

mod hostile {
    use super::*;

    #[test]
    fn ten_thousand_nested_parentheses_are_an_error_not_a_stack_overflow() {
        let input = format!("{}a pr{}", "(".repeat(10_000), ")".repeat(10_000));
        let err = parse_filter(&input).unwrap_err();
        assert_eq!(err.kind, ErrorKind::TooDeep { limit: MAX_DEPTH });
        assert_eq!(err.offset, MAX_DEPTH);
    }

    /// The depth limit is what keeps the recursive parser's stack use small: the deepest
    /// legal filter parses on a 512 KiB stack (a quarter of a thread's default 2 MiB),
    /// even unoptimized.
    #[test]
    fn deepest_legal_filter_fits_a_small_stack() {
        let input = format!(
            "{}emails[a pr]{}",
            "not (".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        let deep_parens = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        let parsed = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(move || {
                (
                    parse_filter(&input).is_ok(),
                    parse_filter(&deep_parens).is_ok(),
                )
            })
            .and_then(|t| t.join().map_err(|_| std::io::Error::other("overflow")));
        assert_eq!(parsed.ok(), Some((true, true)));
    }

    #[test]
    fn nesting_up_to_the_limit_parses() {
        let input = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(parse_filter(&input), Ok(pr("a")));
        let input = format!("{}a pr{}", "not (".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse_filter(&input).is_ok());
        let input = format!(
            "{}a pr{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(parse_filter(&input).is_err());
    }

    #[test]
    fn ten_thousand_nested_nots_and_brackets_are_errors() {
        let input = format!("{}a pr{}", "not (".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(
            parse_filter(&input).unwrap_err().kind,
            ErrorKind::TooDeep { .. }
        ));
        // Parentheses inside brackets count towards the same limit.
        let input = format!("a[{}b pr{}]", "(".repeat(10_000), ")".repeat(10_000));
        assert!(matches!(
            parse_filter(&input).unwrap_err().kind,
            ErrorKind::TooDeep { .. }
        ));
        let input = format!("{}b pr{}", "a[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            parse_filter(&input).unwrap_err().kind,
            ErrorKind::NestedValuePath { .. }
        ));
    }

    #[test]
    fn unbalanced_input_is_reported() {
        for input in [
            "(((a pr", "a pr)))", "(a pr))", "((a pr)", "[a pr]", "a[b pr", "a[b pr]]",
        ] {
            assert!(parse_filter(input).is_err(), "{input}");
        }
        let unclosed = format!("{}a pr", "(".repeat(20));
        assert!(matches!(
            parse_filter(&unclosed).unwrap_err().kind,
            ErrorKind::UnclosedParen { open_column: 20 }
        ));
    }

    #[test]
    fn long_chains_parse_flat_and_drop_without_recursion() {
        let input = vec!["a pr"; 100_000].join(" or ");
        let Ok(Filter::Or(items)) = parse_filter(&input) else {
            panic!("not an or chain")
        };
        assert_eq!(items.len(), 100_000);
        let input = vec!["a pr and b pr"; 50_000].join(" or ");
        let parsed = parse_filter(&input).unwrap();
        assert_eq!(parse_filter(&parsed.to_string()), Ok(parsed));
    }

    #[test]
    fn huge_strings_and_names_parse() {
        let big = "x".repeat(4 << 20);
        let input = format!(r#"userName eq "{big}""#);
        assert_eq!(
            parse_filter(&input),
            Ok(cmp("userName", CompareOp::Eq, s(&big)))
        );
        let escaped = "\\n".repeat(1 << 20);
        let Ok(Filter::Compare { value, .. }) = parse_filter(&format!(r#"a eq "{escaped}""#))
        else {
            panic!("escaped string refused")
        };
        assert_eq!(value.as_str().map(str::len), Some(1 << 20));
        let name = format!("a{}", "b".repeat(1 << 20));
        assert!(parse_filter(&format!("{name} pr")).is_ok());
        // An error about a huge token quotes only its start.
        let err = parse_filter(&format!("{name} xx 1")).unwrap_err();
        assert!(err.to_string().len() < 300, "{}", err.to_string().len());
        let unterminated = format!(r#"userName eq "{big}"#);
        let err = parse_filter(&unterminated).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnterminatedString);
        assert!(err.render(&unterminated).len() < 500);
    }

    /// Found by `fuzz/filter_roundtrip` and `fuzz/path_roundtrip` (a slice cut inside a
    /// multi-byte char when a high surrogate escape was followed by `\` and a
    /// non-ASCII char).
    #[test]
    fn fuzz_crash_non_ascii_after_backslash_following_a_high_surrogate() {
        let err = parse_filter("x eq \":m:\\uD83D\\\u{7da}uDE00\"").unwrap_err();
        assert!(matches!(err.kind, ErrorKind::LoneSurrogate { .. }), "{err}");
        let err = parse_filter("x eq \"\\\u{7da}\"").unwrap_err();
        assert_eq!(
            err.kind,
            ErrorKind::InvalidEscape {
                found: "\\\u{7da}".into()
            }
        );
        let err = crate::scim::path::parse_path("um[vc eq \"s\\uD82D\\\u{792}em").unwrap_err();
        assert!(matches!(err.kind, ErrorKind::LoneSurrogate { .. }), "{err}");
    }

    #[test]
    fn control_characters_and_nul_are_handled() {
        assert!(parse_filter("a eq \"\0\"").is_err());
        assert_eq!(
            parse_filter(r#"a eq "\u0000""#),
            Ok(cmp("a", CompareOp::Eq, s("\0")))
        );
        assert!(parse_filter("a\0 pr").is_err());
        assert!(parse_filter("\u{feff}a pr").is_err());
    }
}

/// proptest settings for this crate: `cases` runs, and no regression files (they would
/// land outside `src/scim`); a failure found once becomes a named unit test instead.
pub(crate) fn config(cases: u32) -> proptest::prelude::ProptestConfig {
    proptest::prelude::ProptestConfig {
        cases,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}

pub(crate) mod strategies {
    //! proptest strategies for syntax trees, shared with the path tests.

    use super::super::*;
    use proptest::prelude::*;

    /// ATTRNAMEs, with the ones that look like keywords on purpose.
    pub(crate) fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[a-zA-Z][a-zA-Z0-9_-]{0,10}",
            1 => prop::sample::select(vec![
                "not", "NOT", "and", "or", "Or", "pr", "eq", "true", "null", "false", "$ref",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn arb_urn() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()),
            Just("urn:ietf:params:scim:schemas:core:2.0:User".to_owned()),
            "[a-zA-Z][a-zA-Z0-9.-]{0,4}(:[a-zA-Z0-9._-]{1,6}){1,3}",
        ]
    }

    pub(crate) fn arb_attr_path() -> impl Strategy<Value = AttrPath> {
        (
            proptest::option::weighted(0.2, arb_urn()),
            arb_name(),
            proptest::option::weighted(0.3, arb_name()),
        )
            .prop_map(|(urn, name, sub_attr)| AttrPath {
                urn,
                name,
                sub_attr,
            })
    }

    fn arb_number() -> impl Strategy<Value = serde_json::Number> {
        prop_oneof![
            any::<i64>().prop_map(serde_json::Number::from),
            any::<u64>().prop_map(serde_json::Number::from),
            any::<f64>().prop_filter_map("finite", serde_json::Number::from_f64),
            (-1000i32..1000).prop_map(|n| serde_json::Number::from_f64(f64::from(n) / 8.0)
                .unwrap_or_else(|| serde_json::Number::from(0))),
        ]
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = CompValue> {
        prop_oneof![
            Just(CompValue::Null),
            any::<bool>().prop_map(CompValue::Bool),
            arb_number().prop_map(CompValue::Number),
            ".{0,12}".prop_map(CompValue::String),
            "[\\x00-\\x20\"\\\\/é😀]{0,6}".prop_map(CompValue::String),
        ]
    }

    fn arb_op() -> impl Strategy<Value = CompareOp> {
        prop::sample::select(CompareOp::ALL.to_vec())
    }

    fn arb_attr_exp() -> impl Strategy<Value = Filter> {
        prop_oneof![
            3 => (arb_attr_path(), arb_op(), arb_value())
                .prop_map(|(attr, op, value)| Filter::Compare { attr, op, value }),
            1 => arb_attr_path().prop_map(|attr| Filter::Present { attr }),
        ]
    }

    fn combine(leaf: impl Strategy<Value = Filter> + 'static) -> impl Strategy<Value = Filter> {
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v
                    .into_iter()
                    .reduce(Filter::and)
                    .unwrap_or_else(|| unreachable!())),
                prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v
                    .into_iter()
                    .reduce(Filter::or)
                    .unwrap_or_else(|| unreachable!())),
                inner.prop_map(Filter::negate),
            ]
        })
    }

    /// A filter fit for brackets: no value path inside.
    pub(crate) fn arb_val_filter() -> impl Strategy<Value = Filter> {
        combine(arb_attr_exp())
    }

    pub(crate) fn arb_filter() -> impl Strategy<Value = Filter> {
        let value_path =
            (arb_attr_path(), arb_val_filter()).prop_map(|(attr, filter)| Filter::ValuePath {
                attr,
                filter: Box::new(filter),
            });
        combine(prop_oneof![4 => arb_attr_exp(), 1 => value_path])
    }

    /// Writes `f` the way a sloppy but valid client might: random keyword case, runs
    /// of whitespace, redundant parentheses, spaces inside brackets, `not(`. `noise`
    /// supplies the choices.
    pub(crate) fn write_noisy(f: &Filter, noise: &mut impl Iterator<Item = u8>, out: &mut String) {
        fn pick(noise: &mut impl Iterator<Item = u8>, n: u8) -> u8 {
            noise.next().unwrap_or(0) % n
        }
        let ws = |k: u8| match k {
            0 => " ",
            1 => "  ",
            2 => "\t",
            3 => "\n ",
            _ => "\r\n",
        };
        let keyword = |kw: &str, k: u8| match k {
            0 => kw.to_ascii_uppercase(),
            1 => {
                let mut c = kw.chars();
                c.next()
                    .map(|first| first.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
            _ => kw.to_owned(),
        };
        let redundant = pick(noise, 6) == 0;
        if redundant {
            out.push('(');
        }
        match f {
            Filter::Compare { attr, op, value } => {
                out.push_str(&attr.to_string());
                out.push_str(ws(pick(noise, 5)));
                out.push_str(&keyword(op.as_str(), pick(noise, 4)));
                out.push_str(ws(pick(noise, 5)));
                out.push_str(&value.to_string());
            }
            Filter::Present { attr } => {
                out.push_str(&attr.to_string());
                out.push_str(ws(pick(noise, 5)));
                out.push_str(&keyword("pr", pick(noise, 4)));
            }
            Filter::And(items) | Filter::Or(items) => {
                let kw = if matches!(f, Filter::And(_)) {
                    "and"
                } else {
                    "or"
                };
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(ws(pick(noise, 5)));
                        out.push_str(&keyword(kw, pick(noise, 4)));
                        out.push_str(ws(pick(noise, 5)));
                    }
                    let paren = kw == "and" && matches!(item, Filter::Or(_));
                    if paren {
                        out.push('(');
                    }
                    write_noisy(item, noise, out);
                    if paren {
                        out.push(')');
                    }
                }
            }
            Filter::Not(inner) => {
                let kw = keyword("not", pick(noise, 4));
                out.push_str(&kw);
                out.push_str(["", " ", "  "][usize::from(pick(noise, 3))]);
                out.push('(');
                out.push_str(["", " "][usize::from(pick(noise, 2))]);
                write_noisy(inner, noise, out);
                out.push_str(["", " "][usize::from(pick(noise, 2))]);
                out.push(')');
            }
            Filter::ValuePath { attr, filter } => {
                out.push_str(&attr.to_string());
                out.push('[');
                out.push_str(["", " "][usize::from(pick(noise, 2))]);
                write_noisy(filter, noise, out);
                out.push_str(["", "\t"][usize::from(pick(noise, 2))]);
                out.push(']');
            }
        }
        if redundant {
            out.push(')');
        }
    }
}

mod properties {
    use super::strategies::*;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(config(512))]

        /// The issue's property: `parse(display(ast)) == ast`.
        #[test]
        fn display_then_parse_is_identity(f in arb_filter()) {
            let text = f.to_string();
            prop_assert_eq!(parse_filter(&text), Ok(f), "{}", text);
        }

        /// Case, whitespace and redundant parentheses change nothing.
        #[test]
        fn noisy_spelling_parses_to_the_same_tree(
            f in arb_filter(),
            noise in prop::collection::vec(any::<u8>(), 64..256),
        ) {
            let mut text = String::new();
            write_noisy(&f, &mut noise.into_iter().cycle(), &mut text);
            prop_assert_eq!(parse_filter(&text), Ok(f), "{}", text);
        }

        /// Canonical text is a fixed point.
        #[test]
        fn canonical_text_is_stable(f in arb_filter()) {
            let once = f.to_string();
            let twice = parse_filter(&once).map(|g| g.to_string());
            prop_assert_eq!(twice, Ok(once));
        }

        /// Whatever parses round-trips, and nothing panics (arbitrary text).
        #[test]
        fn arbitrary_text_round_trips_or_fails_cleanly(input in "\\PC{0,80}") {
            check_round_trip(&input)?;
        }

        /// The same over near-valid text: tokens of the language in random order.
        #[test]
        fn token_soup_round_trips_or_fails_cleanly(
            tokens in prop::collection::vec(prop::sample::select(vec![
                "a", "b.c", "emails", "urn:x:y:z", " ", "  ", "\t", "(", ")", "[", "]",
                "not", "and", "or", "pr", "eq", "co", "\"s\"", "\"\\u00e9\"", "1", "-2.5e3",
                "true", "null", ".", ":", "\"", "\\",
            ]), 0..24),
        ) {
            check_round_trip(&tokens.concat())?;
        }

        /// An error's offset is a char boundary inside the input, and rendering works.
        #[test]
        fn errors_point_inside_the_input(input in "\\PC{0,40}") {
            if let Err(e) = parse_filter(&input) {
                prop_assert!(e.offset <= input.len() && input.is_char_boundary(e.offset));
                prop_assert!(e.render(&input).contains('^'));
            }
        }
    }

    fn check_round_trip(input: &str) -> Result<(), TestCaseError> {
        if let Ok(f) = parse_filter(input) {
            let text = f.to_string();
            prop_assert_eq!(parse_filter(&text), Ok(f), "{:?} -> {:?}", input, text);
        }
        Ok(())
    }
}
