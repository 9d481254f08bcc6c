//! Attribute paths and case-insensitive look-ups on a body's `serde_json::Value`:
//! rules name attributes as `userName`, `name.givenName` or
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`, and a
//! body may spell every key in any case (RFC 7643 §2.1: attribute names are
//! case-insensitive).

use serde_json::{Map, Value};

use super::context::pointer_token;

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
        // An extension attribute follows the URN's last colon.
        let (urn, rest) = match is_urn(text).then(|| text.rsplit_once(':')).flatten() {
            Some((urn, rest)) => (Some(urn), rest),
            None => (None, text),
        };
        let (name, sub) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        AttrRef { urn, name, sub }
    }
}

/// The member of `map` whose key equals `name` case-insensitively.
/// The key as spelled in the rules is looked up first: IdPs send the schema's spelling,
/// and the scan of every key runs only when it is not there.
pub(crate) fn entry<'m>(map: &'m Map<String, Value>, name: &str) -> Option<(&'m str, &'m Value)> {
    if let Some((k, v)) = map.get_key_value(name) {
        return Some((k.as_str(), v));
    }
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

pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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

/// The enterprise extension's URN (RFC 7643 §4.3).
pub(crate) const ENTERPRISE_URN: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The enterprise extension's `manager` attribute, as rules name it.
pub(crate) const MANAGER: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager";

/// One step from the body's root: an object key or an array index.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

/// The JSON pointer of a path of steps.
pub(crate) fn pointer_of(path: &[Step<'_>]) -> String {
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
pub(crate) fn name_of(path: &[Step<'_>]) -> String {
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
pub(crate) fn walk_strings<'v>(
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
    // Bytes, not `&key[..4]`: a key is untrusted and its 4th byte may fall inside a
    // character (found by the body_judging fuzz target).
    key.len() > 4 && key.as_bytes()[..4].eq_ignore_ascii_case(b"urn:")
}

/// Visits every string an attribute holds, with its path: arrays at any level are
/// transparent, as in [`name_of`], and every key that matches case-insensitively is
/// followed. Looking up the listed attributes costs a fraction of walking the body.
pub(crate) fn attribute_strings<'v>(
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

/// The JSON type an attribute must have (`attribute-types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JsonType {
    String,
    /// `true` or `false`; the strings "true" and "false" in any case pass too, as AWS
    /// takes them (the guide's own PatchUser example sends "false").
    Boolean,
    /// An object.
    Complex,
    /// An array of objects.
    MultiComplex,
    /// An array of strings.
    MultiString,
}

impl JsonType {
    /// The type as a finding names it.
    pub fn describe(self) -> &'static str {
        match self {
            JsonType::String => "a string",
            JsonType::Boolean => "a boolean (true or false)",
            JsonType::Complex => "an object",
            JsonType::MultiComplex => "an array of objects",
            JsonType::MultiString => "an array of strings",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_urn_takes_keys_with_a_character_across_byte_4() {
        // The body_judging fuzz target's crash: "us\u{1F600}…" cut at byte 4 panicked.
        assert!(!is_urn("us\u{1F600}erName"));
        assert!(!is_urn("\u{e9}rn:x"));
        assert!(is_urn("URN:ietf:params"));
        assert!(!is_urn("urn:"));
    }

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
}
