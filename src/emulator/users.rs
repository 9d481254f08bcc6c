//! Users: the attributes AWS keeps, returned in the order of the guide's examples, and
//! the six user operations.
//!
//! Bodies are read case-insensitively (SCIM attribute names are, RFC 7643 §2.1) into
//! the canonical spelling, unknown attributes are ignored, and the typed [`UserData`]
//! then checks every value's type. A PATCH edits the canonical JSON and goes through the
//! same typed check, so a patched user is as valid as a created one.

use std::collections::HashSet;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::pages::{self, Listing};
use super::reply::{
    eq_ignore_case, eq_terms, list_filter, ApiError, Meta, Outcome, Reply, USER_NOT_FOUND,
};
use super::store::{Store, UserRecord};
use super::Ctx;
use crate::scim::filter::{CompValue, CompareOp, Filter};
use crate::scim::{parse_path, PatchOpKind, PatchOperation, PatchPath, PatchRequest, Query};

/// The core User schema.
pub(crate) const CORE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise User extension: its attributes live under this key.
pub(crate) const ENTERPRISE_URN: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The user attributes AWS keeps (Limitations › Attribute limitations). `roles`, listed
/// there, appears in no example and is not kept.
const TOP: &[&str] = &[
    "userName",
    "externalId",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "emails",
    "addresses",
    "phoneNumbers",
];
const NAME_SUB: &[&str] = &[
    "formatted",
    "familyName",
    "givenName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
];
const EMAIL_SUB: &[&str] = &["value", "type", "primary"];
const ADDRESS_SUB: &[&str] = &[
    "formatted",
    "streetAddress",
    "locality",
    "region",
    "postalCode",
    "country",
    "type",
    "primary",
];
const ENTERPRISE_SUB: &[&str] = &[
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
    "manager",
];
const MANAGER_SUB: &[&str] = &["value", "$ref"];

/// The canonical spelling of `key` among `names`, ignoring case.
pub(crate) fn canon(key: &str, names: &[&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|n| n.eq_ignore_ascii_case(key))
}

/// The sub-attributes of a complex or multi-valued core attribute.
fn sub_names(attr: &str) -> Option<&'static [&'static str]> {
    match attr {
        "name" => Some(NAME_SUB),
        "emails" | "phoneNumbers" => Some(EMAIL_SUB),
        "addresses" => Some(ADDRESS_SUB),
        _ => None,
    }
}

fn is_multi_valued(attr: &str) -> bool {
    matches!(attr, "emails" | "addresses" | "phoneNumbers")
}

/// The known members of `object` under their canonical names; nulls count as absent.
pub(crate) fn canonical_object(
    object: &Map<String, Value>,
    names: &[&'static str],
) -> Map<String, Value> {
    object
        .iter()
        .filter(|(_, v)| !v.is_null())
        .filter_map(|(k, v)| canon(k, names).map(|n| (n.to_owned(), v.clone())))
        .collect()
}

/// A core attribute's value with its sub-attribute names made canonical.
fn canonical_attr(attr: &str, value: Value) -> Value {
    match (sub_names(attr), value) {
        (Some(subs), Value::Object(m)) => Value::Object(canonical_object(&m, subs)),
        (Some(subs), Value::Array(items)) if is_multi_valued(attr) => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(m) => Value::Object(canonical_object(&m, subs)),
                    other => other,
                })
                .collect(),
        ),
        (_, v) => v,
    }
}

/// The manager as an object; a bare id string is wrapped (Entra ID sends it so).
fn canonical_manager(value: Value) -> Value {
    match value {
        Value::String(id) => json!({ "value": id }),
        Value::Object(m) => Value::Object(canonical_object(&m, MANAGER_SUB)),
        other => other,
    }
}

fn canonical_enterprise(object: &Map<String, Value>) -> Map<String, Value> {
    let mut out = canonical_object(object, ENTERPRISE_SUB);
    if let Some(manager) = out.get_mut("manager") {
        *manager = canonical_manager(manager.take());
    }
    out
}

/// A user body with canonical attribute names, unknown attributes (and `id`, `meta`,
/// `schemas`) dropped.
fn canonical_user(body: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in body {
        if value.is_null() {
            continue;
        }
        if key.eq_ignore_ascii_case(ENTERPRISE_URN) {
            let value = match value {
                Value::Object(m) => Value::Object(canonical_enterprise(m)),
                other => other.clone(),
            };
            out.insert(ENTERPRISE_URN.to_owned(), value);
        } else if let Some(name) = canon(key, TOP) {
            out.insert(name.to_owned(), canonical_attr(name, value.clone()));
        }
    }
    out
}

fn is_none<T>(v: &Option<T>) -> bool {
    v.is_none()
}

/// The attributes of one user, as stored (and written to the state file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserData {
    pub user_name: String,
    #[serde(default, skip_serializing_if = "is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub name: Option<Name>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub nick_name: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub profile_url: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub user_type: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub preferred_language: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Email>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phone_numbers: Vec<Phone>,
    #[serde(
        rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        default,
        skip_serializing_if = "is_none"
    )]
    pub enterprise: Option<Enterprise>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Name {
    #[serde(skip_serializing_if = "is_none")]
    pub formatted: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub honorific_prefix: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub honorific_suffix: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Email {
    #[serde(skip_serializing_if = "is_none")]
    pub value: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub primary: Option<bool>,
}

/// A phone number has the same sub-attributes as an email.
pub(crate) type Phone = Email;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Address {
    #[serde(skip_serializing_if = "is_none")]
    pub formatted: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub street_address: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub locality: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub country: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub primary: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Enterprise {
    #[serde(skip_serializing_if = "is_none")]
    pub employee_number: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub cost_center: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub organization: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub division: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "is_none")]
    pub manager: Option<Manager>,
}

/// The manager's id. AWS drops `$ref` (CreateUser › Example Response) and refuses
/// `displayName` (the rules).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Manager {
    #[serde(skip_serializing_if = "is_none")]
    pub value: Option<String>,
}

impl UserData {
    /// A user from a request body (CreateUser, PutUser) or a patched document.
    pub fn from_body(body: &Map<String, Value>) -> Result<UserData, ApiError> {
        let canonical = Value::Object(canonical_user(body));
        let mut data: UserData =
            serde_json::from_value(canonical).map_err(|_| ApiError::invalid())?;
        data.tidy();
        data.check()?;
        Ok(data)
    }

    /// Empty complex attributes count as absent, so `schemas` lists the enterprise
    /// extension only when it holds something.
    fn tidy(&mut self) {
        if self.name.as_ref() == Some(&Name::default()) {
            self.name = None;
        }
        if let Some(e) = &mut self.enterprise {
            if e.manager.as_ref().is_some_and(|m| m.value.is_none()) {
                e.manager = None;
            }
            if *e == Enterprise::default() {
                self.enterprise = None;
            }
        }
    }

    /// What AWS refuses whatever the request: an empty userName, several values in a
    /// multi-valued attribute (the rules catch most of these before).
    fn check(&self) -> Result<(), ApiError> {
        if self.user_name.trim().is_empty()
            || self.emails.len() > 1
            || self.addresses.len() > 1
            || self.phone_numbers.len() > 1
        {
            return Err(ApiError::invalid());
        }
        Ok(())
    }

    /// The canonical JSON document a PATCH edits.
    fn document(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }

    fn manager(&self) -> Option<&str> {
        self.enterprise.as_ref()?.manager.as_ref()?.value.as_deref()
    }
}

/// A user as AWS returns it: the guide's key order, and no `profileUrl` (neither
/// CreateUser's nor PutUser's example response returns the one the request set).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserResource<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "is_none")]
    external_id: Option<&'a str>,
    meta: Meta,
    schemas: Vec<&'static str>,
    user_name: &'a str,
    #[serde(skip_serializing_if = "is_none")]
    name: Option<&'a Name>,
    #[serde(skip_serializing_if = "is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    nick_name: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    user_type: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    preferred_language: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    locale: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    timezone: Option<&'a str>,
    #[serde(skip_serializing_if = "is_none")]
    active: Option<bool>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    emails: &'a [Email],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    addresses: &'a [Address],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    phone_numbers: &'a [Phone],
    #[serde(
        rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        skip_serializing_if = "is_none"
    )]
    enterprise: Option<&'a Enterprise>,
}

fn resource(user: &UserRecord) -> UserResource<'_> {
    let d = &user.data;
    let mut schemas = vec![CORE_USER_SCHEMA];
    if d.enterprise.is_some() {
        schemas.push(ENTERPRISE_URN);
    }
    UserResource {
        id: &user.id,
        external_id: d.external_id.as_deref(),
        meta: Meta::new("User", user.created, user.last_modified),
        schemas,
        user_name: &d.user_name,
        name: d.name.as_ref(),
        display_name: d.display_name.as_deref(),
        nick_name: d.nick_name.as_deref(),
        title: d.title.as_deref(),
        user_type: d.user_type.as_deref(),
        preferred_language: d.preferred_language.as_deref(),
        locale: d.locale.as_deref(),
        timezone: d.timezone.as_deref(),
        active: d.active,
        emails: &d.emails,
        addresses: &d.addresses,
        phone_numbers: &d.phone_numbers,
        enterprise: d.enterprise.as_ref(),
    }
}

/// The body as a JSON object (the rules have already refused anything else).
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::invalid()),
    }
}

/// A PatchOp message with the PatchOp schema and at least one operation.
pub(crate) fn patch_request(body: &[u8]) -> Result<PatchRequest, ApiError> {
    let request = PatchRequest::from_json(body).map_err(|_| ApiError::invalid())?;
    if !request.has_patch_op_schema() || request.operations.is_empty() {
        return Err(ApiError::invalid());
    }
    Ok(request)
}

/// Whether another user than `except` has this userName, ignoring case.
fn user_name_taken(store: &Store, user_name: &str, except: Option<&str>) -> bool {
    store
        .users
        .iter()
        .any(|u| Some(u.id.as_str()) != except && eq_ignore_case(&u.data.user_name, user_name))
}

fn not_found() -> ApiError {
    ApiError::not_found(USER_NOT_FOUND)
}

/// CreateUser: 201 with the user.
pub(crate) fn create(store: &mut Store, ctx: &Ctx<'_>, body: &[u8]) -> Result<Outcome, ApiError> {
    let data = UserData::from_body(&json_object(body)?)?;
    if user_name_taken(store, &data.user_name, None) {
        return Err(ApiError::conflict());
    }
    let user = UserRecord {
        id: ctx.new_id(),
        created: ctx.now,
        last_modified: ctx.now,
        data,
    };
    let reply = Reply::json(StatusCode::CREATED, &resource(&user));
    store.users.push(user);
    Ok(Outcome::changed(reply))
}

/// GetUser: 200 with the user.
pub(crate) fn get(store: &Store, id: &str) -> Result<Reply, ApiError> {
    let user = store.user(id).ok_or_else(not_found)?;
    Ok(Reply::ok(&resource(user)))
}

/// ListUsers: filters on userName (any case), externalId, id and manager, and
/// `groups.value` (a group's members: ListUsers › Constraints, live guide); pages
/// without or with `cursor` ([`pages`](super::pages)).
pub(crate) fn list(store: &Store, query: &Query) -> Result<Reply, ApiError> {
    let filter = list_filter(query)?;
    let terms = match &filter {
        Some(f) => eq_terms(f)?,
        None => Vec::new(),
    };
    // A group that does not exist has no members: an empty list, not a 404. AWS's answer
    // is not documented; an empty page keeps a reader going, and the group's own
    // operations still answer 404.
    let mut groups_of = Vec::new();
    for term in &terms {
        if matches!(term.key.as_str(), "groups" | "groups.value") {
            let members: HashSet<&str> = store
                .group(term.value)
                .map(|g| g.members.iter().map(String::as_str).collect())
                .unwrap_or_default();
            groups_of.push(members);
        }
    }
    let mut matches = Vec::new();
    for user in &store.users {
        let mut hit = true;
        let mut group_terms = groups_of.iter();
        for term in &terms {
            hit &= match term.key.as_str() {
                "username" => eq_ignore_case(&user.data.user_name, term.value),
                "externalid" => user.data.external_id.as_deref() == Some(term.value),
                "id" => user.id == term.value,
                "manager" | "manager.value" => user.data.manager() == Some(term.value),
                "groups" | "groups.value" => group_terms
                    .next()
                    .is_some_and(|members| members.contains(user.id.as_str())),
                _ => return Err(ApiError::invalid()),
            };
        }
        if hit {
            matches.push(user);
        }
    }
    let canonical = filter.as_ref().map(ToString::to_string).unwrap_or_default();
    pages::answer(
        query,
        Listing::Users,
        &canonical,
        matches,
        |u: &UserRecord| u.id.as_str(),
        resource,
    )
}

/// PutUser: replaces every attribute; 200 with the user.
pub(crate) fn put(
    store: &mut Store,
    ctx: &Ctx<'_>,
    id: &str,
    body: &[u8],
) -> Result<Outcome, ApiError> {
    let data = UserData::from_body(&json_object(body)?)?;
    if store.user(id).is_none() {
        return Err(not_found());
    }
    if user_name_taken(store, &data.user_name, Some(id)) {
        return Err(ApiError::conflict());
    }
    let user = store.user_mut(id).ok_or_else(not_found)?;
    user.data = data;
    user.last_modified = ctx.now;
    Ok(Outcome::changed(Reply::ok(&resource(user))))
}

/// PatchUser: 200 with the user. All operations apply, or none.
pub(crate) fn patch(
    store: &mut Store,
    ctx: &Ctx<'_>,
    id: &str,
    body: &[u8],
) -> Result<Outcome, ApiError> {
    let request = patch_request(body)?;
    let user = store.user(id).ok_or_else(not_found)?;
    let mut doc = user.data.document();
    for op in &request.operations {
        apply(&mut doc, op)?;
    }
    let data = UserData::from_body(&doc)?;
    if user_name_taken(store, &data.user_name, Some(id)) {
        return Err(ApiError::conflict());
    }
    let user = store.user_mut(id).ok_or_else(not_found)?;
    user.data = data;
    user.last_modified = ctx.now;
    Ok(Outcome::changed(Reply::ok(&resource(user))))
}

/// DeleteUser: 204; the user leaves every group too.
pub(crate) fn delete(store: &mut Store, id: &str) -> Result<Outcome, ApiError> {
    let before = store.users.len();
    store.users.retain(|u| u.id != id);
    if store.users.len() == before {
        return Err(not_found());
    }
    for group in &mut store.groups {
        group.members.retain(|m| m != id);
    }
    Ok(Outcome::changed(Reply::NoContent))
}

// ---- PATCH ------------------------------------------------------------------------

/// What a PATCH path names in a user.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// A single-valued core attribute: `userName`, `active`, `title`, …
    Simple(&'static str),
    /// `name`, or one of its sub-attributes.
    Name(Option<&'static str>),
    /// `emails`, `addresses` or `phoneNumbers`, maybe narrowed by a value filter, maybe
    /// down to a sub-attribute: `emails[type eq "work"].value`.
    Multi {
        attr: &'static str,
        filter: Option<Filter>,
        sub: Option<&'static str>,
    },
    /// The whole enterprise extension.
    EnterpriseRoot,
    /// An enterprise attribute, or the manager's `value`.
    Enterprise {
        attr: &'static str,
        sub: Option<&'static str>,
    },
}

/// The enterprise URN without its last segment, as the path grammar splits
/// `urn:…:enterprise:2.0:User` (URN prefix, then the attribute `User`).
const ENTERPRISE_URN_PREFIX: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0";

fn target_of(text: &str) -> Result<Target, ApiError> {
    if text.trim().eq_ignore_ascii_case(ENTERPRISE_URN) {
        return Ok(Target::EnterpriseRoot);
    }
    let path = parse_path(text).map_err(|_| ApiError::invalid())?;
    target(&path)
}

fn target(path: &PatchPath) -> Result<Target, ApiError> {
    let (attr, filter, after) = match path {
        PatchPath::Attr(attr) => (attr, None, None),
        PatchPath::ValuePath {
            attr,
            filter,
            sub_attr,
        } => (attr, Some(filter), sub_attr.as_deref()),
    };
    let urn = attr.urn.as_deref();
    let sub_text = attr.sub_attr.as_deref().or(after);
    if attr.urn_is(ENTERPRISE_URN) {
        let name = canon(&attr.name, ENTERPRISE_SUB).ok_or_else(ApiError::invalid)?;
        let sub = match sub_text {
            None => None,
            Some(s) if name == "manager" => {
                Some(canon(s, MANAGER_SUB).ok_or_else(ApiError::invalid)?)
            }
            Some(_) => return Err(ApiError::invalid()),
        };
        if filter.is_some() {
            return Err(ApiError::invalid());
        }
        return Ok(Target::Enterprise { attr: name, sub });
    }
    if attr.urn_is(ENTERPRISE_URN_PREFIX)
        && attr.name.eq_ignore_ascii_case("User")
        && sub_text.is_none()
        && filter.is_none()
    {
        return Ok(Target::EnterpriseRoot);
    }
    if urn.is_some() && !attr.urn_is(CORE_USER_SCHEMA) {
        return Err(ApiError::invalid());
    }
    let name = canon(&attr.name, TOP).ok_or_else(ApiError::invalid)?;
    let sub = match (sub_text, sub_names(name)) {
        (None, _) => None,
        (Some(s), Some(subs)) => Some(canon(s, subs).ok_or_else(ApiError::invalid)?),
        (Some(_), None) => return Err(ApiError::invalid()),
    };
    if is_multi_valued(name) {
        return Ok(Target::Multi {
            attr: name,
            filter: filter.cloned(),
            sub,
        });
    }
    if filter.is_some() {
        return Err(ApiError::invalid());
    }
    match name {
        "name" => Ok(Target::Name(sub)),
        _ => Ok(Target::Simple(name)),
    }
}

/// Applies one operation to the canonical document of a user.
///
/// `add` and `replace` both set: single values are replaced, complex values (`name`,
/// the enterprise extension, a filtered multi-valued entry) are merged, and a whole
/// multi-valued attribute is replaced by the one value AWS allows. A value filter that
/// matches nothing creates the entry it describes (`emails[type eq "work"].value` on a
/// user without a work email), as Microsoft Entra ID expects.
fn apply(doc: &mut Map<String, Value>, op: &PatchOperation) -> Result<(), ApiError> {
    let kind = op.kind().ok_or_else(ApiError::invalid)?;
    match (op.path.as_deref(), kind) {
        (None, PatchOpKind::Remove) => Err(ApiError::invalid()),
        (None, PatchOpKind::Add | PatchOpKind::Replace) => {
            let Some(Value::Object(value)) = &op.value else {
                return Err(ApiError::invalid());
            };
            for (key, v) in value {
                set(doc, target_of(key)?, v.clone())?;
            }
            Ok(())
        }
        (Some(path), PatchOpKind::Remove) => remove(doc, &target_of(path)?),
        (Some(path), PatchOpKind::Add | PatchOpKind::Replace) => {
            let value = op.value.clone().ok_or_else(ApiError::invalid)?;
            set(doc, target_of(path)?, value)
        }
    }
}

/// The object at `key`, created empty when absent.
fn object_at<'m>(
    map: &'m mut Map<String, Value>,
    key: &str,
) -> Result<&'m mut Map<String, Value>, ApiError> {
    map.entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(ApiError::invalid)
}

/// The list at `key`, created empty when absent.
fn list_at<'m>(map: &'m mut Map<String, Value>, key: &str) -> Result<&'m mut Vec<Value>, ApiError> {
    map.entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(ApiError::invalid)
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        into.insert(k, v);
    }
}

/// A boolean sent as a string: AWS takes the guide's own `"value": "false"` for active.
fn boolean(value: Value) -> Value {
    match &value {
        Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ => value,
    }
}

fn set(doc: &mut Map<String, Value>, target: Target, value: Value) -> Result<(), ApiError> {
    if value.is_null() {
        // RFC 7643 §2.5: null is "unassigned".
        return remove(doc, &target);
    }
    match target {
        Target::Simple(name) => {
            let value = if name == "active" {
                boolean(value)
            } else {
                value
            };
            doc.insert(name.to_owned(), value);
        }
        Target::Name(None) => {
            let Value::Object(m) = value else {
                return Err(ApiError::invalid());
            };
            merge(object_at(doc, "name")?, canonical_object(&m, NAME_SUB));
        }
        Target::Name(Some(sub)) => {
            object_at(doc, "name")?.insert(sub.to_owned(), value);
        }
        Target::Multi {
            attr,
            filter: None,
            sub: None,
        } => {
            let items = match value {
                Value::Array(items) => items,
                object @ Value::Object(_) => vec![object],
                _ => return Err(ApiError::invalid()),
            };
            doc.insert(attr.to_owned(), canonical_attr(attr, Value::Array(items)));
        }
        Target::Multi {
            attr,
            filter: None,
            sub: Some(sub),
        } => {
            let list = list_at(doc, attr)?;
            if list.is_empty() {
                list.push(Value::Object(Map::new()));
            }
            for entry in list.iter_mut() {
                let entry = entry.as_object_mut().ok_or_else(ApiError::invalid)?;
                entry.insert(sub.to_owned(), value.clone());
            }
        }
        Target::Multi {
            attr,
            filter: Some(filter),
            sub,
        } => {
            let subs = sub_names(attr).unwrap_or_default();
            let list = list_at(doc, attr)?;
            let mut hit = false;
            for entry in list.iter_mut() {
                let entry = entry.as_object_mut().ok_or_else(ApiError::invalid)?;
                if matches(entry, &filter)? {
                    hit = true;
                    set_in_entry(entry, sub, &value, subs)?;
                }
            }
            if !hit {
                let mut entry = Map::new();
                entry_from_filter(&filter, subs, &mut entry)?;
                set_in_entry(&mut entry, sub, &value, subs)?;
                list.push(Value::Object(entry));
            }
        }
        Target::EnterpriseRoot => {
            let Value::Object(m) = value else {
                return Err(ApiError::invalid());
            };
            merge(object_at(doc, ENTERPRISE_URN)?, canonical_enterprise(&m));
        }
        Target::Enterprise { attr, sub: None } => {
            let value = if attr == "manager" {
                canonical_manager(value)
            } else {
                value
            };
            object_at(doc, ENTERPRISE_URN)?.insert(attr.to_owned(), value);
        }
        Target::Enterprise {
            attr,
            sub: Some(sub),
        } => {
            let extension = object_at(doc, ENTERPRISE_URN)?;
            object_at(extension, attr)?.insert(sub.to_owned(), value);
        }
    }
    Ok(())
}

fn set_in_entry(
    entry: &mut Map<String, Value>,
    sub: Option<&'static str>,
    value: &Value,
    subs: &[&'static str],
) -> Result<(), ApiError> {
    match (sub, value) {
        (Some(sub), v) => {
            entry.insert(sub.to_owned(), v.clone());
        }
        (None, Value::Object(m)) => merge(entry, canonical_object(m, subs)),
        (None, _) => return Err(ApiError::invalid()),
    }
    Ok(())
}

fn remove(doc: &mut Map<String, Value>, target: &Target) -> Result<(), ApiError> {
    match target {
        Target::Simple(name) => {
            doc.remove(*name);
        }
        Target::Name(None) => {
            doc.remove("name");
        }
        Target::Name(Some(sub)) => {
            if let Some(Value::Object(name)) = doc.get_mut("name") {
                name.remove(*sub);
            }
        }
        Target::Multi {
            attr,
            filter: None,
            sub: None,
        } => {
            doc.remove(*attr);
        }
        Target::Multi { attr, filter, sub } => {
            let Some(Value::Array(list)) = doc.get_mut(*attr) else {
                return Ok(());
            };
            let mut kept = Vec::with_capacity(list.len());
            for mut entry in list.drain(..) {
                let hit = match (&entry, filter) {
                    (Value::Object(m), Some(f)) => matches(m, f)?,
                    (_, None) => true,
                    (_, Some(_)) => false,
                };
                match (hit, sub, &mut entry) {
                    (false, _, _) => kept.push(entry),
                    (true, None, _) => {}
                    (true, Some(sub), Value::Object(m)) => {
                        m.remove(*sub);
                        kept.push(entry);
                    }
                    (true, Some(_), _) => kept.push(entry),
                }
            }
            *list = kept;
        }
        Target::EnterpriseRoot => {
            doc.remove(ENTERPRISE_URN);
        }
        Target::Enterprise { attr, sub } => {
            if let Some(Value::Object(extension)) = doc.get_mut(ENTERPRISE_URN) {
                match sub {
                    None => {
                        extension.remove(*attr);
                    }
                    Some(sub) => {
                        if let Some(Value::Object(m)) = extension.get_mut(*attr) {
                            m.remove(*sub);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether an entry of a multi-valued attribute matches a value filter. String
/// comparisons ignore case (`caseExact: false` for every such sub-attribute).
fn matches(entry: &Map<String, Value>, filter: &Filter) -> Result<bool, ApiError> {
    let get = |name: &str| {
        entry
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    };
    match filter {
        Filter::Compare { attr, op, value } => {
            if attr.urn.is_some() || attr.sub_attr.is_some() {
                return Err(ApiError::invalid());
            }
            let equal = get(&attr.name).is_some_and(|got| value_eq(got, value));
            match op {
                CompareOp::Eq => Ok(equal),
                CompareOp::Ne => Ok(!equal),
                _ => Err(ApiError::invalid()),
            }
        }
        Filter::Present { attr } => Ok(get(&attr.name).is_some()),
        Filter::And(items) => {
            for item in items {
                if !matches(entry, item)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Filter::Or(items) => {
            for item in items {
                if matches(entry, item)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Filter::Not(inner) => Ok(!matches(entry, inner)?),
        Filter::ValuePath { .. } => Err(ApiError::invalid()),
    }
}

fn value_eq(got: &Value, want: &CompValue) -> bool {
    match (got, want) {
        (Value::String(a), CompValue::String(b)) => eq_ignore_case(a, b),
        (Value::Bool(a), CompValue::Bool(b)) => a == b,
        (Value::Number(a), CompValue::Number(b)) => a == b,
        _ => false,
    }
}

/// The entry a filter of `eq` terms joined by `and` describes.
fn entry_from_filter(
    filter: &Filter,
    subs: &[&'static str],
    entry: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    match filter {
        Filter::Compare {
            attr,
            op: CompareOp::Eq,
            value,
        } if attr.urn.is_none() && attr.sub_attr.is_none() => {
            let name = canon(&attr.name, subs).ok_or_else(ApiError::invalid)?;
            entry.insert(name.to_owned(), value.to_json());
            Ok(())
        }
        Filter::And(items) => items
            .iter()
            .try_for_each(|item| entry_from_filter(item, subs, entry)),
        _ => Err(ApiError::invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(v: Value) -> UserData {
        let Value::Object(m) = v else { panic!() };
        UserData::from_body(&m).unwrap()
    }

    fn patched(data: &UserData, ops: Value) -> Result<UserData, ApiError> {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": ops,
        });
        let request = patch_request(body.to_string().as_bytes())?;
        let mut doc = data.document();
        for op in &request.operations {
            apply(&mut doc, op)?;
        }
        UserData::from_body(&doc)
    }

    fn base() -> UserData {
        user(json!({
            "userName": "bjensen",
            "displayName": "Babs Jensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        }))
    }

    #[test]
    fn bodies_read_case_insensitively_and_drop_unknowns() {
        let u = user(json!({
            "USERNAME": "a",
            "Name": {"GivenName": "A", "bogus": 1},
            "id": "ignored",
            "roles": [{"value": "x"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {
                "Manager": "m-1", "department": null,
            },
            "title": null,
        }));
        assert_eq!(u.user_name, "a");
        assert_eq!(
            u.name.as_ref().and_then(|n| n.given_name.as_deref()),
            Some("A")
        );
        assert_eq!(u.manager(), Some("m-1"));
        assert_eq!(u.title, None);
    }

    #[test]
    fn wrong_types_and_many_values_are_refused() {
        for body in [
            json!({"userName": 5}),
            json!({"displayName": "no userName"}),
            json!({"userName": "  "}),
            json!({"userName": "a", "active": "yes"}),
            json!({"userName": "a", "emails": [{"value": "x"}, {"value": "y"}]}),
            json!({"userName": "a", "emails": {"value": "x"}}),
        ] {
            let Value::Object(m) = body.clone() else {
                panic!()
            };
            assert_eq!(UserData::from_body(&m), Err(ApiError::invalid()), "{body}");
        }
    }

    #[test]
    fn empty_extension_is_absent() {
        let u = user(
            json!({"userName": "a", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"$ref": "../Users/x"}}, "name": {}}),
        );
        assert_eq!((u.enterprise, u.name), (None, None));
    }

    #[test]
    fn patch_paths() {
        let u = base();
        let p = patched(
            &u,
            json!([
                {"op": "replace", "path": "name.givenName", "value": "Babs"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "babs@example.com"},
                {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Tours"},
                {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": "m-1", "$ref": "../Users/m-1"}},
                {"op": "replace", "path": "active", "value": "False"},
                {"op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "555"},
                {"op": "replace", "path": "addresses", "value": {"locality": "Hollywood", "type": "work"}},
            ]),
        )
        .unwrap();
        assert_eq!(
            p.name.as_ref().and_then(|n| n.given_name.as_deref()),
            Some("Babs")
        );
        assert_eq!(p.emails[0].value.as_deref(), Some("babs@example.com"));
        assert_eq!(p.emails[0].primary, Some(true));
        assert_eq!(
            p.enterprise.as_ref().and_then(|e| e.department.as_deref()),
            Some("Tours")
        );
        assert_eq!(p.manager(), Some("m-1"));
        assert_eq!(p.active, Some(false));
        assert_eq!(
            p.phone_numbers,
            [Phone {
                value: Some("555".into()),
                kind: Some("mobile".into()),
                primary: None
            }]
        );
        assert_eq!(p.addresses[0].locality.as_deref(), Some("Hollywood"));

        let p = patched(
            &p,
            json!([
                {"op": "remove", "path": "emails[type eq \"work\"]"},
                {"op": "remove", "path": "name.givenName"},
                {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"},
                {"op": "remove", "path": "phoneNumbers[type eq \"mobile\"].value"},
                {"op": "remove", "path": "title"},
            ]),
        )
        .unwrap();
        assert!(p.emails.is_empty());
        assert_eq!(p.name.as_ref().and_then(|n| n.given_name.as_deref()), None);
        assert_eq!(p.manager(), None);
        assert_eq!(
            p.phone_numbers,
            [Phone {
                value: None,
                kind: Some("mobile".into()),
                primary: None
            }]
        );
        let p = patched(
            &p,
            json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"}]),
        )
        .unwrap();
        assert_eq!(p.enterprise, None);
    }

    #[test]
    fn pathless_values_are_paths() {
        let p = patched(
            &base(),
            json!([{"op": "replace", "value": {
                "displayName": "B. Jensen",
                "name.familyName": "J",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"costCenter": "4130"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division": "Park",
            }}]),
        )
        .unwrap();
        assert_eq!(p.display_name.as_deref(), Some("B. Jensen"));
        assert_eq!(
            p.name.as_ref().and_then(|n| n.family_name.as_deref()),
            Some("J")
        );
        let e = p.enterprise.unwrap_or_default();
        assert_eq!(
            (e.cost_center.as_deref(), e.division.as_deref()),
            (Some("4130"), Some("Park"))
        );
    }

    #[test]
    fn bad_patches_are_refused() {
        let u = base();
        for ops in [
            json!([{"op": "remove"}]),
            json!([{"op": "move", "path": "title", "value": "x"}]),
            json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]),
            json!([{"op": "add", "path": "title.x", "value": "t"}]),
            json!([{"op": "add", "path": "emails[type gt \"a\"].value", "value": "t"}]),
            json!([{"op": "add", "path": "emails[type eq \"a\" or type eq \"b\"].value", "value": "t"}]),
            json!([{"op": "replace", "path": "userName", "value": ""}]),
            json!([{"op": "replace", "path": "title", "value": {"a": 1}}]),
            json!([{"op": "add", "path": "emails", "value": [{"value": "a"}, {"value": "b"}]}]),
            json!([{"op": "add", "path": "urn:x:y:Thing:attr", "value": "t"}]),
            json!([{"op": "replace", "value": "not an object"}]),
            json!([{"op": "replace", "path": "(", "value": "x"}]),
        ] {
            assert_eq!(
                patched(&u, ops.clone()).map(|_| ()),
                Err(ApiError::invalid()),
                "{ops}"
            );
        }
        assert!(
            patch_request(br#"{"Operations":[{"op":"add","path":"title","value":"x"}]}"#).is_err()
        );
        assert!(patch_request(
            br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[]}"#
        )
        .is_err());
    }
}
