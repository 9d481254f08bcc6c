//! SIGHUP: the certificate files are re-read without a restart; new connections get the
//! new certificate, open ones keep going, a bad file is refused and the old one kept.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::*;

fn listening_addr(banner: &str) -> SocketAddr {
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no https URL in {banner}"));
    url.trim_start_matches("https://").parse().unwrap()
}

#[tokio::test]
async fn sighup_swaps_the_served_certificate_and_keeps_it_when_the_new_one_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = TestPki::mint();
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = RunningBinary::start(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let addr = listening_addr(&proxy.stdout_line("scimguard listening on").await);
    let first_ca = std::fs::read(&first.ca).unwrap();
    let before = serial_of(
        &served_certificate(addr, "localhost", &first_ca)
            .await
            .unwrap(),
    );

    // An h2 connection opened before the reload, trusting only the first CA.
    let open = https_client(&first.ca, true);
    let get = || {
        Request::get(format!(
            "https://localhost:{}/scim/v2/Users/u-1",
            addr.port()
        ))
        .body(Full::new(Bytes::new()))
        .unwrap()
    };
    assert_eq!(send(&open, get()).await.0, 201);

    let second = TestPki::mint();
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    proxy.signal("HUP");
    let second_ca = std::fs::read(&second.ca).unwrap();
    let mut after = None;
    for _ in 0..50 {
        if let Ok(leaf) = served_certificate(addr, "localhost", &second_ca).await {
            after = Some(serial_of(&leaf));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = after
        .unwrap_or_else(|| panic!("the new certificate is not served: {}", proxy.stderr_text()));
    assert_ne!(after, before);
    assert!(
        served_certificate(addr, "localhost", &first_ca)
            .await
            .is_err(),
        "new handshakes get the new certificate only"
    );
    // The connection opened before the reload still works.
    assert_eq!(send(&open, get()).await.0, 201);

    // A bad new file is refused with a log line; the certificate in service stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    proxy.signal("HUP");
    for _ in 0..50 {
        if proxy.stderr_text().contains("refused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stderr = proxy.stderr_text();
    assert!(
        stderr.contains("refused") && stderr.contains("cert.pem"),
        "{stderr}"
    );
    let kept = serial_of(
        &served_certificate(addr, "localhost", &second_ca)
            .await
            .unwrap(),
    );
    assert_eq!(kept, after);
    let stderr = proxy.stop().await;
    assert!(!stderr.contains("panicked"), "{stderr}");
}
