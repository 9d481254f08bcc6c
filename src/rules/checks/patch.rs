//! Checks on PATCH bodies (RFC 7644 §3.5.2) as AWS constrains them: PatchUser and the
//! PatchOp envelope PatchGroup shares.
//!
//! The body is untrusted JSON: `Operations` may be missing or not an array, its
//! elements may not be objects, `op` may not be a string. Every check here skips what
//! it cannot understand; `json-body` and `patch-op-supported` report those shapes.
//! Members of an operation (`op`, `path`, `value`) are matched exactly, as
//! [`crate::scim::PatchRequest`] reads them.

use serde_json::{Map, Value};

use crate::rules::attr::{is_urn, ENTERPRISE_URN};
use crate::rules::context::{pointer_token, show, Reporter, State};
use crate::scim::filter::AttrPath;
use crate::scim::patch::PatchOpKind;
use crate::scim::path::{parse_path, PatchPath};

/// The member of a PatchOp body that holds the operations, spelled as RFC 7644 does.
pub(crate) const OPERATIONS: &str = "Operations";

/// The core schemas: a path prefixed with one of them names a core attribute.
const CORE_URNS: [&str; 2] = [
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:core:2.0:Group",
];

// ---- reading operations ---------------------------------------------------------------

/// The operations, when the body is an object whose `Operations` is an array.
pub(crate) fn operations(state: &State) -> Option<&Vec<Value>> {
    state.object()?.get(OPERATIONS)?.as_array()
}

/// The operations, mutable.
pub(crate) fn operations_mut(state: &mut State) -> Option<&mut Vec<Value>> {
    state.object_mut()?.get_mut(OPERATIONS)?.as_array_mut()
}

/// Removes the operations at `indexes` (in any order) from the body.
pub(crate) fn remove_operations(state: &mut State, indexes: &[usize]) {
    if indexes.is_empty() {
        return;
    }
    if let Some(ops) = operations_mut(state) {
        let mut index = 0;
        ops.retain(|_| {
            index += 1;
            !indexes.contains(&(index - 1))
        });
        state.changed = true;
    }
}

/// The operation kind that `text` spells, in any case.
pub(crate) fn kind_of(text: &str) -> Option<PatchOpKind> {
    [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(text))
}

/// `op` as sent, when the operation is an object with a string `op`.
pub(crate) fn op_text(op: &Value) -> Option<&str> {
    op.as_object()?.get("op")?.as_str()
}

/// The operation's kind, `op` matched ignoring case.
pub(crate) fn op_kind(op: &Value) -> Option<PatchOpKind> {
    op_text(op).and_then(kind_of)
}

/// Whether the operation has a `path` (a `null` one counts as none).
pub(crate) fn has_path(op: &Map<String, Value>) -> bool {
    !matches!(op.get("path"), None | Some(Value::Null))
}

/// The `path` text and its parse, when `path` is a string.
pub(crate) fn parsed_path(
    op: &Map<String, Value>,
) -> Option<(&str, Result<PatchPath, crate::scim::ParseError>)> {
    let text = op.get("path")?.as_str()?;
    Some((text, parse_path(text)))
}

/// Whether `urn` is a core schema's URN.
fn is_core_urn(urn: &str) -> bool {
    CORE_URNS.iter().any(|c| c.eq_ignore_ascii_case(urn))
}

/// The attribute's URN, unless it is a core schema's (which names no extension).
pub(crate) fn extension_urn(attr: &AttrPath) -> Option<&str> {
    attr.urn.as_deref().filter(|u| !is_core_urn(u))
}

/// Whether the attribute is `name` (any sub-attribute aside) without an extension URN,
/// ignoring case.
pub(crate) fn names(attr: &AttrPath, name: &str) -> bool {
    extension_urn(attr).is_none() && attr.name.eq_ignore_ascii_case(name)
}

/// Whether the path is the plain attribute `name` (no extension URN, no sub-attribute,
/// no value filter), ignoring case: `members`, `urn:…:core:2.0:Group:members`.
pub(crate) fn is_plain(path: &PatchPath, name: &str) -> bool {
    match path {
        PatchPath::Attr(attr) => attr.sub_attr.is_none() && names(attr, name),
        PatchPath::ValuePath { .. } => false,
    }
}

/// Whether the operation is an `op` (any case) on the plain path `name`.
pub(crate) fn is_op_on(op: &Map<String, Value>, kinds: &[PatchOpKind], name: &str) -> bool {
    let kind = op.get("op").and_then(Value::as_str).and_then(kind_of);
    kind.is_some_and(|k| kinds.contains(&k))
        && matches!(parsed_path(op), Some((_, Ok(path))) if is_plain(&path, name))
}

/// A JSON string's text, for `before` / `after` of a fix.
fn json_str(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// `a, b and c`.
pub(crate) fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

// ---- matching paths against a rule's attribute list -----------------------------------

/// A rule's listed attribute that a path's attribute matches.
#[derive(Debug, PartialEq, Eq)]
struct Listed {
    /// The index in the rule's list.
    index: usize,
    /// The attribute name in the listed spelling, when the path spells it otherwise.
    respell: Option<String>,
}

/// Finds the path's attribute (its value filter and sub-attribute aside) in `list`,
/// ignoring case. An extension attribute matches its URN (the whole extension is
/// listed) or `urn:name`; a core URN prefix counts as none.
fn listed(attr: &AttrPath, list: &[String]) -> Option<Listed> {
    match extension_urn(attr) {
        None => {
            let exact = list.iter().position(|e| *e == attr.name);
            let index = exact.or_else(|| {
                list.iter()
                    .position(|e| !is_urn(e) && e.eq_ignore_ascii_case(&attr.name))
            })?;
            let respell = (exact.is_none()).then(|| list[index].clone());
            Some(Listed { index, respell })
        }
        Some(urn) => {
            if let Some(index) = list.iter().position(|e| e.eq_ignore_ascii_case(urn)) {
                return Some(Listed {
                    index,
                    respell: None,
                });
            }
            let full = format!("{urn}:{}", attr.name);
            let index = list.iter().position(|e| e.eq_ignore_ascii_case(&full))?;
            // Same length and only ASCII case differs, so the name starts at the same byte.
            let name = list[index].get(urn.len() + 1..).unwrap_or(&attr.name);
            let respell = (name != attr.name).then(|| name.to_owned());
            Some(Listed { index, respell })
        }
    }
}

/// `text` (a path that parsed as `path`) with the attribute name written `name`, the
/// rest of the text kept as sent.
fn respell_path(text: &str, path: &PatchPath, name: &str) -> String {
    let attr = path.attr();
    let start = text.len() - text.trim_start().len();
    let at = start + attr.urn.as_ref().map_or(0, |u| u.len() + 1);
    let end = at + attr.name.len();
    match (text.get(..at), text.get(at..end), text.get(end..)) {
        (Some(head), Some(old), Some(tail)) if old == attr.name => format!("{head}{name}{tail}"),
        _ => {
            let mut fixed = path.clone();
            match &mut fixed {
                PatchPath::Attr(a) | PatchPath::ValuePath { attr: a, .. } => {
                    a.name = name.to_owned()
                }
            }
            fixed.to_string()
        }
    }
}

// ---- the checks -------------------------------------------------------------------------

pub(crate) fn op_supported(r: &Reporter<'_>, state: &mut State) {
    let Some(body) = state.object() else { return };
    let problem = match body.get(OPERATIONS) {
        None => Some(match crate::rules::attr::key_in(body, OPERATIONS) {
            Some(other) => format!("(no Operations: the member is spelled `{other}`)"),
            None => "(no Operations)".to_owned(),
        }),
        Some(Value::Array(items)) if items.is_empty() => Some("(Operations is empty)".to_owned()),
        Some(Value::Array(_)) => None,
        Some(other) => Some(format!("(Operations is {other} instead of an array)")),
    };
    if let Some(op) = problem {
        let shape = op.trim_start_matches('(').trim_end_matches(')');
        let problem =
            format!("`Operations` must be a non-empty array of PATCH operations ({shape})");
        r.report(
            state,
            format!("/{OPERATIONS}"),
            &[("index", "-".to_owned()), ("op", op), ("problem", problem)],
        );
        return;
    }
    let Some(ops) = operations(state) else { return };
    let mut hits = Vec::new();
    for (i, item) in ops.iter().enumerate() {
        let hit = match item {
            Value::Object(o) => match o.get("op") {
                None => (format!("/{OPERATIONS}/{i}"), show(None)),
                Some(Value::String(s)) if kind_of(s).is_some() => continue,
                Some(v) => (format!("/{OPERATIONS}/{i}/op"), v.to_string()),
            },
            other => (
                format!("/{OPERATIONS}/{i}"),
                format!("(absent: the operation is {other}, not an object)"),
            ),
        };
        hits.push((i, hit));
    }
    for (i, (at, op)) in hits {
        let problem = format!("PATCH operation {i}: op is {op}");
        r.report(
            state,
            at,
            &[("index", i.to_string()), ("op", op), ("problem", problem)],
        );
    }
}

pub(crate) fn op_case(r: &Reporter<'_>, state: &mut State) {
    let Some(ops) = operations(state) else { return };
    let hits: Vec<(usize, String, &'static str)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| {
            let text = op_text(op)?;
            let kind = kind_of(text)?;
            (text != kind.as_str()).then(|| (i, text.to_owned(), kind.as_str()))
        })
        .collect();
    for (i, sent, fixed) in hits {
        let at = format!("/{OPERATIONS}/{i}/op");
        let vars = [
            ("index", i.to_string()),
            ("op", sent.clone()),
            ("fixed", fixed.to_owned()),
        ];
        if r.rewrites() {
            if let Some(Value::Object(op)) = operations_mut(state).and_then(|ops| ops.get_mut(i)) {
                op.insert("op".into(), Value::String(fixed.to_owned()));
            }
            r.fixed(state, at, &vars, json_str(&sent), json_str(fixed));
        } else {
            r.report(state, at, &vars);
        }
    }
}

/// The listed op (as the rule spells it) that the operation's `op` is, ignoring case.
fn listed_op<'l>(op: &Value, ops: &'l [String]) -> Option<&'l String> {
    let text = op_text(op)?;
    ops.iter().find(|o| o.eq_ignore_ascii_case(text))
}

pub(crate) fn path_required(r: &Reporter<'_>, ops: &[String], state: &mut State) {
    let Some(operations) = operations(state) else {
        return;
    };
    let hits: Vec<(usize, String)> = operations
        .iter()
        .enumerate()
        .filter_map(|(i, op)| {
            let listed = listed_op(op, ops)?;
            (!has_path(op.as_object()?)).then(|| (i, listed.to_ascii_lowercase()))
        })
        .collect();
    for (i, op) in hits {
        r.report(
            state,
            format!("/{OPERATIONS}/{i}"),
            &[("index", i.to_string()), ("op", op)],
        );
    }
}

pub(crate) fn value_required(r: &Reporter<'_>, ops: &[String], state: &mut State) {
    let Some(operations) = operations(state) else {
        return;
    };
    let hits: Vec<(usize, String)> = operations
        .iter()
        .enumerate()
        .filter_map(|(i, op)| {
            let listed = listed_op(op, ops)?;
            let null_is_missing = matches!(
                kind_of(listed),
                Some(PatchOpKind::Add | PatchOpKind::Replace)
            );
            let missing = match op.as_object()?.get("value") {
                None => true,
                Some(Value::Null) => null_is_missing,
                Some(_) => false,
            };
            missing.then(|| (i, listed.to_ascii_lowercase()))
        })
        .collect();
    for (i, op) in hits {
        r.report(
            state,
            format!("/{OPERATIONS}/{i}"),
            &[("index", i.to_string()), ("op", op)],
        );
    }
}

pub(crate) fn paths(r: &Reporter<'_>, attributes: &[String], state: &mut State) {
    enum Hit {
        /// Unparsable, or an attribute that is not listed: `{path}` text.
        Refused(String),
        /// Listed, in another case: the respelled path.
        Case(String),
    }
    let Some(ops) = operations(state) else { return };
    let mut hits: Vec<(usize, String, Hit)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Some(op) = op.as_object() else { continue };
        let text = match op.get("path") {
            None | Some(Value::Null) => continue,
            Some(Value::String(text)) => text,
            Some(other) => {
                let shown = format!("{other} (a path must be a string)");
                hits.push((i, other.to_string(), Hit::Refused(shown)));
                continue;
            }
        };
        match parse_path(text) {
            Err(e) => {
                let shown = format!("`{text}`, which is not a valid path ({e})");
                hits.push((i, text.clone(), Hit::Refused(shown)));
            }
            Ok(path) => match listed(path.attr(), attributes) {
                None => hits.push((i, text.clone(), Hit::Refused(text.clone()))),
                Some(Listed { respell: None, .. }) => {}
                Some(Listed {
                    respell: Some(name),
                    ..
                }) => {
                    hits.push((i, text.clone(), Hit::Case(respell_path(text, &path, &name))));
                }
            },
        }
    }
    let supported = attributes.join(", ");
    for (i, sent, hit) in hits {
        let at = format!("/{OPERATIONS}/{i}/path");
        let index = ("index", i.to_string());
        match hit {
            Hit::Refused(shown) => {
                let vars = [
                    index,
                    ("path", shown),
                    ("supported", supported.clone()),
                    ("fixed", String::new()),
                ];
                r.unfixable(state, at, &vars);
            }
            Hit::Case(fixed) if r.rewrites() => {
                let vars = [
                    index,
                    ("path", sent.clone()),
                    ("supported", supported.clone()),
                    ("fixed", format!("; rewrote the path as `{fixed}`")),
                ];
                if let Some(Value::Object(op)) =
                    operations_mut(state).and_then(|ops| ops.get_mut(i))
                {
                    op.insert("path".into(), Value::String(fixed.clone()));
                }
                r.fixed(state, at, &vars, json_str(&sent), json_str(&fixed));
            }
            Hit::Case(fixed) => {
                let vars = [
                    index,
                    ("path", sent),
                    ("supported", supported.clone()),
                    ("fixed", format!("; write the path as `{fixed}`")),
                ];
                r.report(state, at, &vars);
            }
        }
    }
}

pub(crate) fn forbidden_op(r: &Reporter<'_>, op: &str, attributes: &[String], state: &mut State) {
    let Some(ops) = operations(state) else { return };
    let hits: Vec<(usize, String)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            if !op_text(item)?.eq_ignore_ascii_case(op) {
                return None;
            }
            let (text, path) = parsed_path(item.as_object()?)?;
            let path = path.ok()?;
            listed(path.attr(), attributes).map(|_| (i, text.to_owned()))
        })
        .collect();
    for (i, path) in hits {
        r.report(
            state,
            format!("/{OPERATIONS}/{i}"),
            &[("index", i.to_string()), ("path", path)],
        );
    }
}

/// The listed attributes a path-less value's key names (`active`, `name.givenName`,
/// `urn:…:User:manager`, or an extension block's URN).
fn key_listed(key: &str, list: &[String]) -> Option<Listed> {
    match parse_path(key) {
        Ok(PatchPath::Attr(attr)) => listed(&attr, list),
        _ => None,
    }
}

pub(crate) fn single_operation(r: &Reporter<'_>, attributes: &[String], state: &mut State) {
    let Some(ops) = operations(state) else { return };
    let mut counts = vec![0usize; attributes.len()];
    for op in ops {
        let Some(op) = op.as_object() else { continue };
        if has_path(op) {
            if let Some((_, Ok(path))) = parsed_path(op) {
                if let Some(hit) = listed(path.attr(), attributes) {
                    counts[hit.index] += 1;
                }
            }
        } else if let Some(Value::Object(value)) = op.get("value") {
            for key in value.keys() {
                if let Some(hit) = key_listed(key, attributes) {
                    counts[hit.index] += 1;
                }
            }
        }
    }
    for (attribute, count) in attributes.iter().zip(counts) {
        if count > 1 {
            r.report(
                state,
                format!("/{OPERATIONS}"),
                &[
                    ("count", count.to_string()),
                    ("attribute", attribute.clone()),
                ],
            );
        }
    }
}

/// The operators of a path's value filter that are not allowed, each once, in order.
fn refused_operators(path: &PatchPath, operators: &[String]) -> Vec<&'static str> {
    let allowed = |op: &str| op == "and" || operators.iter().any(|a| a.eq_ignore_ascii_case(op));
    let mut refused: Vec<&'static str> = Vec::new();
    let Some(filter) = path.filter() else {
        return refused;
    };
    for term in filter.terms() {
        let op = term.op.map_or("pr", |o| o.as_str());
        if !allowed(op) && !refused.contains(&op) {
            refused.push(op);
        }
    }
    for op in filter.logical_operators() {
        if !allowed(op) && !refused.contains(&op) {
            refused.push(op);
        }
    }
    refused
}

pub(crate) fn filter_operators(r: &Reporter<'_>, operators: &[String], state: &mut State) {
    let Some(ops) = operations(state) else { return };
    let mut hits = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let Some((text, Ok(path))) = op.as_object().and_then(parsed_path) else {
            continue;
        };
        let refused = refused_operators(&path, operators);
        if !refused.is_empty() {
            hits.push((i, text.to_owned(), refused.join(", ")));
        }
    }
    for (i, path, operators) in hits {
        r.report(
            state,
            format!("/{OPERATIONS}/{i}/path"),
            &[
                ("index", i.to_string()),
                ("path", path),
                ("operators", operators),
            ],
        );
    }
}

/// Whether a key of a path-less value is an extension block (`urn:…:2.0:User`), as
/// opposed to an attribute prefixed with its URN (`urn:…:2.0:User:employeeNumber`): a
/// schema URN ends in `:<version>:<resource>`.
fn is_schema_urn(key: &str) -> bool {
    if !is_urn(key) {
        return false;
    }
    if key.eq_ignore_ascii_case(ENTERPRISE_URN) {
        return true;
    }
    let mut parts = key.rsplit(':');
    parts.next();
    parts.next().is_some_and(|v| {
        v.bytes().any(|b| b.is_ascii_digit()) && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    })
}

/// The `(path, value)` pairs a path-less value sets: one per key, an extension block
/// giving one per sub-key (`urn:…:User:employeeNumber`), `schemas` dropped.
fn pathless_parts(value: &Map<String, Value>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (key, v) in value {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        match v {
            Value::Object(block) if is_schema_urn(key) => {
                out.extend(
                    block
                        .iter()
                        .map(|(sub, sv)| (format!("{key}:{sub}"), sv.clone())),
                );
            }
            _ => out.push((key.clone(), v.clone())),
        }
    }
    out
}

pub(crate) fn split_pathless(r: &Reporter<'_>, state: &mut State) {
    let Some(ops) = operations(state) else { return };
    // (index, op as sent, the operations that replace it)
    let mut hits: Vec<(usize, String, Vec<Value>)> = Vec::new();
    for (i, item) in ops.iter().enumerate() {
        let Some(op) = item.as_object() else { continue };
        if !matches!(op_kind(item), Some(PatchOpKind::Add | PatchOpKind::Replace)) || has_path(op) {
            continue;
        }
        let Some(Value::Object(value)) = op.get("value") else {
            continue;
        };
        let parts = pathless_parts(value);
        if parts.is_empty() || (value.len() < 2 && parts.len() < 2) {
            continue;
        }
        let sent = op_text(item).unwrap_or_default().to_owned();
        let split = parts
            .into_iter()
            .map(|(path, v)| serde_json::json!({ "op": sent, "path": path, "value": v }))
            .collect();
        hits.push((i, sent, split));
    }
    if hits.is_empty() {
        return;
    }
    let mut rebuilt: Vec<Value> = Vec::new();
    if r.rewrites() {
        let mut next = hits.iter().peekable();
        for (i, op) in ops.iter().enumerate() {
            match next.peek() {
                Some((at, _, split)) if *at == i => {
                    rebuilt.extend(split.iter().cloned());
                    next.next();
                }
                _ => rebuilt.push(op.clone()),
            }
        }
    }
    let before: Vec<String> = hits
        .iter()
        .map(|(i, _, _)| ops.get(*i).map(Value::to_string).unwrap_or_default())
        .collect();
    if r.rewrites() {
        if let Some(ops) = operations_mut(state) {
            *ops = rebuilt;
        }
    }
    for ((i, sent, split), before) in hits.into_iter().zip(before) {
        let attributes: Vec<String> = split
            .iter()
            .filter_map(|o| o.get("path").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let vars = [
            ("index", i.to_string()),
            ("op", sent),
            ("count", split.len().to_string()),
            ("attributes", attributes.join(", ")),
        ];
        let at = format!("/{OPERATIONS}/{i}");
        if r.rewrites() {
            r.fixed(state, at, &vars, before, Value::Array(split).to_string());
        } else {
            r.report(state, at, &vars);
        }
    }
}

pub(crate) fn boolean_string(r: &Reporter<'_>, attributes: &[String], state: &mut State) {
    let Some(ops) = operations(state) else { return };
    // (index, pointer, pointer within the operation, listed attribute, the string)
    let mut hits: Vec<(usize, String, Vec<String>, String, String)> = Vec::new();
    for (i, item) in ops.iter().enumerate() {
        let Some(op) = item.as_object() else { continue };
        if !matches!(op_kind(item), Some(PatchOpKind::Add | PatchOpKind::Replace)) {
            continue;
        }
        if has_path(op) {
            let Some((_, Ok(PatchPath::Attr(attr)))) = parsed_path(op) else {
                continue;
            };
            let Some(Value::String(s)) = op.get("value") else {
                continue;
            };
            if attr.sub_attr.is_some() {
                continue;
            }
            if let Some(hit) = listed(&attr, attributes) {
                let at = format!("/{OPERATIONS}/{i}/value");
                hits.push((
                    i,
                    at,
                    vec!["value".into()],
                    attributes[hit.index].clone(),
                    s.clone(),
                ));
            }
        } else if let Some(Value::Object(value)) = op.get("value") {
            for (key, v) in value {
                let Value::String(s) = v else { continue };
                let Some(hit) = key_listed(key, attributes) else {
                    continue;
                };
                if matches!(parse_path(key), Ok(PatchPath::Attr(a)) if a.sub_attr.is_some()) {
                    continue;
                }
                let at = format!("/{OPERATIONS}/{i}/value/{}", pointer_token(key));
                hits.push((
                    i,
                    at,
                    vec!["value".into(), key.clone()],
                    attributes[hit.index].clone(),
                    s.clone(),
                ));
            }
        }
    }
    for (i, at, keys, attribute, text) in hits {
        let boolean = match text.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        let fixed = match boolean {
            Some(b) => b.to_string(),
            None => "(none: only \"true\" or \"false\" can be)".to_owned(),
        };
        let vars = [
            ("index", i.to_string()),
            ("attribute", attribute),
            ("value", json_str(&text)),
            ("fixed", fixed),
        ];
        match boolean {
            Some(b) if r.rewrites() => {
                let target = operations_mut(state)
                    .and_then(|ops| ops.get_mut(i))
                    .and_then(|op| {
                        keys.iter()
                            .try_fold(op, |v, k| v.as_object_mut()?.get_mut(k))
                    });
                if let Some(target) = target {
                    *target = Value::Bool(b);
                }
                r.fixed(state, at, &vars, json_str(&text), b.to_string());
            }
            Some(_) => r.report(state, at, &vars),
            None => r.unfixable(state, at, &vars),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{json, Value};

    use crate::rules::context::RequestView;
    use crate::rules::{Action, Evaluation, RuleSet};
    use crate::scim::operation::Operation;
    use crate::scim::query::{Query, QueryError};

    pub(crate) const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    /// Evaluates `body` against one rule with this check, action and message.
    pub(crate) fn eval(
        check: &str,
        action: Action,
        message: &str,
        operation: Operation,
        id: Option<&str>,
        body: &str,
    ) -> Evaluation {
        let text = format!(
            "[[rule]]\nid = \"t.rule\"\noperations = [\"PatchUser\", \"PatchGroup\", \"CreateGroup\"]\n\
             check = {check}\naction = \"{action}\"\nmessage = '''{message}'''\nsource = \"test\"\n"
        );
        let rules = RuleSet::parse(&text, "test").unwrap_or_else(|e| panic!("{e}"));
        request(&rules, operation, id, body)
    }

    pub(crate) fn request(
        rules: &RuleSet,
        operation: Operation,
        id: Option<&str>,
        body: &str,
    ) -> Evaluation {
        let query: Result<Query, QueryError> = Ok(Query::default());
        let view = RequestView {
            operation,
            path: "/scim/v2",
            resource_id: id,
            query: &query,
            body: body.as_bytes(),
        };
        rules.evaluate(&view)
    }

    /// One expected finding: action, location, message (a trailing `…` matches a prefix).
    pub(crate) type Expect = (Action, &'static str, &'static str);

    /// Asserts the findings (rule `t.rule`) and the rewritten body (`None`: unchanged).
    pub(crate) fn assert_eval(
        name: &str,
        e: &Evaluation,
        findings: &[Expect],
        rewritten: Option<&Value>,
    ) {
        let got: Vec<(Action, &str, &str)> = e
            .findings
            .iter()
            .map(|f| (f.action, f.location.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(got.len(), findings.len(), "{name}: findings {got:#?}");
        for (g, w) in got.iter().zip(findings) {
            let message_ok = match w.2.strip_suffix('…') {
                Some(prefix) => g.2.starts_with(prefix),
                None => g.2 == w.2,
            };
            assert!(
                g.0 == w.0 && g.1 == w.1 && message_ok,
                "{name}: got {g:?}, want {w:?}"
            );
        }
        assert!(
            e.findings
                .iter()
                .all(|f| f.rule == "t.rule" && f.source == "test"),
            "{name}"
        );
        assert_eq!(e.rewritten.as_ref(), rewritten, "{name}: rewritten body");
    }

    /// A PatchOp body with these operations.
    pub(crate) fn patch(ops: Value) -> String {
        json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops })
            .to_string()
    }

    pub(crate) fn patched(ops: Value) -> Value {
        json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops })
    }

    /// `(name, action, body, findings, rewritten ops or None)` run against one check.
    type Case = (&'static str, Action, String, Vec<Expect>, Option<Value>);

    fn run_cases(check: &str, message: &str, cases: Vec<Case>) {
        for (name, action, body, findings, rewritten) in cases {
            let e = eval(
                check,
                action,
                message,
                Operation::PatchUser,
                Some("u1"),
                &body,
            );
            assert_eval(name, &e, &findings, rewritten.as_ref());
            assert!(e.batches.is_empty(), "{name}");
            if action != Action::Rewrite {
                assert!(e.findings.iter().all(|f| f.fix.is_none()), "{name}");
            }
        }
    }

    use Action::{Reject, Rewrite, Warn};

    #[test]
    fn op_supported() {
        let check = r#"{ kind = "patch-op-supported" }"#;
        let ops = json!([{"op": 5}, {"path": "x"}, 7, {"op": "move"}, {"op": "REMOVE", "path": "x"}, {"op": null}]);
        run_cases(
            check,
            "{index}|{op}",
            vec![
                (
                    "valid",
                    Reject,
                    patch(json!([{"op": "add", "path": "title", "value": "x"}])),
                    vec![],
                    None,
                ),
                (
                    "no Operations",
                    Reject,
                    "{}".into(),
                    vec![(Reject, "/Operations", "-|(no Operations)")],
                    None,
                ),
                (
                    "lower-case operations",
                    Reject,
                    r#"{"operations":[{"op":"add"}]}"#.into(),
                    vec![(
                        Reject,
                        "/Operations",
                        "-|(no Operations: the member is spelled `operations`)",
                    )],
                    None,
                ),
                (
                    "not an array",
                    Warn,
                    r#"{"Operations":{"op":"add"}}"#.into(),
                    vec![(
                        Warn,
                        "/Operations",
                        r#"-|(Operations is {"op":"add"} instead of an array)"#,
                    )],
                    None,
                ),
                (
                    "empty",
                    Reject,
                    patch(json!([])),
                    vec![(Reject, "/Operations", "-|(Operations is empty)")],
                    None,
                ),
                (
                    "bad ops",
                    Reject,
                    patch(ops),
                    vec![
                        (Reject, "/Operations/0/op", "0|5"),
                        (Reject, "/Operations/1", "1|(absent)"),
                        (
                            Reject,
                            "/Operations/2",
                            "2|(absent: the operation is 7, not an object)",
                        ),
                        (Reject, "/Operations/3/op", "3|\"move\""),
                        (Reject, "/Operations/5/op", "5|null"),
                    ],
                    None,
                ),
                ("array body", Reject, "[1]".into(), vec![], None),
                ("null body", Reject, "null".into(), vec![], None),
                ("invalid JSON", Reject, "{".into(), vec![], None),
                ("empty body", Reject, "".into(), vec![], None),
            ],
        );
    }

    #[test]
    fn op_case() {
        let check = r#"{ kind = "patch-op-case" }"#;
        let ops = json!([
            {"op": "Replace", "path": "active", "value": false},
            {"op": "add", "path": "title", "value": "x"},
            {"op": "ADD", "path": "nickName", "value": "n"},
            {"op": "Move"},
            {"op": 3},
            "x"
        ]);
        let mut fixed = ops.clone();
        fixed[0]["op"] = json!("replace");
        fixed[2]["op"] = json!("add");
        let found = |action| {
            vec![
                (action, "/Operations/0/op", "0|Replace|replace"),
                (action, "/Operations/2/op", "2|ADD|add"),
            ]
        };
        run_cases(
            check,
            "{index}|{op}|{fixed}",
            vec![
                (
                    "rewrite",
                    Rewrite,
                    patch(ops.clone()),
                    found(Rewrite),
                    Some(patched(fixed)),
                ),
                ("reject", Reject, patch(ops.clone()), found(Reject), None),
                ("warn", Warn, patch(ops), found(Warn), None),
                (
                    "no Operations",
                    Rewrite,
                    r#"{"Operations":"x"}"#.into(),
                    vec![],
                    None,
                ),
            ],
        );
        let e = eval(
            check,
            Rewrite,
            "m",
            Operation::PatchUser,
            None,
            &patch(json!([{"op": "Remove", "path": "x"}])),
        );
        let fix = e.findings[0].fix.as_ref().expect("fix");
        assert_eq!(
            (fix.before.as_str(), fix.after.as_str()),
            ("\"Remove\"", "\"remove\"")
        );
    }

    #[test]
    fn path_and_value_required() {
        let ops = json!([
            {"op": "remove"},
            {"op": "Remove", "path": null},
            {"op": "remove", "path": "title"},
            {"op": "add", "value": {"title": "t"}},
            {"op": "add", "path": "title"},
            {"op": "Replace", "path": "title", "value": null},
            {"op": "replace", "path": "title", "value": ""},
            {"op": "remove", "path": "members", "value": null},
            {"op": 1},
            []
        ]);
        run_cases(
            r#"{ kind = "patch-path-required", ops = ["remove"] }"#,
            "{index}|{op}",
            vec![(
                "path",
                Reject,
                patch(ops.clone()),
                vec![
                    (Reject, "/Operations/0", "0|remove"),
                    (Reject, "/Operations/1", "1|remove"),
                ],
                None,
            )],
        );
        run_cases(
            r#"{ kind = "patch-value-required", ops = ["add", "replace"] }"#,
            "{index}|{op}",
            vec![(
                "value",
                Reject,
                patch(ops.clone()),
                vec![
                    (Reject, "/Operations/4", "4|add"),
                    (Reject, "/Operations/5", "5|replace"),
                ],
                None,
            )],
        );
        // For remove, an explicit null is a value; only a missing one counts.
        run_cases(
            r#"{ kind = "patch-value-required", ops = ["remove"] }"#,
            "{index}|{op}",
            vec![(
                "remove",
                Warn,
                patch(ops),
                vec![
                    (Warn, "/Operations/0", "0|remove"),
                    (Warn, "/Operations/1", "1|remove"),
                    (Warn, "/Operations/2", "2|remove"),
                ],
                None,
            )],
        );
    }

    #[test]
    fn paths() {
        let check = format!(
            r#"{{ kind = "patch-paths", attributes = ["active", "externalId", "name", "emails", "{ENT}"] }}"#
        );
        let ops = json!([
            {"op": "replace", "path": "active", "value": true},
            {"op": "replace", "path": "ExternalID", "value": "e"},
            {"op": "replace", "path": "name.GivenName", "value": "g"},
            {"op": "replace", "path": "Name.givenName", "value": "g"},
            {"op": "replace", "path": "  EMAILS[Type EQ \"work\"].value", "value": "a@b"},
            {"op": "replace", "path": format!("{ENT}:manager"), "value": {"value": "m"}},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:Active", "value": true},
            {"op": "replace", "path": "password", "value": "p"},
            {"op": "replace", "path": "a[b", "value": "p"},
            {"op": "replace", "path": 5, "value": "p"},
            {"op": "replace", "value": {"password": "p"}},
            {"op": "replace", "path": null, "value": {"password": "p"}},
            {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:department", "value": "d"},
            "garbage"
        ]);
        let mut fixed = ops.clone();
        fixed[1]["path"] = json!("externalId");
        fixed[3]["path"] = json!("name.givenName");
        fixed[4]["path"] = json!("  emails[Type EQ \"work\"].value");
        fixed[6]["path"] = json!("urn:ietf:params:scim:schemas:core:2.0:User:active");
        let refused = |a| {
            vec![
                (a, "/Operations/7/path", "7|password|"),
                (
                    a,
                    "/Operations/8/path",
                    "8|`a[b`, which is not a valid path (…",
                ),
                (a, "/Operations/9/path", "9|5 (a path must be a string)|"),
            ]
        };
        let mut rewrite = vec![
            (Rewrite, "/Operations/1/path", "1|ExternalID|; rewrote the path as `externalId`"),
            (Rewrite, "/Operations/3/path", "3|Name.givenName|; rewrote the path as `name.givenName`"),
            (Rewrite, "/Operations/4/path", "4|  EMAILS[Type EQ \"work\"].value|; rewrote the path as `  emails[Type EQ \"work\"].value`"),
            (Rewrite, "/Operations/6/path", "6|urn:ietf:params:scim:schemas:core:2.0:User:Active|; rewrote the path as `urn:ietf:params:scim:schemas:core:2.0:User:active`"),
        ];
        // Unfixable under rewrite: they reject.
        rewrite.splice(4..4, refused(Reject));
        let mut reject = vec![
            (Reject, "/Operations/1/path", "1|ExternalID|; write the path as `externalId`"),
            (Reject, "/Operations/3/path", "3|Name.givenName|; write the path as `name.givenName`"),
            (Reject, "/Operations/4/path", "4|  EMAILS[Type EQ \"work\"].value|; write the path as `  emails[Type EQ \"work\"].value`"),
            (Reject, "/Operations/6/path", "6|urn:ietf:params:scim:schemas:core:2.0:User:Active|; write the path as `urn:ietf:params:scim:schemas:core:2.0:User:active`"),
        ];
        reject.splice(4..4, refused(Reject));
        run_cases(
            &check,
            "{index}|{path}|{fixed}",
            vec![
                (
                    "rewrite",
                    Rewrite,
                    patch(ops.clone()),
                    rewrite,
                    Some(patched(fixed)),
                ),
                ("reject", Reject, patch(ops.clone()), reject, None),
            ],
        );
        let e = eval(
            &check,
            Warn,
            "{supported}",
            Operation::PatchUser,
            None,
            &patch(json!([{"op": "remove", "path": "x"}])),
        );
        assert_eq!(
            e.findings[0].message,
            format!("active, externalId, name, emails, {ENT}")
        );
        assert_eq!(e.findings[0].action, Warn);
        assert_eq!(e.findings[0].scim_type, "invalidPath");
    }

    #[test]
    fn paths_with_an_extension_attribute_listed() {
        let check =
            format!(r#"{{ kind = "patch-paths", attributes = ["{ENT}:manager", "members"] }}"#);
        let ops = json!([
            {"op": "replace", "path": format!("{ENT}:Manager"), "value": {"value": "m"}},
            {"op": "replace", "path": format!("{ENT}:manager.value"), "value": "m"},
            {"op": "replace", "path": format!("{ENT}:employeeNumber"), "value": "7"},
            {"op": "remove", "path": "Members[value eq \"x\"]"},
            {"op": "replace", "path": ENT, "value": {}},
        ]);
        let mut fixed = ops.clone();
        fixed[0]["path"] = json!(format!("{ENT}:manager"));
        fixed[3]["path"] = json!("members[value eq \"x\"]");
        let e = eval(
            &check,
            Rewrite,
            "{index}|{fixed}",
            Operation::PatchGroup,
            None,
            &patch(ops),
        );
        assert_eval(
            "extension",
            &e,
            &[
                (Rewrite, "/Operations/0/path", "0|; rewrote the path as `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`"),
                (Reject, "/Operations/2/path", "2|"),
                (Rewrite, "/Operations/3/path", "3|; rewrote the path as `members[value eq \"x\"]`"),
                (Reject, "/Operations/4/path", "4|"),
            ],
            Some(&patched(fixed)),
        );
    }

    #[test]
    fn forbidden_op() {
        let ops = json!([
            {"op": "Remove", "path": "active"},
            {"op": "remove", "path": "title"},
            {"op": "replace", "path": "active", "value": true},
            {"op": "remove", "path": "USERNAME"},
            {"op": "remove", "path": "urn:ietf:params:scim:schemas:core:2.0:User:userName"},
            {"op": "remove"},
            {"op": "remove", "path": "active["},
        ]);
        run_cases(
            r#"{ kind = "patch-forbidden-op", op = "remove", attributes = ["userName", "active"] }"#,
            "{index}|{path}",
            vec![(
                "remove",
                Reject,
                patch(ops),
                vec![
                    (Reject, "/Operations/0", "0|active"),
                    (Reject, "/Operations/3", "3|USERNAME"),
                    (
                        Reject,
                        "/Operations/4",
                        "4|urn:ietf:params:scim:schemas:core:2.0:User:userName",
                    ),
                ],
                None,
            )],
        );
    }

    #[test]
    fn single_operation() {
        let check = r#"{ kind = "patch-single-operation", attributes = ["userName", "active"] }"#;
        run_cases(
            check,
            "{count}|{attribute}",
            vec![
                (
                    "twice active",
                    Reject,
                    patch(json!([
                        {"op": "replace", "path": "active", "value": false},
                        {"op": "replace", "value": {"Active": true, "title": "x"}},
                        {"op": "replace", "path": "userName", "value": "a"},
                        {"op": "replace", "path": "ACTIVE", "value": true},
                    ])),
                    vec![(Reject, "/Operations", "3|active")],
                    None,
                ),
                (
                    "both twice",
                    Warn,
                    patch(json!([
                        {"op": "replace", "value": {"userName": "a", "active": true}},
                        {"op": "replace", "value": {"userName": "b", "active": false}},
                    ])),
                    vec![
                        (Warn, "/Operations", "2|userName"),
                        (Warn, "/Operations", "2|active"),
                    ],
                    None,
                ),
                (
                    "once each",
                    Reject,
                    patch(json!([
                        {"op": "replace", "path": "active", "value": false},
                        {"op": "replace", "path": "userName", "value": "a"},
                        {"op": "replace", "path": "title", "value": "a"},
                        {"op": "replace", "path": "title", "value": "b"},
                    ])),
                    vec![],
                    None,
                ),
            ],
        );
    }

    #[test]
    fn filter_operators() {
        let ops = json!([
            {"op": "remove", "path": "members[value eq \"a\"]"},
            {"op": "replace", "path": "emails[type co \"w\" or value sw \"x\"].value", "value": "v"},
            {"op": "replace", "path": "emails[type eq \"work\" and primary eq true].value", "value": "v"},
            {"op": "remove", "path": "emails[not (type pr)]"},
            {"op": "replace", "path": "title", "value": "t"},
            {"op": "replace", "path": "emails[type GT \"a\"", "value": "t"},
        ]);
        run_cases(
            r#"{ kind = "patch-filter-operators", operators = ["eq"] }"#,
            "{index}|{path}|{operators}",
            vec![(
                "operators",
                Reject,
                patch(ops),
                vec![
                    (
                        Reject,
                        "/Operations/1/path",
                        "1|emails[type co \"w\" or value sw \"x\"].value|co, sw, or",
                    ),
                    (
                        Reject,
                        "/Operations/3/path",
                        "3|emails[not (type pr)]|pr, not",
                    ),
                ],
                None,
            )],
        );
    }

    #[test]
    fn split_pathless() {
        let check = r#"{ kind = "patch-split-pathless" }"#;
        let entra = json!([
            {"op": "Replace", "value": {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "active": false,
                "displayName": "D",
                "name.givenName": "G",
                ENT: {"employeeNumber": "7", "manager": {"value": "m"}},
                format!("{ENT}:department"): "Eng"
            }},
            {"op": "add", "value": {"title": "t"}},
        ]);
        let split = json!([
            {"op": "Replace", "path": "active", "value": false},
            {"op": "Replace", "path": "displayName", "value": "D"},
            {"op": "Replace", "path": "name.givenName", "value": "G"},
            {"op": "Replace", "path": format!("{ENT}:employeeNumber"), "value": "7"},
            {"op": "Replace", "path": format!("{ENT}:manager"), "value": {"value": "m"}},
            {"op": "Replace", "path": format!("{ENT}:department"), "value": "Eng"},
            {"op": "add", "value": {"title": "t"}},
        ]);
        let message = "0|Replace|6|active, displayName, name.givenName, \
            urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber, \
            urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager, \
            urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department";
        let two = json!([
            {"op": "add", "value": {"a": 1, "b": 2}},
            {"op": "remove", "path": "x"},
            {"op": "replace", "value": {"c": 3, "d": 4}},
        ]);
        let two_split = json!([
            {"op": "add", "path": "a", "value": 1},
            {"op": "add", "path": "b", "value": 2},
            {"op": "remove", "path": "x"},
            {"op": "replace", "path": "c", "value": 3},
            {"op": "replace", "path": "d", "value": 4},
        ]);
        let untouched = json!([
            {"op": "replace", "path": "name", "value": {"givenName": "a", "familyName": "b"}},
            {"op": "replace", "value": ["a", "b"]},
            {"op": "replace", "value": {}},
            {"op": "replace", "value": {"schemas": []}},
            {"op": "remove", "value": {"a": 1, "b": 2}},
            {"op": "replace", "value": null},
            {"op": 7, "value": {"a": 1, "b": 2}},
        ]);
        run_cases(
            check,
            "{index}|{op}|{count}|{attributes}",
            vec![
                ("entra", Rewrite, patch(entra.clone()), vec![(Rewrite, "/Operations/0", message)], Some(patched(split))),
                ("entra reject", Reject, patch(entra), vec![(Reject, "/Operations/0", message)], None),
                (
                    "two ops",
                    Rewrite,
                    patch(two.clone()),
                    vec![(Rewrite, "/Operations/0", "0|add|2|a, b"), (Rewrite, "/Operations/2", "2|replace|2|c, d")],
                    Some(patched(two_split)),
                ),
                (
                    "two ops warn",
                    Warn,
                    patch(two),
                    vec![(Warn, "/Operations/0", "0|add|2|a, b"), (Warn, "/Operations/2", "2|replace|2|c, d")],
                    None,
                ),
                (
                    "schemas and one attribute",
                    Rewrite,
                    patch(json!([{"op": "replace", "value": {"schemas": [], "active": true}}])),
                    vec![(Rewrite, "/Operations/0", "0|replace|1|active")],
                    Some(patched(json!([{"op": "replace", "path": "active", "value": true}]))),
                ),
                (
                    "one extension block",
                    Rewrite,
                    patch(json!([{"op": "add", "value": {ENT: {"employeeNumber": "7", "costCenter": "c"}}}])),
                    vec![(
                        Rewrite,
                        "/Operations/0",
                        "0|add|2|urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter, \
                         urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
                    )],
                    Some(patched(json!([
                        {"op": "add", "path": format!("{ENT}:costCenter"), "value": "c"},
                        {"op": "add", "path": format!("{ENT}:employeeNumber"), "value": "7"},
                    ]))),
                ),
                ("untouched", Rewrite, patch(untouched), vec![], None),
            ],
        );
        let e = eval(
            check,
            Rewrite,
            "m",
            Operation::PatchUser,
            None,
            &patch(json!([{"op": "add", "value": {"a": 1, "b": 2}}])),
        );
        let fix = e.findings[0].fix.as_ref().expect("fix");
        assert_eq!(fix.before, r#"{"op":"add","value":{"a":1,"b":2}}"#);
        assert_eq!(
            fix.after,
            r#"[{"op":"add","path":"a","value":1},{"op":"add","path":"b","value":2}]"#
        );
    }

    #[test]
    fn boolean_string() {
        let check = r#"{ kind = "patch-boolean-string", attributes = ["active"] }"#;
        let ops = json!([
            {"op": "replace", "path": "active", "value": "false"},
            {"op": "Replace", "value": {"Active": "True", "title": "true"}},
            {"op": "add", "path": "active", "value": "FALSE"},
            {"op": "replace", "path": "active", "value": "yes"},
            {"op": "replace", "path": "active", "value": true},
            {"op": "remove", "path": "active", "value": "false"},
            {"op": "replace", "path": "title", "value": "true"},
            {"op": "replace", "path": "active", "value": 0},
            {"op": "replace", "path": "active.x", "value": "true"},
        ]);
        let mut fixed = ops.clone();
        fixed[0]["value"] = json!(false);
        fixed[1]["value"]["Active"] = json!(true);
        fixed[2]["value"] = json!(false);
        let found = |a| {
            vec![
                (a, "/Operations/0/value", "0|active|\"false\"|false"),
                (a, "/Operations/1/value/Active", "1|active|\"True\"|true"),
                (a, "/Operations/2/value", "2|active|\"FALSE\"|false"),
                (
                    Reject,
                    "/Operations/3/value",
                    "3|active|\"yes\"|(none: only \"true\" or \"false\" can be)",
                ),
            ]
        };
        let mut warned = found(Warn);
        warned[3].0 = Warn;
        run_cases(
            check,
            "{index}|{attribute}|{value}|{fixed}",
            vec![
                (
                    "rewrite",
                    Rewrite,
                    patch(ops.clone()),
                    found(Rewrite),
                    Some(patched(fixed)),
                ),
                ("reject", Reject, patch(ops.clone()), found(Reject), None),
                ("warn", Warn, patch(ops), warned, None),
            ],
        );
    }

    fn values_check() -> String {
        r#"{ kind = "patch-values", checks = [
            { kind = "drop-attributes", attributes = ["password", "ims"] },
            { kind = "drop-sub-attributes", attributes = ["emails"], sub_attributes = ["display"] },
            { kind = "single-value", attributes = ["emails"] },
            { kind = "manager-object" },
            { kind = "refused-characters", attributes = ["title"], characters = "<" },
        ] }"#
            .to_owned()
    }

    #[test]
    fn values() {
        let ops = json!([
            {"op": "replace", "path": "password", "value": "s3cret"},
            {"op": "add", "path": "emails", "value": [
                {"value": "a@x", "display": "A", "type": "home"},
                {"value": "b@x", "type": "work"}
            ]},
            {"op": "replace", "path": format!("{ENT}:manager"), "value": "boss"},
            {"op": "Replace", "value": {"ims": [{"value": "x"}], "title": "T"}},
            {"op": "add", "value": {"password": "p"}},
            {"op": "replace", "path": "title", "value": "a<b"},
            {"op": "remove", "path": "password"},
            {"op": "replace", "path": "emails[type eq \"work\"].display", "value": "x"},
            {"op": "replace", "path": "name.givenName", "value": "G"},
            {"op": "replace", "path": "emails.display", "value": "x"},
            {"op": "replace", "path": "ims", "value": null},
        ]);
        let fixed = json!([
            {"op": "add", "path": "emails", "value": [{"value": "b@x", "type": "work"}]},
            {"op": "replace", "path": format!("{ENT}:manager"), "value": {"value": "boss"}},
            {"op": "Replace", "value": {"title": "T"}},
            {"op": "replace", "path": "title", "value": "a<b"},
            {"op": "remove", "path": "password"},
            {"op": "replace", "path": "emails[type eq \"work\"].display", "value": "x"},
            {"op": "replace", "path": "name.givenName", "value": "G"},
            {"op": "replace", "path": "ims", "value": null},
        ]);
        let found = |a| {
            vec![
                (a, "/Operations/0/value", "AWS IAM Identity Center does not support password; removed \"s3cret\""),
                (a, "/Operations/1/value/0/display", "AWS IAM Identity Center does not support emails.display; removed \"A\""),
                (
                    a,
                    "/Operations/1/value",
                    "emails may hold one value but 2 were sent; kept {\"type\":\"work\",\"value\":\"b@x\"}, \
                     dropped [{\"type\":\"home\",\"value\":\"a@x\"}]",
                ),
                (a, "/Operations/2/value", "the manager was the bare string \"boss\"; wrapped it as an object with that value"),
                (a, "/Operations/3/value/ims", "AWS IAM Identity Center does not support ims; removed [{\"value\":\"x\"}]"),
                (a, "/Operations/4/value/password", "AWS IAM Identity Center does not support password; removed \"p\""),
                (
                    if a == Rewrite { Reject } else { a },
                    "/Operations/5/value",
                    "title contains U+003C ('<') at character 2, which AWS IAM Identity Center refuses",
                ),
                (a, "/Operations/9/value", "AWS IAM Identity Center does not support emails.display; removed \"x\""),
            ]
        };
        // Before the single-value fix, the rewrite sees the display dropped first, so
        // the kept and dropped values no longer carry it.
        let mut rewrite = found(Rewrite);
        rewrite[2].2 = "emails may hold one value but 2 were sent; kept {\"type\":\"work\",\"value\":\"b@x\"}, \
                        dropped [{\"type\":\"home\",\"value\":\"a@x\"}]";
        let mut reject = found(Reject);
        reject[2].2 = "emails may hold one value but 2 were sent; kept {\"type\":\"work\",\"value\":\"b@x\"}, \
                       dropped [{\"display\":\"A\",\"type\":\"home\",\"value\":\"a@x\"}]";
        let mut warn = found(Warn);
        warn[2].2 = reject[2].2;
        let check = values_check();
        run_cases(
            &check,
            "{detail}",
            vec![
                ("rewrite", Rewrite, patch(ops.clone()), rewrite, Some(patched(fixed))),
                ("reject", Reject, patch(ops.clone()), reject, None),
                ("warn", Warn, patch(ops), warn, None),
                (
                    "all removed",
                    Rewrite,
                    patch(json!([{"op": "add", "path": "password", "value": "x"}])),
                    vec![(Rewrite, "/Operations/0/value", "AWS IAM Identity Center does not support password; removed \"x\"")],
                    Some(patched(json!([]))),
                ),
                (
                    "extension block in a path-less value",
                    Rewrite,
                    patch(json!([{"op": "replace", "value": {ENT: {"manager": "m"}}}])),
                    vec![(
                        Rewrite,
                        "/Operations/0/value/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User/manager",
                        "the manager was the bare string \"m\"; wrapped it as an object with that value",
                    )],
                    Some(patched(json!([{"op": "replace", "value": {ENT: {"manager": {"value": "m"}}}}]))),
                ),
                ("hostile", Rewrite, patch(json!([1, {"op": "add"}, {"op": "add", "path": "[", "value": 1}])), vec![], None),
            ],
        );
    }

    #[test]
    fn values_fix_carries_the_inner_before_and_after() {
        let e = eval(
            &values_check(),
            Rewrite,
            "{detail}",
            Operation::PatchUser,
            None,
            &patch(json!([{"op": "replace", "path": format!("{ENT}:manager"), "value": "boss"}])),
        );
        let fix = e.findings[0].fix.as_ref().expect("fix");
        assert_eq!(
            (fix.before.as_str(), fix.after.as_str()),
            ("\"boss\"", r#"{"value":"boss"}"#)
        );
        assert_eq!(e.findings[0].scim_type, "invalidValue");
    }

    /// Runs the embedded rules (all of them, or only `only`) at their default actions.
    pub(crate) fn embedded(
        only: Option<(&str, Action)>,
        operation: Operation,
        id: Option<&str>,
        body: &str,
    ) -> Evaluation {
        let rules = RuleSet::embedded().unwrap_or_else(|e| panic!("{e}"));
        request(&only_rule(rules, only), operation, id, body)
    }

    /// The rules with every rule but `only` turned off, `only` at its action.
    fn only_rule(mut rules: RuleSet, only: Option<(&str, Action)>) -> RuleSet {
        if let Some((keep, action)) = only {
            let ids: Vec<String> = rules.rules().iter().map(|r| r.id.clone()).collect();
            for id in ids {
                let action = if id == keep { action } else { Action::Off };
                rules
                    .set_action(&id, action)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        rules
    }

    #[test]
    fn guide_patch_user_active_string() {
        let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":[{"op":"replace","path":"active","value":"false"}]}"#;
        let e = embedded(
            None,
            Operation::PatchUser,
            Some("9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074"),
            body,
        );
        let got: Vec<(&str, Action, &str)> = e
            .findings
            .iter()
            .map(|f| (f.rule.as_str(), f.action, f.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [(
                "user.patch.active-string",
                Rewrite,
                "PATCH operation 0 sets active to the string \"false\"; AWS IAM Identity Center takes a JSON boolean: false."
            )]
        );
        assert_eq!(
            e.rewritten,
            Some(patched(
                json!([{"op": "replace", "path": "active", "value": false}])
            ))
        );
        // Under reject the body stays as sent.
        let e = embedded(
            Some(("user.patch.active-string", Reject)),
            Operation::PatchUser,
            None,
            body,
        );
        assert_eq!(
            (
                e.findings.len(),
                e.findings[0].action,
                e.rewritten.is_none()
            ),
            (1, Reject, true)
        );
    }

    #[test]
    fn entra_patch_user_through_every_rule() {
        // Entra ID: capitalised op, a path-less value with several attributes, and
        // active as a string.
        let body = patch(
            json!([{"op": "Replace", "value": {"active": "False", "displayName": "Ann", "title": ""}}]),
        );
        let e = embedded(None, Operation::PatchUser, Some("u1"), &body);
        let rules: Vec<&str> = e.findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(
            rules,
            [
                "patch.op-case",
                "user.patch.pathless-split",
                "user.patch.active-string"
            ]
        );
        assert!(
            e.findings.iter().all(|f| f.action == Rewrite),
            "{:#?}",
            e.findings
        );
        assert_eq!(
            e.rewritten,
            Some(patched(json!([
                {"op": "replace", "path": "active", "value": false},
                {"op": "replace", "path": "displayName", "value": "Ann"},
                {"op": "replace", "path": "title", "value": ""},
            ])))
        );
        assert_eq!(e.findings[2].location, "/Operations/0/value");
    }

    /// The embedded messages of the PATCH rules get every placeholder they name.
    #[test]
    fn embedded_messages_are_filled() {
        let cases: &[(&str, Operation, Value)] = &[
            (
                "patch.op-supported",
                Operation::PatchUser,
                json!([{"op": "move"}]),
            ),
            (
                "patch.op-case",
                Operation::PatchUser,
                json!([{"op": "Add", "path": "title", "value": "t"}]),
            ),
            (
                "patch.path-required",
                Operation::PatchUser,
                json!([{"op": "remove"}]),
            ),
            (
                "patch.value-required",
                Operation::PatchUser,
                json!([{"op": "add", "path": "title"}]),
            ),
            (
                "user.patch.paths",
                Operation::PatchUser,
                json!([{"op": "add", "path": "password", "value": "p"}]),
            ),
            (
                "user.patch.remove-forbidden",
                Operation::PatchUser,
                json!([{"op": "remove", "path": "active"}]),
            ),
            (
                "user.patch.single-operation",
                Operation::PatchUser,
                json!([{"op": "replace", "path": "active", "value": true}, {"op": "replace", "path": "active", "value": false}]),
            ),
            (
                "patch.filter-eq-only",
                Operation::PatchUser,
                json!([{"op": "remove", "path": "emails[type co \"w\"]"}]),
            ),
            (
                "user.patch.pathless-split",
                Operation::PatchUser,
                json!([{"op": "add", "value": {"a": 1, "b": 2}}]),
            ),
            (
                "user.patch.active-string",
                Operation::PatchUser,
                json!([{"op": "add", "path": "active", "value": "true"}]),
            ),
            (
                "user.patch.values",
                Operation::PatchUser,
                json!([{"op": "add", "path": "password", "value": "p"}]),
            ),
            (
                "group.patch.paths",
                Operation::PatchGroup,
                json!([{"op": "add", "path": "DisplayName", "value": "d"}]),
            ),
        ];
        for (id, operation, ops) in cases {
            let e = embedded(
                Some((id, Action::Warn)),
                *operation,
                Some("g1"),
                &patch(ops.clone()),
            );
            assert_eq!(e.findings.len(), 1, "{id}: {:#?}", e.findings);
            let message = &e.findings[0].message;
            assert_eq!(unfilled(message), Vec::<&str>::new(), "{id}: {message}");
        }
    }

    /// The `{name}` placeholders left in a rendered message.
    pub(crate) fn unfilled(message: &str) -> Vec<&str> {
        message
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split('}').next())
            .filter(|name| {
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
            .collect()
    }

    /// Hostile bodies never panic, under any action of any embedded rule.
    #[test]
    fn hostile_bodies_never_panic() {
        let bodies = [
            "",
            "{",
            "null",
            "[]",
            "5",
            "{}",
            r#"{"Operations":null}"#,
            r#"{"Operations":5}"#,
            r#"{"Operations":{}}"#,
            r#"{"Operations":[]}"#,
            r#"{"Operations":[null,5,"x",[],{}]}"#,
            r#"{"Operations":[{"op":5},{"op":null},{"op":[]},{"op":{}}]}"#,
            r#"{"Operations":[{"op":"add","path":5,"value":null},{"op":"add","path":null},{"op":"add","path":"","value":1}]}"#,
            r#"{"Operations":[{"op":"add","path":"members","value":null},{"op":"add","path":"members","value":[null,1,"x",{}]}]}"#,
            r#"{"Operations":[{"op":"remove","path":"members[value eq 5]"},{"op":"remove","path":"members[value eq \"a\"].x"}]}"#,
            r#"{"Operations":[{"op":"replace","value":{"id":5,"schemas":null,"members":"x","urn:a:b:1.0:User":5}}]}"#,
            r#"{"Operations":[{"op":"Add","value":{"urn:a:b:1.0:User":{},"x":{"y":"True"}}}]}"#,
            r#"{"Operations":[{"op":"replace","path":"urn:a:b","value":{"b":""}}]}"#,
            r#"{"members":5}"#,
            r#"{"members":[null,1,{"display":null,"$ref":null}]}"#,
            r#"{"Operations":[{"op":"add","path":"emails[","value":[]},{"op":"replace","path":"name.","value":{}}]}"#,
        ];
        let base = RuleSet::embedded().unwrap_or_else(|e| panic!("{e}"));
        for rule in base.rules() {
            for action in [Reject, Rewrite, Warn] {
                if !rule.check.supports(action) {
                    continue;
                }
                let rules = only_rule(base.clone(), Some((&rule.id, action)));
                for operation in [
                    Operation::PatchUser,
                    Operation::PatchGroup,
                    Operation::CreateGroup,
                ] {
                    for body in bodies {
                        let _ = request(&rules, operation, Some("g"), body);
                    }
                }
            }
        }
    }
}
