//! The embedded rules, one by one: each rule id, under each action its check supports
//! and in observe mode, on a request that triggers it; and the guide's own example
//! requests, which must never be rejected. Pure: the library's rules engine and verdict.

use scimguard::rules::{Action, Mode, RequestView, RuleSet};
use scimguard::scim::{classify, Query};
use scimguard::verdict::{decide, Verdict};
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A request: method, path with query, body.
struct Req {
    method: &'static str,
    target: String,
    body: Vec<u8>,
}

fn req(method: &'static str, target: &str, body: Value) -> Req {
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    Req {
        method,
        target: target.to_owned(),
        body,
    }
}

fn raw(method: &'static str, target: &str, body: &str) -> Req {
    Req {
        method,
        target: target.to_owned(),
        body: body.as_bytes().to_vec(),
    }
}

/// A CreateUser body every rule accepts.
fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "bjensen",
        "displayName": "Babs Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}]
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn members(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!({"value": format!("u-{i}")})).collect())
}

/// One request per rule id that makes that rule, and only the fixable way, fire.
fn triggers() -> Vec<(&'static str, Req)> {
    vec![
        (
            "endpoint.unsupported",
            req("POST", "/scim/v2/Bulk", json!({})),
        ),
        ("endpoint.me", req("GET", "/scim/v2/Me", Value::Null)),
        (
            "endpoint.search",
            req("POST", "/scim/v2/Users/.search", json!({})),
        ),
        (
            "endpoint.path-shape",
            req("GET", "/t/scim/v2Groups/g-1", Value::Null),
        ),
        (
            "endpoint.unknown",
            req("GET", "/scim/v2/Custom", Value::Null),
        ),
        (
            "user.types",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "userName", json!(123)),
            ),
        ),
        (
            "user.username-length",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "userName", json!("u".repeat(129))),
            ),
        ),
        (
            "user.display-name-length",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "displayName", json!("d".repeat(1025))),
            ),
        ),
        (
            "user.long-values",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "title", json!("t".repeat(1025))),
            ),
        ),
        ("user.username-email", req("POST", "/scim/v2/Users", user())),
        (
            "group.types",
            req(
                "POST",
                "/scim/v2/Groups",
                json!({"displayName": "G", "members": [{"value": 7}]}),
            ),
        ),
        (
            "group.display-name-length",
            req(
                "POST",
                "/scim/v2/Groups",
                json!({"displayName": "g".repeat(1025)}),
            ),
        ),
        (
            "group.patch.remove-all-members",
            req(
                "PATCH",
                "/scim/v2/Groups/g-1",
                patch(json!([{"op": "remove", "path": "members"}])),
            ),
        ),
        (
            "list.cursor",
            req("GET", "/scim/v2/Users?cursor=abc%24", Value::Null),
        ),
        (
            "body.json",
            raw("POST", "/scim/v2/Users", "{\"userName\": "),
        ),
        (
            "user.required",
            req("POST", "/scim/v2/Users", json!({"userName": "b"})),
        ),
        (
            "user.unsupported-attributes",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "photos", json!([{"value": "https://x/p.jpg"}])),
            ),
        ),
        (
            "user.display-sub-attribute",
            req(
                "POST",
                "/scim/v2/Users",
                with(
                    user(),
                    "emails",
                    json!([{"value": "b@x", "primary": true, "display": "B"}]),
                ),
            ),
        ),
        (
            "user.manager-display-name",
            req(
                "POST",
                "/scim/v2/Users",
                with(
                    user(),
                    ENTERPRISE,
                    json!({"manager": {"value": "m-1", "displayName": "Boss"}}),
                ),
            ),
        ),
        (
            "user.multi-value",
            req(
                "POST",
                "/scim/v2/Users",
                with(
                    user(),
                    "phoneNumbers",
                    json!([{"value": "1", "type": "home"}, {"value": "2", "type": "work"}]),
                ),
            ),
        ),
        (
            "user.email-primary",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "emails", json!([{"value": "b@x", "type": "work"}])),
            ),
        ),
        (
            "user.groups-on-create",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "groups", json!([{"value": "g-1"}])),
            ),
        ),
        (
            "user.read-only",
            req(
                "PUT",
                "/scim/v2/Users/u-1",
                with(user(), "meta", json!({"resourceType": "User"})),
            ),
        ),
        (
            "user.unknown-schemas",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "urn:example:custom:2.0:User", json!({"badge": "7"})),
            ),
        ),
        (
            "user.empty-string",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "nickName", json!("")),
            ),
        ),
        (
            "user.manager-string",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), ENTERPRISE, json!({"manager": "m-1"})),
            ),
        ),
        (
            "user.refused-characters",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "displayName", json!("Babs\tJensen")),
            ),
        ),
        (
            "user.control-characters",
            req(
                "POST",
                "/scim/v2/Users",
                with(user(), "profileUrl", json!("https://x/\u{200B}b")),
            ),
        ),
        (
            "patch.op-supported",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(json!([{"op": "move", "path": "title", "value": "x"}])),
            ),
        ),
        (
            "patch.op-case",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(json!([{"op": "Replace", "path": "title", "value": "x"}])),
            ),
        ),
        (
            "patch.path-required",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(json!([{"op": "remove"}])),
            ),
        ),
        (
            "patch.value-required",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(json!([{"op": "add", "path": "title"}])),
            ),
        ),
        (
            "user.patch.paths",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(json!([{"op": "replace", "path": "DisplayName", "value": "x"}])),
            ),
        ),
        (
            "user.patch.remove-forbidden",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(json!([{"op": "remove", "path": "active"}])),
            ),
        ),
        (
            "user.patch.single-operation",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(
                    json!([{"op": "replace", "path": "userName", "value": "a"}, {"op": "replace", "path": "userName", "value": "b"}]),
                ),
            ),
        ),
        (
            "patch.filter-eq-only",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(
                    json!([{"op": "replace", "path": "emails[type ne \"home\"].value", "value": "x@y"}]),
                ),
            ),
        ),
        (
            "user.patch.pathless-split",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(json!([{"op": "replace", "value": {"title": "a", "nickName": "b"}}])),
            ),
        ),
        (
            "user.patch.active-string",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(json!([{"op": "replace", "path": "active", "value": "False"}])),
            ),
        ),
        (
            "user.patch.values",
            req(
                "PATCH",
                "/scim/v2/Users/u-1",
                patch(
                    json!([{"op": "add", "path": "emails", "value": [{"value": "a@x", "primary": true}, {"value": "b@x"}]}]),
                ),
            ),
        ),
        (
            "group.put",
            req("PUT", "/scim/v2/Groups/g-1", json!({"displayName": "G"})),
        ),
        (
            "group.required",
            req("POST", "/scim/v2/Groups", json!({"externalId": "7"})),
        ),
        (
            "group.unknown-schemas",
            req(
                "POST",
                "/scim/v2/Groups",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "urn:ietf:params:scim:schemas:extension:ADSCIM:2.0:Group"], "displayName": "G"}),
            ),
        ),
        (
            "group.read-only",
            req(
                "POST",
                "/scim/v2/Groups",
                json!({"displayName": "G", "meta": {"resourceType": "Group"}}),
            ),
        ),
        (
            "group.refused-characters",
            req(
                "POST",
                "/scim/v2/Groups",
                json!({"displayName": "R&D <core>"}),
            ),
        ),
        (
            "group.member-entries",
            req(
                "POST",
                "/scim/v2/Groups",
                json!({"displayName": "G", "members": [{"value": "u-1", "display": "U", "$ref": null}]}),
            ),
        ),
        (
            "group.members-limit",
            req(
                "POST",
                "/scim/v2/Groups",
                json!({"displayName": "G", "members": members(150)}),
            ),
        ),
        (
            "group.patch.paths",
            req(
                "PATCH",
                "/scim/v2/Groups/g-1",
                patch(json!([{"op": "replace", "path": "ExternalID", "value": "7"}])),
            ),
        ),
        (
            "group.patch.pathless",
            req(
                "PATCH",
                "/scim/v2/Groups/g-1",
                patch(json!([{"op": "replace", "value": {"id": "g-1", "displayName": "G2"}}])),
            ),
        ),
        (
            "group.patch.replace-members",
            req(
                "PATCH",
                "/scim/v2/Groups/g-1",
                patch(json!([{"op": "replace", "path": "members", "value": [{"value": "u-1"}]}])),
            ),
        ),
        (
            "group.patch.remove-member-filter",
            req(
                "PATCH",
                "/scim/v2/Groups/g-1",
                patch(json!([{"op": "remove", "path": "members[value eq \"u-1\"]"}])),
            ),
        ),
        (
            "group.duplicate-members",
            req(
                "PATCH",
                "/scim/v2/Groups/g-1",
                patch(
                    json!([{"op": "add", "path": "members", "value": [{"value": "u-1"}, {"value": "u-1"}]}]),
                ),
            ),
        ),
        (
            "group.patch.members-limit",
            req(
                "PATCH",
                "/scim/v2/Groups/g-1",
                patch(json!([{"op": "add", "path": "members", "value": members(250)}])),
            ),
        ),
        (
            "list.query",
            req(
                "GET",
                "/scim/v2/Users?filter=userName%20eq%20%22a%22&filter=userName%20eq%20%22b%22",
                Value::Null,
            ),
        ),
        (
            "list.filter-syntax",
            req("GET", "/scim/v2/Users?filter=userName+eq", Value::Null),
        ),
        (
            "list.filter-operators",
            req(
                "GET",
                "/scim/v2/Users?filter=userName+co+%22jen%22",
                Value::Null,
            ),
        ),
        (
            "user.list.filter-attributes",
            req(
                "GET",
                "/scim/v2/Users?filter=displayName+eq+%22Babs%22",
                Value::Null,
            ),
        ),
        (
            "group.list.filter-attributes",
            req(
                "GET",
                "/scim/v2/Groups?filter=userName+eq+%22a%22",
                Value::Null,
            ),
        ),
        (
            "list.filter-empty-value",
            req(
                "GET",
                "/scim/v2/Groups?filter=displayName+eq+%22%22",
                Value::Null,
            ),
        ),
        (
            "list.ignored-parameters",
            req("GET", "/scim/v2/Users?count=101", Value::Null),
        ),
    ]
}

/// Whether a message still holds a `{name}` placeholder (JSON in values has quotes).
fn has_placeholder(message: &str) -> bool {
    message.split('{').skip(1).any(|rest| {
        rest.split_once('}').is_some_and(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic())
        })
    })
}

/// The embedded rules with every rule off but `id`, which gets `action`.
fn only(id: &str, action: Action) -> RuleSet {
    let mut rules = RuleSet::embedded().expect("the embedded rules parse");
    let ids: Vec<String> = rules.rules().iter().map(|r| r.id.clone()).collect();
    for other in ids.iter().filter(|o| *o != id) {
        rules.set_action(other, Action::Off).unwrap();
    }
    rules.set_action(id, action).unwrap();
    rules
}

fn evaluate(rules: &RuleSet, request: &Req) -> scimguard::rules::Evaluation {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let classified = classify(request.method, path);
    let query = Query::parse(query);
    rules.evaluate(&RequestView {
        operation: classified.operation,
        path,
        resource_id: classified.id.as_deref(),
        query: &query,
        body: &request.body,
    })
}

#[test]
fn every_embedded_rule_has_a_trigger_here() {
    let rules = RuleSet::embedded().expect("the embedded rules parse");
    let covered: Vec<&str> = triggers().iter().map(|(id, _)| *id).collect();
    for rule in rules.rules() {
        assert!(
            covered.contains(&rule.id.as_str()),
            "rule `{}` has no test trigger",
            rule.id
        );
    }
    assert_eq!(
        covered.len(),
        rules.rules().len(),
        "a trigger names a rule that does not exist"
    );
}

#[test]
fn each_rule_under_each_action_it_supports_and_in_observe_mode() {
    let embedded = RuleSet::embedded().unwrap();
    for (id, request) in triggers() {
        let rule = embedded.rules().iter().find(|r| r.id == id).unwrap();
        let mut actions = vec![Action::Reject, Action::Warn, Action::Off];
        if rule.check.can_rewrite() {
            actions.push(Action::Rewrite);
        }
        for action in actions {
            let rules = only(id, action);
            let mut evaluation = evaluate(&rules, &request);
            let verdict = decide(&mut evaluation, Mode::Enforce);
            let mine: Vec<_> = evaluation
                .findings
                .iter()
                .filter(|f| f.rule == id)
                .collect();
            match action {
                Action::Off => {
                    assert!(mine.is_empty(), "{id} off still fired");
                    assert_eq!(verdict, Verdict::Forward, "{id} off");
                }
                Action::Warn => {
                    assert!(!mine.is_empty(), "{id} under warn did not fire");
                    assert!(
                        mine.iter()
                            .all(|f| f.action == Action::Warn && f.fix.is_none()),
                        "{id}"
                    );
                    assert_eq!(verdict, Verdict::Forward, "{id} warn changes nothing");
                    assert!(
                        !has_placeholder(&mine[0].message),
                        "{id}: unfilled placeholder in {:?}",
                        mine[0].message
                    );
                }
                Action::Reject => {
                    assert!(!mine.is_empty(), "{id} under reject did not fire");
                    let Verdict::Reject(error) = verdict else {
                        panic!("{id} under reject: {verdict:?}")
                    };
                    assert_eq!(error.status, "400");
                    assert!(
                        error.detail.contains(&format!("[{id}]")),
                        "{id}: {}",
                        error.detail
                    );
                    assert!(error.detail.contains(&mine[0].message), "{id}");
                    assert!(error.scim_type.is_some(), "{id}");
                }
                // A repair's rewrite needs the group's members from the upstream: the
                // pure judgement forwards, and the pipeline repairs (tests/it/repair.rs).
                Action::Rewrite if scimguard::repair::REPAIR_RULES.contains(&id) => {
                    assert!(!mine.is_empty(), "{id} under rewrite did not fire");
                    assert!(mine.iter().all(|f| f.action == Action::Rewrite), "{id}");
                    assert_eq!(verdict, Verdict::Forward, "{id}: repaired by the pipeline");
                }
                Action::Rewrite => {
                    assert!(!mine.is_empty(), "{id} under rewrite did not fire");
                    assert!(
                        mine.iter()
                            .all(|f| f.action == Action::Rewrite && f.fix.is_some()),
                        "{id}: {mine:?}"
                    );
                    let Verdict::Rewrite { body, .. } = verdict else {
                        panic!("{id} under rewrite: {verdict:?}")
                    };
                    assert_ne!(body, request.body, "{id}: the rewrite changed nothing");
                    // The fix holds: the rewritten request no longer triggers the rule.
                    let fixed = Req {
                        method: request.method,
                        target: request.target.clone(),
                        body,
                    };
                    let again = evaluate(&rules, &fixed);
                    assert!(
                        again.findings.iter().all(|f| f.rule != id),
                        "{id}: still fires after its own fix: {:?}",
                        again.findings
                    );
                }
            }
            // Observe: the same findings, nothing changed or refused.
            let mut evaluation = evaluate(&rules, &request);
            assert_eq!(
                decide(&mut evaluation, Mode::Observe),
                Verdict::Forward,
                "{id} observe"
            );
        }
    }
}

#[test]
fn a_rewrite_that_cannot_fix_rejects_instead() {
    // `groups` cannot be made a PatchUser path by any fix.
    let rules = only("user.patch.paths", Action::Rewrite);
    let request = req(
        "PATCH",
        "/scim/v2/Users/u-1",
        patch(json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}])),
    );
    let verdict = decide(&mut evaluate(&rules, &request), Mode::Enforce);
    assert!(matches!(verdict, Verdict::Reject(_)), "{verdict:?}");
}

#[test]
fn several_problems_are_all_reported() {
    let rules = RuleSet::embedded().unwrap();
    let body = json!({"userName": "a\tb", "name": {"givenName": "A"}});
    let verdict = decide(
        &mut evaluate(&rules, &req("POST", "/scim/v2/Users", body)),
        Mode::Enforce,
    );
    let Verdict::Reject(error) = verdict else {
        panic!("{verdict:?}")
    };
    assert!(error.detail.contains("(3 problems)"), "{}", error.detail);
    for needle in ["displayName", "name.familyName", "U+0009"] {
        assert!(
            error.detail.contains(needle),
            "{needle} missing: {}",
            error.detail
        );
    }
}

/// The example requests of the AWS guide, in its order (shared/spec).
fn guide_examples() -> Vec<(&'static str, Req)> {
    let create_user = json!({
        "externalId": "701984", "userName": "bjensen",
        "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara", "middleName": "Jane", "honorificPrefix": "Ms.", "honorificSuffix": "III"},
        "displayName": "Babs Jensen", "nickName": "Babs", "profileUrl": "https://login.example.com/bjensen",
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "addresses": [{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood", "region": "CA", "postalCode": "91608", "country": "USA", "formatted": "100 Universal City Plaza Hollywood, CA 91608 USA", "primary": true}],
        "phoneNumbers": [{"value": "555-555-5555", "type": "work"}],
        "userType": "Employee", "title": "Tour Guide", "preferredLanguage": "en-US", "locale": "en-US", "timezone": "America/Los_Angeles", "active": true,
        ENTERPRISE: {"employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios", "division": "Theme Park", "department": "Tour Operations",
            "manager": {"value": "9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734", "$ref": "../Users/9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734"}}
    });
    let mut put_user = create_user.clone();
    put_user["id"] = json!("9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074");
    put_user["nickName"] = json!("BabJ");
    let g = "/scim/v2/Groups/9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d";
    vec![
        ("CreateGroup", req("POST", "/t/scim/v2/Groups", json!({"externalId": "701984", "displayName": "Group Bar", "members": [{"value": "9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074", "$ref": "../Users/9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074", "type": "User"}]}))),
        ("CreateUser", req("POST", "/t/scim/v2/Users", create_user)),
        ("DeleteGroup", req("DELETE", "/t/scim/v2/Groups/9067729b3d-a2cfc8a5-f4ab-4443-9d7d-b32a9013c554", Value::Null)),
        ("DeleteUser", req("DELETE", "/t/scim/v2/Users/9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734", Value::Null)),
        ("GetGroup", req("GET", "/t/scim/v2/Groups/9067729b3d-a2cfc8a5-f4ab-4443-9d7d-b32a9013c554", Value::Null)),
        ("GetSchema", req("GET", "/t/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", Value::Null)),
        ("GetUser", req("GET", "/t/scim/v2/Users/9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734", Value::Null)),
        ("ListGroups", req("GET", "/t/scim/v2/Groups", Value::Null)),
        ("ListGroups displayName", req("GET", "/t/scim/v2/Groups?filter=displayName%20eq%20%22Group%20Bar%22", Value::Null)),
        ("ListGroups externalId", req("GET", "/t/scim/v2/Groups?filter=externalId%20eq%20%22701984%22", Value::Null)),
        ("ListGroups id and members", req("GET", "/t/scim/v2/Groups?filter=id%20eq%20%2290677c608a-a9f17294-7931-41a5-9c00-6e7ace3c2c11%22%20and%20members%20eq%20%2290677c608a-787142a0-3f27-4cd3-afb6-8aed7ce87094%22", Value::Null)),
        ("ListResourceTypes", req("GET", "/t/scim/v2/ResourceTypes", Value::Null)),
        ("ListSchemas", req("GET", "/t/scim/v2/Schemas", Value::Null)),
        ("ListUsers", req("GET", "/t/scim/v2/Users", Value::Null)),
        ("ListUsers externalId", req("GET", "/t/scim/v2/Users?filter=externalId%20eq%20%22701984%22", Value::Null)),
        ("ListUsers userName", req("GET", "/t/scim/v2/Users?filter=userName%20eq%20%22bjensen%22", Value::Null)),
        ("ListUsers id and manager", req("GET", "/t/scim/v2/Users?filter=id%20eq%20%2290677c608a-7afcdc23-0bd4-4fb7-b2ff-10ccffdff447%22%20and%20manager%20eq%20%229067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734%22", Value::Null)),
        ("PatchGroup displayName", req("PATCH", "/t/scim/v2/Groups/9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d", patch(json!([{"op": "replace", "value": {"id": "9067729b3d-07124c20-d960-4a47-93ff-460d76461f81", "displayName": "Group Foo New"}}])))),
        ("PatchGroup add members", req("PATCH", g, patch(json!([{"op": "add", "path": "members", "value": [{"value": "906722b2be-ee23ed58-6e4e-4b2f-a94a-3ace8456a36c"}]}])))),
        ("PatchGroup remove members", req("PATCH", g, patch(json!([{"op": "remove", "path": "members", "value": [{"value": "906722b2be-61c204e7-56d0-4dad-882d-f41911b31ccb"}, {"value": "906722b2be-da1f7ef3-3e37-473e-95be-df2efaa2590d"}]}])))),
        ("PatchUser", req("PATCH", "/t/scim/v2/Users/9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074", patch(json!([{"op": "replace", "path": "active", "value": "false"}])))),
        ("PutUser", req("PUT", "/t/scim/v2/Users/9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074", put_user)),
        // The live guide (shared/spec/aws-guide-changes.md): cursor pages, the new
        // filters with and without a cursor, count, roles on CreateUser, UUID ids.
        ("ListUsers first page", req("GET", "/t/scim/v2/Users?cursor", Value::Null)),
        ("ListUsers next page", req("GET", "/t/scim/v2/Users?cursor=VGVzdFVzZXJDdXJzb3I", Value::Null)),
        ("ListUsers count", req("GET", "/t/scim/v2/Users?cursor&count=100", Value::Null)),
        ("ListUsers groups.value", req("GET", "/t/scim/v2/Users?filter=groups.value%20eq%20%220458a488-2081-70c8-4b0b-3e4b2b10ddb5%22", Value::Null)),
        ("ListUsers groups.value first page", req("GET", "/t/scim/v2/Users?cursor&filter=groups.value%20eq%20%220458a488-2081-70c8-4b0b-3e4b2b10ddb5%22", Value::Null)),
        ("ListUsers groups.value next page", req("GET", "/t/scim/v2/Users?cursor=Q3Vyc29yVXNlckZpbHRlcg&filter=groups.value%20eq%20%220458a488-2081-70c8-4b0b-3e4b2b10ddb5%22", Value::Null)),
        ("ListGroups first page", req("GET", "/t/scim/v2/Groups?cursor", Value::Null)),
        ("ListGroups next page", req("GET", "/t/scim/v2/Groups?cursor=VGVzdEdyb3VwQ3Vyc29y", Value::Null)),
        ("ListGroups members.value", req("GET", "/t/scim/v2/Groups?filter=members.value%20eq%20%2204285428-40b1-7000-1624-dbde7efebbbf%22", Value::Null)),
        ("ListGroups members.value next page", req("GET", "/t/scim/v2/Groups?cursor=Q3Vyc29yR3JvdXBzRmlsdGVy&filter=members.value%20eq%20%2204285428-40b1-7000-1624-dbde7efebbbf%22", Value::Null)),
        ("CreateUser with roles", req("POST", "/t/scim/v2/Users", with(user(), "roles", json!([{"value": "Researcher", "type": "work", "primary": true}])))),
        ("GetUser UUID id", req("GET", "/t/scim/v2/Users/5418a458-c0a1-7066-bdd4-9ea543c0cf6d", Value::Null)),
        ("ServiceProviderConfig", req("GET", "/t/scim/v2/ServiceProviderConfig", Value::Null)),
    ]
}

#[test]
fn the_guides_example_requests_are_forwarded_or_rewritten_never_rejected() {
    let rules = RuleSet::embedded().unwrap();
    for (name, request) in guide_examples() {
        let mut evaluation = evaluate(&rules, &request);
        let verdict = decide(&mut evaluation, Mode::Enforce);
        assert!(
            !matches!(verdict, Verdict::Reject(_)),
            "the guide's {name} example is rejected: {verdict:?}"
        );
    }
    // Replacing members, which real AWS refuses although the guide shows it ("Replacing
    // group memberships is not supported."), is repaired: not refused, but marked for
    // the repair.
    let replace = req(
        "PATCH",
        "/t/scim/v2/Groups/9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d",
        patch(
            json!([{"op": "replace", "path": "members", "value": [{"value": "906722b2be-61c204e7-56d0-4dad-882d-f41911b31ccb"}, {"value": "906722b2be-da1f7ef3-3e37-473e-95be-df2efaa2590d"}]}]),
        ),
    );
    let mut evaluation = evaluate(&rules, &replace);
    assert!(
        evaluation
            .findings
            .iter()
            .any(|f| f.rule == "group.patch.replace-members" && f.action == Action::Rewrite),
        "{:?}",
        evaluation.findings
    );
    assert_eq!(decide(&mut evaluation, Mode::Enforce), Verdict::Forward);
}

#[test]
fn a_bad_rules_file_names_the_line_and_the_fix() {
    let text = "[[rule]]\nid = \"x.y\"\noperations = [\"CreateUser\"]\ncheck = { kind = \"required\", attributes = [\"userName\"] }\naction = \"rewrite\"\nmessage = \"m\"\nsource = \"s\"\n";
    let err = RuleSet::parse(text, "bad.toml").unwrap_err().to_string();
    assert!(err.starts_with("bad.toml:5:"), "{err}");
    assert!(
        err.contains("cannot rewrite") && err.contains("Fix: use reject, warn or off"),
        "{err}"
    );

    let unknown = text
        .replace("CreateUser", "CreateUsers")
        .replace("rewrite", "reject");
    let err = RuleSet::parse(&unknown, "bad.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("bad.toml:3:")
            && err.contains("CreateUsers")
            && err.contains("CreateUser,"),
        "{err}"
    );

    let kind = text.replace("required", "requird");
    let err = RuleSet::parse(&kind, "bad.toml").unwrap_err().to_string();
    assert!(
        err.starts_with("bad.toml:4:") && err.contains("requird"),
        "{err}"
    );
}
