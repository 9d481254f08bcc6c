//! THE flow of one request. Every phase is called from [`Pipeline::handle`] in order;
//! nothing else knows the order.
//!
//! | # | phase    | here                                                    |
//! |---|----------|---------------------------------------------------------|
//! | 1 | accept   | [`crate::server`]: TCP → TLS → HTTP, one span per connection |
//! | 2 | capture  | [`capture_body`]: the body under a size cap (413 beyond) |
//! | 3 | forward  | [`Pipeline::forward`]: to the configured upstream only (502/504) |
//! | 4 | explain  | [`crate::explain::log`]: one log line on every path      |

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::config::Limits;
use crate::error::{Error, ErrorKind};
use crate::exchange::{ConnInfo, Exchange, REQUEST_ID_HEADER};
use crate::scim::error::ScimError;
use crate::upstream::{remove_hop_by_hop, Upstream};

/// The response body type of the proxy: always a whole buffer.
pub type Body = Full<Bytes>;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// Everything a request needs, shared by all connections.
pub struct Pipeline {
    upstream: Upstream,
    limits: Limits,
    forwarded_headers: bool,
}

impl Pipeline {
    pub fn new(upstream: Upstream, limits: Limits, forwarded_headers: bool) -> Arc<Self> {
        Arc::new(Pipeline {
            upstream,
            limits,
            forwarded_headers,
        })
    }

    /// Answers one request. Never fails: every error becomes an AWS-shaped SCIM error.
    pub async fn handle(&self, request: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let mut exchange = Exchange::start(request.method(), request.uri().path());
        let mut response = match self.process(request, conn, &mut exchange).await {
            Ok(response) => response,
            Err(error) => error_response(&error),
        };
        exchange.status = response.status().as_u16();
        response
            .headers_mut()
            .insert(REQUEST_ID.clone(), exchange.id.header_value());
        crate::explain::log(&exchange);
        response
    }

    async fn process(
        &self,
        request: Request<Incoming>,
        conn: ConnInfo,
        exchange: &mut Exchange,
    ) -> Result<Response<Body>, Error> {
        let (parts, body) = request.into_parts();
        let body = capture_body(&parts, body, self.limits.max_body_bytes).await?;
        self.forward(parts, body, conn, exchange).await
    }

    /// Sends the request to the configured upstream, whatever its target or Host said,
    /// with hop-by-hop headers removed both ways.
    async fn forward(
        &self,
        parts: Parts,
        body: Bytes,
        conn: ConnInfo,
        exchange: &mut Exchange,
    ) -> Result<Response<Body>, Error> {
        let path_and_query = parts
            .uri
            .path_and_query()
            .filter(|pq| pq.as_str().starts_with('/'))
            .ok_or_else(|| ErrorKind::NoPath(parts.uri.to_string()))?;
        let uri = self
            .upstream
            .url()
            .join(path_and_query)
            .map_err(|e| ErrorKind::Internal(format!("cannot build the upstream URI: {e}")))?;

        let mut headers = parts.headers;
        remove_hop_by_hop(&mut headers);
        // The client's Host names this proxy; the upstream's replaces it.
        let original_host = headers.insert(HOST, self.upstream.host().clone());
        // The whole body is already here, so there is nothing left to wait for.
        headers.remove(EXPECT);
        if self.forwarded_headers {
            add_forwarded_headers(
                &mut headers,
                conn,
                original_host.or_else(|| authority_of(&parts.uri)),
            );
        }

        let mut outbound = Request::new(Full::new(body));
        *outbound.method_mut() = parts.method;
        *outbound.uri_mut() = uri;
        *outbound.headers_mut() = headers;

        let answer = self.upstream.send(outbound).await;
        let answer = answer?;
        exchange.upstream_elapsed = Some(answer.elapsed);
        let (mut parts, body) = answer.response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

/// Reads the whole request body, refusing one over `max_bytes` before reading it when
/// Content-Length already says so.
async fn capture_body(parts: &Parts, body: Incoming, max_bytes: usize) -> Result<Bytes, Error> {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes as u64) {
        return Err(ErrorKind::BodyTooLarge { limit: max_bytes }.into());
    }
    if hyper::body::Body::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    match Limited::new(body, max_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ErrorKind::BodyTooLarge { limit: max_bytes }.into())
        }
        Err(e) => Err(ErrorKind::BodyRead(e.to_string()).into()),
    }
}

fn authority_of(uri: &http::Uri) -> Option<HeaderValue> {
    uri.authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

/// X-Forwarded-For gets the client's address appended (it may already list earlier hops).
fn add_forwarded_headers(headers: &mut http::HeaderMap, conn: ConnInfo, host: Option<HeaderValue>) {
    let client_ip = conn.remote.ip().to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client_ip}"),
        None => client_ip,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    let proto = if conn.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
}

/// The response for an error: its status and an AWS-shaped SCIM error body.
pub fn error_response(error: &Error) -> Response<Body> {
    let body = ScimError::new(error.status(), error.detail()).to_json();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
