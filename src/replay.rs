//! `scimguard replay CAPTURE --target URL [--token T]`: re-sends a capture's requests,
//! as originally received, in order and one at a time, to a target (the emulator, or
//! scimguard in front of AWS), and reports every status that differs from the capture.
//!
//! Each request goes to the target's URL with the recorded path and query appended to
//! the target's own path (`--target http://127.0.0.1:8080/base` and a recorded
//! `/t-1/scim/v2/Users?count=5` → `http://127.0.0.1:8080/base/t-1/scim/v2/Users?count=5`).
//! Headers are sent as recorded, except: hop-by-hop ones, Host and Content-Length (the
//! client sets them for the target and the body), Expect, and every header recorded as
//! redacted (sending `[REDACTED]` would only confuse the target). With `token`,
//! Authorization is `Bearer <token>`; without, there is none (the capture never holds
//! one).

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, EXPECT, HOST};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::record::{Record, REDACTED};
use crate::tls::{self, TlsError};
use crate::upstream::remove_hop_by_hop;

/// A target that has not answered one request within 30 s is reported as giving no
/// answer, and the replay goes on: AWS answers in well under a second, and the
/// emulator at once.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting gives up after 10 s: a target that is down should fail fast, per request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses are read (so the connection is reused) up to 16 MiB, the proxy's own
/// upstream limit; only the status is compared.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A replay that cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("--target `{target}` cannot be used: {reason}. Fix: pass a base URL such as http://127.0.0.1:8080")]
    Target { target: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A request whose status differs from the capture's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// 1-based position in the capture.
    pub index: usize,
    pub id: String,
    pub method: String,
    /// The path only: queries carry filter values, which may be PII.
    pub path: String,
    /// The recorded status; `None` when the capture has no response.
    pub recorded: Option<u16>,
    /// The target's status; `None` when it gave none (see `error`).
    pub got: Option<u16>,
    /// Why there was no status.
    pub error: Option<String>,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    pub target: String,
    pub sent: usize,
    pub matched: usize,
    pub differing: Vec<Difference>,
}

impl ReplaySummary {
    /// The report for the terminal: one line, then one per difference.
    pub fn render(&self) -> String {
        let mut out = format!(
            "replayed {} request(s) to {}: {} matched the capture, {} differ\n",
            self.sent,
            self.target,
            self.matched,
            self.differing.len()
        );
        let status = |s: Option<u16>| s.map_or_else(|| "no response".to_owned(), |s| s.to_string());
        for d in &self.differing {
            out.push_str(&format!(
                "  #{} {} {} (id {}): recorded {}, got {}",
                d.index,
                d.method,
                d.path,
                d.id,
                status(d.recorded),
                status(d.got)
            ));
            if let Some(error) = &d.error {
                out.push_str(&format!(" ({error})"));
            }
            out.push('\n');
        }
        out
    }

    /// 0 when every status matched, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.differing.is_empty())
    }
}

/// Re-sends `records`' requests in order to `target`. `progress` writes `\r[n/N]` to
/// stderr (pass `stderr().is_terminal()`).
pub async fn replay(
    records: &[Record],
    target: &str,
    token: Option<&str>,
    progress: bool,
) -> Result<ReplaySummary, ReplayError> {
    replay_with_timeout(records, target, token, progress, REPLAY_TIMEOUT).await
}

/// The target's scheme and authority, and its path without a trailing `/`.
struct Base {
    origin: String,
    path: String,
}

fn parse_target(target: &str) -> Result<Base, ReplayError> {
    let fail = |reason: &str| ReplayError::Target {
        target: target.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = target.parse().map_err(|e| fail(&format!("{e}")))?;
    let scheme = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
            s.to_ascii_lowercase()
        }
        Some(s) => return Err(fail(&format!("the scheme `{s}` is not http or https"))),
        None => return Err(fail("it has no scheme (http:// or https://)")),
    };
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty())
        .ok_or_else(|| fail("it has no host"))?;
    if uri.query().is_some() {
        return Err(fail("it has a query; the recorded queries are appended"));
    }
    Ok(Base {
        origin: format!("{scheme}://{authority}"),
        path: uri.path().trim_end_matches('/').to_owned(),
    })
}

/// The headers to send for a recorded request.
fn outgoing_headers(recorded: &[(String, String)], token: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in recorded {
        if value.contains(REDACTED) {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            // A hand-edited capture may hold anything; the target would refuse it.
            continue;
        };
        headers.append(name, value);
    }
    remove_hop_by_hop(&mut headers);
    for name in [HOST, CONTENT_LENGTH, EXPECT, AUTHORIZATION] {
        headers.remove(name);
    }
    if let Some(token) = token {
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            headers.insert(AUTHORIZATION, value);
        }
    }
    headers
}

type ReplayClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends one request and reads its response; the status or why there is none.
async fn send_one(
    client: &ReplayClient,
    base: &Base,
    record: &Record,
    token: Option<&str>,
    timeout: Duration,
) -> Result<u16, String> {
    let request = &record.request;
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", request.method))?;
    let url = format!("{}{}{}", base.origin, base.path, request.target());
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("cannot build the URL `{url}`: {e}"))?;
    let mut outgoing = Request::new(Full::new(Bytes::copy_from_slice(request.body.as_bytes())));
    *outgoing.method_mut() = method;
    *outgoing.uri_mut() = uri;
    *outgoing.headers_mut() = outgoing_headers(&request.headers, token);
    let exchange = async {
        let response = client.request(outgoing).await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        // Read (and drop) the body so the connection can carry the next request.
        let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        Ok(status)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// An error with its causes, which hyper keeps in the source chain.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn replay_with_timeout(
    records: &[Record],
    target: &str,
    token: Option<&str>,
    progress: bool,
    timeout: Duration,
) -> Result<ReplaySummary, ReplayError> {
    let base = parse_target(target)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls::upstream_client_config(None)?)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    let client: ReplayClient = Client::builder(TokioExecutor::new()).build(connector);

    let mut summary = ReplaySummary {
        target: target.to_owned(),
        sent: 0,
        matched: 0,
        differing: Vec::new(),
    };
    let total = records.len();
    for (i, record) in records.iter().enumerate() {
        if progress {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r[{}/{total}]", i + 1);
            let _ = err.flush();
        }
        let outcome = send_one(&client, &base, record, token, timeout).await;
        summary.sent += 1;
        let recorded = record.response.as_ref().map(|r| r.status);
        let (got, error) = match outcome {
            Ok(status) => (Some(status), None),
            Err(error) => (None, Some(error)),
        };
        if got == recorded && error.is_none() {
            summary.matched += 1;
        } else {
            summary.differing.push(Difference {
                index: i + 1,
                id: record.id.clone(),
                method: record.request.method.clone(),
                path: record.request.path.clone(),
                recorded,
                got,
                error,
            });
        }
    }
    if progress && total > 0 {
        eprintln!();
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Body, RecordedRequest, RecordedResponse, Timings, RECORD_VERSION};
    use http::{Response, StatusCode};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        uri: String,
        headers: HeaderMap,
        body: Bytes,
    }

    /// A server on 127.0.0.1:0 that answers with the status named by the path's last
    /// segment (`/x/409` → 409; anything else 200), or never for `/stall`.
    async fn server() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            log.lock().unwrap().push(Seen {
                                method: parts.method.clone(),
                                uri: parts.uri.to_string(),
                                headers: parts.headers.clone(),
                                body,
                            });
                            let last = parts
                                .uri
                                .path()
                                .rsplit('/')
                                .next()
                                .unwrap_or_default()
                                .to_owned();
                            if last == "stall" {
                                std::future::pending::<()>().await;
                            }
                            let status = last
                                .parse::<u16>()
                                .ok()
                                .and_then(|s| StatusCode::from_u16(s).ok())
                                .unwrap_or(StatusCode::OK);
                            let mut response =
                                Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                            *response.status_mut() = status;
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, seen)
    }

    fn record(i: usize, method: &str, target: &str, status: Option<u16>, body: &str) -> Record {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        Record {
            version: RECORD_VERSION,
            id: format!("{i:032x}"),
            time: "2024-05-01T00:00:00.000000Z".into(),
            replica: None,
            tenant: Some("t-1".into()),
            operation: "CreateUser".into(),
            mode: "enforce".into(),
            verdict: "forwarded".into(),
            request: RecordedRequest {
                method: method.into(),
                path,
                query,
                headers: pairs(&[
                    ("host", "proxy.example.com"),
                    ("authorization", "Bearer [REDACTED]"),
                    ("x-api-key", REDACTED),
                    ("content-type", "application/scim+json"),
                    ("content-length", "999"),
                    ("connection", "keep-alive, x-hop"),
                    ("x-hop", "1"),
                    ("te", "trailers"),
                    ("expect", "100-continue"),
                    ("user-agent", "Okta SCIM Client"),
                    ("bad header", "x"),
                ]),
                body: Body::from(body),
            },
            forwarded: Vec::new(),
            response: status.map(|status| RecordedResponse {
                status,
                headers: Vec::new(),
                body: Body::default(),
            }),
            findings: Vec::new(),
            error: None,
            timings: Timings::default(),
        }
    }

    #[tokio::test]
    async fn replays_in_order_and_reports_only_differences() {
        let (addr, seen) = server().await;
        let records = vec![
            record(
                0,
                "POST",
                "/t-1/scim/v2/Users/201",
                Some(201),
                r#"{"userName":"a"}"#,
            ),
            record(
                1,
                "GET",
                "/t-1/scim/v2/Users?filter=userName%20eq%20%22a%22",
                Some(200),
                "",
            ),
            record(
                2,
                "PATCH",
                "/t-1/scim/v2/Groups/409",
                Some(204),
                r#"{"Operations":[]}"#,
            ),
            record(3, "DELETE", "/t-1/scim/v2/Users/204", Some(204), ""),
            record(4, "GET", "/t-1/scim/v2/Users/400", None, ""),
        ];
        let target = format!("http://{addr}/base/");
        let summary = replay(&records, &target, Some("T0KEN"), false)
            .await
            .unwrap();
        assert_eq!(summary.sent, 5);
        assert_eq!(summary.matched, 3);
        assert_eq!(
            summary.differing,
            vec![
                Difference {
                    index: 3,
                    id: format!("{:032x}", 2),
                    method: "PATCH".into(),
                    path: "/t-1/scim/v2/Groups/409".into(),
                    recorded: Some(204),
                    got: Some(409),
                    error: None,
                },
                Difference {
                    index: 5,
                    id: format!("{:032x}", 4),
                    method: "GET".into(),
                    path: "/t-1/scim/v2/Users/400".into(),
                    recorded: None,
                    got: Some(400),
                    error: None,
                },
            ]
        );
        assert_eq!(summary.exit_code(), 1);
        let text = summary.render();
        assert!(
            text.starts_with(&format!(
                "replayed 5 request(s) to {target}: 3 matched the capture, 2 differ\n"
            )),
            "{text}"
        );
        assert!(
            text.contains("  #3 PATCH /t-1/scim/v2/Groups/409 (id "),
            "{text}"
        );
        assert!(text.contains("recorded 204, got 409"), "{text}");
        assert!(text.contains("recorded no response, got 400"), "{text}");

        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 5);
        let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(
            uris,
            [
                "/base/t-1/scim/v2/Users/201",
                "/base/t-1/scim/v2/Users?filter=userName%20eq%20%22a%22",
                "/base/t-1/scim/v2/Groups/409",
                "/base/t-1/scim/v2/Users/204",
                "/base/t-1/scim/v2/Users/400",
            ],
            "in order, with the recorded path and query under the target's path"
        );
        let first = &seen[0];
        assert_eq!(first.method, Method::POST);
        assert_eq!(first.body.as_ref(), br#"{"userName":"a"}"#);
        let h = &first.headers;
        assert_eq!(h["authorization"], "Bearer T0KEN");
        assert_eq!(h["host"], addr.to_string().as_str());
        assert_eq!(h["content-length"], "16");
        assert_eq!(h["content-type"], "application/scim+json");
        assert_eq!(h["user-agent"], "Okta SCIM Client");
        for gone in ["x-api-key", "x-hop", "te", "expect", "bad header"] {
            assert!(!h.contains_key(gone), "{gone} was sent");
        }
        assert!(!seen.iter().any(|s| s.headers.values().any(|v| v
            .as_bytes()
            .windows(REDACTED.len())
            .any(|w| w == REDACTED.as_bytes()))));
    }

    #[tokio::test]
    async fn a_capture_replayed_against_what_answered_it_matches_entirely() {
        let (addr, seen) = server().await;
        let records: Vec<Record> = [201u16, 200, 204, 400, 409, 429, 500]
            .iter()
            .enumerate()
            .map(|(i, s)| record(i, "POST", &format!("/scim/v2/Users/{s}"), Some(*s), "{}"))
            .collect();
        let summary = replay(&records, &format!("http://{addr}"), None, true)
            .await
            .unwrap();
        assert_eq!((summary.sent, summary.matched), (7, 7));
        assert!(summary.differing.is_empty());
        assert_eq!(summary.exit_code(), 0);
        assert!(summary
            .render()
            .ends_with("7 matched the capture, 0 differ\n"));
        // Without a token no Authorization is sent at all.
        assert!(seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| !s.headers.contains_key("authorization")));
    }

    #[tokio::test]
    async fn a_dead_or_silent_target_is_reported_per_request() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let records = vec![
            record(0, "GET", "/scim/v2/Users", Some(200), ""),
            record(1, "GET", "/scim/v2/Groups", Some(200), ""),
        ];
        let summary = replay(&records, &format!("http://127.0.0.1:{port}"), None, false)
            .await
            .unwrap();
        assert_eq!((summary.sent, summary.matched), (2, 0));
        for d in &summary.differing {
            assert_eq!(d.got, None);
            assert!(d.error.as_deref().unwrap().contains("onnect"), "{d:?}");
        }
        assert!(summary.render().contains("got no response ("));

        let (addr, _) = server().await;
        let records = vec![
            record(0, "GET", "/stall", Some(200), ""),
            record(1, "GET", "/x/201", Some(201), ""),
        ];
        let summary = replay_with_timeout(
            &records,
            &format!("http://{addr}"),
            None,
            false,
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert_eq!(summary.matched, 1, "the replay goes on after a timeout");
        assert_eq!(
            summary.differing[0].error.as_deref(),
            Some("no answer within 300ms")
        );
    }

    #[tokio::test]
    async fn unusable_targets_and_requests_are_errors() {
        for target in [
            "ftp://127.0.0.1",
            "127.0.0.1:80/x",
            "http://127.0.0.1/?q=1",
            "not a url",
            "http:///x",
            "",
        ] {
            assert!(
                matches!(
                    replay(&[], target, None, false).await,
                    Err(ReplayError::Target { .. })
                ),
                "{target}"
            );
        }
        let summary = replay(&[], "https://127.0.0.1:1", None, false)
            .await
            .unwrap();
        assert_eq!((summary.sent, summary.matched), (0, 0));

        let (addr, _) = server().await;
        let mut bad = record(0, "GE T", "/x", Some(200), "");
        bad.request.method = "GE T".into();
        let mut bad_path = record(1, "GET", "/x", Some(200), "");
        bad_path.request.path = "/a b".into();
        let summary = replay(
            &[bad, bad_path],
            &format!("http://{addr}"),
            Some("bad\ntoken"),
            false,
        )
        .await
        .unwrap();
        assert_eq!(summary.matched, 0);
        assert!(summary.differing[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not an HTTP method"));
        assert!(summary.differing[1]
            .error
            .as_deref()
            .unwrap()
            .contains("cannot build the URL"));
    }
}
