//! Captures under faults, through the binary: a disk that fills up and is freed again
//! leaves only whole lines and a drops metric that says what is missing; readers use
//! the whole lines of a capture with a cut last line and merge several captures.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use crate::support::*;

const TOKEN: &str = "tok-for-the-recording-test";

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with one skip line) when mounting is refused (not root, a container
    /// without the capability).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn start(extra: &[&str], stderr: &Path) -> (Child, String, String) {
    let mut child = Command::new(binary())
        .args(["run", "--listen", "127.0.0.1:0", "--token", TOKEN])
        .args(["--admin", "127.0.0.1:0", "--rate", "0"])
        .args(extra)
        .env_remove("SCIMGUARD_UPSTREAM")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let (mut endpoint, mut admin) = (String::new(), String::new());
    for _ in 0..4 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if let Some(e) = line.strip_prefix("  SCIM endpoint: ") {
            endpoint = e.to_owned();
        }
        if let Some(m) = line.strip_prefix("  Metrics:       http://") {
            admin = m.split('/').next().unwrap().to_owned();
        }
    }
    assert!(!endpoint.is_empty() && !admin.is_empty(), "banner");
    (child, endpoint, admin)
}

async fn get(url: String) -> (u16, String) {
    let request = Request::builder()
        .uri(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body, _) = send(&http_client(), request).await;
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

async fn create_user(endpoint: &str, i: usize) -> u16 {
    // About 1.3 KB a record: several records a tmpfs page, so writes are cut mid-line.
    let padding = "x".repeat(400);
    let body = format!(
        r#"{{"userName":"fill{i}","displayName":"{padding}","name":{{"givenName":"G","familyName":"F"}},"emails":[{{"value":"f{i}@example.com","type":"work","primary":true}}]}}"#
    );
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{endpoint}/Users"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/scim+json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(&http_client(), request).await.0.as_u16()
}

/// A counter's value in the /metrics text.
/// A counter's value, which must be there.
fn counter(text: &str, name: &str) -> u64 {
    metric(text, name).unwrap_or_else(|| panic!("{name} not in {text}")) as u64
}

/// Fills the filesystem of `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = [b'f'; 512];
    while file.write_all(&chunk).is_ok() {}
    while file.write_all(b"f").is_ok() {}
    filler
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_and_is_freed_leaves_whole_lines_and_counts_every_drop() {
    let Some(tmpfs) = Tmpfs::mount("256k") else {
        return;
    };
    let capture = tmpfs.path().join("capture.jsonl");
    let explain = tmpfs.path().join("explain.jsonl");
    let logs = tempfile::tempdir().unwrap();
    // The emulator answers at any rate: every request here is answered 201.
    let config = logs.path().join("scimguard.toml");
    std::fs::write(&config, "[emulator]\nrate = 0\n").unwrap();
    let (mut child, endpoint, admin) = start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--record",
            capture.to_str().unwrap(),
            "--explain-log",
            explain.to_str().unwrap(),
        ],
        &logs.path().join("e.log"),
    );
    let mut answered = 0u64;
    let mut next = 0;
    let mut session = |n: usize| {
        let range = next..next + n;
        next += n;
        range
    };
    for i in session(10) {
        assert_eq!(create_user(&endpoint, i).await, 201);
        answered += 1;
    }
    // Room for a few more records, then none: writes are cut mid-line.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let filler = fill(tmpfs.path());
    for i in session(30) {
        assert_eq!(
            create_user(&endpoint, i).await,
            201,
            "served on a full disk"
        );
        answered += 1;
    }
    let (ready, _) = get(format!("http://{admin}/readyz")).await;
    assert_eq!(ready, 200, "/readyz stays ready while the disk is full");
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::remove_file(&filler).unwrap();
    for i in session(10) {
        assert_eq!(create_user(&endpoint, i).await, 201);
        answered += 1;
    }
    // The writers count within 5 ms of an exchange; wait until the books balance.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (recorded, drops, explained, explain_drops) = loop {
        let (_, text) = get(format!("http://{admin}/metrics")).await;
        let drops = counter(&text, "scimguard_recording_drops_total");
        let explain_drops = counter(&text, "scimguard_explain_log_drops_total");
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count() as u64;
        let (recorded, explained) = (lines(&capture), lines(&explain));
        if (recorded + drops == answered && explained + explain_drops == answered)
            || Instant::now() > deadline
        {
            break (recorded, drops, explained, explain_drops);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    terminate(&mut child);
    assert!(drops > 0, "the full disk dropped records");
    assert_eq!(
        drops,
        answered - recorded,
        "the metric is answered minus recorded"
    );
    assert_eq!(explain_drops, answered - explained);
    // Every line of both files parses: nothing half-written, nothing glued together.
    let records = scimguard::record::read_capture(&capture).expect("only whole lines");
    assert_eq!(records.len() as u64, recorded);
    let last = records.last().unwrap();
    assert!(
        String::from_utf8_lossy(last.request.body.as_bytes()).contains("fill49"),
        "writing resumed once space returned"
    );
    for line in std::fs::read_to_string(&explain).unwrap().lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a whole explanation");
    }
    let log = std::fs::read_to_string(logs.path().join("e.log")).unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("line(s) dropped"))
        .count();
    assert!(warnings >= 1, "{log}");
    assert!(
        (warnings as u64) < drops,
        "drops are logged at most once a second, not once each: {warnings} lines for {drops}"
    );
}

fn record_line(i: usize, replica: &str, user_name: &str) -> String {
    let mut record = serde_json::json!({
        "version": 2, "id": format!("{i:032x}"),
        "time": format!("2026-12-07T03:00:{i:02}.000000Z"), "replica": replica,
        "tenant": "t", "operation": "CreateUser", "mode": "enforce", "verdict": "forwarded",
        "request": {"method": "POST", "path": "/t/scim/v2/Users", "query": null, "headers": [],
                    "body": {"json": {"userName": user_name, "displayName": "D",
                             "name": {"givenName": "G", "familyName": "F"}}}},
        "forwarded": [], "response": {"status": 201, "headers": [], "body": {"text": ""}},
        "findings": [], "error": null,
        "timings": {"total_us": 1, "upstream_us": 1, "throttle_us": null}
    });
    if user_name.is_empty() {
        record["request"]["body"]["json"]
            .as_object_mut()
            .unwrap()
            .remove("displayName");
    }
    record.to_string()
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn readers_use_the_whole_lines_of_a_cut_capture_and_merge_several() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let cut = record_line(4, "a", "cut");
    std::fs::write(
        &a,
        format!(
            "{}\n{}\n{}",
            record_line(0, "a", "u0"),
            record_line(3, "a", "u3"),
            &cut[..cut.len() / 2]
        ),
    )
    .unwrap();
    std::fs::write(
        &b,
        format!(
            "{}\n{}\n",
            record_line(1, "b", "u1"),
            record_line(2, "b", "")
        ),
    )
    .unwrap();
    let (a_path, b_path) = (a.to_str().unwrap(), b.to_str().unwrap());

    // check: the whole lines are checked, the cut one named once; exit as without it.
    let (code, stdout, stderr) = run(&["check", a_path]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("2 request(s) checked"), "{stdout}");
    assert_eq!(
        stderr.matches("a.jsonl:3: the last line is cut").count(),
        1,
        "{stderr}"
    );
    let (code, _, stderr) = run(&["check", "--strict", a_path]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stdout, _) = run(&["check", a_path, b_path]);
    assert_eq!(
        code,
        Some(1),
        "b's second record lacks displayName: {stdout}"
    );

    // export-har: both captures, merged by time, the cut line left out.
    let (code, stdout, stderr) = run(&["export-har", a_path, b_path]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("the last line is cut").count(),
        1,
        "{stderr}"
    );
    let har: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let users: Vec<String> = har["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = e["request"]["postData"]["text"].as_str().unwrap();
            serde_json::from_str::<serde_json::Value>(text).unwrap()["userName"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(users, ["u0", "u1", "", "u3"]);
    let (code, _, stderr) = run(&["export-har", "--strict", a_path, b_path]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("a.jsonl:3:"), "{stderr}");

    // replay: the four whole records, in time order, to a port nothing listens on.
    let target = "http://127.0.0.1:1";
    let (code, stdout, stderr) = run(&["replay", a_path, b_path, "--target", target]);
    assert_eq!(code, Some(1), "nothing answered: {stdout}{stderr}");
    assert!(stdout.contains("replayed 4 request(s)"), "{stdout}");
    assert_eq!(
        stderr.matches("the last line is cut").count(),
        1,
        "{stderr}"
    );
    let (code, _, stderr) = run(&["replay", "--strict", a_path, "--target", target]);
    assert_eq!(code, Some(2), "{stderr}");
}
