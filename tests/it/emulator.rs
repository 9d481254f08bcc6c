//! The embedded AWS emulator over a real socket: every example request of the AWS guide
//! (`shared/spec/aws-identity-center-scim-developer-guide.txt`), in the guide's order,
//! with the status and the key fields of the body its example response shows.
//!
//! The guide's examples are snapshots of different stores, not one session: they refer
//! to users and groups no earlier example creates, delete resources later examples use,
//! and list users and groups no example creates. So the table interleaves `setup:`
//! steps that create what an example refers to, and every guide id in a path, body or
//! expectation stands for the id the emulator returned for it (`binds`). Where the
//! guide's PDF-extracted JSON broke across pages, the bodies below are repaired.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use scimguard::emulator::{Emulator, EmulatorConfig, DEMO_TENANT};
use scimguard::server::{serve, ServerOptions};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::*;

const TOKEN: &str = "emulator-test-token";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

// The guide's ids.
/// bjensen (CreateUser, PatchUser, PutUser).
const U_BJENSEN: &str = "9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074";
/// johndoe (DeleteUser, GetUser), and every manager in the guide.
const U_JOHNDOE: &str = "9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734";
/// Group Bar as CreateGroup returns it (GetGroup).
const G_BAR: &str = "9067729b3d-a2cfc8a5-f4ab-4443-9d7d-b32a9013c554";
/// The group DeleteGroup deletes and PatchGroup's examples change.
const G_PATCHED: &str = "9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d";
/// PatchGroup › Add members.
const U_MEMBER_ADDED: &str = "906722b2be-ee23ed58-6e4e-4b2f-a94a-3ace8456a36c";
/// PatchGroup › Replace / Remove members.
const U_MEMBER_A: &str = "906722b2be-61c204e7-56d0-4dad-882d-f41911b31ccb";
const U_MEMBER_B: &str = "906722b2be-da1f7ef3-3e37-473e-95be-df2efaa2590d";
// ListGroups' groups.
const G_FOO: &str = "90677c608a-ef9cb2da-d480-422b-9901-451b1bf9e607";
const G_BETA: &str = "90677c608a-95aca21b-4bb7-4161-94cb-d885e2920414";
const G_OMEGA: &str = "90677c608a-00dbcb72-e0b2-49a0-86a2-c259369fc6a7";
const G_BAR_LISTED: &str = "90677c608a-10d47528-1e68-4730-910e-c8a102121f47";
const G_DELTA: &str = "90677c608a-6ba7b52f-67e5-4849-b64c-15464fe7893b";
const G_GAMMA: &str = "90677c608a-a9f17294-7931-41a5-9c00-6e7ace3c2c11";
// ListUsers' users.
const U_MJACK: &str = "90677c608a-7afcdc23-0bd4-4fb7-b2ff-10ccffdff447";
const U_DRUSS: &str = "90677c608a-787142a0-3f27-4cd3-afb6-8aed7ce87094";
const U_TZHANG: &str = "90677c608a-229f7eb1-c07d-4c21-a5fd-769bf2e8c5c9";
const U_JDOE: &str = "90677c608a-685d5bf3-efab-48c8-b3b1-648fc5c5d980";
const U_HMACK: &str = "90677c608a-9683e752-a6fd-4935-b6b8-3fe26a202f21";
/// hmack's manager in the guide (not hex: a typo there, kept as a plain string).
const M_HMACK: &str = "9067729b3d-ee533c18-538a-4cd3-a572-63fb863jd956";
/// Not in the guide: the stand-in member of the guide's CreateGroup.
const U_STANDIN: &str = "standin-member";

/// An expectation that the key is absent.
const ABSENT: &str = "<absent>";

// ---- the guide's request bodies ------------------------------------------------------

const CREATE_GROUP: &str = r#"{
  "externalId": "701984",
  "displayName": "Group Bar",
  "members": [
    {
      "value": "9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074",
      "$ref": "../Users/9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074",
      "type": "User"
    }
  ]
}"#;

/// CreateUser's request; PutUser's differs by `id` and `nickName`.
fn bjensen(put: bool) -> String {
    let id = if put {
        format!(r#""id": "{U_BJENSEN}","#)
    } else {
        String::new()
    };
    let nick = if put { "BabJ" } else { "Babs" };
    format!(
        r#"{{
  {id}
  "externalId": "701984",
  "userName": "bjensen",
  "name": {{
    "formatted": "Ms. Barbara J Jensen, III",
    "familyName": "Jensen",
    "givenName": "Barbara",
    "middleName": "Jane",
    "honorificPrefix": "Ms.",
    "honorificSuffix": "III"
  }},
  "displayName": "Babs Jensen",
  "nickName": "{nick}",
  "profileUrl": "https://login.example.com/bjensen",
  "emails": [
    {{
      "value": "bjensen@example.com",
      "type": "work",
      "primary": true
    }}
  ],
  "addresses": [
    {{
      "type": "work",
      "streetAddress": "100 Universal City Plaza",
      "locality": "Hollywood",
      "region": "CA",
      "postalCode": "91608",
      "country": "USA",
      "formatted": "100 Universal City Plaza Hollywood, CA 91608 USA",
      "primary": true
    }}
  ],
  "phoneNumbers": [
    {{
      "value": "555-555-5555",
      "type": "work"
    }}
  ],
  "userType": "Employee",
  "title": "Tour Guide",
  "preferredLanguage": "en-US",
  "locale": "en-US",
  "timezone": "America/Los_Angeles",
  "active": true,
  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {{
    "employeeNumber": "701984",
    "costCenter": "4130",
    "organization": "Universal Studios",
    "division": "Theme Park",
    "department": "Tour Operations",
    "manager": {{
      "value": "{U_JOHNDOE}",
      "$ref": "../Users/{U_JOHNDOE}"
    }}
  }}
}}"#
    )
}

const PATCH_GROUP_PATHLESS: &str = r#"{
  "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
  "Operations": [{
    "op": "replace",
    "value": {
      "id": "9067729b3d-07124c20-d960-4a47-93ff-460d76461f81",
      "displayName": "Group Foo New"
    }
  }]
}"#;

const PATCH_GROUP_ADD: &str = r#"{
  "schemas": [
    "urn:ietf:params:scim:api:messages:2.0:PatchOp"
  ],
  "Operations": [
    {
      "op": "add",
      "path": "members",
      "value": [
        {
          "value": "906722b2be-ee23ed58-6e4e-4b2f-a94a-3ace8456a36c"
        }
      ]
    }
  ]
}"#;

/// PatchGroup's replace and remove examples differ only in `op`.
fn patch_group_two_members(op: &str) -> String {
    format!(
        r#"{{
  "schemas": [
    "urn:ietf:params:scim:api:messages:2.0:PatchOp"
  ],
  "Operations": [
    {{
      "op": "{op}",
      "path": "members",
      "value": [
        {{
          "value": "{U_MEMBER_A}"
        }},
        {{
          "value": "{U_MEMBER_B}"
        }}
      ]
    }}
  ]
}}"#
    )
}

const PATCH_USER: &str = r#"{
  "schemas": [
    "urn:ietf:params:scim:api:messages:2.0:PatchOp"
  ],
  "Operations": [
    {
      "op": "replace",
      "path": "active",
      "value": "false"
    }
  ]
}"#;

// ---- setup bodies: the resources the guide's responses show ------------------------

/// A user as the guide's GetUser and ListUsers responses show them.
fn seed_user(
    external_id: &str,
    user_name: &str,
    name: Value,
    display_name: &str,
    nick_name: Option<&str>,
    email: &str,
    manager: Option<&str>,
) -> String {
    let mut user = json!({
        "externalId": external_id,
        "userName": user_name,
        "name": name,
        "displayName": display_name,
        "active": false,
        "emails": [{"value": email, "type": "work", "primary": true}],
    });
    if let Some(nick) = nick_name {
        user["nickName"] = json!(nick);
    }
    if let Some(manager) = manager {
        user[ENTERPRISE] = json!({"manager": {"value": manager}});
    }
    user.to_string()
}

fn mr(family: &str, given: &str, suffix: &str) -> Value {
    json!({"familyName": family, "givenName": given, "honorificPrefix": "Mr.", "honorificSuffix": suffix})
}

fn johndoe() -> String {
    seed_user(
        "1",
        "johndoe",
        json!({"familyName": "Doe", "givenName": "John"}),
        "John Doe",
        None,
        "johndoe@example.com",
        None,
    )
}

fn plain_user(user_name: &str) -> String {
    seed_user(
        &format!("ext-{user_name}"),
        user_name,
        json!({"familyName": "Member", "givenName": user_name}),
        user_name,
        None,
        &format!("{user_name}@example.com"),
        None,
    )
}

fn group(display_name: &str, external_id: Option<&str>) -> String {
    match external_id {
        Some(ext) => json!({"displayName": display_name, "externalId": ext}),
        None => json!({"displayName": display_name}),
    }
    .to_string()
}

fn add_members(ids: &[&str]) -> String {
    let members: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": members}],
    })
    .to_string()
}

// ---- the table -----------------------------------------------------------------------

/// One request: a guide example, or a setup or check step around them.
struct Step {
    /// `CreateUser › Example` for the guide's examples; `setup: …` / `check: …` else.
    what: String,
    method: &'static str,
    /// After `/{tenant_id}/scim/v2`, the query decoded as the guide writes it.
    path: String,
    body: Option<String>,
    status: u16,
    /// JSON pointer → expected JSON (or [`ABSENT`]). A `*` segment collects that place
    /// of every array element, compared as a set.
    expect: Vec<(&'static str, String)>,
    /// The guide ids the response's `id` stands for from here on.
    binds: Vec<&'static str>,
}

impl Step {
    fn new(what: impl Into<String>, method: &'static str, path: impl Into<String>) -> Step {
        Step {
            what: what.into(),
            method,
            path: path.into(),
            body: None,
            status: 200,
            expect: Vec::new(),
            binds: Vec::new(),
        }
    }

    fn guide(op: &str, method: &'static str, path: impl Into<String>) -> Step {
        Step::new(format!("{op} › Example"), method, path)
    }

    fn setup(what: &str, method: &'static str, path: impl Into<String>) -> Step {
        Step::new(format!("setup: {what}"), method, path)
    }

    fn check(what: &str, method: &'static str, path: impl Into<String>) -> Step {
        Step::new(format!("check: {what}"), method, path)
    }

    fn body(mut self, body: impl Into<String>) -> Step {
        self.body = Some(body.into());
        self
    }

    fn status(mut self, status: u16) -> Step {
        self.status = status;
        self
    }

    fn expect(mut self, pointer: &'static str, json: impl Into<String>) -> Step {
        self.expect.push((pointer, json.into()));
        self
    }

    fn binds(mut self, ids: &[&'static str]) -> Step {
        self.binds.extend_from_slice(ids);
        self
    }

    fn is_guide(&self) -> bool {
        self.what.ends_with("› Example")
    }
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `meta` and `schemas` of a user.
fn user_shape(step: Step, enterprise: bool) -> Step {
    let schemas = if enterprise {
        format!(r#"["urn:ietf:params:scim:schemas:core:2.0:User","{ENTERPRISE}"]"#)
    } else {
        r#"["urn:ietf:params:scim:schemas:core:2.0:User"]"#.to_owned()
    };
    step.expect("/meta/resourceType", r#""User""#)
        .expect("/schemas", schemas)
        .expect("/profileUrl", ABSENT)
}

fn group_shape(step: Step) -> Step {
    step.expect("/meta/resourceType", r#""Group""#).expect(
        "/schemas",
        r#"["urn:ietf:params:scim:schemas:core:2.0:Group"]"#,
    )
}

fn list_shape(step: Step, total: usize) -> Step {
    step.expect("/totalResults", total.to_string())
        .expect("/itemsPerPage", total.to_string())
        .expect("/startIndex", "1")
        .expect(
            "/schemas",
            r#"["urn:ietf:params:scim:api:messages:2.0:ListResponse"]"#,
        )
}

/// What CreateUser, PatchUser and PutUser return for bjensen (the guide's responses).
fn bjensen_shape(step: Step, nick: &str, active: bool) -> Step {
    user_shape(step, true)
        .expect("/id", quoted(U_BJENSEN))
        .expect("/externalId", r#""701984""#)
        .expect("/userName", r#""bjensen""#)
        .expect(
            "/name",
            r#"{"formatted":"Ms. Barbara J Jensen, III","familyName":"Jensen","givenName":"Barbara","middleName":"Jane","honorificPrefix":"Ms.","honorificSuffix":"III"}"#,
        )
        .expect("/displayName", r#""Babs Jensen""#)
        .expect("/nickName", quoted(nick))
        .expect("/title", r#""Tour Guide""#)
        .expect("/userType", r#""Employee""#)
        .expect("/preferredLanguage", r#""en-US""#)
        .expect("/locale", r#""en-US""#)
        .expect("/timezone", r#""America/Los_Angeles""#)
        .expect("/active", active.to_string())
        .expect(
            "/emails",
            r#"[{"value":"bjensen@example.com","type":"work","primary":true}]"#,
        )
        .expect(
            "/addresses",
            r#"[{"formatted":"100 Universal City Plaza Hollywood, CA 91608 USA","streetAddress":"100 Universal City Plaza","locality":"Hollywood","region":"CA","postalCode":"91608","country":"USA","type":"work","primary":true}]"#,
        )
        .expect("/phoneNumbers", r#"[{"value":"555-555-5555","type":"work"}]"#)
        .expect(
            "/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            format!(
                r#"{{"employeeNumber":"701984","costCenter":"4130","organization":"Universal Studios","division":"Theme Park","department":"Tour Operations","manager":{{"value":"{U_JOHNDOE}"}}}}"#
            ),
        )
}

/// Every example request of the guide, in order, with the setup around them.
fn table() -> Vec<Step> {
    let mut t = Vec::new();

    // CreateGroup adds bjensen before the guide's CreateUser creates her; AWS refuses a
    // member that is no user, so a stand-in takes her place here.
    t.push(
        Step::setup("the member CreateGroup adds", "POST", "/Users")
            .body(plain_user("standin"))
            .status(201)
            .binds(&[U_BJENSEN, U_STANDIN]),
    );
    t.push(group_shape(
        Step::guide("CreateGroup", "POST", "/Groups")
            .body(CREATE_GROUP)
            .status(201)
            .expect("/externalId", r#""701984""#)
            .expect("/displayName", r#""Group Bar""#)
            .expect("/members", ABSENT)
            .binds(&[G_BAR, G_BAR_LISTED]),
    ));
    t.push(bjensen_shape(
        Step::guide("CreateUser", "POST", "/Users")
            .body(bjensen(false))
            .status(201)
            .binds(&[U_BJENSEN]),
        "Babs",
        true,
    ));

    t.push(
        Step::setup("the group DeleteGroup deletes", "POST", "/Groups")
            .body(group("Group To Delete", None))
            .status(201)
            .binds(&[G_PATCHED]),
    );
    t.push(Step::guide("DeleteGroup", "DELETE", format!("/Groups/{G_PATCHED}")).status(204));

    t.push(
        Step::setup("the user DeleteUser deletes", "POST", "/Users")
            .body(johndoe())
            .status(201)
            .binds(&[U_JOHNDOE]),
    );
    t.push(Step::guide("DeleteUser", "DELETE", format!("/Users/{U_JOHNDOE}")).status(204));

    // GetGroup: no members, as in the example.
    t.push(group_shape(
        Step::guide("GetGroup", "GET", format!("/Groups/{G_BAR}"))
            .expect("/id", quoted(G_BAR))
            .expect("/displayName", r#""Group Bar""#)
            .expect("/members", ABSENT),
    ));

    t.push(
        Step::guide(
            "GetSchema",
            "GET",
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
        )
        .expect("/id", r#""urn:ietf:params:scim:schemas:core:2.0:User""#)
        .expect("/name", r#""User""#)
        .expect("/attributes/0/name", r#""userName""#)
        .expect("/attributes/0/required", "true")
        .expect("/attributes/0/caseExact", "false")
        .expect("/attributes/0/uniqueness", r#""server""#),
    );

    t.push(
        Step::setup(
            "the user GetUser gets (DeleteUser deleted the first)",
            "POST",
            "/Users",
        )
        .body(johndoe())
        .status(201)
        .binds(&[U_JOHNDOE]),
    );
    t.push(user_shape(
        Step::guide("GetUser", "GET", format!("/Users/{U_JOHNDOE}"))
            .expect("/id", quoted(U_JOHNDOE))
            .expect("/externalId", r#""1""#)
            .expect("/userName", r#""johndoe""#)
            .expect("/name", r#"{"familyName":"Doe","givenName":"John"}"#)
            .expect("/displayName", r#""John Doe""#)
            .expect("/active", "false")
            .expect(
                "/emails",
                r#"[{"value":"johndoe@example.com","type":"work","primary":true}]"#,
            ),
        false,
    ));

    // ListGroups and its filter examples show six groups (Group Bar exists already)
    // and a member of Group Gamma who is one of ListUsers' users. The guide's externalId
    // filter example asks for "705167" and answers Group Foo, whose externalId its
    // ListGroups example shows as "702135": Group Foo gets "705167" here.
    for (name, ext, id) in [
        ("Group Foo", Some("705167"), G_FOO),
        ("Group Beta", None, G_BETA),
        ("Group Omega", None, G_OMEGA),
        ("Group Delta", None, G_DELTA),
        ("Group Gamma", None, G_GAMMA),
    ] {
        t.push(
            Step::setup(&format!("ListGroups' {name}"), "POST", "/Groups")
                .body(group(name, ext))
                .status(201)
                .binds(&[id]),
        );
    }
    let users = [
        (
            "702135",
            "mjack",
            mr("Mark", "Jackson", "I"),
            "mjack",
            Some("Mark"),
            Some(U_JOHNDOE),
            U_MJACK,
        ),
        (
            "705167",
            "druss",
            mr("Daniel", "Russell", "I"),
            "danrussell",
            Some("Dan"),
            Some(U_JOHNDOE),
            U_DRUSS,
        ),
        (
            "2",
            "tzhang",
            json!({"familyName": "Terry", "givenName": "Zhang"}),
            "Terry Zhang",
            None,
            None,
            U_TZHANG,
        ),
        (
            "701985",
            "jdoe",
            mr("John", "Doe", "III"),
            "jdoe",
            Some("Johnny"),
            Some(U_JOHNDOE),
            U_JDOE,
        ),
        (
            "702138",
            "hmack",
            mr("Henry", "Mackenzie", "I"),
            "hmack",
            Some("Henry"),
            Some(M_HMACK),
            U_HMACK,
        ),
    ];
    for (ext, user_name, name, display, nick, manager, id) in users {
        let email = if user_name == "jdoe" {
            "johndoe@example.com".to_owned()
        } else {
            format!("{user_name}@example.com")
        };
        t.push(
            Step::setup(&format!("ListUsers' {user_name}"), "POST", "/Users")
                .body(seed_user(
                    ext, user_name, name, display, nick, &email, manager,
                ))
                .status(201)
                .binds(&[id]),
        );
    }
    t.push(
        Step::setup(
            "druss joins Group Gamma",
            "PATCH",
            format!("/Groups/{G_GAMMA}"),
        )
        .body(add_members(&[U_DRUSS]))
        .status(204),
    );

    t.push(list_shape(Step::guide("ListGroups", "GET", "/Groups"), 6)
        .expect(
            "/Resources/*/displayName",
            r#"["Group Foo","Group Beta","Group Omega","Group Bar","Group Delta","Group Gamma"]"#,
        )
        .expect("/Resources/*/members", "[[],[],[],[],[],[]]")
        .expect("/Resources/*/meta/resourceType", r#"["Group","Group","Group","Group","Group","Group"]"#));
    t.push(
        list_shape(
            Step::guide(
                "ListGroups › Filter displayName",
                "GET",
                r#"/Groups?filter=displayName eq "Group Bar""#,
            ),
            1,
        )
        .expect("/Resources/0/id", quoted(G_BAR_LISTED))
        .expect("/Resources/0/displayName", r#""Group Bar""#)
        .expect("/Resources/0/members", "[]"),
    );
    t.push(
        list_shape(
            Step::guide(
                "ListGroups › Filter externalId",
                "GET",
                r#"/Groups?filter=externalId eq "705167""#,
            ),
            1,
        )
        .expect("/Resources/0/id", quoted(G_FOO))
        .expect("/Resources/0/displayName", r#""Group Foo""#)
        .expect("/Resources/0/members", "[]"),
    );
    t.push(
        list_shape(
            Step::guide(
                "ListGroups › Filter group id and members",
                "GET",
                format!(r#"/Groups?filter=id eq "{G_GAMMA}" and members eq "{U_DRUSS}""#),
            ),
            1,
        )
        .expect("/Resources/0/id", quoted(G_GAMMA))
        .expect("/Resources/0/displayName", r#""Group Gamma""#)
        .expect("/Resources/0/members", "[]"),
    );

    t.push(
        Step::guide("ListResourceTypes", "GET", "/ResourceTypes")
            .expect("/totalResults", "2")
            .expect("/Resources/*/id", r#"["User","Group"]"#)
            .expect("/Resources/0/endpoint", r#""/Users""#)
            .expect("/Resources/0/schemaExtensions/0/schema", quoted(ENTERPRISE))
            .expect(
                "/Resources/0/meta/location",
                r#""https://scim.us-east-1.amazonaws.com/{tenant_id}/scim/v2/ResourceTypes/User""#,
            )
            .expect(
                "/Resources/1/meta/location",
                r#""https://scim.us-east-1.amazonaws.com/{tenant_id}/scim/v2/ResourceTypes/Group""#,
            ),
    );
    t.push(
        Step::guide("ListSchemas", "GET", "/Schemas")
            .expect("/totalResults", "3")
            .expect("/itemsPerPage", "3")
            .expect(
                "/Resources/*/id",
                format!(
                    r#"["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:core:2.0:Group","{ENTERPRISE}"]"#
                ),
            )
            .expect(
                "/Resources/2/meta/location",
                format!(r#""/v2/Schemas/{ENTERPRISE}""#),
            ),
    );

    // ListUsers shows exactly its five users: the others leave first (bjensen comes
    // back for PatchUser).
    for (who, id) in [
        ("the stand-in", U_STANDIN),
        ("bjensen", U_BJENSEN),
        ("johndoe", U_JOHNDOE),
    ] {
        t.push(
            Step::setup(
                &format!("{who} leaves before ListUsers"),
                "DELETE",
                format!("/Users/{id}"),
            )
            .status(204),
        );
    }
    t.push(
        list_shape(Step::guide("ListUsers", "GET", "/Users"), 5)
            .expect(
                "/Resources/*/userName",
                r#"["mjack","druss","tzhang","jdoe","hmack"]"#,
            )
            .expect(
                "/Resources/*/externalId",
                r#"["702135","705167","2","701985","702138"]"#,
            ),
    );
    t.push(list_shape(
        Step::guide("ListUsers › Filter externalId", "GET", r#"/Users?filter=externalId eq "705167""#),
        1,
    )
    .expect("/Resources/0/id", quoted(U_DRUSS))
    .expect("/Resources/0/userName", r#""druss""#)
    .expect("/Resources/0/displayName", r#""danrussell""#)
    .expect("/Resources/0/name", r#"{"familyName":"Daniel","givenName":"Russell","honorificPrefix":"Mr.","honorificSuffix":"I"}"#)
    .expect(
        "/Resources/0/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        format!(r#"{{"manager":{{"value":"{U_JOHNDOE}"}}}}"#),
    ));
    t.push(
        list_shape(
            Step::guide(
                "ListUsers › Filter userName",
                "GET",
                r#"/Users?filter=userName eq "jdoe""#,
            ),
            1,
        )
        .expect("/Resources/0/id", quoted(U_JDOE))
        .expect("/Resources/0/nickName", r#""Johnny""#)
        .expect(
            "/Resources/0/emails",
            r#"[{"value":"johndoe@example.com","type":"work","primary":true}]"#,
        ),
    );
    t.push(
        list_shape(
            Step::guide(
                "ListUsers › Filter user id and manager",
                "GET",
                format!(r#"/Users?filter=id eq "{U_MJACK}" and manager eq "{U_JOHNDOE}""#),
            ),
            1,
        )
        .expect("/Resources/0/id", quoted(U_MJACK))
        .expect("/Resources/0/userName", r#""mjack""#)
        .expect("/Resources/0/active", "false"),
    );

    t.push(
        Step::setup(
            "the group PatchGroup changes (DeleteGroup deleted the first)",
            "POST",
            "/Groups",
        )
        .body(group("Group Foo Old", None))
        .status(201)
        .binds(&[G_PATCHED]),
    );
    t.push(
        Step::guide("PatchGroup", "PATCH", format!("/Groups/{G_PATCHED}"))
            .body(PATCH_GROUP_PATHLESS)
            .status(204),
    );
    t.push(
        Step::check(
            "the rename, and the foreign id ignored",
            "GET",
            format!("/Groups/{G_PATCHED}"),
        )
        .expect("/id", quoted(G_PATCHED))
        .expect("/displayName", r#""Group Foo New""#),
    );
    for (name, id) in [
        ("member.added", U_MEMBER_ADDED),
        ("member.a", U_MEMBER_A),
        ("member.b", U_MEMBER_B),
    ] {
        t.push(
            Step::setup(&format!("PatchGroup's member {name}"), "POST", "/Users")
                .body(plain_user(name))
                .status(201)
                .binds(&[id]),
        );
    }
    t.push(
        Step::guide(
            "PatchGroup › Add members",
            "PATCH",
            format!("/Groups/{G_PATCHED}"),
        )
        .body(PATCH_GROUP_ADD)
        .status(204),
    );
    let member_of =
        |user: &str| format!(r#"/Groups?filter=id eq "{G_PATCHED}" and members eq "{user}""#);
    t.push(
        Step::check("the member was added", "GET", member_of(U_MEMBER_ADDED))
            .expect("/totalResults", "1"),
    );
    // The guide shows 204; AWS answers 400 (observed), as the rules say.
    t.push(
        Step::guide(
            "PatchGroup › Replace members",
            "PATCH",
            format!("/Groups/{G_PATCHED}"),
        )
        .body(patch_group_two_members("replace"))
        .status(400)
        .expect(
            "/detail",
            r#""Replacing group memberships is not supported.""#,
        ),
    );
    t.push(
        Step::setup(
            "the two members the remove example removes",
            "PATCH",
            format!("/Groups/{G_PATCHED}"),
        )
        .body(add_members(&[U_MEMBER_A, U_MEMBER_B]))
        .status(204),
    );
    t.push(
        Step::check("they are members", "GET", member_of(U_MEMBER_B)).expect("/totalResults", "1"),
    );
    t.push(
        Step::guide(
            "PatchGroup › Remove members",
            "PATCH",
            format!("/Groups/{G_PATCHED}"),
        )
        .body(patch_group_two_members("remove"))
        .status(204),
    );
    t.push(
        Step::check(
            "they are gone",
            "GET",
            format!(r#"/Groups?filter=members eq "{U_MEMBER_A}""#),
        )
        .expect("/totalResults", "0"),
    );
    t.push(Step::check("they are gone", "GET", member_of(U_MEMBER_B)).expect("/totalResults", "0"));
    t.push(
        Step::check("the added member stays", "GET", member_of(U_MEMBER_ADDED))
            .expect("/totalResults", "1"),
    );

    t.push(
        Step::setup("bjensen again, as CreateUser made her", "POST", "/Users")
            .body(bjensen(false))
            .status(201)
            .binds(&[U_BJENSEN]),
    );
    // The guide's response shows nickName "Bas", a typo for the "Babs" it was created
    // with; nothing in the request changes it.
    t.push(bjensen_shape(
        Step::guide("PatchUser", "PATCH", format!("/Users/{U_BJENSEN}")).body(PATCH_USER),
        "Babs",
        false,
    ));
    // The guide's example response says 201, copied from CreateUser; a replace answers
    // 200, as AWS does.
    t.push(bjensen_shape(
        Step::guide("PutUser", "PUT", format!("/Users/{U_BJENSEN}")).body(bjensen(true)),
        "BabJ",
        true,
    ));

    t.push(
        Step::guide("ServiceProviderConfig", "GET", "/ServiceProviderConfig")
            .expect(
                "/schemas",
                r#"["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]"#,
            )
            .expect("/authenticationSchemes/0/type", r#""oauthbearertoken""#)
            .expect("/authenticationSchemes/0/primary", "true")
            .expect("/patch", r#"{"supported":true}"#)
            .expect(
                "/bulk",
                r#"{"supported":false,"maxOperations":1,"maxPayloadSize":1048576}"#,
            )
            .expect("/filter", r#"{"supported":true,"maxResults":50}"#)
            .expect("/changePassword/supported", "false")
            .expect("/sort/supported", "false")
            .expect("/etag/supported", "false"),
    );
    t
}

// ---- running it ----------------------------------------------------------------------

/// The emulator served on 127.0.0.1:0.
struct Served {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Served {
    async fn start(rate: u32) -> Served {
        let emulator = Emulator::new(EmulatorConfig {
            tenant: DEMO_TENANT.to_owned(),
            token: TOKEN.to_owned(),
            state_file: None,
            rate,
        })
        .expect("the emulator starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let options = ServerOptions {
            shutdown_timeout: Duration::from_secs(1),
            ..ServerOptions::default()
        };
        let task = tokio::spawn(serve(listener, emulator, options, async {
            let _ = stopped.await;
        }));
        Served {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, rest: &str) -> String {
        format!("http://{}/{DEMO_TENANT}/scim/v2{rest}", self.addr)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// Percent-encodes the query's values as a client sends them (`"` and spaces too).
fn encode_query(path: &str) -> String {
    let Some((path, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value: String = value
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            format!("{name}={value}")
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

fn substitute(text: &str, ids: &[(&'static str, String)]) -> String {
    let mut text = text.replace("{tenant_id}", DEMO_TENANT);
    for (guide, actual) in ids {
        text = text.replace(guide, actual);
    }
    text
}

/// The values at a pointer whose `*` segment stands for every element of an array.
fn collect(value: &Value, pointer: &str) -> Option<Vec<Value>> {
    let (before, after) = pointer.split_once("/*")?;
    let items = value.pointer(before)?.as_array()?;
    Some(
        items
            .iter()
            .map(|item| {
                if after.is_empty() {
                    item.clone()
                } else {
                    item.pointer(after).cloned().unwrap_or(Value::Null)
                }
            })
            .collect(),
    )
}

fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(|v| v.to_string());
    values
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.split('-').map(str::len).eq([8, 4, 4, 4, 12])
}

/// A user or group id as AWS makes them: 10 hex digits, `-`, a UUID.
fn is_aws_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(prefix, uuid)| {
        prefix.len() == 10 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) && is_uuid(uuid)
    })
}

#[tokio::test]
async fn every_example_of_the_guide_in_order() {
    let served = Served::start(0).await;
    let client = http_client();
    let table = table();
    assert_eq!(
        table.iter().filter(|s| s.is_guide()).count(),
        24,
        "the guide has 24 example requests"
    );
    let mut ids: Vec<(&'static str, String)> = Vec::new();
    for (n, step) in table.iter().enumerate() {
        let what = format!("step {n} ({}: {} {})", step.what, step.method, step.path);
        let path = encode_query(&substitute(&step.path, &ids));
        let body = step
            .body
            .as_deref()
            .map(|b| substitute(b, &ids))
            .unwrap_or_default();
        let mut request = Request::builder()
            .method(step.method)
            .uri(served.url(&path))
            .header("user-agent", "Mozilla/5.0")
            .header("authorization", format!("Bearer {TOKEN}"));
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body))).unwrap();
        let (status, headers, bytes, _) = send(&client, request).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(status.as_u16(), step.status, "{what}: {text}");
        assert_eq!(headers["content-type"], "application/json", "{what}");
        let request_id = headers["x-amzn-requestid"].to_str().unwrap();
        assert!(is_uuid(request_id), "{what}: {request_id}");
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
        };
        if status == StatusCode::NO_CONTENT {
            assert!(bytes.is_empty(), "{what}: {text}");
        }
        if status.is_client_error() {
            let (status_text, _) = scim_error(&bytes);
            assert_eq!(status_text, status.as_str(), "{what}");
            assert_eq!(json["exceptionRequestId"], request_id, "{what}");
        }
        if status == StatusCode::CREATED {
            let id = json["id"].as_str().unwrap_or_default();
            assert!(is_aws_id(id), "{what}: {id}");
            assert!(id.starts_with("9067a1b2c3-"), "{what}: {id}");
            let created = json["meta"]["created"].as_str().unwrap_or_default();
            assert_eq!(created.len(), "2020-03-31T02:36:15Z".len(), "{what}");
            assert!(created.ends_with('Z'), "{what}: {created}");
            assert_eq!(json["meta"]["lastModified"], created, "{what}");
        }
        // A new resource's id stands for its guide ids from here on, this step's
        // expectations included.
        for guide_id in &step.binds {
            let id = json["id"].as_str().unwrap_or_default().to_owned();
            ids.retain(|(g, _)| g != guide_id);
            ids.push((guide_id, id));
        }
        for (pointer, want) in &step.expect {
            let want = substitute(want, &ids);
            if want == ABSENT {
                assert!(
                    json.pointer(pointer).is_none(),
                    "{what}: {pointer} in {text}"
                );
                continue;
            }
            let want: Value = serde_json::from_str(&want)
                .unwrap_or_else(|e| panic!("{what}: expectation {pointer}: {e}"));
            match collect(&json, pointer) {
                Some(got) => {
                    let Value::Array(want) = want else {
                        panic!("{what}: {pointer} needs an array")
                    };
                    assert_eq!(sorted(got), sorted(want), "{what}: {pointer}");
                }
                None => assert_eq!(
                    json.pointer(pointer),
                    Some(&want),
                    "{what}: {pointer} in {text}"
                ),
            }
        }
    }
    served.stop().await;
}

#[tokio::test]
async fn bodies_over_1_mib_get_413_in_aws_shape() {
    let served = Served::start(0).await;
    let body = format!(r#"{{"userName":"{}"}}"#, "x".repeat(1_048_576));
    let request = Request::builder()
        .method("POST")
        .uri(served.url("/Users"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, headers, bytes, _) = send(&http_client(), request).await;
    assert_eq!(status, 413);
    let (status_text, _) = scim_error(&bytes);
    assert_eq!(status_text, "413");
    assert!(is_uuid(headers["x-amzn-requestid"].to_str().unwrap()));
    served.stop().await;
}

#[tokio::test]
async fn tenant_token_and_throttle_over_a_socket() {
    let served = Served::start(2).await;
    let client = http_client();
    let get = |url: String, token: &str| {
        Request::builder()
            .uri(url)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (status, ..) = send(&client, get(served.url("/Users"), TOKEN)).await;
    assert_eq!(status, 200);
    let wrong_tenant = format!("http://{}/d-0000000000/scim/v2/Users", served.addr);
    let (status, _, bytes, _) = send(&client, get(wrong_tenant, TOKEN)).await;
    assert_eq!(
        (status.as_u16(), scim_error(&bytes)),
        (404, ("404".to_owned(), "TENANT does not exist.".to_owned()))
    );
    // The burst of 2 is spent: the next answer is 429 with Retry-After.
    let (status, headers, bytes, _) = send(&client, get(served.url("/Users"), "wrong")).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        scim_error(&bytes).1,
        "Too many requests were made that exceed the limits."
    );
    served.stop().await;
}

// ---- the live guide (2025): cursor pages, member filters, op case, tenant --------------

/// One request with the emulator's token over the socket: status and JSON body.
async fn call(
    served: &Served,
    client: &Client,
    method: &str,
    rest: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(served.url(rest))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(
            body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
        ))
        .unwrap();
    let (status, _, bytes, _) = send(client, request).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status.as_u16(), json)
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn ids(page: &Value) -> Vec<String> {
    page["Resources"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The ids of every cursor page of `rest` (a list path with its query, without cursor),
/// page by page.
async fn cursor_pages(served: &Served, client: &Client, rest: &str) -> Vec<Vec<String>> {
    let join = if rest.contains('?') { '&' } else { '?' };
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = call(
            served,
            client,
            "GET",
            &format!("{rest}{join}cursor={cursor}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["itemsPerPage"], ids(&page).len(), "{page}");
        pages.push(ids(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return pages,
        }
        assert!(pages.len() < 100, "the walk does not end");
    }
}

async fn create_users(served: &Served, client: &Client, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (status, user) = call(
            served,
            client,
            "POST",
            "/Users",
            Some(serde_json::from_str(&plain_user(&format!("{prefix}{i:04}"))).unwrap()),
        )
        .await;
        assert_eq!(status, 201, "{user}");
        out.push(user["id"].as_str().unwrap().to_owned());
    }
    out
}

#[tokio::test]
async fn cursor_pages_of_100_walk_250_users_once() {
    let served = Served::start(0).await;
    let client = http_client();
    let mut all = create_users(&served, &client, "walker", 250).await;
    let pages = cursor_pages(&served, &client, "/Users").await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    let mut seen = pages.concat();
    seen.sort();
    all.sort();
    assert_eq!(seen, all, "each user exactly once");
    // Without cursor: the old format, 100 at most.
    let (_, page) = call(&served, &client, "GET", "/Users", None).await;
    assert_eq!(
        (page["totalResults"].as_u64(), ids(&page).len()),
        (Some(250), 100)
    );
    served.stop().await;
}

#[tokio::test]
async fn a_groups_members_via_groups_value_and_a_changed_filter_is_400() {
    let served = Served::start(0).await;
    let client = http_client();
    let mut members = create_users(&served, &client, "member", 120).await;
    let outsider = create_users(&served, &client, "outsider", 1).await;
    let (status, group) = call(
        &served,
        &client,
        "POST",
        "/Groups",
        Some(json!({"displayName": "Finance"})),
    )
    .await;
    assert_eq!(status, 201);
    let g = group["id"].as_str().unwrap().to_owned();
    for chunk in members.chunks(100) {
        let value: Vec<Value> = chunk.iter().map(|m| json!({"value": m})).collect();
        let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                         "Operations": [{"op": "Add", "path": "members", "value": value}]});
        let (status, body) = call(
            &served,
            &client,
            "PATCH",
            &format!("/Groups/{g}"),
            Some(add),
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
    let filter = format!("filter=groups.value%20eq%20%22{g}%22");
    let pages = cursor_pages(&served, &client, &format!("/Users?{filter}")).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [100, 20]);
    let mut seen = pages.concat();
    seen.sort();
    members.sort();
    assert_eq!(seen, members);
    let (_, page) = call(&served, &client, "GET", &format!("/Users?{filter}"), None).await;
    assert_eq!(page["totalResults"], 120);
    // The member's groups via members.value.
    let (_, page) = call(
        &served,
        &client,
        "GET",
        &format!(
            "/Groups?cursor&filter=members.value%20eq%20%22{}%22",
            members[0]
        ),
        None,
    )
    .await;
    assert_eq!(ids(&page), [g.as_str()]);
    let (_, page) = call(
        &served,
        &client,
        "GET",
        &format!("/Groups?filter=members.value%20eq%20%22{}%22", outsider[0]),
        None,
    )
    .await;
    assert_eq!(page["totalResults"], 0);
    // The filter changed between pages: 400 in AWS's shape.
    let (_, first) = call(
        &served,
        &client,
        "GET",
        &format!("/Users?cursor&{filter}"),
        None,
    )
    .await;
    let next = first["nextCursor"].as_str().unwrap();
    let (status, error) = call(
        &served,
        &client,
        "GET",
        &format!("/Users?cursor={next}&filter=userName%20eq%20%22member0001%22"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status_text, detail) = scim_error(error.to_string().as_bytes());
    assert_eq!(
        (status_text.as_str(), detail.as_str()),
        (
            "400",
            "Request is unparsable, syntactically incorrect, or violates schema."
        )
    );
    served.stop().await;
}

#[tokio::test]
async fn capitalised_op_and_group_member_refusals() {
    let served = Served::start(0).await;
    let client = http_client();
    let users = create_users(&served, &client, "entra", 2).await;
    let patch = |ops: Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    let (status, user) = call(
        &served,
        &client,
        "PATCH",
        &format!("/Users/{}", users[0]),
        Some(patch(
            json!([{"op": "Replace", "path": "title", "value": "Lead"}]),
        )),
    )
    .await;
    assert_eq!((status, &user["title"]), (200, &json!("Lead")), "{user}");
    let (_, group) = call(
        &served,
        &client,
        "POST",
        "/Groups",
        Some(json!({"displayName": "Ops", "members": [{"value": users[0]}]})),
    )
    .await;
    let path = format!("/Groups/{}", group["id"].as_str().unwrap());
    for (ops, detail) in [
        (
            json!([{"op": "replace", "path": "members", "value": [{"value": users[1]}]}]),
            "Replacing group memberships is not supported.",
        ),
        (
            json!([{"op": "remove", "path": "members"}]),
            "Request is unparsable, syntactically incorrect, or violates schema.",
        ),
    ] {
        let (status, error) =
            call(&served, &client, "PATCH", &path, Some(patch(ops.clone()))).await;
        assert_eq!(
            (status, error["detail"].as_str()),
            (400, Some(detail)),
            "{ops}"
        );
    }
    let (_, page) = call(
        &served,
        &client,
        "GET",
        &format!(
            "/Users?filter=groups.value%20eq%20%22{}%22",
            group["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(
        ids(&page),
        [users[0].clone()],
        "nothing of the refused requests applied"
    );
    served.stop().await;
}

#[tokio::test]
async fn schemas_and_resource_types_are_served() {
    let served = Served::start(0).await;
    let client = http_client();
    let (status, list) = call(&served, &client, "GET", "/Schemas", None).await;
    assert_eq!((status, &list["totalResults"]), (200, &json!(3)));
    let (status, group) = call(
        &served,
        &client,
        "GET",
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group",
        None,
    )
    .await;
    assert_eq!((status, &group["name"]), (200, &json!("Group")));
    let (status, types) = call(&served, &client, "GET", "/ResourceTypes", None).await;
    assert_eq!(
        (status, &types["Resources"][0]["endpoint"]),
        (200, &json!("/Users"))
    );
    served.stop().await;
}

// ---- the state file, through the binary ---------------------------------------------

#[test]
fn a_state_file_that_breaks_the_stores_rules_stops_start_up_naming_place_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let user = |id: &str, name: &str| json!({"id": id, "created": 0, "lastModified": 0, "data": {"userName": name}});
    let cases = [
        (
            json!({"format": "scimguard-emulator-state", "version": 1, "groups": []}),
            "the `users` key is missing",
        ),
        (
            json!({"format": "scimguard-emulator-state", "version": 1, "users": [user("u1", "bjensen"), user("u2", "BJensen")], "groups": []}),
            r#"users[0] (id "u1") and users[1] (id "u2"): both have the userName "BJensen""#,
        ),
        (
            json!({"format": "scimguard-emulator-state", "version": 1, "users": [], "groups": [
                {"id": "g1", "created": 0, "lastModified": 0, "displayName": "Finance"},
                {"id": "g2", "created": 0, "lastModified": 0, "displayName": "finance"}]}),
            r#"groups[0] (id "g1") and groups[1] (id "g2"): both have the displayName "finance""#,
        ),
        (
            json!({"format": "scimguard-emulator-state", "version": 1, "users": [user("u1", "a")], "groups": [
                {"id": "g1", "created": 0, "lastModified": 0, "displayName": "Finance", "members": ["u1", "gone"]}]}),
            r#"groups[0] (id "g1") members[1]: "gone" names no user in `users`"#,
        ),
    ];
    for (state, problem) in cases {
        std::fs::write(&file, state.to_string()).unwrap();
        let before = std::fs::read(&file).unwrap();
        let out = std::process::Command::new(binary())
            .args(["emulate", "--listen", "127.0.0.1:0", "--state"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
        assert!(stderr.contains(problem), "{stderr}\nwants: {problem}");
        assert!(stderr.contains("Fix: "), "{stderr}");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            before,
            "the file is left alone"
        );
    }
}

#[cfg(unix)]
#[test]
fn the_binary_writes_the_state_file_0600() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let mut child = std::process::Command::new(binary())
        .args([
            "emulate",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--state",
        ])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _banner = lines.next().unwrap().unwrap();
    let endpoint = lines.next().unwrap().unwrap();
    let endpoint = endpoint
        .trim()
        .strip_prefix("SCIM endpoint: ")
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let request = Request::builder()
            .method("POST")
            .uri(format!("{endpoint}/Users"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(plain_user("kept"))))
            .unwrap();
        send(&http_client(), request).await.0
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 201);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
