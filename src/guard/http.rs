//! The guard on the admin listener (`GET /guard`, `POST /guard/{tenant}/release`) and
//! the client `scimguard guard status|release` uses.

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::{Guard, ReleaseError};

/// The admin listener's answer when `request` is for the guard; `None` for any other
/// path. `authorized` says whether the caller may release: the admin listener passes
/// true on a loopback address, else only with the admin token (`--admin-token`).
pub async fn answer<B>(
    request: &Request<B>,
    guard: Option<&Guard>,
    authorized: bool,
) -> Option<Response<Full<Bytes>>> {
    let path = request.uri().path();
    if path != "/guard" && !path.starts_with("/guard/") {
        return None;
    }
    let Some(guard) = guard.filter(|g| g.enabled()) else {
        return Some(json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "the blast-radius guard is off (--guard-deletes 0)"}),
        ));
    };
    if path == "/guard" {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Some(not_allowed("GET, HEAD"));
        }
        return Some(json(StatusCode::OK, &guard.status().await));
    }
    let tenant = path
        .strip_prefix("/guard/")
        .and_then(|rest| rest.strip_suffix("/release"))
        .filter(|t| !t.is_empty() && !t.contains('/'));
    let Some(tenant) = tenant else {
        return Some(json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found; the guard's endpoints are GET /guard and POST /guard/{tenant}/release"}),
        ));
    };
    if request.method() != Method::POST {
        return Some(not_allowed("POST"));
    }
    if !authorized {
        return Some(json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({"error": "releasing the guard needs the admin token (Authorization: Bearer …) when the admin listener is not on loopback"}),
        ));
    }
    Some(match guard.release(tenant).await {
        Ok(trip) => json(
            StatusCode::OK,
            &serde_json::json!({"released": tenant, "held": trip.held, "seen": trip.seen}),
        ),
        Err(error @ ReleaseError::NotTripped(_)) => json(
            StatusCode::CONFLICT,
            &serde_json::json!({"error": error.to_string()}),
        ),
        Err(error) => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": error.to_string()}),
        ),
    })
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = json(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({"error": format!("use {allow}")}),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// The longest `scimguard guard …` waits for the admin listener.
pub const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `scimguard guard status` (`tenant` = None) or `release TENANT`: one request to the
/// admin listener at `admin` (`http://HOST:PORT`). Returns the status and body text.
pub async fn client(
    admin: &str,
    release: Option<&str>,
    token: Option<&str>,
) -> Result<(StatusCode, String), String> {
    let base = admin.trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let (method, url) = match release {
        Some(tenant) => (Method::POST, format!("{base}/guard/{tenant}/release")),
        None => (Method::GET, format!("{base}/guard")),
    };
    let uri: http::Uri = url.parse().map_err(|e| {
        format!("--admin {admin} is not a URL ({e}). Fix: e.g. --admin http://127.0.0.1:9090")
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "--admin {admin}: the admin listener speaks plain HTTP. Fix: e.g. --admin http://127.0.0.1:9090"
        ));
    }
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("cannot reach the admin listener at {base}: {e}. Fix: check --admin (the address given to `scimguard run --admin`)"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the admin listener's answer broke off: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(CLIENT_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("the admin listener at {base} did not answer within 10 s"))?
}
