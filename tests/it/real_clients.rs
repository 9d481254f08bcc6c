//! AWS as its live guide describes it today, and what real clients send (issue 16's
//! rule-level points), through the proxy over real sockets: in front of a recording
//! upstream, of an upstream that answers an AWS error, and of the embedded emulator.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use scimguard::cli::RunArgs;
use scimguard::emulator::{Emulator, EmulatorConfig};
use scimguard::rules::Mode;
use scimguard::server::{serve, ServerOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const TENANT: &str = "d-1234567890";
const TOKEN: &str = "real-clients-test-token";

async fn call_raw(
    proxy: &TestProxy,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let request = Request::builder()
        .method(method)
        .uri(proxy.url(path))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/scim+json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, headers, body, _) = send(&http_client(), request).await;
    (status, headers, body)
}

async fn call(
    proxy: &TestProxy,
    method: Method,
    path: &str,
    body: &Value,
) -> (StatusCode, HeaderMap, Bytes) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    call_raw(proxy, method, path, bytes).await
}

fn rules_header(headers: &HeaderMap) -> &str {
    headers
        .get("x-scimguard-rules")
        .map_or("", |v| v.to_str().unwrap())
}

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "bjensen@example.com", "displayName": "Babs Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}]
    })
}

/// The embedded emulator, served on 127.0.0.1:0; its base URL.
async fn emulator() -> String {
    let emulator = Emulator::new(EmulatorConfig {
        tenant: TENANT.to_owned(),
        token: TOKEN.to_owned(),
        state_file: None,
        rate: 1000,
    })
    .expect("the emulator starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ServerOptions {
        shutdown_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    };
    tokio::spawn(serve(
        listener,
        emulator,
        options,
        std::future::pending::<()>(),
    ));
    format!("http://{addr}")
}

#[tokio::test]
async fn the_live_guides_list_requests_are_forwarded_untouched() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let group = "0458a488-2081-70c8-4b0b-3e4b2b10ddb5";
    let user = "04285428-40b1-7000-1624-dbde7efebbbf";
    let targets = [
        format!("/t/scim/v2/Users?filter=groups.value%20eq%20%22{group}%22"),
        format!("/t/scim/v2/Users?cursor&filter=groups.value%20eq%20%22{group}%22"),
        format!("/t/scim/v2/Users?cursor=Q3Vyc29yVXNlckZpbHRlcg&filter=groups.value%20eq%20%22{group}%22"),
        format!("/t/scim/v2/Groups?filter=members.value%20eq%20%22{user}%22"),
        format!("/t/scim/v2/Groups?cursor=Q3Vyc29yR3JvdXBzRmlsdGVy&filter=members.value%20eq%20%22{user}%22"),
        "/t/scim/v2/Users?cursor&count=100".to_owned(),
        "/t/scim/v2/Users?count=1".to_owned(),
        "/t/scim/v2/Users?cursor=ab+c/d=:_-".to_owned(),
        "/t/scim/v2/Schemas".to_owned(),
        "/t/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User".to_owned(),
        "/t/scim/v2/ResourceTypes".to_owned(),
        format!("/t/scim/v2/Users/{user}"),
    ];
    for target in &targets {
        let (status, headers, _) = call(&proxy, Method::GET, target, &Value::Null).await;
        assert_eq!(status, 201, "{target}");
        assert_eq!(headers["x-scimguard-verdict"], "forwarded", "{target}");
        assert_eq!(rules_header(&headers), "", "{target}");
    }
    assert_eq!(upstream.seen().len(), targets.len());
}

#[tokio::test]
async fn a_cursor_off_awss_pattern_is_refused_and_paging_parameters_are_explained() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let (status, headers, body) = call(
        &proxy,
        Method::GET,
        "/t/scim/v2/Users?cursor=abc%24",
        &Value::Null,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(rules_header(&headers), "list.cursor");
    let (_, detail) = scim_error(&body);
    assert!(detail.contains("[-a-zA-Z0-9+=/:_]*"), "{detail}");
    assert!(upstream.seen().is_empty());
    for (query, effect) in [
        ("count=0", "AWS's minimum is 1"),
        ("count=500", "at most 100 results per page"),
        ("startIndex=101", "page with cursor instead"),
    ] {
        let target = format!("/t/scim/v2/Users?{query}");
        let (status, headers, _) = call(&proxy, Method::GET, &target, &Value::Null).await;
        assert_eq!(status, 201, "{query}");
        assert_eq!(rules_header(&headers), "list.ignored-parameters", "{query}");
        // The warning's text, as the log and --explain-log show it.
        let rules = scimguard::rules::RuleSet::embedded().unwrap();
        let judged = scimguard::verdict::judge(&rules, Mode::Enforce, "GET", &target, b"");
        let message = &judged.evaluation.findings[0].message;
        assert!(message.contains(effect), "{query}: {message}");
    }
}

#[tokio::test]
async fn removing_or_replacing_every_member_is_refused_with_how_to_name_members() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    for op in [
        json!({"op": "remove", "path": "members"}),
        json!({"op": "remove", "path": "members", "value": null}),
        json!({"op": "Remove", "path": "Members", "value": []}),
    ] {
        let body = json!({"schemas": [PATCH_OP], "Operations": [op]});
        let (status, headers, body) =
            call(&proxy, Method::PATCH, "/t/scim/v2/Groups/g-1", &body).await;
        assert_eq!(status, 400, "{op}");
        assert!(
            rules_header(&headers).contains("group.patch.remove-all-members"),
            "{op}"
        );
        let (_, detail) = scim_error(&body);
        assert!(
            detail.contains(
                r#"{"op": "remove", "path": "members", "value": [{"value": "<user id>"}"#
            ),
            "{detail}"
        );
        assert!(detail.contains("patchgroup.html"), "{detail}");
    }
    let replace = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "members", "value": [{"value": "u-1"}]}]});
    let (status, headers, _) = call(&proxy, Method::PATCH, "/t/scim/v2/Groups/g-1", &replace).await;
    assert_eq!(status, 400);
    assert_eq!(rules_header(&headers), "group.patch.replace-members");
    // Removing named members still goes through.
    let named = json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "members", "value": [{"value": "u-1"}]}]});
    let (status, _, _) = call(&proxy, Method::PATCH, "/t/scim/v2/Groups/g-1", &named).await;
    assert_eq!(status, 201);
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn the_emulator_refuses_remove_all_and_wrong_types_with_awss_text() {
    // The proxy in observe mode forwards everything, so the emulator judges on its own.
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(emulator().await),
        mode: Some(Mode::Observe),
        ..RunArgs::default()
    })
    .await;
    let base = format!("/{TENANT}/scim/v2");
    let (status, _, body) = call(
        &proxy,
        Method::POST,
        &format!("{base}/Groups"),
        &json!({"displayName": "Engineers"}),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let remove_all =
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "members"}]});
    let (status, _, body) = call(
        &proxy,
        Method::PATCH,
        &format!("{base}/Groups/{id}"),
        &remove_all,
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let typed = json!({"userName": 123, "displayName": ["x"], "name": {"givenName": "B", "familyName": "J"}});
    let (status, _, body) = call(&proxy, Method::POST, &format!("{base}/Users"), &typed).await;
    assert_eq!(status, 400);
    let (_, detail) = scim_error(&body);
    assert_eq!(
        detail,
        "Request is unparsable, syntactically incorrect, or violates schema."
    );
}

#[tokio::test]
async fn wrong_json_types_and_overlong_values_are_named() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    for (key, value, needle) in [
        ("userName", json!(123), "userName at /userName is a number; AWS IAM Identity Center wants a string"),
        ("displayName", json!(["x"]), "displayName at /displayName is an array; AWS IAM Identity Center wants a string"),
        ("active", json!("yes"), "active at /active is a string; AWS IAM Identity Center wants a boolean"),
        ("emails", json!([{"value": "b@example.com", "primary": true}, "c@example.com"]), "emails at /emails/1 is a string; AWS IAM Identity Center wants an object"),
        ("name", json!({"givenName": "B", "familyName": false}), "name.familyName at /name/familyName is a boolean; AWS IAM Identity Center wants a string"),
        ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", json!("Sales"), "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User at /urn:ietf:params:scim:schemas:extension:enterprise:2.0:User is a string; AWS IAM Identity Center wants an object"),
    ] {
        let mut typed = user();
        typed[key] = value;
        let (status, headers, body) = call(&proxy, Method::POST, "/t/scim/v2/Users", &typed).await;
        assert_eq!(status, 400, "{key}");
        assert!(rules_header(&headers).contains("user.types"), "{key}");
        let (_, detail) = scim_error(&body);
        assert!(detail.contains(needle), "{needle}: {detail}");
    }
    let group = json!({"displayName": "G", "members": {"value": "u-1"}});
    let (status, _, body) = call(&proxy, Method::POST, "/t/scim/v2/Groups", &group).await;
    assert_eq!(status, 400);
    let (_, detail) = scim_error(&body);
    assert!(
        detail.contains(
            "members at /members is an object; AWS IAM Identity Center wants an array of objects"
        ),
        "{detail}"
    );
    // A 200,000-character userName: AWS's limit is 128.
    let long = json!("u".repeat(200_000));
    let (status, headers, body) = call(
        &proxy,
        Method::POST,
        "/t/scim/v2/Users",
        &json!({"userName": long, "displayName": "L", "name": {"givenName": "L", "familyName": "L"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(rules_header(&headers).contains("user.username-length"));
    let (_, detail) = scim_error(&body);
    assert!(
        detail.contains(
            "userName is 200000 characters long; AWS IAM Identity Center takes at most 128"
        ),
        "{}",
        &detail[..detail.len().min(300)]
    );
    assert!(detail.len() <= 1024, "{}", detail.len());
    // The guide's PatchUser sends active as the string "false": still accepted.
    let active = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": "false"}]});
    let (status, _, _) = call(&proxy, Method::PATCH, "/t/scim/v2/Users/u-1", &active).await;
    assert_eq!(status, 201);
    let patched = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": 5}]});
    let (status, _, body) = call(&proxy, Method::PATCH, "/t/scim/v2/Users/u-1", &patched).await;
    assert_eq!(status, 400);
    assert!(scim_error(&body).1.contains("displayName is a number"));
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn bodiless_writes_and_a_byte_order_mark_are_refused_saying_so() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    for (method, path) in [
        (Method::POST, "/t/scim/v2/Users"),
        (Method::PUT, "/t/scim/v2/Users/u-1"),
        (Method::PATCH, "/t/scim/v2/Users/u-1"),
        (Method::POST, "/t/scim/v2/Groups"),
        (Method::PATCH, "/t/scim/v2/Groups/g-1"),
    ] {
        let (status, headers, body) = call_raw(&proxy, method.clone(), path, Vec::new()).await;
        assert_eq!(status, 400, "{method} {path}");
        assert_eq!(rules_header(&headers), "body.json");
        let (_, detail) = scim_error(&body);
        assert!(detail.contains("found no body"), "{detail}");
        assert!(!detail.contains("source: CreateUser"), "{detail}");
    }
    // Content-Length: 2 beside Transfer-Encoding: chunked: the chunked body (empty) wins.
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = format!("POST /t/scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("found no body"), "{answer}");
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend(serde_json::to_vec(&user()).unwrap());
    let (status, _, body) = call_raw(&proxy, Method::POST, "/t/scim/v2/Users", bom).await;
    assert_eq!(status, 400);
    assert!(scim_error(&body).1.contains("UTF-8 byte order mark"));
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn paths_missing_a_slash_or_with_an_empty_segment_are_refused_with_the_fix() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let (status, headers, body) =
        call(&proxy, Method::GET, "/t/scim/v2Groups/g-1", &Value::Null).await;
    assert_eq!(status, 400);
    assert!(rules_header(&headers).starts_with("endpoint.path-shape"));
    let (_, detail) = scim_error(&body);
    assert!(detail.contains("no `/` after `/scim/v2`"), "{detail}");
    assert!(detail.contains("…/scim/v2/Groups…"), "{detail}");
    let (status, _, body) = call(&proxy, Method::GET, "/t/scim/v2//Users", &Value::Null).await;
    assert_eq!(status, 400);
    assert!(scim_error(&body).1.contains("Remove the trailing slash"));
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn a_username_that_is_not_an_email_address_is_forwarded_with_a_warning() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let mut body = user();
    body["userName"] = json!("CORP\\bjensen");
    let (status, headers, _) = call(&proxy, Method::POST, "/t/scim/v2/Users", &body).await;
    assert_eq!(status, 201);
    assert_eq!(headers["x-scimguard-verdict"], "forwarded");
    assert_eq!(rules_header(&headers), "user.username-email");
    let (_, headers, _) = call(&proxy, Method::POST, "/t/scim/v2/Users", &user()).await;
    assert_eq!(rules_header(&headers), "");
}

#[tokio::test]
async fn operation_level_texts_say_what_to_do() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let detail = |body: &Bytes| scim_error(body).1;
    let (_, _, body) = call(&proxy, Method::GET, "/t/scim/v2/Me", &Value::Null).await;
    assert!(
        detail(&body).contains("no /Me endpoint"),
        "{}",
        detail(&body)
    );
    assert!(!detail(&body).contains("one request per change"));
    let (_, _, body) = call(&proxy, Method::POST, "/t/scim/v2/.search", &json!({})).await;
    assert!(
        detail(&body).contains("GET /Users?filter="),
        "{}",
        detail(&body)
    );
    let (_, _, body) = call(&proxy, Method::POST, "/t/scim/v2/Bulk", &json!({})).await;
    assert!(
        detail(&body).contains("at path /t/scim/v2/Bulk:"),
        "{}",
        detail(&body)
    );
    let (_, _, body) = call(
        &proxy,
        Method::PUT,
        "/t/scim/v2/Groups/g-1",
        &json!({"displayName": "G"}),
    )
    .await;
    assert!(
        detail(&body).contains("at path /t/scim/v2/Groups/g-1:"),
        "{}",
        detail(&body)
    );
    for body in [
        json!({"schemas": [PATCH_OP]}),
        json!({"schemas": [PATCH_OP], "Operations": []}),
        json!({"Operations": "x"}),
    ] {
        let (status, _, answer) = call(&proxy, Method::PATCH, "/t/scim/v2/Users/u-1", &body).await;
        assert_eq!(status, 400);
        assert!(
            detail(&answer).contains("`Operations` must be a non-empty array of PATCH operations"),
            "{}",
            detail(&answer)
        );
    }
    // A 150-term filter (within the target limit): the detail stays within 1 KiB and says
    // how much is left out.
    let terms: Vec<String> = (0..150).map(|i| format!("userName co \"u{i}\"")).collect();
    let filter = terms.join(" or ").replace(' ', "%20").replace('"', "%22");
    let (status, _, body) = call(
        &proxy,
        Method::GET,
        &format!("/t/scim/v2/Users?filter={filter}"),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 400);
    let text = detail(&body);
    assert!(text.len() <= 1024, "{}", text.len());
    assert!(
        text.ends_with("more characters in scimguard's log)"),
        "{text}"
    );
    // The filter parser suggests eq, the operator AWS takes, not co.
    let (_, _, body) = call(
        &proxy,
        Method::GET,
        "/t/scim/v2/Users?filter=userName%20=%20%22a%22",
        &Value::Null,
    )
    .await;
    let text = detail(&body);
    assert!(text.contains("SCIM spells `=` as `eq`"), "{text}");
    assert!(!text.contains(" co,"), "{text}");
    assert!(upstream.seen().is_empty());
}

/// An upstream that answers every request with `status` and an AWS error body.
async fn aws_error_upstream(status: u16, detail: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "detail": detail, "status": status.to_string()});
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn explained(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn hints_say_predicted_only_in_observe_mode_for_400s_naming_each_rule_once() {
    let dir = tempfile::tempdir().unwrap();
    // Enforce mode, a rewritten request, then AWS's 401: a token problem, no prediction.
    let unauthorized = aws_error_upstream(
        401,
        "The security token included in the request is invalid.",
    )
    .await;
    let log = dir.path().join("enforce.jsonl");
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(format!("http://{unauthorized}")),
        explain_log: Some(log.clone()),
        ..RunArgs::default()
    })
    .await;
    let mut body = user();
    body["emails"] = json!([{"value": "b@example.com"}]);
    let (status, _, _) = call(&proxy, Method::POST, "/t/scim/v2/Users", &body).await;
    assert_eq!(status, 401);
    proxy.shutdown().await.unwrap();
    let line = &explained(&log)[0];
    let hints: Vec<&str> = line["hints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(hints.iter().all(|h| !h.contains("predicted")), "{hints:?}");
    assert!(
        hints.iter().any(|h| h.contains("token problem")
            && h.contains("one year")
            && h.contains("enabled again")),
        "{hints:?}"
    );
    // Observe mode, AWS's 400: predicted, each rule once.
    let refused = aws_error_upstream(
        400,
        "Request is unparsable, syntactically incorrect, or violates schema.",
    )
    .await;
    let log = dir.path().join("observe.jsonl");
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(format!("http://{refused}")),
        explain_log: Some(log.clone()),
        mode: Some(Mode::Observe),
        ..RunArgs::default()
    })
    .await;
    let mut body = user();
    body["photos"] = json!([{"value": "a"}]);
    body["ims"] = json!([{"value": "b"}]);
    let (status, _, _) = call(&proxy, Method::POST, "/t/scim/v2/Users", &body).await;
    assert_eq!(status, 400);
    proxy.shutdown().await.unwrap();
    let line = &explained(&log)[0];
    let hints: Vec<&str> = line["hints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    let predicted: Vec<&&str> = hints.iter().filter(|h| h.contains("predicted")).collect();
    assert_eq!(predicted.len(), 1, "{hints:?}");
    assert_eq!(
        predicted[0].matches("user.unsupported-attributes").count(),
        1,
        "{hints:?}"
    );
}

#[test]
fn the_binary_refuses_unknown_placeholders_and_warns_of_emulator_flags_with_an_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"x.y\"\noperations = [\"CreateUser\"]\ncheck = { kind = \"required\", attributes = [\"userName\"] }\naction = \"reject\"\nmessage = \"{atribute} is missing\"\nsource = \"s\"\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["rules", "--check"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown placeholder {atribute}"),
        "{stderr}"
    );
    // --token with --upstream: the proxy starts, and says the token is ignored.
    let mut child = Command::new(binary())
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "https://scim.us-east-1.amazonaws.com/t/scim/v2",
            "--token",
            "abc",
            "--tenant",
            "t",
        ])
        .env_remove("SCIMGUARD_UPSTREAM")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--token is ignored"), "{stderr}");
    assert!(stderr.contains("--tenant is ignored"), "{stderr}");
    assert!(!stderr.contains("abc"), "{stderr}");
}

#[tokio::test]
async fn a_failed_second_batch_says_request_1_was_applied_without_a_double_period() {
    let upstream = TestUpstream::start(Behaviour::FailFrom(1)).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let members: Vec<Value> = (0..150)
        .map(|i| json!({"value": format!("u-{i}")}))
        .collect();
    let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": members}]});
    let (status, _, body) = call(&proxy, Method::PATCH, "/t/scim/v2/Groups/g-1", &body).await;
    assert_eq!(status, 400);
    let (_, detail) = scim_error(&body);
    assert!(
        detail.contains("Request 1 was applied; request 2 failed"),
        "{detail}"
    );
    assert!(!detail.contains(".."), "{detail}");
    assert_eq!(upstream.seen().len(), 2);
}
