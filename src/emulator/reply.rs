//! What an emulated operation answers: a JSON body, 204, or an error in AWS's words.

use std::borrow::Cow;

use http::StatusCode;
use serde::Serialize;

use crate::rules::AWS_GENERIC_DETAIL;
use crate::scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::scim::Query;

/// A successful answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Json {
        status: StatusCode,
        body: Vec<u8>,
    },
    /// 204, as DeleteUser, DeleteGroup and PatchGroup answer.
    NoContent,
}

impl Reply {
    pub fn json(status: StatusCode, value: &impl Serialize) -> Reply {
        // The emulator's resources are strings, booleans and lists: never fails.
        let body = serde_json::to_vec(value).unwrap_or_default();
        Reply::Json { status, body }
    }

    pub fn ok(value: &impl Serialize) -> Reply {
        Reply::json(StatusCode::OK, value)
    }
}

/// A reply, and whether the store changed (so the state file must be written).
#[derive(Debug)]
pub(crate) struct Outcome {
    pub reply: Reply,
    pub changed: bool,
}

impl Outcome {
    pub fn changed(reply: Reply) -> Outcome {
        Outcome {
            reply,
            changed: true,
        }
    }
}

/// `detail` of a 404 for a user id (GetUser, PutUser, PatchUser, DeleteUser, and a
/// member id that names no user).
pub(crate) const USER_NOT_FOUND: &str = "User not found.";
/// `detail` of a 404 for a group id.
pub(crate) const GROUP_NOT_FOUND: &str = "Group not found.";
/// `detail` of a 404 for a schema URN that is not one of the three.
pub(crate) const SCHEMA_NOT_FOUND: &str = "Schema not found.";
/// `detail` of a 404 for a tenant path that names no tenant (observed from AWS, 2022).
pub(crate) const TENANT_NOT_FOUND: &str = "TENANT does not exist.";
/// `detail` of a 404 for a path under the tenant that is no SCIM endpoint.
pub(crate) const ENDPOINT_NOT_FOUND: &str = "Specified endpoint does not exist.";

/// An error answer: AWS's status and `detail`. The request id and time stamp are added
/// when the response is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub detail: Cow<'static, str>,
}

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            status,
            detail: detail.into(),
        }
    }

    /// ValidationException with AWS's generic, opaque detail.
    pub fn invalid() -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, AWS_GENERIC_DETAIL)
    }

    /// ValidationException with a specific detail AWS is known to send.
    pub fn invalid_because(detail: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }

    /// UnauthorizedException: a missing or wrong token on a known tenant.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Authorization header is invalid or missing.",
        )
    }

    /// ResourceNotFoundException.
    pub fn not_found(detail: &'static str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }

    /// ConflictException: a userName or group displayName already taken.
    pub fn conflict() -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "Refused to create a new, duplicate resource.",
        )
    }

    /// A body over AWS's maxPayloadSize.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request payload exceeds the maximum size of {limit} bytes."),
        )
    }

    /// ThrottlingException (ServiceProviderConfig › Errors' wording).
    pub fn throttled() -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests were made that exceed the limits.",
        )
    }

    /// InternalServerException.
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Service failed to process the request.",
        )
    }
}

/// `meta` as AWS returns it: no `location`, no `version`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    pub resource_type: &'static str,
    pub created: String,
    pub last_modified: String,
}

impl Meta {
    pub fn new(resource_type: &'static str, created: u64, last_modified: u64) -> Meta {
        Meta {
            resource_type,
            created: super::ids::rfc3339(created),
            last_modified: super::ids::rfc3339(last_modified),
        }
    }
}

/// `urn:ietf:params:scim:api:messages:2.0:ListResponse`.
pub(crate) const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A list request's filter, parsed; `None` without one. A filter that does not parse
/// is a ValidationException (the rules refuse it first).
pub(crate) fn list_filter(query: &Query) -> Result<Option<Filter>, ApiError> {
    query
        .parsed_filter()
        .transpose()
        .map_err(|_| ApiError::invalid())
}

/// One `attribute eq "value"` of a list filter. `key` is the attribute in lower case,
/// with its sub-attribute (`members.value`) and without a schema URN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EqTerm<'f> {
    pub key: String,
    pub value: &'f str,
}

/// The terms of a list filter, which AWS allows only as `eq` comparisons with strings
/// joined by `and` (`members[value eq "…"]` counts as `members.value eq "…"`). Anything
/// else is a ValidationException: the rules refuse it first, this only keeps the
/// emulator from guessing.
pub(crate) fn eq_terms(filter: &Filter) -> Result<Vec<EqTerm<'_>>, ApiError> {
    let mut out = Vec::new();
    collect_terms(filter, None, &mut out)?;
    Ok(out)
}

fn collect_terms<'f>(
    filter: &'f Filter,
    parent: Option<&'f AttrPath>,
    out: &mut Vec<EqTerm<'f>>,
) -> Result<(), ApiError> {
    match filter {
        Filter::Compare {
            attr,
            op: CompareOp::Eq,
            value: CompValue::String(value),
        } => {
            let key = match (parent, &attr.sub_attr) {
                (Some(p), None) => format!("{}.{}", p.name, attr.name),
                (None, Some(sub)) => format!("{}.{sub}", attr.name),
                (None, None) => attr.name.clone(),
                (Some(_), Some(_)) => return Err(ApiError::invalid()),
            };
            out.push(EqTerm {
                key: key.to_ascii_lowercase(),
                value,
            });
            Ok(())
        }
        Filter::And(items) => items
            .iter()
            .try_for_each(|item| collect_terms(item, parent, out)),
        Filter::ValuePath { attr, filter } if parent.is_none() && attr.sub_attr.is_none() => {
            collect_terms(filter, Some(attr), out)
        }
        _ => Err(ApiError::invalid()),
    }
}

/// Equality ignoring case, Unicode-aware, without allocating: how AWS compares
/// userName and displayName (`caseExact: false`).
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::parse_filter;

    #[test]
    fn filters_become_eq_terms() {
        let f = parse_filter(r#"id eq "g1" and members[value eq "u1"]"#).unwrap();
        let terms = eq_terms(&f).unwrap();
        assert_eq!(
            terms,
            [
                EqTerm {
                    key: "id".into(),
                    value: "g1"
                },
                EqTerm {
                    key: "members.value".into(),
                    value: "u1"
                }
            ]
        );
        let f = parse_filter(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m""#,
        )
        .unwrap();
        assert_eq!(eq_terms(&f).unwrap()[0].key, "manager.value");
        for bad in [
            r#"userName ne "a""#,
            r#"userName eq "a" or userName eq "b""#,
            "active eq true",
            "userName pr",
            r#"not (userName eq "a")"#,
        ] {
            let f = parse_filter(bad).unwrap();
            assert_eq!(eq_terms(&f), Err(ApiError::invalid()), "{bad}");
        }
    }

    #[test]
    fn case_insensitive_equality_is_unicode_aware() {
        assert!(eq_ignore_case("BJensen", "bjensen"));
        assert!(eq_ignore_case("ÉLODIE", "élodie"));
        assert!(!eq_ignore_case("bjensen", "bjensen2"));
    }
}
