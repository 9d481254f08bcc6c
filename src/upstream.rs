//! The one destination the proxy talks to: a pooled hyper-util client over hyper-rustls,
//! HTTP/2 when the upstream offers it in ALPN, HTTP/1.1 otherwise. TLS SNI and the Host
//! header (`:authority` on h2) come from the configured URL, never from the client.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, CONNECTION};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{Limits, UpstreamUrl};
use crate::tls::{self, TlsError};

/// Largest upstream response the proxy buffers: 16 MiB. AWS pages lists at 50 resources
/// (a ListUsers page is about 75 KB), so this only trips on a misbehaving upstream.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

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
/// `Connection` header names. This runs twice per request, so it costs one scan of the
/// names: without any hop-by-hop header (most requests) nothing more; otherwise (most
/// responses carry `Connection: keep-alive`) one small list of the names to remove.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Rescanning the names after each removal instead cost 1.9k instructions a request
    // (callgrind, nginx answering with `Connection: keep-alive`).
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
    #[error("the upstream {upstream} sent a response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { upstream: String },
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

/// A buffered upstream response and how long the upstream took.
pub struct UpstreamResponse {
    pub response: Response<Bytes>,
    pub elapsed: Duration,
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

    /// Sends a request (its URI already joined onto the upstream URL) and buffers the
    /// response, all within the response timeout.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let started = Instant::now();
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
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
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::TooLarge {
                            upstream: self.display.clone(),
                        }
                    } else {
                        UpstreamError::Exchange {
                            upstream: self.display.clone(),
                            reason: e.to_string(),
                        }
                    }
                })?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        match tokio::time::timeout(self.response_timeout, exchange).await {
            Ok(Ok(response)) => Ok(UpstreamResponse {
                response,
                elapsed: started.elapsed(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.display.clone(),
                timeout: self.response_timeout,
            }),
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
