//! The binary: start-up errors, the config file and environment, `cert`, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::*;

/// Runs `scimguard ARGS` to completion and returns (exit code, stdout, stderr).
fn run_to_end(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("SCIMGUARD_UPSTREAM")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `scimguard run ARGS` and waits for its banner; returns the child and the
/// address it listens on.
fn spawn_run(args: &[&str], envs: &[(&str, &str)]) -> (Child, SocketAddr) {
    let mut child = Command::new(binary())
        .arg("run")
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no banner: {line:?}"));
    (child, addr.parse().unwrap())
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts `scimguard run ARGS` and reads `lines` lines of its banner.
fn spawn_banner(args: &[&str], envs: &[(&str, &str)], lines: usize) -> (Child, Vec<String>) {
    let mut child = Command::new(binary())
        .arg("run")
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("SCIMGUARD_UPSTREAM")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let banner = (0..lines)
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            line.trim_end().to_owned()
        })
        .collect();
    (child, banner)
}

async fn post_user(
    endpoint: &str,
    token: &str,
    body: serde_json::Value,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let request = Request::post(format!("{endpoint}/Users"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/scim+json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, headers, body, _) = send(&http_client(), request).await;
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_upstream_proxies_to_the_embedded_emulator() {
    let (mut child, banner) = spawn_banner(&["--listen", "127.0.0.1:0"], &[], 3);
    assert!(
        banner[0].contains("embedded AWS SCIM emulator"),
        "{banner:?}"
    );
    let endpoint = banner[1]
        .strip_prefix("  SCIM endpoint: ")
        .expect("endpoint line")
        .to_owned();
    let token = banner[2]
        .strip_prefix("  Bearer token:  ")
        .expect("token line")
        .to_owned();
    assert!(endpoint.ends_with("/d-9067a1b2c3/scim/v2"), "{endpoint}");
    assert!(token.len() >= 32, "a random token: {token}");

    // A clean CreateUser goes through untouched and is created.
    let user = serde_json::json!({
        "userName": "jdoe", "displayName": "J Doe", "name": {"givenName": "J", "familyName": "Doe"},
        "emails": [{"value": "j@example.com", "type": "work", "primary": true}]
    });
    let (status, headers, body) = post_user(&endpoint, &token, user).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-scimguard-verdict"], "forwarded");
    assert!(headers.contains_key("x-amzn-requestid"));

    // One the emulator (like AWS) would refuse is fixed on the way and succeeds.
    let user = serde_json::json!({
        "userName": "asmith", "displayName": "A Smith", "name": {"givenName": "A", "familyName": "Smith"},
        "emails": [{"value": "a@home.example", "type": "home"}, {"value": "a@example.com", "type": "work"}],
        "photos": [{"value": "https://example.com/a.jpg"}]
    });
    let (status, headers, body) = post_user(&endpoint, &token, user).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["x-scimguard-verdict"], "rewritten");
    let created: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        created["emails"],
        serde_json::json!([{"value": "a@example.com", "type": "work", "primary": true}])
    );
    assert!(created.get("photos").is_none());

    // A wrong token is the emulator's 401, relayed.
    let (status, _, _) = post_user(&endpoint, "wrong", serde_json::json!({})).await;
    assert!(status == 401 || status == 400, "{status}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_emulator_takes_its_token_from_the_environment_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().unwrap().to_owned();
    let args = ["--listen", "127.0.0.1:0", "--state", state_arg.as_str()];
    let (mut child, banner) = spawn_banner(&args, &[("SCIMGUARD_TOKEN", "t-from-env")], 4);
    assert_eq!(banner[2], "  Bearer token:  t-from-env");
    let endpoint = banner[1]
        .strip_prefix("  SCIM endpoint: ")
        .unwrap()
        .to_owned();
    let user = serde_json::json!({
        "userName": "kept", "displayName": "K", "name": {"givenName": "K", "familyName": "K"},
        "emails": [{"value": "k@example.com", "type": "work", "primary": true}]
    });
    let (status, ..) = post_user(&endpoint, "t-from-env", user.clone()).await;
    assert_eq!(status, 201);
    child.kill().unwrap();
    child.wait().unwrap();

    // After a restart the user is still there: creating it again is a duplicate.
    let (mut child, banner) = spawn_banner(&args, &[("SCIMGUARD_TOKEN", "t-from-env")], 4);
    let endpoint = banner[1]
        .strip_prefix("  SCIM endpoint: ")
        .unwrap()
        .to_owned();
    let (status, _, body) = post_user(&endpoint, "t-from-env", user).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("Refused to create a new, duplicate resource."));
}

#[test]
fn a_bad_setting_names_the_setting_and_the_fix() {
    let (code, _, stderr) = run_to_end(&["run", "--upstream", "ftp://example.com"], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`upstream`") && stderr.contains("Fix:"),
        "{stderr}"
    );

    let (code, _, stderr) = run_to_end(
        &[
            "run",
            "--upstream",
            "http://127.0.0.1:1",
            "--tls-cert",
            "/nonexistent/cert.pem",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("`tls_key`"), "{stderr}");

    let (code, _, stderr) = run_to_end(
        &["run"],
        &[
            ("SCIMGUARD_UPSTREAM", "http://127.0.0.1:1"),
            ("SCIMGUARD_HEADER_TIMEOUT", "forever"),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("header-timeout") && stderr.contains("forever"),
        "{stderr}"
    );
}

#[test]
fn a_config_file_with_an_unknown_key_stops_start_up_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scimguard.toml");
    std::fs::write(
        &file,
        "upstream = \"http://127.0.0.1:1\"\nheader_timout = \"5s\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run_to_end(&["run", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("header_timout") && stderr.contains("line 2"),
        "{stderr}"
    );
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_the_file_with_env_and_flags_on_top() {
    let from_file = TestUpstream::start(Behaviour::Answer).await;
    let from_env = TestUpstream::start(Behaviour::Answer).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scimguard.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:1\"\nupstream = \"{}\"\nforwarded_headers = true\n",
            from_file.url()
        ),
    )
    .unwrap();
    let config = file.to_str().unwrap().to_owned();

    // The flag overrides the file's listen address; the file's upstream is used.
    let (mut child, addr) = spawn_run(&["--config", &config, "--listen", "127.0.0.1:0"], &[]);
    let request = Request::get(format!("http://{addr}/scim/v2/Users"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, ..) = send(&http_client(), request).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 201);
    assert_eq!(from_file.seen().len(), 1);
    assert!(
        from_file.seen()[0].headers.contains_key("x-forwarded-for"),
        "file's forwarded_headers"
    );

    // The environment overrides the file's upstream.
    let env_url = from_env.url();
    let (mut child, addr) = spawn_run(
        &["--config", &config, "--listen", "127.0.0.1:0"],
        &[("SCIMGUARD_UPSTREAM", &env_url)],
    );
    let request = Request::get(format!("http://{addr}/scim/v2/Groups"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, ..) = send(&http_client(), request).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 201);
    assert_eq!(from_env.seen().len(), 1);
    assert_eq!(from_file.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_writes_a_usable_pair_with_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let out_str = out.to_str().unwrap();
    let (code, stdout, stderr) = run_to_end(&["cert", "--out", out_str], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("--tls-cert"), "{stdout}");
    let key = out.join("key.pem");
    let cert = out.join("cert.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key must be private");
    }
    let (code, _, stderr) = run_to_end(&["cert", "--out", out_str], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--force"), "{stderr}");

    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let (mut child, addr) = spawn_run(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream.url(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    // The self-signed certificate is its own trust anchor.
    let client = https_client(&cert, false);
    let request = Request::get(format!("https://localhost:{}/scim/v2/Users", addr.port()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, ..) = send(&client, request).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let upstream = TestUpstream::start(Behaviour::Delay(Duration::from_millis(800))).await;
    let (mut child, addr) = spawn_run(
        &["--listen", "127.0.0.1:0", "--upstream", &upstream.url()],
        &[],
    );
    let in_flight = tokio::spawn(async move {
        let request = Request::post(format!("http://{addr}/scim/v2/Custom"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        send(&http_client(), request).await
    });
    while upstream.seen().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    terminate(&child);
    let (status, _, body, _) = in_flight.await.unwrap();
    assert_eq!(status, 201);
    assert_eq!(body, UPSTREAM_BODY.as_bytes());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn parse_filter_prints_the_canonical_form_or_a_caret_under_the_problem() {
    let (code, stdout, _) = run_to_end(
        &["parse", "filter", "userName Eq \"bjensen\"  AND  title pr"],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), "userName eq \"bjensen\" and title pr");

    let (code, stdout, _) = run_to_end(&["parse", "filter", "userName equals \"bjensen\""], &[]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "userName equals \"bjensen\"");
    assert_eq!(lines[1], "         ^", "the caret sits under column 10");
    assert!(
        lines[2].contains("expected a comparison operator after `userName` at column 10"),
        "{stdout}"
    );

    let (code, stdout, _) = run_to_end(
        &["parse", "filter", "--json", "emails[type eq \"work\"]"],
        &[],
    );
    assert_eq!(code, 0);
    let tree: serde_json::Value = serde_json::from_str(&stdout).expect("JSON syntax tree");
    assert!(tree.to_string().contains("\"work\""), "{tree}");
}

#[test]
fn parse_path_handles_value_filters_and_urns() {
    for path in [
        "members[value eq \"2819c223\"]",
        "emails[type eq \"work\"].value",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    ] {
        let (code, stdout, _) = run_to_end(&["parse", "path", path], &[]);
        assert_eq!(code, 0, "{path}: {stdout}");
        assert_eq!(stdout.trim(), path);
    }
    let (code, stdout, _) = run_to_end(&["parse", "path", "members[value eq \"x\""], &[]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("unclosed value filter; missing `]`"),
        "{stdout}"
    );
}

#[test]
fn rules_lists_the_rules_in_effect_with_overrides() {
    let (code, stdout, _) = run_to_end(&["rules", "--rule", "user.multi-value=reject"], &[]);
    assert_eq!(code, 0);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("user.multi-value "))
        .expect("the rule is listed");
    assert!(
        line.contains("reject") && line.contains("CreateUser,PutUser"),
        "{line}"
    );
    assert!(
        stdout.contains("source: CreateUser › Constraints"),
        "{stdout}"
    );

    let (code, _, stderr) = run_to_end(&["rules", "--rule", "user.required=rewrite"], &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot rewrite"), "{stderr}");
}

#[test]
fn a_rules_file_is_validated_with_its_line_and_used_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[rule]]\nid = \"custom.title\"\noperations = [\"CreateUser\"]\ncheck = { kind = \"required\", attributes = [\"title\"] }\naction = \"reject\"\nmessage = \"we need {attribute}\"\nsource = \"house rule\"\n",
    )
    .unwrap();
    let (code, stdout, _) = run_to_end(&["rules", "--check", good.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("1 rules, valid"), "{stdout}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("\"reject\"", "\"block\""),
    )
    .unwrap();
    let (code, _, stderr) = run_to_end(&["rules", "--check", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("{}:5:", bad.display())) && stderr.contains("Fix:"),
        "{stderr}"
    );

    let (code, _, stderr) = run_to_end(
        &[
            "run",
            "--upstream",
            "http://127.0.0.1:1",
            "--rules",
            bad.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("block"), "{stderr}");
}

#[test]
fn config_rules_actions_name_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scimguard.toml");
    std::fs::write(
        &file,
        "upstream = \"http://127.0.0.1:1\"\n[rules.actions]\n\"user.multivalue\" = \"warn\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run_to_end(&["run", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("user.multivalue") && stderr.contains("scimguard rules"),
        "{stderr}"
    );
}
