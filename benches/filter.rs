//! Parsing speed of the SCIM language on named inputs.
//!
//! Target (issue 3): a typical AWS filter, `userName eq "bjensen@example.com"`, parses
//! in under 500 ns on one core.
//!
//! `cargo bench --bench filter -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use scimguard::scim::{classify, parse_filter, parse_path, Query};

/// `(name, filter)`: what AWS's ListUsers/ListGroups receive, then RFC 7644's most
/// involved example shapes.
const FILTERS: &[(&str, &str)] = &[
    ("aws_simple", r#"userName eq "bjensen@example.com""#),
    (
        "aws_id_and_manager",
        r#"id eq "90677c608a-7afcdc23-0bd4-4fb7-b2ff-10ccffdff447" and manager eq "9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734""#,
    ),
    (
        "rfc_complex",
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"] or not (emails co "example.com" or emails.value co "example.org") and meta.lastModified gt "2011-05-13T04:42:34Z""#,
    ),
    (
        "urn_manager",
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734""#,
    ),
];

fn filters(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_filter");
    for (name, input) in FILTERS {
        group.bench_function(*name, |b| b.iter(|| parse_filter(black_box(input))));
    }
    group.finish();

    let mut group = c.benchmark_group("display_filter");
    for (name, input) in FILTERS {
        let Ok(filter) = parse_filter(input) else {
            panic!("bench input {name} does not parse")
        };
        group.bench_function(*name, |b| b.iter(|| black_box(&filter).to_string()));
    }
    group.finish();
}

fn others(c: &mut Criterion) {
    c.bench_function("parse_path/value_path_sub_attr", |b| {
        b.iter(|| parse_path(black_box(r#"emails[type eq "work"].value"#)))
    });
    c.bench_function("parse_filter/error_bad_operator", |b| {
        b.iter(|| parse_filter(black_box(r#"userName xx "bjensen@example.com""#)))
    });
    c.bench_function("query/idp_filter", |b| {
        b.iter(|| {
            Query::parse(black_box(
                "filter=userName+eq+%22bjensen%40example.com%22&count=1",
            ))
        })
    });
    c.bench_function("classify/aws_patch_user", |b| {
        b.iter(|| {
            classify(
                black_box("PATCH"),
                black_box(
                    "/d-9067642ac7/scim/v2/Users/9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074",
                ),
            )
        })
    });
}

criterion_group!(benches, filters, others);
criterion_main!(benches);
