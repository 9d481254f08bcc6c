//! Checks on the operation itself and on resource bodies (users, and the body-level
//! checks groups share). Attribute names match case-insensitively (RFC 7643 §2.1).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::rules::attr::JsonType;
use crate::rules::attr::{
    attribute_strings, describe, entry, find, is_urn, key_in, name_of, pointer_of, remove,
    value_mut, walk_strings, AttrRef, Step, MANAGER,
};
use crate::rules::context::{pointer_token, show, Body, Reporter, RequestView, State};

pub(crate) fn unsupported_operation(
    r: &Reporter<'_>,
    request: &RequestView<'_>,
    state: &mut State,
) {
    r.report(
        state,
        format!("path {}", request.path),
        &[("operation", request.operation.name().to_owned())],
    );
}

pub(crate) fn unknown_endpoint(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    r.report(state, format!("path {}", request.path), &[]);
}

pub(crate) fn json_body(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    let found = match &state.body {
        Body::Empty if request.body.is_empty() => {
            "no body (an empty request, or one whose body was read as empty)".to_owned()
        }
        Body::Empty => "a body of only whitespace".to_owned(),
        Body::Invalid(_) if request.body.starts_with(b"\xEF\xBB\xBF") => {
            "a UTF-8 byte order mark (bytes EF BB BF) before the JSON; send the JSON without it"
                .to_owned()
        }
        Body::Invalid(e) => format!(
            "invalid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ),
        Body::Json(v) if !v.is_object() => format!("{} instead of a JSON object", describe(v)),
        _ => return,
    };
    r.report(state, "body", &[("found", found)]);
}

/// The resource names a SCIM path may end with, for [`path_shape`]'s fix.
const RESOURCES: [&str; 5] = [
    "Users",
    "Groups",
    "Schemas",
    "ResourceTypes",
    "ServiceProviderConfig",
];

pub(crate) fn path_shape(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    let path = request.path;
    let segments: Vec<&str> = path.split('/').collect();
    // `/scim/v2Groups/…`: the IdP joined its base URL and the resource without a slash.
    let glued = segments.windows(2).find_map(|pair| {
        let [scim, glued] = pair else { return None };
        let rest = glued.get(2..)?;
        let is_v2 = glued.get(..2).is_some_and(|v| v.eq_ignore_ascii_case("v2"));
        let resource = RESOURCES.iter().find(|r| {
            rest.get(..r.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(r))
        })?;
        (scim.eq_ignore_ascii_case("scim") && is_v2).then(|| format!("v2/{resource}"))
    });
    let problem = if let Some(fixed) = glued {
        format!(
            "the path has no `/` after `/scim/v2` (`{path}`); AWS IAM Identity Center serves `…/scim/{fixed}…`. Fix the SCIM endpoint URL in the IdP so the resource follows `/scim/v2/`"
        )
    } else if segments.len() > 2 && segments[1..segments.len() - 1].contains(&"") {
        format!(
            "the path has an empty segment (`//` in `{path}`); the SCIM endpoint URL configured in the IdP most likely ends with a `/`. Remove the trailing slash: AWS's endpoint is `https://scim.<region>.amazonaws.com/<tenant id>/scim/v2`"
        )
    } else {
        return;
    };
    r.report(state, format!("path {path}"), &[("problem", problem)]);
}

pub(crate) fn required(r: &Reporter<'_>, attributes: &[String], state: &mut State) {
    let Some(body) = state.object() else { return };
    let mut missing = Vec::new();
    for attr in attributes {
        let found = match find(body, attr).map(|f| f.value) {
            None => Some("missing"),
            Some(Value::Null) => Some("null"),
            Some(Value::String(s)) if s.trim().is_empty() => Some("empty"),
            Some(_) => None,
        };
        if let Some(found) = found {
            let pointer = format!("/{}", attr.replace('.', "/"));
            missing.push((pointer, attr.clone(), found));
        }
    }
    for (pointer, attr, found) in missing {
        r.report(
            state,
            pointer,
            &[("attribute", attr), ("found", found.to_owned())],
        );
    }
}

pub(crate) fn drop_attributes(r: &Reporter<'_>, attributes: &[String], state: &mut State) {
    for attr in attributes {
        let Some(body) = state.object() else { return };
        let Some(found) = find(body, attr) else {
            continue;
        };
        let (pointer, value) = (found.pointer(), found.value);
        let vars = [("attribute", attr.clone()), ("value", value.to_string())];
        if r.rewrites() {
            let before = value.to_string();
            if let Some(body) = state.object_mut() {
                remove(body, attr);
            }
            r.fixed(state, pointer, &vars, before, show(None));
        } else {
            r.report(state, pointer, &vars);
        }
    }
}

pub(crate) fn drop_sub_attributes(
    r: &Reporter<'_>,
    attributes: &[String],
    subs: &[String],
    state: &mut State,
) {
    for attr in attributes {
        let Some(body) = state.object() else { return };
        let Some(found) = find(body, attr) else {
            continue;
        };
        let value = found.value;
        // Every (element pointer, sub key) to drop: elements of a multi-valued attribute,
        // or the attribute's own object.
        let mut hits: Vec<(String, Option<usize>, String, Value)> = Vec::new();
        let mut look = |object: &Map<String, Value>, index: Option<usize>| {
            for sub in subs {
                if let Some((key, old)) = entry(object, sub) {
                    let pointer = found.pointer();
                    let at = match index {
                        Some(i) => format!("{pointer}/{i}/{}", pointer_token(key)),
                        None => format!("{pointer}/{}", pointer_token(key)),
                    };
                    hits.push((at, index, key.to_owned(), old.clone()));
                }
            }
        };
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(object) = item.as_object() {
                        look(object, Some(i));
                    }
                }
            }
            Value::Object(object) => look(object, None),
            _ => {}
        }
        for (at, index, key, old) in hits {
            let vars = [
                ("attribute", format!("{attr}.{key}")),
                ("value", old.to_string()),
            ];
            if r.rewrites() {
                if let Some(target) = state.object_mut().and_then(|b| value_mut(b, attr)) {
                    let object = match (index, target) {
                        (Some(i), Value::Array(items)) => {
                            items.get_mut(i).and_then(Value::as_object_mut)
                        }
                        (None, Value::Object(object)) => Some(object),
                        _ => None,
                    };
                    if let Some(object) = object {
                        object.remove(&key);
                    }
                }
                r.fixed(state, at, &vars, old.to_string(), show(None));
            } else {
                r.report(state, at, &vars);
            }
        }
    }
}

/// Index of the value to keep: the primary one, else type work, else the first.
fn keeper(items: &[Value]) -> usize {
    let field = |item: &'_ Value, name: &str| {
        item.as_object()
            .and_then(|o| entry(o, name).map(|(_, v)| v.clone()))
    };
    items
        .iter()
        .position(|item| field(item, "primary") == Some(Value::Bool(true)))
        .or_else(|| {
            items.iter().position(|item| {
                field(item, "type")
                    .and_then(|t| t.as_str().map(|s| s.eq_ignore_ascii_case("work")))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(0)
}

pub(crate) fn single_value(r: &Reporter<'_>, attributes: &[String], state: &mut State) {
    for attr in attributes {
        let Some(body) = state.object() else { return };
        let Some(found) = find(body, attr) else {
            continue;
        };
        let Value::Array(items) = found.value else {
            continue;
        };
        if items.len() < 2 {
            continue;
        }
        let pointer = found.pointer();
        let keep = keeper(items);
        let kept = items[keep].clone();
        let dropped: Vec<Value> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != keep)
            .map(|(_, v)| v.clone())
            .collect();
        let before = Value::Array(items.clone()).to_string();
        let vars = [
            ("attribute", attr.clone()),
            ("count", items.len().to_string()),
            ("kept", kept.to_string()),
            ("dropped", Value::Array(dropped).to_string()),
        ];
        if r.rewrites() {
            let after = Value::Array(vec![kept.clone()]);
            if let Some(target) = state.object_mut().and_then(|b| value_mut(b, attr)) {
                *target = after.clone();
            }
            r.fixed(state, pointer, &vars, before, after.to_string());
        } else {
            r.report(state, pointer, &vars);
        }
    }
}

pub(crate) fn primary_email(r: &Reporter<'_>, state: &mut State) {
    let Some(body) = state.object() else { return };
    let Some(found) = find(body, "emails") else {
        return;
    };
    let Value::Array(items) = found.value else {
        return;
    };
    let [only] = items.as_slice() else { return };
    let Some(email) = only.as_object() else {
        return;
    };
    let primary = entry(email, "primary").map(|(_, v)| v);
    if primary == Some(&Value::Bool(true)) {
        return;
    }
    let primary = primary.cloned();
    let before = only.to_string();
    let vars = [("primary", show(primary.as_ref()))];
    let at = format!("{}/0", found.pointer());
    if r.rewrites() {
        let mut fixed = email.clone();
        if let Some(k) = key_in(&fixed, "primary") {
            fixed.remove(&k);
        }
        fixed.insert("primary".into(), Value::Bool(true));
        let after = Value::Object(fixed);
        if let Some(Value::Array(items)) = state.object_mut().and_then(|b| value_mut(b, "emails")) {
            items[0] = after.clone();
        }
        r.fixed(state, at, &vars, before, after.to_string());
    } else {
        r.report(state, at, &vars);
    }
}

pub(crate) fn known_schemas(r: &Reporter<'_>, allowed: &[String], state: &mut State) {
    let is_allowed = |urn: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(urn));
    let Some(body) = state.object() else { return };
    // Extension blocks keyed by an unknown URN, with their values.
    let blocks: Vec<(String, Value)> = body
        .iter()
        .filter(|(k, _)| is_urn(k) && !is_allowed(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // URNs listed in `schemas`.
    let listed: Vec<(usize, String)> = match key_in(body, "schemas").and_then(|k| body.get(&k)) {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.as_str()
                    .filter(|s| !is_allowed(s))
                    .map(|s| (i, s.to_owned()))
            })
            .collect(),
        _ => Vec::new(),
    };
    for (key, value) in blocks {
        let vars = [("urn", key.clone())];
        let at = format!("/{}", pointer_token(&key));
        if r.rewrites() {
            if let Some(body) = state.object_mut() {
                body.remove(&key);
            }
            r.fixed(state, at, &vars, value.to_string(), show(None));
        } else {
            r.report(state, at, &vars);
        }
    }
    if listed.is_empty() {
        return;
    }
    let Some(body) = state.object() else { return };
    let Some(schemas_key) = key_in(body, "schemas") else {
        return;
    };
    let before = body[&schemas_key].clone();
    for (i, urn) in &listed {
        let vars = [("urn", urn.clone())];
        let at = format!("/{}/{i}", pointer_token(&schemas_key));
        if !r.rewrites() {
            r.report(state, at, &vars);
        }
    }
    if r.rewrites() {
        let kept: Vec<Value> = before
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|v| v.as_str().is_none_or(&is_allowed))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let after = Value::Array(kept);
        if let Some(body) = state.object_mut() {
            body.insert(schemas_key.clone(), after.clone());
        }
        let urns = listed
            .iter()
            .map(|(_, u)| u.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        r.fixed(
            state,
            format!("/{}", pointer_token(&schemas_key)),
            &[("urn", urns)],
            before.to_string(),
            after.to_string(),
        );
    }
}

/// Pointers of every attribute whose value is `""`, in objects at any depth (strings
/// inside arrays of strings are values, not attributes, and are left alone).
fn empty_strings(root: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk_strings(root, &mut Vec::new(), &mut |path, text| {
        if text.is_empty() && matches!(path.last(), Some(Step::Key(_))) {
            found.push(pointer_of(path));
        }
    });
    found
}

/// Removes the member a JSON pointer names from its parent object.
fn remove_pointer(root: &mut Value, pointer: &str) -> Option<Value> {
    let (parent, last) = pointer.rsplit_once('/')?;
    let key = last.replace("~1", "/").replace("~0", "~");
    root.pointer_mut(parent)?.as_object_mut()?.remove(&key)
}

pub(crate) fn empty_string(r: &Reporter<'_>, state: &mut State) {
    let Body::Json(root) = &state.body else {
        return;
    };
    if !root.is_object() {
        return;
    }
    for pointer in empty_strings(root) {
        let attribute = pointer.trim_start_matches('/').replace('/', ".");
        let vars = [("attribute", attribute)];
        if r.rewrites() {
            if let Body::Json(root) = &mut state.body {
                remove_pointer(root, &pointer);
            }
            r.fixed(state, pointer, &vars, "\"\"".into(), show(None));
        } else {
            r.report(state, pointer, &vars);
        }
    }
}

pub(crate) fn manager_object(r: &Reporter<'_>, state: &mut State) {
    let Some(body) = state.object() else { return };
    let Some(found) = find(body, MANAGER) else {
        return;
    };
    let Value::String(id) = found.value else {
        return;
    };
    let pointer = found.pointer();
    let id = id.clone();
    let vars = [("value", id.clone())];
    if r.rewrites() {
        let after = serde_json::json!({ "value": id });
        if let Some(target) = state.object_mut().and_then(|b| value_mut(b, MANAGER)) {
            *target = after.clone();
        }
        r.fixed(
            state,
            pointer,
            &vars,
            Value::String(id).to_string(),
            after.to_string(),
        );
    } else {
        r.report(state, pointer, &vars);
    }
}

/// Where a value sits in the body: the keys leading to it as the body spells them, and
/// for an element of a multi-valued attribute, its index before the last key. The JSON
/// pointer is built only for a finding.
#[derive(Clone, Copy)]
struct Place<'v> {
    /// The extension block's key, the attribute's, the sub-attribute's.
    keys: [Option<&'v str>; 3],
    index: Option<usize>,
}

impl Place<'_> {
    fn pointer(&self) -> String {
        let [block, name, sub] = self.keys;
        let mut out = String::new();
        for key in [block, name].into_iter().flatten() {
            out.push('/');
            out.push_str(&pointer_token(key));
        }
        if let Some(i) = self.index {
            out.push_str(&format!("/{i}"));
        }
        if let Some(sub) = sub {
            out.push('/');
            out.push_str(&pointer_token(sub));
        }
        out
    }
}

/// Visits every value an attribute names: the attribute itself (a dotted name, or a
/// root key such as the enterprise extension's URN), and for a sub-attribute of a
/// multi-valued attribute, the sub-attribute of each element.
fn visit_values<'v>(
    body: &'v Map<String, Value>,
    attr: &str,
    visit: &mut dyn FnMut(Place<'v>, &'v Value),
) {
    let parsed = AttrRef::parse(attr);
    let (block, holder) = match parsed.urn {
        // The extension block itself (`urn:…:2.0:User`) parses as URN `urn:…:2.0`.
        Some(_) if parsed.sub.is_none() && is_urn(attr) => match entry(body, attr) {
            Some((key, value)) => {
                let keys = [None, Some(key), None];
                return visit(Place { keys, index: None }, value);
            }
            None => match parsed.urn.and_then(|urn| entry(body, urn)) {
                Some((key, Value::Object(block))) => (Some(key), block),
                _ => return,
            },
        },
        Some(urn) => match entry(body, urn) {
            Some((key, Value::Object(block))) => (Some(key), block),
            _ => return,
        },
        None => (None, body),
    };
    let Some((key, value)) = entry(holder, parsed.name) else {
        return;
    };
    let Some(sub) = parsed.sub else {
        let keys = [block, Some(key), None];
        return visit(Place { keys, index: None }, value);
    };
    match value {
        Value::Object(object) => {
            if let Some((sub_key, value)) = entry(object, sub) {
                let keys = [block, Some(key), Some(sub_key)];
                visit(Place { keys, index: None }, value);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let Some((sub_key, value)) = item.as_object().and_then(|o| entry(o, sub)) else {
                    continue;
                };
                let keys = [block, Some(key), Some(sub_key)];
                visit(
                    Place {
                        keys,
                        index: Some(i),
                    },
                    value,
                );
            }
        }
        _ => {}
    }
}

/// Where `value` breaks the JSON type `wanted`, if it does: the index of a list's
/// first element of the wrong type (or `None` for the value itself), the type sent and
/// the type wanted there.
fn type_mismatch(
    value: &Value,
    wanted: JsonType,
) -> Option<(Option<usize>, &'static str, &'static str)> {
    let element = |items: &[Value], ok: fn(&Value) -> bool, each: &'static str| {
        let i = items.iter().position(|item| !ok(item))?;
        Some((Some(i), describe(&items[i]), each))
    };
    match (wanted, value) {
        (_, Value::Null)
        | (JsonType::String, Value::String(_))
        | (JsonType::Complex, Value::Object(_))
        | (JsonType::Boolean, Value::Bool(_)) => None,
        (JsonType::Boolean, Value::String(s))
            if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
        {
            None
        }
        (JsonType::MultiComplex, Value::Array(items)) => {
            element(items, Value::is_object, "an object")
        }
        (JsonType::MultiString, Value::Array(items)) => {
            element(items, Value::is_string, "a string")
        }
        _ => Some((None, describe(value), wanted.describe())),
    }
}

pub(crate) fn attribute_types(
    r: &Reporter<'_>,
    attributes: &BTreeMap<String, JsonType>,
    state: &mut State,
) {
    let Some(body) = state.object() else { return };
    let mut hits = Vec::new();
    for (attr, &wanted) in attributes {
        visit_values(body, attr, &mut |place, value| {
            if let Some((index, sent, wanted)) = type_mismatch(value, wanted) {
                let mut at = place.pointer();
                if let Some(i) = index {
                    at.push_str(&format!("/{i}"));
                }
                hits.push((at, attr.clone(), sent, wanted));
            }
        });
    }
    for (at, attribute, sent, wanted) in hits {
        r.report(
            state,
            at,
            &[
                ("attribute", attribute),
                ("sent", sent.to_owned()),
                ("wanted", wanted.to_owned()),
            ],
        );
    }
}

pub(crate) fn max_length(r: &Reporter<'_>, attributes: &[String], max: usize, state: &mut State) {
    let Some(body) = state.object() else { return };
    let mut hits = Vec::new();
    for attr in attributes {
        visit_values(body, attr, &mut |place, value| {
            // A string of at most `max` bytes has at most `max` characters.
            if let Value::String(text) = value {
                if text.len() > max && text.chars().count() > max {
                    hits.push((place.pointer(), attr.clone(), text.chars().count()));
                }
            }
        });
    }
    for (at, attribute, length) in hits {
        r.report(
            state,
            at,
            &[
                ("attribute", attribute),
                ("length", length.to_string()),
                ("max", max.to_string()),
            ],
        );
    }
}

/// Whether `text` reads as an email address: one `@` between a non-empty local part and
/// a domain with a dot, no spaces.
fn looks_like_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && !text.contains(char::is_whitespace)
        && domain
            .split_once('.')
            .is_some_and(|(host, tld)| !host.is_empty() && !tld.is_empty())
}

pub(crate) fn email_address(r: &Reporter<'_>, attributes: &[String], state: &mut State) {
    let Some(body) = state.object() else { return };
    let mut hits = Vec::new();
    for attr in attributes {
        visit_values(body, attr, &mut |place, value| {
            if let Value::String(text) = value {
                if !text.is_empty() && !looks_like_email(text) {
                    hits.push((place.pointer(), attr.clone(), text.clone()));
                }
            }
        });
    }
    for (at, attribute, value) in hits {
        r.report(state, at, &[("attribute", attribute), ("value", value)]);
    }
}

/// Zero-width characters AWS refuses (observed; Entra's and Okta's AWS guides):
/// U+200B ZERO WIDTH SPACE … U+200D ZERO WIDTH JOINER, U+2060 WORD JOINER, U+FEFF BOM.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// The characters a refused-characters rule refuses: its own list, control characters
/// and zero-width characters.
struct Refused<'a> {
    listed: &'a str,
}

impl Refused<'_> {
    fn refuses(&self, c: char) -> bool {
        c.is_control() || is_zero_width(c) || self.listed.contains(c)
    }

    /// The first refused character of `text` and its byte offset. Most values are
    /// ASCII with no listed character: told by their bytes, before any char is decoded.
    fn first_in(&self, text: &str) -> Option<(usize, char)> {
        let clean_ascii = |b: &u8| !b.is_ascii_control() && !self.listed.as_bytes().contains(b);
        if text.bytes().all(|b| b.is_ascii() && clean_ascii(&b)) {
            return None;
        }
        text.char_indices().find(|&(_, c)| self.refuses(c))
    }
}

pub(crate) fn refused_characters(
    r: &Reporter<'_>,
    attributes: &[String],
    except: &[String],
    characters: &str,
    state: &mut State,
) {
    let Body::Json(root) = &state.body else {
        return;
    };
    let Value::Object(body) = root else {
        return;
    };
    let refused = Refused { listed: characters };
    let every = attributes.iter().any(|a| a == "*");
    let listed = |name: &str, list: &[String]| list.iter().any(|a| a.eq_ignore_ascii_case(name));
    let mut hits = Vec::new();
    let mut visit = |path: &[Step<'_>], text: &str| {
        // Most strings are clean: look at the characters before building any name.
        let Some((at, c)) = refused.first_in(text) else {
            return;
        };
        let name = name_of(path);
        // `schemas` holds URNs, not user data.
        if name.eq_ignore_ascii_case("schemas") {
            return;
        }
        let applies = if every {
            !listed(&name, except)
        } else {
            listed(&name, attributes)
        };
        if applies {
            let steps: Vec<OwnedStep> = path.iter().map(OwnedStep::from).collect();
            let position = text[..at].chars().count() + 1;
            hits.push((steps, pointer_of(path), name, c, position));
        }
    };
    if every {
        walk_strings(root, &mut Vec::new(), &mut visit);
    } else {
        for attr in attributes {
            attribute_strings(body, attr, &mut visit);
        }
        // In body order, as a walk reports them.
        hits.sort();
        hits.dedup();
    }
    for (_, pointer, name, c, position) in hits {
        let shown = if c.is_control() || is_zero_width(c) {
            format!("U+{:04X}", c as u32)
        } else {
            format!("U+{:04X} ('{c}')", c as u32)
        };
        r.report(
            state,
            pointer,
            &[
                ("attribute", name),
                ("character", shown),
                ("position", position.to_string()),
            ],
        );
    }
}

/// A [`Step`] that outlives the body borrow, to order findings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum OwnedStep {
    Key(String),
    Index(usize),
}

impl From<&Step<'_>> for OwnedStep {
    fn from(step: &Step<'_>) -> Self {
        match step {
            Step::Key(k) => OwnedStep::Key((*k).to_owned()),
            Step::Index(i) => OwnedStep::Index(*i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeper_prefers_primary_then_work_then_first() {
        let v: Vec<Value> =
            serde_json::from_str(r#"[{"type":"home"},{"type":"work"},{"primary":true}]"#).unwrap();
        assert_eq!(keeper(&v), 2);
        assert_eq!(keeper(&v[..2]), 1);
        assert_eq!(keeper(&v[..1]), 0);
    }

    /// Looking listed attributes up finds what walking the whole body finds: bodies built
    /// from a few keys (in several spellings) and strings with refused, harmless and
    /// escaped characters.
    mod listed_attributes {
        use proptest::prelude::*;

        use super::super::Refused;
        use crate::rules::attr::{name_of, pointer_of, walk_strings};
        use crate::rules::context::{RequestView, State};
        use crate::rules::{check, RuleSet};
        use crate::scim::operation::Operation;
        use crate::scim::query::{Query, QueryError};
        use serde_json::{Map, Value};

        const LISTED: &str = r#"["userName", "name.givenName", "emails.value", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "schemas"]"#;

        fn rule(check: &str) -> RuleSet {
            let text = format!(
                "[[rule]]\nid = \"t.rule\"\noperations = [\"CreateUser\"]\ncheck = {check}\n\
                 action = \"reject\"\nmessage = \"{{location}} {{character}} {{position}}\"\nsource = \"test\"\n"
            );
            RuleSet::parse(&text, "test").unwrap_or_else(|e| panic!("{e}"))
        }

        /// The findings (location, message) of the set's only rule on `body`.
        fn findings(rules: &RuleSet, body: &str) -> Vec<(String, String)> {
            let query: Result<Query, QueryError> = Ok(Query::default());
            let view = RequestView {
                operation: Operation::CreateUser,
                path: "/scim/v2/Users",
                resource_id: None,
                query: &query,
                body: body.as_bytes(),
            };
            let mut state = State::of(&view);
            check::run(&rules.rules()[0], &view, &mut state);
            state
                .findings
                .into_iter()
                .map(|f| (f.location, f.message))
                .collect()
        }

        /// What a listed-attributes rule must find: every string of the body whose
        /// dotted name is listed, found by walking the whole body.
        fn walked(body: &str, listed: &[&str], characters: &str) -> Vec<String> {
            let root: Value = serde_json::from_str(body).unwrap();
            let refused = Refused { listed: characters };
            let mut out = Vec::new();
            walk_strings(&root, &mut Vec::new(), &mut |path, text| {
                let name = name_of(path);
                let wanted = listed.iter().any(|l| l.eq_ignore_ascii_case(&name))
                    && !name.eq_ignore_ascii_case("schemas");
                if wanted && refused.first_in(text).is_some() {
                    out.push(pointer_of(path));
                }
            });
            out
        }

        fn key() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                "userName",
                "USERNAME",
                "name",
                "Name",
                "givenName",
                "emails",
                "value",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                "manager",
                "schemas",
                "title",
            ])
            .prop_map(str::to_owned)
        }

        fn text() -> impl Strategy<Value = String> {
            prop::collection::vec(
                prop::sample::select(vec![
                    'a', 'Z', '<', ':', '%', '\u{200B}', '\u{2060}', '\u{FEFF}', '\u{0085}', '\t',
                    '\n', '\u{1}', '\u{7F}', 'é', '\u{2019}', '"', '\\', '語',
                ]),
                0..4,
            )
            .prop_map(|chars| chars.into_iter().collect())
        }

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                text().prop_map(Value::String),
                Just(Value::Bool(true)),
                Just(Value::Null),
                Just(Value::from(7)),
            ];
            leaf.prop_recursive(4, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((key(), inner), 0..4)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
                ]
            })
        }

        fn body() -> impl Strategy<Value = String> {
            (prop::collection::vec((key(), json()), 0..5), any::<bool>()).prop_map(
                |(kv, pretty)| {
                    let v = Value::Object(kv.into_iter().collect());
                    if pretty {
                        serde_json::to_string_pretty(&v).unwrap()
                    } else {
                        v.to_string()
                    }
                },
            )
        }

        #[test]
        fn every_spelling_of_a_listed_attribute_is_checked() {
            let body =
                r#"{"USERNAME": "ok", "userName": "a<b", "emails": [{"VALUE": ["x", "y:z"]}]}"#;
            let rules = rule(&format!(
                r#"{{ kind = "refused-characters", attributes = {LISTED}, characters = "<:" }}"#
            ));
            let found: Vec<String> = findings(&rules, body)
                .into_iter()
                .map(|(at, _)| at)
                .collect();
            assert_eq!(found, ["/emails/0/VALUE/1", "/userName"]);
        }

        proptest! {
            #![proptest_config(crate::scim::filter::tests::config(512))]

            #[test]
            fn listed_attributes_find_what_a_walk_finds(body in body()) {
                let listed: Vec<&str> = serde_json::from_str(LISTED).unwrap();
                for characters in ["<>;:%", ""] {
                    let rules = rule(&format!(
                        r#"{{ kind = "refused-characters", attributes = {LISTED}, characters = "{characters}" }}"#
                    ));
                    let found: Vec<String> =
                        findings(&rules, &body).into_iter().map(|(at, _)| at).collect();
                    prop_assert_eq!(found, walked(&body, &listed, characters));
                }
            }
        }
    }
}
