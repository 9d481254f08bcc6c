//! What a repair costs: a PatchGroup `replace` of the members of a 1,000-member group
//! (keep 500, drop 500, add 500) through scimguard in front of the emulator, over real
//! sockets on 127.0.0.1. Prints the upstream requests the repair sent (from the capture)
//! and the time the IdP waited, with throttling off and with the default 10/s.
//!
//! `cargo run --release --example repair_members`

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use scimguard::cli::RunArgs;
use scimguard::config::Config;
use scimguard::emulator::{Emulator, EmulatorConfig, DEMO_TENANT};
use scimguard::server::{serve, ServerOptions};
use scimguard::Proxy;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const TOKEN: &str = "repair-example-token";
const GROUP_SIZE: usize = 1_000;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn call(client: &HttpClient, url: String, method: &str, body: Option<Value>) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(
            body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
        ))
        .expect("a request");
    let response = client.request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn members(ids: &[String]) -> Value {
    Value::Array(ids.iter().map(|id| json!({"value": id})).collect())
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// Runs one repair with `rate` (0: throttling off); returns (upstream requests, time).
async fn run(rate: u32) -> (usize, Duration) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let emulator = Emulator::new(EmulatorConfig {
        tenant: DEMO_TENANT.to_owned(),
        token: TOKEN.to_owned(),
        state_file: None,
        rate: 0,
    })
    .expect("the emulator starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let upstream = format!("http://{}", listener.local_addr().expect("an address"));
    let options = ServerOptions {
        shutdown_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    };
    tokio::spawn(serve(listener, emulator, options, std::future::pending()));

    let dir = tempfile::tempdir().expect("a temporary directory");
    let capture = dir.path().join("capture.jsonl");
    let config = Config::from_run_args(&RunArgs {
        upstream: Some(upstream.clone()),
        rate: Some(rate),
        record: Some(capture.clone()),
        // The repair drops 500 members, past the blast-radius guard's default of 100.
        guard_deletes: Some(0),
        ..RunArgs::default()
    })
    .expect("a valid config");
    let proxy = Proxy::from_config(&config).expect("the proxy builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let proxy_url = format!("http://{}", listener.local_addr().expect("an address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(proxy.serve(listener, async {
        let _ = stopped.await;
    }));

    // 1,500 users; the group holds the first 1,000, made at the emulator directly.
    let base = format!("{upstream}/{DEMO_TENANT}/scim/v2");
    let mut users = Vec::new();
    for i in 0..GROUP_SIZE + GROUP_SIZE / 2 {
        let name = format!("user{i:05}");
        let body = json!({"userName": name, "displayName": name,
            "name": {"givenName": "G", "familyName": name},
            "emails": [{"value": format!("{name}@example.com"), "type": "work", "primary": true}]});
        let (_, user) = call(&client, format!("{base}/Users"), "POST", Some(body)).await;
        users.push(user["id"].as_str().expect("an id").to_owned());
    }
    let (_, group) = call(
        &client,
        format!("{base}/Groups"),
        "POST",
        Some(json!({"displayName": "Everyone"})),
    )
    .await;
    let group = group["id"].as_str().expect("a group id").to_owned();
    for chunk in users[..GROUP_SIZE].chunks(100) {
        let add = patch(json!([{"op": "add", "path": "members", "value": members(chunk)}]));
        call(
            &client,
            format!("{base}/Groups/{group}"),
            "PATCH",
            Some(add),
        )
        .await;
    }

    let wanted = &users[GROUP_SIZE / 2..];
    let replace = patch(json!([{"op": "replace", "path": "members", "value": members(wanted)}]));
    let url = format!("{proxy_url}/{DEMO_TENANT}/scim/v2/Groups/{group}");
    let started = Instant::now();
    let (status, body) = call(&client, url, "PATCH", Some(replace)).await;
    let took = started.elapsed();
    assert_eq!(status, 204, "{body}");

    let _ = stop.send(());
    let _ = served.await;
    let text = std::fs::read_to_string(&capture).expect("the capture");
    let record: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["operation"] == "PatchGroup")
        .expect("the repaired exchange");
    let sent = record["forwarded"].as_array().map_or(0, Vec::len);
    let summary = record["findings"][0]["fix"]["after"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("  {summary}");
    (sent, took)
}

#[tokio::main]
async fn main() {
    println!("a members replace of a {GROUP_SIZE}-member group: keep 500, drop 500, add 500");
    for (rate, what) in [
        (0, "throttling off"),
        (10, "default throttle, 10/s, burst 10"),
    ] {
        let (sent, took) = run(rate).await;
        println!("  {what}: {sent} upstream requests, {took:.2?} for the IdP");
    }
}
