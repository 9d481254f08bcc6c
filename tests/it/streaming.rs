//! Answers stream: the client gets the start of a long answer before the upstream has
//! sent the rest, an answer of any size arrives whole, and a capture keeps only the
//! start of a long answer with a marker saying how much was left out.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use scimguard::cli::RunArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::*;

const CHUNK: usize = 64 * 1024;

/// An upstream that answers one request with `chunks` chunks of `CHUNK` bytes each
/// ('a', 'b', … in turn), sending the chunks after the first only once `go` fires
/// (at once when `go` is `None`).
async fn chunked_upstream(chunks: usize, go: Option<oneshot::Receiver<()>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0);
            request.extend_from_slice(&buf[..n]);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            chunks * CHUNK
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = |i: usize| vec![b'a' + (i % 26) as u8; CHUNK];
        stream.write_all(&chunk(0)).await.unwrap();
        if let Some(go) = go {
            // No timeout here: a proxy that buffers never lets the client say go, and
            // the client's own wait fails the test.
            if go.await.is_err() {
                return;
            }
        }
        for i in 1..chunks {
            if stream.write_all(&chunk(i)).await.is_err() {
                return;
            }
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_answer_reaches_the_client_before_the_upstream_has_sent_all_of_it() {
    let (go, wait) = oneshot::channel();
    let upstream = chunked_upstream(4, Some(wait)).await;
    let proxy = TestProxy::in_front_of(&upstream).await;
    let request = Request::get(proxy.url("/scim/v2/Users"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), http_client().request(request))
        .await
        .expect("the answer's head came while the upstream held back its body: buffered?")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        (4 * CHUNK).to_string()
    );
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first chunk came while the upstream held back the rest")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first[0], b'a');
    go.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(first.len() + rest.len(), 4 * CHUNK);
    assert_eq!(rest[rest.len() - 1], b'd');
}

#[tokio::test]
async fn a_25_mb_answer_arrives_whole_and_its_capture_is_cut_with_a_marker() {
    let chunks = 25 * 1024 * 1024 / CHUNK;
    let upstream = chunked_upstream(chunks, None).await;
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream),
        record: Some(capture.clone()),
        record_body_max_bytes: Some(1000),
        ..RunArgs::default()
    })
    .await;
    let request = Request::get(proxy.url("/scim/v2/Users"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = http_client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body();
    assert_eq!(body.size_hint().exact(), Some((chunks * CHUNK) as u64));
    let body = body.collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), chunks * CHUNK);
    assert!(body[..CHUNK].iter().all(|&b| b == b'a'));
    assert!(body[CHUNK..2 * CHUNK].iter().all(|&b| b == b'b'));
    proxy.shutdown().await.unwrap();

    let records = scimguard::record::read_capture(&capture).expect("the capture parses");
    assert_eq!(records.len(), 1);
    let response = records[0]
        .response
        .as_ref()
        .expect("the answer is recorded");
    assert_eq!(response.status, 200);
    let recorded = response.body.text().expect("text");
    assert!(
        recorded.starts_with(&"a".repeat(1000)),
        "{}",
        &recorded[..1100]
    );
    let marker = &recorded[1000..];
    assert_eq!(
        marker,
        format!(
            "\n[scimguard: body cut at 1000 bytes (--record-body-max-bytes); {} more bytes went to the client but not into this capture]",
            chunks * CHUNK - 1000
        )
    );
}
