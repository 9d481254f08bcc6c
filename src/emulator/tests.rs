//! The emulator through [`Emulator::handle_request`]: every behaviour of the issue, no
//! socket. Over a real socket, and the guide's examples in order: `tests/it/emulator.rs`.

use std::path::PathBuf;

use http::HeaderMap;
use serde_json::{json, Value};

use super::*;

const TOKEN: &str = "s3cr3t-t0ken";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn config(rate: u32, state_file: Option<PathBuf>) -> EmulatorConfig {
    EmulatorConfig {
        tenant: DEMO_TENANT.to_owned(),
        token: TOKEN.to_owned(),
        state_file,
        rate,
    }
}

fn emulator() -> Arc<Emulator> {
    Emulator::new(config(0, None)).unwrap()
}

/// A response, its body parsed (`Null` when empty).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    json: Value,
}

impl Answer {
    fn id(&self) -> String {
        self.json["id"].as_str().unwrap_or_default().to_owned()
    }

    /// Checks the AWS error shape and returns the detail.
    fn error(&self) -> &str {
        let v = &self.json;
        let e = "urn:ietf:params:scim:api:messages:2.0:Error";
        assert_eq!(v["schemas"], json!([e]), "{v}");
        assert_eq!(v["schema"], json!([e]), "{v}");
        assert_eq!(v["status"], self.status.to_string(), "{v}");
        assert_eq!(
            v["exceptionRequestId"].as_str(),
            self.headers
                .get("x-amzn-requestid")
                .and_then(|h| h.to_str().ok())
        );
        let ts = v["timeStamp"].as_str().unwrap_or_default();
        assert_eq!(ts.len(), "2022-04-15 14:09:03.693".len(), "{ts}");
        assert_eq!((&ts[10..11], &ts[19..20]), (" ", "."), "{ts}");
        assert!(v.get("scimType").is_none(), "{v}");
        v["detail"].as_str().unwrap_or_default()
    }

    fn total(&self) -> u64 {
        self.json["totalResults"].as_u64().unwrap_or(u64::MAX)
    }
}

async fn send(e: &Emulator, request: Request<Bytes>) -> Answer {
    let response = e.handle_request(request).await;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let headers = parts.headers;
    assert_eq!(headers["content-type"], "application/json");
    let request_id = headers["x-amzn-requestid"].to_str().unwrap();
    assert_eq!(request_id.len(), 36, "{request_id}");
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).expect("a JSON body")
    };
    Answer {
        status: parts.status.as_u16(),
        headers,
        json,
    }
}

fn request(method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Request<Bytes> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    builder.body(body).unwrap()
}

/// `method` on `/{tenant}/scim/v2{rest}` with the right token.
async fn call(e: &Emulator, method: &str, rest: &str, body: Option<Value>) -> Answer {
    let path = format!("{}{rest}", e.base_path());
    send(e, request(method, &path, Some(TOKEN), body.as_ref())).await
}

fn user_body(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "displayName": format!("{user_name} Display"),
        "name": {"givenName": "Given", "familyName": user_name},
        "emails": [{"value": format!("{user_name}@example.com"), "type": "work", "primary": true}],
    })
}

async fn create_user(e: &Emulator, user_name: &str) -> String {
    let a = call(e, "POST", "/Users", Some(user_body(user_name))).await;
    assert_eq!(a.status, 201, "{}", a.json);
    a.id()
}

async fn create_group(e: &Emulator, name: &str, members: &[&str]) -> String {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let body = json!({"displayName": name, "members": members});
    let a = call(e, "POST", "/Groups", Some(body)).await;
    assert_eq!(a.status, 201, "{}", a.json);
    a.id()
}

fn patch(ops: Value) -> Option<Value> {
    Some(json!({"schemas": [PATCH_OP], "Operations": ops}))
}

fn filter(f: &str) -> String {
    f.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn list(e: &Emulator, resource: &str, f: &str) -> Answer {
    call(e, "GET", &format!("/{resource}?filter={}", filter(f)), None).await
}

fn ids_of(a: &Answer) -> Vec<String> {
    a.json["Resources"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| x["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn is_aws_id(id: &str) -> bool {
    let (prefix, uuid) = id.split_at(10.min(id.len()));
    prefix == "9067a1b2c3"
        && uuid.len() == 37
        && uuid.starts_with('-')
        && uuid[1..].split('-').map(str::len).eq([8, 4, 4, 4, 12])
}

fn is_second_precision_utc(t: &Value) -> bool {
    let t = t.as_str().unwrap_or_default();
    t.len() == 20 && t.ends_with('Z') && &t[10..11] == "T"
}

#[tokio::test]
async fn user_lifecycle() {
    let e = emulator();
    // Create: 201, AWS's id and meta, the extension listed only when present.
    let mut body = user_body("bjensen");
    body[ENTERPRISE] =
        json!({"department": "Tours", "manager": {"value": "m-1", "$ref": "../Users/m-1"}});
    body["profileUrl"] = json!("https://login.example.com/bjensen");
    let a = call(&e, "POST", "/Users", Some(body)).await;
    assert_eq!(a.status, 201, "{}", a.json);
    let id = a.id();
    assert!(is_aws_id(&id), "{id}");
    assert_eq!(a.json["meta"]["resourceType"], "User");
    assert!(is_second_precision_utc(&a.json["meta"]["created"]));
    assert_eq!(a.json["meta"]["created"], a.json["meta"]["lastModified"]);
    assert_eq!(
        a.json["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
    );
    assert_eq!(a.json[ENTERPRISE]["manager"], json!({"value": "m-1"}));
    assert!(a.json.get("profileUrl").is_none());
    let plain = create_user(&e, "plain").await;
    let a = call(&e, "GET", &format!("/Users/{plain}"), None).await;
    assert_eq!(
        a.json["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User"])
    );

    // Duplicate userName in another case: 409.
    let a = call(&e, "POST", "/Users", Some(user_body("BJensen"))).await;
    assert_eq!(a.status, 409);
    assert_eq!(a.error(), "Refused to create a new, duplicate resource.");

    // Find: userName in any case, externalId, id and manager.
    let a = list(&e, "Users", r#"userName eq "BJENSEN""#).await;
    assert_eq!(a.status, 200);
    assert_eq!(ids_of(&a), [id.as_str()]);
    assert_eq!(
        a.json["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(
        (a.total(), &a.json["itemsPerPage"], &a.json["startIndex"]),
        (1, &json!(1), &json!(1))
    );
    let a = list(
        &e,
        "Users",
        &format!(r#"manager eq "m-1" and id eq "{id}""#),
    )
    .await;
    assert_eq!(ids_of(&a), [id.as_str()]);
    let a = list(
        &e,
        "Users",
        &format!(r#"id eq "{plain}" and manager eq "m-1""#),
    )
    .await;
    assert_eq!(a.total(), 0);
    let a = call(&e, "GET", "/Users", None).await;
    assert_eq!(ids_of(&a), [id.as_str(), plain.as_str()]);

    // Patch: 200 with the user; "false" as a string is what the guide sends.
    let a = call(
        &e,
        "PATCH",
        &format!("/Users/{id}"),
        patch(json!([
            {"op": "replace", "path": "active", "value": "false"},
            {"op": "replace", "path": "name.givenName", "value": "Babs"},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "babs@example.com"},
            {"op": "add", "path": "externalId", "value": "701984"},
            {"op": "remove", "path": format!("{ENTERPRISE}:manager")},
        ])),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["active"], false);
    assert_eq!(a.json["name"]["givenName"], "Babs");
    assert_eq!(a.json["emails"][0]["value"], "babs@example.com");
    assert_eq!(a.json[ENTERPRISE], json!({"department": "Tours"}));
    let a = list(&e, "Users", r#"externalId eq "701984""#).await;
    assert_eq!(ids_of(&a), [id.as_str()]);

    // Patch or put onto another user's name: 409.
    let taken = patch(json!([{"op": "replace", "path": "userName", "value": "PLAIN"}]));
    let a = call(&e, "PATCH", &format!("/Users/{id}"), taken).await;
    assert_eq!(a.status, 409);
    let a = call(&e, "PUT", &format!("/Users/{id}"), Some(user_body("Plain"))).await;
    assert_eq!(a.status, 409);

    // Put: replaces the user, keeps id and created; its own id in the body is fine.
    let created =
        call(&e, "GET", &format!("/Users/{id}"), None).await.json["meta"]["created"].clone();
    let mut body = user_body("bjensen2");
    body["id"] = json!(id);
    let a = call(&e, "PUT", &format!("/Users/{id}"), Some(body)).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(
        (a.id(), &a.json["userName"]),
        (id.clone(), &json!("bjensen2"))
    );
    assert_eq!(a.json["meta"]["created"], created);
    assert!(a.json.get("externalId").is_none() && a.json.get(ENTERPRISE).is_none());
    // Another id in the body is ignored as read-only (the rule is `aws_accepts`).
    let mut body = user_body("bjensen3");
    body["id"] = json!(plain);
    body["meta"] = json!({"resourceType": "User"});
    let a = call(&e, "PUT", &format!("/Users/{id}"), Some(body)).await;
    assert_eq!((a.status, a.id()), (200, id.clone()), "{}", a.json);

    // Delete: 204 with an empty body, then 404 everywhere.
    let a = call(&e, "DELETE", &format!("/Users/{id}"), None).await;
    assert_eq!((a.status, &a.json), (204, &Value::Null));
    for (method, body) in [
        ("GET", None),
        ("DELETE", None),
        ("PUT", Some(user_body("x"))),
        (
            "PATCH",
            patch(json!([{"op": "replace", "path": "title", "value": "t"}])),
        ),
    ] {
        let a = call(&e, method, &format!("/Users/{id}"), body).await;
        assert_eq!(a.status, 404, "{method}");
        assert_eq!(a.error(), "User not found.");
    }
}

#[tokio::test]
async fn group_lifecycle_and_memberships() {
    let e = emulator();
    let u1 = create_user(&e, "u1").await;
    let u2 = create_user(&e, "u2").await;
    let u3 = create_user(&e, "u3").await;

    // Create: 201 without members; GetGroup without members; ListGroups with [].
    let body = json!({"externalId": "701984", "displayName": "Group Bar", "members": [
        {"value": u1, "$ref": format!("../Users/{u1}"), "type": "User"}
    ]});
    let a = call(&e, "POST", "/Groups", Some(body)).await;
    assert_eq!(a.status, 201, "{}", a.json);
    let g = a.id();
    assert!(is_aws_id(&g));
    assert_eq!(a.json["externalId"], "701984");
    assert_eq!(a.json["meta"]["resourceType"], "Group");
    assert_eq!(
        a.json["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Group"])
    );
    assert!(a.json.get("members").is_none());
    let a = call(&e, "GET", &format!("/Groups/{g}"), None).await;
    assert_eq!(
        (a.status, &a.json["displayName"]),
        (200, &json!("Group Bar"))
    );
    assert!(a.json.get("members").is_none());
    let other = create_group(&e, "Group Foo", &[]).await;
    let a = call(&e, "GET", "/Groups", None).await;
    assert_eq!(ids_of(&a), [g.as_str(), other.as_str()]);
    assert_eq!(a.json["Resources"][0]["members"], json!([]));

    // displayName: unique, matched in any case.
    let a = call(
        &e,
        "POST",
        "/Groups",
        Some(json!({"displayName": "group bar"})),
    )
    .await;
    assert_eq!(a.status, 409);
    let a = list(&e, "Groups", r#"displayName eq "GROUP BAR""#).await;
    assert_eq!(ids_of(&a), [g.as_str()]);
    let a = list(&e, "Groups", r#"externalId eq "701984""#).await;
    assert_eq!(ids_of(&a), [g.as_str()]);

    // Members: id and members finds the group only if the user is a member.
    let member_of = |u: &str, group: &str| format!(r#"id eq "{group}" and members eq "{u}""#);
    assert_eq!(
        ids_of(&list(&e, "Groups", &member_of(&u1, &g)).await),
        [g.as_str()]
    );
    assert_eq!(list(&e, "Groups", &member_of(&u2, &g)).await.total(), 0);
    assert_eq!(list(&e, "Groups", &member_of(&u1, &other)).await.total(), 0);
    let a = list(&e, "Groups", &format!(r#"members.value eq "{u1}""#)).await;
    assert_eq!(ids_of(&a), [g.as_str()]);
    // A value filter in brackets is refused by the rules, as AWS refuses it.
    let a = list(&e, "Groups", &format!(r#"members[value eq "{u1}"]"#)).await;
    assert_eq!(a.status, 400);
    // A member that does not exist: 404.
    let a = list(&e, "Groups", r#"members.value eq "9067a1b2c3-nobody""#).await;
    assert_eq!((a.status, a.error()), (404, "User not found."));

    // PatchGroup: 204; add, remove with a value list, remove everything.
    let path = format!("/Groups/{g}");
    let add =
        patch(json!([{"op": "add", "path": "members", "value": [{"value": u2}, {"value": u3}]}]));
    let a = call(&e, "PATCH", &path, add).await;
    assert_eq!((a.status, &a.json), (204, &Value::Null));
    let a = list(&e, "Groups", &format!(r#"members eq "{u3}""#)).await;
    assert_eq!(ids_of(&a), [g.as_str()]);
    let remove = patch(json!([{"op": "remove", "path": "members", "value": [{"value": u1}]}]));
    assert_eq!(call(&e, "PATCH", &path, remove).await.status, 204);
    assert_eq!(list(&e, "Groups", &member_of(&u1, &g)).await.total(), 0);
    assert_eq!(list(&e, "Groups", &member_of(&u2, &g)).await.total(), 1);
    // The form Okta and Entra ID send is refused as AWS refuses it.
    let filtered = patch(json!([{"op": "remove", "path": format!("members[value eq \"{u2}\"]")}]));
    assert_eq!(call(&e, "PATCH", &path, filtered).await.status, 400);
    // Remove-all, however spelled, is refused (live guide, PatchGroup) and changes nothing.
    for empty in [
        json!({"op": "remove", "path": "members"}),
        json!({"op": "remove", "path": "members", "value": null}),
        json!({"op": "remove", "path": "members", "value": []}),
        json!({"op": "Remove", "path": "MEMBERS"}),
    ] {
        let a = call(&e, "PATCH", &path, patch(json!([empty.clone()]))).await;
        assert_eq!((a.status, a.error()), (400, AWS_GENERIC_DETAIL), "{empty}");
        assert_eq!(list(&e, "Groups", &member_of(&u2, &g)).await.total(), 1);
    }
    let remove = patch(
        json!([{"op": "remove", "path": "members", "value": [{"value": u2}, {"value": u3}]}]),
    );
    assert_eq!(call(&e, "PATCH", &path, remove).await.status, 204);
    for u in [&u1, &u2, &u3] {
        assert_eq!(list(&e, "Groups", &member_of(u, &g)).await.total(), 0);
    }
    // Adding a user that does not exist: 404, and nothing of the request applies.
    let add = patch(json!([
        {"op": "add", "path": "members", "value": [{"value": u1}]},
        {"op": "add", "path": "members", "value": [{"value": "9067a1b2c3-nobody"}]},
    ]));
    assert_eq!(call(&e, "PATCH", &path, add).await.status, 404);
    assert_eq!(list(&e, "Groups", &member_of(&u1, &g)).await.total(), 0);

    // Replacing members, with a path or inside a path-less value: AWS's observed refusal.
    for replace in [
        json!({"op": "replace", "path": "members", "value": [{"value": u1}]}),
        json!({"op": "Replace", "path": "members", "value": [{"value": u1}]}),
        json!({"op": "replace", "value": {"members": [{"value": u1}]}}),
    ] {
        let a = call(&e, "PATCH", &path, patch(json!([replace.clone()]))).await;
        assert_eq!(
            (a.status, a.error()),
            (400, "Replacing group memberships is not supported."),
            "{replace}"
        );
    }
    assert_eq!(list(&e, "Groups", &member_of(&u1, &g)).await.total(), 0);

    // displayName and externalId, with a path and without (the guide's example sends a
    // foreign id there, which AWS ignores).
    let rename = patch(
        json!([{"op": "replace", "value": {"id": "9067729b3d-07124c20-d960-4a47-93ff-460d76461f81", "displayName": "Group Foo New"}}]),
    );
    assert_eq!(call(&e, "PATCH", &path, rename).await.status, 204);
    let a = call(&e, "GET", &path, None).await;
    assert_eq!(a.json["displayName"], "Group Foo New");
    let clash = patch(json!([{"op": "replace", "path": "displayName", "value": "GROUP FOO"}]));
    assert_eq!(call(&e, "PATCH", &path, clash).await.status, 409);
    let ext = patch(json!([{"op": "replace", "path": "externalId", "value": "x-1"}]));
    assert_eq!(call(&e, "PATCH", &path, ext).await.status, 204);
    assert_eq!(
        ids_of(&list(&e, "Groups", r#"externalId eq "x-1""#).await),
        [g.as_str()]
    );
    let bad = patch(json!([{"op": "replace", "value": {"description": "x"}}]));
    assert_eq!(call(&e, "PATCH", &path, bad).await.status, 400);

    // Deleting a user removes it from its groups.
    let add = patch(json!([{"op": "add", "path": "members", "value": [{"value": u3}]}]));
    assert_eq!(
        call(&e, "PATCH", &format!("/Groups/{other}"), add)
            .await
            .status,
        204
    );
    assert_eq!(
        call(&e, "DELETE", &format!("/Users/{u3}"), None)
            .await
            .status,
        204
    );
    assert!(e
        .lock()
        .store
        .groups
        .iter()
        .all(|g| !g.members.contains(&u3)));

    // Delete: 204, then 404.
    assert_eq!(call(&e, "DELETE", &path, None).await.status, 204);
    for (method, body) in [
        ("GET", None),
        ("DELETE", None),
        (
            "PATCH",
            patch(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
        ),
    ] {
        let a = call(&e, method, &path, body).await;
        assert_eq!((a.status, a.error()), (404, "Group not found."), "{method}");
    }
}

#[tokio::test]
async fn authorization_and_tenant() {
    let e = emulator();
    let users = format!("{}/Users", e.base_path());
    for (path, token) in [
        (users.as_str(), None),
        (users.as_str(), Some("wrong")),
        (users.as_str(), Some("s3cr3t-t0ke")),
    ] {
        let a = send(&e, request("GET", path, token, None)).await;
        assert_eq!(a.status, 401, "{path} {token:?}");
        assert_eq!(a.error(), "Authorization header is invalid or missing.");
    }
    // Another tenant (with the right token or not), or none: 404, as AWS answered.
    for (path, token) in [
        ("/d-0000000000/scim/v2/Users", Some(TOKEN)),
        ("/d-0000000000/scim/v2/Users", Some("wrong")),
        ("/D-9067A1B2C3/scim/v2/Groups", None),
        ("/scim/v2/Users", Some(TOKEN)),
    ] {
        let a = send(&e, request("GET", path, token, None)).await;
        assert_eq!(
            (a.status, a.error()),
            (404, "TENANT does not exist."),
            "{path} {token:?}"
        );
    }
    // Another scheme, or the token in any case but its own.
    for header in ["Basic czNjcjN0LXQwa2Vu", "Bearer S3CR3T-T0KEN", TOKEN] {
        let r = Request::builder()
            .uri(&users)
            .header("authorization", header)
            .body(Bytes::new())
            .unwrap();
        assert_eq!(send(&e, r).await.status, 401, "{header}");
    }
    let r = Request::builder()
        .uri(&users)
        .header("authorization", format!("bearer  {TOKEN} "))
        .body(Bytes::new())
        .unwrap();
    assert_eq!(send(&e, r).await.status, 200);
    // Unknown paths: 404 once authorized, or when nothing looks like SCIM.
    for path in ["/Widgets", "/Users/a/b", "/Users/.search"] {
        let a = call(&e, "GET", path, None).await;
        assert_eq!(
            (a.status, a.error()),
            (404, "Specified endpoint does not exist."),
            "{path}"
        );
    }
    for path in [
        "/",
        "/favicon.ico",
        "/d-9067a1b2c3",
        "/d-9067a1b2c3/scim/v3/Users",
    ] {
        assert_eq!(
            send(&e, request("GET", path, Some(TOKEN), None))
                .await
                .status,
            404,
            "{path}"
        );
    }
    let a = call(&e, "HEAD", "/Users", None).await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn throttling_answers_429_beyond_the_rate() {
    let e = Emulator::new(config(3, None)).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(call(&e, "GET", "/ServiceProviderConfig", None).await);
    }
    let codes: Vec<u16> = statuses.iter().map(|a| a.status).collect();
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    let a = &statuses[3];
    assert_eq!(
        a.error(),
        "Too many requests were made that exceed the limits."
    );
    assert_eq!(a.headers["retry-after"], "1");
    // A second later the bucket has refilled.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(
        call(&e, "GET", "/ServiceProviderConfig", None).await.status,
        200
    );
    // Rate 0: no throttle at all.
    let e = emulator();
    for _ in 0..100 {
        assert_eq!(call(&e, "GET", "/Schemas", None).await.status, 200);
    }
}

#[tokio::test]
async fn requests_aws_refuses_get_its_400() {
    let e = emulator();
    let u = create_user(&e, "bjensen").await;
    let generic = AWS_GENERIC_DETAIL;
    let user = format!("/Users/{u}");
    let cases: Vec<(&str, String, Option<Value>, &str)> = vec![
        // Body and required attributes.
        ("POST", "/Users".into(), Some(json!("not an object")), generic),
        ("POST", "/Users".into(), Some(json!({"userName": "x"})), generic),
        ("POST", "/Groups".into(), Some(json!({"externalId": "x"})), generic),
        // What scimguard would rewrite, AWS refuses.
        ("POST", "/Users".into(), Some({
            let mut b = user_body("two-mails");
            b["emails"] = json!([{"value": "a@x", "primary": true}, {"value": "b@x"}]);
            b
        }), generic),
        ("POST", "/Users".into(), Some({
            let mut b = user_body("empty-title");
            b["title"] = json!("");
            b
        }), "fields must either be null or have a literal value"),
        ("PATCH", user.clone(), patch(json!([{"op": "replace", "value": {"title": "a", "nickName": "b"}}])),
            "Current PATCH support allows omitting \"path\" attribute only for Add and Replace operations modifying a single attribute."),
        ("PATCH", user.clone(), patch(json!([{"op": "remove", "path": "userName"}])), generic),
        ("PATCH", user.clone(), patch(json!([{"op": "add", "path": "groups", "value": []}])), generic),
        ("PATCH", user.clone(), Some(json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]})), generic),
        // Filters: eq and and only, on the allowed attributes.
        ("GET", format!("/Users?filter={}", filter(r#"userName co "bj""#)), None, generic),
        ("GET", format!("/Users?filter={}", filter(r#"userName eq "a" or userName eq "b""#)), None, generic),
        ("GET", format!("/Users?filter={}", filter(r#"title eq "x""#)), None, generic),
        ("GET", format!("/Users?filter={}", filter("userName eq")), None, generic),
        ("GET", format!("/Groups?filter={}", filter(r#"displayName sw "G""#)), None, generic),
        // Operations AWS lacks.
        ("POST", "/Bulk".into(), Some(json!({})), generic),
        ("GET", "/Me".into(), None, generic),
        ("POST", "/.search".into(), Some(json!({})), generic),
        ("POST", "/Users/.search".into(), Some(json!({})), generic),
        ("PUT", "/Groups/g".into(), Some(json!({"displayName": "x"})), generic),
        ("GET", "/ResourceTypes/User".into(), None, generic),
    ];
    for (method, path, body, detail) in cases {
        let a = call(&e, method, &path, body.clone()).await;
        assert_eq!(a.status, 400, "{method} {path} {body:?}: {}", a.json);
        assert_eq!(a.error(), detail, "{method} {path}");
    }
    // Nothing of it reached the store.
    assert_eq!(e.counts(), (1, 0));
}

#[tokio::test]
async fn capitalised_ops_work_as_entra_sends_them() {
    let e = emulator();
    let u = create_user(&e, "bjensen").await;
    let v = create_user(&e, "other").await;
    let ops = patch(json!([
        {"op": "Replace", "path": "title", "value": "Tour Guide"},
        {"op": "Add", "path": "nickName", "value": "Babs"},
        {"op": "REMOVE", "path": "displayName"},
    ]));
    let a = call(&e, "PATCH", &format!("/Users/{u}"), ops).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(
        (&a.json["title"], &a.json["nickName"]),
        (&json!("Tour Guide"), &json!("Babs"))
    );
    assert!(a.json.get("displayName").is_none());
    let g = create_group(&e, "Group Bar", &[]).await;
    let ops = patch(json!([
        {"op": "Add", "path": "members", "value": [{"value": u}, {"value": v}]},
        {"op": "Replace", "path": "displayName", "value": "Group Baz"},
        {"op": "Remove", "path": "members", "value": [{"value": v}]},
    ]));
    assert_eq!(
        call(&e, "PATCH", &format!("/Groups/{g}"), ops).await.status,
        204
    );
    let a = list(&e, "Users", &format!(r#"groups.value eq "{g}""#)).await;
    assert_eq!(ids_of(&a), [u.as_str()]);
    let a = call(&e, "GET", &format!("/Groups/{g}"), None).await;
    assert_eq!(a.json["displayName"], "Group Baz");
}

#[tokio::test]
async fn lists_return_at_most_100() {
    let e = emulator();
    for i in 0..105 {
        create_user(&e, &format!("user{i:03}")).await;
    }
    let a = call(&e, "GET", "/Users", None).await;
    assert_eq!((a.total(), &a.json["itemsPerPage"]), (105, &json!(100)));
    assert_eq!(ids_of(&a).len(), 100);
    assert!(a.json.get("nextCursor").is_none());
    let a = call(&e, "GET", "/Users?count=5&startIndex=20", None).await;
    assert_eq!((a.total(), ids_of(&a).len()), (105, 5));
    assert_eq!(a.json["startIndex"], 1);
    let a = call(&e, "GET", "/Users?count=500", None).await;
    assert_eq!(ids_of(&a).len(), 100);
}

/// Walks a list with `cursor` pages, checking each page's shape; returns each page's
/// ids.
async fn walk(e: &Emulator, resource: &str, f: Option<&str>, count: usize) -> Vec<Vec<String>> {
    let filter = f
        .map(|f| format!("&filter={}", filter(f)))
        .unwrap_or_default();
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let rest = format!("/{resource}?cursor={cursor}&count={count}{filter}");
        let a = call(e, "GET", &rest, None).await;
        assert_eq!(a.status, 200, "{rest}: {}", a.json);
        assert!(a.json.get("totalResults").is_none() && a.json.get("startIndex").is_none());
        let ids = ids_of(&a);
        assert_eq!(a.json["itemsPerPage"], ids.len(), "{}", a.json);
        pages.push(ids);
        match a.json.get("nextCursor").and_then(Value::as_str) {
            Some(next) => {
                assert!(
                    next.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-+=/:_".contains(&b)),
                    "{next}"
                );
                cursor = next.to_owned();
            }
            None => return pages,
        }
        assert!(pages.len() < 1_000, "the walk does not end");
    }
}

#[tokio::test]
async fn cursor_pages_walk_every_user_once() {
    let e = emulator();
    let mut all = Vec::new();
    for i in 0..250 {
        all.push(create_user(&e, &format!("user{i:03}")).await);
    }
    // `?cursor` with no value starts; 100 a page by default; the last has no nextCursor.
    let a = call(&e, "GET", "/Users?cursor", None).await;
    assert_eq!((a.status, &a.json["itemsPerPage"]), (200, &json!(100)));
    assert_eq!(
        a.json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["Resources", "itemsPerPage", "nextCursor", "schemas"]
    );
    let pages = walk(&e, "Users", None, 100).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    let mut seen: Vec<String> = pages.concat();
    seen.sort();
    all.sort();
    assert_eq!(seen, all);

    // Users created and deleted between pages: every user that lives through the walk
    // is returned exactly once, a deleted one at most once.
    let first = call(&e, "GET", "/Users?cursor=&count=100", None).await;
    let mut seen: Vec<String> = ids_of(&first);
    let deleted_seen = seen[10].clone();
    let page_one: std::collections::HashSet<String> = seen.iter().cloned().collect();
    let deleted_ahead = all
        .iter()
        .find(|id| !page_one.contains(*id))
        .unwrap()
        .clone();
    for id in [&deleted_seen, &deleted_ahead] {
        assert_eq!(
            call(&e, "DELETE", &format!("/Users/{id}"), None)
                .await
                .status,
            204
        );
    }
    for i in 0..20 {
        create_user(&e, &format!("late{i:02}")).await;
    }
    let mut cursor = first.json["nextCursor"].as_str().unwrap().to_owned();
    loop {
        let a = call(
            &e,
            "GET",
            &format!("/Users?cursor={cursor}&count=100"),
            None,
        )
        .await;
        seen.extend(ids_of(&a));
        match a.json.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a user came twice");
    for id in &all {
        if *id != deleted_ahead && *id != deleted_seen {
            assert!(seen.contains(id), "{id} was skipped");
        }
    }
    assert!(!seen.contains(&deleted_ahead));
}

#[tokio::test]
async fn member_filters_with_and_without_cursor() {
    let e = emulator();
    let mut members = Vec::new();
    for i in 0..130 {
        members.push(create_user(&e, &format!("member{i:03}")).await);
    }
    let outsider = create_user(&e, "outsider").await;
    let g = create_group(&e, "Finance", &[]).await;
    for chunk in members.chunks(100) {
        let value: Vec<Value> = chunk.iter().map(|m| json!({"value": m})).collect();
        let add = patch(json!([{"op": "add", "path": "members", "value": value}]));
        assert_eq!(
            call(&e, "PATCH", &format!("/Groups/{g}"), add).await.status,
            204
        );
    }
    let by_group = format!(r#"groups.value eq "{g}""#);
    // Without cursor: the old format, at most 100, totalResults counting all.
    let a = list(&e, "Users", &by_group).await;
    assert_eq!((a.status, a.total(), ids_of(&a).len()), (200, 130, 100));
    // With cursor: every member once, nobody else.
    let pages = walk(&e, "Users", Some(&by_group), 100).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [100, 30]);
    let mut seen = pages.concat();
    seen.sort();
    members.sort();
    assert_eq!(seen, members);
    assert!(!seen.contains(&outsider));
    // A group that does not exist has no members.
    let a = list(&e, "Users", r#"groups.value eq "no-such-group""#).await;
    assert_eq!((a.status, a.total()), (200, 0));
    // ListGroups by member, with cursor.
    let other = create_group(&e, "Other", &[&members[0]]).await;
    let by_member = format!(r#"members.value eq "{}""#, members[0]);
    let pages = walk(&e, "Groups", Some(&by_member), 1).await;
    let mut groups = pages.concat();
    groups.sort();
    let mut want = vec![g.clone(), other];
    want.sort();
    assert_eq!(groups, want);
    assert_eq!(pages.len(), 2);
    assert_eq!(
        walk(
            &e,
            "Groups",
            Some(&format!(r#"members.value eq "{outsider}""#)),
            100
        )
        .await,
        [Vec::<String>::new()]
    );
}

#[tokio::test]
async fn a_cursor_is_tied_to_its_filter_and_list() {
    let e = emulator();
    let g = create_group(&e, "Finance", &[]).await;
    for i in 0..3 {
        let u = create_user(&e, &format!("user{i}")).await;
        let add = patch(json!([{"op": "add", "path": "members", "value": [{"value": u}]}]));
        assert_eq!(
            call(&e, "PATCH", &format!("/Groups/{g}"), add).await.status,
            204
        );
    }
    let by_group = filter(&format!(r#"groups.value eq "{g}""#));
    let a = call(
        &e,
        "GET",
        &format!("/Users?cursor&count=1&filter={by_group}"),
        None,
    )
    .await;
    let next = a.json["nextCursor"].as_str().unwrap().to_owned();
    // The same filter, however encoded: the next page.
    let same = format!("groups.value+eq+%22{g}%22");
    let a = call(
        &e,
        "GET",
        &format!("/Users?cursor={next}&count=1&filter={same}"),
        None,
    )
    .await;
    assert_eq!((a.status, ids_of(&a).len()), (200, 1), "{}", a.json);
    // Another filter, no filter, another list, a forged cursor: 400 in AWS's shape.
    for rest in [
        format!(
            "/Users?cursor={next}&count=1&filter={}",
            filter(r#"userName eq "user1""#)
        ),
        format!("/Users?cursor={next}&count=1"),
        format!("/Groups?cursor={next}&count=1&filter={by_group}"),
        "/Users?cursor=bm90LWEtY3Vyc29y".to_owned(),
        "/Users?cursor=%24%24%24".to_owned(),
    ] {
        let a = call(&e, "GET", &rest, None).await;
        assert_eq!((a.status, a.error()), (400, AWS_GENERIC_DETAIL), "{rest}");
    }
}

#[tokio::test]
async fn ids_of_any_shape_page_alike() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let user = |id: &str, name: &str| json!({"id": id, "created": 0, "lastModified": 0, "data": {"userName": name}});
    let state = json!({
        "format": "scimguard-emulator-state", "version": 1,
        "users": [
            user("9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074", "old-shape"),
            user("5418a458-c0a1-7066-bdd4-9ea543c0cf6d", "uuid-shape"),
            user("x", "short"),
        ],
        "groups": [{"id": "0458a488-2081-70c8-4b0b-3e4b2b10ddb5", "created": 0, "lastModified": 0,
                    "displayName": "G", "members": ["x", "5418a458-c0a1-7066-bdd4-9ea543c0cf6d"]}],
    });
    std::fs::write(&file, state.to_string()).unwrap();
    let e = Emulator::new(config(0, Some(file))).unwrap();
    let pages = walk(&e, "Users", None, 1).await;
    assert_eq!(pages.concat().len(), 3);
    let pages = walk(
        &e,
        "Users",
        Some(r#"groups.value eq "0458a488-2081-70c8-4b0b-3e4b2b10ddb5""#),
        1,
    )
    .await;
    assert_eq!(
        pages.concat(),
        ["5418a458-c0a1-7066-bdd4-9ea543c0cf6d", "x"]
    );
    let a = call(&e, "GET", "/Users/x", None).await;
    assert_eq!((a.status, &a.json["userName"]), (200, &json!("short")));
}

#[tokio::test]
async fn discovery_endpoints() {
    let e = emulator();
    let a = call(&e, "GET", "/ServiceProviderConfig", None).await;
    assert_eq!(
        (a.status, &a.json["patch"]["supported"]),
        (200, &json!(true))
    );
    let a = call(&e, "GET", "/Schemas", None).await;
    assert_eq!(a.total(), 3);
    let a = call(&e, "GET", &format!("/Schemas/{ENTERPRISE}"), None).await;
    assert_eq!(a.json["name"], "EnterpriseUser");
    let a = call(
        &e,
        "GET",
        "/Schemas/urn%3Aietf%3Aparams%3Ascim%3Aschemas%3Acore%3A2.0%3AGroup",
        None,
    )
    .await;
    assert_eq!(a.json["name"], "Group");
    let a = call(&e, "GET", "/Schemas/urn:nope", None).await;
    assert_eq!((a.status, a.error()), (404, "Schema not found."));
    let a = call(&e, "GET", "/ResourceTypes", None).await;
    assert_eq!(
        a.json["Resources"][1]["meta"]["location"],
        "https://scim.us-east-1.amazonaws.com/d-9067a1b2c3/scim/v2/ResourceTypes/Group"
    );
}

#[test]
fn bad_configs_name_the_setting() {
    let mut c = config(0, None);
    c.tenant = "a/b".into();
    let err = Emulator::new(c).unwrap_err().to_string();
    assert!(err.contains("`a/b`") && err.contains("Fix:"), "{err}");
    let mut c = config(0, None);
    c.token = "two words".into();
    assert!(Emulator::new(c).unwrap_err().to_string().contains("token"));
    let c = config(
        0,
        Some(PathBuf::from("/nonexistent-dir-for-scimguard/state.json")),
    );
    let err = Emulator::new(c).unwrap_err().to_string();
    assert!(
        err.contains("/nonexistent-dir-for-scimguard/state.json"),
        "{err}"
    );
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let e = Emulator::new(config(0, Some(file.clone()))).unwrap();
    assert_eq!(e.counts(), (0, 0));
    assert!(!file.exists(), "nothing is written before the first change");
    let u = create_user(&e, "bjensen").await;
    let gone = create_user(&e, "gone").await;
    let g = create_group(&e, "Group Bar", &[&u, &gone]).await;
    assert_eq!(
        call(&e, "DELETE", &format!("/Users/{gone}"), None)
            .await
            .status,
        204
    );
    let before = call(&e, "GET", &format!("/Users/{u}"), None).await.json;
    assert!(
        !store::temp_path(&file).exists(),
        "the temp file is renamed away"
    );
    drop(e);

    let e = Emulator::new(config(0, Some(file.clone()))).unwrap();
    assert_eq!(e.counts(), (1, 1));
    assert_eq!(
        call(&e, "GET", &format!("/Users/{u}"), None).await.json,
        before
    );
    let a = list(
        &e,
        "Groups",
        &format!(r#"id eq "{g}" and members eq "{u}""#),
    )
    .await;
    assert_eq!(ids_of(&a), [g.as_str()]);
    // A failed request writes nothing, a read writes nothing.
    let written = std::fs::read(&file).unwrap();
    assert_eq!(
        call(&e, "POST", "/Users", Some(user_body("BJENSEN")))
            .await
            .status,
        409
    );
    assert_eq!(std::fs::read(&file).unwrap(), written);
}

/// Concurrent changes each write a snapshot; whatever order the writers run in, the
/// file ends with the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_all_reach_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let e = Emulator::new(config(0, Some(file.clone()))).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let e = e.clone();
            tokio::spawn(async move { create_user(&e, &format!("user{i}")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    drop(e);
    let e = Emulator::new(config(0, Some(file))).unwrap();
    assert_eq!(e.counts(), (16, 0));
}

#[tokio::test]
async fn a_crash_between_temp_file_and_rename_leaves_the_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let e = Emulator::new(config(0, Some(file.clone()))).unwrap();
    let u = create_user(&e, "bjensen").await;
    drop(e);
    // The next write died after writing half a temp file.
    std::fs::write(store::temp_path(&file), b"{\"format\":\"scimguard-emul").unwrap();
    let e = Emulator::new(config(0, Some(file.clone()))).unwrap();
    assert_eq!(
        call(&e, "GET", &format!("/Users/{u}"), None).await.status,
        200
    );
    // The next change replaces the stray temp file and then the state.
    create_user(&e, "second").await;
    assert!(!store::temp_path(&file).exists());
    drop(e);
    let e = Emulator::new(config(0, Some(file.clone()))).unwrap();
    assert_eq!(e.counts(), (2, 0));
}

#[test]
fn a_corrupt_state_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    for text in [
        "{not json",
        r#"{"format":"something-else","version":1}"#,
        r#"{"format":"scimguard-emulator-state","version":99}"#,
    ] {
        std::fs::write(&file, text).unwrap();
        let err = Emulator::new(config(0, Some(file.clone()))).unwrap_err();
        assert!(
            matches!(err, EmulatorError::StateCorrupt { .. }),
            "{text}: {err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&file.display().to_string()) && message.contains("Fix:"),
            "{message}"
        );
    }
}

#[test]
fn an_inconsistent_state_file_names_the_place_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let user = |id: &str, name: &str| json!({"id": id, "created": 0, "lastModified": 0, "data": {"userName": name}});
    let group = |id: &str, name: &str, members: &[&str]| json!({"id": id, "created": 0, "lastModified": 0, "displayName": name, "members": members});
    let state = |users: Value, groups: Option<Value>| {
        let mut v = json!({"format": "scimguard-emulator-state", "version": 1, "users": users});
        if let Some(groups) = groups {
            v["groups"] = groups;
        }
        v
    };
    let cases = [
        (
            json!({"format": "scimguard-emulator-state", "version": 1, "groups": []}),
            "the top-level object: the `users` key is missing",
            "add \"users\": []",
        ),
        (
            state(json!([]), None),
            "the `groups` key is missing",
            "add \"groups\": []",
        ),
        (
            state(
                json!([user("u1", "a"), user("u2", "B"), user("u3", "b")]),
                Some(json!([])),
            ),
            r#"users[1] (id "u2") and users[2] (id "u3"): both have the userName "b""#,
            "rename or remove one",
        ),
        (
            state(json!([user("u1", " ")]), Some(json!([]))),
            r#"users[0] (id "u1"): its userName is empty"#,
            "give the user a userName",
        ),
        (
            state(
                json!([user("u1", "a")]),
                Some(json!([
                    group("g1", "Finance", &[]),
                    group("g2", "FINANCE", &[])
                ])),
            ),
            r#"groups[0] (id "g1") and groups[1] (id "g2"): both have the displayName "FINANCE""#,
            "rename or remove one",
        ),
        (
            state(
                json!([user("u1", "a")]),
                Some(json!([group("g1", "Finance", &["u1", "u9"])])),
            ),
            r#"groups[0] (id "g1") members[1]: "u9" names no user in `users`"#,
            "remove it from the group's members",
        ),
        (
            state(
                json!([user("u1", "a")]),
                Some(json!([group("g1", "Finance", &["g1"])])),
            ),
            r#"members[0]: "g1" names no user"#,
            "remove it from the group's members, or add the user",
        ),
        (
            state(
                json!([user("u1", "a")]),
                Some(json!([group("g1", "Finance", &["u1", "u1"])])),
            ),
            r#"members[1]: the user "u1" is listed twice"#,
            "remove the repeated member",
        ),
        (
            state(json!([user("a", "x")]), Some(json!([group("a", "g", &[])]))),
            r#"users[0] and groups[0]: both have the id "a""#,
            "give one of them another id",
        ),
    ];
    for (text, problem, fix) in cases {
        std::fs::write(&file, text.to_string()).unwrap();
        let err = Emulator::new(config(0, Some(file.clone()))).unwrap_err();
        assert!(
            matches!(err, EmulatorError::StateInvalid { .. }),
            "{text}: {err}"
        );
        let message = err.to_string();
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains(problem), "{message}\nwants: {problem}");
        assert!(
            message.contains(&format!("Fix: {fix}")),
            "{message}\nwants: {fix}"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_state_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    // A stray temp file with wide permissions from an earlier run.
    std::fs::write(store::temp_path(&file), b"{").unwrap();
    std::fs::set_permissions(
        store::temp_path(&file),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let e = Emulator::new(config(0, Some(file.clone()))).unwrap();
    create_user(&e, "bjensen").await;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[tokio::test]
async fn a_failed_write_is_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("state");
    std::fs::create_dir(&sub).unwrap();
    let file = sub.join("state.json");
    let e = Emulator::new(config(0, Some(file.clone()))).unwrap();
    create_user(&e, "first").await;
    std::fs::remove_dir_all(&sub).unwrap();
    let a = call(&e, "POST", "/Users", Some(user_body("second"))).await;
    assert_eq!(
        (a.status, a.error()),
        (500, "Service failed to process the request.")
    );
}

#[tokio::test]
async fn every_response_has_aws_headers() {
    let e = emulator();
    let u = create_user(&e, "bjensen").await;
    // `send` checks Content-Type and x-amzn-RequestId on each, 204s included.
    let a = call(&e, "DELETE", &format!("/Users/{u}"), None).await;
    assert_eq!(a.status, 204);
    let b = call(&e, "GET", "/Users", None).await;
    assert_ne!(a.headers["x-amzn-requestid"], b.headers["x-amzn-requestid"]);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(crate::scim::filter::tests::config(128))]

        /// Any method, path tail, query and body: an answer with AWS's headers, never a
        /// panic.
        #[test]
        fn never_panics(
            method in prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]),
            resource in prop::sample::select(vec!["/Users", "/Groups", "/Users/x", "/Groups/x", "/Schemas/x", "/Bulk", ""]),
            query in "[ -~]{0,20}",
            body in prop_oneof![
                Just(String::new()),
                "\\PC{0,40}",
                Just(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"emails[type eq \"w\"].x","value":{}}]}"#.to_owned()),
                Just(r#"{"userName":"a","displayName":"b","name":{"givenName":"c","familyName":"d"},"emails":[{"value":"e","primary":true}]}"#.to_owned()),
            ],
        ) {
            let e = emulator();
            runtime().block_on(async {
                let query = filter(&query);
                let path = format!("{}{resource}?filter={query}", e.base_path());
                let r = Request::builder()
                    .method(method)
                    .uri(path)
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Bytes::from(body))
                    .unwrap();
                let _ = send(&e, r).await;
            });
        }
    }
}
