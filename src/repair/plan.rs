//! The pure half of a repair: what the IdP asked for, the difference with the group's
//! current members, and the PATCH requests AWS takes for it. No I/O.

use serde_json::{json, Map, Value};

use crate::scim::{parse_path, PatchOpKind, PatchPath, PatchRequest};

/// Membership changes a PATCH may carry: "A maximum of 100 membership changes are
/// allowed in a single request" (PatchGroup › Constraints).
pub const MAX_CHANGES_PER_REQUEST: usize = 100;

/// One member operation of a PatchGroup, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOp {
    Add(Vec<String>),
    Remove(Vec<String>),
    /// `remove` of `members` with no value, `null` or `[]`.
    RemoveAll,
    /// `replace` of `members`, with a path or inside a path-less value.
    Replace(Vec<String>),
}

/// What the IdP asked for, read from its request.
#[derive(Debug, Clone, PartialEq)]
pub enum Ask {
    /// A PatchGroup: its member operations, and its displayName / externalId operations
    /// as `{"op", "path", "value"}` with paths (what AWS takes).
    Patch {
        members: Vec<MemberOp>,
        others: Vec<Value>,
    },
    /// A PUT /Groups/{id}. `members: None` (the attribute left out) keeps the
    /// membership: RFC 7644 §3.5.1 lets a server keep what a PUT omits, and dropping
    /// every member of a group because an IdP renamed it would be the worse mistake.
    /// Likewise an omitted externalId is kept.
    Put {
        display_name: Option<String>,
        external_id: Option<String>,
        members: Option<Vec<String>>,
    },
}

/// Why a request cannot be repaired (the rules have refused most such requests before).
pub type Unrepairable = String;

/// The attributes of a group AWS changes by PATCH (PatchGroup › Constraints).
const GROUP_ATTRIBUTES: [&str; 2] = ["displayName", "externalId"];

fn canonical_attribute(name: &str) -> Option<&'static str> {
    GROUP_ATTRIBUTES
        .into_iter()
        .find(|a| a.eq_ignore_ascii_case(name))
}

/// Member ids of a members value: `[{"value": "id"}, …]` or one such object.
fn member_ids(value: &Value) -> Result<Vec<String>, Unrepairable> {
    let entries: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![value],
        Value::Null => Vec::new(),
        other => {
            return Err(format!(
                "members must be a list of {{\"value\": …}}, not {other}"
            ))
        }
    };
    entries
        .into_iter()
        .map(|entry| {
            entry
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("value")))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("member entry {entry} has no string value"))
        })
        .collect()
}

/// The ids of `value eq "…"` terms joined by `or`.
fn filter_ids(filter: &crate::scim::Filter, out: &mut Vec<String>) -> Result<(), Unrepairable> {
    use crate::scim::{CompValue, CompareOp, Filter};
    match filter {
        Filter::Compare {
            attr,
            op: CompareOp::Eq,
            value: CompValue::String(id),
        } if attr.is("value") => {
            out.push(id.clone());
            Ok(())
        }
        Filter::Or(items) => items.iter().try_for_each(|f| filter_ids(f, out)),
        other => Err(format!("the member filter {other} names no member ids")),
    }
}

fn other_op(kind: PatchOpKind, attribute: &str, value: Option<&Value>) -> Value {
    let mut op = Map::new();
    op.insert("op".into(), kind.as_str().into());
    op.insert("path".into(), attribute.into());
    if let Some(v) = value {
        op.insert("value".into(), v.clone());
    }
    Value::Object(op)
}

/// Reads a PatchGroup body.
pub fn read_patch(body: &[u8]) -> Result<Ask, Unrepairable> {
    let request = PatchRequest::from_json(body)
        .map_err(|e| format!("the body is not a PatchOp message: {e}"))?;
    let mut members = Vec::new();
    let mut others = Vec::new();
    for (i, op) in request.operations.iter().enumerate() {
        let kind = op.kind().ok_or_else(|| {
            format!(
                "operation {i}: op {:?} is not add, replace or remove",
                op.op
            )
        })?;
        let Some(path) = op.path.as_deref() else {
            let Some(Value::Object(value)) = &op.value else {
                return Err(format!(
                    "operation {i}: a path-less {} needs an object value",
                    kind.as_str()
                ));
            };
            for (key, v) in value {
                if key.eq_ignore_ascii_case("members") {
                    let ids = member_ids(v)?;
                    members.push(match kind {
                        PatchOpKind::Replace => MemberOp::Replace(ids),
                        _ => MemberOp::Add(ids),
                    });
                } else if let Some(name) = canonical_attribute(key) {
                    others.push(other_op(kind, name, Some(v)));
                }
                // `id`, `schemas`, `meta`: read-only, ignored as AWS ignores them.
            }
            continue;
        };
        let parsed = parse_path(path).map_err(|e| format!("operation {i}: path {path:?}: {e}"))?;
        let attr = parsed.attr();
        if !attr.name.eq_ignore_ascii_case("members") {
            let name = canonical_attribute(&attr.name)
                .filter(|_| attr.sub_attr.is_none())
                .ok_or_else(|| {
                    format!("operation {i}: AWS changes no attribute {path:?} of a group")
                })?;
            others.push(other_op(
                kind,
                name,
                op.value.as_ref().filter(|v| !v.is_null()),
            ));
            continue;
        }
        let member_op = match (&parsed, kind) {
            (PatchPath::ValuePath { filter, .. }, PatchOpKind::Remove) => {
                let mut ids = Vec::new();
                filter_ids(filter, &mut ids)?;
                MemberOp::Remove(ids)
            }
            (PatchPath::ValuePath { .. }, _) => {
                return Err(format!("operation {i}: {} of {path:?}", kind.as_str()))
            }
            (_, PatchOpKind::Add) => {
                MemberOp::Add(member_ids(op.value.as_ref().unwrap_or(&Value::Null))?)
            }
            (_, PatchOpKind::Replace) => {
                MemberOp::Replace(member_ids(op.value.as_ref().unwrap_or(&Value::Null))?)
            }
            (_, PatchOpKind::Remove) => match op.value.as_ref().map(member_ids).transpose()? {
                None => MemberOp::RemoveAll,
                Some(ids) if ids.is_empty() => MemberOp::RemoveAll,
                Some(ids) => MemberOp::Remove(ids),
            },
        };
        members.push(member_op);
    }
    Ok(Ask::Patch { members, others })
}

/// Reads a PUT /Groups/{id} body.
pub fn read_put(body: &[u8]) -> Result<Ask, Unrepairable> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "the body is not a JSON object".to_owned())?;
    let get = |name: &str| {
        object
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_null())
            .map(|(_, v)| v)
    };
    let text = |name: &str| -> Result<Option<String>, Unrepairable> {
        match get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{name} must be a string, not {other}")),
        }
    };
    Ok(Ask::Put {
        display_name: text("displayName")?,
        external_id: text("externalId")?,
        members: get("members").map(member_ids).transpose()?,
    })
}

/// What a repair sends, and what it amounts to.
#[derive(Debug, Clone, PartialEq)]
pub struct Changes {
    /// displayName / externalId operations, with paths.
    pub others: Vec<Value>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    pub unchanged: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.others.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// "group Finance: 30 added, 50 removed, 100 unchanged".
    pub fn summary(&self, group: &str) -> String {
        let mut text = format!(
            "group {group}: {} added, {} removed, {} unchanged",
            self.add.len(),
            self.remove.len(),
            self.unchanged
        );
        for op in &self.others {
            let path = op["path"].as_str().unwrap_or_default();
            match op.get("value") {
                Some(v) => text.push_str(&format!(", {path} set to {v}")),
                None => text.push_str(&format!(", {path} removed")),
            }
        }
        text
    }
}

/// The members the group ends with: `current` after the member operations, in order.
fn members_after(current: &[String], ops: &[MemberOp]) -> Vec<String> {
    let mut members: Vec<String> = current.to_vec();
    for op in ops {
        match op {
            MemberOp::Add(ids) => {
                for id in ids {
                    if !members.contains(id) {
                        members.push(id.clone());
                    }
                }
            }
            MemberOp::Remove(ids) => members.retain(|m| !ids.contains(m)),
            MemberOp::RemoveAll => members.clear(),
            MemberOp::Replace(ids) => {
                members.clear();
                for id in ids {
                    if !members.contains(id) {
                        members.push(id.clone());
                    }
                }
            }
        }
    }
    members
}

/// The difference between the group as it is (`current` members, `group` as GetGroup
/// returns it) and what `ask` wants.
pub fn diff(ask: &Ask, current: &[String], group: &Value) -> Changes {
    let (wanted, others) = match ask {
        Ask::Patch { members, others } => (members_after(current, members), others.clone()),
        Ask::Put {
            display_name,
            external_id,
            members,
        } => {
            let mut others = Vec::new();
            for (name, value) in [("displayName", display_name), ("externalId", external_id)] {
                if let Some(value) = value {
                    if group.get(name).and_then(Value::as_str) != Some(value.as_str()) {
                        others.push(json!({"op": "replace", "path": name, "value": value}));
                    }
                }
            }
            let wanted = match members {
                Some(ids) => members_after(&[], &[MemberOp::Replace(ids.clone())]),
                None => current.to_vec(),
            };
            (wanted, others)
        }
    };
    let current_set: std::collections::HashSet<&str> = current.iter().map(String::as_str).collect();
    let wanted_set: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
    Changes {
        others,
        add: wanted
            .iter()
            .filter(|m| !current_set.contains(m.as_str()))
            .cloned()
            .collect(),
        remove: current
            .iter()
            .filter(|m| !wanted_set.contains(m.as_str()))
            .cloned()
            .collect(),
        unchanged: current
            .iter()
            .filter(|m| wanted_set.contains(m.as_str()))
            .count(),
    }
}

/// One PATCH of a repair, and the membership changes it carries (for the report).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub body: Value,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Request {
    /// A PatchOp body, with the members its `add` and `remove` operations list.
    fn of(body: Value) -> Request {
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for op in body["Operations"].as_array().into_iter().flatten() {
            let ids = match op["op"].as_str() {
                Some("add") => &mut added,
                Some("remove") => &mut removed,
                _ => continue,
            };
            let entries = op["value"].as_array().map_or(&[][..], Vec::as_slice);
            ids.extend(crate::batches::member_ids(entries));
        }
        Request {
            body,
            added,
            removed,
        }
    }
}

/// The PATCH requests for `changes`: the displayName / externalId operations in the
/// first, then removals before additions (so a group never holds both the old and the
/// new list), split as every member change is ([`crate::batches::split_patch`]): at
/// most [`MAX_CHANGES_PER_REQUEST`] membership changes each, every request but the
/// last full.
pub fn requests(changes: &Changes) -> Vec<Request> {
    use crate::batches::{patch_body, split_patch, MemberOp as Role};
    let mut operations = changes.others.clone();
    let mut roles = vec![Role::Elsewhere; operations.len()];
    for (kind, ids) in [("remove", &changes.remove), ("add", &changes.add)] {
        if !ids.is_empty() {
            let entries: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
            operations.push(json!({"op": kind, "path": "members", "value": entries}));
            roles.push(Role::List { members_key: None });
        }
    }
    if operations.is_empty() {
        return Vec::new();
    }
    let split = split_patch(operations, &roles, MAX_CHANGES_PER_REQUEST);
    std::iter::once(patch_body(split.operations))
        .chain(split.batches.into_iter().map(|batch| batch.body))
        .map(Request::of)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::patch::PATCH_OP_SCHEMA;

    fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("{prefix}{i}")).collect()
    }

    fn patch(ops: Value) -> Vec<u8> {
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn every_form_of_replace_and_remove_all_is_read() {
        let ask = read_patch(&patch(json!([
            {"op": "Replace", "path": "members", "value": [{"value": "a"}, {"VALUE": "b"}]},
            {"op": "replace", "value": {"id": "x", "displayName": "New", "Members": [{"value": "c"}]}},
            {"op": "remove", "path": "members"},
            {"op": "remove", "path": "members", "value": null},
            {"op": "remove", "path": "members", "value": []},
            {"op": "remove", "path": "members[value eq \"d\" or value eq \"e\"]"},
            {"op": "add", "path": "members", "value": {"value": "f"}},
            {"op": "remove", "path": "externalId"},
        ])))
        .unwrap();
        assert_eq!(
            ask,
            Ask::Patch {
                members: vec![
                    MemberOp::Replace(vec!["a".into(), "b".into()]),
                    MemberOp::Replace(vec!["c".into()]),
                    MemberOp::RemoveAll,
                    MemberOp::RemoveAll,
                    MemberOp::RemoveAll,
                    MemberOp::Remove(vec!["d".into(), "e".into()]),
                    MemberOp::Add(vec!["f".into()]),
                ],
                others: vec![
                    json!({"op": "replace", "path": "displayName", "value": "New"}),
                    json!({"op": "remove", "path": "externalId"}),
                ],
            }
        );
        for bad in [
            json!([{"op": "move", "path": "members"}]),
            json!([{"op": "replace", "path": "description", "value": "x"}]),
            json!([{"op": "replace", "path": "members", "value": [{"display": "x"}]}]),
            json!([{"op": "replace", "path": "members", "value": "x"}]),
        ] {
            assert!(read_patch(&patch(bad.clone())).is_err(), "{bad}");
        }
        assert!(read_patch(b"not json").is_err());
    }

    #[test]
    fn a_put_keeps_what_it_leaves_out() {
        let ask = read_put(br#"{"displayName": "Finance", "members": [{"value": "a"}]}"#).unwrap();
        let group = json!({"id": "g", "displayName": "Old", "externalId": "e"});
        let changes = diff(&ask, &["a".into(), "b".into()], &group);
        assert_eq!(
            changes,
            Changes {
                others: vec![json!({"op": "replace", "path": "displayName", "value": "Finance"})],
                add: vec![],
                remove: vec!["b".into()],
                unchanged: 1,
            }
        );
        let ask = read_put(br#"{"displayName": "Old"}"#).unwrap();
        assert!(diff(&ask, &["a".into()], &group).is_empty());
        let ask = read_put(br#"{"displayName": "Old", "members": []}"#).unwrap();
        assert_eq!(diff(&ask, &["a".into()], &group).remove, ["a"]);
        assert!(read_put(br#"{"displayName": 5}"#).is_err());
    }

    #[test]
    fn keep_100_drop_50_add_30() {
        let current = ids("u", 0..150);
        let mut wanted = ids("u", 50..150);
        wanted.extend(ids("n", 0..30));
        let members: Vec<Value> = wanted.iter().map(|id| json!({"value": id})).collect();
        let ask = read_patch(&patch(
            json!([{"op": "replace", "path": "members", "value": members}]),
        ))
        .unwrap();
        let changes = diff(&ask, &current, &json!({}));
        assert_eq!(
            (changes.add.len(), changes.remove.len(), changes.unchanged),
            (30, 50, 100)
        );
        assert_eq!(changes.remove, ids("u", 0..50));
        assert_eq!(
            changes.summary("Finance"),
            "group Finance: 30 added, 50 removed, 100 unchanged"
        );
        let sent = requests(&changes);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].body["Operations"][0]["op"], "remove");
        assert_eq!(sent[0].body["Operations"][1]["op"], "add");
        // Nothing changed: nothing is sent.
        let same: Vec<Value> = current.iter().map(|id| json!({"value": id})).collect();
        let ask = read_patch(&patch(
            json!([{"op": "replace", "path": "members", "value": same}]),
        ))
        .unwrap();
        let changes = diff(&ask, &current, &json!({}));
        assert!(changes.is_empty());
        assert!(requests(&changes).is_empty());
    }

    #[test]
    fn requests_hold_at_most_100_changes_and_the_renames_first() {
        let changes = Changes {
            others: vec![json!({"op": "replace", "path": "displayName", "value": "X"})],
            add: ids("a", 0..130),
            remove: ids("r", 0..120),
            unchanged: 0,
        };
        let sent = requests(&changes);
        let sizes: Vec<usize> = sent
            .iter()
            .map(|r| r.added.len() + r.removed.len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(sent[0].body["Operations"][0]["path"], "displayName");
        assert_eq!(sent[1].removed.len(), 20);
        assert_eq!(sent[1].added.len(), 80);
        let all_added: Vec<String> = sent.iter().flat_map(|r| r.added.clone()).collect();
        assert_eq!(all_added, changes.add);
        for r in &sent {
            let count: usize = r.body["Operations"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|op| op["path"] == "members")
                .map(|op| op["value"].as_array().unwrap().len())
                .sum();
            assert!(count <= MAX_CHANGES_PER_REQUEST);
        }
        // Only a rename: one request.
        let rename = Changes {
            others: changes.others.clone(),
            add: vec![],
            remove: vec![],
            unchanged: 5,
        };
        assert_eq!(requests(&rename).len(), 1);
    }

    #[test]
    fn remove_all_then_add_is_the_new_list() {
        let ask = read_patch(&patch(json!([
            {"op": "remove", "path": "members"},
            {"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "n1"}]},
        ])))
        .unwrap();
        let changes = diff(&ask, &["u1".into(), "u2".into()], &json!({}));
        assert_eq!(
            (changes.add, changes.remove, changes.unchanged),
            (vec!["n1".to_owned()], vec!["u2".to_owned()], 1)
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any body: an answer or a reason, never a panic; and the requests built from
        /// any membership change hold at most 100 changes each and lose none.
        #[test]
        fn any_body_and_any_change_is_handled(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            current in proptest::collection::vec("[a-e]{1,2}", 0..300),
            wanted in proptest::collection::vec("[a-e]{1,2}", 0..300),
        ) {
            let _ = read_patch(&body);
            let _ = read_put(&body);
            let ask = Ask::Patch { members: vec![MemberOp::Replace(wanted.clone())], others: vec![] };
            let changes = diff(&ask, &current, &Value::Null);
            let sent = requests(&changes);
            let mut added = Vec::new();
            let mut removed = Vec::new();
            for r in &sent {
                prop_assert!(r.added.len() + r.removed.len() <= MAX_CHANGES_PER_REQUEST);
                added.extend(r.added.clone());
                removed.extend(r.removed.clone());
            }
            prop_assert_eq!(added, changes.add.clone());
            prop_assert_eq!(removed, changes.remove.clone());
        }
    }
}
