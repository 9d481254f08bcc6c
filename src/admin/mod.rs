//! The admin listener: the live view, `/metrics`, `/healthz` and `/readyz` over plain
//! HTTP/1.1, on its own address (`--admin`, loopback unless `--admin-token` is set),
//! never on the proxy's port.
//!
//! - `GET /`: the live view of recent exchanges ([`view`], assets in [`page`]);
//!   `GET /events`: its Server-Sent Events; `GET /api/exchanges`: the ring as JSON.
//! - `GET /login?code=…`: the one-time link printed at start sets the session cookie
//!   ([`auth`]); `POST /login` does the same for the token typed into its form.
//! - `GET /metrics`: [`Metrics::render`], OpenMetrics text.
//! - `GET /healthz`: 200 while the process serves at all.
//! - `GET /readyz`: 200 when the rules are loaded and the upstream answered within the
//!   last [`READY_WINDOW`]; else 503 with the reason in plain text.
//!
//! With `--admin-token`, everything but `/healthz`, `/readyz` and the static assets
//! needs the token ([`auth::AdminAuth`]).
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
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE,
    WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::metrics::{self, Metrics};

pub mod auth;
pub mod entry;
pub mod page;
pub mod view;

pub use auth::AdminAuth;
pub use view::View;

/// An admin response's body: a whole buffer, or the live view's event stream.
pub type AdminBody = Either<Full<Bytes>, view::SseBody>;

/// The login form's body is a token of at most a few hundred bytes: 4 KiB bounds it.
const MAX_LOGIN_BODY_BYTES: usize = 4096;

/// What the admin listener serves from.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// The live view; `None` when `--view-history 0` turned it off.
    pub view: Option<View>,
    pub auth: Arc<AdminAuth>,
    /// The blast-radius guard's state and release (`/guard`); `None` when it is off.
    pub guard: Option<crate::guard::Guard>,
}

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

/// A non-loopback `--admin` without `--admin-token`; the message says the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--admin {0} is reachable from other hosts, and its live view shows every exchange. Fix: keep --admin on loopback (e.g. 127.0.0.1:9090), or set --admin-token (SCIMGUARD_ADMIN_TOKEN) to require a bearer token")]
pub struct OpenAdminError(pub SocketAddr);

/// Refuses an admin address off loopback unless a token guards it.
pub fn check_admin_exposure(admin: SocketAddr, token: Option<&str>) -> Result<(), OpenAdminError> {
    if admin.ip().is_loopback() || token.is_some_and(|t| !t.is_empty()) {
        Ok(())
    } else {
        Err(OpenAdminError(admin))
    }
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ADMIN_HEADER_TIMEOUT)
        .keep_alive(true);
    let state = Arc::new(state);
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
            async move { Ok::<_, Infallible>(answer(request, &state).await) }
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

/// The answer to one admin request.
async fn answer(
    request: Request<hyper::body::Incoming>,
    state: &AdminState,
) -> Response<AdminBody> {
    let path = request.uri().path();
    if path == "/login" && request.method() == Method::POST {
        return login_with_form(request, &state.auth)
            .await
            .map(Either::Left);
    }
    if path == "/guard" || path.starts_with("/guard/") {
        // Releasing the guard changes what reaches AWS: the admin token's check, like
        // every page but the probes.
        if !state.auth.allows(request.headers()) {
            return unauthorized().map(Either::Left);
        }
        if request.method() != Method::GET
            && request.method() != Method::HEAD
            && from_another_site(request.headers())
        {
            return text(
                StatusCode::FORBIDDEN,
                "a release must come from this listener's own page or a command-line client, not from another site\n".to_owned(),
            )
            .map(Either::Left);
        }
        if let Some(response) =
            crate::guard::http::answer(&request, state.guard.as_ref(), true).await
        {
            return response.map(Either::Left);
        }
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed here; use GET\n", request.method()),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response.map(Either::Left);
    }
    let open = matches!(
        path,
        "/healthz" | "/readyz" | "/view.css" | "/view.js" | "/login"
    );
    if !open && !state.auth.allows(request.headers()) {
        return unauthorized().map(Either::Left);
    }
    if path == "/events" {
        if let Some(view) = &state.view {
            return event_stream(view);
        }
    }
    answer_whole(&request, state).map(Either::Left)
}

/// Whether a browser sent this request from a page of another site: it says so in
/// `Sec-Fetch-Site`, or (older browsers) in an `Origin` naming another host. A
/// command-line client sends neither. Without this check, any page an admin visits
/// could post a release to a loopback listener, which needs no token.
fn from_another_site(headers: &http::HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return false;
    };
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    authority.is_none() || authority != host
}

/// The answers that are one buffer.
fn answer_whole<B>(request: &Request<B>, state: &AdminState) -> Response<Full<Bytes>> {
    let (metrics, readiness) = (&state.metrics, &state.readiness);
    match request.uri().path() {
        "/" => match &state.view {
            Some(_) => asset(page::live_page(), "text/html; charset=utf-8", true),
            None => text(
                StatusCode::NOT_FOUND,
                "the live view is off (--view-history 0); the admin endpoints are /metrics, /healthz and /readyz\n".to_owned(),
            ),
        },
        "/view.css" => asset(page::CSS.to_owned(), "text/css; charset=utf-8", false),
        "/view.js" => asset(page::JS.to_owned(), "text/javascript; charset=utf-8", false),
        "/api/exchanges" => match &state.view {
            Some(view) => {
                let entries = view.entries();
                let mut json = String::from("[");
                for (i, entry) in entries.iter().enumerate() {
                    if i > 0 {
                        json.push(',');
                    }
                    json.push_str(entry);
                }
                json.push(']');
                let mut response = asset(json, "application/json", false);
                *response.status_mut() = StatusCode::OK;
                response
            }
            None => text(StatusCode::NOT_FOUND, "the live view is off (--view-history 0)\n".to_owned()),
        },
        "/login" => login_with_link(request, &state.auth),
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
            "not found; the admin endpoints are / (the live view), /metrics, /healthz and /readyz\n".to_owned(),
        ),
    }
}

/// `/events`: the view's Server-Sent Events.
fn event_stream(view: &View) -> Response<AdminBody> {
    let Some(stream) = view.event_stream() else {
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} pages of the live view are open already; close one\n",
                view::MAX_EVENT_STREAMS
            ),
        );
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("10"));
        return response.map(Either::Left);
    };
    let mut response = Response::new(Either::Right(stream));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page or asset of the view; `page` adds the policy that keeps it to its own origin.
fn asset(body: String, content_type: &'static str, page: bool) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if page {
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(page::LIVE_POLICY),
        );
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    }
    response
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = asset(
        page::login_page(Some("This admin listener needs its token (--admin-token).")),
        "text/html; charset=utf-8",
        true,
    );
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"scimguard admin\""),
    );
    response
}

/// `GET /login?code=…`: the one-time link. Without a code: the form.
fn login_with_link<B>(request: &Request<B>, auth: &AdminAuth) -> Response<Full<Bytes>> {
    let code = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("code="));
    match code {
        Some(code) => match auth.log_in(code) {
            Some(session) => logged_in(&session),
            None => {
                let mut response = asset(
                    page::login_page(Some(
                        "This login link was used already or is wrong: type the token instead.",
                    )),
                    "text/html; charset=utf-8",
                    true,
                );
                *response.status_mut() = StatusCode::FORBIDDEN;
                response
            }
        },
        None => asset(page::login_page(None), "text/html; charset=utf-8", true),
    }
}

/// `POST /login` with `token=…` (the form).
async fn login_with_form(
    request: Request<hyper::body::Incoming>,
    auth: &AdminAuth,
) -> Response<Full<Bytes>> {
    let body = match Limited::new(request.into_body(), MAX_LOGIN_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the login form is at most 4 KiB\n".to_owned(),
            )
        }
    };
    let token = std::str::from_utf8(&body)
        .ok()
        .into_iter()
        .flat_map(|form| form.split('&'))
        .find_map(|pair| pair.strip_prefix("token="))
        .and_then(|raw| crate::scim::percent::percent_decode(raw, true).ok())
        .map(|t| t.into_owned())
        .unwrap_or_default();
    match auth.log_in_with_token(&token) {
        Some(session) => logged_in(&session),
        None => {
            let mut response = asset(
                page::login_page(Some("Wrong token.")),
                "text/html; charset=utf-8",
                true,
            );
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        }
    }
}

/// Sets the session cookie and sends the browser to the view.
fn logged_in(session: &str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::SEE_OTHER, "logged in\n".to_owned());
    let headers = response.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static("/"));
    let cookie = format!(
        "{}={session}; HttpOnly; SameSite=Strict; Path=/",
        auth::SESSION_COOKIE
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(SET_COOKIE, value);
    }
    response
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
            Admin::start_with(AdminState {
                metrics,
                readiness,
                view: None,
                auth: Arc::new(AdminAuth::new(None)),
                guard: None,
            })
            .await
        }

        async fn start_with(state: AdminState) -> Admin {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, state, async {
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
            self.request_with(method, path, "").await
        }

        /// As [`Admin::request`] with extra header lines (each ending in CRLF).
        async fn request_with(
            &self,
            method: &str,
            path: &str,
            extra: &str,
        ) -> (u16, String, String) {
            self.raw(&format!(
                "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{extra}\r\n"
            ))
            .await
        }

        /// Sends `text` as it is over a fresh connection; reads the whole answer.
        async fn raw(&self, text: &str) -> (u16, String, String) {
            let exchange = async {
                let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
                stream.write_all(text.as_bytes()).await.unwrap();
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
    fn a_post_from_another_site_is_told_apart_from_the_page_and_the_cli() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        let host = ("host", "127.0.0.1:9090");
        assert!(!from_another_site(&headers(&[host])), "a CLI client");
        assert!(!from_another_site(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!from_another_site(&headers(&[
            host,
            ("origin", "http://127.0.0.1:9090")
        ])));
        assert!(from_another_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(from_another_site(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
        assert!(from_another_site(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(from_another_site(&headers(&[host, ("origin", "null")])));
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

    #[tokio::test]
    async fn a_token_guards_the_view_and_metrics_but_not_the_probes() {
        let auth = Arc::new(AdminAuth::new(Some("admin-t0ken")));
        let link = auth.login_path().unwrap();
        let view = View::new(10, None, "http://127.0.0.1:8080".into());
        let admin = Admin::start_with(AdminState {
            metrics: Metrics::new(),
            readiness: Readiness::new(),
            view: Some(view),
            auth,
            guard: None,
        })
        .await;
        for path in ["/", "/metrics", "/api/exchanges", "/events"] {
            let (status, head, body) = admin.request("GET", path).await;
            assert_eq!(status, 401, "{path}: {head}");
            assert!(head
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"));
            assert!(!body.contains("admin-t0ken"));
        }
        assert_eq!(admin.request("GET", "/healthz").await.0, 200);
        assert_eq!(admin.request("GET", "/readyz").await.0, 503);
        let bearer = "Authorization: Bearer admin-t0ken\r\n";
        let (status, _, body) = admin.request_with("GET", "/metrics", bearer).await;
        assert_eq!(status, 200);
        assert!(
            body.contains("scimguard_request_duration_seconds"),
            "{body}"
        );
        let (status, _, body) = admin.request_with("GET", "/api/exchanges", bearer).await;
        assert_eq!((status, body.as_str()), (200, "[]"));

        // The one-time link sets a cookie that opens the page, once.
        let (status, head, _) = admin.request("GET", &link).await;
        assert_eq!(status, 303, "{head}");
        let cookie = head
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            head.contains("HttpOnly") && head.contains("SameSite=Strict"),
            "{head}"
        );
        let (status, head, page) = admin
            .request_with("GET", "/", &format!("Cookie: {cookie}\r\n"))
            .await;
        assert_eq!(status, 200, "{head}");
        assert!(page.contains("<script src=\"/view.js\">"), "{page}");
        assert!(head
            .to_ascii_lowercase()
            .contains("content-security-policy"));
        assert_eq!(admin.request("GET", &link).await.0, 403, "used once");

        // The form takes the token itself (a second browser).
        let post = |form: &str| {
            format!(
                "POST /login HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            )
        };
        let (status, head, _) = admin.raw(&post("token=admin-t0ken")).await;
        assert_eq!(status, 303, "{head}");
        assert!(head.contains("scimguard_admin="), "{head}");
        let (status, _, body) = admin.raw(&post("token=wrong")).await;
        assert_eq!(status, 401);
        assert!(!body.contains("admin-t0ken"));
        admin.stop().await;
    }

    #[test]
    fn admin_off_loopback_needs_a_token() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_admin_exposure(addr("127.0.0.1:9090"), None).is_ok());
        assert!(check_admin_exposure(addr("[::1]:9090"), None).is_ok());
        let message = check_admin_exposure(addr("0.0.0.0:9090"), None)
            .unwrap_err()
            .to_string();
        assert!(message.contains("--admin-token"), "{message}");
        assert!(check_admin_exposure(addr("10.0.0.1:9090"), Some("")).is_err());
        assert!(check_admin_exposure(addr("10.0.0.1:9090"), Some("t")).is_ok());
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
