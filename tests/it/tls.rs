//! TLS on both legs: the HTTPS listener and an HTTPS upstream with a private CA.

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::Full;
use scimguard::cli::RunArgs;

use crate::support::*;

const PATCH: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Group Foo New"}]}"#;

#[tokio::test]
async fn https_upstream_trusted_through_upstream_ca_speaks_h2_with_its_own_sni_and_authority() {
    let pki = TestPki::mint();
    let upstream = TestUpstream::start_with(Behaviour::Answer, Some(pki.server_config())).await;
    let upstream_url = format!("https://localhost:{}/t-9/scim/v2", upstream.addr.port());
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream_url),
        upstream_ca: Some(pki.ca.clone()),
        ..RunArgs::default()
    })
    .await;

    let client = http_client();
    for _ in 0..2 {
        let request = Request::builder()
            .method(Method::PATCH)
            .uri(proxy.url("/Groups/g-1"))
            .header("host", "proxy.example")
            .header("authorization", "Bearer abc")
            .body(Full::new(Bytes::from_static(PATCH.as_bytes())))
            .unwrap();
        let (status, _, body, _) = send(&client, request).await;
        assert_eq!(status, 201);
        assert_eq!(body, UPSTREAM_BODY.as_bytes());
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    for got in &seen {
        assert_eq!(
            got.version,
            Version::HTTP_2,
            "the upstream offered h2 in ALPN"
        );
        assert_eq!(got.uri.path(), "/t-9/scim/v2/Groups/g-1");
        assert_eq!(
            got.uri.authority().map(|a| a.as_str().to_owned()),
            Some(format!("localhost:{}", upstream.addr.port()))
        );
        assert_eq!(got.headers["authorization"], "Bearer abc");
        assert_eq!(got.body, PATCH);
    }
    let snis = upstream.snis.lock().unwrap().clone();
    assert_eq!(
        snis,
        vec!["localhost".to_owned()],
        "one pooled connection, SNI of the upstream"
    );
}

#[tokio::test]
async fn an_upstream_certificate_outside_the_trust_store_is_a_502_that_says_so() {
    let pki = TestPki::mint();
    let upstream = TestUpstream::start_with(Behaviour::Answer, Some(pki.server_config())).await;
    let proxy =
        TestProxy::in_front_of(&format!("https://localhost:{}", upstream.addr.port())).await;
    let request = Request::get(proxy.url("/scim/v2/Users"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body, _) = send(&http_client(), request).await;
    assert_eq!(status, 502);
    let (status, detail) = scim_error(&body);
    assert_eq!(status, "502");
    assert!(detail.to_lowercase().contains("certificate"), "{detail}");
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn https_listener_serves_h2_and_http1_with_a_runtime_certificate() {
    let pki = TestPki::mint();
    let upstream = TestUpstream::start_with(Behaviour::Answer, Some(pki.server_config())).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(format!("https://127.0.0.1:{}", upstream.addr.port())),
        upstream_ca: Some(pki.ca.clone()),
        tls_cert: Some(pki.cert.clone()),
        tls_key: Some(pki.key.clone()),
        ..RunArgs::default()
    })
    .await;
    for h2 in [true, false] {
        let request = Request::get(format!(
            "https://localhost:{}/scim/v2/Users/u-1",
            proxy.addr.port()
        ))
        .body(Full::new(Bytes::new()))
        .unwrap();
        let (status, _, body, version) = send(&https_client(&pki.ca, h2), request).await;
        assert_eq!(status, 201);
        assert_eq!(body, UPSTREAM_BODY.as_bytes());
        assert_eq!(
            version,
            if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            }
        );
    }
    // h2 on both legs: the upstream saw HTTP/2 both times.
    assert!(upstream.seen().iter().all(|s| s.version == Version::HTTP_2));
    assert_eq!(
        upstream.snis.lock().unwrap()[0],
        "",
        "no SNI is sent for an IP address"
    );
}
