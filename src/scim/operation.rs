//! Which SCIM operation a request is: `(method, path) → Operation`.
//!
//! The resource segment (`Users`, `Groups`, …) is found after any prefix, so the same
//! code serves AWS's `/{tenant}/scim/v2/Users/{id}`, a bare `/scim/v2/Users` and
//! `/Users`. Resource names match case-insensitively, a trailing slash is tolerated,
//! ids are percent-decoded, and `Schemas/{urn}` keeps the URN's colons.

use std::fmt::{self, Display, Formatter};

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case};
use nom::combinator::{all_consuming, value};
use nom::Parser;
use serde::Serialize;

use crate::scim::percent::percent_decode;

/// Every operation scimguard tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Operation {
    // The 15 operations of the AWS IAM Identity Center SCIM guide.
    CreateUser,
    GetUser,
    ListUsers,
    PutUser,
    PatchUser,
    DeleteUser,
    CreateGroup,
    GetGroup,
    ListGroups,
    PatchGroup,
    DeleteGroup,
    GetSchema,
    ListSchemas,
    ListResourceTypes,
    ServiceProviderConfig,
    // RFC 7644 operations that AWS lacks but clients send.
    /// `PUT /Groups/{id}`.
    PutGroup,
    /// `POST /Bulk` (RFC 7644 §3.7).
    Bulk,
    /// Any method on `/Me` (RFC 7644 §3.11).
    Me,
    /// `POST …/.search` (RFC 7644 §3.4.3), at the root or under a resource type.
    Search,
    /// `GET /ResourceTypes/{name}`.
    GetResourceType,
    /// Anything else: an unknown path, a method the path does not take, or an id that
    /// does not percent-decode to UTF-8.
    Unknown,
}

impl Operation {
    /// All operations, AWS's 15 first.
    pub const ALL: [Operation; 21] = [
        Operation::CreateUser,
        Operation::GetUser,
        Operation::ListUsers,
        Operation::PutUser,
        Operation::PatchUser,
        Operation::DeleteUser,
        Operation::CreateGroup,
        Operation::GetGroup,
        Operation::ListGroups,
        Operation::PatchGroup,
        Operation::DeleteGroup,
        Operation::GetSchema,
        Operation::ListSchemas,
        Operation::ListResourceTypes,
        Operation::ServiceProviderConfig,
        Operation::PutGroup,
        Operation::Bulk,
        Operation::Me,
        Operation::Search,
        Operation::GetResourceType,
        Operation::Unknown,
    ];

    /// The name as the AWS guide writes it (`CreateUser`).
    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateUser => "CreateUser",
            Operation::GetUser => "GetUser",
            Operation::ListUsers => "ListUsers",
            Operation::PutUser => "PutUser",
            Operation::PatchUser => "PatchUser",
            Operation::DeleteUser => "DeleteUser",
            Operation::CreateGroup => "CreateGroup",
            Operation::GetGroup => "GetGroup",
            Operation::ListGroups => "ListGroups",
            Operation::PatchGroup => "PatchGroup",
            Operation::DeleteGroup => "DeleteGroup",
            Operation::GetSchema => "GetSchema",
            Operation::ListSchemas => "ListSchemas",
            Operation::ListResourceTypes => "ListResourceTypes",
            Operation::ServiceProviderConfig => "ServiceProviderConfig",
            Operation::PutGroup => "PutGroup",
            Operation::Bulk => "Bulk",
            Operation::Me => "Me",
            Operation::Search => "Search",
            Operation::GetResourceType => "GetResourceType",
            Operation::Unknown => "Unknown",
        }
    }

    /// The operation named `name` (as [`Operation::name`] spells it, in any case), e.g.
    /// from a rules file.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL
            .into_iter()
            .find(|op| op.name().eq_ignore_ascii_case(name))
    }

    /// Whether AWS IAM Identity Center implements it (the guide's 15).
    pub fn is_supported_by_aws(self) -> bool {
        Operation::ALL[..15].contains(&self)
    }
}

impl Display for Operation {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A classified request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classified {
    pub operation: Operation,
    /// The percent-decoded segment after the resource type: a user or group id, a
    /// schema URN, a resource type name. `None` for collection and singleton paths.
    pub id: Option<String>,
    /// The raw path before the resource segment, without its trailing `/`:
    /// `/t-123/scim/v2` for `/t-123/scim/v2/Users/abc`, empty for `/Users`. For a path
    /// with no SCIM resource segment, the whole path.
    pub prefix: String,
}

impl Classified {
    /// The segment before `/scim/v2` in the prefix (AWS's tenant id, which throttling
    /// keys on), if there is one: `t-123` for `/t-123/scim/v2/Users`.
    pub fn tenant(&self) -> Option<&str> {
        // Two segments of look-behind instead of collecting the segments: this runs on
        // every request.
        let (mut before, mut previous) = (None, None);
        for segment in segments(&self.prefix) {
            if previous.is_some_and(|p| is_scim_v2(p, segment)) {
                return before.filter(|s: &&str| !s.is_empty());
            }
            (before, previous) = (previous, Some(segment));
        }
        None
    }
}

/// The `/`-separated segments of a path (the first is empty for an absolute path).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
}

fn is_scim_v2(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case("scim") && b.eq_ignore_ascii_case("v2")
}

/// The resource types of RFC 7644 §3.2's endpoint table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Users,
    Groups,
    Schemas,
    ResourceTypes,
    ServiceProviderConfig,
    Bulk,
    Me,
    Search,
}

/// One path segment naming a resource type, in any case. Resource names are ASCII, so
/// it parses bytes with ASCII case folding.
fn resource(segment: &str) -> Result<Endpoint, nom::Err<nom::error::Error<&[u8]>>> {
    let (_, endpoint) = all_consuming(alt((
        value(Endpoint::Users, tag_no_case(&b"Users"[..])),
        value(Endpoint::Groups, tag_no_case(&b"Groups"[..])),
        value(Endpoint::Schemas, tag_no_case(&b"Schemas"[..])),
        value(Endpoint::ResourceTypes, tag_no_case(&b"ResourceTypes"[..])),
        value(
            Endpoint::ServiceProviderConfig,
            tag_no_case(&b"ServiceProviderConfig"[..]),
        ),
        value(Endpoint::Bulk, tag_no_case(&b"Bulk"[..])),
        value(Endpoint::Me, tag_no_case(&b"Me"[..])),
        value(Endpoint::Search, tag(&b".search"[..])),
    )))
    .parse(segment.as_bytes())?;
    Ok(endpoint)
}

/// Classifies a request by method and path.
///
/// `path` is the request target's path; a query string or fragment, if present, is
/// ignored. Methods compare case-insensitively.
pub fn classify(method: &str, path: &str) -> Classified {
    let path = memchr::memchr2(b'?', b'#', path.as_bytes()).map_or(path, |end| &path[..end]);
    let unknown = |prefix: &str| Classified {
        operation: Operation::Unknown,
        id: None,
        prefix: prefix.trim_end_matches('/').to_owned(),
    };
    let segs: Vec<&str> = segments(path).collect();
    // The resource is the segment after `scim/v2` when there is one (so a tenant id
    // that happens to read `Users` cannot confuse us), else the first resource name.
    let after_scim_v2 = segs
        .windows(2)
        .position(|w| is_scim_v2(w[0], w[1]))
        .map(|i| i + 2);
    let index = match after_scim_v2 {
        Some(i) => (i < segs.len() && resource(segs[i]).is_ok()).then_some(i),
        None => segs.iter().position(|s| resource(s).is_ok()),
    };
    let Some(index) = index else {
        return unknown(path);
    };
    let Ok(kind) = resource(segs[index]) else {
        return unknown(path);
    };
    // Byte length of the segments before the resource, each followed by its `/`.
    let prefix_len: usize = segs[..index].iter().map(|s| s.len() + 1).sum();
    let prefix = path[..prefix_len].trim_end_matches('/').to_owned();
    let mut rest = &segs[index + 1..];
    if rest.last() == Some(&"") {
        // One trailing slash: `/Users/` is `/Users`.
        rest = &rest[..rest.len() - 1];
    }
    let id = match rest {
        [] => None,
        [id] if !id.is_empty() => match percent_decode(id, false) {
            Ok(id) => Some(id.into_owned()),
            Err(_) => return unknown(path),
        },
        _ => return unknown(path),
    };
    let operation = operation(method, kind, id.as_deref());
    if operation == Operation::Unknown {
        return unknown(path);
    }
    // `.search` under a resource type is not an id.
    let id = if operation == Operation::Search {
        None
    } else {
        id
    };
    Classified {
        operation,
        id,
        prefix,
    }
}

fn operation(method: &str, resource: Endpoint, id: Option<&str>) -> Operation {
    use Operation as Op;
    let m = |name: &str| method.eq_ignore_ascii_case(name);
    let search = id == Some(".search");
    match (resource, id) {
        (Endpoint::Users | Endpoint::Groups, Some(_)) if search => {
            if m("POST") {
                Op::Search
            } else {
                Op::Unknown
            }
        }
        (Endpoint::Users, None) if m("GET") => Op::ListUsers,
        (Endpoint::Users, None) if m("POST") => Op::CreateUser,
        (Endpoint::Users, Some(_)) if m("GET") => Op::GetUser,
        (Endpoint::Users, Some(_)) if m("PUT") => Op::PutUser,
        (Endpoint::Users, Some(_)) if m("PATCH") => Op::PatchUser,
        (Endpoint::Users, Some(_)) if m("DELETE") => Op::DeleteUser,
        (Endpoint::Groups, None) if m("GET") => Op::ListGroups,
        (Endpoint::Groups, None) if m("POST") => Op::CreateGroup,
        (Endpoint::Groups, Some(_)) if m("GET") => Op::GetGroup,
        (Endpoint::Groups, Some(_)) if m("PUT") => Op::PutGroup,
        (Endpoint::Groups, Some(_)) if m("PATCH") => Op::PatchGroup,
        (Endpoint::Groups, Some(_)) if m("DELETE") => Op::DeleteGroup,
        (Endpoint::Schemas, None) if m("GET") => Op::ListSchemas,
        (Endpoint::Schemas, Some(_)) if m("GET") => Op::GetSchema,
        (Endpoint::ResourceTypes, None) if m("GET") => Op::ListResourceTypes,
        (Endpoint::ResourceTypes, Some(_)) if m("GET") => Op::GetResourceType,
        (Endpoint::ServiceProviderConfig, None) if m("GET") => Op::ServiceProviderConfig,
        (Endpoint::Bulk, None) if m("POST") => Op::Bulk,
        (Endpoint::Me, None) => Op::Me,
        (Endpoint::Search, None) if m("POST") => Op::Search,
        _ => Op::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation as Op;

    proptest::proptest! {
        /// The memchr splitter must cut exactly where `str::split('/')` does, on any
        /// text, multi-byte characters and empty segments included.
        #[test]
        fn segments_match_str_split(path in "[/a-zA-Zé?#%.0-9]{0,24}") {
            let ours: Vec<&str> = segments(&path).collect();
            let std: Vec<&str> = path.split('/').collect();
            proptest::prop_assert_eq!(ours, std);
        }
    }

    const AWS: &str = "/d-9067642ac7/scim/v2";

    #[test]
    fn aws_guide_requests_classify() {
        // Every request line of the AWS guide, with `{tenant_id}` filled in.
        let cases: &[(&str, &str, Op, Option<&str>)] = &[
            ("POST", "/Groups", Op::CreateGroup, None),
            ("POST", "/Users", Op::CreateUser, None),
            (
                "DELETE",
                "/Groups/9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d",
                Op::DeleteGroup,
                Some("9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d"),
            ),
            (
                "DELETE",
                "/Users/9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734",
                Op::DeleteUser,
                Some("9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734"),
            ),
            (
                "GET",
                "/Groups/9067729b3d-a2cfc8a5-f4ab-4443-9d7d-b32a9013c554",
                Op::GetGroup,
                Some("9067729b3d-a2cfc8a5-f4ab-4443-9d7d-b32a9013c554"),
            ),
            (
                "GET",
                "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
                Op::GetSchema,
                Some("urn:ietf:params:scim:schemas:core:2.0:User"),
            ),
            (
                "GET",
                "/Users/9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734",
                Op::GetUser,
                Some("9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734"),
            ),
            ("GET", "/Groups", Op::ListGroups, None),
            (
                "GET",
                "/Groups?filter=displayName%20eq%20%22Group%20Bar%22",
                Op::ListGroups,
                None,
            ),
            ("GET", "/ResourceTypes", Op::ListResourceTypes, None),
            ("GET", "/Schemas", Op::ListSchemas, None),
            ("GET", "/Users", Op::ListUsers, None),
            (
                "GET",
                "/Users?filter=userName%20eq%20%22jdoe%22",
                Op::ListUsers,
                None,
            ),
            (
                "PATCH",
                "/Groups/9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d",
                Op::PatchGroup,
                Some("9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d"),
            ),
            (
                "PATCH",
                "/Users/9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074",
                Op::PatchUser,
                Some("9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074"),
            ),
            (
                "PUT",
                "/Users/9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074",
                Op::PutUser,
                Some("9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074"),
            ),
            (
                "GET",
                "/ServiceProviderConfig",
                Op::ServiceProviderConfig,
                None,
            ),
        ];
        for (method, path, op, id) in cases {
            let full = format!("{AWS}{path}");
            let c = classify(method, &full);
            assert_eq!(
                (c.operation, c.id.as_deref()),
                (*op, *id),
                "{method} {full}"
            );
            assert_eq!(c.prefix, AWS, "{full}");
            assert_eq!(c.tenant(), Some("d-9067642ac7"), "{full}");
        }
    }

    #[test]
    fn operations_aws_lacks_classify() {
        let cases: &[(&str, &str, Op, Option<&str>)] = &[
            ("PUT", "/scim/v2/Groups/g1", Op::PutGroup, Some("g1")),
            ("POST", "/scim/v2/Bulk", Op::Bulk, None),
            ("GET", "/scim/v2/Me", Op::Me, None),
            ("PATCH", "/Me", Op::Me, None),
            ("POST", "/scim/v2/.search", Op::Search, None),
            ("POST", "/scim/v2/Users/.search", Op::Search, None),
            ("POST", "/Groups/.search/", Op::Search, None),
            (
                "GET",
                "/scim/v2/ResourceTypes/User",
                Op::GetResourceType,
                Some("User"),
            ),
        ];
        for (method, path, op, id) in cases {
            let c = classify(method, path);
            assert_eq!(
                (c.operation, c.id.as_deref()),
                (*op, *id),
                "{method} {path}"
            );
            assert!(!c.operation.is_supported_by_aws());
        }
    }

    #[test]
    fn prefixes_case_slashes_and_encoding() {
        let c = classify("GET", "/t-123/scim/v2/Users/abc");
        assert_eq!(c.prefix, "/t-123/scim/v2");
        assert_eq!(c.tenant(), Some("t-123"));
        let c = classify("GET", "/scim/v2/Users");
        assert_eq!(
            (c.operation, c.prefix.as_str(), c.tenant()),
            (Op::ListUsers, "/scim/v2", None)
        );
        let c = classify("GET", "/Users");
        assert_eq!(
            (c.operation, c.prefix.as_str(), c.tenant()),
            (Op::ListUsers, "", None)
        );
        let c = classify("get", "/T/SCIM/V2/users/");
        assert_eq!((c.operation, c.tenant()), (Op::ListUsers, Some("T")));
        let c = classify("GET", "/scim/v2/Users/abc/");
        assert_eq!((c.operation, c.id.as_deref()), (Op::GetUser, Some("abc")));
        let c = classify("GET", "/scim/v2/Users/a%20b%2Fc+d%C3%A9");
        assert_eq!(c.id.as_deref(), Some("a b/c+dé"));
        let c = classify(
            "GET",
            "/scim/v2/Schemas/urn%3Aietf%3Aparams%3Ascim%3Aschemas%3Acore%3A2.0%3AGroup",
        );
        assert_eq!(
            c.id.as_deref(),
            Some("urn:ietf:params:scim:schemas:core:2.0:Group")
        );
        // A tenant id that reads like a resource does not fool the `scim/v2` anchor.
        let c = classify("GET", "/Users/scim/v2/Groups/g");
        assert_eq!(
            (c.operation, c.tenant(), c.id.as_deref()),
            (Op::GetGroup, Some("Users"), Some("g"))
        );
        // Other prefixes: an API gateway stage, a version without `scim/`.
        let c = classify("DELETE", "/prod/v2/Groups/g");
        assert_eq!(
            (c.operation, c.prefix.as_str(), c.tenant()),
            (Op::DeleteGroup, "/prod/v2", None)
        );
    }

    #[test]
    fn everything_else_is_unknown() {
        let cases: &[(&str, &str)] = &[
            ("GET", "/"),
            ("GET", ""),
            ("GET", "/scim/v2"),
            ("GET", "/scim/v2/Widgets"),
            ("GET", "/scim/v2/Foo/Users"),
            ("PUT", "/scim/v2/Users"),
            ("DELETE", "/scim/v2/Groups"),
            ("POST", "/scim/v2/Users/abc"),
            ("GET", "/scim/v2/Users/abc/extra"),
            ("GET", "/scim/v2/Users//"),
            ("GET", "/scim/v2/Users/.search"),
            ("PATCH", "/scim/v2/Schemas/x"),
            ("GET", "/scim/v2/Bulk"),
            ("POST", "/scim/v2/ServiceProviderConfig"),
            ("GET", "/scim/v2/ServiceProviderConfig/x"),
            ("GET", "/scim/v2/Users/%FF"),
            ("GET", "/scim/v2/Users/%zz"),
            ("HEAD", "/scim/v2/Users"),
            ("GET", "/scim/v2/.SEARCH"),
        ];
        for (method, path) in cases {
            let c = classify(method, path);
            assert_eq!((c.operation, c.id), (Op::Unknown, None), "{method} {path}");
        }
        assert_eq!(classify("GET", "/t/scim/v2/Widgets").tenant(), Some("t"));
    }

    #[test]
    fn names_and_support() {
        assert_eq!(
            Op::ALL.iter().filter(|o| o.is_supported_by_aws()).count(),
            15
        );
        assert_eq!(
            Op::ServiceProviderConfig.to_string(),
            "ServiceProviderConfig"
        );
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(op));
        }
        assert_eq!(Op::from_name("patchuser"), Some(Op::PatchUser));
        assert_eq!(Op::from_name("Patch"), None);
        assert_eq!(serde_json::to_value(Op::PatchUser).unwrap(), "PatchUser");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::scim::filter::tests::config(256))]

            #[test]
            fn never_panics_and_prefix_is_a_path_prefix(method in "[A-Za-z]{0,7}", path in "\\PC{0,40}") {
                let c = classify(&method, &path);
                prop_assert!(path.starts_with(&c.prefix) || c.prefix.is_empty());
            }

            #[test]
            fn any_id_round_trips_through_percent_encoding(id in "\\PC{1,20}") {
                let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
                let c = classify("GET", &format!("/t/scim/v2/Users/{encoded}"));
                prop_assert_eq!(c.operation, Op::GetUser);
                prop_assert_eq!(c.id, Some(id));
            }
        }
    }
}
