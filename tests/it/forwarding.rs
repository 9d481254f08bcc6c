//! Transparent forwarding: what reaches the upstream, and what comes back.

use std::io::{Read, Write};

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::Full;
use scimguard::cli::RunArgs;

use crate::support::*;

/// A CreateUser body every rule accepts, with a CRLF and spacing a re-serialization
/// would lose: it must arrive exactly as sent.
const BODY: &str = "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\r\n \"userName\":\"bjensen\",\"displayName\":\"Babs Jensen\",\"name\":{\"givenName\":\"Barbara\",  \"familyName\":\"Jensen\"},\"emails\":[{\"value\":\"bjensen@example.com\",\"type\":\"work\",\"primary\":true}]}";

#[tokio::test]
async fn request_reaches_upstream_byte_for_byte_with_upstream_host() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&format!("{}/tenant-1/scim/v2/", upstream.url())).await;

    let request = Request::builder()
        .method(Method::POST)
        .uri(proxy.url("/Users?filter=userName+eq+%22bjensen%22&x=%2F"))
        .header("authorization", "Bearer s3cr3t-t0ken")
        .header("content-type", "application/scim+json; charset=utf-8")
        .header("x-custom", "  spaced\tvalue ")
        .header("user-agent", "Entra-Provisioning/1.0")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap();
    let (status, headers, body, _) = send(&http_client(), request).await;

    assert_eq!(status, 201);
    assert_eq!(body, UPSTREAM_BODY.as_bytes());
    assert_eq!(
        headers["x-amzn-requestid"],
        "b0d3cf5e-0000-4d5e-9d8a-3a6d4c7e0001"
    );
    let id = headers["x-scimguard-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "{id}");

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    assert_eq!(got.method, Method::POST);
    assert_eq!(
        got.uri.to_string(),
        "/tenant-1/scim/v2/Users?filter=userName+eq+%22bjensen%22&x=%2F"
    );
    assert_eq!(got.body, BODY.as_bytes());
    assert_eq!(got.headers["authorization"], "Bearer s3cr3t-t0ken");
    assert_eq!(
        got.headers["content-type"],
        "application/scim+json; charset=utf-8"
    );
    assert_eq!(got.headers["x-custom"].as_bytes(), b"spaced\tvalue");
    assert_eq!(got.headers["user-agent"], "Entra-Provisioning/1.0");
    assert_eq!(
        got.headers["content-length"],
        BODY.len().to_string().as_str()
    );
    assert_eq!(got.headers["host"], upstream.addr.to_string().as_str());
    assert!(got.headers.get("x-forwarded-for").is_none());
    assert!(got.headers.get("x-forwarded-proto").is_none());
}

#[tokio::test]
async fn every_method_and_an_empty_body_pass_through() {
    // An unknown SCIM path: no rule judges its body, so it shows plain forwarding.
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let client = http_client();
    for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        let request = Request::builder()
            .method(method.clone())
            .uri(proxy.url("/scim/v2/Custom/abc"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, ..) = send(&client, request).await;
        assert_eq!(status, 201);
        let seen = upstream.seen();
        let last = seen.last().unwrap();
        assert_eq!(last.method, method);
        assert_eq!(last.uri.path(), "/scim/v2/Custom/abc");
        assert!(last.body.is_empty());
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;

    // Raw HTTP/1.1 so the request can carry every hop-by-hop header, chunked body included.
    let mut stream = std::net::TcpStream::connect(proxy.addr).unwrap();
    let request = "POST /scim/v2/Custom HTTP/1.1\r\nHost: proxy.local\r\n\
        Connection: keep-alive, X-Client-Hop\r\nX-Client-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
        Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
        Trailer: X-Checksum\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\
        Authorization: Bearer tok\r\nX-End-To-End: kept\r\n\r\n\
        5\r\nhello\r\n0\r\n\r\n";
    let response = tokio::task::spawn_blocking(move || {
        stream.write_all(request.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf
            .windows(UPSTREAM_BODY.len())
            .any(|w| w == UPSTREAM_BODY.as_bytes())
        {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed early");
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(buf).unwrap().to_ascii_lowercase()
    })
    .await
    .unwrap();

    let seen = upstream.seen();
    let got = &seen[0].headers;
    for hop in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            got.get(hop).is_none(),
            "{hop} reached the upstream: {got:?}"
        );
    }
    assert_eq!(got["x-end-to-end"], "kept");
    assert_eq!(got["authorization"], "Bearer tok");
    assert_eq!(seen[0].body, "hello");

    assert!(response.starts_with("http/1.1 201"), "{response}");
    assert!(
        response.contains("x-amzn-requestid: b0d3cf5e"),
        "{response}"
    );
    assert!(!response.contains("x-upstream-hop"), "{response}");
    assert!(!response.contains("timeout=5"), "{response}");
}

#[tokio::test]
async fn forwarded_headers_only_when_asked() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        forwarded_headers: true,
        trusted_proxies: vec!["127.0.0.0/8".into()],
        ..RunArgs::default()
    })
    .await;
    let request = Request::builder()
        .uri(proxy.url("/scim/v2/Users"))
        .header("host", "idp-facing.example")
        .header("x-forwarded-for", "10.1.2.3")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&http_client(), request).await;
    let got = &upstream.seen()[0].headers;
    assert_eq!(got["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(got["x-forwarded-proto"], "http");
    assert_eq!(got["x-forwarded-host"], "idp-facing.example");
    assert_eq!(got["host"], upstream.addr.to_string().as_str());
}

#[tokio::test]
async fn x_forwarded_for_from_a_peer_outside_trusted_proxies_is_replaced() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        forwarded_headers: true,
        trusted_proxies: vec!["10.0.0.0/8".into()],
        ..RunArgs::default()
    })
    .await;
    let request = Request::builder()
        .uri(proxy.url("/scim/v2/Users"))
        .header("x-forwarded-for", "10.1.2.3")
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&http_client(), request).await;
    let got = &upstream.seen()[0].headers;
    assert_eq!(
        got["x-forwarded-for"], "127.0.0.1",
        "the peer is not a trusted proxy"
    );
}

#[tokio::test]
async fn absolute_form_target_and_host_cannot_redirect_the_proxy() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let elsewhere = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;

    let target = format!("http://{}/steal?x=1", elsewhere.addr);
    let raw = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        elsewhere.addr
    );
    let addr = proxy.addr;
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();

    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(
        elsewhere.seen().is_empty(),
        "the proxy contacted a host named by the client"
    );
    let seen = upstream.seen();
    assert_eq!(seen[0].uri.to_string(), "/steal?x=1");
    assert_eq!(seen[0].headers["host"], upstream.addr.to_string().as_str());
}

#[tokio::test]
async fn h2_and_http1_clients_both_reach_an_http1_upstream() {
    // h2 from the client needs TLS (ALPN); the upstream here is plain HTTP/1.1.
    let pki = TestPki::mint();
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        tls_cert: Some(pki.cert.clone()),
        tls_key: Some(pki.key.clone()),
        ..RunArgs::default()
    })
    .await;
    for h2 in [true, false] {
        let client = https_client(&pki.ca, h2);
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!(
                "https://localhost:{}/scim/v2/Users",
                proxy.addr.port()
            ))
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .unwrap();
        let (status, headers, body, version) = send(&client, request).await;
        assert_eq!(status, 201);
        assert_eq!(
            version,
            if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            }
        );
        assert_eq!(body, UPSTREAM_BODY.as_bytes());
        assert!(headers.contains_key("x-scimguard-request-id"));
        let last = upstream.seen().pop().unwrap();
        assert_eq!(last.version, Version::HTTP_11);
        assert_eq!(last.body, BODY.as_bytes());
        assert_eq!(last.headers["host"], upstream.addr.to_string().as_str());
    }
}
