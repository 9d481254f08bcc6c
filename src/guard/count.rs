//! What counts as destructive, and the sliding window that sums it: pure, no I/O.

use std::collections::{BTreeMap, VecDeque};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::scim::Operation;

/// The destructive changes one request would make, by kind; zero for everything else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub deleted_users: u32,
    pub deleted_groups: u32,
    pub deactivated_users: u32,
    pub removed_members: u32,
}

impl Changes {
    /// The sum the limit applies to.
    pub fn total(&self) -> u32 {
        self.deleted_users
            .saturating_add(self.deleted_groups)
            .saturating_add(self.deactivated_users)
            .saturating_add(self.removed_members)
    }
}

/// `false`, or the string `"false"` in any case (Entra ID sends `"False"`).
fn is_false(value: &RawValue) -> bool {
    match parse::<Value>(value) {
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    }
}

/// A JSON object read one level deep: its members' values stay unparsed text. Counting
/// reads a few fields of the body, so a PatchGroup of 10,000 members is scanned, not
/// built into 10,000 objects and dropped again (this runs on the async workers).
type Shallow<'a> = BTreeMap<String, &'a RawValue>;

/// `raw` parsed as a `T`; `None` when it is not one.
fn parse<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    serde_json::from_str(raw.get()).ok()
}

/// The value of `key` in `object`, the key matched case-insensitively (SCIM attribute
/// names are case-insensitive, RFC 7643 §2.1).
fn get_ci<'a>(object: &Shallow<'a>, key: &str) -> Option<&'a RawValue> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| *v)
}

/// One PATCH operation: `op` in lower case, the `path` trimmed, the `value` unparsed.
struct PatchOp<'a> {
    op: String,
    path: Option<String>,
    value: Option<&'a RawValue>,
}

/// The PATCH operations of a PatchOp body (guide › PatchUser / PatchGroup: an
/// `Operations` array of `{op, path?, value?}`); an entry that is not an object has no
/// op, path or value.
fn patch_operations<'a>(body: &Shallow<'a>) -> impl Iterator<Item = PatchOp<'a>> {
    get_ci(body, "Operations")
        .and_then(parse::<Vec<&RawValue>>)
        .into_iter()
        .flatten()
        .map(|op| {
            let op = parse::<Shallow<'_>>(op).unwrap_or_default();
            let text = |key| get_ci(&op, key).and_then(parse::<String>);
            PatchOp {
                op: text("op").unwrap_or_default().to_ascii_lowercase(),
                path: text("path").map(|p| p.trim().to_owned()),
                value: get_ci(&op, "value"),
            }
        })
}

/// Counts the destructive changes of one request. The body is the request as received
/// (before scimguard splits member batches), so a PATCH removing 250 members counts
/// 250 once and is held or let through whole.
///
/// - DeleteUser, DeleteGroup: one each.
/// - a user deactivated: PatchUser replacing `active` with false (by path, or in a
///   path-less value object), or PutUser with `"active": false`.
/// - each member removed from a group: PatchGroup `remove` with path
///   `members[value eq "…"]` (one), or path `members` with a value array (one per
///   entry), or path `members` alone (AWS removes them all; counted as one, since the
///   group's size is not known here).
pub fn count(operation: Operation, body: &[u8]) -> Changes {
    let mut changes = Changes::default();
    let body = || serde_json::from_slice::<Shallow<'_>>(body).unwrap_or_default();
    match operation {
        Operation::DeleteUser => changes.deleted_users = 1,
        Operation::DeleteGroup => changes.deleted_groups = 1,
        Operation::PutUser if get_ci(&body(), "active").is_some_and(is_false) => {
            changes.deactivated_users = 1;
        }
        Operation::PatchUser => {
            let deactivates = patch_operations(&body()).any(|op| {
                (op.op == "replace" || op.op == "add")
                    && match (op.path, op.value) {
                        (Some(path), Some(value)) => {
                            path.eq_ignore_ascii_case("active") && is_false(value)
                        }
                        (None, Some(value)) => parse::<Shallow<'_>>(value)
                            .and_then(|value| get_ci(&value, "active"))
                            .is_some_and(is_false),
                        _ => false,
                    }
            });
            if deactivates {
                changes.deactivated_users = 1;
            }
        }
        Operation::PatchGroup => {
            for op in patch_operations(&body()) {
                if op.op != "remove" {
                    continue;
                }
                let Some(path) = op.path else { continue };
                let lower = path.to_ascii_lowercase();
                if lower.starts_with("members[") {
                    changes.removed_members = changes.removed_members.saturating_add(1);
                } else if lower == "members" {
                    // Counted, not built: the entries are skipped as they are read.
                    let n = match op.value.and_then(parse::<Vec<IgnoredAny>>) {
                        Some(items) if !items.is_empty() => items.len(),
                        _ => 1,
                    };
                    changes.removed_members = changes
                        .removed_members
                        .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
                }
            }
        }
        _ => {}
    }
    changes
}

/// The changes of one tenant within the last `window` milliseconds: one entry per
/// counted request (time in ms, changes), oldest first, and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    events: VecDeque<(u64, u32)>,
    sum: u64,
}

impl Window {
    /// Forgets what happened `window_ms` or longer before `now_ms`.
    pub fn prune(&mut self, now_ms: u64, window_ms: u64) {
        while let Some(&(at, n)) = self.events.front() {
            if now_ms.saturating_sub(at) < window_ms {
                break;
            }
            self.events.pop_front();
            self.sum -= u64::from(n);
        }
    }

    /// The changes within the window as last pruned.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Counts `n` changes at `now_ms` if they keep the sum within `limit`; `false` (and
    /// nothing counted) when they would cross it.
    pub fn try_add(&mut self, now_ms: u64, window_ms: u64, n: u32, limit: u64) -> bool {
        self.prune(now_ms, window_ms);
        if self.sum + u64::from(n) > limit {
            return false;
        }
        self.add(now_ms, n);
        true
    }

    /// Counts `n` changes at `now_ms` whatever the limit (observe mode).
    pub fn add(&mut self, now_ms: u64, n: u32) {
        if n == 0 {
            return;
        }
        // Times only go forward, so the queue stays sorted even if the clock steps back.
        let at = self
            .events
            .back()
            .map_or(now_ms, |&(last, _)| now_ms.max(last));
        self.events.push_back((at, n));
        self.sum += u64::from(n);
    }

    /// Starts again: nothing counted.
    pub fn clear(&mut self) {
        self.events.clear();
        self.sum = 0;
    }

    /// When the oldest counted change leaves the window (ms), if any.
    pub fn oldest(&self) -> Option<u64> {
        self.events.front().map(|&(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counted(op: Operation, body: &str) -> Changes {
        count(op, body.as_bytes())
    }

    #[test]
    fn what_counts() {
        assert_eq!(counted(Operation::DeleteUser, "").deleted_users, 1);
        assert_eq!(counted(Operation::DeleteGroup, "").deleted_groups, 1);
        assert_eq!(counted(Operation::GetUser, "").total(), 0);
        assert_eq!(
            counted(Operation::CreateUser, r#"{"active":false}"#).total(),
            0
        );
        assert_eq!(
            counted(Operation::PutUser, r#"{"userName":"a","active":false}"#).deactivated_users,
            1
        );
        assert_eq!(counted(Operation::PutUser, r#"{"active":true}"#).total(), 0);
        let entra = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":[{"op":"Replace","path":"active","value":"False"}]}"#;
        assert_eq!(counted(Operation::PatchUser, entra).deactivated_users, 1);
        let pathless = r#"{"Operations":[{"op":"replace","value":{"active":false}}]}"#;
        assert_eq!(counted(Operation::PatchUser, pathless).deactivated_users, 1);
        let rename = r#"{"Operations":[{"op":"replace","path":"displayName","value":"x"}]}"#;
        assert_eq!(counted(Operation::PatchUser, rename).total(), 0);
        let members = r#"{"Operations":[
            {"op":"remove","path":"members","value":[{"value":"a"},{"value":"b"},{"value":"c"}]},
            {"op":"remove","path":"members[value eq \"d\"]"},
            {"op":"add","path":"members","value":[{"value":"e"}]}]}"#;
        assert_eq!(counted(Operation::PatchGroup, members).removed_members, 4);
        assert_eq!(
            counted(
                Operation::PatchGroup,
                r#"{"Operations":[{"op":"remove","path":"members"}]}"#
            )
            .removed_members,
            1
        );
        // Keys in any case, paths with spaces; entries that are not objects change nothing.
        let spelled = r#"{"operations":[
            {"OP":"Remove","PATH":" Members ","Value":[{"value":"a"},{"value":"b"}]},
            7,
            {"op":"remove","path":5,"value":[{"value":"c"}]},
            {"op":"remove","path":"members","value":"not a list"}]}"#;
        assert_eq!(counted(Operation::PatchGroup, spelled).removed_members, 3);
        let pathless = r#"{"Operations":[{"op":"Add","value":{"Active":"FALSE"}}]}"#;
        assert_eq!(counted(Operation::PatchUser, pathless).deactivated_users, 1);
        let not_false = r#"{"Operations":[{"op":"replace","path":"active","value":{"x":false}}]}"#;
        assert_eq!(counted(Operation::PatchUser, not_false).total(), 0);
        // Bodies that are not JSON count nothing and never panic.
        assert_eq!(counted(Operation::PatchGroup, "{not json").total(), 0);
    }

    /// The reference: every counted request kept forever, the sum recomputed from
    /// scratch over the window at each arrival.
    fn reference(arrivals: &[(u64, u32)], window_ms: u64, limit: u64) -> Vec<bool> {
        let mut kept: Vec<(u64, u32)> = Vec::new();
        let mut now = 0;
        arrivals
            .iter()
            .map(|&(gap, n)| {
                now += gap;
                let sum: u64 = kept
                    .iter()
                    .filter(|(at, _)| now - at < window_ms)
                    .map(|&(_, n)| u64::from(n))
                    .sum();
                let admitted = sum + u64::from(n) <= limit;
                if admitted {
                    kept.push((now, n));
                }
                admitted
            })
            .collect()
    }

    proptest! {
        #[test]
        fn the_window_agrees_with_a_recount_from_scratch(
            arrivals in proptest::collection::vec((0u64..3_000, 0u32..8), 0..300),
            window_ms in 1u64..20_000,
            limit in 0u64..40,
        ) {
            let mut window = Window::default();
            let mut now = 0;
            let got: Vec<bool> = arrivals
                .iter()
                .map(|&(gap, n)| {
                    now += gap;
                    window.try_add(now, window_ms, n, limit)
                })
                .collect();
            prop_assert_eq!(got, reference(&arrivals, window_ms, limit));
        }
    }
}
