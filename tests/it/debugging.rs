//! The debugging workflow through the binary: --record and --explain-log on a mixed
//! session, a kill after N exchanges, then check, export-har and replay on the capture.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::support::*;

const TOKEN: &str = "s3cr3t-t0ken-for-the-capture-test";

/// `scimguard run` on the embedded emulator with `extra` flags; returns the child and
/// the SCIM endpoint from its banner.
fn start(extra: &[&str], stderr: &Path) -> (Child, String) {
    let mut child = Command::new(binary())
        .args(["run", "--listen", "127.0.0.1:0", "--token", TOKEN])
        .args(extra)
        .env_remove("SCIMGUARD_UPSTREAM")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut endpoint = String::new();
    for _ in 0..2 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(e) = line.trim_end().strip_prefix("  SCIM endpoint: ") {
            endpoint = e.to_owned();
        }
    }
    assert!(!endpoint.is_empty(), "no endpoint in the banner");
    (child, endpoint)
}

async fn call(endpoint: &str, method: Method, path: &str, body: Option<Value>) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(format!("{endpoint}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/scim+json")
        .body(Full::new(
            body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
        ))
        .unwrap();
    send(&http_client(), request).await.0
}

fn user(name: &str) -> Value {
    json!({
        "userName": name, "displayName": name, "name": {"givenName": "G", "familyName": "F"},
        "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}]
    })
}

/// A mixed session: forwarded, rewritten, rejected, a 409 and a 404.
async fn mixed_session(endpoint: &str) -> Vec<StatusCode> {
    let mut rewritten = user("rewritten");
    rewritten["emails"] = json!([{"value": "h@example.com", "type": "home"}, {"value": "w@example.com", "type": "work"}]);
    vec![
        call(endpoint, Method::POST, "/Users", Some(user("plain"))).await,
        call(endpoint, Method::POST, "/Users", Some(rewritten)).await,
        call(
            endpoint,
            Method::POST,
            "/Users",
            Some(json!({"userName": "nameless"})),
        )
        .await,
        call(endpoint, Method::POST, "/Users", Some(user("plain"))).await,
        call(
            endpoint,
            Method::GET,
            "/Users?filter=userName%20eq%20%22plain%22",
            None,
        )
        .await,
        call(
            endpoint,
            Method::GET,
            "/Users/9067a1b2c3-00000000-0000-4000-8000-000000000000",
            None,
        )
        .await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_mixed_session_reads_back_whole_redacted_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let explain = dir.path().join("explain.jsonl");
    let stderr = dir.path().join("stderr.log");
    let (mut child, endpoint) = start(
        &[
            "--record",
            capture.to_str().unwrap(),
            "--explain-log",
            explain.to_str().unwrap(),
        ],
        &stderr,
    );
    let statuses = mixed_session(&endpoint).await;
    assert_eq!(statuses, [201, 201, 400, 409, 200, 404]);
    terminate(&mut child);

    let records = scimguard::record::read_capture(&capture).expect("the capture parses");
    assert_eq!(records.len(), 6, "one record per exchange");
    let verdicts: Vec<&str> = records.iter().map(|r| r.verdict.as_str()).collect();
    assert_eq!(
        verdicts,
        [
            "forwarded",
            "rewritten",
            "rejected",
            "forwarded",
            "forwarded",
            "forwarded"
        ]
    );
    let recorded: Vec<u16> = records
        .iter()
        .map(|r| r.response.as_ref().unwrap().status)
        .collect();
    assert_eq!(recorded, [201, 201, 400, 409, 200, 404]);
    assert_eq!(records[1].operation, "CreateUser");
    assert_eq!(
        records[1].forwarded.len(),
        1,
        "the rewritten request as sent"
    );
    let sent: Value = serde_json::from_slice(records[1].forwarded[0].body.as_bytes()).unwrap();
    assert_eq!(sent["emails"].as_array().unwrap().len(), 1);
    assert!(records[2]
        .findings
        .iter()
        .any(|f| f["rule"] == "user.required"));
    assert_eq!(
        records[4].request.query.as_deref(),
        Some("filter=userName%20eq%20%22plain%22")
    );

    // The token is nowhere: not in the capture, the explanations or the logs.
    for file in [&capture, &explain, &stderr] {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the token leaked into {}",
            file.display()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&capture).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // One explanation per exchange, with the documented fields.
    let lines: Vec<Value> = std::fs::read_to_string(&explain)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 6);
    for key in [
        "id",
        "time",
        "tenant",
        "method",
        "path",
        "operation",
        "mode",
        "verdict",
        "status",
        "findings",
        "upstream",
        "hints",
        "timings",
    ] {
        assert!(
            lines[0].get(key).is_some(),
            "explanation lacks {key}: {}",
            lines[0]
        );
    }
    assert_eq!(lines[2]["verdict"], "rejected");
    assert_eq!(lines[3]["upstream"]["status"], 409);
    assert_eq!(
        lines[3]["upstream"]["detail"],
        "Refused to create a new, duplicate resource."
    );
    assert!(
        lines[3]["hints"][0].as_str().unwrap().contains("unique"),
        "{}",
        lines[3]
    );
    assert_eq!(lines[1]["findings"][0]["rule"], "user.multi-value");
    assert!(lines[1]["findings"][0]["fix"]["before"].is_string());

    // export-har: valid JSON with one entry per record.
    let out = Command::new(binary())
        .arg("export-har")
        .arg(&capture)
        .output()
        .unwrap();
    assert!(out.status.success());
    let har: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(har["log"]["version"], "1.2");
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 6);

    // check on the capture: one request would be rejected → exit 1.
    let out = Command::new(binary())
        .arg("check")
        .arg(&capture)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 rejected") && text.contains("user.required"),
        "{text}"
    );

    // replay against a fresh scimguard on a fresh emulator reproduces every status.
    let (mut fresh, fresh_endpoint) = start(&[], &dir.path().join("fresh.log"));
    let base = fresh_endpoint
        .trim_end_matches("/d-9067a1b2c3/scim/v2")
        .to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args([
                "replay",
                capture.to_str().unwrap(),
                "--target",
                &base,
                "--token",
                TOKEN,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    terminate(&mut fresh);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary.contains('6'), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_n_exchanges_loses_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let (mut child, endpoint) = start(
        &["--record", capture.to_str().unwrap()],
        &dir.path().join("e.log"),
    );
    const N: usize = 25;
    for i in 0..N {
        let status = call(
            &endpoint,
            Method::POST,
            "/Users",
            Some(user(&format!("u{i}"))),
        )
        .await;
        assert_eq!(status, 201);
    }
    // Each record is written as its exchange completes; give the writer its moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&capture)
        .unwrap_or_default()
        .lines()
        .count()
        < N
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL: no flush at exit
    child.wait().unwrap();
    let records =
        scimguard::record::read_capture(&capture).expect("every line parses after a kill");
    assert_eq!(records.len(), N);
    for (i, record) in records.iter().enumerate() {
        let body: Value = serde_json::from_slice(record.request.body.as_bytes()).unwrap();
        assert_eq!(body["userName"], format!("u{i}"), "in order");
    }
}

#[test]
fn check_exit_codes_are_0_clean_1_rejected_2_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.json");
    std::fs::write(
        &clean,
        json!({"method": "GET", "path": "/t/scim/v2/Users", "query": "filter=userName%20eq%20%22a%22", "headers": {}, "body": null}).to_string(),
    )
    .unwrap();
    let rejected = dir.path().join("rejected.http");
    let body = r#"{"userName":"a"}"#;
    std::fs::write(
        &rejected,
        format!("POST /t/scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
    )
    .unwrap();
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{ this is not").unwrap();

    let run = |files: &[&Path], extra: &[&str]| {
        let out = Command::new(binary())
            .arg("check")
            .args(extra)
            .args(files)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = run(&[&clean], &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let (code, stdout, _) = run(&[&clean, &rejected], &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("user.required"), "{stdout}");
    let (code, stdout, _) = run(&[&rejected], &["--format", "json"]);
    assert_eq!(code, Some(1));
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report[0]["verdict"], "rejected", "{report}");
    let (code, _, stderr) = run(&[&clean, &garbage], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("garbage.json"), "{stderr}");
}
