//! Bounds on inputs and on the upstream: 413, 502, 504, and the header timeout.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use scimguard::cli::RunArgs;

use crate::support::*;

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_never_reaches_the_upstream() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        max_body_bytes: Some(1024),
        ..RunArgs::default()
    })
    .await;
    let client = http_client();

    let exact = Request::post(proxy.url("/scim/v2/Custom"))
        .body(Full::new(Bytes::from(vec![b'x'; 1024])))
        .unwrap();
    let (status, ..) = send(&client, exact).await;
    assert_eq!(status, 201, "a body of exactly the limit passes");

    let over = Request::post(proxy.url("/scim/v2/Custom"))
        .body(Full::new(Bytes::from(vec![b'x'; 1025])))
        .unwrap();
    let (status, headers, body, _) = send(&client, over).await;
    assert_eq!(status, 413);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.contains_key("x-scimguard-request-id"));
    let (status, detail) = scim_error(&body);
    assert_eq!(status, "413");
    assert!(detail.contains("1024 bytes"), "{detail}");
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test]
async fn a_chunked_body_over_the_default_1_mib_gets_413() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let addr = proxy.addr;
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(
                b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .unwrap();
        // 17 chunks of 64 KiB = 1,114,112 bytes, over 1,048,576; no Content-Length to
        // refuse on, so the limit must hold while reading. The proxy may answer and
        // close before everything is sent.
        let chunk = vec![b'a'; 65536];
        for _ in 0..17 {
            if stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || stream.write_all(&chunk).is_err()
                || stream.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"status\":\"413\""), "{response}");
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_blaming_the_upstream() {
    // A port that was just free: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = TestProxy::in_front_of(&format!("http://{free}")).await;
    let request = Request::get(proxy.url("/scim/v2/Users"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body, _) = send(&http_client(), request).await;
    assert_eq!(status, 502);
    assert!(headers.contains_key("x-scimguard-request-id"));
    let (status, detail) = scim_error(&body);
    assert_eq!(status, "502");
    assert!(detail.contains(&free.to_string()), "{detail}");
    assert!(detail.to_lowercase().contains("refused"), "{detail}");
    assert!(detail.contains("--upstream"), "{detail}");
}

#[tokio::test]
async fn a_stalled_upstream_is_a_504_after_the_upstream_timeout() {
    let upstream = TestUpstream::start(Behaviour::Stall).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        upstream_timeout: Some(Duration::from_millis(300)),
        ..RunArgs::default()
    })
    .await;
    let request = Request::builder()
        .method(Method::DELETE)
        .uri(proxy.url("/scim/v2/Users/u-1"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body, _) = send(&http_client(), request).await;
    assert_eq!(status, 504);
    let (status, detail) = scim_error(&body);
    assert_eq!(status, "504");
    assert!(detail.contains("did not answer within 300ms"), "{detail}");
    assert!(
        detail.contains("may or may not have been applied"),
        "{detail}"
    );
    assert_eq!(
        upstream.seen().len(),
        1,
        "the request did reach the upstream"
    );
}

/// Sends `head` one byte every 100 ms and reports whether the proxy closed the
/// connection before the whole head was sent, and after how long.
fn trickle(addr: std::net::SocketAddr, head: &[u8]) -> Option<Duration> {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let started = Instant::now();
    for byte in head {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => return Some(started.elapsed()), // an error response, then close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected_at_the_header_timeout() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        header_timeout: Some(Duration::from_millis(500)),
        ..RunArgs::default()
    })
    .await;
    let addr = proxy.addr;
    // 60 bytes at 100 ms each would take 6 s; the timeout is 0.5 s.
    let head = b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n";
    let closed_after = tokio::task::spawn_blocking(move || trickle(addr, head))
        .await
        .unwrap();
    let closed_after = closed_after.expect("the proxy kept a slow-loris connection open");
    assert!(
        closed_after < Duration::from_secs(4),
        "closed only after {closed_after:?}"
    );
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn a_client_that_never_finishes_the_tls_handshake_is_disconnected() {
    let pki = TestPki::mint();
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        tls_cert: Some(pki.cert.clone()),
        tls_key: Some(pki.key.clone()),
        header_timeout: Some(Duration::from_millis(500)),
        ..RunArgs::default()
    })
    .await;
    let addr = proxy.addr;
    // The first bytes of a TLS ClientHello record, then nothing more.
    let closed_after = tokio::task::spawn_blocking(move || {
        trickle(
            addr,
            &[
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        )
    })
    .await
    .unwrap();
    let closed_after = closed_after.expect("the proxy kept a stalled TLS handshake open");
    assert!(
        closed_after < Duration::from_secs(4),
        "closed only after {closed_after:?}"
    );
}

/// A heavy request is judged off the async workers: on a single-threaded runtime, where
/// judging inline would hold everything, a small GET sent while a 30,000-member PATCH
/// is being judged is answered first. The PATCH is rejected (a replace of members), so
/// its answer needs no upstream once judged.
#[tokio::test]
async fn a_small_request_is_answered_while_a_heavy_one_is_judged() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        max_body_bytes: Some(8 << 20),
        rate: Some(0),
        ..RunArgs::default()
    })
    .await;
    let members: Vec<serde_json::Value> = (0..30_000)
        .map(|i| serde_json::json!({"value": format!("906722b2be-{i:08x}-6e4e-4b2f-a94a-3ace8456a36c"), "display": "x"}))
        .collect();
    let body = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "members", "value": members}],
    })
    .to_string();
    let addr = proxy.addr;
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let heavy = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "PATCH /t-1/scim/v2/Groups/g-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        sent_tx.send(()).unwrap();
        let mut status = [0u8; 12];
        stream.read_exact(&mut status).unwrap();
        (
            Instant::now(),
            String::from_utf8_lossy(&status).into_owned(),
        )
    });
    let small = std::thread::spawn(move || {
        sent_rx.recv().unwrap();
        // Let the proxy read the body and start judging it.
        std::thread::sleep(Duration::from_millis(100));
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /t-1/scim/v2/Users/u-1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut status = [0u8; 12];
        stream.read_exact(&mut status).unwrap();
        (
            Instant::now(),
            String::from_utf8_lossy(&status).into_owned(),
        )
    });
    let (small, heavy) =
        tokio::task::spawn_blocking(move || (small.join().unwrap(), heavy.join().unwrap()))
            .await
            .unwrap();
    assert_eq!(small.1, "HTTP/1.1 201");
    assert_eq!(heavy.1, "HTTP/1.1 400");
    assert!(
        small.0 < heavy.0,
        "the small GET waited for the heavy PATCH to be judged"
    );
}
