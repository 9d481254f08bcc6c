//! ACME with real parts: Debian's `pebble` (an RFC 8555 CA) with `pebble-challtestsrv`
//! as its DNS, validating TLS-ALPN-01 against scimguard's own listening port; then a
//! restart with pebble gone serves the cached certificate.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::*;

/// The name the certificate is ordered for; challtestsrv resolves every name to 127.0.0.1.
const NAME: &str = "scim.example.com";

/// pebble and its DNS, killed when dropped.
struct Pebble {
    directory: String,
    management: u16,
    _dns: RunningProgram,
    _server: RunningProgram,
}

struct RunningProgram(std::process::Child);

impl Drop for RunningProgram {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Pebble {
    /// Starts challtestsrv and pebble, pebble validating TLS-ALPN-01 on `tls_port`.
    async fn start(dir: &Path, pki: &TestPki, tls_port: u16) -> Option<Self> {
        Self::start_issuing_for(dir, pki, tls_port, None).await
    }

    /// Like [`Pebble::start`], its certificates valid for `validity_s` seconds.
    async fn start_issuing_for(
        dir: &Path,
        pki: &TestPki,
        tls_port: u16,
        validity_s: Option<u64>,
    ) -> Option<Self> {
        let pebble = crate::external::program("pebble", "pebble")?;
        let challtestsrv = crate::external::program("pebble-challtestsrv", "pebble")?;
        let dns_port = free_port();
        let dns = std::process::Command::new(challtestsrv)
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv starts");
        let dns = RunningProgram(dns);
        let (listen, management) = (free_port(), free_port());
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": pki.cert,
                "privateKey": pki.key,
                "httpPort": free_port(),
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        if let Some(seconds) = validity_s {
            config["pebble"]["certificateValidityPeriod"] = seconds.into();
        }
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let server = std::process::Command::new(pebble)
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // Validate at once instead of after pebble's random 0-15 s, and never
            // refuse a good nonce: the test is about scimguard, not pebble's chaos.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pebble starts");
        let server = RunningProgram(server);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", listen))
                .await
                .is_ok()
            {
                return Some(Pebble {
                    directory: format!("https://localhost:{listen}/dir"),
                    management,
                    _dns: dns,
                    _server: server,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("pebble did not listen on {listen}");
    }

    /// The root pebble signs with (made fresh at each pebble start).
    async fn root(&self, pki: &TestPki) -> Bytes {
        let request = Request::get(format!("https://localhost:{}/roots/0", self.management))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, _, body, _) = send(&https_client(&pki.ca, false), request).await;
        assert_eq!(status, 200);
        body
    }
}

fn scimguard(port: u16, cache: &Path, directory: &str, ca: &Path, upstream: &str) -> RunningBinary {
    RunningBinary::start(&[
        "run",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--upstream",
        upstream,
        "--admin",
        "127.0.0.1:0",
        "--acme-domain",
        NAME,
        "--acme-contact",
        "mailto:ops@example.com",
        "--acme-cache",
        cache.to_str().unwrap(),
        "--acme-directory",
        directory,
        "--acme-ca",
        ca.to_str().unwrap(),
    ])
}

/// Waits up to 60 s for `addr` to serve a certificate for NAME that `root` trusts.
async fn trusted_certificate(
    addr: std::net::SocketAddr,
    root: &[u8],
    proxy: &RunningBinary,
) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        match served_certificate(addr, NAME, root).await {
            Ok(cert) => return serial_of(&cert),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "no trusted certificate served: {last}; scimguard said: {}",
        proxy.stderr_text()
    );
}

#[tokio::test]
async fn a_certificate_is_issued_by_pebble_through_tls_alpn_01_served_trusted_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::mint();
    let port = free_port();
    let Some(pebble) = Pebble::start(dir.path(), &pki, port).await else {
        return;
    };
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let cache = dir.path().join("acme");
    let proxy = scimguard(port, &cache, &pebble.directory, &pki.ca, &upstream.url());
    let banner = proxy.stdout_line("ACME:").await;
    assert!(
        banner.contains("TLS-ALPN-01") && banner.contains("load balancer"),
        "{banner}"
    );

    let root = pebble.root(&pki).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let serial = trusted_certificate(addr, &root, &proxy).await;

    // An HTTP request over it reaches the upstream.
    let mut tls = tls_connect(addr, NAME, &root).await.unwrap();
    let answer = raw_exchange(
        &mut tls,
        &format!("GET /scim/v2/Users/u-1 HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.ends_with(UPSTREAM_BODY), "{answer}");

    // The expiry gauge holds the served certificate's notAfter.
    let metrics_line = proxy.stdout_line("Metrics:").await;
    let metrics_url = metrics_line.split_whitespace().nth(1).unwrap().to_owned();
    let request = Request::get(metrics_url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, _, text, _) = send(&http_client(), request).await;
    let text = String::from_utf8_lossy(&text).into_owned();
    let expiry: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("scimguard_certificate_expiry_timestamp_seconds "))
        .unwrap_or_else(|| panic!("no expiry gauge in {text}"))
        .trim()
        .parse()
        .unwrap();
    let leaf = served_certificate(addr, NAME, &root).await.unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    assert_eq!(expiry, parsed.validity().not_after.timestamp());

    // Account key and certificate are cached, readable by their owner only.
    let mut cached = Vec::new();
    for folder in std::fs::read_dir(&cache).unwrap() {
        for file in std::fs::read_dir(folder.unwrap().path()).unwrap() {
            cached.push(file.unwrap().path());
        }
    }
    assert!(
        cached.iter().any(|p| p.ends_with("account.json")),
        "{cached:?}"
    );
    assert!(
        cached
            .iter()
            .any(|p| p.to_string_lossy().contains("certificate-")),
        "{cached:?}"
    );
    for file in &cached {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    proxy.stop().await;

    // A restart with the CA gone serves the cached certificate at once.
    drop(pebble);
    let port = free_port();
    let directory_gone = cached_directory(&cache);
    let proxy = scimguard(port, &cache, &directory_gone, &pki.ca, &upstream.url());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let again = trusted_certificate(addr, &root, &proxy).await;
    assert_eq!(
        again, serial,
        "the cached certificate is served after a restart"
    );
    proxy.stop().await;
}

/// The directory URL the cache was made for (its folder records it).
fn cached_directory(cache: &Path) -> String {
    let folder = std::fs::read_dir(cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read_to_string(folder.join("directory-url.txt"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_failed_validation_is_logged_with_the_problem_document_and_the_load_balancer_hint() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::mint();
    // pebble validates on a port where nothing answers, as when a load balancer in
    // front does not pass the handshake through.
    let Some(pebble) = Pebble::start(dir.path(), &pki, free_port()).await else {
        return;
    };
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = scimguard(
        free_port(),
        &dir.path().join("acme"),
        &pebble.directory,
        &pki.ca,
        &upstream.url(),
    );
    let mut stderr = String::new();
    for _ in 0..150 {
        stderr = proxy.stderr_text();
        if stderr.contains("validation failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let line = stderr
        .lines()
        .find(|l| l.contains("validation failed"))
        .unwrap_or_else(|| panic!("no failure logged: {stderr}"));
    assert!(line.contains("urn:ietf:params:acme:error:"), "{line}");
    assert!(
        line.contains(NAME) && line.contains("load balancer"),
        "{line}"
    );
    assert!(line.contains("retry_in_s=60"), "{line}");
    proxy.stop().await;
}

#[tokio::test]
async fn renewal_swaps_the_certificate_ahead_of_expiry_without_dropping_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::mint();
    let port = free_port();
    // 15-second certificates: renewal is due when 5 s are left, 10 s after issuance.
    let Some(pebble) = Pebble::start_issuing_for(dir.path(), &pki, port, Some(15)).await else {
        return;
    };
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = scimguard(
        port,
        &dir.path().join("acme"),
        &pebble.directory,
        &pki.ca,
        &upstream.url(),
    );
    let root = pebble.root(&pki).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let first = trusted_certificate(addr, &root, &proxy).await;

    // An HTTP/1.1 keep-alive connection opened on the first certificate.
    let tls = tls_connect(addr, NAME, &root).await.unwrap();
    let (mut open, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let get = || {
        Request::get("/scim/v2/Users/u-1")
            .header("host", NAME)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(open.send_request(get()).await.unwrap().status(), 201);

    // Requests keep flowing on it meanwhile (an idle one would meet the server's
    // keep-alive timeout, which is not what this test is about).
    let mut renewed = None;
    for _ in 0..100 {
        assert_eq!(open.send_request(get()).await.unwrap().status(), 201);
        if let Ok(leaf) = served_certificate(addr, NAME, &root).await {
            let serial = serial_of(&leaf);
            if serial != first {
                renewed = Some(serial);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        renewed.is_some(),
        "no renewal within 25 s: {}",
        proxy.stderr_text()
    );
    // The connection opened before the renewal still serves requests.
    assert_eq!(open.send_request(get()).await.unwrap().status(), 201);
    proxy.stop().await;
}
