//! The flow through the binary, over raw sockets: outcomes in the header, the metrics
//! and the log; log lines no request can forge (text and JSON).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::binary;

/// `scimguard run` as a child process, its stderr going to a file.
struct Running {
    child: Child,
    addr: SocketAddr,
    /// The banner's lines after the first (endpoint, token, metrics…).
    banner: Vec<String>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts `scimguard run --listen 127.0.0.1:0 ARGS` and reads `banner_lines` lines
    /// of its banner.
    fn start(args: &[&str], banner_lines: usize) -> Running {
        Self::start_with_env(args, &[], banner_lines)
    }

    fn start_with_env(args: &[&str], envs: &[(&str, &str)], banner_lines: usize) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let mut child = Command::new(binary())
            .args(["run", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("SCIMGUARD_UPSTREAM")
            .env_remove("SCIMGUARD_LOG")
            .env_remove("SCIMGUARD_LOG_FORMAT")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut lines = (0..banner_lines).map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            line.trim_end().to_owned()
        });
        let first = lines.next().unwrap();
        let addr = first
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no banner: {first:?}"))
            .parse()
            .unwrap();
        let banner = lines.collect();
        Running {
            child,
            addr,
            banner,
            stderr,
            _dir: dir,
        }
    }

    /// The banner line starting with `label`, without it.
    fn banner(&self, label: &str) -> String {
        self.banner
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {:?}", self.banner))
            .trim()
            .to_owned()
    }

    /// SIGTERM, wait for the exit, and return everything it logged.
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "{exit:?}");
        std::fs::read_to_string(&self.stderr).unwrap()
    }
}

/// Sends raw bytes as one HTTP/1.1 exchange (the request should say `Connection:
/// close`) and returns the whole answer as text.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A request with a JSON body, bearer `token`, `Connection: close`.
fn json_request(method: &str, target: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An answer's status code and the value of one header.
fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// What a forged line would say, were client text written raw.
const FORGED: &str = "INFO scimguard::request: request id=FORGED status=200";

/// Requests whose attribute names, values and PATCH path carry `\n`, `\r`, and other
/// control characters, each followed by a forged log line.
fn forging_requests(tenant_path: &str, token: &str) -> Vec<Vec<u8>> {
    let user = |extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "forger@example.com", "displayName": "F",
            "name": {"givenName": "F", "familyName": "G"},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body.to_string()
    };
    let users = format!("{tenant_path}/Users");
    vec![
        // An attribute name holding a line break, with a value a rule reports.
        json_request(
            "POST",
            &users,
            token,
            &user(serde_json::json!({ format!("x\n{FORGED}"): "a\u{7}" })),
        ),
        json_request(
            "POST",
            &users,
            token,
            &user(serde_json::json!({ format!("x\r{FORGED}\r\n"): "\u{200B}" })),
        ),
        // A value holding line breaks and a vertical tab, in an attribute AWS lacks.
        json_request(
            "POST",
            &users,
            token,
            &user(serde_json::json!({ "photos": format!("p\n{FORGED}\u{b}\u{1b}[2J") })),
        ),
        // A PATCH path with a line break, quoted in the rejection.
        json_request(
            "PATCH",
            &format!("{users}/u-1"),
            token,
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": format!("x\n{FORGED}"), "value": "1"}]
            })
            .to_string(),
        ),
    ]
}

/// Whether `line` starts as tracing-subscriber's text format does: an RFC 3339 UTC
/// timestamp, then a level.
fn starts_like_a_log_line(line: &str) -> bool {
    let Some((time, rest)) = line.split_once(' ') else {
        return false;
    };
    let level = rest.trim_start().split(' ').next().unwrap_or("");
    time.len() >= 20
        && time.as_bytes()[4] == b'-'
        && time.as_bytes()[10] == b'T'
        && time.ends_with('Z')
        && ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level)
}

/// Sends the forging requests to a fresh proxy (embedded emulator) and returns what it
/// logged and the request ids it answered with.
fn forge(args: &[&str], envs: &[(&str, &str)]) -> (String, Vec<String>) {
    let args = [args, &["--token", "tok"]].concat();
    let proxy = Running::start_with_env(&args, envs, 3);
    let endpoint = proxy.banner("SCIM endpoint:");
    let tenant_path = &endpoint[endpoint.find("/d-").expect("a tenant path")..];
    let mut ids = Vec::new();
    for request in forging_requests(tenant_path, "tok") {
        let answer = raw(proxy.addr, &request);
        assert!(status_of(&answer) < 500, "{answer}");
        ids.push(
            header(&answer, "x-scimguard-request-id")
                .expect("a request id")
                .to_owned(),
        );
    }
    (proxy.stop(), ids)
}

#[test]
fn client_text_never_starts_a_text_log_line() {
    let (log, ids) = forge(&["--log-format", "text"], &[]);
    assert!(log.contains("FORGED"), "the client text is logged: {log}");
    for line in log.lines() {
        assert!(starts_like_a_log_line(line), "a line of its own: {line:?}");
        assert!(!line.contains('\r'), "{line:?}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }
    // One request line per request, each in the span of the id it answered with.
    let request_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("}: scimguard::request: request "))
        .collect();
    assert_eq!(request_lines.len(), ids.len(), "{log}");
    for (line, id) in request_lines.iter().zip(&ids) {
        assert!(line.contains(&format!("request{{id={id}}}")), "{line}");
        assert!(!line.contains("FORGED"), "{line}");
    }
    // The findings quoting the client text are in their request's span, escaped.
    let finding = log
        .lines()
        .find(|l| l.contains("scimguard::finding") && l.contains("FORGED"))
        .expect("a finding quotes the attribute");
    assert!(finding.contains(r"x\nINFO scimguard::request"), "{finding}");
    assert!(ids.iter().any(|id| finding.contains(id.as_str())));
}

#[test]
fn client_text_never_starts_a_json_log_line() {
    let (log, ids) = forge(&[], &[("SCIMGUARD_LOG_FORMAT", "json")]);
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{e}: a line of its own: {line:?}"))
        })
        .collect();
    let requests: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["target"] == "scimguard::request")
        .collect();
    assert_eq!(requests.len(), ids.len(), "{log}");
    for (event, id) in requests.iter().zip(&ids) {
        assert_eq!(event["message"], "request");
        assert_eq!(event["span"]["id"], id.as_str(), "{event}");
    }
    let finding = events
        .iter()
        .find(|e| e["target"] == "scimguard::finding" && e.to_string().contains("FORGED"))
        .expect("a finding quotes the attribute");
    let detail = finding["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("x\n{FORGED}")), "{detail}");
    assert!(ids.contains(&finding["span"]["id"].as_str().unwrap().to_owned()));
}

#[test]
fn an_upstream_failure_is_the_outcome_error_in_the_header_metrics_and_log() {
    // A port that was just free: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let upstream = format!("http://{free}");
    let dir = tempfile::tempdir().unwrap();
    let explain = dir.path().join("explain.jsonl");
    let proxy = Running::start(
        &[
            "--upstream",
            &upstream,
            "--admin",
            "127.0.0.1:0",
            "--explain-log",
            explain.to_str().unwrap(),
        ],
        2,
    );
    let admin: SocketAddr = proxy
        .banner("Metrics:")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let answer = raw(
        proxy.addr,
        b"GET /t/scim/v2/Users/u-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 502, "{answer}");
    assert_eq!(header(&answer, "x-scimguard-verdict"), Some("error"));

    let metrics = raw(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = body_of(&metrics);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the exposition parses");
    let count = |name: &str, label: &str, value: &str| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && s.labels.get(label) == Some(value))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("{other:?}"),
            })
            .sum()
    };
    assert_eq!(
        count("scimguard_requests_total", "verdict", "error"),
        1.0,
        "{text}"
    );
    assert_eq!(
        count("scimguard_requests_total", "verdict", "forwarded"),
        0.0,
        "{text}"
    );
    assert_eq!(
        count("scimguard_errors_total", "blame", "upstream"),
        1.0,
        "{text}"
    );

    let log = proxy.stop();
    let line = log
        .lines()
        .find(|l| l.contains("scimguard::request: request"))
        .expect("the request's line");
    assert!(line.contains("verdict=error"), "{line}");
    assert!(line.contains("status=502"), "{line}");
    assert!(line.contains("blame=upstream"), "{line}");
    let explained: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&explain).unwrap().trim()).unwrap();
    assert_eq!(explained["verdict"], "error", "{explained}");
    assert_eq!(explained["blame"], "upstream", "{explained}");
    assert_eq!(explained["status"], 502, "{explained}");
}

/// `raw` off the async workers, for tests that also run an in-process upstream.
async fn raw_async(addr: SocketAddr, request: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || raw(addr, &request))
        .await
        .unwrap()
}

/// Asserts an AWS-shaped SCIM error of `status` with scimguard's request id and the
/// outcome `error`; returns its detail.
fn assert_own_refusal(answer: &str, status: u16) -> String {
    assert_eq!(status_of(answer), status, "{answer}");
    let id = header(answer, "x-scimguard-request-id").expect("a request id");
    assert_eq!(id.len(), 32, "{answer}");
    assert_eq!(
        header(answer, "x-scimguard-verdict"),
        Some("error"),
        "{answer}"
    );
    let (body_status, detail) = crate::support::scim_error(body_of(answer).as_bytes());
    assert_eq!(body_status, status.to_string());
    detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_layer_refusals_are_aws_shaped_with_a_request_id_and_a_log_line() {
    let upstream = crate::support::TestUpstream::start(crate::support::Behaviour::Answer).await;
    let proxy = Running::start(&["--upstream", &upstream.url()], 1);
    let get = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
    };

    // A raw space in the target: hyper cannot read the request line.
    let answer = raw_async(proxy.addr, get("/t/scim/v2/Users?filter=userName eq \"a\"")).await;
    let detail = assert_own_refusal(&answer, 400);
    assert!(detail.contains("raw space"), "{detail}");

    // Two Content-Lengths that differ.
    let answer = raw_async(
        proxy.addr,
        b"POST /t/scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}"
            .to_vec(),
    )
    .await;
    let detail = assert_own_refusal(&answer, 400);
    assert!(detail.contains("Content-Length"), "{detail}");

    // A 69 KB target is more than an http::Uri holds: hyper's 414, replaced.
    let long = format!("/t/scim/v2/Users?filter={}", "a".repeat(69 * 1024));
    let answer = raw_async(proxy.addr, get(&long)).await;
    let detail = assert_own_refusal(&answer, 414);
    assert!(detail.contains("8192 bytes"), "{detail}");

    // Over scimguard's own 8 KiB limit: refused in the pipeline, before the body.
    let over = format!("/t/scim/v2/Users?filter={}", "a".repeat(8 * 1024));
    let answer = raw_async(proxy.addr, get(&over)).await;
    let detail = assert_own_refusal(&answer, 414);
    assert!(detail.contains("limit of 8192 bytes"), "{detail}");
    // Exactly the limit passes.
    let prefix = "/t/scim/v2/Custom?q=";
    let exact = format!("{prefix}{}", "a".repeat(8 * 1024 - prefix.len()));
    let answer = raw_async(proxy.addr, get(&exact)).await;
    assert_eq!(status_of(&answer), 201, "{answer}");

    // Headers over hyper's buffer.
    let huge = format!(
        "GET /t/scim/v2/Users HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(512 * 1024)
    );
    let answer = raw_async(proxy.addr, huge.into_bytes()).await;
    assert_own_refusal(&answer, 431);

    assert_eq!(
        upstream.seen().len(),
        1,
        "only the request within the limits was forwarded"
    );
    let log = proxy.stop();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("}: scimguard::request: request "))
        .collect();
    assert_eq!(lines.len(), 6, "a line per answer: {log}");
    for status in ["400", "414", "431"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("status={status}")) && l.contains("blame=client")),
            "{status}: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_never_climb_out_of_the_upstream_tenant() {
    let upstream = crate::support::TestUpstream::start(crate::support::Behaviour::Answer).await;
    let base = format!("{}/tenant-a/scim/v2", upstream.url());
    // One request a second, refused at once beyond it: a refusal must spend no quota.
    let proxy = Running::start(
        &[
            "--upstream",
            &base,
            "--rate",
            "1",
            "--burst",
            "1",
            "--throttle",
            "reject",
        ],
        1,
    );
    for target in [
        "/../../tenant-b/scim/v2/Users",
        "/./Users",
        "/%2e%2e/%2E%2E/tenant-b/scim/v2/Users",
        "/Users/%2e%2E",
        "/..%2f..%2ftenant-b/scim/v2/Users",
    ] {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes();
        let answer = raw_async(proxy.addr, request).await;
        let detail = assert_own_refusal(&answer, 400);
        assert!(detail.contains("dot-segment"), "{target}: {detail}");
        assert!(detail.contains("another tenant"), "{target}: {detail}");
    }
    assert!(upstream.seen().is_empty(), "nothing was forwarded");

    // The tenant's one token is still there.
    let answer = raw_async(
        proxy.addr,
        b"GET /Users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status_of(&answer), 201, "{answer}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri.path(), "/tenant-a/scim/v2/Users");

    // And now it is spent: the throttle phase refuses, and says so.
    let answer = raw_async(
        proxy.addr,
        b"GET /Users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    )
    .await;
    assert_eq!(status_of(&answer), 429, "{answer}");
    assert_eq!(header(&answer, "x-scimguard-verdict"), Some("throttled"));
    assert_eq!(upstream.seen().len(), 1);
    let log = proxy.stop();
    assert!(
        log.lines()
            .any(|l| l.contains("verdict=throttled status=429") && l.contains("blame=client")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_request_hyper_cannot_read_is_answered_aws_shaped_too() {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = crate::support::TestPki::mint();
    let proxy = Running::start(
        &[
            "--upstream",
            "http://127.0.0.1:1",
            "--tls-cert",
            pki.cert.to_str().unwrap(),
            "--tls-key",
            pki.key.to_str().unwrap(),
        ],
        1,
    );
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /t/scim/v2/Users?filter=userName eq \"a\" HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    let detail = assert_own_refusal(&answer, 400);
    assert!(detail.contains("raw space"), "{detail}");
    proxy.stop();
}
