//! The rules through the proxy: rejected, rewritten and forwarded requests, observe
//! mode, action overrides and split member batches, as an IdP and the upstream see them.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use scimguard::cli::RunArgs;
use scimguard::rules::Mode;
use serde_json::{json, Value};

use crate::support::*;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn call(
    proxy: &TestProxy,
    method: Method,
    path: &str,
    body: &Value,
) -> (StatusCode, HeaderMap, Bytes) {
    let request = Request::builder()
        .method(method)
        .uri(proxy.url(path))
        .header("authorization", "Bearer t0k3n")
        .header("content-type", "application/scim+json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let (status, headers, body, _) = send(&http_client(), request).await;
    (status, headers, body)
}

fn user_with_two_emails() -> Value {
    json!({
        "userName": "bjensen@example.com", "displayName": "Babs Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "b@home.example", "type": "home"}, {"value": "bjensen@example.com", "type": "work"}]
    })
}

#[tokio::test]
async fn a_rejected_request_gets_every_problem_in_aws_shape_and_never_reaches_aws() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let body = json!({"userName": "bjensen@example.com", "name": {"givenName": "Barbara"}});
    let (status, headers, body) = call(&proxy, Method::POST, "/t-1/scim/v2/Users", &body).await;

    assert_eq!(status, 400);
    assert_eq!(headers["x-scimguard-verdict"], "rejected");
    assert_eq!(headers["x-scimguard-rules"], "user.required");
    let (status, detail) = scim_error(&body);
    assert_eq!(status, "400");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["scimType"], "invalidValue");
    assert!(detail.contains("(2 problems)"), "{detail}");
    assert!(
        detail.contains("displayName is required")
            && detail.contains("name.familyName is required"),
        "{detail}"
    );
    assert!(detail.contains("CreateUser › Constraints"), "{detail}");
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn a_rewritten_request_reaches_aws_fixed_and_says_so() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let (status, headers, _) = call(
        &proxy,
        Method::POST,
        "/t-1/scim/v2/Users",
        &user_with_two_emails(),
    )
    .await;

    assert_eq!(status, 201);
    assert_eq!(headers["x-scimguard-verdict"], "rewritten");
    assert_eq!(
        headers["x-scimguard-rules"],
        "user.multi-value,user.email-primary"
    );
    let seen = upstream.seen();
    let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        sent["emails"],
        json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
    );
    assert_eq!(
        seen[0].headers["content-length"],
        seen[0].body.len().to_string().as_str()
    );
    assert_eq!(seen[0].headers["authorization"], "Bearer t0k3n");
}

#[tokio::test]
async fn a_clean_request_is_forwarded_with_no_rules_header() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let (status, headers, _) = call(
        &proxy,
        Method::GET,
        "/t-1/scim/v2/Users?filter=userName%20eq%20%22bjensen%22",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(headers["x-scimguard-verdict"], "forwarded");
    assert!(headers.get("x-scimguard-rules").is_none());
}

#[tokio::test]
async fn observe_mode_forwards_byte_for_byte_and_names_the_rules_that_would_act() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        mode: Some(Mode::Observe),
        ..RunArgs::default()
    })
    .await;
    let rejected = json!({"userName": "bjensen@example.com"});
    let (status, headers, _) = call(&proxy, Method::POST, "/scim/v2/Users", &rejected).await;
    assert_eq!(status, 201);
    assert_eq!(headers["x-scimguard-verdict"], "forwarded");
    assert_eq!(headers["x-scimguard-rules"], "user.required");

    let rewritten = user_with_two_emails();
    let (_, headers, _) = call(&proxy, Method::POST, "/scim/v2/Users", &rewritten).await;
    assert_eq!(headers["x-scimguard-verdict"], "forwarded");
    assert_eq!(
        headers["x-scimguard-rules"],
        "user.multi-value,user.email-primary"
    );
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].body,
        serde_json::to_vec(&rewritten).unwrap(),
        "observe mode changes nothing"
    );
}

#[tokio::test]
async fn a_rule_override_changes_its_action() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        rule: vec![
            "user.multi-value=reject".into(),
            "user.email-primary=off".into(),
        ],
        ..RunArgs::default()
    })
    .await;
    let (status, headers, body) = call(
        &proxy,
        Method::POST,
        "/scim/v2/Users",
        &user_with_two_emails(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(headers["x-scimguard-rules"], "user.multi-value");
    let (_, detail) = scim_error(&body);
    assert!(
        detail.contains("kept") && detail.contains("b@home.example"),
        "{detail}"
    );
}

fn add_members(n: usize) -> Value {
    let members: Vec<Value> = (0..n)
        .map(|i| json!({"value": format!("u-{i:03}")}))
        .collect();
    json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": members}]})
}

fn member_values(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|op| op["value"].as_array().cloned().unwrap_or_default())
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_patch_of_250_members_goes_out_as_three_sequential_batches() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let (status, headers, _) = call(
        &proxy,
        Method::PATCH,
        "/t-1/scim/v2/Groups/g-1",
        &add_members(250),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(headers["x-scimguard-verdict"], "rewritten");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    let mut all = Vec::new();
    for (i, request) in seen.iter().enumerate() {
        assert_eq!(request.method, Method::PATCH);
        assert_eq!(request.uri.path(), "/t-1/scim/v2/Groups/g-1");
        assert_eq!(request.headers["authorization"], "Bearer t0k3n");
        let ids = member_values(&request.body);
        assert_eq!(ids.len(), [100, 100, 50][i]);
        all.extend(ids);
    }
    let expected: Vec<String> = (0..250).map(|i| format!("u-{i:03}")).collect();
    assert_eq!(all, expected, "every member once, in order");
}

#[tokio::test]
async fn a_group_created_with_250_members_is_created_then_filled_by_patch() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let members: Vec<Value> = (0..250)
        .map(|i| json!({"value": format!("u-{i:03}")}))
        .collect();
    let body = json!({"displayName": "Big", "members": members});
    let (status, _, response) = call(&proxy, Method::POST, "/t-1/scim/v2/Groups", &body).await;
    assert_eq!(status, 201, "the answer is the creation's");
    assert_eq!(response, UPSTREAM_BODY.as_bytes());
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3);
    let created: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(created["members"].as_array().unwrap().len(), 100);
    for request in &seen[1..] {
        assert_eq!(request.method, Method::PATCH);
        // The id the test upstream answers for the created resource.
        assert_eq!(
            request.uri.path(),
            "/t-1/scim/v2/Groups/9067729b3d-94f1e0b3"
        );
    }
    assert_eq!(member_values(&seen[1].body).len(), 100);
    assert_eq!(member_values(&seen[2].body).len(), 50);
}

#[tokio::test]
async fn a_failed_batch_reports_what_was_applied_and_what_was_not() {
    // The first two requests succeed, the third fails.
    let upstream = TestUpstream::start(Behaviour::FailFrom(2)).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let (status, headers, body) = call(
        &proxy,
        Method::PATCH,
        "/scim/v2/Groups/g-1",
        &add_members(250),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        headers["x-amzn-requestid"],
        "f00dfeed-0000-4000-8000-000000000400"
    );
    let (_, detail) = scim_error(&body);
    assert!(
        detail.contains("3 requests") && detail.contains("Requests 1 to 2 were applied"),
        "{detail}"
    );
    assert!(
        detail.contains("request 3 failed") && detail.contains("Request is unparsable"),
        "{detail}"
    );
    assert!(
        detail.contains("u-200") && detail.contains("u-249") && !detail.contains("u-199"),
        "{detail}"
    );
    assert_eq!(upstream.seen().len(), 3, "nothing is retried");
}
