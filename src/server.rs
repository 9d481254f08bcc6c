//! The accept loop: TCP → (TLS) → HTTP/1.1 or h2 → a [`Handler`]: the proxy's
//! [`Pipeline`](crate::pipeline::Pipeline) or the embedded emulator.
//!
//! [`serve`] takes its listener and its shutdown future as arguments, so tests bind port
//! 0 and `main` binds the configured address and passes the signal handler.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::body::{Body, BoxError};
use crate::config::Limits;
use crate::exchange::ConnInfo;
use crate::scim::error::ScimError;
use crate::unparsed::Answering;

/// What answers requests on a listener. Implementations never fail: every error is a
/// response.
pub trait Handler: Send + Sync + 'static {
    /// The answers' body: whole, or streamed as it arrives.
    type Body: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static;

    fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = http::Response<Self::Body>> + Send;

    /// The whole HTTP/1.1 answer to what hyper refused before it became a request (see
    /// [`crate::unparsed`]); `None` keeps hyper's bare status.
    fn unparsed(&self, _status: http::StatusCode) -> Option<Vec<u8>> {
        None
    }
}

impl Handler for crate::pipeline::Pipeline {
    type Body = Body;

    fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = http::Response<Body>> + Send {
        crate::pipeline::Pipeline::handle(self, request, conn)
    }

    fn unparsed(&self, status: http::StatusCode) -> Option<Vec<u8>> {
        Some(crate::pipeline::Pipeline::unparsed(self, status))
    }
}

/// After an accept error such as EMFILE, wait 50 ms before the next accept instead of
/// spinning on the error.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The listener's settings.
#[derive(Clone)]
pub struct ServerOptions {
    /// `None`: plain HTTP/1.1. `Some`: HTTPS, h2 or HTTP/1.1 by ALPN.
    pub tls: Option<TlsAcceptor>,
    /// Time to finish the TLS handshake and then the request headers, counted from the
    /// request's first byte (from the accept for the first request).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit with no request in flight (HTTP/1.1 and h2).
    pub idle_timeout: Duration,
    /// Time in-flight requests get after the shutdown future resolves.
    pub shutdown_timeout: Duration,
    /// Client connections at once; the next waits in the kernel's accept queue.
    pub max_connections: usize,
    /// Client connections at once from one IP address; 0: no cap of its own.
    pub max_connections_per_ip: usize,
}

impl Default for ServerOptions {
    /// Plain HTTP with the default limits.
    fn default() -> Self {
        Self::new(None, &Limits::default())
    }
}

impl ServerOptions {
    /// The options of a listener bounded by `limits`.
    pub fn new(tls: Option<TlsAcceptor>, limits: &Limits) -> Self {
        ServerOptions {
            tls,
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            shutdown_timeout: limits.shutdown_timeout,
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
        }
    }
}

/// h2 pings an idle client this often, and drops the connection when a ping is not
/// answered within [`H2_PING_TIMEOUT`]: a peer that vanished (NAT timeout, crash) frees
/// its slot long before the idle timeout would.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Raises the soft limit on open files to the hard one, since every connection holds a
/// descriptor (plus one toward the upstream while it waits), and says so when even the
/// hard limit is below what `max_connections` needs. Returns the soft limit now in force.
pub fn raise_open_files_limit(max_connections: usize) -> Option<u64> {
    // Files, the listener, the upstream pool and the logs: a fixed allowance.
    const OTHER_FILES: u64 = 64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let wanted = max_connections as u64 * 2 + OTHER_FILES;
            if limit < wanted {
                tracing::warn!(
                    open_files = limit,
                    max_connections,
                    wanted,
                    "the open-files limit is below what --max-connections needs (two descriptors a connection); raise the hard limit (ulimit -Hn, LimitNOFILE= in systemd) or lower --max-connections"
                );
            } else {
                tracing::debug!(open_files = limit, "open-files limit");
            }
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            None
        }
    }
}

/// Connections per client address, for `--max-connections-per-ip`.
#[derive(Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerAddress`]; gives it back when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// A slot for one more connection from `ip`, unless it already has `cap` open.
    fn take(table: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What a client over its address's cap reads before the connection closes: a 503 in
/// AWS's error shape, so the IdP's log says why.
fn too_many_from_address() -> Vec<u8> {
    let body = ScimError::new(
        503,
        "scimguard: too many connections at once from this address (--max-connections-per-ip). Reuse keep-alive connections, or raise the cap.",
    )
    .to_json();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Serves until `shutdown` resolves, then stops accepting and waits up to
/// `shutdown_timeout` for in-flight requests to finish.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    pipeline: Arc<H>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let mut h1 = http1::Builder::new();
    // hyper's header timeout would also run between requests; [`Clock`] times both
    // the headers and the idle wait instead.
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let protocols = Arc::new((h1, h2));
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let address_slot = if options.max_connections_per_ip == 0 {
            None
        } else {
            match PerAddress::take(&per_address, remote.ip(), options.max_connections_per_ip) {
                Some(slot) => Some(slot),
                None => {
                    tracing::warn!(
                        remote = %remote.ip(),
                        cap = options.max_connections_per_ip,
                        "connection refused: too many at once from this address (--max-connections-per-ip)"
                    );
                    if options.tls.is_none() {
                        // Best effort, never waiting: the connection closes either way.
                        let _ = stream.try_write(&too_many_from_address());
                    }
                    continue;
                }
            }
        };
        let conn = ConnInfo {
            remote,
            tls: options.tls.is_some(),
        };
        let task = serve_connection(
            stream,
            conn,
            pipeline.clone(),
            options.clone(),
            protocols.clone(),
            graceful.watcher(),
        );
        let span = tracing::debug_span!("conn", remote = %remote);
        tokio::spawn(
            async move {
                task.await;
                drop(address_slot);
                drop(permit);
            }
            .instrument(span),
        );
    }

    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: no new connections; waiting for in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.shutdown_timeout) => tracing::warn!(
            timeout_s = options.shutdown_timeout.as_secs_f64(),
            "shutdown timeout reached; dropping the remaining connections"
        ),
    }
}

async fn serve_connection<H: Handler>(
    stream: TcpStream,
    conn: ConnInfo,
    pipeline: Arc<H>,
    options: ServerOptions,
    protocols: Arc<(http1::Builder, http2::Builder<TokioExecutor>)>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let _ = stream.set_nodelay(true);
    let refusals = pipeline.clone();
    let clock = Arc::new(Clock::new(options.header_timeout, options.idle_timeout));
    let service = {
        let clock = clock.clone();
        service_fn(move |request| {
            let pipeline = pipeline.clone();
            let busy = Clock::busy(&clock);
            async move {
                let response = pipeline.handle(request, conn).await;
                // The request is done when its answer is sent, not when it is ready.
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
            }
        })
    };
    let (h1, h2) = &*protocols;
    let result = match options.tls {
        None => {
            let io = Watched::new(Answering::new(stream, refusals), clock.clone());
            clock
                .guard(watcher.watch(h1.serve_connection(TokioIo::new(io), service)))
                .await
        }
        Some(acceptor) => {
            // The handshake counts against the header timeout: a client that opens TCP
            // and never finishes TLS is a slow loris too.
            let tls =
                match tokio::time::timeout(options.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
            let alpn = tls.get_ref().1.alpn_protocol();
            if alpn == Some(crate::tls::served::ACME_TLS_ALPN) {
                // An ACME TLS-ALPN-01 validation: the handshake was the whole answer
                // (RFC 8737 §3), no HTTP follows.
                return;
            }
            let is_h2 = alpn == Some(b"h2");
            if is_h2 {
                // h2 frames between requests (pings, window updates) are not a request's
                // headers: only the idle wait is timed.
                clock.no_header_timeout();
                let io = TokioIo::new(tls);
                clock
                    .guard(watcher.watch(h2.serve_connection(io, service)))
                    .await
            } else {
                let io = Watched::new(Answering::new(tls, refusals), clock.clone());
                clock
                    .guard(watcher.watch(h1.serve_connection(TokioIo::new(io), service)))
                    .await
            }
        }
    };
    match result {
        Some(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
        Some(Ok(())) => {}
        None => {}
    }
}

/// What a connection is doing, for its two timeouts: the request headers must arrive
/// within the header timeout of their first byte (of the accept, for the first
/// request), and a connection with no request in flight closes after the idle timeout.
/// A request in flight is timed by the pipeline (body, upstream), not here.
struct Clock {
    header_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<ClockState>,
    /// Wakes [`Clock::guard`] when a deadline may have come nearer.
    changed: Notify,
}

struct ClockState {
    /// Requests whose answer is not sent yet.
    busy: usize,
    /// When the last request's answer was sent (or the connection accepted).
    idle_since: Instant,
    /// When the first byte of the next request's headers arrived; `None` while busy,
    /// or before a byte of the next request came.
    headers_since: Option<Instant>,
    /// h2: bytes between requests are frames, not headers.
    time_headers: bool,
}

/// Why [`Clock::guard`] closed a connection.
#[derive(Debug, Clone, Copy)]
enum Expired {
    Headers,
    Idle,
}

impl Clock {
    fn new(header_timeout: Duration, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Clock {
            header_timeout,
            idle_timeout,
            state: Mutex::new(ClockState {
                busy: 0,
                idle_since: now,
                // The first request's headers are due from the accept: a client that
                // connects and sends nothing is a slow loris.
                headers_since: Some(now),
                time_headers: true,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn no_header_timeout(&self) {
        let mut state = self.lock();
        state.time_headers = false;
        state.headers_since = None;
    }

    /// Bytes arrived from the client.
    fn read(&self) {
        let mut state = self.lock();
        if state.busy == 0 && state.time_headers && state.headers_since.is_none() {
            state.headers_since = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    /// A request started; the returned guard ends it when dropped.
    fn busy(clock: &Arc<Self>) -> Busy {
        let mut state = clock.lock();
        state.busy += 1;
        state.headers_since = None;
        Busy(clock.clone())
    }

    /// The deadline now in force and what it is for; `None` while busy.
    fn deadline(&self) -> Option<(Instant, Expired)> {
        let state = self.lock();
        if state.busy > 0 {
            return None;
        }
        let idle = (state.idle_since + self.idle_timeout, Expired::Idle);
        Some(match state.headers_since {
            Some(since) if since + self.header_timeout < idle.0 => {
                (since + self.header_timeout, Expired::Headers)
            }
            _ => idle,
        })
    }

    /// Runs the connection until it ends, or closes it when a deadline passes
    /// (`None`).
    async fn guard<T>(&self, connection: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(connection);
        loop {
            let deadline = self.deadline();
            let sleep = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                done = &mut connection => return Some(done),
                () = sleep => {
                    // Still the deadline after the sleep: nothing moved it.
                    if let Some((at, why)) = self.deadline() {
                        if at <= Instant::now() {
                            match why {
                                Expired::Headers => tracing::info!(
                                    timeout_s = self.header_timeout.as_secs_f64(),
                                    "connection closed: the request headers did not arrive within the header timeout (--header-timeout)"
                                ),
                                Expired::Idle => tracing::debug!(
                                    timeout_s = self.idle_timeout.as_secs_f64(),
                                    "connection closed: idle (--idle-timeout)"
                                ),
                            }
                            return None;
                        }
                    }
                }
                () = self.changed.notified() => {}
            }
        }
    }
}

/// A request in flight on its connection's [`Clock`].
struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.busy -= 1;
        if state.busy == 0 {
            state.idle_since = Instant::now();
            drop(state);
            self.0.changed.notify_one();
        }
    }
}

/// A response body that holds its request's [`Busy`] until the last byte is sent (or
/// the client goes away).
struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A client stream that tells its [`Clock`] when bytes arrive.
struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S> Watched<S> {
    fn new(inner: S, clock: Arc<Clock>) -> Self {
        Watched { inner, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_one() {
        let raised = raise_open_files_limit(10).expect("the limit can be read");
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(raised, soft);
        assert_eq!(soft, hard);
    }

    #[test]
    fn the_per_address_cap_counts_open_connections_only() {
        let table = Arc::new(PerAddress::default());
        let ip: IpAddr = [127, 0, 0, 1].into();
        let first = PerAddress::take(&table, ip, 2).expect("one");
        let _second = PerAddress::take(&table, ip, 2).expect("two");
        assert!(
            PerAddress::take(&table, ip, 2).is_none(),
            "a third over the cap"
        );
        assert!(PerAddress::take(&table, [10, 0, 0, 1].into(), 2).is_some());
        drop(first);
        assert!(
            PerAddress::take(&table, ip, 2).is_some(),
            "a slot given back"
        );
    }
}
