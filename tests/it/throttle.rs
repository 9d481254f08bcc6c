//! Local throttling, upstream 429s and the admin endpoints, through the real proxy: real
//! sockets on 127.0.0.1:0, a real clock, and every test bounded by a timeout.
//!
//! Bursts go out over connections opened beforehand ([`warm_up`]), so they reach the
//! proxy within a few milliseconds of each other, well inside one token period (100 ms
//! at `--rate 10`); where a test needs a refill not to happen while it runs, it uses
//! `--rate 1` (one token per second).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use scimguard::cli::RunArgs;
use scimguard::config::Config;
use scimguard::emulator::{Emulator, EmulatorConfig};
use scimguard::server::{serve, ServerOptions};
use scimguard::throttle::ThrottleMode;
use scimguard::Proxy;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use crate::support::*;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The bound of a test that does not wait on purpose.
const QUICK: Duration = Duration::from_secs(20);

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

// ---- requests ------------------------------------------------------------------------

/// A CreateUser body every rule accepts.
fn user(n: usize) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": format!("user{n}@example.com"),
        "displayName": format!("User {n}"),
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": format!("user{n}@example.com"), "type": "work", "primary": true}]
    })
}

/// A CreateUser body the rules reject (`user.required`: no displayName).
fn user_without_display_name(n: usize) -> Value {
    let mut body = user(n);
    body.as_object_mut().unwrap().remove("displayName");
    body
}

fn request(method: Method, url: String, body: Option<&Value>) -> Request<Full<Bytes>> {
    let builder = Request::builder().method(method).uri(url);
    match body {
        Some(body) => builder
            .header("content-type", "application/scim+json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap(),
        None => builder.body(Full::new(Bytes::new())).unwrap(),
    }
}

fn create_user(base: &str, tenant: &str, body: &Value) -> Request<Full<Bytes>> {
    request(
        Method::POST,
        format!("{base}/{tenant}/scim/v2/Users"),
        Some(body),
    )
}

/// The base URL of a proxy, for [`create_user`].
fn base(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

fn args(upstream: &str, mode: ThrottleMode, rate: u32, burst: u32) -> RunArgs {
    RunArgs {
        upstream: Some(upstream.to_owned()),
        rate: Some(rate),
        burst: Some(burst),
        throttle: Some(mode),
        ..RunArgs::default()
    }
}

// ---- sending -------------------------------------------------------------------------

/// One answer, and when it came.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

async fn one(client: &HttpClient, request: Request<Full<Bytes>>) -> Answer {
    let (status, headers, body, _) = send(client, request).await;
    Answer {
        status,
        headers,
        body,
        at: Instant::now(),
    }
}

/// Sends all `requests` at once; the answers in the order of the requests.
async fn fire(client: &HttpClient, requests: Vec<Request<Full<Bytes>>>) -> Vec<Answer> {
    let mut set = JoinSet::new();
    let n = requests.len();
    for (i, request) in requests.into_iter().enumerate() {
        let client = client.clone();
        set.spawn(async move { (i, one(&client, request).await) });
    }
    let mut out: Vec<Option<Answer>> = (0..n).map(|_| None).collect();
    while let Some(done) = set.join_next().await {
        let (i, answer) = done.expect("a request task panicked");
        out[i] = Some(answer);
    }
    out.into_iter().map(Option::unwrap).collect()
}

/// Opens `n` keep-alive connections from `client` to the proxy at `addr` with requests
/// the rules reject, which take no token (`requests_the_rules_reject_spend_no_quota`),
/// so that a later burst of up to `n` requests goes out at once over open connections.
async fn warm_up(client: &HttpClient, addr: SocketAddr, n: usize) {
    let requests = (0..n)
        .map(|i| create_user(&base(addr), "warm-up", &user_without_display_name(i)))
        .collect();
    for answer in fire(client, requests).await {
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "warm-up is rejected"
        );
    }
}

fn statuses(answers: &[Answer]) -> Vec<u16> {
    answers.iter().map(|a| a.status.as_u16()).collect()
}

fn retry_after(headers: &HeaderMap) -> u64 {
    let value = headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap();
    value
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is whole seconds: {value:?}"))
}

/// Asserts a 429 of scimguard's own: AWS's error shape, ThrottlingException, said to
/// come from scimguard, with a Retry-After of at least 1 s. Returns (detail, Retry-After).
fn assert_own_429(answer: &Answer) -> (String, u64) {
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    let (status, detail) = scim_error(&answer.body);
    assert_eq!(status, "429");
    assert!(detail.contains("ThrottlingException"), "{detail}");
    assert!(
        detail.contains("This 429 comes from scimguard, not from AWS"),
        "{detail}"
    );
    let secs = retry_after(&answer.headers);
    assert!(secs >= 1, "Retry-After {secs}");
    (detail, secs)
}

// ---- an upstream that stamps arrivals and answers by script --------------------------

/// One request as [`Scripted`] received it.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    method: Method,
    path: String,
}

/// A tiny upstream on 127.0.0.1:0: records when each request arrived, and answers the
/// `n`th request (from 0) with `script(n)`.
pub(crate) struct Scripted {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    _task: JoinHandle<()>,
}

impl Scripted {
    pub(crate) async fn start(script: fn(usize) -> Response<Full<Bytes>>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let record = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let record = record.clone();
                        async move {
                            let at = Instant::now();
                            let (parts, body) = req.into_parts();
                            let _ = body.collect().await;
                            let n = {
                                let mut hits = record.lock().unwrap();
                                hits.push(Hit {
                                    at,
                                    method: parts.method,
                                    path: parts.uri.path().to_owned(),
                                });
                                hits.len() - 1
                            };
                            Ok::<_, Infallible>(script(n))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Scripted {
            addr,
            hits,
            _task: task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

/// 201 with a user, as [`TestUpstream`] answers.
fn created(_: usize) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "application/scim+json")
        .body(Full::new(Bytes::from_static(UPSTREAM_BODY.as_bytes())))
        .unwrap()
}

/// What AWS answers when it throttles (its ThrottlingException, with its own wording).
const AWS_429_BODY: &str = r#"{"schema":["urn:ietf:params:scim:api:messages:2.0:Error"],"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"Rate exceeded (from the test upstream)","status":"429","exceptionRequestId":"aws-429-req"}"#;
const AWS_429_REQUEST_ID: &str = "f00dfeed-0000-4000-8000-000000000429";

/// 429 with `Retry-After: 2` to the first request, then 201.
pub(crate) fn throttled_once(n: usize) -> Response<Full<Bytes>> {
    if n > 0 {
        return created(n);
    }
    Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header("content-type", "application/json")
        .header("retry-after", "2")
        .header("x-amzn-requestid", AWS_429_REQUEST_ID)
        .body(Full::new(Bytes::from_static(AWS_429_BODY.as_bytes())))
        .unwrap()
}

// ---- 1-4: the three modes, per tenant ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shape_spreads_a_burst_of_50_over_about_4_seconds_and_refuses_none() {
    timeout(QUICK, async {
        let upstream = Scripted::start(created).await;
        let proxy = TestProxy::start(args(&upstream.url(), ThrottleMode::Shape, 10, 10)).await;
        let client = http_client();
        warm_up(&client, proxy.addr, 50).await;

        let requests = (0..50)
            .map(|i| create_user(&base(proxy.addr), "t-shape", &user(i)))
            .collect();
        let start = Instant::now();
        let answers = fire(&client, requests).await;
        let took = start.elapsed();

        assert!(
            answers.iter().all(|a| a.status == StatusCode::CREATED),
            "all 50 succeed, none refused: {:?}",
            statuses(&answers)
        );
        assert!(took < Duration::from_secs(8), "the burst took {took:?}");
        let mut arrivals: Vec<Duration> = {
            let hits = upstream.hits();
            assert_eq!(hits.len(), 50);
            let first = hits.iter().map(|h| h.at).min().unwrap();
            hits.iter().map(|h| h.at - first).collect()
        };
        arrivals.sort();
        // The burst of 10 goes at once...
        assert!(
            arrivals[9] < Duration::from_millis(300),
            "the first 10 at once: {arrivals:?}"
        );
        // ...then one per 100 ms: the kth no earlier than (k - 9) periods after the
        // first, less one period for the first one's own trip to the upstream.
        for (k, at) in arrivals.iter().enumerate().skip(10) {
            let due = Duration::from_millis(100 * (k as u64 - 9));
            assert!(
                *at + Duration::from_millis(100) >= due,
                "request {k} reached the upstream {at:?} after the first, before {due:?}: {arrivals:?}"
            );
        }
        assert!(
            arrivals[49] >= Duration::from_millis(3_500),
            "the last no earlier than ~3.5 s after the first: {arrivals:?}"
        );
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_refuses_the_40_over_the_burst_with_aws_shaped_429s() {
    timeout(QUICK, async {
        let upstream = TestUpstream::start(Behaviour::Answer).await;
        let proxy = TestProxy::start(args(&upstream.url(), ThrottleMode::Reject, 10, 10)).await;
        let client = http_client();
        warm_up(&client, proxy.addr, 50).await;

        let requests = (0..50)
            .map(|i| create_user(&base(proxy.addr), "t-reject", &user(i)))
            .collect();
        let started = std::time::Instant::now();
        let answers = fire(&client, requests).await;
        // The burst, plus the tokens 10/s refills while a loaded machine takes its time
        // over the 50: exactly 10 when they all arrive within 100 ms.
        let refilled = (started.elapsed().as_secs_f64() * 10.0).floor() as usize;

        let passed = answers
            .iter()
            .filter(|a| a.status == StatusCode::CREATED)
            .count();
        let refused: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
            .collect();
        assert!(
            (10..=10 + refilled).contains(&passed) && passed + refused.len() == 50,
            "{passed} passed, {} refused, {refilled} tokens refilled: {:?}",
            refused.len(),
            statuses(&answers)
        );
        for answer in refused {
            assert_own_429(answer);
        }
        let reached: Vec<_> = upstream
            .seen()
            .into_iter()
            .filter(|s| s.uri.path() == "/t-reject/scim/v2/Users")
            .collect();
        assert_eq!(reached.len(), 10, "exactly the burst reaches the upstream");
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_delays_nothing_and_forwards_all_50() {
    timeout(QUICK, async {
        let upstream = TestUpstream::start(Behaviour::Answer).await;
        let proxy = TestProxy::start(args(&upstream.url(), ThrottleMode::Observe, 10, 10)).await;
        let client = http_client();
        warm_up(&client, proxy.addr, 50).await;

        let requests = (0..50)
            .map(|i| create_user(&base(proxy.addr), "t-observe", &user(i)))
            .collect();
        let start = Instant::now();
        let answers = fire(&client, requests).await;
        let took = start.elapsed();

        assert!(
            answers.iter().all(|a| a.status == StatusCode::CREATED),
            "{:?}",
            statuses(&answers)
        );
        // Shape mode would take 4 s for this burst.
        assert!(
            took < Duration::from_secs(1),
            "observe delayed the burst: {took:?}"
        );
        let reached = upstream
            .seen()
            .iter()
            .filter(|s| s.uri.path() == "/t-observe/scim/v2/Users")
            .count();
        assert_eq!(reached, 50);
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_do_not_share_a_bucket() {
    timeout(QUICK, async {
        let upstream = TestUpstream::start(Behaviour::Answer).await;
        // One token per second: no refill while the test runs.
        let proxy = TestProxy::start(args(&upstream.url(), ThrottleMode::Reject, 1, 10)).await;
        let client = http_client();
        warm_up(&client, proxy.addr, 20).await;

        let requests = (0..20)
            .map(|i| {
                let tenant = if i % 2 == 0 { "t-a" } else { "t-b" };
                create_user(&base(proxy.addr), tenant, &user(i))
            })
            .collect();
        let answers = fire(&client, requests).await;
        assert!(
            answers.iter().all(|a| a.status == StatusCode::CREATED),
            "10 to each tenant all pass: {:?}",
            statuses(&answers)
        );
        for tenant in ["t-a", "t-b"] {
            let path = format!("/{tenant}/scim/v2/Users");
            let reached = upstream
                .seen()
                .iter()
                .filter(|s| s.uri.path() == path)
                .count();
            assert_eq!(reached, 10, "{tenant}");
        }
        // Each bucket is now empty: the 11th of either tenant is refused.
        for tenant in ["t-a", "t-b"] {
            let answer = one(&client, create_user(&base(proxy.addr), tenant, &user(99))).await;
            assert_own_429(&answer);
        }
    })
    .await
    .expect("the test finished in time");
}

// ---- 5: scimguard keeps the emulator from throttling ---------------------------------

const EMULATOR_TOKEN: &str = "throttle-test-token";
const EMULATOR_TENANT: &str = "d-9067a1b2c3";

/// The embedded emulator at `rate` per second on 127.0.0.1:0; stops when dropped.
struct Served {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _task: JoinHandle<()>,
}

async fn serve_emulator(rate: u32) -> Served {
    let emulator = Emulator::new(EmulatorConfig {
        tenant: EMULATOR_TENANT.to_owned(),
        token: EMULATOR_TOKEN.to_owned(),
        state_file: None,
        rate,
    })
    .expect("the emulator starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let options = ServerOptions {
        shutdown_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    };
    let task = tokio::spawn(serve(listener, emulator, options, async {
        let _ = stopped.await;
    }));
    Served {
        addr,
        _stop: stop,
        _task: task,
    }
}

/// A cheap valid request: ListUsers by userName, with the emulator's token.
fn list_users(proxy: SocketAddr) -> Request<Full<Bytes>> {
    Request::get(format!(
        "http://{proxy}/{EMULATOR_TENANT}/scim/v2/Users?filter=userName%20eq%20%22x%22"
    ))
    .header("authorization", format!("Bearer {EMULATOR_TOKEN}"))
    .body(Full::new(Bytes::new()))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_at_20_per_second_never_throttles_scimguard_at_10() {
    timeout(Duration::from_secs(60), async {
        // The control: without local throttling the same burst is throttled by the
        // emulator, so a burst of 200 is a real test of its limit.
        let emulator = serve_emulator(20).await;
        let unthrottled = TestProxy::start(RunArgs {
            upstream: Some(format!("http://{}", emulator.addr)),
            rate: Some(0),
            ..RunArgs::default()
        })
        .await;
        let client = http_client();
        let answers = fire(
            &client,
            (0..200).map(|_| list_users(unthrottled.addr)).collect(),
        )
        .await;
        let throttled = answers
            .iter()
            .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert!(
            throttled > 0,
            "the emulator throttles an unshaped burst: {:?}",
            statuses(&answers)
        );

        let emulator = serve_emulator(20).await;
        let proxy = TestProxy::start(RunArgs {
            upstream: Some(format!("http://{}", emulator.addr)),
            rate: Some(10),
            burst: Some(10),
            throttle: Some(ThrottleMode::Shape),
            max_wait: Some(Duration::from_secs(30)),
            max_queue: Some(1000),
            ..RunArgs::default()
        })
        .await;
        let start = Instant::now();
        let answers = fire(&client, (0..200).map(|_| list_users(proxy.addr)).collect()).await;
        let took = start.elapsed();
        let not_ok: Vec<u16> = statuses(&answers)
            .into_iter()
            .filter(|s| *s != 200)
            .collect();
        assert!(
            not_ok.is_empty(),
            "every request answered 200, none 429: {not_ok:?}"
        );
        // 10 at once, then 190 at 10 per second.
        assert!(
            took >= Duration::from_millis(18_500) && took < Duration::from_secs(30),
            "the burst took {took:?}"
        );
    })
    .await
    .expect("the test finished in time");
}

// ---- 6: an upstream 429 is relayed, not retried, and backs the tenant off ------------

/// Sends the request the upstream throttles and checks it comes back exactly as the
/// upstream sent it, and is not retried.
async fn relayed_429(client: &HttpClient, proxy: SocketAddr, upstream: &Scripted) -> Answer {
    let answer = one(client, create_user(&base(proxy), "t-429", &user(0))).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.body, AWS_429_BODY.as_bytes(), "the upstream's body");
    assert_eq!(answer.headers["retry-after"], "2");
    assert_eq!(answer.headers["x-amzn-requestid"], AWS_429_REQUEST_ID);
    assert_eq!(answer.headers["x-scimguard-verdict"], "forwarded");
    // Not retried: nothing more reaches the upstream.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.hits().len(), 1, "{:?}", upstream.hits());
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_429_is_relayed_and_shape_waits_out_its_retry_after() {
    timeout(QUICK, async {
        let upstream = Scripted::start(throttled_once).await;
        let proxy = TestProxy::start(args(&upstream.url(), ThrottleMode::Shape, 10, 10)).await;
        let client = http_client();
        let throttled = relayed_429(&client, proxy.addr, &upstream).await;

        // Another tenant is not backed off.
        let other = one(&client, create_user(&base(proxy.addr), "t-other", &user(1))).await;
        assert_eq!(other.status, StatusCode::CREATED);
        assert!(
            other.at - throttled.at < Duration::from_millis(1_000),
            "t-other waited {:?}",
            other.at - throttled.at
        );

        // The throttled tenant's next request waits for the Retry-After, then passes.
        let next = one(&client, create_user(&base(proxy.addr), "t-429", &user(2))).await;
        assert_eq!(next.status, StatusCode::CREATED);
        let hits = upstream.hits();
        assert_eq!(hits.len(), 3, "{hits:?}");
        assert_eq!(
            (&hits[2].method, hits[2].path.as_str()),
            (&Method::POST, "/t-429/scim/v2/Users")
        );
        let gap = hits[2].at - hits[0].at;
        assert!(
            gap >= Duration::from_millis(1_950),
            "the next request reached the upstream {gap:?} after the 429"
        );
        assert!(gap < Duration::from_secs(4), "{gap:?}");
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_429_is_relayed_and_reject_refuses_until_its_retry_after_passed() {
    timeout(QUICK, async {
        let upstream = Scripted::start(throttled_once).await;
        let proxy = TestProxy::start(args(&upstream.url(), ThrottleMode::Reject, 10, 10)).await;
        let client = http_client();
        let throttled = relayed_429(&client, proxy.addr, &upstream).await;

        let refused = one(&client, create_user(&base(proxy.addr), "t-429", &user(1))).await;
        let (detail, secs) = assert_own_429(&refused);
        assert!(
            detail.contains("the upstream answered 429"),
            "the detail names the back-off: {detail}"
        );
        assert!(secs <= 2, "Retry-After {secs}");
        assert_eq!(
            upstream.hits().len(),
            1,
            "the refusal sent nothing upstream"
        );

        // Once the upstream's Retry-After has passed, the tenant is served again.
        let until = throttled.at + Duration::from_millis(2_100);
        tokio::time::sleep_until(until.into()).await;
        let next = one(&client, create_user(&base(proxy.addr), "t-429", &user(2))).await;
        assert_eq!(next.status, StatusCode::CREATED, "{:?}", next.body);
        assert_eq!(upstream.hits().len(), 2);
    })
    .await
    .expect("the test finished in time");
}

// ---- 7-8: what takes a token ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_rules_reject_spend_no_quota() {
    timeout(QUICK, async {
        let upstream = TestUpstream::start(Behaviour::Answer).await;
        let proxy = TestProxy::start(args(&upstream.url(), ThrottleMode::Reject, 1, 2)).await;
        let client = http_client();
        let base = base(proxy.addr);

        for i in 0..5 {
            let answer = one(
                &client,
                create_user(&base, "t-q", &user_without_display_name(i)),
            )
            .await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST);
            assert_eq!(answer.headers["x-scimguard-verdict"], "rejected");
            let (_, detail) = scim_error(&answer.body);
            assert!(detail.contains("displayName"), "{detail}");
        }
        for i in 0..2 {
            let answer = one(&client, create_user(&base, "t-q", &user(i))).await;
            assert_eq!(answer.status, StatusCode::CREATED, "valid request {i}");
        }
        // The burst of 2 went to the valid ones: a third is refused.
        let third = one(&client, create_user(&base, "t-q", &user(2))).await;
        assert_own_429(&third);
        assert_eq!(upstream.seen().len(), 2);
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_of_a_split_patch_takes_a_token() {
    timeout(QUICK, async {
        let upstream = TestUpstream::start(Behaviour::Answer).await;
        let proxy = TestProxy::start(args(&upstream.url(), ThrottleMode::Reject, 1, 2)).await;
        let client = http_client();

        let members: Vec<Value> = (0..250)
            .map(|i| json!({"value": format!("u-{i}")}))
            .collect();
        let body = json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": members}]
        });
        let patch = request(
            Method::PATCH,
            proxy.url("/t-g/scim/v2/Groups/g-1"),
            Some(&body),
        );
        let answer = one(&client, patch).await;

        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
        let (status, detail) = scim_error(&answer.body);
        assert_eq!(status, "429");
        assert!(
            detail.contains("split this change into 3 requests"),
            "{detail}"
        );
        assert!(
            detail.contains("Requests 1 to 2 were applied; request 3 failed"),
            "{detail}"
        );
        assert!(detail.contains("throttle"), "{detail}");
        assert!(
            detail.contains("Not applied: request 3 (members u-200, "),
            "{detail}"
        );
        assert!(detail.contains("u-249)"), "{detail}");
        assert!(!detail.contains("u-199"), "{detail}");

        let seen = upstream.seen();
        assert_eq!(seen.len(), 2, "batches 1 and 2 reached the upstream");
        for (batch, first) in seen.iter().zip([0, 100]) {
            assert_eq!(batch.method, Method::PATCH);
            assert_eq!(batch.uri.path(), "/t-g/scim/v2/Groups/g-1");
            let sent: Value = serde_json::from_slice(&batch.body).unwrap();
            let ids: Vec<&str> = sent["Operations"][0]["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["value"].as_str().unwrap())
                .collect();
            assert_eq!(ids.len(), 100);
            assert_eq!(ids[0], format!("u-{first}"));
        }
    })
    .await
    .expect("the test finished in time");
}

/// Every 429 of scimguard's own carries Retry-After ([`scimguard::pipeline::error_response`]),
/// except a batch refused in the middle of a split change: `Pipeline::send_batches` turns
/// the throttle's error into a SCIM error with `scim_response` and copies Retry-After only
/// from an upstream's answer, so the IdP is told 429 without when to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_by_the_throttle_says_when_to_retry() {
    timeout(QUICK, async {
        let upstream = TestUpstream::start(Behaviour::Answer).await;
        let proxy = TestProxy::start(args(&upstream.url(), ThrottleMode::Reject, 1, 2)).await;
        let members: Vec<Value> = (0..250)
            .map(|i| json!({"value": format!("u-{i}")}))
            .collect();
        let body = json!({
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": members}]
        });
        let patch = request(
            Method::PATCH,
            proxy.url("/t-g/scim/v2/Groups/g-1"),
            Some(&body),
        );
        let answer = one(&http_client(), patch).await;
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
        // Every other 429 of scimguard's own says when to come back.
        assert!(retry_after(&answer.headers) >= 1);
    })
    .await
    .expect("the test finished in time");
}

// ---- 9: /metrics, /healthz, /readyz --------------------------------------------------

/// A proxy with `--admin`, built as `scimguard run` builds it.
struct AdminProxy {
    addr: SocketAddr,
    admin: SocketAddr,
    _stop: oneshot::Sender<()>,
    _task: JoinHandle<()>,
}

impl AdminProxy {
    async fn start(args: RunArgs) -> AdminProxy {
        let config = Config::from_run_args(&args).expect("valid test config");
        let mut proxy = Proxy::start(&config).await.expect("proxy builds");
        let admin = proxy
            .bind_admin()
            .await
            .expect("the admin address binds")
            .expect("--admin is set");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.serve(listener, async {
            let _ = stopped.await;
        }));
        AdminProxy {
            addr,
            admin,
            _stop: stop,
            _task: task,
        }
    }

    async fn get_admin(&self, client: &HttpClient, path: &str) -> Answer {
        one(
            client,
            request(Method::GET, format!("http://{}{path}", self.admin), None),
        )
        .await
    }
}

/// The value of the one sample of `name` with `labels` (others may be present).
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    match &found[0].value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

/// Every sample of `name`, as (label, value) pairs of `label`, sorted.
fn by_label(scrape: &prometheus_parse::Scrape, name: &str, label: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let value = match &s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("{name}: {other:?}"),
            };
            (s.labels.get(label).unwrap_or("").to_owned(), value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_healthz_and_readyz_match_the_traffic() {
    timeout(QUICK, async {
        let upstream = TestUpstream::start(Behaviour::Answer).await;
        let proxy = AdminProxy::start(RunArgs {
            upstream: Some(upstream.url()),
            admin: Some("127.0.0.1:0".parse().unwrap()),
            ..RunArgs::default()
        })
        .await;
        let client = http_client();
        let base = base(proxy.addr);

        assert_eq!(proxy.get_admin(&client, "/healthz").await.status, 200);

        // The traffic, sequential and within the default burst of 10: 9 requests, 7 of
        // them sent upstream.
        let mut expect = Vec::new();
        for i in 0..3 {
            expect.push((one(&client, create_user(&base, "t-m", &user(i))).await, 201));
        }
        let mut warned = user(3);
        warned["profileUrl"] = json!("https://x/\u{200B}b");
        expect.push((one(&client, create_user(&base, "t-m", &warned)).await, 201));
        for i in 4..6 {
            let body = user_without_display_name(i);
            expect.push((one(&client, create_user(&base, "t-m", &body)).await, 400));
        }
        for i in 6..8 {
            let mut body = user(i);
            body["photos"] = json!([{"value": "https://x/p.jpg"}]);
            expect.push((one(&client, create_user(&base, "t-m", &body)).await, 201));
        }
        let list = request(
            Method::GET,
            format!("{base}/t-m/scim/v2/Users?filter=userName%20eq%20%22x%22"),
            None,
        );
        expect.push((one(&client, list).await, 201));
        let verdicts: Vec<(u16, &str)> = expect
            .iter()
            .map(|(a, _)| {
                (
                    a.status.as_u16(),
                    a.headers["x-scimguard-verdict"].to_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                (201, "forwarded"),
                (201, "forwarded"),
                (201, "forwarded"),
                (201, "forwarded"),
                (400, "rejected"),
                (400, "rejected"),
                (201, "rewritten"),
                (201, "rewritten"),
                (201, "forwarded"),
            ]
        );
        let forwarded = upstream
            .seen()
            .iter()
            .filter(|s| s.uri.path().starts_with("/t-m/"))
            .count();
        assert_eq!(forwarded, 7);

        let scraped = proxy.get_admin(&client, "/metrics").await;
        assert_eq!(scraped.status, 200);
        assert!(
            scraped.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text"),
            "{:?}",
            scraped.headers
        );
        let text = String::from_utf8(scraped.body.to_vec()).unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("the exposition parses");

        let requests: Vec<(String, String, f64)> = {
            let mut v: Vec<_> = scrape
                .samples
                .iter()
                .filter(|s| s.metric == "scimguard_requests_total")
                .map(|s| {
                    let value = match s.value {
                        prometheus_parse::Value::Counter(v)
                        | prometheus_parse::Value::Untyped(v) => v,
                        ref other => panic!("{other:?}"),
                    };
                    (
                        s.labels.get("operation").unwrap().to_owned(),
                        s.labels.get("verdict").unwrap().to_owned(),
                        value,
                    )
                })
                .collect();
            v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            v
        };
        let triple = |op: &str, verdict: &str, n: f64| (op.to_owned(), verdict.to_owned(), n);
        assert_eq!(
            requests,
            [
                triple("CreateUser", "forwarded", 4.0),
                triple("CreateUser", "rejected", 2.0),
                triple("CreateUser", "rewritten", 2.0),
                triple("ListUsers", "forwarded", 1.0),
            ],
            "{text}"
        );

        let findings: Vec<(String, String, f64)> = {
            let mut v: Vec<_> = scrape
                .samples
                .iter()
                .filter(|s| s.metric == "scimguard_findings_total")
                .map(|s| {
                    let value = match s.value {
                        prometheus_parse::Value::Counter(v)
                        | prometheus_parse::Value::Untyped(v) => v,
                        ref other => panic!("{other:?}"),
                    };
                    (
                        s.labels.get("rule").unwrap().to_owned(),
                        s.labels.get("action").unwrap().to_owned(),
                        value,
                    )
                })
                .collect();
            v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            v
        };
        assert_eq!(
            findings,
            [
                triple("user.control-characters", "warn", 1.0),
                triple("user.required", "reject", 2.0),
                triple("user.unsupported-attributes", "rewrite", 2.0),
            ],
            "{text}"
        );

        assert_eq!(
            by_label(&scrape, "scimguard_upstream_responses_total", "status"),
            [("201".to_owned(), 7.0)],
            "{text}"
        );
        assert_eq!(
            by_label(&scrape, "scimguard_throttle_total", "outcome"),
            [("admitted".to_owned(), 7.0)],
            "{text}"
        );
        let v = |name: &str| sample(&scrape, name, &[]);
        assert_eq!(v("scimguard_request_duration_seconds_count"), 9.0, "{text}");
        assert_eq!(
            v("scimguard_upstream_duration_seconds_count"),
            7.0,
            "{text}"
        );
        assert_eq!(v("scimguard_throttle_wait_seconds_count"), 7.0, "{text}");
        assert_eq!(v("scimguard_throttle_queue_depth"), 0.0, "{text}");
        // The +Inf bucket holds every request.
        let buckets = scrape
            .samples
            .iter()
            .find(|s| s.metric == "scimguard_request_duration_seconds")
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(b) => b.clone(),
                other => panic!("{other:?}"),
            })
            .expect("the latency histogram's buckets");
        let inf = buckets
            .iter()
            .find(|b| b.less_than == f64::INFINITY)
            .unwrap();
        assert_eq!(inf.count, 9.0, "{text}");
        // Every line is a comment or a sample the parser accepted.
        let sample_lines = text.lines().filter(|l| !l.starts_with('#')).count();
        let parsed: usize = scrape
            .samples
            .iter()
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(b) => b.len(),
                _ => 1,
            })
            .sum();
        assert_eq!(sample_lines, parsed, "{text}");

        assert_eq!(proxy.get_admin(&client, "/healthz").await.status, 200);
        let ready = proxy.get_admin(&client, "/readyz").await;
        assert_eq!(
            ready.status,
            200,
            "the upstream answered: {:?}",
            String::from_utf8_lossy(&ready.body)
        );
        assert_eq!(ready.body, "ready\n".as_bytes());
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test]
async fn readyz_turns_ready_from_the_upstream_probe_alone() {
    timeout(Duration::from_secs(10), async {
        let upstream = TestUpstream::start(Behaviour::Answer).await;
        let mut args = args(&upstream.url(), ThrottleMode::Shape, 10, 10);
        args.admin = Some("127.0.0.1:0".parse().unwrap());
        let proxy = AdminProxy::start(args).await;
        let client: HttpClient = http_client();
        // No request goes through the proxy: only the probe can reach the upstream.
        loop {
            let answer = proxy.get_admin(&client, "/readyz").await;
            if answer.status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let probes = upstream.seen();
        assert!(!probes.is_empty(), "the probe reached the upstream");
        assert!(probes
            .iter()
            .all(|p| p.method == Method::GET && p.headers.get("authorization").is_none()));
    })
    .await
    .expect("/readyz turned ready within 10 s");
}
