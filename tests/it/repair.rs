//! Repairs of group changes AWS refuses, through the binaries: `scimguard emulate` as
//! the upstream and `scimguard run --upstream` in front of it. The group is set up and
//! read back at the emulator directly (the read with `groups.value` and cursor pages);
//! the IdP's request goes through scimguard.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

use crate::support::*;

const TOKEN: &str = "repair-test-token";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The emulator and scimguard in front of it, each a child process, killed on drop.
struct Pair {
    children: Vec<Child>,
    /// `http://addr/{tenant}/scim/v2` of the emulator.
    emulator: String,
    /// The same path through scimguard.
    proxy: String,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a binary and returns it with the first `lines` lines it prints; its log goes
/// to `log` when given.
fn spawn(args: &[&str], lines: usize, log: Option<&std::path::Path>) -> (Child, Vec<String>) {
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    let mut child = Command::new(binary())
        .args(args)
        .env_remove("SCIMGUARD_UPSTREAM")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = (0..lines).map(|_| out.next().unwrap().unwrap()).collect();
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in out {});
    (child, banner)
}

fn address_in(line: &str) -> String {
    line.split("://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned()
}

impl Pair {
    /// Stops scimguard with SIGTERM and waits, so its capture is flushed.
    fn stop_proxy(&mut self) {
        if let Some(mut proxy) = self.children.pop() {
            let status = Command::new("kill")
                .args(["-TERM", &proxy.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            proxy.wait().unwrap();
        }
    }

    fn start(proxy_args: &[&str]) -> Pair {
        Pair::start_logging(proxy_args, None)
    }

    /// Like [`Pair::start`], scimguard's log going to `log`.
    fn start_logging(proxy_args: &[&str], log: Option<&std::path::Path>) -> Pair {
        let (emulator, banner) = spawn(
            &[
                "emulate",
                "--listen",
                "127.0.0.1:0",
                "--rate",
                "0",
                "--token",
                TOKEN,
            ],
            2,
            None,
        );
        let endpoint = banner[1]
            .trim()
            .strip_prefix("SCIM endpoint: ")
            .unwrap()
            .to_owned();
        let upstream = format!("http://{}", address_in(&banner[0]));
        let path = endpoint
            .split_once("://")
            .unwrap()
            .1
            .split_once('/')
            .unwrap()
            .1
            .to_owned();
        let mut args = vec![
            "run",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--rate",
            "0",
            // These repairs remove more members than the guard's default limit of 100;
            // how a repair's removals count is tested in guard.rs.
            "--guard-deletes",
            "0",
        ];
        args.extend_from_slice(proxy_args);
        let (child, banner) = spawn(&args, 1, log);
        Pair {
            children: vec![emulator, child],
            emulator: endpoint,
            proxy: format!("http://{}/{path}", address_in(&banner[0])),
        }
    }
}

/// One request with the token: status, headers, JSON body (`Null` when empty).
async fn call(
    base: &str,
    method: &str,
    rest: &str,
    body: Option<Value>,
) -> (u16, http::HeaderMap, Value) {
    let request = Request::builder()
        .method(method)
        .uri(format!("{base}{rest}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(
            body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
        ))
        .unwrap();
    let (status, headers, bytes, _) = send(&http_client(), request).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status.as_u16(), headers, json)
}

async fn create_users(base: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("{prefix}{i:04}");
        let user = json!({
            "userName": name, "displayName": name,
            "name": {"givenName": "G", "familyName": name},
            "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}],
        });
        let (status, _, body) = call(base, "POST", "/Users", Some(user)).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn members(ids: &[String]) -> Value {
    Value::Array(ids.iter().map(|id| json!({"value": id})).collect())
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// A group holding `ids`, made at the emulator in requests of 100.
async fn create_group(base: &str, name: &str, ids: &[String]) -> String {
    let (status, _, body) = call(base, "POST", "/Groups", Some(json!({"displayName": name}))).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    for chunk in ids.chunks(100) {
        let add = patch(json!([{"op": "add", "path": "members", "value": members(chunk)}]));
        let (status, _, body) = call(base, "PATCH", &format!("/Groups/{id}"), Some(add)).await;
        assert_eq!(status, 204, "{body}");
    }
    id
}

/// The group's members as the emulator lists them: `groups.value` and cursor pages.
async fn members_of(base: &str, group: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let rest =
            format!("/Users?filter=groups.value%20eq%20%22{group}%22&count=100&cursor={cursor}");
        let (status, _, page) = call(base, "GET", &rest, None).await;
        assert_eq!(status, 200, "{page}");
        for user in page["Resources"].as_array().unwrap() {
            out.push(user["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    out.sort();
    out
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_replace_keeping_100_dropping_50_adding_30_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let mut pair = Pair::start(&["--record", capture.to_str().unwrap()]);
    let users = create_users(&pair.emulator, "member", 180).await;
    let group = create_group(&pair.emulator, "Finance", &users[..150]).await;
    assert_eq!(members_of(&pair.emulator, &group).await.len(), 150);

    let wanted: Vec<String> = users[50..180].to_vec();
    let replace = patch(json!([{"op": "replace", "path": "members", "value": members(&wanted)}]));
    let (status, headers, body) = call(
        &pair.proxy,
        "PATCH",
        &format!("/Groups/{group}"),
        Some(replace),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null);
    assert_eq!(headers["x-scimguard-verdict"], "rewritten");
    assert!(headers["x-scimguard-rules"]
        .to_str()
        .unwrap()
        .contains("group.patch.replace-members"));
    assert_eq!(
        members_of(&pair.emulator, &group).await,
        sorted(wanted.clone())
    );

    // The same list again: nothing changes, nothing is sent but the reads.
    let again = patch(json!([{"op": "Replace", "path": "members", "value": members(&wanted)}]));
    let (status, _, _) = call(
        &pair.proxy,
        "PATCH",
        &format!("/Groups/{group}"),
        Some(again),
    )
    .await;
    assert_eq!(status, 204);
    pair.stop_proxy();

    // The capture shows the reads, the one PATCH and the summary.
    let text = std::fs::read_to_string(&capture).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let repairs: Vec<&Value> = records
        .iter()
        .filter(|r| r["operation"] == "PatchGroup")
        .collect();
    assert_eq!(repairs.len(), 2, "{text}");
    let sent = |r: &Value| -> Vec<(String, String)> {
        r["forwarded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["method"].as_str().unwrap().to_owned(),
                    format!(
                        "{}?{}",
                        f["path"].as_str().unwrap_or_default(),
                        f["query"].as_str().unwrap_or_default()
                    ),
                )
            })
            .collect()
    };
    let first = sent(repairs[0]);
    let methods: Vec<&str> = first.iter().map(|(m, _)| m.as_str()).collect();
    // GetGroup, two pages of members (150), one PATCH of 80 changes.
    assert_eq!(methods, ["GET", "GET", "GET", "PATCH"], "{first:?}");
    assert!(
        first[1].1.contains("groups.value") && first[1].1.contains("count=100"),
        "{first:?}"
    );
    let summary = repairs[0]["findings"].to_string();
    assert!(
        summary.contains("group Finance: 30 added, 50 removed, 100 unchanged"),
        "{summary}"
    );
    let methods: Vec<String> = sent(repairs[1]).into_iter().map(|(m, _)| m).collect();
    assert_eq!(
        methods,
        ["GET", "GET", "GET"],
        "nothing changed, nothing sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_groups_renaming_with_a_member_list_is_repaired() {
    let pair = Pair::start(&[]);
    let users = create_users(&pair.emulator, "put", 120).await;
    let group = create_group(&pair.emulator, "Engineering", &users[..110]).await;
    let wanted: Vec<String> = users[10..120].to_vec();
    let put = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": group, "displayName": "Engineering (all)", "members": members(&wanted),
    });
    let (status, headers, body) =
        call(&pair.proxy, "PUT", &format!("/Groups/{group}"), Some(put)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-scimguard-verdict"], "rewritten");
    // Answered as GetGroup answers: the group, renamed, without members.
    assert_eq!(
        (body["id"].as_str(), &body["displayName"]),
        (Some(group.as_str()), &json!("Engineering (all)"))
    );
    assert!(body.get("members").is_none(), "{body}");
    let (_, _, got) = call(&pair.emulator, "GET", &format!("/Groups/{group}"), None).await;
    assert_eq!(got["displayName"], "Engineering (all)");
    assert_eq!(members_of(&pair.emulator, &group).await, sorted(wanted));

    // A PUT of a group that does not exist: AWS's 404, nothing sent but the read.
    let (status, _, body) = call(
        &pair.proxy,
        "PUT",
        "/Groups/no-such-group",
        Some(json!({"displayName": "X", "members": []})),
    )
    .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (404, Some("Group not found."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pathless_replace_of_members_to_an_empty_list_empties_the_group() {
    let pair = Pair::start(&[]);
    let users = create_users(&pair.emulator, "empty", 30).await;
    let group = create_group(&pair.emulator, "Temps", &users).await;
    let replace =
        patch(json!([{"op": "replace", "value": {"displayName": "Temps (old)", "members": []}}]));
    let (status, _, body) = call(
        &pair.proxy,
        "PATCH",
        &format!("/Groups/{group}"),
        Some(replace),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert!(members_of(&pair.emulator, &group).await.is_empty());
    let (_, _, got) = call(&pair.emulator, "GET", &format!("/Groups/{group}"), None).await;
    assert_eq!(got["displayName"], "Temps (old)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_reports_what_was_applied() {
    let pair = Pair::start(&[]);
    let users = create_users(&pair.emulator, "fail", 150).await;
    let group = create_group(&pair.emulator, "Doomed", &users).await;
    // Keep nobody and add a user that does not exist: 150 removals and 1 addition are
    // two PATCHes; the second fails on the unknown user, the first stays applied.
    let replace =
        patch(json!([{"op": "replace", "path": "members", "value": [{"value": "no-such-user"}]}]));
    let (status, _, body) = call(
        &pair.proxy,
        "PATCH",
        &format!("/Groups/{group}"),
        Some(replace),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("request 1 was applied (100 removed"),
        "{detail}"
    );
    assert!(detail.contains("request 2 failed"), "{detail}");
    assert!(
        detail.contains("Not applied: 1 added: no-such-user; 50 removed"),
        "{detail}"
    );
    assert!(detail.contains("User not found"), "{detail}");
    // Members are read in id order, so the first 100 of that order went; the report
    // names the first 20 of the 50 left, and the rest by count.
    let left = members_of(&pair.emulator, &group).await;
    assert_eq!(left.len(), 50);
    assert!(left.iter().all(|m| users.contains(m)));
    for m in &left[..20] {
        assert!(detail.contains(m.as_str()), "{m} in {detail}");
    }
    assert!(detail.contains("and 30 more"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_forwards_the_replace_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("scimguard.log");
    let mut pair = Pair::start_logging(&["--mode", "observe"], Some(&log));
    let users = create_users(&pair.emulator, "obs", 3).await;
    let group = create_group(&pair.emulator, "Observed", &users[..2]).await;
    let replace =
        patch(json!([{"op": "replace", "path": "members", "value": members(&users[1..])}]));
    let (status, headers, body) = call(
        &pair.proxy,
        "PATCH",
        &format!("/Groups/{group}"),
        Some(replace),
    )
    .await;
    // AWS's (the emulator's) own refusal, relayed: the request reached it as sent.
    assert_eq!(
        (status, body["detail"].as_str()),
        (400, Some("Replacing group memberships is not supported."))
    );
    assert_eq!(headers["x-scimguard-verdict"], "forwarded");
    assert_eq!(
        members_of(&pair.emulator, &group).await,
        sorted(users[..2].to_vec())
    );
    pair.stop_proxy();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("would repair"), "{log}");
    assert!(log.contains("group.patch.replace-members"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_over_the_member_bound_is_refused_saying_why() {
    let pair = Pair::start(&["--repair-max-members", "10"]);
    let users = create_users(&pair.emulator, "big", 12).await;
    let group = create_group(&pair.emulator, "Big", &users).await;
    let replace =
        patch(json!([{"op": "replace", "path": "members", "value": members(&users[..1])}]));
    let (status, _, body) = call(
        &pair.proxy,
        "PATCH",
        &format!("/Groups/{group}"),
        Some(replace),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("more than 10 members (--repair-max-members)")
            && detail.contains("Nothing was changed"),
        "{detail}"
    );
    assert_eq!(members_of(&pair.emulator, &group).await.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_over_its_time_budget_is_refused_saying_nothing_changed() {
    let pair = Pair::start(&["--repair-timeout", "1ms"]);
    let users = create_users(&pair.emulator, "slow", 3).await;
    let group = create_group(&pair.emulator, "Slow", &users).await;
    let replace =
        patch(json!([{"op": "replace", "path": "members", "value": members(&users[..1])}]));
    let (status, _, body) = call(
        &pair.proxy,
        "PATCH",
        &format!("/Groups/{group}"),
        Some(replace),
    )
    .await;
    assert_eq!(status, 504, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("nothing was changed") && detail.contains("--repair-timeout 1ms"),
        "{detail}"
    );
    assert_eq!(members_of(&pair.emulator, &group).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remove_all_empties_the_group() {
    let pair = Pair::start(&[]);
    let users = create_users(&pair.emulator, "all", 130).await;
    let group = create_group(&pair.emulator, "Leavers", &users).await;
    let other = create_group(&pair.emulator, "Stayers", &users[..5]).await;
    for remove_all in [
        json!({"op": "remove", "path": "members"}),
        json!({"op": "Remove", "path": "members", "value": []}),
    ] {
        let (status, headers, body) = call(
            &pair.proxy,
            "PATCH",
            &format!("/Groups/{group}"),
            Some(patch(json!([remove_all]))),
        )
        .await;
        assert_eq!(status, 204, "{body}");
        assert!(headers["x-scimguard-rules"]
            .to_str()
            .unwrap()
            .contains("group.patch.remove-all-members"));
        assert!(members_of(&pair.emulator, &group).await.is_empty());
    }
    // Only that group lost its members.
    assert_eq!(members_of(&pair.emulator, &other).await.len(), 5);
}
