//! Member changes split into sequential upstream requests.
//!
//! AWS takes at most 100 member changes in one request (CreateGroup › Constraints: "A
//! maximum of 100 members can be added in a single request"; PatchGroup › Constraints:
//! "A maximum of 100 membership changes are allowed in a single request"). A larger
//! change is sent as the first request plus follow-up PATCHes ([`Batch`]), in order.
//!
//! The rules decide what an operation does to the member list ([`MemberOp`]); this
//! module only moves member entries. Every entry is moved once into its request and
//! never copied, and an operation is copied only without its member list, so the cost
//! per member is the same at 1,000 members as at 10,000 (a copy of the whole operation
//! per 100-member chunk made a 10,000-member add cost 73 times a 1,000-member one).

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::scim::patch::PATCH_OP_SCHEMA;

/// Where a follow-up request of a split goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchTarget {
    /// The same resource as the original request (PatchGroup batches).
    SameResource,
    /// The group the first request creates: its id comes from that response.
    CreatedGroup,
}

/// A follow-up PATCH of a split request, sent after the first one succeeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Batch {
    pub target: BatchTarget,
    pub body: Value,
    /// The member ids this batch adds or removes, for the admin's report on failure.
    pub member_ids: Vec<String>,
}

/// What one PatchGroup operation does to the member list, as the rules read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOp {
    /// Adds or removes the members listed in an array: the operation's `value` (path
    /// `members`, `members_key` `None`), or `value[members_key]` (a path-less add).
    List { members_key: Option<String> },
    /// Surely leaves the member list alone: it stays in the first request.
    Elsewhere,
    /// Anything else (a remove of every member, a replace, a shape not understood): it
    /// keeps its place among the member changes.
    InPlace,
}

/// A PatchGroup split in requests of at most `max` member changes.
#[derive(Debug, Default)]
pub struct PatchSplit {
    /// The operations of the first request.
    pub operations: Vec<Value>,
    /// How many member changes the first request keeps.
    pub kept: usize,
    /// The follow-up requests, in order.
    pub batches: Vec<Batch>,
}

/// A PatchOp body holding `operations`.
pub fn patch_body(operations: Vec<Value>) -> Value {
    json!({ "schemas": [PATCH_OP_SCHEMA], "Operations": operations })
}

/// The value of `name` in an object, its key matched in any case (RFC 7643 §2.1).
fn get_any_case<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The member id of a member entry (`{"value": "…"}`), if it has a string one.
pub fn member_id(entry: &Value) -> Option<&str> {
    get_any_case(entry.as_object()?, "value")?.as_str()
}

/// The member ids of member entries, for a batch's report. An entry without a string
/// `value` is shown as JSON.
pub fn member_ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|m| member_id(m).map_or_else(|| m.to_string(), str::to_owned))
        .collect()
}

/// Splits a CreateGroup's member list: the first `max` stay in `members`, the rest go
/// into PATCHes of at most `max` each, sent to the created group. `max` > 0.
pub fn split_created_members(members: &mut Vec<Value>, max: usize) -> Vec<Batch> {
    if members.len() <= max {
        return Vec::new();
    }
    let mut rest = members.split_off(max).into_iter();
    let mut batches = Vec::new();
    loop {
        let part: Vec<Value> = rest.by_ref().take(max).collect();
        if part.is_empty() {
            return batches;
        }
        let member_ids = member_ids(&part);
        let op = json!({ "op": "add", "path": "members", "value": part });
        batches.push(Batch {
            target: BatchTarget::CreatedGroup,
            body: patch_body(vec![op]),
            member_ids,
        });
    }
}

/// The member list of an operation: its `value` (`members_key` `None`) or
/// `value[members_key]`, when that is an array.
fn member_list<'v>(op: &'v Value, members_key: Option<&str>) -> Option<&'v Vec<Value>> {
    let holder = match members_key {
        None => op.as_object(),
        Some(_) => op.get("value").and_then(Value::as_object),
    };
    holder?.get(members_key.unwrap_or("value"))?.as_array()
}

/// [`member_list`], to change.
fn member_list_mut<'v>(op: &'v mut Value, members_key: Option<&str>) -> Option<&'v mut Vec<Value>> {
    let holder = match members_key {
        None => op.as_object_mut(),
        Some(_) => op.get_mut("value").and_then(Value::as_object_mut),
    };
    holder?
        .get_mut(members_key.unwrap_or("value"))?
        .as_array_mut()
}

/// The member list of an operation, taken out of it: `(the operation without its list,
/// the list)`. `None` (and the operation back) when the list is not an array there.
fn take_list(mut op: Value, members_key: Option<&str>) -> Result<(Value, Vec<Value>), Value> {
    match member_list_mut(&mut op, members_key).map(std::mem::take) {
        Some(list) => Ok((op, list)),
        None => Err(op),
    }
}

/// Puts a member list back into an operation taken apart by [`take_list`].
fn put_list(op: &mut Value, members_key: Option<&str>, list: Vec<Value>) {
    let holder = match members_key {
        None => op.as_object_mut(),
        Some(_) => op.get_mut("value").and_then(Value::as_object_mut),
    };
    if let Some(holder) = holder {
        holder.insert(
            members_key.unwrap_or("value").to_owned(),
            Value::Array(list),
        );
    }
}

/// One request of a split PatchGroup: its operations and the member ids they change.
#[derive(Default)]
struct Chunk {
    operations: Vec<Value>,
    member_ids: Vec<String>,
}

/// Splits a PatchGroup's operations into requests of at most `max` member changes, in
/// order. Operations that leave the members alone stay in the first request; the others
/// keep their place in the sequence. A list split across requests goes on, after its
/// first part, as `{"op": …, "path": "members", "value": […]}`. `roles[i]` describes
/// `operations[i]`; `max` > 0.
pub fn split_patch(operations: Vec<Value>, roles: &[MemberOp], max: usize) -> PatchSplit {
    let max = max.max(1);
    let mut chunks = vec![Chunk::default()];
    let mut used = 0;
    for (op, role) in operations.into_iter().zip(roles) {
        let members_key = match role {
            MemberOp::List { members_key } => members_key.as_deref(),
            MemberOp::Elsewhere => {
                chunks[0].operations.push(op);
                continue;
            }
            MemberOp::InPlace => {
                push_last(&mut chunks, op);
                continue;
            }
        };
        let (shell, list) = match take_list(op, members_key) {
            Ok((shell, list)) if !list.is_empty() => (shell, list),
            Ok((mut shell, list)) => {
                put_list(&mut shell, members_key, list);
                push_last(&mut chunks, shell);
                continue;
            }
            Err(op) => {
                push_last(&mut chunks, op);
                continue;
            }
        };
        // What the list's later parts are sent as: the operation itself without its
        // list, or for a path-less add (whose value sets other attributes too) a plain
        // add on `members`. Either is a few fields: copying it costs nothing per member.
        let template = match members_key {
            None => shell.clone(),
            Some(_) => {
                json!({ "op": shell.get("op").cloned().unwrap_or_else(|| json!("add")), "path": "members" })
            }
        };
        let mut first = Some(shell);
        let mut remaining = list.len();
        let mut entries = list.into_iter();
        while remaining > 0 {
            if used >= max {
                chunks.push(Chunk::default());
                used = 0;
            }
            let take = (max - used).min(remaining);
            let part: Vec<Value> = entries.by_ref().take(take).collect();
            let ids = member_ids(&part);
            let piece = match first.take() {
                Some(mut shell) => {
                    put_list(&mut shell, members_key, part);
                    shell
                }
                None => {
                    let mut piece = template.clone();
                    put_list(&mut piece, None, part);
                    piece
                }
            };
            if let Some(last) = chunks.last_mut() {
                last.operations.push(piece);
                last.member_ids.extend(ids);
            }
            used += take;
            remaining -= take;
        }
    }
    let mut chunks = chunks.into_iter();
    let first = chunks.next().unwrap_or_default();
    PatchSplit {
        kept: first.member_ids.len(),
        operations: first.operations,
        batches: chunks
            .map(|chunk| Batch {
                target: BatchTarget::SameResource,
                body: patch_body(chunk.operations),
                member_ids: chunk.member_ids,
            })
            .collect(),
    }
}

fn push_last(chunks: &mut [Chunk], op: Value) {
    if let Some(last) = chunks.last_mut() {
        last.operations.push(op);
    }
}

/// A member entry that repeats the same change an earlier entry of the request makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// JSON pointer of the entry, as received.
    pub location: String,
    pub member: String,
    /// The index of its operation (0 for a CreateGroup's list) and its index in the list.
    pub operation: usize,
    pub index: usize,
}

/// The member entries that repeat the change an earlier entry of the same request
/// already makes: the same id added twice (or removed twice) with no other change to it
/// between. An add then a remove of one id are both kept (their order matters), and an
/// operation that changes the member list wholesale ([`MemberOp::InPlace`]) forgets
/// what came before it. Entries without a string `value` are left alone. Only read:
/// [`drop_patch_members`] removes them. `pointer(i)` is the JSON pointer of operation
/// `i`'s member list.
pub fn repeated_patch_members(
    operations: &[Value],
    roles: &[MemberOp],
    pointer: impl Fn(usize, Option<&str>) -> String,
) -> Vec<Duplicate> {
    // id (borrowed from its entry) → whether its last change was an add.
    let mut last: HashMap<&str, bool> = HashMap::new();
    let mut repeated = Vec::new();
    for (i, (op, role)) in operations.iter().zip(roles).enumerate() {
        let members_key = match role {
            MemberOp::List { members_key } => members_key.as_deref(),
            MemberOp::Elsewhere => continue,
            MemberOp::InPlace => {
                last.clear();
                continue;
            }
        };
        let adds = op
            .get("op")
            .and_then(Value::as_str)
            .is_none_or(|o| !o.eq_ignore_ascii_case("remove"));
        let Some(list) = member_list(op, members_key) else {
            continue;
        };
        let at = pointer(i, members_key);
        repeats(list, adds, &mut last, (i, &at), &mut repeated);
    }
    repeated
}

/// [`repeated_patch_members`] for a CreateGroup's member list, at `at`.
pub fn repeated_members(list: &[Value], at: &str) -> Vec<Duplicate> {
    let mut repeated = Vec::new();
    repeats(list, true, &mut HashMap::new(), (0, at), &mut repeated);
    repeated
}

fn repeats<'v>(
    list: &'v [Value],
    adds: bool,
    last: &mut HashMap<&'v str, bool>,
    (operation, at): (usize, &str),
    repeated: &mut Vec<Duplicate>,
) {
    for (index, entry) in list.iter().enumerate() {
        let Some(id) = member_id(entry) else { continue };
        if last.insert(id, adds) == Some(adds) {
            repeated.push(Duplicate {
                location: format!("{at}/{index}"),
                member: id.to_owned(),
                operation,
                index,
            });
        }
    }
}

/// Removes the entries [`repeated_patch_members`] found from the operations it read.
pub fn drop_patch_members(operations: &mut [Value], roles: &[MemberOp], repeated: &[Duplicate]) {
    for of_one in repeated.chunk_by(|a, b| a.operation == b.operation) {
        let i = of_one[0].operation;
        let Some(MemberOp::List { members_key }) = roles.get(i) else {
            continue;
        };
        let list = operations
            .get_mut(i)
            .and_then(|op| member_list_mut(op, members_key.as_deref()));
        if let Some(list) = list {
            drop_members(list, of_one);
        }
    }
}

/// Removes the entries [`repeated_members`] found from the list it read.
pub fn drop_members(list: &mut Vec<Value>, repeated: &[Duplicate]) {
    let mut dropped = repeated.iter().map(|d| d.index).peekable();
    let mut index = 0;
    list.retain(|_| {
        let drop = dropped.next_if_eq(&index).is_some();
        index += 1;
        !drop
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ids: &[&str]) -> Value {
        Value::Array(ids.iter().map(|i| json!({ "value": i })).collect())
    }

    fn list() -> MemberOp {
        MemberOp::List { members_key: None }
    }

    #[test]
    fn created_members_split_in_order() {
        let mut members: Vec<Value> = (0..7).map(|i| json!({ "value": i.to_string() })).collect();
        let batches = split_created_members(&mut members, 3);
        assert_eq!(members, m(&["0", "1", "2"]).as_array().unwrap().clone());
        let ids: Vec<Vec<String>> = batches.iter().map(|b| b.member_ids.clone()).collect();
        assert_eq!(ids, [vec!["3", "4", "5"], vec!["6"]]);
        assert_eq!(
            batches[1].body,
            patch_body(vec![
                json!({"op": "add", "path": "members", "value": m(&["6"])})
            ])
        );
        assert!(batches
            .iter()
            .all(|b| b.target == BatchTarget::CreatedGroup));
        let mut few = vec![json!({"value": "a"})];
        assert!(split_created_members(&mut few, 3).is_empty());
    }

    #[test]
    fn a_patch_keeps_the_operation_shape_of_every_part() {
        let ops = vec![
            json!({"op": "Remove", "path": "Members", "value": m(&["a", "b", "c"])}),
            json!({"op": "replace", "path": "displayName", "value": "N"}),
            json!({"op": "add", "value": {"displayName": "D", "members": m(&["d", "e"])}}),
        ];
        let roles = [
            list(),
            MemberOp::Elsewhere,
            MemberOp::List {
                members_key: Some("members".into()),
            },
        ];
        let split = split_patch(ops, &roles, 2);
        assert_eq!(split.kept, 2);
        assert_eq!(
            split.operations,
            [
                json!({"op": "Remove", "path": "Members", "value": m(&["a", "b"])}),
                json!({"op": "replace", "path": "displayName", "value": "N"}),
            ]
        );
        assert_eq!(
            split.batches[0].body,
            patch_body(vec![
                json!({"op": "Remove", "path": "Members", "value": m(&["c"])}),
                json!({"op": "add", "value": {"displayName": "D", "members": m(&["d"])}}),
            ])
        );
        assert_eq!(
            split.batches[1].body,
            patch_body(vec![
                json!({"op": "add", "path": "members", "value": m(&["e"])})
            ])
        );
    }

    #[test]
    fn a_repeated_member_change_is_sent_once() {
        let mut ops = vec![
            json!({"op": "add", "path": "members", "value": m(&["a", "b", "a"])}),
            json!({"op": "add", "path": "members", "value": m(&["b", "c"])}),
            json!({"op": "remove", "path": "members", "value": m(&["c", "c"])}),
            json!({"op": "add", "path": "members", "value": m(&["c"])}),
            json!({"op": "remove", "path": "members"}),
            json!({"op": "add", "path": "members", "value": m(&["a"])}),
            json!({"op": "add", "value": {"displayName": "D", "members": m(&["a", "d", "d"])}}),
        ];
        let roles = [
            list(),
            list(),
            list(),
            list(),
            MemberOp::InPlace,
            list(),
            MemberOp::List {
                members_key: Some("members".into()),
            },
        ];
        let pointer = |i, key: Option<&str>| match key {
            None => format!("/Operations/{i}/value"),
            Some(k) => format!("/Operations/{i}/value/{k}"),
        };
        let repeated = repeated_patch_members(&ops, &roles, pointer);
        let got: Vec<(&str, &str, usize, usize)> = repeated
            .iter()
            .map(|d| (d.location.as_str(), d.member.as_str(), d.operation, d.index))
            .collect();
        assert_eq!(
            got,
            [
                ("/Operations/0/value/2", "a", 0, 2),
                ("/Operations/1/value/0", "b", 1, 0),
                ("/Operations/2/value/1", "c", 2, 1),
                ("/Operations/6/value/members/0", "a", 6, 0),
                ("/Operations/6/value/members/2", "d", 6, 2),
            ]
        );
        drop_patch_members(&mut ops, &roles, &repeated);
        assert_eq!(ops[0]["value"], m(&["a", "b"]));
        assert_eq!(ops[1]["value"], m(&["c"]));
        assert_eq!(ops[2]["value"], m(&["c"]));
        // An add after a remove of the same member changes something: kept.
        assert_eq!(ops[3]["value"], m(&["c"]));
        // After a remove of every member, adding `a` again matters.
        assert_eq!(ops[5]["value"], m(&["a"]));
        assert_eq!(
            ops[6]["value"],
            json!({"displayName": "D", "members": m(&["d"])})
        );

        let mut created = m(&["x", "y", "x", "x"]).as_array().unwrap().clone();
        let repeated = repeated_members(&created, "/members");
        let at: Vec<&str> = repeated.iter().map(|d| d.location.as_str()).collect();
        assert_eq!(at, ["/members/2", "/members/3"]);
        drop_members(&mut created, &repeated);
        assert_eq!(Value::Array(created), m(&["x", "y"]));
    }
}
