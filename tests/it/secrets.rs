//! Secrets through the binary: a password (and every secret-named query parameter,
//! header or attribute) reaches none of stderr, `--explain-log`, the capture, HAR or an
//! error `detail`; both files are 0600; a capture written onto a disk that fills up
//! and is freed again holds only whole lines, and the drops metric says what is missing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use crate::support::*;

const TOKEN: &str = "tok-3c1f-for-the-secrets-test";

/// `scimguard run` on the embedded emulator; returns the child, the SCIM endpoint and
/// the admin address when `--admin` was asked for.
fn start(extra: &[&str], stderr: &Path) -> (Child, String, Option<String>) {
    let mut child = Command::new(binary())
        .args(["run", "--listen", "127.0.0.1:0", "--token", TOKEN])
        .args(extra)
        .env_remove("SCIMGUARD_UPSTREAM")
        .env("SCIMGUARD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut endpoint = String::new();
    let mut admin = None;
    let lines = if extra.contains(&"--admin") { 4 } else { 3 };
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if let Some(e) = line.strip_prefix("  SCIM endpoint: ") {
            endpoint = e.to_owned();
        }
        if let Some(m) = line.strip_prefix("  Metrics:       http://") {
            admin = m
                .strip_suffix("/metrics (also /healthz, /readyz)")
                .map(str::to_owned);
        }
    }
    assert!(!endpoint.is_empty(), "no endpoint in the banner");
    (child, endpoint, admin)
}

/// Sends one request through the proxy; returns the status and the body.
async fn call(
    endpoint: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{endpoint}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/scim+json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let (status, _, body, _) = send(&http_client(), request).await;
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

fn export_har(capture: &Path) -> String {
    let out = Command::new(binary())
        .arg("export-har")
        .arg(capture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The four shapes of issue 15: a CreateUser body with `password`, a PATCH
/// `path:"password"`, a PATCH `value:{"password":…}` and a filter `password eq "…"`,
/// each once rewritten (the finding's message and fix quote it) and once rejected
/// (the error `detail` quotes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reaches_no_log_explanation_capture_har_or_error_detail() {
    let passwords = [
        "Pw-create-7f2a",
        "Pw-patch-path-91c3",
        "Pw-patch-value-5d0e",
        "Pw-filter-44b8",
    ];
    let user = format!(
        r#"{{"userName":"pw.user","displayName":"P U","name":{{"givenName":"P","familyName":"U"}},"emails":[{{"value":"p@example.com","type":"work","primary":true}}],"password":"{}"}}"#,
        passwords[0]
    );
    let patch_path = format!(
        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{{"op":"replace","path":"password","value":"{}"}}]}}"#,
        passwords[1]
    );
    let patch_value = format!(
        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{{"op":"replace","value":{{"password":"{}","displayName":"P V"}}}}]}}"#,
        passwords[2]
    );
    let filter = format!("/Users?filter=password%20eq%20%22{}%22", passwords[3]);

    let dir = tempfile::tempdir().unwrap();
    let mut outputs: Vec<(String, String)> = Vec::new();
    for (run, extra) in [
        ("rewrite", &[][..]),
        (
            "reject",
            &[
                "--rule",
                "user.unsupported-attributes=reject",
                "--rule",
                "user.patch.values=reject",
            ][..],
        ),
    ] {
        let capture = dir.path().join(format!("{run}.jsonl"));
        let explain = dir.path().join(format!("{run}.explain.jsonl"));
        let stderr = dir.path().join(format!("{run}.log"));
        let mut args = vec![
            "--record",
            capture.to_str().unwrap(),
            "--explain-log",
            explain.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (mut child, endpoint, _) = start(&args, &stderr);
        let (status, created) = call(&endpoint, Method::POST, "/Users", &[], &user).await;
        outputs.push((
            format!("{run}: CreateUser answer {status}"),
            created.clone(),
        ));
        let id = serde_json::from_str::<serde_json::Value>(&created)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "9067a1b2c3-00000000-0000-4000-8000-000000000000".into());
        for body in [&patch_path, &patch_value] {
            let (status, answer) =
                call(&endpoint, Method::PATCH, &format!("/Users/{id}"), &[], body).await;
            outputs.push((format!("{run}: PatchUser answer {status}"), answer));
        }
        let (status, answer) = call(&endpoint, Method::GET, &filter, &[], "").await;
        outputs.push((format!("{run}: ListUsers answer {status}"), answer));
        terminate(&mut child);

        #[cfg(unix)]
        {
            assert_eq!(mode(&capture), 0o600, "the capture is private");
            assert_eq!(mode(&explain), 0o600, "the explanation log is private");
        }
        let log = std::fs::read_to_string(&stderr).unwrap();
        assert!(log.contains("user.unsupported-attributes"), "{log}");
        let explained = std::fs::read_to_string(&explain).unwrap();
        assert_eq!(explained.lines().count(), 4, "{explained}");
        assert!(explained.contains("[REDACTED]"), "{explained}");
        outputs.push((format!("{run}: stderr"), log));
        outputs.push((format!("{run}: --explain-log"), explained));
        outputs.push((
            format!("{run}: capture"),
            std::fs::read_to_string(&capture).unwrap(),
        ));
        outputs.push((format!("{run}: HAR"), export_har(&capture)));
    }
    // The rejecting run answered 400s whose detail names the problem, not the value.
    let rejected = outputs
        .iter()
        .filter(|(what, body)| what.starts_with("reject") && body.contains("\"detail\""))
        .count();
    assert!(rejected >= 3, "{outputs:#?}");
    for (what, text) in &outputs {
        for password in passwords {
            assert!(!text.contains(password), "{password} in {what}:\n{text}");
        }
        assert!(!text.contains(TOKEN), "the bearer token in {what}");
    }
}

/// Issue 18's shapes: query `key=`, `sig=`, `pw=`; headers `X-Access-Key` and
/// `X-Session`; a `passwd` attribute; a `password` in a body that is not JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_secret_shape_is_absent_from_the_capture_and_har() {
    let secrets = [
        "q-key-0a1b2c",
        "q-sig-3d4e5f",
        "q-pw-6a7b8c",
        "h-access-9d0e1f",
        "h-session-2a3b4c",
        "b-passwd-5d6e7f",
        "b-nonjson-8a9b0c",
    ];
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let (mut child, endpoint, _) = start(
        &[
            "--record",
            capture.to_str().unwrap(),
            "--replica-name",
            "replica-x",
        ],
        &dir.path().join("e.log"),
    );
    call(
        &endpoint,
        Method::GET,
        &format!(
            "/Users?key={}&sig={}&pw={}&count=5",
            secrets[0], secrets[1], secrets[2]
        ),
        &[("X-Access-Key", secrets[3]), ("X-Session", secrets[4])],
        "",
    )
    .await;
    call(
        &endpoint,
        Method::POST,
        "/Users",
        &[],
        &format!(
            r#"{{"userName":"s.user","displayName":"S U","name":{{"givenName":"S","familyName":"U"}},"passwd":"{}"}}"#,
            secrets[5]
        ),
    )
    .await;
    let (status, answer) = call(
        &endpoint,
        Method::POST,
        "/Users",
        &[],
        &format!(r#"{{"userName":"n.user","password":"{}", "#, secrets[6]),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    terminate(&mut child);

    let recorded = std::fs::read_to_string(&capture).unwrap();
    assert_eq!(recorded.lines().count(), 3, "{recorded}");
    let har = export_har(&capture);
    for (what, text) in [("capture", &recorded), ("HAR", &har)] {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in the {what}:\n{text}");
        }
        assert!(!text.contains(TOKEN), "the bearer token in the {what}");
        assert!(text.contains("[REDACTED]"), "{text}");
    }
    assert_eq!(
        recorded.matches(r#""replica":"replica-x""#).count(),
        3,
        "each record names its replica"
    );
    // What is not secret stays, to debug with.
    assert!(
        recorded.contains("count=5") && recorded.contains("s.user"),
        "{recorded}"
    );
}
