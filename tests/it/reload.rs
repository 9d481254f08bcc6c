//! SIGHUP: the certificate files are re-read without a restart; new connections get the
//! new certificate, open ones keep going, a bad file is refused and the old one kept.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::*;

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
    let addr = listening_addr(&proxy.stdout_line("scimguard listening on").await, "https");
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

#[tokio::test]
async fn sighup_rereads_the_rules_and_refuses_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scimguard.toml");
    let actions = |action: &str| format!("[rules.actions]\n\"user.required\" = \"{action}\"\n");
    std::fs::write(&config, actions("reject")).unwrap();
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = RunningBinary::start(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let banner = proxy.stdout_line("scimguard listening on").await;
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    // No displayName, givenName or familyName: user.required fires.
    let create = || {
        Request::post(format!("{url}/scim/v2/Users"))
            .header("content-type", "application/scim+json")
            .body(Full::new(Bytes::from_static(br#"{"userName":"jdoe"}"#)))
            .unwrap()
    };
    let verdict =
        |headers: &http::HeaderMap| headers["x-scimguard-verdict"].to_str().unwrap().to_owned();
    let (status, headers, _, _) = send(&http_client(), create()).await;
    assert_eq!(
        (status.as_u16(), verdict(&headers).as_str()),
        (400, "rejected")
    );

    std::fs::write(&config, actions("warn")).unwrap();
    proxy.signal("HUP");
    let mut forwarded = false;
    for _ in 0..50 {
        let (status, headers, _, _) = send(&http_client(), create()).await;
        if status == 201 && verdict(&headers) == "forwarded" {
            forwarded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        forwarded,
        "the new action is not in effect: {}",
        proxy.stderr_text()
    );

    // A broken config is refused; the rules in effect stay.
    std::fs::write(&config, "[rules.actions]\n\"no.such.rule\" = \"off\"\n").unwrap();
    proxy.signal("HUP");
    for _ in 0..50 {
        if proxy.stderr_text().contains("new rules were refused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stderr = proxy.stderr_text();
    assert!(
        stderr.contains("new rules were refused") && stderr.contains("no.such.rule"),
        "{stderr}"
    );
    let (status, _, _, _) = send(&http_client(), create()).await;
    assert_eq!(status, 201);
    proxy.stop().await;
}
