//! The per-request record every phase reads and writes, from accept to the log line.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method};

/// Response header carrying the request id, so an admin can match the IdP's log line
/// to scimguard's.
pub const REQUEST_ID_HEADER: &str = "x-scimguard-request-id";

/// A request id: 128 random bits as 32 hex digits, unique across restarts and replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u128);

impl RequestId {
    pub fn new() -> Self {
        RequestId(rand::random())
    }

    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.to_string()).expect("hex digits are a valid header value")
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Facts about the client connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
}

/// One request's record.
#[derive(Debug)]
pub struct Exchange {
    pub id: RequestId,
    pub started: Instant,
    pub method: Method,
    /// The path only: queries carry filter values such as userNames, which are PII.
    pub path: String,
    pub status: u16,
    pub upstream_elapsed: Option<Duration>,
}

impl Exchange {
    pub fn start(method: &Method, path: &str) -> Self {
        Exchange {
            id: RequestId::new(),
            started: Instant::now(),
            method: method.clone(),
            path: path.to_owned(),
            status: 0,
            upstream_elapsed: None,
        }
    }
}
