//! Checks specific to groups: member lists on CreateGroup and PatchGroup.

use serde_json::{json, Value};

use super::attr::key_in;
use super::checks::patch::{
    and_list, has_path, is_op_on, names, op_kind, op_text, operations, operations_mut,
    remove_operations, OPERATIONS,
};
use super::context::{pointer_token, show, Body, Reporter, RequestView, State};
use crate::batches::{self, MemberOp};
use crate::scim::filter::{CompValue, CompareOp, Filter};
use crate::scim::operation::Operation;
use crate::scim::patch::PatchOpKind;
use crate::scim::path::{parse_path, PatchPath};

/// The member list of a PatchGroup operation: an add/remove on the path `members`
/// (`None` key), or a path-less add/replace whose value has `members` (its key).
fn patch_member_list<'v>(
    op: &'v Value,
    pathless_kinds: &[PatchOpKind],
) -> Option<(Option<String>, &'v Vec<Value>)> {
    let o = op.as_object()?;
    if is_op_on(o, &[PatchOpKind::Add, PatchOpKind::Remove], "members") {
        return o.get("value")?.as_array().map(|list| (None, list));
    }
    if has_path(o) || !op_kind(op).is_some_and(|k| pathless_kinds.contains(&k)) {
        return None;
    }
    let value = o.get("value")?.as_object()?;
    let key = key_in(value, "members")?;
    value.get(&key)?.as_array().map(|list| (Some(key), list))
}

pub(crate) fn members_limit(r: &Reporter<'_>, max: usize, state: &mut State) {
    let Some(body) = state.object() else { return };
    let Some(key) = key_in(body, "members") else {
        return;
    };
    let Some(Value::Array(members)) = body.get(&key) else {
        return;
    };
    let count = members.len();
    if count <= max {
        return;
    }
    let at = format!("/{}", pointer_token(&key));
    let mut vars = vec![("count", count.to_string()), ("max", max.to_string())];
    if max == 0 {
        vars.extend([("batches", "-".to_owned()), ("requests", "-".to_owned())]);
        r.unfixable(state, at, &vars);
        return;
    }
    let batches = (count - max).div_ceil(max);
    vars.push(("batches", batches.to_string()));
    vars.push(("requests", (batches + 1).to_string()));
    if !r.rewrites() {
        r.report(state, at, &vars);
        return;
    }
    if let Some(Value::Array(members)) = state.object_mut().and_then(|b| b.get_mut(&key)) {
        let split = batches::split_created_members(members, max);
        state.batches.extend(split);
    }
    let before = format!("{count} members");
    let after = format!(
        "{max} members, then {} more in {batches} PATCH request(s)",
        count - max
    );
    r.fixed(state, at, &vars, before, after);
}

pub(crate) fn member_entries(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    // JSON pointers of the member lists.
    let lists: Vec<String> = match request.operation {
        Operation::CreateGroup => {
            let Some(body) = state.object() else { return };
            key_in(body, "members")
                .map(|k| format!("/{}", pointer_token(&k)))
                .into_iter()
                .collect()
        }
        Operation::PatchGroup => {
            let Some(ops) = operations(state) else { return };
            ops.iter()
                .enumerate()
                .filter_map(|(i, op)| {
                    let (key, _) =
                        patch_member_list(op, &[PatchOpKind::Add, PatchOpKind::Replace])?;
                    Some(match key {
                        None => format!("/{OPERATIONS}/{i}/value"),
                        Some(k) => format!("/{OPERATIONS}/{i}/value/{}", pointer_token(&k)),
                    })
                })
                .collect()
        }
        _ => return,
    };
    let Body::Json(root) = &state.body else {
        return;
    };
    // (entry pointer, key, old value)
    let mut hits: Vec<(String, String, Value)> = Vec::new();
    for list in lists {
        let Some(Value::Array(entries)) = root.pointer(&list) else {
            continue;
        };
        for (j, entry) in entries.iter().enumerate() {
            let Some(entry) = entry.as_object() else {
                continue;
            };
            for (key, v) in entry {
                let drop = key.eq_ignore_ascii_case("display")
                    || (key.eq_ignore_ascii_case("$ref") && v.is_null());
                if drop {
                    hits.push((format!("{list}/{j}"), key.clone(), v.clone()));
                }
            }
        }
    }
    for (at, key, old) in hits {
        let attribute = if old.is_null() {
            format!("\"{key}\": null")
        } else {
            key.clone()
        };
        let vars = [("attribute", attribute)];
        if r.rewrites() {
            if let Body::Json(root) = &mut state.body {
                if let Some(entry) = root.pointer_mut(&at).and_then(Value::as_object_mut) {
                    entry.remove(&key);
                }
            }
            r.fixed(state, at, &vars, old.to_string(), show(None));
        } else {
            r.report(state, at, &vars);
        }
    }
}

pub(crate) fn patch_pathless(
    r: &Reporter<'_>,
    allowed: &[String],
    request: &RequestView<'_>,
    state: &mut State,
) {
    enum Verdict {
        /// Safe to drop: the group's own id, `schemas`, `meta`.
        Drop(&'static str),
        /// Not allowed and not safe to drop.
        Refuse(String),
    }
    let Some(ops) = operations(state) else { return };
    let only = format!(
        "; AWS IAM Identity Center accepts only {}",
        and_list(allowed)
    );
    // (operation index, key, old value, verdict)
    let mut hits: Vec<(usize, String, Value, Verdict)> = Vec::new();
    for (i, item) in ops.iter().enumerate() {
        let Some(op) = item.as_object() else { continue };
        if has_path(op) {
            continue;
        }
        let Some(Value::Object(value)) = op.get("value") else {
            continue;
        };
        for (key, v) in value {
            let verdict = if key.eq_ignore_ascii_case("id") {
                match (v.as_str(), request.resource_id) {
                    (Some(id), Some(own)) if id == own => {
                        Verdict::Drop("; it repeats the group's own id, which cannot be set")
                    }
                    // The guide's own PatchGroup example sends an id that is not the
                    // group's, and AWS answers 204: the id is read-only and ignored.
                    _ => Verdict::Drop(
                        "; it differs from the group's id in the URL and is read-only (AWS ignores it, as in the guide's PatchGroup example)",
                    ),
                }
            } else if key.eq_ignore_ascii_case("schemas") || key.eq_ignore_ascii_case("meta") {
                Verdict::Drop("; it is not allowed there")
            } else if allowed.iter().any(|a| a.eq_ignore_ascii_case(key)) {
                continue;
            } else {
                Verdict::Refuse(only.clone())
            };
            hits.push((i, key.clone(), v.clone(), verdict));
        }
    }
    let mut emptied = Vec::new();
    for (i, key, old, verdict) in hits {
        let at = format!("/{OPERATIONS}/{i}/value/{}", pointer_token(&key));
        let mut vars = vec![("index", i.to_string()), ("attribute", key.clone())];
        match verdict {
            Verdict::Drop(why) if r.rewrites() => {
                vars.push(("fixed", format!("{why}, so it was removed")));
                let value = operations_mut(state)
                    .and_then(|ops| ops.get_mut(i))
                    .and_then(|op| op.get_mut("value"))
                    .and_then(Value::as_object_mut);
                if let Some(value) = value {
                    value.remove(&key);
                    if value.is_empty() {
                        emptied.push(i);
                    }
                }
                r.fixed(state, at, &vars, old.to_string(), show(None));
            }
            Verdict::Drop(why) => {
                vars.push(("fixed", why.to_owned()));
                r.report(state, at, &vars);
            }
            Verdict::Refuse(why) => {
                vars.push(("fixed", why));
                r.unfixable(state, at, &vars);
            }
        }
    }
    remove_operations(state, &emptied);
}

pub(crate) fn replace_members(r: &Reporter<'_>, state: &mut State) {
    let Some(ops) = operations(state) else { return };
    let hits: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, item)| {
            let Some(op) = item.as_object() else {
                return false;
            };
            if op_kind(item) != Some(PatchOpKind::Replace) {
                return false;
            }
            if has_path(op) {
                // `members`, `members[value eq "…"]`, `members.value`: all replace members.
                let path = op.get("path").and_then(Value::as_str).map(parse_path);
                matches!(path, Some(Ok(p)) if names(p.attr(), "members"))
            } else {
                op.get("value")
                    .and_then(Value::as_object)
                    .is_some_and(|v| key_in(v, "members").is_some())
            }
        })
        .map(|(i, _)| i)
        .collect();
    for i in hits {
        r.report(
            state,
            format!("/{OPERATIONS}/{i}"),
            &[("index", i.to_string())],
        );
    }
}

pub(crate) fn remove_all_members(r: &Reporter<'_>, state: &mut State) {
    let Some(ops) = operations(state) else { return };
    let hits: Vec<(usize, String)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let op = item.as_object()?;
            if op_kind(item) != Some(PatchOpKind::Remove) {
                return None;
            }
            let path = op.get("path").and_then(Value::as_str).map(parse_path);
            // The plain path `members` (any case, with or without the core URN); a value
            // filter or a sub-attribute names some members, not all.
            let Some(Ok(PatchPath::Attr(attr))) = path else {
                return None;
            };
            if attr.sub_attr.is_some() || !names(&attr, "members") {
                return None;
            }
            let sent = match op.get("value") {
                None => "no value",
                Some(Value::Null) => "\"value\": null",
                Some(Value::Array(list)) if list.is_empty() => "\"value\": []",
                Some(_) => return None,
            };
            Some((i, sent.to_owned()))
        })
        .collect();
    for (i, sent) in hits {
        r.report(
            state,
            format!("/{OPERATIONS}/{i}"),
            &[("index", i.to_string()), ("sent", sent)],
        );
    }
}

/// The member id of a `members[value eq "…"]` path (any case), if that is what it is.
fn member_filter(path: &PatchPath) -> Option<&str> {
    let PatchPath::ValuePath {
        attr,
        filter,
        sub_attr: None,
    } = path
    else {
        return None;
    };
    if attr.sub_attr.is_some() || !names(attr, "members") {
        return None;
    }
    match filter {
        Filter::Compare {
            attr,
            op: CompareOp::Eq,
            value: CompValue::String(id),
        } if attr.is("value") => Some(id),
        _ => None,
    }
}

pub(crate) fn remove_member_filter(r: &Reporter<'_>, state: &mut State) {
    let Some(ops) = operations(state) else { return };
    // (index, path as sent, member id, the operation before, after)
    let mut hits: Vec<(usize, String, String, Value, Value)> = Vec::new();
    for (i, item) in ops.iter().enumerate() {
        let Some(op) = item.as_object() else { continue };
        if op_kind(item) != Some(PatchOpKind::Remove) {
            continue;
        }
        let Some(text) = op.get("path").and_then(Value::as_str) else {
            continue;
        };
        let Ok(path) = parse_path(text) else { continue };
        let Some(id) = member_filter(&path) else {
            continue;
        };
        let sent = op_text(item).unwrap_or("remove");
        let after = json!({ "op": sent, "path": "members", "value": [{ "value": id }] });
        hits.push((i, text.to_owned(), id.to_owned(), item.clone(), after));
    }
    for (i, path, member, before, after) in hits {
        let at = format!("/{OPERATIONS}/{i}");
        let vars = [("index", i.to_string()), ("path", path), ("member", member)];
        if r.rewrites() {
            if let Some(op) = operations_mut(state).and_then(|ops| ops.get_mut(i)) {
                *op = after.clone();
            }
            r.fixed(state, at, &vars, before.to_string(), after.to_string());
        } else {
            r.report(state, at, &vars);
        }
    }
}

/// What each operation does to the member list, for [`batches`]: a list it adds (or,
/// on the path `members`, removes); surely nothing (its path names another attribute,
/// or its path-less value has no `members`); or anything else (a remove of every
/// member, a replace, a shape not understood), which keeps its place.
fn member_roles(ops: &[Value]) -> Vec<MemberOp> {
    ops.iter()
        .map(|op| {
            if let Some((members_key, _)) = patch_member_list(op, &[PatchOpKind::Add]) {
                return MemberOp::List { members_key };
            }
            if leaves_members(op) {
                MemberOp::Elsewhere
            } else {
                MemberOp::InPlace
            }
        })
        .collect()
}

/// Whether the operation surely leaves the member list alone.
fn leaves_members(op: &Value) -> bool {
    let Some(o) = op.as_object() else {
        return false;
    };
    if has_path(o) {
        let path = o.get("path").and_then(Value::as_str).map(parse_path);
        return matches!(path, Some(Ok(p)) if !names(p.attr(), "members"));
    }
    match o.get("value") {
        Some(Value::Object(value)) => key_in(value, "members").is_none(),
        _ => true,
    }
}

/// A member added (or removed) twice in one request is sent once: the second change
/// would count against AWS's 100 per request for nothing.
pub(crate) fn duplicate_members(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    let rewrites = r.rewrites();
    let (dropped, changes) = match request.operation {
        Operation::CreateGroup => {
            let Some(body) = state.object_mut() else {
                return;
            };
            let Some(key) = key_in(body, "members") else {
                return;
            };
            let Some(Value::Array(members)) = body.get_mut(&key) else {
                return;
            };
            let at = format!("/{}", pointer_token(&key));
            let count = members.len();
            let dropped = batches::repeated_members(members, &at);
            if rewrites {
                batches::drop_members(members, &dropped);
            }
            (dropped, count)
        }
        Operation::PatchGroup => {
            let Some(ops) = operations(state) else { return };
            let roles = member_roles(ops);
            let count: usize = ops
                .iter()
                .filter_map(|op| patch_member_list(op, &[PatchOpKind::Add]))
                .map(|(_, list)| list.len())
                .sum();
            let pointer = |i: usize, key: Option<&str>| match key {
                None => format!("/{OPERATIONS}/{i}/value"),
                Some(k) => format!("/{OPERATIONS}/{i}/value/{}", pointer_token(k)),
            };
            let dropped = batches::repeated_patch_members(ops, &roles, pointer);
            if rewrites && !dropped.is_empty() {
                if let Some(ops) = operations_mut(state) {
                    batches::drop_patch_members(ops, &roles, &dropped);
                }
            }
            (dropped, count)
        }
        _ => return,
    };
    let Some(first) = dropped.first() else { return };
    const SHOWN: usize = 5;
    let mut members: Vec<&str> = dropped
        .iter()
        .take(SHOWN)
        .map(|d| d.member.as_str())
        .collect();
    let more = dropped.len().saturating_sub(SHOWN);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    members.dedup();
    let vars = [
        ("count", dropped.len().to_string()),
        ("members", format!("{}{more}", members.join(", "))),
    ];
    let at = first.location.clone();
    if rewrites {
        let before = format!("{changes} membership changes");
        let after = format!("{} membership changes", changes - dropped.len());
        r.fixed(state, at, &vars, before, after);
    } else {
        r.report(state, at, &vars);
    }
}

pub(crate) fn patch_members_limit(r: &Reporter<'_>, max: usize, state: &mut State) {
    let Some(ops) = operations(state) else { return };
    let count: usize = ops
        .iter()
        .filter_map(|op| patch_member_list(op, &[PatchOpKind::Add]))
        .map(|(_, list)| list.len())
        .sum();
    if count <= max {
        return;
    }
    let at = format!("/{OPERATIONS}");
    let mut vars = vec![("count", count.to_string()), ("max", max.to_string())];
    if max == 0 {
        vars.extend([("batches", "-".to_owned()), ("requests", "-".to_owned())]);
        r.unfixable(state, at, &vars);
        return;
    }
    // Greedy packing fills every request but the last, so the count is minimal.
    let batches = count.div_ceil(max) - 1;
    vars.push(("batches", batches.to_string()));
    vars.push(("requests", (batches + 1).to_string()));
    if !r.rewrites() {
        r.report(state, at, &vars);
        return;
    }
    let roles = member_roles(ops);
    let Some(ops) = operations_mut(state) else {
        return;
    };
    let split = batches::split_patch(std::mem::take(ops), &roles, max);
    *ops = split.operations;
    let kept = split.kept;
    state.batches.extend(split.batches);
    let before = format!("{count} membership changes");
    let after = format!(
        "{kept} in this request, then {} more in {batches} request(s)",
        count - kept
    );
    r.fixed(state, at, &vars, before, after);
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::batches::{Batch, BatchTarget};
    use crate::rules::checks::patch::tests::{
        assert_eval, embedded, eval, patch, patched, unfilled, Expect,
    };
    use crate::rules::Action::{self, Reject, Rewrite, Warn};
    use crate::scim::operation::Operation;

    const GROUP: &str = "9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d";

    /// `(name, action, operation, body, findings, rewritten or None)` against one check.
    type Case = (
        &'static str,
        Action,
        Operation,
        String,
        Vec<Expect>,
        Option<Value>,
    );

    fn run_cases(check: &str, message: &str, cases: Vec<Case>) {
        for (name, action, operation, body, findings, rewritten) in cases {
            let e = eval(check, action, message, operation, Some(GROUP), &body);
            assert_eval(name, &e, &findings, rewritten.as_ref());
            if action != Rewrite {
                assert!(
                    e.batches.is_empty() && e.findings.iter().all(|f| f.fix.is_none()),
                    "{name}"
                );
            }
        }
    }

    fn members(range: std::ops::Range<usize>) -> Vec<Value> {
        range.map(|i| json!({ "value": format!("u{i}") })).collect()
    }

    fn ids(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("u{i}")).collect()
    }

    #[test]
    fn member_entries() {
        let check = r#"{ kind = "member-entries" }"#;
        let create = json!({"displayName": "G", "members": [
            {"value": "a", "display": "A", "$ref": null},
            {"value": "b", "$ref": "https://x/Users/b"},
            "c",
            {"value": "d", "Display": null}
        ]});
        let mut created = create.clone();
        created["members"][0] = json!({"value": "a"});
        created["members"][3] = json!({"value": "d"});
        let created_found = |a| {
            vec![
                (a, "/members/0", "/members/0|\"$ref\": null"),
                (a, "/members/0", "/members/0|display"),
                (a, "/members/3", "/members/3|\"Display\": null"),
            ]
        };
        let ops = json!([
            {"op": "add", "path": "members", "value": [{"value": "a", "display": "A"}]},
            {"op": "Remove", "path": "members", "value": [{"value": "b", "$ref": null}]},
            {"op": "add", "value": {"members": [{"value": "c", "display": "C"}], "displayName": "D"}},
            {"op": "replace", "path": "displayName", "value": {"display": "x"}},
            {"op": "add", "path": "members", "value": "not an array"},
            {"op": "add", "path": "members[value eq \"x\"]", "value": [{"display": "x"}]},
        ]);
        let mut fixed = ops.clone();
        fixed[0]["value"][0] = json!({"value": "a"});
        fixed[1]["value"][0] = json!({"value": "b"});
        fixed[2]["value"]["members"][0] = json!({"value": "c"});
        let patch_found = |a| {
            vec![
                (a, "/Operations/0/value/0", "/Operations/0/value/0|display"),
                (
                    a,
                    "/Operations/1/value/0",
                    "/Operations/1/value/0|\"$ref\": null",
                ),
                (
                    a,
                    "/Operations/2/value/members/0",
                    "/Operations/2/value/members/0|display",
                ),
            ]
        };
        run_cases(
            check,
            "{location}|{attribute}",
            vec![
                (
                    "create",
                    Rewrite,
                    Operation::CreateGroup,
                    create.to_string(),
                    created_found(Rewrite),
                    Some(created),
                ),
                (
                    "create reject",
                    Reject,
                    Operation::CreateGroup,
                    create.to_string(),
                    created_found(Reject),
                    None,
                ),
                (
                    "patch",
                    Rewrite,
                    Operation::PatchGroup,
                    patch(ops.clone()),
                    patch_found(Rewrite),
                    Some(patched(fixed)),
                ),
                (
                    "patch warn",
                    Warn,
                    Operation::PatchGroup,
                    patch(ops),
                    patch_found(Warn),
                    None,
                ),
                (
                    "not a group operation",
                    Rewrite,
                    Operation::PatchUser,
                    create.to_string(),
                    vec![],
                    None,
                ),
                (
                    "guide add members",
                    Rewrite,
                    Operation::PatchGroup,
                    patch(
                        json!([{"op": "add", "path": "members", "value": [{"value": "906722b2be-ee23ed58-6e4e-4b2f-a94a-3ace8456a36c"}]}]),
                    ),
                    vec![],
                    None,
                ),
            ],
        );
    }

    #[test]
    fn members_limit_splits_250_into_100_100_50() {
        let check = r#"{ kind = "members-limit", max = 100 }"#;
        let body = json!({"displayName": "G", "members": members(0..250)});
        let e = eval(
            check,
            Rewrite,
            "{count}|{max}|{batches}",
            Operation::CreateGroup,
            None,
            &body.to_string(),
        );
        let mut kept = body.clone();
        kept["members"] = Value::Array(members(0..100));
        assert_eval(
            "250",
            &e,
            &[(Rewrite, "/members", "250|100|2")],
            Some(&kept),
        );
        let batch = |range: std::ops::Range<usize>| Batch {
            target: BatchTarget::CreatedGroup,
            body: patched(
                json!([{"op": "add", "path": "members", "value": members(range.clone())}]),
            ),
            member_ids: ids(range),
        };
        assert_eq!(e.batches, [batch(100..200), batch(200..250)]);
        let fix = e.findings[0].fix.as_ref().expect("fix");
        assert_eq!(
            fix.after,
            "100 members, then 150 more in 2 PATCH request(s)"
        );
        assert_eq!(e.findings[0].scim_type, "tooMany");

        for action in [Reject, Warn] {
            let e = eval(
                check,
                action,
                "{count}|{max}|{batches}",
                Operation::CreateGroup,
                None,
                &body.to_string(),
            );
            assert_eval("reject", &e, &[(action, "/members", "250|100|2")], None);
            assert!(e.batches.is_empty());
        }
        let exactly = json!({"displayName": "G", "members": members(0..100)}).to_string();
        let e = eval(check, Rewrite, "m", Operation::CreateGroup, None, &exactly);
        assert_eval("100", &e, &[], None);
    }

    #[test]
    fn members_limit_small_max_and_odd_members() {
        let check = r#"{ kind = "members-limit", max = 3 }"#;
        let body = json!({"members": [{"value": "a"}, {"value": "b"}, {"value": "c"}, {"value": "d"}, 5, {"id": "x"}, {"value": "g"}]});
        let e = eval(
            check,
            Rewrite,
            "{count}|{max}|{batches}",
            Operation::CreateGroup,
            None,
            &body.to_string(),
        );
        assert_eval(
            "7",
            &e,
            &[(Rewrite, "/members", "7|3|2")],
            Some(&json!({"members": [{"value": "a"}, {"value": "b"}, {"value": "c"}]})),
        );
        let member_ids: Vec<Vec<String>> = e.batches.iter().map(|b| b.member_ids.clone()).collect();
        assert_eq!(
            member_ids,
            [
                vec!["d".to_owned(), "5".to_owned(), r#"{"id":"x"}"#.to_owned()],
                vec!["g".to_owned()]
            ]
        );
        // Not an array, or no members: nothing to do.
        for body in [r#"{"members": 5}"#, "{}", "[]"] {
            assert_eval(
                body,
                &eval(check, Rewrite, "m", Operation::CreateGroup, None, body),
                &[],
                None,
            );
        }
        // A limit of 0 cannot be met by splitting.
        let e = eval(
            r#"{ kind = "members-limit", max = 0 }"#,
            Rewrite,
            "{batches}",
            Operation::CreateGroup,
            None,
            &body.to_string(),
        );
        assert_eval("0", &e, &[(Reject, "/members", "-")], None);
    }

    #[test]
    fn patch_pathless() {
        let check = r#"{ kind = "patch-group-pathless", allowed = ["displayName", "members", "externalId"] }"#;
        // The guide's example, verbatim: its id is not the group's id in the URL.
        let guide = patch(json!([{"op": "replace", "value": {
            "id": "9067729b3d-07124c20-d960-4a47-93ff-460d76461f81",
            "displayName": "Group Foo New"
        }}]));
        let own = patch(
            json!([{"op": "replace", "value": {"id": GROUP, "displayName": "Group Foo New"}}]),
        );
        let others = json!([
            {"op": "add", "value": {"schemas": ["x"], "meta": {}}},
            {"op": "replace", "value": {"description": "d", "DisplayName": "x", "Meta": null}},
            {"op": "replace", "path": "displayName", "value": {"id": "x"}},
            {"op": "replace", "value": "x"},
            5
        ]);
        let only = "; AWS IAM Identity Center accepts only displayName, members and externalId";
        run_cases(
            check,
            "{index}|{attribute}{fixed}",
            vec![
                (
                    "guide example",
                    Rewrite,
                    Operation::PatchGroup,
                    guide,
                    vec![(Rewrite, "/Operations/0/value/id", "0|id; it differs from the group's id in the URL and is read-only (AWS ignores it, as in the guide's PatchGroup example), so it was removed")],
                    Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"displayName": "Group Foo New"}}]})),
                ),
                (
                    "own id",
                    Rewrite,
                    Operation::PatchGroup,
                    own.clone(),
                    vec![(Rewrite, "/Operations/0/value/id", "0|id; it repeats the group's own id, which cannot be set, so it was removed")],
                    Some(patched(json!([{"op": "replace", "value": {"displayName": "Group Foo New"}}]))),
                ),
                (
                    "own id reject",
                    Reject,
                    Operation::PatchGroup,
                    own,
                    vec![(Reject, "/Operations/0/value/id", "0|id; it repeats the group's own id, which cannot be set")],
                    None,
                ),
                (
                    "others",
                    Rewrite,
                    Operation::PatchGroup,
                    patch(others.clone()),
                    vec![
                        (Rewrite, "/Operations/0/value/meta", "0|meta; it is not allowed there, so it was removed"),
                        (Rewrite, "/Operations/0/value/schemas", "0|schemas; it is not allowed there, so it was removed"),
                        (Rewrite, "/Operations/1/value/Meta", "1|Meta; it is not allowed there, so it was removed"),
                        (Reject, "/Operations/1/value/description", "1|description; AWS IAM Identity Center accepts only displayName, members and externalId"),
                    ],
                    Some(patched(json!([
                        {"op": "replace", "value": {"description": "d", "DisplayName": "x"}},
                        {"op": "replace", "path": "displayName", "value": {"id": "x"}},
                        {"op": "replace", "value": "x"},
                        5
                    ]))),
                ),
                (
                    "others warn",
                    Warn,
                    Operation::PatchGroup,
                    patch(others),
                    vec![
                        (Warn, "/Operations/0/value/meta", "0|meta; it is not allowed there"),
                        (Warn, "/Operations/0/value/schemas", "0|schemas; it is not allowed there"),
                        (Warn, "/Operations/1/value/Meta", "1|Meta; it is not allowed there"),
                        (Warn, "/Operations/1/value/description", "1|description; AWS IAM Identity Center accepts only displayName, members and externalId"),
                    ],
                    None,
                ),
            ],
        );
        assert!(only.starts_with("; AWS"));
        // Without an id in the URL, an id in the value cannot be the group's.
        let e = eval(
            check,
            Rewrite,
            "{fixed}",
            Operation::PatchGroup,
            None,
            &patch(json!([{"op": "replace", "value": {"id": GROUP}}])),
        );
        assert_eval(
            "no id",
            &e,
            &[(
                Rewrite,
                "/Operations/0/value/id",
                "; it differs from the group's id in the URL and is read-only (AWS ignores it, as in the guide's PatchGroup example), so it was removed",
            )],
            Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []})),
        );
    }

    #[test]
    fn replace_members() {
        let ops = json!([
            {"op": "Replace", "path": "members", "value": []},
            {"op": "replace", "path": "members[value eq \"a\"]", "value": {}},
            {"op": "replace", "value": {"Members": []}},
            {"op": "replace", "path": "displayName", "value": "x"},
            {"op": "add", "path": "members", "value": []},
            {"op": "replace", "path": "members.value", "value": "x"},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:Group:members", "value": []},
            {"op": "replace", "value": {"displayName": "x"}},
        ]);
        // The guide's "replace members" example.
        let guide = patch(json!([{"op": "replace", "path": "members", "value": [
            {"value": "906722b2be-61c204e7-56d0-4dad-882d-f41911b31ccb"},
            {"value": "906722b2be-da1f7ef3-3e37-473e-95be-df2efaa2590d"}
        ]}]));
        run_cases(
            r#"{ kind = "patch-replace-members" }"#,
            "{index}",
            vec![
                (
                    "replaces",
                    Reject,
                    Operation::PatchGroup,
                    patch(ops),
                    vec![
                        (Reject, "/Operations/0", "0"),
                        (Reject, "/Operations/1", "1"),
                        (Reject, "/Operations/2", "2"),
                        (Reject, "/Operations/5", "5"),
                        (Reject, "/Operations/6", "6"),
                    ],
                    None,
                ),
                (
                    "guide",
                    Warn,
                    Operation::PatchGroup,
                    guide,
                    vec![(Warn, "/Operations/0", "0")],
                    None,
                ),
            ],
        );
    }

    #[test]
    fn remove_member_filter() {
        let ops = json!([
            {"op": "remove", "path": "members[value eq \"u1\"]"},
            {"op": "Remove", "path": "Members[VALUE EQ \"u2\"]"},
            {"op": "remove", "path": "members[value ne \"u3\"]"},
            {"op": "remove", "path": "members[value eq \"u4\" or value eq \"u5\"]"},
            {"op": "remove", "path": "members[value eq \"u6\"].display"},
            {"op": "remove", "path": "members[display eq \"x\"]"},
            {"op": "remove", "path": "members"},
            {"op": "add", "path": "members[value eq \"u7\"]", "value": []},
            {"op": "remove", "path": "members[value eq 5]"},
            {"op": "remove", "path": "members[value eq \"u8\""},
        ]);
        let mut fixed = ops.clone();
        fixed[0] = json!({"op": "remove", "path": "members", "value": [{"value": "u1"}]});
        fixed[1] = json!({"op": "Remove", "path": "members", "value": [{"value": "u2"}]});
        let found = |a| {
            vec![
                (a, "/Operations/0", "0|members[value eq \"u1\"]|u1"),
                (a, "/Operations/1", "1|Members[VALUE EQ \"u2\"]|u2"),
            ]
        };
        run_cases(
            r#"{ kind = "patch-remove-member-filter" }"#,
            "{index}|{path}|{member}",
            vec![
                (
                    "rewrite",
                    Rewrite,
                    Operation::PatchGroup,
                    patch(ops.clone()),
                    found(Rewrite),
                    Some(patched(fixed)),
                ),
                (
                    "reject",
                    Reject,
                    Operation::PatchGroup,
                    patch(ops),
                    found(Reject),
                    None,
                ),
            ],
        );
    }

    #[test]
    fn patch_members_limit_splits_250_into_100_100_50() {
        let check = r#"{ kind = "patch-members-limit", max = 100 }"#;
        let body = patch(json!([{"op": "add", "path": "members", "value": members(0..250)}]));
        let e = eval(
            check,
            Rewrite,
            "{count}|{max}|{batches}",
            Operation::PatchGroup,
            Some(GROUP),
            &body,
        );
        let first = patched(json!([{"op": "add", "path": "members", "value": members(0..100)}]));
        assert_eval(
            "250",
            &e,
            &[(Rewrite, "/Operations", "250|100|2")],
            Some(&first),
        );
        let batch = |range: std::ops::Range<usize>| Batch {
            target: BatchTarget::SameResource,
            body: patched(
                json!([{"op": "add", "path": "members", "value": members(range.clone())}]),
            ),
            member_ids: ids(range),
        };
        assert_eq!(e.batches, [batch(100..200), batch(200..250)]);
        let fix = e.findings[0].fix.as_ref().expect("fix");
        assert_eq!(
            (fix.before.as_str(), fix.after.as_str()),
            (
                "250 membership changes",
                "100 in this request, then 150 more in 2 request(s)"
            )
        );
        for action in [Reject, Warn] {
            let e = eval(
                check,
                action,
                "{count}|{max}|{batches}",
                Operation::PatchGroup,
                Some(GROUP),
                &body,
            );
            assert_eval(
                "not rewrite",
                &e,
                &[(action, "/Operations", "250|100|2")],
                None,
            );
            assert!(e.batches.is_empty());
        }
    }

    #[test]
    fn patch_members_limit_keeps_order_across_batches() {
        let check = r#"{ kind = "patch-members-limit", max = 3 }"#;
        let m = |ids: &[&str]| Value::Array(ids.iter().map(|i| json!({ "value": i })).collect());
        let body = patch(json!([
            {"op": "add", "path": "members", "value": m(&["a", "b"])},
            {"op": "replace", "path": "displayName", "value": "New"},
            {"op": "Remove", "path": "members", "value": m(&["c", "d", "e"])},
            {"op": "add", "path": "members", "value": []},
            {"op": "add", "path": "members", "value": m(&["f", "g"])},
            {"op": "replace", "path": "externalId", "value": "x"},
        ]));
        let e = eval(
            check,
            Rewrite,
            "{count}|{max}|{batches}",
            Operation::PatchGroup,
            Some(GROUP),
            &body,
        );
        let first = patched(json!([
            {"op": "add", "path": "members", "value": m(&["a", "b"])},
            {"op": "replace", "path": "displayName", "value": "New"},
            {"op": "Remove", "path": "members", "value": m(&["c"])},
            {"op": "replace", "path": "externalId", "value": "x"},
        ]));
        assert_eval(
            "mixed",
            &e,
            &[(Rewrite, "/Operations", "7|3|2")],
            Some(&first),
        );
        let bodies: Vec<&Value> = e.batches.iter().map(|b| &b.body).collect();
        assert_eq!(
            bodies,
            [
                &patched(json!([
                    {"op": "Remove", "path": "members", "value": m(&["d", "e"])},
                    {"op": "add", "path": "members", "value": []},
                    {"op": "add", "path": "members", "value": m(&["f"])},
                ])),
                &patched(json!([{"op": "add", "path": "members", "value": m(&["g"])}])),
            ]
        );
        let member_ids: Vec<&[String]> =
            e.batches.iter().map(|b| b.member_ids.as_slice()).collect();
        assert_eq!(member_ids, [&["d", "e", "f"][..], &["g"][..]]);
        assert!(e
            .batches
            .iter()
            .all(|b| b.target == BatchTarget::SameResource));
    }

    #[test]
    fn patch_members_limit_keeps_a_remove_of_every_member_in_place() {
        // Removing every member after the adds must still come after all of them.
        let check = r#"{ kind = "patch-members-limit", max = 2 }"#;
        let m = |ids: &[&str]| Value::Array(ids.iter().map(|i| json!({ "value": i })).collect());
        let body = patch(json!([
            {"op": "add", "path": "members", "value": m(&["a", "b", "c"])},
            {"op": "remove", "path": "members"},
            {"op": "replace", "path": "displayName", "value": "New"},
            {"op": "add", "path": "members[", "value": 1},
        ]));
        let e = eval(
            check,
            Rewrite,
            "{count}|{batches}|{requests}",
            Operation::PatchGroup,
            Some(GROUP),
            &body,
        );
        let first = patched(json!([
            {"op": "add", "path": "members", "value": m(&["a", "b"])},
            {"op": "replace", "path": "displayName", "value": "New"},
        ]));
        assert_eval(
            "remove all",
            &e,
            &[(Rewrite, "/Operations", "3|1|2")],
            Some(&first),
        );
        assert_eq!(
            e.batches[0].body,
            patched(json!([
                {"op": "add", "path": "members", "value": m(&["c"])},
                {"op": "remove", "path": "members"},
                {"op": "add", "path": "members[", "value": 1},
            ]))
        );
    }

    #[test]
    fn patch_members_limit_splits_a_pathless_add() {
        let check = r#"{ kind = "patch-members-limit", max = 2 }"#;
        let body = patch(
            json!([{"op": "add", "value": {"displayName": "D", "members": [{"value": "a"}, {"value": "b"}, {"value": "c"}]}}]),
        );
        let e = eval(
            check,
            Rewrite,
            "{count}|{batches}",
            Operation::PatchGroup,
            Some(GROUP),
            &body,
        );
        let first = patched(
            json!([{"op": "add", "value": {"displayName": "D", "members": [{"value": "a"}, {"value": "b"}]}}]),
        );
        assert_eval(
            "pathless",
            &e,
            &[(Rewrite, "/Operations", "3|1")],
            Some(&first),
        );
        assert_eq!(
            e.batches[0].body,
            patched(json!([{"op": "add", "path": "members", "value": [{"value": "c"}]}]))
        );
        // At the limit, and hostile shapes: nothing.
        for body in [
            patch(
                json!([{"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]}]),
            ),
            patch(json!([{"op": "add", "path": "members", "value": {"value": "a"}}, 5, {"op": 5}])),
            r#"{"Operations": 5}"#.to_owned(),
            "[]".to_owned(),
        ] {
            assert_eval(
                &body,
                &eval(
                    check,
                    Rewrite,
                    "m",
                    Operation::PatchGroup,
                    Some(GROUP),
                    &body,
                ),
                &[],
                None,
            );
        }
        let e = eval(
            r#"{ kind = "patch-members-limit", max = 0 }"#,
            Rewrite,
            "{batches}",
            Operation::PatchGroup,
            None,
            &body,
        );
        assert_eval("0", &e, &[(Reject, "/Operations", "-")], None);
    }

    /// The guide's PatchGroup examples through every embedded rule.
    #[test]
    fn guide_examples_through_every_rule() {
        let add = patch(
            json!([{"op": "add", "path": "members", "value": [{"value": "906722b2be-ee23ed58-6e4e-4b2f-a94a-3ace8456a36c"}]}]),
        );
        let remove = patch(json!([{"op": "remove", "path": "members", "value": [
            {"value": "906722b2be-61c204e7-56d0-4dad-882d-f41911b31ccb"},
            {"value": "906722b2be-da1f7ef3-3e37-473e-95be-df2efaa2590d"}
        ]}]));
        for body in [&add, &remove] {
            let e = embedded(None, Operation::PatchGroup, Some(GROUP), body);
            assert!(
                e.findings.is_empty() && e.rewritten.is_none() && e.batches.is_empty(),
                "{body}: {:#?}",
                e.findings
            );
        }
        let own = patch(
            json!([{"op": "replace", "value": {"id": GROUP, "displayName": "Group Foo New"}}]),
        );
        let e = embedded(None, Operation::PatchGroup, Some(GROUP), &own);
        let got: Vec<(&str, Action, &str)> = e
            .findings
            .iter()
            .map(|f| (f.rule.as_str(), f.action, f.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [(
                "group.patch.pathless",
                Rewrite,
                "operation 0 sets id in a path-less value; it repeats the group's own id, which cannot be set, so it was removed."
            )]
        );
        assert_eq!(
            e.rewritten,
            Some(patched(
                json!([{"op": "replace", "value": {"displayName": "Group Foo New"}}])
            ))
        );
    }

    /// What Okta and Entra ID send, through every embedded rule.
    #[test]
    fn idp_group_patch_through_every_rule() {
        let mut added = members(0..250);
        for m in &mut added {
            m["display"] = json!("Someone");
            m["$ref"] = Value::Null;
        }
        let body = patch(json!([
            {"op": "Add", "path": "members", "value": added},
            {"op": "remove", "path": "members[value eq \"gone\"]"},
        ]));
        let e = embedded(None, Operation::PatchGroup, Some(GROUP), &body);
        let rules: Vec<&str> = e.findings.iter().map(|f| f.rule.as_str()).collect();
        let mut want = vec!["patch.op-case"];
        want.extend(std::iter::repeat_n("group.member-entries", 500));
        want.extend([
            "group.patch.remove-member-filter",
            "group.patch.members-limit",
        ]);
        assert_eq!(rules, want);
        let message = e
            .findings
            .last()
            .map(|f| f.message.as_str())
            .unwrap_or_default();
        assert!(
            message.starts_with("the request changes 251 memberships, over AWS's 100 per request"),
            "{message}"
        );
        let first = patched(json!([{"op": "add", "path": "members", "value": members(0..100)}]));
        assert_eq!(e.rewritten, Some(first));
        let sizes: Vec<usize> = e.batches.iter().map(|b| b.member_ids.len()).collect();
        assert_eq!(sizes, [100, 51]);
        assert_eq!(
            e.batches[1].body["Operations"][1],
            json!({"op": "remove", "path": "members", "value": [{"value": "gone"}]})
        );
    }

    /// A member listed twice is sent once, and counts once toward AWS's 100.
    #[test]
    fn a_repeated_member_is_sent_once() {
        let mut listed = members(0..101);
        listed.push(json!({"value": "u0"}));
        let body = patch(json!([{"op": "add", "path": "members", "value": listed}]));
        let e = embedded(None, Operation::PatchGroup, Some(GROUP), &body);
        let rules: Vec<(&str, &str)> = e
            .findings
            .iter()
            .map(|f| (f.rule.as_str(), f.location.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                ("group.duplicate-members", "/Operations/0/value/101"),
                ("group.patch.members-limit", "/Operations"),
            ]
        );
        assert!(
            e.findings[0].message.starts_with("1 member change(s) repeat an earlier change of the same member in this request (u0)"),
            "{}",
            e.findings[0].message
        );
        assert_eq!(e.batches.len(), 1);
        assert_eq!(e.batches[0].member_ids, ["u100"]);

        let create = json!({"displayName": "G", "members": [{"value": "a"}, {"value": "a"}]});
        let e = embedded(None, Operation::CreateGroup, None, &create.to_string());
        assert_eq!(
            e.rewritten,
            Some(json!({"displayName": "G", "members": [{"value": "a"}]}))
        );
        // Warn: reported, nothing changed.
        let e = embedded(
            Some(("group.duplicate-members", Warn)),
            Operation::CreateGroup,
            None,
            &create.to_string(),
        );
        assert_eq!(e.findings.len(), 1);
        assert!(e.rewritten.is_none());
    }

    /// The embedded messages of the group rules get every placeholder they name.
    #[test]
    fn embedded_messages_are_filled() {
        let many = json!({"displayName": "G", "members": members(0..101)}).to_string();
        let cases: Vec<(&str, Operation, String, &[&str])> = vec![
            (
                "group.member-entries",
                Operation::PatchGroup,
                patch(
                    json!([{"op": "add", "path": "members", "value": [{"value": "a", "display": "A"}]}]),
                ),
                &[],
            ),
            ("group.members-limit", Operation::CreateGroup, many, &[]),
            (
                "group.patch.pathless",
                Operation::PatchGroup,
                patch(json!([{"op": "replace", "value": {"schemas": []}}])),
                &[],
            ),
            (
                "group.patch.replace-members",
                Operation::PatchGroup,
                patch(json!([{"op": "replace", "path": "members", "value": []}])),
                &[],
            ),
            // `render_template` does not turn `{{` into `{`, so the `{member}` inside
            // this message's `{{"value": "{member}"}}` stays as written.
            (
                "group.patch.remove-member-filter",
                Operation::PatchGroup,
                patch(json!([{"op": "remove", "path": "members[value eq \"u1\"]"}])),
                &["member"],
            ),
            (
                "group.patch.members-limit",
                Operation::PatchGroup,
                patch(json!([{"op": "add", "path": "members", "value": members(0..101)}])),
                &[],
            ),
        ];
        for (id, operation, body, known) in cases {
            let e = embedded(Some((id, Warn)), operation, Some(GROUP), &body);
            assert_eq!(e.findings.len(), 1, "{id}: {:#?}", e.findings);
            let message = &e.findings[0].message;
            let left: Vec<&str> = unfilled(message)
                .into_iter()
                .filter(|n| !known.contains(n))
                .collect();
            assert!(left.is_empty(), "{id}: {message}");
        }
    }
}
