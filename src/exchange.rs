//! The per-request record every phase reads and writes, from accept to the log line.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method};

use crate::error::{Blame, Error, ErrorKind};
use crate::rules::Finding;
use crate::scim::Operation;
use crate::verdict::Outcome;

/// Response header carrying the request id, so an admin can match the IdP's log line
/// to scimguard's.
pub const REQUEST_ID_HEADER: &str = "x-scimguard-request-id";

/// A request id: 32 hex digits, a random 64-bit prefix chosen once per process and a
/// 64-bit sequence number. Unique across restarts and replicas (the prefix), cheap per
/// request (one atomic add, no RNG), and sortable within one process's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    prefix: u64,
    sequence: u64,
}

static PROCESS_PREFIX: OnceLock<u64> = OnceLock::new();
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl RequestId {
    pub fn new() -> Self {
        RequestId {
            prefix: *PROCESS_PREFIX.get_or_init(rand::random),
            sequence: SEQUENCE.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn hex(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        let both = ((self.prefix as u128) << 64) | self.sequence as u128;
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = DIGITS[((both >> (124 - 4 * i)) & 0xf) as usize];
        }
        out
    }

    /// The id as text, without allocating.
    pub fn text(&self) -> RequestIdText {
        RequestIdText(self.hex())
    }

    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.hex()).expect("hex digits are a valid header value")
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The 32 bytes are ASCII hex digits.
        f.write_str(std::str::from_utf8(&self.hex()).map_err(|_| fmt::Error)?)
    }
}

/// A request id's 32 hex digits, on the stack.
pub struct RequestIdText([u8; 32]);

impl RequestIdText {
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
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
    /// What the request is, once classified.
    pub operation: Option<Operation>,
    /// What became of the request: the verdict's word, then `throttled` or `error` if
    /// a later phase ended it. Starts as `error`: a request that fails before its
    /// verdict never reached one.
    pub verdict: Outcome,
    /// Every rule that fired.
    pub findings: Vec<Finding>,
    /// Observe mode: findings are what enforce mode would have done.
    pub observe: bool,
    /// The upstream's last status, when it answered.
    pub upstream_status: Option<u16>,
    /// The throttle's last decision (admitted, delayed, refused, would_wait,
    /// would_refuse), when throttling is on.
    pub throttle: Option<&'static str>,
    /// Time spent waiting for the throttle, over all requests of the exchange.
    pub throttle_wait: Duration,
    /// The upstream answered 429 and the tenant backs off this long.
    pub upstream_back_off: Option<Duration>,
    /// AWS's `detail`, when the upstream answered with an error body.
    pub aws_detail: Option<String>,
    /// AWS's `x-amzn-RequestId`, for CloudTrail.
    pub aws_request_id: Option<String>,
    /// Advice from the rules' hints, comparing their findings with the upstream's answer.
    pub hints: Vec<String>,
    /// The tenant from the path, when there is one.
    pub tenant: Option<String>,
    /// Why the exchange failed, for errors of scimguard's own (502, 504, 413, 429…).
    pub error: Option<String>,
    /// Whose fault that error was: the client, the upstream or scimguard.
    pub blame: Option<Blame>,
    /// When recording: the request as received (redacted when written).
    pub received: Option<crate::record::ReceivedRequest>,
    /// When recording: what was sent upstream instead (the rewrite, then each batch).
    pub forwarded: Vec<crate::record::RecordedRequest>,
    /// The secret values the request carried, scrubbed from every free text before
    /// any output ([`crate::redact::scrub_exchange`]).
    pub secrets: crate::redact::Secrets,
}

impl Exchange {
    /// The exchange's timings as the capture and the live view show them, up to now.
    pub fn timings(&self) -> crate::record::Timings {
        crate::record::Timings {
            total_us: self.started.elapsed().as_micros() as u64,
            upstream_us: self.upstream_elapsed.map(|d| d.as_micros() as u64),
            throttle_us: self.throttle.map(|_| self.throttle_wait.as_micros() as u64),
        }
    }

    pub fn start(method: &Method, path: &str) -> Self {
        Exchange {
            id: RequestId::new(),
            started: Instant::now(),
            method: method.clone(),
            path: path.to_owned(),
            status: 0,
            upstream_elapsed: None,
            operation: None,
            verdict: Outcome::Error,
            findings: Vec::new(),
            observe: false,
            upstream_status: None,
            throttle: None,
            throttle_wait: Duration::ZERO,
            upstream_back_off: None,
            aws_detail: None,
            aws_request_id: None,
            hints: Vec::new(),
            tenant: None,
            error: None,
            blame: None,
            received: None,
            forwarded: Vec::new(),
            secrets: crate::redact::Secrets::default(),
        }
    }

    /// Notes the error that ended the exchange. Unless the throttle refused it, the
    /// outcome is `error`: a request whose upstream failed (502, 504) was not
    /// forwarded in any useful sense, and the metrics must not count it as such.
    pub fn failed(&mut self, error: &Error) {
        self.error = Some(error.to_string());
        self.blame = Some(error.blame());
        if !matches!(error.kind, ErrorKind::Throttled { .. }) {
            self.verdict = Outcome::Error;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_and_distinct() {
        let a = RequestId::new();
        let b = RequestId::new();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert!(text.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.header_value().to_str().unwrap(), text);
        assert_eq!(&text[..16], &b.to_string()[..16], "one prefix per process");
    }
}
