//! The blast-radius guard through the binary, with the embedded emulator as upstream:
//! deletions past `--guard-deletes` held with 503, reads flowing, the trip in /metrics
//! and /guard, a restart keeping the trip, release by the CLI and by the admin
//! listener, and a large member removal held whole.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::support::*;

const TOKEN: &str = "guard-test-token-0123456789";
const TENANT: &str = "d-9067a1b2c3";

struct Running {
    child: Child,
    endpoint: String,
    admin: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scimguard run` on the embedded emulator, the guard at 5 per minute, its state and
/// the emulator's in `dir`.
fn start(dir: &Path) -> Running {
    let mut child = Command::new(binary())
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args([
            "--token",
            TOKEN,
            "--guard-deletes",
            "5",
            "--guard-window",
            "1m",
        ])
        .arg("--guard-state")
        .arg(dir.join("guard.json"))
        .arg("--state")
        .arg(dir.join("emulator.json"))
        .arg("--record")
        .arg(dir.join("capture.jsonl"))
        .env_remove("SCIMGUARD_UPSTREAM")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let (mut endpoint, mut admin) = (String::new(), String::new());
    for _ in 0..6 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(e) = line.trim_end().strip_prefix("  SCIM endpoint: ") {
            endpoint = e.to_owned();
        }
        if let Some(m) = line.trim_end().strip_prefix("  Metrics:       ") {
            admin = m
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches("/metrics")
                .to_owned();
            break;
        }
    }
    assert!(!endpoint.is_empty() && !admin.is_empty(), "banner");
    Running {
        child,
        endpoint,
        admin,
    }
}

fn stop(mut running: Running) {
    terminate(&mut running.child);
}

async fn call(url: String, method: Method, body: Option<Value>) -> (StatusCode, HeaderMap, Value) {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/scim+json")
        .body(Full::new(
            body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
        ))
        .unwrap();
    let (status, headers, body, _) = send(&http_client(), request).await;
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, headers, body)
}

async fn create_user(endpoint: &str, name: &str) -> String {
    let (status, _, body) = call(
        format!("{endpoint}/Users"),
        Method::POST,
        Some(json!({
            "userName": name, "displayName": name,
            "name": {"givenName": "G", "familyName": "F"},
            "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}]
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// `count` users named `{prefix}{i}`; their ids.
async fn create_users(endpoint: &str, prefix: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(create_user(endpoint, &format!("{prefix}{i}")).await);
    }
    ids
}

/// A new group's id.
async fn create_group(endpoint: &str, name: &str) -> String {
    let (status, _, group) = call(
        format!("{endpoint}/Groups"),
        Method::POST,
        Some(json!({ "displayName": name })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    group["id"].as_str().unwrap().to_owned()
}

/// PATCH /Groups/{group} with one `op` on `members` listing `ids`.
async fn patch_members(
    endpoint: &str,
    group: &str,
    op: &str,
    ids: &[String],
) -> (StatusCode, HeaderMap, Value) {
    let values: Vec<Value> = ids.iter().map(|m| json!({ "value": m })).collect();
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": op, "path": "members", "value": values}]
    });
    call(
        format!("{endpoint}/Groups/{group}"),
        Method::PATCH,
        Some(body),
    )
    .await
}

/// Whether `user` is a member of some group (ListGroups filtered on members).
async fn is_member(endpoint: &str, user: &str) -> bool {
    let (status, _, body) = call(
        format!("{endpoint}/Groups?filter=members%20eq%20%22{user}%22"),
        Method::GET,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["totalResults"].as_u64().unwrap() > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_deletions_are_held_until_an_admin_releases_them() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());
    let endpoint = running.endpoint.clone();
    let mut users = Vec::new();
    for i in 0..10 {
        users.push(create_user(&endpoint, &format!("leaver{i}")).await);
    }

    // Ten DeleteUser: five 204s, then 503s with the guard's text.
    let mut statuses = Vec::new();
    for id in &users {
        let (status, headers, body) =
            call(format!("{endpoint}/Users/{id}"), Method::DELETE, None).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let detail = body["detail"].as_str().unwrap();
            assert!(
                detail.contains("blast-radius guard held this request"),
                "{detail}"
            );
            assert!(
                detail.contains("5 destructive changes") && detail.contains("1m"),
                "{detail}"
            );
            assert!(
                detail.contains(&format!("guard release {TENANT}")),
                "{detail}"
            );
            assert_eq!(body["status"], "503");
            assert_eq!(headers["retry-after"], "300");
            assert_eq!(headers["x-scimguard-verdict"], "held");
        }
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [204, 204, 204, 204, 204, 503, 503, 503, 503, 503]);

    // Reads flow.
    let (status, _, _) = call(format!("{endpoint}/Users"), Method::GET, None).await;
    assert_eq!(status, StatusCode::OK);
    // So do changes that destroy nothing.
    create_user(&endpoint, "joiner").await;

    // /metrics shows the trip; /guard the held operations.
    let admin = running.admin.clone();
    let text = reqwest_text(&format!("{admin}/metrics")).await;
    assert_eq!(
        metric(
            &text,
            &format!("scimguard_guard_tripped{{tenant=\"{TENANT}\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "scimguard_guard_trips_total"), Some(1.0));
    assert_eq!(
        metric(
            &text,
            "scimguard_guard_held_total{operation=\"DeleteUser\"}"
        ),
        Some(5.0)
    );
    let status: Value =
        serde_json::from_str(&reqwest_text(&format!("{admin}/guard")).await).unwrap();
    assert_eq!(status["tenants"][TENANT]["tripped"], true);
    assert_eq!(status["tenants"][TENANT]["trip"]["held"], 5);
    assert_eq!(
        status["tenants"][TENANT]["trip"]["operations"][0]["operation"],
        "DeleteUser"
    );

    // A restart keeps the guard tripped.
    stop(running);
    let running = start(dir.path());
    let endpoint = running.endpoint.clone();
    let admin = running.admin.clone();
    let (status, _, _) = call(
        format!("{endpoint}/Users/{}", users[5]),
        Method::DELETE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Released from the CLI, the next delete goes through.
    let out = Command::new(binary())
        .args(["guard", "release", TENANT, "--admin", &admin])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"released\""));
    let (status, _, _) = call(
        format!("{endpoint}/Users/{}", users[5]),
        Method::DELETE,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let out = Command::new(binary())
        .args(["guard", "status", "--admin", &admin])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["tenants"][TENANT]["tripped"], false);

    // A PATCH removing 10 members at a limit of 5 is held whole: every member stays.
    let members = create_users(&endpoint, "member", 10).await;
    let group = create_group(&endpoint, "engineering").await;
    let (status, ..) = patch_members(&endpoint, &group, "add", &members).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = patch_members(&endpoint, &group, "remove", &members).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    for member in &members {
        assert!(is_member(&endpoint, member).await, "{member} was removed");
    }

    // Released on the admin listener, the IdP's retry removes them all.
    let (status, body) = post(&format!("{admin}/guard/{TENANT}/release")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, ..) = patch_members(&endpoint, &group, "remove", &members).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for member in &members {
        assert!(!is_member(&endpoint, member).await);
    }
    let text = reqwest_text(&format!("{admin}/metrics")).await;
    assert_eq!(
        metric(
            &text,
            &format!("scimguard_guard_tripped{{tenant=\"{TENANT}\"}}")
        ),
        Some(0.0),
        "{text}"
    );
    // One release from the CLI and one here, since the restart.
    assert_eq!(metric(&text, "scimguard_guard_releases_total"), Some(2.0));
    stop(running);

    // The capture records the held requests with the guard's text.
    let capture = std::fs::read_to_string(dir.path().join("capture.jsonl")).unwrap();
    let held: Vec<Value> = capture
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["verdict"] == "held")
        .collect();
    assert!(!held.is_empty(), "{capture}");
    for record in &held {
        assert!(record["error"]
            .as_str()
            .unwrap()
            .contains("blast-radius guard"));
        assert_eq!(record["response"]["status"], 503);
    }
    // Each trip and release is a line of its own, and every reader takes the capture
    // without a warning.
    let events: Vec<(String, String)> = capture
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r.get("event").is_some())
        .map(|r| {
            assert!(r["detail"].as_str().unwrap().contains("guard"), "{r}");
            (
                r["event"].as_str().unwrap().to_owned(),
                r["tenant"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let event = |kind: &str| (kind.to_owned(), TENANT.to_owned());
    assert_eq!(
        events,
        [
            event("guard.trip"),
            event("guard.release"),
            event("guard.trip"),
            event("guard.release")
        ]
    );
    for reader in [&["export-har"][..], &["check"][..]] {
        let out = Command::new(binary())
            .args(reader)
            .arg(dir.path().join("capture.jsonl"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() != Some(2), "{reader:?}: {stderr}");
        assert!(!stderr.contains("skipped"), "{reader:?}: {stderr}");
    }
}

/// A repair's removals count once the group is read: a members `replace` that would
/// remove 6 members at a limit of 5 is held whole, and goes through once released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_counts_the_members_it_would_remove() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());
    let endpoint = running.endpoint.clone();
    let members = create_users(&endpoint, "staff", 8).await;
    let group = create_group(&endpoint, "finance").await;
    let (status, ..) = patch_members(&endpoint, &group, "add", &members).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Keep two: the repair would remove six, above the limit of five.
    let keep = &members[..2];
    let (status, headers, body) = patch_members(&endpoint, &group, "replace", keep).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["x-scimguard-verdict"], "held");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("this request's 6 more"), "{detail}");
    for member in &members {
        assert!(is_member(&endpoint, member).await, "{member} was removed");
    }
    let admin = running.admin.clone();
    let status: Value =
        serde_json::from_str(&reqwest_text(&format!("{admin}/guard")).await).unwrap();
    let held = &status["tenants"][TENANT]["trip"]["operations"][0];
    assert_eq!(held["operation"], "PatchGroup", "{status}");
    assert_eq!(held["changes"]["removed_members"], 6, "{status}");

    // Released, the IdP's retry is repaired: exactly the two remain.
    let (status, body) = post(&format!("{admin}/guard/{TENANT}/release")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = patch_members(&endpoint, &group, "replace", keep).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for (i, member) in members.iter().enumerate() {
        assert_eq!(is_member(&endpoint, member).await, i < 2, "{member}");
    }
    stop(running);
}

async fn reqwest_text(url: &str) -> String {
    let request = Request::builder()
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body, _) = send(&http_client(), request).await;
    assert_eq!(status, StatusCode::OK, "{url}");
    String::from_utf8(body.to_vec()).unwrap()
}

async fn post(url: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body, _) = send(&http_client(), request).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}
