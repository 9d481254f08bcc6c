//! Checks on the operation itself and on resource bodies (users, and the body-level
//! checks groups share). Attribute names match case-insensitively (RFC 7643 §2.1).

use serde_json::{Map, Value};

use super::context::{pointer_token, show, Body, Reporter, RequestView, State};

/// A dotted attribute reference from a rule: `userName`, `name.givenName`,
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttrRef<'a> {
    /// The extension block's key, for URN-prefixed names.
    pub urn: Option<&'a str>,
    pub name: &'a str,
    pub sub: Option<&'a str>,
}

impl<'a> AttrRef<'a> {
    pub fn parse(text: &'a str) -> Self {
        let (urn, rest) = if is_urn(text) {
            match text.rsplit_once(':') {
                Some((urn, rest)) => (Some(urn), rest),
                None => (None, text),
            }
        } else {
            (None, text)
        };
        let (name, sub) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        AttrRef { urn, name, sub }
    }
}

/// The actual key in `map` that equals `name` case-insensitively.
pub(crate) fn key_in(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// The object holding `attr` (the body, or its extension block) and the JSON pointer
/// prefix of that object.
fn container<'m>(
    body: &'m Map<String, Value>,
    attr: &AttrRef<'_>,
) -> Option<(&'m Map<String, Value>, String)> {
    match attr.urn {
        None => Some((body, String::new())),
        Some(urn) => {
            let key = key_in(body, urn)?;
            let block = body.get(&key)?.as_object()?;
            Some((block, format!("/{}", pointer_token(&key))))
        }
    }
}

fn container_mut<'m>(
    body: &'m mut Map<String, Value>,
    attr: &AttrRef<'_>,
) -> Option<&'m mut Map<String, Value>> {
    match attr.urn {
        None => Some(body),
        Some(urn) => {
            let key = key_in(body, urn)?;
            body.get_mut(&key)?.as_object_mut()
        }
    }
}

/// Finds a rule's attribute in a body: its JSON pointer and value.
pub(crate) fn find<'m>(body: &'m Map<String, Value>, attr: &str) -> Option<(String, &'m Value)> {
    let attr = AttrRef::parse(attr);
    let (holder, prefix) = container(body, &attr)?;
    let key = key_in(holder, attr.name)?;
    let value = holder.get(&key)?;
    let pointer = format!("{prefix}/{}", pointer_token(&key));
    match attr.sub {
        None => Some((pointer, value)),
        Some(sub) => {
            let object = value.as_object()?;
            let sub_key = key_in(object, sub)?;
            Some((
                format!("{pointer}/{}", pointer_token(&sub_key)),
                object.get(&sub_key)?,
            ))
        }
    }
}

/// Removes a rule's attribute from a body; returns its pointer and old value.
pub(crate) fn remove(body: &mut Map<String, Value>, attr: &str) -> Option<(String, Value)> {
    let (pointer, _) = find(body, attr)?;
    let attr = AttrRef::parse(attr);
    let holder = container_mut(body, &attr)?;
    let key = key_in(holder, attr.name)?;
    match attr.sub {
        None => holder.remove(&key).map(|v| (pointer, v)),
        Some(sub) => {
            let object = holder.get_mut(&key)?.as_object_mut()?;
            let sub_key = key_in(object, sub)?;
            object.remove(&sub_key).map(|v| (pointer, v))
        }
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn unsupported_operation(
    r: &Reporter<'_>,
    request: &RequestView<'_>,
    state: &mut State,
) {
    r.report(
        state,
        "path",
        &[("operation", request.operation.name().to_owned())],
    );
}

pub(crate) fn unknown_endpoint(r: &Reporter<'_>, _request: &RequestView<'_>, state: &mut State) {
    r.report(state, "path", &[]);
}

pub(crate) fn json_body(r: &Reporter<'_>, state: &mut State) {
    let found = match &state.body {
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

pub(crate) fn required(r: &Reporter<'_>, attributes: &[String], state: &mut State) {
    let Some(body) = state.object() else { return };
    let mut missing = Vec::new();
    for attr in attributes {
        let found = match find(body, attr) {
            None => Some("missing"),
            Some((_, Value::Null)) => Some("null"),
            Some((_, Value::String(s))) if s.trim().is_empty() => Some("empty"),
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
        let Some((pointer, value)) = find(body, attr) else {
            continue;
        };
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
        let Some((pointer, value)) = find(body, attr) else {
            continue;
        };
        // Every (element pointer, sub key) to drop: elements of a multi-valued attribute,
        // or the attribute's own object.
        let mut hits: Vec<(String, Option<usize>, String, Value)> = Vec::new();
        let mut look = |object: &Map<String, Value>, index: Option<usize>| {
            for sub in subs {
                if let Some(key) = key_in(object, sub) {
                    let at = match index {
                        Some(i) => format!("{pointer}/{i}/{}", pointer_token(&key)),
                        None => format!("{pointer}/{}", pointer_token(&key)),
                    };
                    hits.push((at, index, key.clone(), object[&key].clone()));
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

/// A mutable reference to a rule's attribute value.
pub(crate) fn value_mut<'m>(body: &'m mut Map<String, Value>, attr: &str) -> Option<&'m mut Value> {
    let attr = AttrRef::parse(attr);
    let holder = container_mut(body, &attr)?;
    let key = key_in(holder, attr.name)?;
    let value = holder.get_mut(&key)?;
    match attr.sub {
        None => Some(value),
        Some(sub) => {
            let object = value.as_object_mut()?;
            let sub_key = key_in(object, sub)?;
            object.get_mut(&sub_key)
        }
    }
}

/// Index of the value to keep: the primary one, else type work, else the first.
fn keeper(items: &[Value]) -> usize {
    let field = |item: &Value, name: &str| {
        item.as_object()
            .and_then(|o| key_in(o, name).and_then(|k| o.get(&k).cloned()))
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
        let Some((pointer, Value::Array(items))) = find(body, attr) else {
            continue;
        };
        if items.len() < 2 {
            continue;
        }
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
    let Some((pointer, Value::Array(items))) = find(body, "emails") else {
        return;
    };
    let [only] = items.as_slice() else { return };
    let Some(email) = only.as_object() else {
        return;
    };
    let primary = key_in(email, "primary").and_then(|k| email.get(&k).cloned());
    if primary == Some(Value::Bool(true)) {
        return;
    }
    let before = only.to_string();
    let vars = [("primary", show(primary.as_ref()))];
    let at = format!("{pointer}/0");
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

/// The enterprise extension's URN (RFC 7643 §4.3).
pub(crate) const ENTERPRISE_URN: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

pub(crate) fn manager_object(r: &Reporter<'_>, state: &mut State) {
    let manager = format!("{ENTERPRISE_URN}:manager");
    let Some(body) = state.object() else { return };
    let Some((pointer, Value::String(id))) = find(body, &manager) else {
        return;
    };
    let id = id.clone();
    let vars = [("value", id.clone())];
    if r.rewrites() {
        let after = serde_json::json!({ "value": id });
        if let Some(target) = state.object_mut().and_then(|b| value_mut(b, &manager)) {
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

/// Zero-width characters AWS refuses (observed; Entra's and Okta's AWS guides):
/// U+200B ZERO WIDTH SPACE … U+200D ZERO WIDTH JOINER, U+2060 WORD JOINER, U+FEFF BOM.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// One step from the body's root: an object key or an array index.
#[derive(Clone, Copy)]
enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

/// The JSON pointer of a path of steps.
fn pointer_of(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in path {
        out.push('/');
        match step {
            Step::Key(k) => out.push_str(&pointer_token(k)),
            Step::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// The attribute name of a path as rules write it: dotted (`name.givenName`), arrays
/// transparent (`emails.value`), an extension block's attributes joined to its URN with
/// `:` (`urn:…:User:manager.value`).
fn name_of(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    let mut keys = path.iter().filter_map(|s| match s {
        Step::Key(k) => Some(*k),
        Step::Index(_) => None,
    });
    if let Some(first) = keys.next() {
        out.push_str(first);
        let mut sep = if is_urn(first) { ':' } else { '.' };
        for k in keys {
            out.push(sep);
            out.push_str(k);
            sep = '.';
        }
    }
    out
}

/// Visits every string of a body with the path that leads to it. Names and pointers
/// are built by the caller only for the rare strings it reports: a 1.2 KB user holds
/// about 40 strings, and allocating two paths for each cost more than the check.
fn walk_strings<'v>(
    value: &'v Value,
    path: &mut Vec<Step<'v>>,
    visit: &mut dyn FnMut(&[Step<'v>], &'v str),
) {
    match value {
        Value::String(s) => visit(path, s),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Step::Index(i));
                walk_strings(v, path, visit);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                path.push(Step::Key(k));
                walk_strings(v, path, visit);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Whether a key is a schema URN (an extension block's key).
pub(crate) fn is_urn(key: &str) -> bool {
    key.len() > 4 && key[..4].eq_ignore_ascii_case("urn:")
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
    if !root.is_object() {
        return;
    }
    let every = attributes.iter().any(|a| a == "*");
    let listed = |name: &str, list: &[String]| list.iter().any(|a| a.eq_ignore_ascii_case(name));
    // Every character of every string of a body goes through this: a table for ASCII
    // instead of searching `characters` each time.
    let mut ascii = [false; 128];
    for c in characters.chars().filter(char::is_ascii) {
        ascii[c as usize] = true;
    }
    let refused = |c: char| {
        if c.is_ascii() {
            ascii[c as usize] || c.is_ascii_control()
        } else {
            c.is_control() || is_zero_width(c) || characters.contains(c)
        }
    };
    let mut hits = Vec::new();
    walk_strings(root, &mut Vec::new(), &mut |path, text| {
        // Most strings are clean: look at the characters before building any name.
        let Some((position, c)) = text.chars().enumerate().find(|(_, c)| refused(*c)) else {
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
            hits.push((pointer_of(path), name, c, position + 1));
        }
    });
    for (pointer, name, c, position) in hits {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_refs_split_urn_name_and_sub() {
        let a = AttrRef::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName",
        );
        assert_eq!(a.urn, Some(ENTERPRISE_URN));
        assert_eq!(a.name, "manager");
        assert_eq!(a.sub, Some("displayName"));
        let b = AttrRef::parse("name.givenName");
        assert_eq!((b.urn, b.name, b.sub), (None, "name", Some("givenName")));
    }

    #[test]
    fn keeper_prefers_primary_then_work_then_first() {
        let v: Vec<Value> =
            serde_json::from_str(r#"[{"type":"home"},{"type":"work"},{"primary":true}]"#).unwrap();
        assert_eq!(keeper(&v), 2);
        assert_eq!(keeper(&v[..2]), 1);
        assert_eq!(keeper(&v[..1]), 0);
    }
}
