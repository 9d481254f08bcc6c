//! The admin listener: `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1, on its
//! own address (`--admin`, loopback by default), never on the proxy's port.
//!
//! - `GET /metrics`: [`Metrics::render`], OpenMetrics text.
//! - `GET /healthz`: 200 while the process serves at all.
//! - `GET /readyz`: 200 when the rules are loaded and the upstream answered within the
//!   last [`READY_WINDOW`]; else 503 with the reason in plain text.
//!
//! Like [`crate::server::serve`], [`serve`] takes its listener and shutdown future, so
//! tests bind port 0.
//!
//! ## "Never contacted" is not ready
//!
//! Until the upstream has answered once, `/readyz` says 503: scimguard cannot vouch for
//! an upstream it has never reached (a wrong URL or a blocked network shows up here
//! before the first sync fails). A readiness probe that gates all traffic would then
//! never let the first request through, so whoever runs scimguard behind such a probe
//! must have it reach the upstream by itself: `main` should send a cheap request (e.g.
//! `GET …/ServiceProviderConfig`) at start and whenever the window is about to lapse
//! while idle, calling [`Readiness::mark_upstream_ok`] on any answer.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::{self, Metrics};

/// How recently the upstream must have answered for `/readyz` to say ready: 30 s, three
/// times Kubernetes' default probe period of 10 s, so one quiet probe interval does not
/// flap readiness while a sync idles between pages.
pub const READY_WINDOW: Duration = Duration::from_secs(30);

/// At most 64 admin connections at once: a Prometheus server and a kubelet's probes use
/// a handful; the bound keeps a connection flood on the admin port from taking memory
/// the proxy needs.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Time to send the request headers: 5 s, plenty for a scraper on the same host or
/// network, short enough that idle half-open connections do not hold slots.
pub const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Time in-flight admin requests get after shutdown: rendering takes microseconds, so 1 s
/// only covers a slow reader.
const ADMIN_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// After an accept error such as EMFILE, wait 50 ms instead of spinning (as the proxy's
/// listener does).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// What `/readyz` reports; cheap to clone, shared by the pipeline and the admin server.
#[derive(Clone, Debug)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

#[derive(Debug)]
struct ReadinessInner {
    epoch: Instant,
    /// When the upstream last answered, as ns since `epoch` plus 1; 0: never.
    upstream_ok: AtomicU64,
    rules_loaded: AtomicBool,
    window: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Not ready: no rules loaded, upstream never reached; window [`READY_WINDOW`].
    pub fn new() -> Readiness {
        Readiness::with_window(READY_WINDOW)
    }

    /// As [`Readiness::new`] with another window (tests, or a config setting).
    pub fn with_window(window: Duration) -> Readiness {
        Readiness {
            inner: Arc::new(ReadinessInner {
                epoch: Instant::now(),
                upstream_ok: AtomicU64::new(0),
                rules_loaded: AtomicBool::new(false),
                window,
            }),
        }
    }

    /// The upstream answered, whatever the status: a 4xx or 5xx still proves it is
    /// reachable. Not for connection errors or timeouts. One relaxed store.
    pub fn mark_upstream_ok(&self) {
        let since = self.inner.epoch.elapsed().as_nanos();
        let ns = u64::try_from(since).unwrap_or(u64::MAX - 1);
        self.inner
            .upstream_ok
            .store(ns.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether the rules are loaded (and valid).
    pub fn rules_loaded(&self, loaded: bool) {
        self.inner.rules_loaded.store(loaded, Ordering::Relaxed);
    }

    /// `Ok` when ready, else why not, in words for the `/readyz` body.
    pub fn check(&self) -> Result<(), String> {
        let mut reasons = Vec::new();
        if !self.inner.rules_loaded.load(Ordering::Relaxed) {
            reasons.push("the rules are not loaded".to_owned());
        }
        match self.inner.upstream_ok.load(Ordering::Relaxed) {
            0 => reasons.push("the upstream has not answered yet".to_owned()),
            ns => {
                let at = Duration::from_nanos(ns - 1);
                let ago = self.inner.epoch.elapsed().saturating_sub(at);
                if ago > self.inner.window {
                    reasons.push(format!(
                        "the upstream last answered {} s ago, more than {} s",
                        ago.as_secs(),
                        self.inner.window.as_secs_f64()
                    ));
                }
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }
}

/// An `--admin` address that cannot work with `--listen`; the message says the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--admin {admin} would share the proxy's port with --listen {listen}. Fix: give --admin another port (e.g. 127.0.0.1:9090)")]
pub struct AdminAddressError {
    pub admin: SocketAddr,
    pub listen: SocketAddr,
}

/// Refuses an admin address on the proxy's port (same port, and same IP or either one
/// unspecified). Port 0 picks a free port, so it never clashes.
pub fn check_admin_address(admin: SocketAddr, listen: SocketAddr) -> Result<(), AdminAddressError> {
    let same_port = admin.port() == listen.port() && admin.port() != 0;
    let overlapping =
        admin.ip() == listen.ip() || admin.ip().is_unspecified() || listen.ip().is_unspecified();
    if same_port && overlapping {
        Err(AdminAddressError { admin, listen })
    } else {
        Ok(())
    }
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: impl Future<Output = ()>,
) {
    serve_with_guard(listener, metrics, readiness, None, shutdown).await
}

/// [`serve`], plus the blast-radius guard's `GET /guard` and
/// `POST /guard/{tenant}/release` ([`crate::guard::http::answer`]).
pub async fn serve_with_guard(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    guard: Option<crate::guard::Guard>,
    shutdown: impl Future<Output = ()>,
) {
    // Releasing the guard changes what reaches AWS: only from this host while no admin
    // token exists (`--admin-token` will authorize other callers here).
    let loopback = listener
        .local_addr()
        .map(|a| a.ip().is_loopback())
        .unwrap_or(false);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ADMIN_HEADER_TIMEOUT)
        .keep_alive(true);
    let state = Arc::new((metrics, readiness, guard));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // Never closed; if it were, stop serving rather than spin.
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move {
                if let Some(response) =
                    crate::guard::http::answer(&request, state.2.as_ref(), loopback).await
                {
                    return Ok::<_, Infallible>(response);
                }
                Ok::<_, Infallible>(answer(&request, &state.0, &state.1))
            }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(ADMIN_SHUTDOWN_TIMEOUT) => {}
    }
}

/// The answer to one admin request; pure apart from reading the handles.
fn answer<B>(
    request: &Request<B>,
    metrics: &Metrics,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed here; use GET\n", request.method()),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => match readiness.check() {
            Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; the admin endpoints are /metrics, /healthz and /readyz\n".to_owned(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // Probes must see the current state, never a cached one.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;

    /// Every test is bounded: no request takes more than this.
    const TEST_TIMEOUT: Duration = Duration::from_secs(5);

    struct Admin {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Admin {
        async fn start(metrics: Metrics, readiness: Readiness) -> Admin {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, metrics, readiness, async {
                let _ = stopped.await;
            }));
            Admin {
                addr,
                stop: Some(stop),
                task,
            }
        }

        /// One request over a fresh connection: (status, headers text, body).
        async fn request(&self, method: &str, path: &str) -> (u16, String, String) {
            let exchange = async {
                let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
                let head =
                    format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
                stream.write_all(head.as_bytes()).await.unwrap();
                let mut raw = Vec::new();
                stream.read_to_end(&mut raw).await.unwrap();
                String::from_utf8(raw).unwrap()
            };
            let raw = tokio::time::timeout(TEST_TIMEOUT, exchange).await.unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            (status, head.to_owned(), body.to_owned())
        }

        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(TEST_TIMEOUT, self.task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    use crate::metrics::tests::value as sample_value;

    #[tokio::test]
    async fn metrics_over_http_parse_and_match_the_traffic() {
        let metrics = Metrics::new();
        let admin = Admin::start(metrics.clone(), Readiness::new()).await;
        // The traffic, as the pipeline would record it.
        for i in 0..25 {
            let verdict = if i % 5 == 0 { "rejected" } else { "forwarded" };
            metrics.request("CreateUser", verdict);
            metrics.latency_total(Duration::from_millis(2 + i));
            if verdict == "forwarded" {
                metrics.upstream_status(201);
                metrics.latency_upstream(Duration::from_millis(1 + i));
            } else {
                metrics.finding("user.userName.required", "reject");
            }
        }
        metrics.upstream_status(429);
        metrics.throttle("delayed");
        metrics.throttle_wait(Duration::from_millis(400));
        metrics.queue_depth(2);
        metrics.record_drop();

        let (status, head, body) = admin.request("GET", "/metrics").await;
        assert_eq!(status, 200, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let v = |name, labels: &[(&str, &str)]| sample_value(&scrape, name, labels);
        assert_eq!(
            v(
                "scimguard_requests_total",
                &[("operation", "CreateUser"), ("verdict", "forwarded")]
            ),
            20.0
        );
        assert_eq!(
            v(
                "scimguard_requests_total",
                &[("operation", "CreateUser"), ("verdict", "rejected")]
            ),
            5.0
        );
        assert_eq!(
            v(
                "scimguard_findings_total",
                &[("rule", "user.userName.required"), ("action", "reject")]
            ),
            5.0
        );
        assert_eq!(
            v("scimguard_upstream_responses_total", &[("status", "201")]),
            20.0
        );
        assert_eq!(
            v("scimguard_upstream_responses_total", &[("status", "429")]),
            1.0
        );
        assert_eq!(
            v("scimguard_throttle_total", &[("outcome", "delayed")]),
            1.0
        );
        assert_eq!(v("scimguard_request_duration_seconds_count", &[]), 25.0);
        assert_eq!(v("scimguard_upstream_duration_seconds_count", &[]), 20.0);
        assert_eq!(v("scimguard_throttle_wait_seconds_count", &[]), 1.0);
        assert_eq!(v("scimguard_throttle_queue_depth", &[]), 2.0);
        assert_eq!(v("scimguard_recording_drops_total", &[]), 1.0);
        // Every line is a comment or a sample the parser accepted: nothing was skipped.
        let sample_lines = body.lines().filter(|l| !l.starts_with('#')).count();
        let parsed: usize = scrape
            .samples
            .iter()
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(b) => b.len(),
                _ => 1,
            })
            .sum();
        assert_eq!(sample_lines, parsed, "{body}");
        admin.stop().await;
    }

    #[tokio::test]
    async fn health_readiness_and_unknown_paths() {
        let readiness = Readiness::new();
        let admin = Admin::start(Metrics::new(), readiness.clone()).await;

        assert_eq!(admin.request("GET", "/healthz").await.0, 200);

        let (status, _, body) = admin.request("GET", "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("rules are not loaded"), "{body}");
        assert!(body.contains("upstream has not answered yet"), "{body}");

        readiness.rules_loaded(true);
        let (status, _, body) = admin.request("GET", "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "not ready: the upstream has not answered yet\n")
        );

        readiness.mark_upstream_ok();
        let (status, head, body) = admin.request("GET", "/readyz?verbose=1").await;
        assert_eq!((status, body.as_str()), (200, "ready\n"), "{head}");
        assert!(head
            .to_ascii_lowercase()
            .contains("cache-control: no-store"));

        readiness.rules_loaded(false);
        assert_eq!(admin.request("GET", "/readyz").await.0, 503);

        let (status, _, body) = admin.request("GET", "/nope").await;
        assert_eq!(status, 404);
        assert!(body.contains("/metrics"), "{body}");
        assert_eq!(admin.request("GET", "/metrics/extra").await.0, 404);

        let (status, head, _) = admin.request("POST", "/metrics").await;
        assert_eq!(status, 405);
        assert!(
            head.to_ascii_lowercase().contains("allow: get, head"),
            "{head}"
        );

        let (status, _, body) = admin.request("HEAD", "/healthz").await;
        assert_eq!((status, body.as_str()), (200, ""), "HEAD has no body");
        admin.stop().await;
    }

    #[tokio::test]
    async fn garbage_on_the_socket_does_not_stop_the_server() {
        let admin = Admin::start(Metrics::new(), Readiness::new()).await;
        let mut stream = tokio::net::TcpStream::connect(admin.addr).await.unwrap();
        stream
            .write_all(b"\x00\xffnot http at all\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(TEST_TIMEOUT, stream.read_to_end(&mut raw)).await;
        assert_eq!(admin.request("GET", "/healthz").await.0, 200);
        admin.stop().await;
    }

    #[test]
    fn readiness_lapses_after_its_window() {
        let readiness = Readiness::with_window(Duration::from_millis(50));
        readiness.rules_loaded(true);
        assert!(readiness.check().is_err(), "never contacted is not ready");
        readiness.mark_upstream_ok();
        assert_eq!(readiness.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(120));
        let reason = readiness.check().unwrap_err();
        assert!(reason.contains("last answered"), "{reason}");
        readiness.mark_upstream_ok();
        assert_eq!(readiness.check(), Ok(()));
    }

    #[test]
    fn admin_address_never_shares_the_proxy_port() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_admin_address(addr("127.0.0.1:8443"), addr("127.0.0.1:8443")).is_err());
        assert!(check_admin_address(addr("127.0.0.1:8443"), addr("0.0.0.0:8443")).is_err());
        assert!(check_admin_address(addr("0.0.0.0:8443"), addr("10.0.0.1:8443")).is_err());
        assert!(check_admin_address(addr("127.0.0.1:9090"), addr("127.0.0.1:8443")).is_ok());
        assert!(check_admin_address(addr("127.0.0.1:8443"), addr("10.0.0.1:8443")).is_ok());
        assert!(check_admin_address(addr("127.0.0.1:0"), addr("127.0.0.1:0")).is_ok());
        let message = check_admin_address(addr("[::1]:80"), addr("[::1]:80"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("Fix:"), "{message}");
    }
}
