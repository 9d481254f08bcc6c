//! Client connections: the idle timeout apart from the header timeout (HTTP/1.1 and
//! h2), the body timeout's 408, and the caps on connections in all and per address.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use scimguard::cli::RunArgs;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const GET: &[u8] = b"GET /scim/v2/Users/u-1 HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one HTTP/1.1 response with a Content-Length body; returns its head and body.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {got:?}");
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        if got.len() >= end + 4 + length {
            return (head, got[end + 4..end + 4 + length].to_vec());
        }
    }
}

/// Whether the peer closed the connection within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_keep_alive_connection_outlives_the_header_timeout_and_closes_at_the_idle_timeout() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        header_timeout: Some(Duration::from_millis(500)),
        idle_timeout: Some(Duration::from_secs(2)),
        ..RunArgs::default()
    })
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 201"), "{head}");
    // Idle for three header timeouts: still open, and still served.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stream.write_all(GET).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 201"), "{head}");
    // Then idle past the idle timeout: closed by the proxy.
    let idle = Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "an idle connection stayed open past the idle timeout"
    );
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(1_500),
        "closed after {after:?}"
    );
    assert_eq!(upstream.seen().len(), 2);
}

#[tokio::test]
async fn the_next_requests_headers_get_the_header_timeout_not_the_idle_one() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        header_timeout: Some(Duration::from_millis(500)),
        idle_timeout: Some(Duration::from_secs(30)),
        ..RunArgs::default()
    })
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    read_response(&mut stream).await;
    // Half a request line, then nothing: cut at the header timeout, long before 30 s.
    stream.write_all(b"GET /scim/v2/Us").await.unwrap();
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "half a request head was waited on for the idle timeout"
    );
}

#[tokio::test]
async fn a_body_trickling_past_the_body_timeout_gets_408_in_aws_shape() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        body_timeout: Some(Duration::from_secs(1)),
        ..RunArgs::default()
    })
    .await;
    let (mut reader, mut stream) = TcpStream::connect(proxy.addr).await.unwrap().into_split();
    stream
        .write_all(b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if stream.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let (head, body) = tokio::select! {
        response = read_response(&mut reader) => response,
        () = trickle => panic!("the trickled body was never cut"),
    };
    assert!(head.starts_with("http/1.1 408"), "{head}");
    let (status, detail) = scim_error(&body);
    assert_eq!(status, "408");
    assert!(detail.contains("--body-timeout"), "{detail}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn one_address_gets_at_most_its_cap_and_the_next_hears_503() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        max_connections_per_ip: Some(2),
        ..RunArgs::default()
    })
    .await;
    let mut first = TcpStream::connect(proxy.addr).await.unwrap();
    let mut second = TcpStream::connect(proxy.addr).await.unwrap();
    first.write_all(GET).await.unwrap();
    read_response(&mut first).await;
    second.write_all(GET).await.unwrap();
    read_response(&mut second).await;
    let mut third = TcpStream::connect(proxy.addr).await.unwrap();
    let (head, body) = read_response(&mut third).await;
    assert!(head.starts_with("http/1.1 503"), "{head}");
    let (status, detail) = scim_error(&body);
    assert_eq!(status, "503");
    assert!(detail.contains("--max-connections-per-ip"), "{detail}");
    // A slot given back is taken again.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(proxy.addr).await.unwrap();
    fourth.write_all(GET).await.unwrap();
    let (head, _) = read_response(&mut fourth).await;
    assert!(head.starts_with("http/1.1 201"), "{head}");
}

#[tokio::test]
async fn past_max_connections_a_client_waits_for_a_free_slot() {
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        max_connections: Some(1),
        max_connections_per_ip: Some(0),
        ..RunArgs::default()
    })
    .await;
    let mut holder = TcpStream::connect(proxy.addr).await.unwrap();
    holder.write_all(GET).await.unwrap();
    read_response(&mut holder).await;
    let mut waiting = TcpStream::connect(proxy.addr).await.unwrap();
    waiting.write_all(GET).await.unwrap();
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), waiting.read(&mut buf))
            .await
            .is_err(),
        "a second connection was served while the only slot was taken"
    );
    drop(holder);
    let (head, _) = read_response(&mut waiting).await;
    assert!(head.starts_with("http/1.1 201"), "{head}");
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_at_the_idle_timeout() {
    let pki = TestPki::mint();
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let proxy = TestProxy::start(RunArgs {
        upstream: Some(upstream.url()),
        tls_cert: Some(pki.cert.clone()),
        tls_key: Some(pki.key.clone()),
        header_timeout: Some(Duration::from_millis(300)),
        idle_timeout: Some(Duration::from_secs(2)),
        ..RunArgs::default()
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let opened = Instant::now();
    let connection = tokio::spawn(connection);
    // h2 frames between requests are not a slow request head: past the header timeout
    // the connection still serves.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let request = Request::get(format!(
        "https://localhost:{}/scim/v2/Users/u-1",
        proxy.addr.port()
    ))
    .body(Full::new(Bytes::new()))
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 201);
    response.into_body().collect().await.unwrap();
    let answered = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), connection)
        .await
        .expect("an idle h2 connection stayed open past the idle timeout")
        .unwrap()
        .ok();
    assert!(
        answered.elapsed() >= Duration::from_millis(1_500),
        "closed {:?} after the answer",
        answered.elapsed()
    );
    assert!(opened.elapsed() < Duration::from_secs(7));
}
