//! The accept loop: TCP → (TLS) → HTTP/1.1 or h2 → a [`Handler`]: the proxy's
//! [`Pipeline`](crate::pipeline::Pipeline) or the embedded emulator.
//!
//! [`serve`] takes its listener and its shutdown future as arguments, so tests bind port
//! 0 and `main` binds the configured address and passes the signal handler.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::exchange::ConnInfo;
use crate::pipeline::Body;
use crate::unparsed::Answering;

/// What answers requests on a listener. Implementations never fail: every error is a
/// response.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = http::Response<Body>> + Send;

    /// The whole HTTP/1.1 answer to what hyper refused before it became a request (see
    /// [`crate::unparsed`]); `None` keeps hyper's bare status.
    fn unparsed(&self, _status: http::StatusCode) -> Option<Vec<u8>> {
        None
    }
}

impl Handler for crate::pipeline::Pipeline {
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

/// At most 1,024 client connections at once; the next waits in the kernel's accept
/// queue. An IdP opens a handful (Entra ID about 5, Okta about 10), so this bounds
/// memory against a connection flood without ever limiting a real sync.
pub const MAX_CONNECTIONS: usize = 1024;

/// After an accept error such as EMFILE, wait 50 ms before the next accept instead of
/// spinning on the error.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// The listener's settings.
#[derive(Clone)]
pub struct ServerOptions {
    /// `None`: plain HTTP/1.1. `Some`: HTTPS, h2 or HTTP/1.1 by ALPN.
    pub tls: Option<TlsAcceptor>,
    /// Time to finish the TLS handshake and then the request headers.
    pub header_timeout: Duration,
    /// Time in-flight requests get after the shutdown future resolves.
    pub shutdown_timeout: Duration,
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
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new());
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
    let service = service_fn(move |request| {
        let pipeline = pipeline.clone();
        async move { Ok::<_, Infallible>(pipeline.handle(request, conn).await) }
    });
    let (h1, h2) = &*protocols;
    let result = match options.tls {
        None => {
            watcher
                .watch(h1.serve_connection(TokioIo::new(Answering::new(stream, refusals)), service))
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
                watcher
                    .watch(h2.serve_connection(TokioIo::new(tls), service))
                    .await
            } else {
                let io = TokioIo::new(Answering::new(tls, refusals));
                watcher.watch(h1.serve_connection(io, service)).await
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
