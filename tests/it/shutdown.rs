//! Graceful shutdown: stop accepting, let in-flight requests finish, then end.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::*;

#[tokio::test]
async fn an_in_flight_request_completes_during_graceful_shutdown() {
    let upstream = TestUpstream::start(Behaviour::Delay(Duration::from_millis(800))).await;
    let proxy = TestProxy::in_front_of(&upstream.url()).await;
    let addr = proxy.addr;
    let url = proxy.url("/scim/v2/Custom");
    let in_flight = tokio::spawn(async move {
        let request = Request::post(url)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        send(&http_client(), request).await
    });
    // Wait until the upstream holds the request, then ask the proxy to stop.
    while upstream.seen().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let serving = proxy.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the proxy still accepts connections after shutdown began"
    );
    let (status, _, body, _) = in_flight.await.unwrap();
    assert_eq!(status, 201);
    assert_eq!(body, UPSTREAM_BODY.as_bytes());
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve ended after draining")
        .unwrap();
}
