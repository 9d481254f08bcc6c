//! The proxy's pure path — classify, check, decide, rewrite — on named requests, with
//! the embedded AWS rules in enforce mode.
//!
//! Targets (issue 4): a 1.2 KB CreateUser under 20 µs, a 100-member PatchGroup under
//! 100 µs, on one core.
//!
//! `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scimguard::rules::{Mode, RuleSet};
use scimguard::verdict::judge;

/// The binary's allocator, so the figures are the proxy's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The load harness's 1.2 KB user (shared/bench/bodies): valid, forwarded untouched.
const CREATE_USER: &str = include_str!("data/create_user.json");
/// The load harness's PatchGroup adding 100 members (AWS's maximum): forwarded.
const PATCH_GROUP_100: &str = include_str!("data/patch_group_add100.json");

fn rewritten_user() -> String {
    // Two emails without a primary and a display sub-attribute: three fixes.
    let mut v: serde_json::Value = serde_json::from_str(CREATE_USER).expect("bench body is JSON");
    v["emails"] = serde_json::json!([
        {"value": "b@home.example", "type": "home", "display": "home"},
        {"value": "bjensen@example.com", "type": "work"}
    ]);
    v.to_string()
}

fn split_patch_group() -> String {
    let members: Vec<serde_json::Value> = (0..250)
        .map(|i| serde_json::json!({"value": format!("906722b2be-{i:08x}-6e4e-4b2f-a94a-3ace8456a36c")}))
        .collect();
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": members}]
    })
    .to_string()
}

fn bench(c: &mut Criterion) {
    let rules = RuleSet::embedded().expect("embedded rules");
    let rewritten = rewritten_user();
    let split = split_patch_group();
    let cases: [(&str, &str, &str, &[u8]); 6] = [
        (
            "create_user_1.2kb",
            "POST",
            "/t-1/scim/v2/Users",
            CREATE_USER.as_bytes(),
        ),
        (
            "create_user_rewritten",
            "POST",
            "/t-1/scim/v2/Users",
            rewritten.as_bytes(),
        ),
        (
            "patch_group_100_members",
            "PATCH",
            "/t-1/scim/v2/Groups/9067729b3d-f987ac4d",
            PATCH_GROUP_100.as_bytes(),
        ),
        (
            "patch_group_250_split",
            "PATCH",
            "/t-1/scim/v2/Groups/9067729b3d-f987ac4d",
            split.as_bytes(),
        ),
        (
            "list_users_filter",
            "GET",
            "/t-1/scim/v2/Users?filter=userName%20eq%20%22bjensen%40example.com%22",
            b"",
        ),
        (
            "get_user",
            "GET",
            "/t-1/scim/v2/Users/9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074",
            b"",
        ),
    ];
    let mut group = c.benchmark_group("judge");
    for (name, method, target, body) in cases {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                judge(
                    black_box(&rules),
                    Mode::Enforce,
                    method,
                    black_box(target),
                    black_box(body),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
