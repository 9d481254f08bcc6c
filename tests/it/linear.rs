//! Judging costs the same per member whatever the request's size: the bytes allocated
//! while judging a PATCH of 10,000 members, per member, stay within a small factor of a
//! 1,000-member one (a copy of the operation per 100-member chunk made it 10×). The
//! blast-radius guard's count of the same bodies allocates nothing per member at all.
//!
//! The allocator's counters are global, so the measurement runs alone in a child
//! process of this test binary (`measure_judging_cost`, ignored in normal runs).

use std::alloc::System;
use std::process::Command;

use scimguard::guard::count::count;
use scimguard::rules::{Mode, RuleSet};
use scimguard::scim::Operation;
use scimguard::verdict::{judge, Verdict};
use serde_json::{json, Value};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const GROUP: &str = "/t-1/scim/v2/Groups/9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d";

fn member(i: usize) -> String {
    format!("906722b2be-{i:08x}-6e4e-4b2f-a94a-3ace8456a36c")
}

fn members(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({ "value": member(i) })).collect()
}

fn patch(operations: Vec<Value>) -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": operations,
    })
    .to_string()
}

/// The request shapes an IdP sends with many members: `(name, method, target, body)`.
fn shapes(n: usize) -> Vec<(&'static str, &'static str, String, String)> {
    vec![
        (
            "add",
            "PATCH",
            GROUP.to_owned(),
            patch(vec![json!({"op": "add", "path": "members", "value": members(n)})]),
        ),
        (
            "remove-by-value",
            "PATCH",
            GROUP.to_owned(),
            patch(vec![json!({"op": "remove", "path": "members", "value": members(n)})]),
        ),
        (
            "remove-by-filter",
            "PATCH",
            GROUP.to_owned(),
            patch(
                (0..n)
                    .map(|i| {
                        json!({"op": "remove", "path": format!("members[value eq \"{}\"]", member(i))})
                    })
                    .collect(),
            ),
        ),
        (
            "create",
            "POST",
            "/t-1/scim/v2/Groups".to_owned(),
            json!({"displayName": "G", "members": members(n)}).to_string(),
        ),
    ]
}

/// Judges the request and writes every body the proxy would send, as the pipeline does.
fn judge_and_write(rules: &RuleSet, method: &str, target: &str, body: &str) -> usize {
    let judgement = judge(rules, Mode::Enforce, method, target, body.as_bytes());
    match judgement.verdict {
        Verdict::Rewrite { body, batches } => {
            body.len()
                + batches
                    .iter()
                    .map(|b| serde_json::to_vec(&b.body).map_or(0, |v| v.len()))
                    .sum::<usize>()
        }
        Verdict::Forward => body.len(),
        Verdict::Reject(e) => panic!("{method} {target} was rejected: {}", e.detail),
    }
}

/// The child: prints `judged: SHAPE MEMBERS BYTES` for each shape at 1,000 and 10,000,
/// and `counted: SHAPE MEMBERS BYTES` for the guard's count of each PATCH.
#[test]
#[ignore = "run alone by judging_costs_the_same_per_member_at_1000_and_10000"]
fn measure_judging_cost() {
    let rules = RuleSet::embedded().expect("embedded rules");
    for n in [1_000, 10_000] {
        for (name, method, target, body) in shapes(n) {
            let region = Region::new(GLOBAL);
            let sent = judge_and_write(&rules, method, &target, &body);
            let stats = region.change();
            assert!(sent > 0);
            println!("judged: {name} {n} {}", stats.bytes_allocated);
            if method == "PATCH" {
                let region = Region::new(GLOBAL);
                let changes = count(Operation::PatchGroup, body.as_bytes());
                let stats = region.change();
                assert_eq!(changes.removed_members > 0, name.starts_with("remove"));
                println!("counted: {name} {n} {}", stats.bytes_allocated);
            }
        }
    }
}

#[test]
fn judging_costs_the_same_per_member_at_1000_and_10000() {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "linear::measure_judging_cost",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("runs the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let costs: Vec<(&str, usize, f64)> = stdout
        .lines()
        .filter_map(|l| l.find("judged: ").map(|at| &l[at + 8..]))
        .map(|l| {
            let mut parts = l.split(' ');
            let name = parts.next().unwrap();
            let n: usize = parts.next().unwrap().parse().unwrap();
            let bytes: f64 = parts.next().unwrap().parse().unwrap();
            (name, n, bytes)
        })
        .collect();
    assert_eq!(costs.len(), 8, "{stdout}");
    // The guard reads a few fields of the operations: a member list is skipped, never
    // built (building it made the count cost as much as judging). A removal by filter
    // is one operation per member, so only the other shapes are bounded.
    let counted: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.find("counted: ").map(|at| &l[at + 9..]))
        .collect();
    assert_eq!(counted.len(), 6, "{stdout}");
    for line in counted
        .iter()
        .filter(|l| !l.starts_with("remove-by-filter"))
    {
        let (shape, bytes) = line.rsplit_once(' ').unwrap();
        let bytes: usize = bytes.parse().unwrap();
        assert!(
            bytes <= 4096,
            "the guard's count of {shape} members allocated {bytes} bytes"
        );
    }
    for (name, n, bytes) in &costs {
        if *n != 1_000 {
            continue;
        }
        let big = costs
            .iter()
            .find(|(other, m, _)| other == name && *m == 10_000)
            .map(|c| c.2)
            .unwrap();
        let ratio = (big / 10_000.0) / (bytes / 1_000.0);
        println!(
            "{name}: {:.0} B/member at 1,000, {:.0} at 10,000 ({ratio:.2}×)",
            bytes / 1_000.0,
            big / 10_000.0
        );
        assert!(
            ratio < 1.5,
            "{name}: {:.0} bytes allocated per member at 10,000 members, {:.0} at 1,000: the cost per member grows with the request ({ratio:.2}×)",
            big / 10_000.0,
            bytes / 1_000.0
        );
    }
}
