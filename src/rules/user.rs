//! Checks on the operation itself and on resource bodies (users, and the body-level
//! checks groups share). Attribute names match case-insensitively (RFC 7643 §2.1).

use serde_json::{Map, Value};

use super::context::{pointer_token, show, Body, Reporter, RequestView, State};
use super::lookup::{Attr, Object};
use super::tree::{self, Members, Node};

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
        // Byte loops rather than `str` patterns: names are short, and screening a
        // CreateUser parses about 35 of them (5k instructions with `split_once`).
        let colon = || text.bytes().rposition(|b| b == b':');
        let (urn, rest) = match is_urn(text).then(colon).flatten() {
            Some(at) => (Some(&text[..at]), &text[at + 1..]),
            None => (None, text),
        };
        let (name, sub) = match rest.bytes().position(|b| b == b'.') {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        AttrRef { urn, name, sub }
    }
}

/// The member of `map` whose key equals `name` case-insensitively, found in one pass
/// and without copying the key (every check looks attributes up this way, about 60
/// times for a CreateUser).
pub(crate) fn entry<'m>(map: &'m Map<String, Value>, name: &str) -> Option<(&'m str, &'m Value)> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(k, v)| (k.as_str(), v))
}

/// The actual key in `map` that equals `name` case-insensitively (for edits).
pub(crate) fn key_in(map: &Map<String, Value>, name: &str) -> Option<String> {
    entry(map, name).map(|(k, _)| k.to_owned())
}

/// A rule's attribute found in a body: its value and the keys leading to it as spelled
/// in the body. The JSON pointer is built only when a finding needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found<'m> {
    pub value: &'m Value,
    /// The extension block's key, the attribute's key, the sub-attribute's key.
    keys: [Option<&'m str>; 3],
}

impl Found<'_> {
    /// The JSON pointer of the value (`/emails`, `/urn:…:User/manager`).
    pub fn pointer(&self) -> String {
        let mut out = String::new();
        for key in self.keys.iter().flatten() {
            out.push('/');
            out.push_str(&pointer_token(key));
        }
        out
    }
}

/// Finds a rule's attribute in a body.
pub(crate) fn find<'m>(body: &'m Map<String, Value>, attr: &str) -> Option<Found<'m>> {
    let attr = AttrRef::parse(attr);
    let (block_key, holder) = match attr.urn {
        None => (None, body),
        Some(urn) => {
            let (key, block) = entry(body, urn)?;
            (Some(key), block.as_object()?)
        }
    };
    let (key, value) = entry(holder, attr.name)?;
    match attr.sub {
        None => Some(Found {
            value,
            keys: [block_key, Some(key), None],
        }),
        Some(sub) => {
            let (sub_key, value) = entry(value.as_object()?, sub)?;
            Some(Found {
                value,
                keys: [block_key, Some(key), Some(sub_key)],
            })
        }
    }
}

/// The object holding `attr` for an edit: the body, or its extension block.
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

/// Removes a rule's attribute from a body; returns its pointer and old value.
pub(crate) fn remove(body: &mut Map<String, Value>, attr: &str) -> Option<(String, Value)> {
    let pointer = find(body, attr)?.pointer();
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

/// [`required`] finds nothing.
pub(crate) fn required_quiet(attributes: &[Attr], body: Object<'_, '_>) -> bool {
    attributes.iter().all(|attr| match body.find(attr) {
        None | Some(Node::Null) => false,
        Some(Node::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    })
}

/// [`drop_attributes`] finds nothing.
pub(crate) fn drop_attributes_quiet(attributes: &[Attr], body: Object<'_, '_>) -> bool {
    attributes.iter().all(|attr| body.find(attr).is_none())
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

/// [`drop_sub_attributes`] finds nothing.
pub(crate) fn drop_sub_attributes_quiet(
    attributes: &[Attr],
    subs: &[String],
    body: Object<'_, '_>,
) -> bool {
    let clean = |object: &Members<'_>| subs.iter().all(|sub| tree::entry(object, sub).is_none());
    attributes.iter().all(|attr| match body.find(attr) {
        Some(Node::Array(items)) => items.iter().filter_map(Node::as_object).all(clean),
        Some(Node::Object(object)) => clean(object),
        _ => true,
    })
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

/// [`single_value`] finds nothing.
pub(crate) fn single_value_quiet(attributes: &[Attr], body: Object<'_, '_>) -> bool {
    attributes
        .iter()
        .all(|attr| !matches!(body.find(attr), Some(Node::Array(items)) if items.len() >= 2))
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

/// [`primary_email`] finds nothing (`emails`: that attribute, split).
pub(crate) fn primary_email_quiet(emails: &Attr, body: Object<'_, '_>) -> bool {
    let Some(Node::Array(items)) = body.find(emails) else {
        return true;
    };
    let [only] = items else {
        return true;
    };
    let Some(email) = only.as_object() else {
        return true;
    };
    matches!(tree::entry(email, "primary"), Some((_, Node::Bool(true))))
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

/// [`known_schemas`] finds nothing: no unknown extension block, no unknown URN listed
/// (`schemas`: that attribute, split).
pub(crate) fn known_schemas_quiet(
    allowed: &[String],
    schemas: &Attr,
    body: Object<'_, '_>,
) -> bool {
    // URNs are mostly spelled as listed: comparing the bytes first, rather than 40 to 60
    // bytes ignoring case, saves 0.3k instructions per CreateUser (callgrind).
    let is_allowed = |urn: &str| {
        allowed
            .iter()
            .any(|a| a == urn || a.eq_ignore_ascii_case(urn))
    };
    body.members
        .iter()
        .all(|(k, _)| !is_urn(k) || is_allowed(k))
        && match body.find(schemas) {
            Some(Node::Array(items)) => items.iter().filter_map(Node::as_str).all(is_allowed),
            _ => true,
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

/// [`empty_string`] finds nothing: no `""` on the wire, or none as a member's value.
pub(crate) fn empty_string_quiet(wire: &[u8], body: &Members<'_>) -> bool {
    fn has_empty_member(node: &Node<'_>) -> bool {
        match node {
            Node::Array(items) => items.iter().any(has_empty_member),
            Node::Object(members) => members.iter().any(|(_, v)| match v {
                Node::String(s) => s.is_empty(),
                other => has_empty_member(other),
            }),
            _ => false,
        }
    }
    memchr::memmem::find(wire, b"\"\"").is_none()
        || !body.iter().any(|(_, v)| match v {
            Node::String(s) => s.is_empty(),
            other => has_empty_member(other),
        })
}

pub(crate) fn empty_string(r: &Reporter<'_>, request: &RequestView<'_>, state: &mut State) {
    let Body::Json(root) = &state.body else {
        return;
    };
    if !root.is_object() {
        return;
    }
    // An empty string is written `""` on the wire, whatever its place: a body without
    // those two bytes side by side has none, and walking it would find nothing. Once a
    // fix has changed the body, the received bytes no longer describe it.
    if let Some(wire) = state.wire_body(request) {
        if memchr::memmem::find(wire, b"\"\"").is_none() {
            return;
        }
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

/// The enterprise extension's `manager` attribute, as rules name it.
pub(crate) const MANAGER: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";

/// [`manager_object`] finds nothing (`manager`: [`MANAGER`], split).
pub(crate) fn manager_object_quiet(manager: &Attr, body: Object<'_, '_>) -> bool {
    !matches!(body.find(manager), Some(Node::String(_)))
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

/// Zero-width characters AWS refuses (observed; Entra's and Okta's AWS guides):
/// U+200B ZERO WIDTH SPACE … U+200D ZERO WIDTH JOINER, U+2060 WORD JOINER, U+FEFF BOM.
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// One step from the body's root: an object key or an array index.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// Visits every string an attribute holds, with its path: arrays at any level are
/// transparent, as in [`name_of`], and every key that matches case-insensitively is
/// followed. Looking up the listed attributes costs a fraction of walking the body.
fn attribute_strings<'v>(
    body: &'v Map<String, Value>,
    attr: &str,
    visit: &mut dyn FnMut(&[Step<'v>], &'v str),
) {
    type Visit<'f, 'v> = &'f mut dyn FnMut(&[Step<'v>], &'v str);
    /// The members of `map` named `names[0]`, and below them the rest of `names`.
    fn members<'v>(
        map: &'v Map<String, Value>,
        names: &[&str],
        path: &mut Vec<Step<'v>>,
        visit: Visit<'_, 'v>,
    ) {
        let Some((name, rest)) = names.split_first() else {
            return;
        };
        for (key, v) in map.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)) {
            path.push(Step::Key(key));
            under(v, rest, path, visit);
            path.pop();
        }
    }
    fn under<'v>(value: &'v Value, names: &[&str], path: &mut Vec<Step<'v>>, visit: Visit<'_, 'v>) {
        match value {
            Value::String(s) if names.is_empty() => visit(path, s),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    under(item, names, path, visit);
                    path.pop();
                }
            }
            Value::Object(map) => members(map, names, path, visit),
            _ => {}
        }
    }
    let attr = AttrRef::parse(attr);
    let mut names: Vec<&str> = Vec::with_capacity(3);
    names.extend(attr.urn);
    names.push(attr.name);
    names.extend(attr.sub);
    members(body, &names, &mut Vec::new(), visit);
}

/// [`attribute_strings`] on the borrowed tree: whether `test` holds for a string the
/// attribute holds.
fn attribute_nodes(body: Object<'_, '_>, attr: &Attr, test: &mut dyn FnMut(&str) -> bool) -> bool {
    fn members(map: &Members<'_>, names: &[&str], test: &mut dyn FnMut(&str) -> bool) -> bool {
        let Some((name, rest)) = names.split_first() else {
            return false;
        };
        tree::entry(map, name).is_some_and(|(_, v)| under(v, rest, test))
    }
    fn under(value: &Node<'_>, names: &[&str], test: &mut dyn FnMut(&str) -> bool) -> bool {
        match value {
            Node::String(s) if names.is_empty() => test(s),
            Node::Array(items) => items.iter().any(|item| under(item, names, test)),
            Node::Object(map) => members(map, names, test),
            _ => false,
        }
    }
    let mut below = [""; 2];
    let mut count = 0;
    for name in attr.below_root() {
        below[count] = name;
        count += 1;
    }
    body.root_member(attr)
        .is_some_and(|v| under(v, &below[..count], test))
}

/// The characters a refused-characters rule refuses: its own list, control characters
/// and zero-width characters.
struct Refused<'a> {
    listed: &'a str,
    /// Refused ASCII characters: the listed ones and the controls.
    ascii: [bool; 128],
}

impl<'a> Refused<'a> {
    fn new(listed: &'a str) -> Self {
        let mut ascii = [false; 128];
        for (b, refused) in ascii.iter_mut().enumerate() {
            *refused = (b as u8).is_ascii_control();
        }
        for c in listed.chars().filter(char::is_ascii) {
            ascii[c as usize] = true;
        }
        Refused { listed, ascii }
    }

    fn refuses(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii[c as usize]
        } else {
            c.is_control() || is_zero_width(c) || self.listed.contains(c)
        }
    }

    /// The first refused character of `text` and its byte offset. ASCII, nearly every
    /// byte of a body, costs one table lookup.
    fn first_in(&self, text: &str) -> Option<(usize, char)> {
        let bytes = text.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let b = bytes[at];
            if b.is_ascii() {
                if self.ascii[b as usize] {
                    return Some((at, b as char));
                }
                at += 1;
            } else {
                let c = text[at..].chars().next()?;
                if self.refuses(c) {
                    return Some((at, c));
                }
                at += c.len_utf8();
            }
        }
        None
    }

    /// Whether a string holding a refused character can be in the JSON text `raw`, which
    /// parsed. Such a character is on the wire either escaped (`\\uXXXX`, `\\n`: a
    /// backslash) or as its UTF-8 bytes, whose first byte is then in the text: 0x7F for
    /// DEL, 0xC2 for U+0080–U+009F, 0xE2 for U+200B–U+200D and U+2060, 0xEF for U+FEFF,
    /// and the listed characters' first bytes. Controls below 0x20 cannot be in a JSON
    /// string unescaped (RFC 8259 §7), so the newlines of a pretty-printed body do not
    /// count. memchr looks for three bytes at a time at about 16 bytes per instruction.
    fn may_occur_in(&self, raw: &[u8]) -> bool {
        let mut wanted = [0u8; 256];
        wanted[..5].copy_from_slice(&[b'\\', 0x7F, 0xC2, 0xE2, 0xEF]);
        let mut count = 5;
        for c in self.listed.chars() {
            let mut utf8 = [0; 4];
            let first = c.encode_utf8(&mut utf8).as_bytes()[0];
            if !wanted[..count].contains(&first) {
                wanted[count] = first;
                count += 1;
            }
        }
        wanted[..count].chunks(3).any(|bytes| match *bytes {
            [a, b, c] => memchr::memchr3(a, b, c, raw).is_some(),
            [a, b] => memchr::memchr2(a, b, raw).is_some(),
            [a] => memchr::memchr(a, raw).is_some(),
            _ => false,
        })
    }
}

/// [`refused_characters`] finds nothing: no refused character can be on the wire, or
/// none is in a string the rule reads (every string for `*`; `except` and `schemas`
/// are left to the check). `listed` is `attributes`, split.
pub(crate) fn refused_characters_quiet(
    wire: &[u8],
    attributes: &[String],
    listed: &[Attr],
    characters: &str,
    body: Object<'_, '_>,
) -> bool {
    fn any_string(node: &Node<'_>, refused: &Refused<'_>) -> bool {
        match node {
            Node::String(s) => refused.first_in(s).is_some(),
            Node::Array(items) => items.iter().any(|v| any_string(v, refused)),
            Node::Object(members) => members.iter().any(|(_, v)| any_string(v, refused)),
            _ => false,
        }
    }
    let refused = Refused::new(characters);
    if !refused.may_occur_in(wire) {
        return true;
    }
    if attributes.iter().any(|a| a == "*") {
        return !body.members.iter().any(|(_, v)| any_string(v, &refused));
    }
    !listed
        .iter()
        .any(|attr| attribute_nodes(body, attr, &mut |s| refused.first_in(s).is_some()))
}

pub(crate) fn refused_characters(
    r: &Reporter<'_>,
    request: &RequestView<'_>,
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
    let refused = Refused::new(characters);
    let every = attributes.iter().any(|a| a == "*");
    if let Some(wire) = state.wire_body(request) {
        if every && !refused.may_occur_in(wire) {
            return;
        }
    }
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

    /// Short cuts must not change what a check finds: bodies built from a few keys (in
    /// several spellings) and strings with refused, harmless and escaped characters.
    mod shortcuts {
        use proptest::prelude::*;

        use super::super::{name_of, walk_strings, Refused};
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

        /// The findings (location, message) of the set's only rule on `body`, with or
        /// without the scans of the received bytes.
        fn findings(rules: &RuleSet, body: &str, from_wire: bool) -> Vec<(String, String)> {
            let query: Result<Query, QueryError> = Ok(Query::default());
            let view = RequestView {
                operation: Operation::CreateUser,
                resource_id: None,
                query: &query,
                body: body.as_bytes(),
            };
            let mut state = State::new(&view);
            state.from_wire = from_wire;
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
            let refused = Refused::new(characters);
            let mut out = Vec::new();
            walk_strings(&root, &mut Vec::new(), &mut |path, text| {
                let name = name_of(path);
                let wanted = listed.iter().any(|l| l.eq_ignore_ascii_case(&name))
                    && !name.eq_ignore_ascii_case("schemas");
                if wanted && refused.first_in(text).is_some() {
                    out.push(super::super::pointer_of(path));
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
            let found: Vec<String> = findings(&rules, body, true)
                .into_iter()
                .map(|(at, _)| at)
                .collect();
            assert_eq!(found, ["/emails/0/VALUE/1", "/userName"]);
        }

        proptest! {
            #![proptest_config(crate::scim::filter::tests::config(512))]

            #[test]
            fn byte_scans_never_hide_a_finding(body in body()) {
                for check in [
                    r#"{ kind = "refused-characters", attributes = ["*"], characters = "" }"#,
                    r#"{ kind = "refused-characters", attributes = ["*"], except = ["title"], characters = "<>;:%語" }"#,
                    r#"{ kind = "empty-string" }"#,
                ] {
                    let rules = rule(check);
                    prop_assert_eq!(
                        findings(&rules, &body, true),
                        findings(&rules, &body, false),
                        "{}", check
                    );
                }
            }

            #[test]
            fn listed_attributes_find_what_a_walk_finds(body in body()) {
                let listed: Vec<&str> = serde_json::from_str(LISTED).unwrap();
                for characters in ["<>;:%", ""] {
                    let rules = rule(&format!(
                        r#"{{ kind = "refused-characters", attributes = {LISTED}, characters = "{characters}" }}"#
                    ));
                    let found: Vec<String> =
                        findings(&rules, &body, true).into_iter().map(|(at, _)| at).collect();
                    prop_assert_eq!(found, walked(&body, &listed, characters));
                }
            }
        }
    }
}
