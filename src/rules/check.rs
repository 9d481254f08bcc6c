//! The closed set of check kinds a rule can use, and [`run`], the one place they are
//! matched. Each kind's parameters come from the rule's `[rule.check]` table; its code
//! lives with its resource (`user.rs`, `patch.rs`, `group.rs`, `list.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;

use serde_json::{Map, Value};

use super::attr::JsonType;
use super::checks::patch::{
    extension_urn, has_path, op_kind, operations, operations_mut, parsed_path, remove_operations,
    OPERATIONS,
};
use super::checks::{list, patch, user};
use super::context::{pointer_token, Body, Finding, Reporter, RequestView, State};
use super::{group, Action, Rule};
use crate::scim::patch::PatchOpKind;
use crate::scim::path::PatchPath;

/// A check kind with its parameters (`kind = "…"` in the rules file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Check {
    // ---- any operation -------------------------------------------------------------
    /// The operation itself is not supported (Bulk, Me, Search, PutGroup).
    UnsupportedOperation,
    /// PUT /Groups/{id}, which AWS lacks: fix = the repair of `src/repair` (read the
    /// group's members, send PATCHes).
    PutGroup,
    /// A path scimguard does not recognise as a SCIM endpoint.
    UnknownEndpoint,
    /// The body must be one JSON object: not absent, not empty, not another JSON value.
    JsonBody,
    /// The path's shape: no `/` after `/scim/v2` (`/scim/v2Groups`), or an empty segment
    /// (`/scim/v2//Users`, from a base URL with a trailing slash).
    PathShape,

    // ---- resource bodies (CreateUser, PutUser, CreateGroup; PatchUser values) -------
    /// These attributes must be present and not empty. Dotted names reach sub-attributes.
    Required { attributes: Vec<String> },
    /// These attributes are not accepted: fix = drop them.
    DropAttributes { attributes: Vec<String> },
    /// These sub-attributes of these (single or multi-valued) attributes are not
    /// accepted: fix = drop them.
    DropSubAttributes {
        attributes: Vec<String>,
        sub_attributes: Vec<String>,
    },
    /// These multi-valued attributes may hold one value: fix = keep the primary one,
    /// else the one of type work, else the first.
    SingleValue { attributes: Vec<String> },
    /// The one email must be marked primary: fix = `"primary": true`.
    PrimaryEmail,
    /// Only these schema URNs (and their extension blocks): fix = drop the others.
    KnownSchemas { allowed: Vec<String> },
    /// `""` as a value: fix = drop the attribute.
    EmptyString,
    /// The enterprise manager as a bare string: fix = `{"value": "…"}`.
    ManagerObject,
    /// Characters refused in these attributes (`["*"]`: every string, except those in
    /// `except`).
    RefusedCharacters {
        attributes: Vec<String>,
        #[serde(default)]
        except: Vec<String>,
        /// Characters refused besides control and zero-width characters.
        characters: String,
    },
    /// A multi-valued list of group members longer than `max`: fix = split into batches.
    MembersLimit { max: usize },
    /// Member entries: fix = drop `display` and a null `$ref`.
    MemberEntries,
    /// Each listed attribute (dotted; a multi-valued attribute's sub-attribute is
    /// checked in each element) must have its JSON type; null always passes.
    AttributeTypes {
        attributes: BTreeMap<String, JsonType>,
    },
    /// Strings of these attributes longer than `max` characters.
    MaxLength { attributes: Vec<String>, max: usize },
    /// These attributes should be email addresses (`local@domain.tld`).
    EmailAddress { attributes: Vec<String> },

    // ---- PATCH (PatchUser, PatchGroup) ----------------------------------------------
    /// `op` must be add, replace or remove, in any case.
    PatchOpSupported,
    /// `op` in another case than lower (`Replace`): fix = lowercase it.
    PatchOpCase,
    /// `path` is required for these ops.
    PatchPathRequired { ops: Vec<String> },
    /// `value` is required for these ops.
    PatchValueRequired { ops: Vec<String> },
    /// Paths may only name these attributes (their sub-attributes and value filters
    /// included). A path that matches only case-insensitively: fix = the listed casing.
    PatchPaths { attributes: Vec<String> },
    /// `op` may not target these attributes.
    PatchForbiddenOp { op: String, attributes: Vec<String> },
    /// At most one operation may target each of these attributes.
    PatchSingleOperation { attributes: Vec<String> },
    /// Value filters in paths may only use these comparison operators.
    PatchFilterOperators { operators: Vec<String> },
    /// A path-less add/replace that sets several attributes: fix = one operation per
    /// attribute, with its path.
    PatchSplitPathless,
    /// A boolean attribute sent as a string ("False"): fix = a JSON boolean.
    PatchBooleanString { attributes: Vec<String> },
    /// The body rules of `checks`, applied to each operation's value as if it were a
    /// resource body.
    PatchValues { checks: Vec<Check> },
    /// In a path-less PatchGroup value: fix = drop `id` (when it is the group's own),
    /// `schemas` and `meta`; anything else but the allowed attributes fails.
    PatchGroupPathless { allowed: Vec<String> },
    /// `replace` on `members`.
    PatchReplaceMembers,
    /// `remove` on `members` with no member list (no `value`, `null` or `[]`).
    PatchRemoveAllMembers,
    /// `remove` with a `members[value eq "…"]` path: fix = path `members` and a value list.
    PatchRemoveMemberFilter,
    /// More than `max` membership changes: fix = sequential batches of at most `max`.
    PatchMembersLimit { max: usize },
    /// A member added (or removed) twice in one request: fix = send it once.
    DuplicateMembers,

    // ---- lists (ListUsers, ListGroups) ------------------------------------------------
    /// The filter must parse.
    FilterParses,
    /// Only these comparison operators and logical operators.
    FilterOperators {
        operators: Vec<String>,
        logical: Vec<String>,
    },
    /// The filter's attributes must form one of these sets (matched case-insensitively).
    FilterAttributeSets { sets: Vec<Vec<String>> },
    /// A comparison with an empty string value.
    FilterEmptyValue,
    /// Query parameters the upstream ignores, and `count` above `max_count`.
    IgnoredParameters {
        parameters: Vec<String>,
        max_count: u64,
    },
    /// The query string must decode (valid UTF-8, no repeated parameter).
    QueryParses,
    /// `cursor` must match AWS's pattern `[-a-zA-Z0-9+=/:_]*` (empty starts paging).
    CursorParameter,
}

impl Check {
    /// The kind's name as written in the rules file.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::UnsupportedOperation => "unsupported-operation",
            Check::PutGroup => "put-group",
            Check::UnknownEndpoint => "unknown-endpoint",
            Check::JsonBody => "json-body",
            Check::PathShape => "path-shape",
            Check::Required { .. } => "required",
            Check::DropAttributes { .. } => "drop-attributes",
            Check::DropSubAttributes { .. } => "drop-sub-attributes",
            Check::SingleValue { .. } => "single-value",
            Check::PrimaryEmail => "primary-email",
            Check::KnownSchemas { .. } => "known-schemas",
            Check::EmptyString => "empty-string",
            Check::ManagerObject => "manager-object",
            Check::RefusedCharacters { .. } => "refused-characters",
            Check::MembersLimit { .. } => "members-limit",
            Check::MemberEntries => "member-entries",
            Check::AttributeTypes { .. } => "attribute-types",
            Check::MaxLength { .. } => "max-length",
            Check::EmailAddress { .. } => "email-address",
            Check::PatchOpSupported => "patch-op-supported",
            Check::PatchOpCase => "patch-op-case",
            Check::PatchPathRequired { .. } => "patch-path-required",
            Check::PatchValueRequired { .. } => "patch-value-required",
            Check::PatchPaths { .. } => "patch-paths",
            Check::PatchForbiddenOp { .. } => "patch-forbidden-op",
            Check::PatchSingleOperation { .. } => "patch-single-operation",
            Check::PatchFilterOperators { .. } => "patch-filter-operators",
            Check::PatchSplitPathless => "patch-split-pathless",
            Check::PatchBooleanString { .. } => "patch-boolean-string",
            Check::PatchValues { .. } => "patch-values",
            Check::PatchGroupPathless { .. } => "patch-group-pathless",
            Check::PatchReplaceMembers => "patch-replace-members",
            Check::PatchRemoveAllMembers => "patch-remove-all-members",
            Check::PatchRemoveMemberFilter => "patch-remove-member-filter",
            Check::PatchMembersLimit { .. } => "patch-members-limit",
            Check::DuplicateMembers => "duplicate-members",
            Check::FilterParses => "filter-parses",
            Check::FilterOperators { .. } => "filter-operators",
            Check::FilterAttributeSets { .. } => "filter-attribute-sets",
            Check::FilterEmptyValue => "filter-empty-value",
            Check::IgnoredParameters { .. } => "ignored-parameters",
            Check::QueryParses => "query-parses",
            Check::CursorParameter => "cursor-parameter",
        }
    }

    /// Whether the kind has a safe fix, i.e. supports the `rewrite` action. Every kind
    /// supports reject, warn and off.
    pub fn can_rewrite(&self) -> bool {
        match self {
            Check::DropAttributes { .. }
            | Check::DropSubAttributes { .. }
            | Check::SingleValue { .. }
            | Check::PrimaryEmail
            | Check::KnownSchemas { .. }
            | Check::EmptyString
            | Check::ManagerObject
            | Check::MembersLimit { .. }
            | Check::MemberEntries
            | Check::PatchOpCase
            | Check::PatchPaths { .. }
            | Check::PatchSplitPathless
            | Check::PatchBooleanString { .. }
            | Check::PatchGroupPathless { .. }
            | Check::PatchRemoveMemberFilter
            | Check::PatchMembersLimit { .. }
            | Check::DuplicateMembers => true,
            // Their fix is a repair (src/repair): the group's members are read and the
            // change sent as adds and removes.
            Check::PatchReplaceMembers | Check::PatchRemoveAllMembers | Check::PutGroup => true,
            Check::PatchValues { checks } => checks.iter().any(Check::can_rewrite),
            _ => false,
        }
    }

    /// RFC 7644 §3.12's `scimType` for a rejection by this kind.
    pub fn scim_type(&self) -> &'static str {
        match self {
            Check::FilterParses
            | Check::FilterOperators { .. }
            | Check::FilterAttributeSets { .. }
            | Check::FilterEmptyValue => "invalidFilter",
            Check::PatchPaths { .. }
            | Check::PatchFilterOperators { .. }
            | Check::PatchPathRequired { .. }
            | Check::PatchForbiddenOp { .. } => "invalidPath",
            Check::JsonBody | Check::QueryParses | Check::CursorParameter => "invalidSyntax",
            Check::PatchOpSupported => "invalidSyntax",
            Check::MembersLimit { .. } | Check::PatchMembersLimit { .. } => "tooMany",
            Check::PatchReplaceMembers
            | Check::PatchRemoveAllMembers
            | Check::UnsupportedOperation
            | Check::PutGroup
            | Check::UnknownEndpoint
            | Check::PathShape => "mutability",
            _ => "invalidValue",
        }
    }

    /// Whether the check reads the request body; the others read only its path and
    /// query, and need no parse of the body.
    pub(crate) fn reads_body(&self) -> bool {
        !matches!(
            self,
            Check::UnsupportedOperation
                | Check::PutGroup
                | Check::UnknownEndpoint
                | Check::PathShape
                | Check::CursorParameter
                | Check::FilterParses
                | Check::FilterOperators { .. }
                | Check::FilterAttributeSets { .. }
                | Check::FilterEmptyValue
                | Check::IgnoredParameters { .. }
                | Check::QueryParses
        )
    }

    pub fn supports(&self, action: Action) -> bool {
        action != Action::Rewrite || self.can_rewrite()
    }

    /// "reject, rewrite, warn or off" or "reject, warn or off", for error messages.
    pub fn supported_actions(&self) -> &'static str {
        if self.can_rewrite() {
            "reject, rewrite, warn or off"
        } else {
            "reject, warn or off"
        }
    }
}

/// Runs one rule's check: THE match over check kinds.
pub(crate) fn run(rule: &Rule, request: &RequestView<'_>, state: &mut State) {
    let r = Reporter { rule };
    run_check(&rule.check, &r, request, state);
}

pub(crate) fn run_check(
    check: &Check,
    r: &Reporter<'_>,
    request: &RequestView<'_>,
    state: &mut State,
) {
    match check {
        Check::UnsupportedOperation | Check::PutGroup => {
            user::unsupported_operation(r, request, state)
        }
        Check::UnknownEndpoint => user::unknown_endpoint(r, request, state),
        Check::JsonBody => user::json_body(r, request, state),
        Check::PathShape => user::path_shape(r, request, state),
        Check::Required { attributes } => user::required(r, attributes, state),
        Check::DropAttributes { attributes } => user::drop_attributes(r, attributes, state),
        Check::DropSubAttributes {
            attributes,
            sub_attributes,
        } => user::drop_sub_attributes(r, attributes, sub_attributes, state),
        Check::SingleValue { attributes } => user::single_value(r, attributes, state),
        Check::PrimaryEmail => user::primary_email(r, state),
        Check::KnownSchemas { allowed } => user::known_schemas(r, allowed, state),
        Check::EmptyString => user::empty_string(r, state),
        Check::ManagerObject => user::manager_object(r, state),
        Check::RefusedCharacters {
            attributes,
            except,
            characters,
        } => user::refused_characters(r, attributes, except, characters, state),
        Check::MembersLimit { max } => group::members_limit(r, *max, state),
        Check::MemberEntries => group::member_entries(r, request, state),
        Check::AttributeTypes { attributes } => user::attribute_types(r, attributes, state),
        Check::MaxLength { attributes, max } => user::max_length(r, attributes, *max, state),
        Check::EmailAddress { attributes } => user::email_address(r, attributes, state),
        Check::PatchOpSupported => patch::op_supported(r, state),
        Check::PatchOpCase => patch::op_case(r, state),
        Check::PatchPathRequired { ops } => patch::path_required(r, ops, state),
        Check::PatchValueRequired { ops } => patch::value_required(r, ops, state),
        Check::PatchPaths { attributes } => patch::paths(r, attributes, state),
        Check::PatchForbiddenOp { op, attributes } => patch::forbidden_op(r, op, attributes, state),
        Check::PatchSingleOperation { attributes } => patch::single_operation(r, attributes, state),
        Check::PatchFilterOperators { operators } => patch::filter_operators(r, operators, state),
        Check::PatchSplitPathless => patch::split_pathless(r, state),
        Check::PatchBooleanString { attributes } => patch::boolean_string(r, attributes, state),
        Check::PatchValues { checks } => values(r, checks, request, state),
        Check::PatchGroupPathless { allowed } => group::patch_pathless(r, allowed, request, state),
        Check::PatchReplaceMembers => group::replace_members(r, state),
        Check::PatchRemoveAllMembers => group::remove_all_members(r, state),
        Check::PatchRemoveMemberFilter => group::remove_member_filter(r, state),
        Check::PatchMembersLimit { max } => group::patch_members_limit(r, *max, state),
        Check::DuplicateMembers => group::duplicate_members(r, request, state),
        Check::FilterParses => list::filter_parses(r, request, state),
        Check::FilterOperators { operators, logical } => {
            list::filter_operators(r, operators, logical, request, state)
        }
        Check::FilterAttributeSets { sets } => list::filter_attribute_sets(r, sets, request, state),
        Check::FilterEmptyValue => list::filter_empty_value(r, request, state),
        Check::IgnoredParameters {
            parameters,
            max_count,
        } => list::ignored_parameters(r, parameters, *max_count, request, state),
        Check::QueryParses => list::query_parses(r, request, state),
        Check::CursorParameter => list::cursor_parameter(r, request, state),
    }
}

// ---- patch-values: the body checks above, run on each PATCH operation's value ----------
//
// It lives here, beside the one match, because it runs other checks.

/// The English template of an inner check's finding, for `{detail}`.
fn inner_message(check: &Check) -> String {
    let text = match check {
        Check::DropAttributes { .. } | Check::DropSubAttributes { .. } => {
            "AWS IAM Identity Center does not support {attribute}; removed {value}"
        }
        Check::SingleValue { .. } => "{attribute} may hold one value but {count} were sent; kept {kept}, dropped {dropped}",
        Check::PrimaryEmail => "the email must be marked primary (primary was {primary}); set \"primary\": true",
        Check::ManagerObject => "the manager was the bare string \"{value}\"; wrapped it as an object with that value",
        Check::EmptyString => "{attribute} was sent as \"\"; removed it",
        Check::RefusedCharacters { .. } => {
            "{attribute} contains {character} at character {position}, which AWS IAM Identity Center refuses"
        }
        Check::KnownSchemas { .. } => "AWS IAM Identity Center does not know the schema {urn}; removed it",
        Check::Required { .. } => "{attribute} is required but is {found}",
        Check::AttributeTypes { .. } => "{attribute} is {sent}; AWS IAM Identity Center wants {wanted}",
        Check::MaxLength { .. } => "{attribute} is {length} characters long; AWS IAM Identity Center takes at most {max}",
        Check::EmailAddress { .. } => "{attribute} \"{value}\" is not an email address",
        other => return format!("{} found a problem", other.kind()),
    };
    text.to_owned()
}

/// The pseudo body an operation's value stands for, and the keys that wrap the value in
/// it (none for a path-less object value). `None` when the operation has no value to
/// check: not add/replace, a value-filter path, or a value that is not an object in a
/// path-less operation.
fn pseudo_body(op: &Map<String, Value>) -> Option<(Value, Vec<String>)> {
    let value = op.get("value").filter(|v| !v.is_null())?;
    if !has_path(op) {
        return value.is_object().then(|| (value.clone(), Vec::new()));
    }
    let (_, Ok(PatchPath::Attr(attr))) = parsed_path(op)? else {
        return None;
    };
    let mut keys = Vec::new();
    if let Some(urn) = extension_urn(&attr) {
        keys.push(urn.to_owned());
    }
    keys.push(attr.name.clone());
    if let Some(sub) = &attr.sub_attr {
        keys.push(sub.clone());
    }
    let body = keys.iter().rev().fold(value.clone(), |inner, key| {
        let mut map = Map::new();
        map.insert(key.clone(), inner);
        Value::Object(map)
    });
    Some((body, keys))
}

/// The value back out of a pseudo body; `None` when a check removed it.
fn unwrap_pseudo(body: Value, keys: &[String]) -> Option<Value> {
    let mut value = body;
    for key in keys {
        let Value::Object(mut map) = value else {
            return None;
        };
        value = map.remove(key)?;
    }
    match value {
        Value::Object(map) if keys.is_empty() && map.is_empty() => None,
        other => Some(other),
    }
}

pub(crate) fn values(
    r: &Reporter<'_>,
    checks: &[Check],
    request: &RequestView<'_>,
    state: &mut State,
) {
    let Some(count) = operations(state).map(Vec::len) else {
        return;
    };
    let mut removed = Vec::new();
    for i in 0..count {
        let Some(item) = operations(state).and_then(|ops| ops.get(i)) else {
            break;
        };
        if !matches!(op_kind(item), Some(PatchOpKind::Add | PatchOpKind::Replace)) {
            continue;
        }
        let Some((body, keys)) = item.as_object().and_then(pseudo_body) else {
            continue;
        };
        let mut inner = State::new(Body::Json(body));
        for check in checks {
            let rule = Rule {
                check: check.clone(),
                message: inner_message(check),
                ..r.rule.clone()
            };
            let reporter = Reporter { rule: &rule };
            run_check(check, &reporter, request, &mut inner);
        }
        if inner.findings.is_empty() {
            continue;
        }
        let prefix: String = keys
            .iter()
            .map(|k| format!("/{}", pointer_token(k)))
            .collect();
        if inner.changed {
            let Body::Json(body) = std::mem::replace(&mut inner.body, Body::Empty) else {
                continue;
            };
            let op = operations_mut(state)
                .and_then(|ops| ops.get_mut(i))
                .and_then(Value::as_object_mut);
            match (unwrap_pseudo(body, &keys), op) {
                (Some(value), Some(op)) => {
                    op.insert("value".into(), value);
                }
                (None, Some(_)) => removed.push(i),
                _ => {}
            }
        }
        for finding in inner.findings {
            push_inner(r, state, i, &prefix, finding);
        }
    }
    remove_operations(state, &removed);
}

/// Reports an inner check's finding as the outer rule's, with its location moved into
/// the operation's value.
fn push_inner(r: &Reporter<'_>, state: &mut State, i: usize, prefix: &str, finding: Finding) {
    let within = match finding.location.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => "",
    };
    let at = format!("/{OPERATIONS}/{i}/value{within}");
    let vars = [("detail", finding.message)];
    match finding.fix {
        Some(fix) => r.fixed(state, at, &vars, fix.before, fix.after),
        // Under rewrite, a finding the inner check could not fix makes the request fail.
        None if r.rewrites() => r.unfixable(state, at, &vars),
        None => r.report(state, at, &vars),
    }
}
