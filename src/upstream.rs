//! The one destination the proxy talks to: a pooled hyper-util client over hyper-rustls,
//! HTTP/2 when the upstream offers it in ALPN, HTTP/1.1 otherwise. TLS SNI and the Host
//! header (`:authority` on h2) come from the configured URL, never from the client.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, CONNECTION};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{Limits, UpstreamUrl};
use crate::tls::{self, TlsError};

/// Largest upstream answer the proxy reads whole: 16 MiB. Only answers something needs
/// whole are read so (the created group whose id the batches need); the others stream
/// through with no cap of their own.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Largest error answer (4xx, 5xx) read whole so the explanation can quote its
/// `detail`: 1 MiB. AWS's errors are a few hundred bytes.
pub const MAX_ERROR_BYTES: usize = 1024 * 1024;

/// What an answer's body may fail with while it streams.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle pooled connections are closed after 60 s: below the 350 s idle limit of AWS's
/// load balancers, so the proxy closes first and never sends on a dead connection.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a header describes one connection rather than the message (RFC 9110 §7.6.1):
/// the fixed hop-by-hop list, plus `Proxy-*`, which are for this hop's proxy only.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name.as_str().starts_with("proxy-")
}

/// Removes hop-by-hop headers: the fixed list, `Proxy-*`, and every header the
/// `Connection` header names (RFC 9110 §7.6.1).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut hop: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k))
        .cloned()
        .collect();
    if hop.is_empty() {
        return;
    }
    hop.extend(
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|token| {
                !token.eq_ignore_ascii_case("close") && !token.eq_ignore_ascii_case("keep-alive")
            })
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok()),
    );
    for name in hop {
        headers.remove(name);
    }
}

/// Why the upstream gave no usable response; each maps to a status and a detail that
/// blames the upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error("could not connect to the upstream {upstream}: {reason}")]
    Connect { upstream: String, reason: String },
    #[error("the upstream {upstream} did not answer within {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
    #[error("the upstream {upstream} sent a response larger than the {limit} bytes scimguard reads whole")]
    TooLarge { upstream: String, limit: usize },
    #[error("the exchange with the upstream {upstream} failed: {reason}")]
    Exchange { upstream: String, reason: String },
}

impl UpstreamError {
    /// 504 for a timeout, 502 for everything else (RFC 9110 §15.6.3, §15.6.5).
    pub fn status(&self) -> u16 {
        match self {
            UpstreamError::Timeout { .. } => 504,
            _ => 502,
        }
    }
}

/// An upstream answer whose head has arrived, and how long that took. Its body streams
/// ([`Upstream::whole`] reads it whole when something needs it so).
pub struct UpstreamResponse {
    pub response: Response<Incoming>,
    pub elapsed: Duration,
    /// When the whole answer must have arrived (the response timeout).
    pub deadline: Instant,
}

/// A streamed answer body that fails once the response timeout has passed, so an
/// upstream trickling its answer cannot hold a client connection for ever.
pub struct Deadline<B> {
    body: B,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl<B: hyper::body::Body<Data = Bytes> + Unpin> hyper::body::Body for Deadline<B>
where
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            let timeout = self.timeout;
            return Poll::Ready(Some(Err(format!(
                "the upstream's answer did not finish within {timeout:?} (--upstream-timeout)"
            )
            .into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The pooled client bound to the configured upstream URL.
#[derive(Clone)]
pub struct Upstream {
    url: UpstreamUrl,
    /// `Host` for every request: the upstream's authority, computed once.
    host: HeaderValue,
    display: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    response_timeout: Duration,
}

impl Upstream {
    /// Builds the client; `extra_ca` adds trust anchors to the web PKI roots.
    pub fn new(
        url: UpstreamUrl,
        extra_ca: Option<&std::path::Path>,
        limits: &Limits,
    ) -> Result<Self, TlsError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(limits.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::upstream_client_config(extra_ca)?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .timer(TokioTimer::new())
            .build(connector);
        let host = HeaderValue::from_str(url.authority.as_str())
            .map_err(|e| TlsError(format!("the upstream host cannot be a Host header: {e}")))?;
        Ok(Upstream {
            host,
            display: url.to_string(),
            url,
            client,
            response_timeout: limits.upstream_timeout,
        })
    }

    /// The configured URL.
    pub fn url(&self) -> &UpstreamUrl {
        &self.url
    }

    /// The `Host` header value of the upstream (its authority, port included when not
    /// the scheme's default is how it was configured). Sent on h2 too, where RFC 9113
    /// §8.3.1 lets an intermediary keep it beside `:authority`.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Sends a request (its URI already joined onto the upstream URL) and waits for the
    /// answer's head within the response timeout; the body is left to stream.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let started = Instant::now();
        let response = tokio::time::timeout(self.response_timeout, self.client.request(request))
            .await
            .map_err(|_| self.timeout())?
            .map_err(|e| {
                let reason = error_chain(&e);
                if e.is_connect() {
                    UpstreamError::Connect {
                        upstream: self.display.clone(),
                        reason,
                    }
                } else {
                    UpstreamError::Exchange {
                        upstream: self.display.clone(),
                        reason,
                    }
                }
            })?;
        Ok(UpstreamResponse {
            response,
            elapsed: started.elapsed(),
            deadline: started + self.response_timeout,
        })
    }

    /// The body of an answer as it arrives, failing past `deadline`.
    pub fn stream(&self, body: Incoming, deadline: Instant) -> Deadline<Incoming> {
        Deadline {
            body,
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
            timeout: self.response_timeout,
        }
    }

    /// Reads the body of an answer whole, at most `limit` bytes, by `deadline`.
    pub async fn whole(
        &self,
        body: Incoming,
        limit: usize,
        deadline: Instant,
    ) -> Result<Bytes, UpstreamError> {
        let read = Limited::new(body, limit).collect();
        match tokio::time::timeout_at(deadline.into(), read).await {
            Err(_) => Err(self.timeout()),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(UpstreamError::TooLarge {
                    upstream: self.display.clone(),
                    limit,
                })
            }
            Ok(Err(e)) => Err(UpstreamError::Exchange {
                upstream: self.display.clone(),
                reason: e.to_string(),
            }),
        }
    }

    fn timeout(&self) -> UpstreamError {
        UpstreamError::Timeout {
            upstream: self.display.clone(),
            timeout: self.response_timeout,
        }
    }
}

/// "connection refused" is buried two sources deep in hyper-util's error; the admin
/// needs it, so join the whole chain.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_fixed_named_and_proxy_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, X-Trace".parse().unwrap());
        h.insert("x-trace", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("authorization", "Bearer t".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["authorization"], "Bearer t");
    }
}
