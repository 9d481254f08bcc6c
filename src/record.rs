//! Record mode (`--record FILE`): every exchange as one JSON line, written by a writer
//! thread fed through a bounded channel, so recording never blocks the proxy and a kill
//! loses at most the exchanges still in the channel.
//!
//! | what | how |
//! |---|---|
//! | format | one [`Record`] per line (JSON lines), `version` 2 ([`RECORD_VERSION`]) |
//! | secrets | always redacted: Authorization (scheme kept), Proxy-Authorization, Cookie, Set-Cookie, any header or query parameter whose name contains `auth`, `cookie`, `token`, `secret`, `api-key`, `api_key`, `apikey`, `password`, `credential` or `signature`; every `password` attribute in a body or a PATCH path; and those values wherever they reappear in findings, errors and bodies |
//! | PII (`--redact-pii`) | [`PII_ATTRIBUTES`] and the `value`/`display` of [`PII_MULTI_VALUED`], in bodies, PATCH values (by their `path`), filters (query, `.search` bodies, PATCH paths), and the same values wherever they reappear, become `sha256:<16 hex>` |
//! | file | created (or re-opened for appending) with mode 0600 |
//! | durability | each batch of records is handed to the OS with one `write` as soon as the writer has it; `fsync` only on close (a killed process loses nothing written; a power cut may) |
//! | cost | a plain exchange's line is written straight from the pipeline's header maps and buffers, headers redacted as they are written ([`Recorder::record_exchange`]); PII hashing, a rewrite, or a query or body that could carry a secret take the full path, which builds a [`Record`] and sanitizes it ([`Recorder::record`]); a property test holds the two to the same bytes |
//! | back-pressure | none: [`Recorder::record`] never waits; a full channel drops the record, counts it and logs a warning with its id and the total |
//! | rotation | past `max_bytes`, `FILE` becomes `FILE.1`, older ones shift up to `FILE.5` and the oldest is deleted |
//!
//! The PII hash is HMAC-SHA-256 keyed by a salt that is never written anywhere: 32 random
//! bytes per [`Recorder`] unless [`RecordOptions::pii_salt`] gives one. So one value has
//! one hash throughout a capture and its rotations (correlation survives), while whoever
//! receives the capture cannot test guesses (a dictionary of e-mail addresses) against
//! the hashes. Pass the same salt to make hashes comparable across captures.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use ring::hmac;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::rules::Finding;
use crate::scim::percent::percent_decode;

/// The record format's version. Version 2 added the `json` body form; readers take
/// every version up to this one ([`check_version`]) and refuse later ones.
pub const RECORD_VERSION: u32 = 2;

/// Whether this scimguard reads records of `version`, and if not, why: version 1
/// differs only by lacking the `json` body form, so its records read the same.
pub fn check_version(version: u32) -> Result<(), String> {
    if (1..=RECORD_VERSION).contains(&version) {
        Ok(())
    } else {
        Err(format!(
            "record version {version} is not supported; this scimguard reads versions 1 to {RECORD_VERSION}"
        ))
    }
}
/// What a secret becomes.
pub const REDACTED: &str = "[REDACTED]";
/// Default channel capacity: 1024 records. At AWS's default 20 requests per second
/// per tenant that is over 50 s of a stalled disk before anything is dropped.
pub const DEFAULT_CHANNEL: usize = 1024;
/// Rotated files kept: `FILE.1` (newest) to `FILE.5` (oldest).
pub const ROTATE_KEEP: u32 = 5;
/// The channel also holds at most 64 MiB of bodies: 1024 records of 1 MiB bodies would
/// otherwise queue 1 GiB while the disk stalls.
const QUEUE_BYTES_LIMIT: usize = 64 * 1024 * 1024;
/// The writer takes up to 256 queued records per `write` call: one system call per
/// batch under load, one per record when idle.
const WRITE_BATCH: usize = 256;

/// How long the writer lets records gather before writing them: 5 ms. Against 1 ms, it
/// cut a recording proxy's CPU per CreateUser by 9 % (45.3 → 41.4 µs, median of three
/// runs): each wake of the writer preempts the proxy on its core and evicts its cache.
/// 10 ms measured no better.
const WRITE_COALESCE: std::time::Duration = std::time::Duration::from_millis(5);
/// Recorded values shorter than 3 characters are not searched for in free text
/// (messages, `detail`): "HR" would otherwise mangle every "HR" in every message, and
/// two characters identify nobody. Structural redaction covers every length.
const MIN_SUBSTITUTION_LEN: usize = 3;
/// Fixed per-record overhead in the queue estimate (ids, names, JSON punctuation).
const RECORD_OVERHEAD: usize = 512;

/// Header and query-parameter names containing any of these (case-insensitively) carry
/// secrets.
const SECRET_NAME_PARTS: [&str; 10] = [
    "auth",
    "cookie",
    "token",
    "secret",
    "api-key",
    "api_key",
    "apikey",
    "password",
    "credential",
    "signature",
];

/// Attributes whose every string (and number) is PII, matched case-insensitively by
/// their last name (after a schema URN), at any depth. `type` and `primary` inside them
/// stay (they are vocabulary, not data).
pub const PII_ATTRIBUTES: [&str; 21] = [
    "userName",
    "displayName",
    "nickName",
    "name",
    "formatted",
    "familyName",
    "givenName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
    "title",
    "externalId",
    "display",
    "profileUrl",
    "employeeNumber",
    "addresses",
    "streetAddress",
    "locality",
    "region",
    "postalCode",
    "country",
];

/// Multi-valued attributes whose `value` and `display` are PII; their `type` and
/// `primary` stay.
pub const PII_MULTI_VALUED: [&str; 5] = [
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "x509Certificates",
];

// ---------------------------------------------------------------------------------
// The record
// ---------------------------------------------------------------------------------

/// One exchange, as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The request id (`x-scimguard-request-id`).
    pub id: String,
    /// When the request arrived, RFC 3339 in UTC with microseconds ([`rfc3339`]).
    pub time: String,
    /// AWS's tenant id from the path, when there is one.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The operation's name (`CreateUser`, `Unknown`, `-` before classification).
    pub operation: String,
    /// `enforce` or `observe`.
    pub mode: String,
    /// `forwarded`, `rewritten`, `rejected` or `error`.
    pub verdict: String,
    /// The request as received.
    pub request: RecordedRequest,
    /// What was sent upstream when it differs from what was received: the rewritten
    /// request, then each follow-up batch in order. Empty when forwarded as received or
    /// not forwarded at all.
    #[serde(default)]
    pub forwarded: Vec<RecordedRequest>,
    /// The response the client got; `None` when there was none to record.
    #[serde(default)]
    pub response: Option<RecordedResponse>,
    /// Every finding, as [`Finding`] serializes ([`findings_json`]).
    #[serde(default)]
    pub findings: Vec<Value>,
    /// Why the exchange failed, for errors the response alone does not explain.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub timings: Timings,
}

/// A request, as received or as forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// The path as on the wire (still percent-encoded).
    pub path: String,
    /// The raw query string as on the wire, without its `?`.
    #[serde(default)]
    pub query: Option<String>,
    /// `[[name, value], …]` in received order, names lowercase, secrets redacted.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: Body,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: Body,
}

/// Durations in microseconds: exact integers, like the log line's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timings {
    /// From the request's arrival to the response.
    pub total_us: u64,
    /// Time spent waiting for the upstream (all batches together), when it was asked.
    #[serde(default)]
    pub upstream_us: Option<u64>,
    /// Time spent queued by the throttle, when it held the request.
    #[serde(default)]
    pub throttle_us: Option<u64>,
}

/// A body: `{"json": …}` with the body itself when it is one JSON object or array on
/// one line (nearly every SCIM body), else `{"text": "…"}` when it is UTF-8, else
/// `{"base64": "…"}` (standard alphabet, padded). An empty body is `{"text": ""}`.
/// Each form gives back the received bytes exactly.
///
/// It shares the proxy's buffer (`Bytes`): recording a body costs no copy on the
/// request path.
#[derive(Debug, Clone, Default)]
pub struct Body {
    bytes: Bytes,
    /// serde_json has read these bytes as one JSON value (the rules did, on the request
    /// path), so the writer embeds them without checking them again: that check
    /// ([`crate::json_syntax::is_json`]) is about 10k instructions for a 1.2 KB CreateUser
    /// (callgrind). Any new content clears it.
    known_json: bool,
}

/// Bodies are equal when their bytes are: `known_json` only spares work.
impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Body {}

impl Body {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The body as text, when it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Marks the body as read by serde_json as one JSON value, e.g. a request body the
    /// rules parsed (`Evaluation::body_is_json`), so the writer need not check it again.
    pub fn mark_known_json(&mut self) {
        self.known_json = true;
    }

    /// Which of the three written forms the body takes: decided here once, for
    /// [`write_line`] and for `Serialize` alike.
    fn form(&self) -> BodyForm<'_> {
        if self.known_json && has_embeddable_shape(&self.bytes) {
            return BodyForm::Json(&self.bytes);
        }
        match std::str::from_utf8(&self.bytes) {
            Ok(text) if embeddable_json(text) => BodyForm::Json(text.as_bytes()),
            Ok(text) => BodyForm::Text(text),
            Err(_) => BodyForm::Base64,
        }
    }
}

/// How a [`Body`] is written.
enum BodyForm<'a> {
    /// One JSON object or array on one line, embedded as it is (so UTF-8).
    Json(&'a [u8]),
    Text(&'a str),
    /// Not UTF-8.
    Base64,
}

impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Self {
        Body::from(Bytes::copy_from_slice(bytes))
    }
}

impl<const N: usize> From<&[u8; N]> for Body {
    fn from(bytes: &[u8; N]) -> Self {
        Body::from(Bytes::copy_from_slice(bytes))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::from(Bytes::from(bytes))
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body {
            bytes,
            known_json: false,
        }
    }
}

impl From<&Bytes> for Body {
    fn from(bytes: &Bytes) -> Self {
        Body::from(bytes.clone())
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Self {
        Body::from(Bytes::copy_from_slice(text.as_bytes()))
    }
}

/// The written form, borrowing the body's text.
#[derive(Serialize)]
struct BodyReprRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodyRepr {
    #[serde(default)]
    json: Option<Box<RawValue>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    base64: Option<String>,
}

/// The body as a JSON value to embed verbatim in the record line, when that gives the
/// same bytes back: one object or array, without surrounding whitespace (it would be
/// lost) or raw line breaks (a record is one line). The syntax check
/// ([`crate::json_syntax::is_json`]) costs a small part of escaping the body as a string,
/// and the line stays readable with `jq`.
fn embeddable_json(text: &str) -> bool {
    has_embeddable_shape(text.as_bytes()) && crate::json_syntax::is_json(text)
}

/// One object or array with nothing around it and no raw line break: what
/// [`embeddable_json`] asks of a body besides being JSON.
fn has_embeddable_shape(bytes: &[u8]) -> bool {
    matches!(
        (bytes.first(), bytes.last()),
        (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
    ) && memchr::memchr2(b'\n', b'\r', bytes).is_none()
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Json's bytes are the body's own: every form falls back to these.
        let unembedded = || match std::str::from_utf8(&self.bytes) {
            Ok(text) => BodyReprRef {
                json: None,
                text: Some(text),
                base64: None,
            },
            Err(_) => BodyReprRef {
                json: None,
                text: None,
                base64: Some(base64::engine::general_purpose::STANDARD.encode(&self.bytes)),
            },
        };
        let repr = match self.form() {
            // serde_json takes what `is_json` or a rule's parse took; were it not to, the
            // body would still be written, as text.
            BodyForm::Json(bytes) => match serde_json::from_slice::<&RawValue>(bytes) {
                Ok(raw) => BodyReprRef {
                    json: Some(raw),
                    text: None,
                    base64: None,
                },
                Err(_) => unembedded(),
            },
            BodyForm::Text(_) | BodyForm::Base64 => unembedded(),
        };
        repr.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match BodyRepr::deserialize(deserializer)? {
            BodyRepr {
                json: Some(raw),
                text: None,
                base64: None,
            } => Ok(Body::from(raw.get())),
            BodyRepr {
                json: None,
                text: Some(text),
                base64: None,
            } => Ok(Body::from(text.into_bytes())),
            BodyRepr {
                json: None,
                text: None,
                base64: Some(encoded),
            } => base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .map(Body::from)
                .map_err(|e| D::Error::custom(format!("body.base64 is not base64: {e}"))),
            _ => Err(D::Error::custom(
                "a body is {\"json\": …}, {\"text\": …} or {\"base64\": …}, exactly one of them",
            )),
        }
    }
}

impl RecordedRequest {
    /// A request from its parts; `target` is the path with its query as on the wire.
    /// Secret headers are redacted ([`redact_headers`]).
    pub fn new(method: &str, target: &str, headers: &HeaderMap, body: impl Into<Body>) -> Self {
        let (path, query) = split_target(target);
        RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers: redact_headers(headers),
            body: body.into(),
        }
    }

    /// The path with its query, as on the wire.
    pub fn target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

impl RecordedResponse {
    /// A response from its parts; secret headers (Set-Cookie…) are redacted.
    pub fn new(status: u16, headers: &HeaderMap, body: impl Into<Body>) -> Self {
        RecordedResponse {
            status,
            headers: redact_headers(headers),
            body: body.into(),
        }
    }
}

/// A request target's path and its raw query (after the first `?`), as recorded.
fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Findings as the record holds them.
pub fn findings_json(findings: &[Finding]) -> Vec<Value> {
    findings
        .iter()
        .filter_map(|f| serde_json::to_value(f).ok())
        .collect()
}

impl Record {
    /// Bytes this record holds, roughly, for the queue's byte budget.
    fn approximate_size(&self) -> usize {
        let request = |r: &RecordedRequest| {
            r.body.as_bytes().len()
                + r.path.len()
                + r.query.as_ref().map_or(0, String::len)
                + r.headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len())
                    .sum::<usize>()
        };
        RECORD_OVERHEAD
            + request(&self.request)
            + self.forwarded.iter().map(request).sum::<usize>()
            + self.response.as_ref().map_or(0, |r| {
                r.body.as_bytes().len()
                    + r.headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len())
                        .sum::<usize>()
            })
            + self.findings.len() * RECORD_OVERHEAD
    }
}

/// The request as received, held for its record without copying: its header map and
/// body share the proxy's buffers, and its secrets are redacted as the line is written
/// (a [`RecordedRequest`] copies every header into two `String`s up front).
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: http::Method,
    /// The path with its query, as on the wire.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Body,
}

impl ReceivedRequest {
    /// As a record holds it: secret headers redacted ([`RecordedRequest::new`]).
    pub fn to_recorded(&self) -> RecordedRequest {
        RecordedRequest::new(
            self.method.as_str(),
            &self.target,
            &self.headers,
            self.body.clone(),
        )
    }
}

/// A finished exchange as the pipeline holds it, for [`Recorder::record_exchange`]: the
/// same fields as a [`Record`], borrowed where the pipeline keeps them.
pub struct ExchangeRecord<'a> {
    pub id: &'a str,
    pub time: &'a str,
    pub tenant: Option<&'a str>,
    pub operation: &'a str,
    pub mode: &'a str,
    pub verdict: &'a str,
    pub request: ReceivedRequest,
    pub forwarded: Vec<RecordedRequest>,
    /// Status, headers and body of the response the client got.
    pub response: Option<(u16, &'a HeaderMap, Body)>,
    pub findings: &'a [Finding],
    pub error: Option<&'a str>,
    pub timings: Timings,
}

impl ExchangeRecord<'_> {
    /// The [`Record`] this exchange is: what the full path sanitizes and writes.
    pub fn to_record(&self) -> Record {
        Record {
            version: RECORD_VERSION,
            id: self.id.to_owned(),
            time: self.time.to_owned(),
            tenant: self.tenant.map(str::to_owned),
            operation: self.operation.to_owned(),
            mode: self.mode.to_owned(),
            verdict: self.verdict.to_owned(),
            request: self.request.to_recorded(),
            forwarded: self.forwarded.clone(),
            response: self.response.as_ref().map(|(status, headers, body)| {
                RecordedResponse::new(*status, headers, body.clone())
            }),
            findings: findings_json(self.findings),
            error: self.error.map(str::to_owned),
            timings: self.timings,
        }
    }

    /// The line [`write_line`] writes for this exchange's sanitized [`Record`], byte
    /// for byte, written without building the record, when header redaction is all the
    /// sanitizing it needs: no PII hashing, nothing forwarded in its place, and no
    /// query or body that could carry a secret. `None`: take the full path.
    fn fast_line(&self, key: Option<&hmac::Key>) -> Option<Vec<u8>> {
        if key.is_some() || !self.forwarded.is_empty() {
            return None;
        }
        let (path, query) = split_target(&self.request.target);
        // The full path rewrites the query through the sanitizer whatever it finds, so
        // this writes its output too; a secret found there asks for the free-text pass.
        let mut sanitizer = Sanitizer::new(None);
        let query = query.map(|q| sanitizer.query(q));
        let response_body = self.response.as_ref().map(|(_, _, body)| body);
        let bodies_clean = std::iter::once(&self.request.body)
            .chain(response_body)
            .all(|body| !may_name_a_secret(body.as_bytes()));
        if !sanitizer.replaced.is_empty() || !bodies_clean {
            return None;
        }
        let response_len = response_body.map_or(0, |b| b.as_bytes().len());
        let mut out = Vec::with_capacity(
            RECORD_OVERHEAD * 2 + self.request.body.as_bytes().len() + response_len,
        );
        let written = (|| {
            write_head(
                &mut out,
                &Head {
                    version: RECORD_VERSION,
                    id: self.id,
                    time: self.time,
                    tenant: self.tenant,
                    operation: self.operation,
                    mode: self.mode,
                    verdict: self.verdict,
                },
            )?;
            write_request_fields(
                &mut out,
                self.request.method.as_str(),
                path,
                query.as_deref(),
                HeaderSource::Map(&self.request.headers),
                &self.request.body,
            )?;
            out.extend_from_slice(b",\"forwarded\":[],\"response\":");
            match &self.response {
                Some((status, headers, body)) => {
                    write_response_fields(&mut out, *status, HeaderSource::Map(headers), body)?
                }
                None => out.extend_from_slice(b"null"),
            }
            write_tail(
                &mut out,
                &findings_json(self.findings),
                self.error,
                &self.timings,
            )
        })();
        written.ok().map(|()| out)
    }
}

// ---------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------

/// `t` as RFC 3339 in UTC with microseconds: `2024-05-01T12:34:56.123456Z`. Times
/// before 1970 are written as the epoch (a clock that wrong has bigger problems).
pub fn rfc3339(t: SystemTime) -> String {
    let text = Rfc3339Micros::of(t);
    text.as_str().to_owned()
}

/// [`rfc3339`]'s 27 bytes on the stack: the log line writes one per request.
pub struct Rfc3339Micros([u8; 27]);

impl Rfc3339Micros {
    pub fn of(t: SystemTime) -> Self {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        // Digits written by hand: `format!` with seven padded fields cost 2.8k
        // instructions a record (callgrind), this a tenth of that. The log line uses it
        // too, for one date routine: it costs what humantime's `Display` did there.
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: u64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year.clamp(0, 9999) as u64);
        put(5, 2, u64::from(month));
        put(8, 2, u64::from(day));
        put(11, 2, rem / 3600);
        put(14, 2, rem % 3600 / 60);
        put(17, 2, rem % 60);
        put(20, 6, u64::from(since.subsec_micros()));
        Rfc3339Micros(out)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators went in.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// The wall-clock time at which `started` was taken, as [`rfc3339`]: for
/// `Exchange::started`, which is monotonic.
pub fn rfc3339_since(started: std::time::Instant) -> String {
    let now = SystemTime::now();
    rfc3339(now.checked_sub(started.elapsed()).unwrap_or(now))
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`: eras of 400 years = 146 097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------
// The written line
// ---------------------------------------------------------------------------------

/// Writes `record` as one JSON line's text (without the newline), byte for byte what
/// `serde_json::to_vec(record)` writes. serde_json escapes every string through a
/// per-byte table, field names included: 56 strings cost 10k instructions a record
/// (callgrind, a recorded GET /Users/{id}); here field names are literals and a string
/// with nothing to escape, nearly all of them, is one scan and one copy.
pub fn write_line(record: &Record, out: &mut Vec<u8>) -> serde_json::Result<()> {
    write_head(
        out,
        &Head {
            version: record.version,
            id: &record.id,
            time: &record.time,
            tenant: record.tenant.as_deref(),
            operation: &record.operation,
            mode: &record.mode,
            verdict: &record.verdict,
        },
    )?;
    write_request(out, &record.request)?;
    out.extend_from_slice(b",\"forwarded\":[");
    for (i, request) in record.forwarded.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_request(out, request)?;
    }
    out.extend_from_slice(b"],\"response\":");
    match &record.response {
        Some(response) => write_response_fields(
            out,
            response.status,
            HeaderSource::Pairs(&response.headers),
            &response.body,
        )?,
        None => out.extend_from_slice(b"null"),
    }
    write_tail(
        out,
        &record.findings,
        record.error.as_deref(),
        &record.timings,
    )
}

/// A record's fields before its request.
struct Head<'a> {
    version: u32,
    id: &'a str,
    time: &'a str,
    tenant: Option<&'a str>,
    operation: &'a str,
    mode: &'a str,
    verdict: &'a str,
}

/// The line up to the request's value: `{"version":…,…,"request":`.
fn write_head(out: &mut Vec<u8>, head: &Head<'_>) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"version\":");
    write_u64(out, u64::from(head.version));
    let fields: [(&[u8], Option<&str>); 6] = [
        (b",\"id\":", Some(head.id)),
        (b",\"time\":", Some(head.time)),
        (b",\"tenant\":", head.tenant),
        (b",\"operation\":", Some(head.operation)),
        (b",\"mode\":", Some(head.mode)),
        (b",\"verdict\":", Some(head.verdict)),
    ];
    for (name, value) in fields {
        out.extend_from_slice(name);
        write_opt_str(out, value)?;
    }
    out.extend_from_slice(b",\"request\":");
    Ok(())
}

/// The line from the findings on: `,"findings":…}` (no newline).
fn write_tail(
    out: &mut Vec<u8>,
    findings: &[Value],
    error: Option<&str>,
    timings: &Timings,
) -> serde_json::Result<()> {
    out.extend_from_slice(b",\"findings\":");
    // Findings are rare and nested: serde_json writes them.
    serde_json::to_writer(&mut *out, findings)?;
    out.extend_from_slice(b",\"error\":");
    write_opt_str(out, error)?;
    out.extend_from_slice(b",\"timings\":{\"total_us\":");
    write_u64(out, timings.total_us);
    out.extend_from_slice(b",\"upstream_us\":");
    write_opt_u64(out, timings.upstream_us);
    out.extend_from_slice(b",\"throttle_us\":");
    write_opt_u64(out, timings.throttle_us);
    out.extend_from_slice(b"}}");
    Ok(())
}

fn write_request(out: &mut Vec<u8>, request: &RecordedRequest) -> serde_json::Result<()> {
    write_request_fields(
        out,
        &request.method,
        &request.path,
        request.query.as_deref(),
        HeaderSource::Pairs(&request.headers),
        &request.body,
    )
}

fn write_request_fields(
    out: &mut Vec<u8>,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: HeaderSource<'_>,
    body: &Body,
) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"method\":");
    write_str(out, method)?;
    out.extend_from_slice(b",\"path\":");
    write_str(out, path)?;
    out.extend_from_slice(b",\"query\":");
    write_opt_str(out, query)?;
    write_message_end(out, headers, body)
}

fn write_response_fields(
    out: &mut Vec<u8>,
    status: u16,
    headers: HeaderSource<'_>,
    body: &Body,
) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"status\":");
    write_u64(out, u64::from(status));
    write_message_end(out, headers, body)
}

/// A request's or response's last fields: `,"headers":[…],"body":{…}}`.
fn write_message_end(
    out: &mut Vec<u8>,
    headers: HeaderSource<'_>,
    body: &Body,
) -> serde_json::Result<()> {
    out.extend_from_slice(b",\"headers\":");
    headers.write(out)?;
    out.extend_from_slice(b",\"body\":");
    write_body(out, body)?;
    out.push(b'}');
    Ok(())
}

/// Where a written record's headers come from: a record's redacted pairs, or the
/// proxy's own header map, redacted as it is written ([`write_header_map`]).
enum HeaderSource<'a> {
    Pairs(&'a [(String, String)]),
    Map(&'a HeaderMap),
}

impl HeaderSource<'_> {
    fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            HeaderSource::Pairs(pairs) => write_headers(out, pairs),
            HeaderSource::Map(map) => write_header_map(out, map),
        }
    }
}

/// A body as `Body` serializes itself, without the `RawValue` parse serde needs to
/// embed JSON.
fn write_body(out: &mut Vec<u8>, body: &Body) -> serde_json::Result<()> {
    match body.form() {
        BodyForm::Json(bytes) => {
            out.extend_from_slice(b"{\"json\":");
            out.extend_from_slice(bytes);
            out.push(b'}');
        }
        BodyForm::Text(text) => {
            out.extend_from_slice(b"{\"text\":");
            write_str(out, text)?;
            out.push(b'}');
        }
        BodyForm::Base64 => serde_json::to_writer(&mut *out, body)?,
    }
    Ok(())
}

fn write_headers(out: &mut Vec<u8>, headers: &[(String, String)]) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, (name, value)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        write_str(out, name)?;
        out.push(b',');
        write_str(out, value)?;
        out.push(b']');
    }
    out.push(b']');
    Ok(())
}

/// `headers` as [`write_headers`] writes [`redact_headers`]`(headers)`, byte for byte,
/// without building the pairs: two `String`s a header and a second redaction pass cost
/// about 7k instructions a recorded CreateUser (callgrind). A header name is a lowercase
/// token (RFC 9110 §5.6.2: no `"`, `\\` or control byte), so it is copied as it is.
fn write_header_map(out: &mut Vec<u8>, headers: &HeaderMap) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, (name, value)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"[\"");
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b"\",");
        let bytes = value.as_bytes();
        let secret = is_secret_name(name.as_str());
        if !secret && !has_special_byte(bytes, true) {
            // Plain ASCII with nothing to escape: what `write_str` would write.
            out.push(b'"');
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\"]");
            continue;
        }
        let text = header_text(bytes);
        if secret {
            write_str(out, &redacted_header_value(name.as_str(), &text))?;
        } else {
            write_str(out, &text)?;
        }
        out.push(b']');
    }
    out.push(b']');
    Ok(())
}

/// A JSON string. serde_json escapes `"`, `\\` and the bytes below 0x20, nothing else;
/// a string without them is copied as it is, any other is left to serde_json.
fn write_str(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    if needs_escape(text.as_bytes()) {
        serde_json::to_writer(&mut *out, text)
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    }
}

/// Whether `bytes` hold a `"`, a `\\` or a byte below 0x20. Eight bytes at a time
/// (the classic SWAR zero-byte tests): a byte-wise scan cost 5 instructions a byte, 4k
/// a recorded exchange (callgrind).
fn needs_escape(bytes: &[u8]) -> bool {
    has_special_byte(bytes, false)
}

/// [`needs_escape`], or (with `non_ascii`) a byte above 0x7F too: a header value
/// without any is written as it is, with no UTF-8 check (`from_utf8` cost about 100
/// instructions a header, 1.4k a recorded CreateUser, callgrind).
fn has_special_byte(bytes: &[u8], non_ascii: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero: its high bit survives `(x - 1) & !x`.
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    // A byte of `x` is below 0x20 (for bytes below 0x80; higher ones never borrow).
    let has_below_space = |x: u64| x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
    let special = |x: u64| {
        has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
            || has_below_space(x)
            || (non_ascii && x & HIGHS != 0)
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if special(u64::from_le_bytes(word)) {
            return true;
        }
    }
    // The tail as one more word, padded with spaces (nothing to escape): a byte loop
    // cost most of a short string's check, and header values and names are short.
    let rest = chunks.remainder();
    let mut word = [b' '; 8];
    word[..rest.len()].copy_from_slice(rest);
    special(u64::from_le_bytes(word))
}

fn write_opt_str(out: &mut Vec<u8>, text: Option<&str>) -> serde_json::Result<()> {
    match text {
        Some(text) => write_str(out, text),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(crate::logging::decimal(n, &mut digits).as_bytes());
}

fn write_opt_u64(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => write_u64(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

// ---------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------

/// Whether a header or query parameter name carries a secret.
fn is_secret_name(name: &str) -> bool {
    // Checked for every header and query parameter of every record, headers twice
    // (when the record is built and by the writer's safety net). Comparing the parts
    // at each offset cost about 730 instructions a header, 14.7k a proxied CreateUser
    // (callgrind): the parts start with a, c, p, s and t, which most header names are
    // full of. One pass of a case-insensitive DFA over the name costs a few per byte.
    static PARTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(AhoCorasickKind::DFA))
            .build(SECRET_NAME_PARTS)
            .expect("ten short literal patterns build a DFA")
    });
    !is_common_plain_header(name) && PARTS.is_match(name)
}

/// Headers nearly every exchange carries, none of which names a secret (a test checks
/// each against [`SECRET_NAME_PARTS`]). Comparing with them first costs a few dozen
/// instructions; the DFA's search set-up alone cost 5.8k instructions a recorded CreateUser, about 22 header
/// names at 265 each (callgrind).
const COMMON_PLAIN_HEADERS: [&str; 17] = [
    "accept",
    "accept-encoding",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "date",
    "etag",
    "host",
    "location",
    "server",
    "user-agent",
    "vary",
    // AWS answers every request with it.
    "x-amzn-requestid",
    "x-scimguard-request-id",
    "x-scimguard-rules",
    "x-scimguard-verdict",
];

fn is_common_plain_header(name: &str) -> bool {
    // A slice compare checks the length first: most entries cost two instructions.
    COMMON_PLAIN_HEADERS.contains(&name)
}

/// A secret header's recorded value. Authorization keeps its scheme (`Bearer
/// [REDACTED]`): which scheme the IdP used matters when debugging, the credential never.
fn redacted_header_value(name: &str, value: &str) -> String {
    if name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization")
    {
        if let Some((scheme, _)) = value.trim_start().split_once(' ') {
            // RFC 9110 §11.1: the scheme is a token; 20 characters covers every
            // registered one and keeps a credential without a scheme from leaking.
            if !scheme.is_empty()
                && scheme.len() <= 20
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                // Pushed, not `format!`ed: 750 instructions less a header (callgrind).
                let mut redacted = String::with_capacity(scheme.len() + 1 + REDACTED.len());
                redacted.push_str(scheme);
                redacted.push(' ');
                redacted.push_str(REDACTED);
                return redacted;
            }
        }
    }
    REDACTED.to_owned()
}

/// Headers as recorded: names lowercase, values as text (invalid UTF-8 replaced), and
/// every secret header's value redacted (see the module table).
pub fn redact_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = header_text(value.as_bytes());
            let value = if is_secret_name(name.as_str()) {
                redacted_header_value(name.as_str(), &value)
            } else {
                value.into_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// A header value as recorded text: invalid UTF-8 (obs-text) replaced. `from_utf8`
/// checks ASCII a word at a time; `from_utf8_lossy` walks chunks (1.7k instructions a
/// recorded exchange, callgrind).
fn header_text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Redacts a list of recorded headers in place (the writer's safety net: whatever the
/// caller built, no secret header reaches the file).
fn redact_header_pairs(headers: &mut [(String, String)]) {
    for (name, value) in headers.iter_mut() {
        if is_secret_name(name) {
            *value = redacted_header_value(name, value);
        }
    }
}

/// `sha256:` and the first 16 hex digits (64 bits) of HMAC-SHA-256(salt, value):
/// collisions within one capture are negligible (2^32 values for an even chance).
pub fn pii_hash(value: &str, salt: &[u8]) -> String {
    hash_with(&hmac::Key::new(hmac::HMAC_SHA256, salt), value)
}

fn hash_with(key: &hmac::Key, value: &str) -> String {
    let tag = hmac::sign(key, value.as_bytes());
    let mut out = String::with_capacity(23);
    out.push_str("sha256:");
    for byte in &tag.as_ref()[..8] {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Replaces PII in a JSON value (a SCIM resource, a PATCH request, a list response, a
/// search request) with per-value hashes keyed by `salt`, and every `password` with
/// [`REDACTED`]. See [`PII_ATTRIBUTES`] and [`PII_MULTI_VALUED`].
pub fn redact_pii(value: &mut Value, salt: &[u8]) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let mut sanitizer = Sanitizer::new(Some(&key));
    sanitizer.walk(value);
}

/// A SCIM filter with the values compared to PII attributes hashed:
/// `userName eq "bjensen"` → `userName eq "sha256:…"`; `emails[type eq "work" and
/// value co "@example.com"]` hashes the value and keeps the type.
pub fn redact_filter(filter: &str, salt: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    Sanitizer::new(Some(&key)).filter(filter)
}

/// Redacts one record in place, as the writer does before writing it: secrets always;
/// PII too when `pii_salt` is given. Bodies are re-serialized only when something in
/// them changed (compactly, keys sorted); a body that is not JSON is replaced whole
/// under PII redaction (`[REDACTED: N bytes, not JSON]`), since nothing in it can be
/// told apart.
pub fn sanitize(record: &mut Record, pii_salt: Option<&[u8]>) {
    let key = pii_salt.map(|salt| hmac::Key::new(hmac::HMAC_SHA256, salt));
    sanitize_with(record, key.as_ref());
}

fn sanitize_with(record: &mut Record, key: Option<&hmac::Key>) {
    let mut s = Sanitizer::new(key);
    let mut bodies: Vec<&mut Body> = Vec::new();
    for request in std::iter::once(&mut record.request).chain(record.forwarded.iter_mut()) {
        redact_header_pairs(&mut request.headers);
        if let Some(query) = &request.query {
            let redacted = s.query(query);
            request.query = Some(redacted);
        }
        bodies.push(&mut request.body);
    }
    if let Some(response) = &mut record.response {
        redact_header_pairs(&mut response.headers);
        bodies.push(&mut response.body);
    }
    // First every structural redaction, so that the free-text pass knows every value
    // found in any part (a response's `detail` may quote the request's userName).
    // Each parsed body carries whether its walk changed it.
    let mut parsed: Vec<Option<(Value, bool)>> = Vec::with_capacity(bodies.len());
    // Without PII hashing the only structural redaction is of `password` (attribute,
    // PATCH path or filter): when no body can spell it and nothing secret was found
    // yet, parsing every body (two JSON trees per exchange, the writer's main cost)
    // would change nothing, so the bodies are kept as they are.
    let nothing_to_find = key.is_none()
        && s.replaced.is_empty()
        && bodies.iter().all(|b| !may_name_a_secret(b.as_bytes()));
    for body in bodies.iter_mut() {
        if nothing_to_find || body.as_bytes().iter().all(u8::is_ascii_whitespace) {
            parsed.push(None);
            continue;
        }
        match serde_json::from_slice::<Value>(body.as_bytes()) {
            Ok(mut value) => {
                s.take_changes();
                s.walk(&mut value);
                let changed = s.take_changes();
                parsed.push(Some((value, changed)));
            }
            Err(_) => {
                if key.is_some() {
                    let placeholder =
                        format!("[REDACTED: {} bytes, not JSON]", body.as_bytes().len());
                    **body = Body::from(placeholder.into_bytes());
                }
                parsed.push(None);
            }
        }
    }
    let substitutions = s.substitutions();
    for (body, value) in bodies.into_iter().zip(parsed) {
        if let Some((mut value, mut changed)) = value {
            if let Some(subs) = &substitutions {
                let mut replaced = 0;
                subs.json(&mut value, &mut replaced);
                changed |= replaced > 0;
            }
            if changed {
                if let Ok(bytes) = serde_json::to_vec(&value) {
                    *body = Body::from(bytes);
                }
            }
        }
    }
    if let Some(subs) = &substitutions {
        let mut replaced = 0;
        for finding in &mut record.findings {
            subs.json(finding, &mut replaced);
        }
        if let Some(error) = &mut record.error {
            if let Some(replaced) = subs.text(error) {
                *error = replaced;
            }
        }
        for request in std::iter::once(&mut record.request).chain(record.forwarded.iter_mut()) {
            if let Some(query) = &mut request.query {
                if let Some(replaced) = subs.text(query) {
                    *query = replaced;
                }
            }
        }
    }
}

/// What an attribute name (or a PATCH path) says its value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Secret,
    /// Every string in it is PII.
    Whole,
    /// A multi-valued attribute: its elements' `value` and `display` are PII.
    Multi,
    /// A filter expression (`.search` bodies).
    Filter,
    Other,
}

/// Whether a body could hold a `password` attribute, path or filter: the word in any
/// case, or a `\u` escape, which could spell it without its letters.
///
/// memchr finds the candidates: comparing every 8-byte window took about 30
/// instructions a byte, a quarter of the writer's time on 2.5 KB exchanges.
fn may_name_a_secret(body: &[u8]) -> bool {
    // Anchored on the `w` of `password`: a SCIM user has 5 of those against 27 `p`s,
    // each a stop of the vectorized search (4.1k instructions a recorded CreateUser
    // on the `p`, callgrind). The same pass stops at every backslash for a `\u`
    // escape, which could spell the word without its letters: a second search for it
    // cost 0.8k more.
    memchr::memchr3_iter(b'w', b'W', b'\\', body).any(|at| {
        if body[at] == b'\\' {
            return body.get(at + 1) == Some(&b'u');
        }
        at.checked_sub(4)
            .and_then(|start| body.get(start..start + 8))
            .is_some_and(|word| word.eq_ignore_ascii_case(b"password"))
    })
}

fn is_one_of(name: &str, list: &[&str]) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The attribute name of a key: the part after a schema URN's last `:`.
fn attribute_name(key: &str) -> &str {
    key.rsplit(':').next().unwrap_or(key)
}

fn classify_key(key: &str) -> Class {
    let name = attribute_name(key);
    if name.eq_ignore_ascii_case("password") {
        Class::Secret
    } else if is_one_of(name, &PII_ATTRIBUTES) {
        Class::Whole
    } else if is_one_of(name, &PII_MULTI_VALUED) {
        Class::Multi
    } else if name.eq_ignore_ascii_case("filter") {
        Class::Filter
    } else {
        Class::Other
    }
}

/// What `root[.sub]` (a PATCH path or a filter's attribute) names.
fn classify_path(root: &str, sub: Option<&str>) -> Class {
    if root.eq_ignore_ascii_case("password") {
        return Class::Secret;
    }
    if sub.is_some_and(|s| s.eq_ignore_ascii_case("type") || s.eq_ignore_ascii_case("primary")) {
        return Class::Other;
    }
    if is_one_of(root, &PII_ATTRIBUTES) || sub.is_some_and(|s| is_one_of(s, &PII_ATTRIBUTES)) {
        return Class::Whole;
    }
    if is_one_of(root, &PII_MULTI_VALUED) {
        return match sub {
            None => Class::Multi,
            Some(s) if s.eq_ignore_ascii_case("value") || s.eq_ignore_ascii_case("display") => {
                Class::Whole
            }
            Some(_) => Class::Other,
        };
    }
    Class::Other
}

/// A PATCH path's root attribute and sub-attribute: `emails[type eq "work"].value` →
/// (`emails`, `value`); `urn:…:2.0:User:manager.displayName` → (`manager`,
/// `displayName`).
fn split_patch_path(path: &str) -> (&str, Option<&str>) {
    let bracket = path.find('[');
    let head = &path[..bracket.unwrap_or(path.len())];
    let head = attribute_name(head.trim());
    let (root, mut sub) = match head.split_once('.') {
        Some((root, sub)) => (root, Some(sub)),
        None => (head, None),
    };
    if bracket.is_some() {
        if let Some(close) = path.rfind(']') {
            let after = path[close + 1..].trim_start_matches('.');
            sub = (!after.is_empty()).then_some(after);
        }
    }
    (root, sub)
}

/// A key of `map` equal to `name` ignoring case (SCIM attribute names are
/// case-insensitive, RFC 7643 §2.1).
fn key_ci(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// One record's redaction: the key for PII (none: secrets only) and every value
/// replaced so far, for the free-text pass.
struct Sanitizer<'k> {
    key: Option<&'k hmac::Key>,
    /// (original, replacement), originals of at least [`MIN_SUBSTITUTION_LEN`] chars.
    replaced: Vec<(String, String)>,
    /// Replacements made since the last [`Sanitizer::take_changes`].
    changes: usize,
}

/// The free-text pass: every recorded original, leftmost-longest, in one linear scan.
struct Substitutions {
    matcher: AhoCorasick,
    replacements: Vec<String>,
}

impl Substitutions {
    fn text(&self, text: &str) -> Option<String> {
        if !self.matcher.is_match(text) {
            return None;
        }
        Some(self.matcher.replace_all(text, &self.replacements))
    }

    fn json(&self, value: &mut Value, changes: &mut usize) {
        match value {
            Value::String(s) => {
                if let Some(replaced) = self.text(s) {
                    *s = replaced;
                    *changes += 1;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v, changes)),
            Value::Object(map) => map.values_mut().for_each(|v| self.json(v, changes)),
            _ => {}
        }
    }
}

impl<'k> Sanitizer<'k> {
    fn new(key: Option<&'k hmac::Key>) -> Self {
        Sanitizer {
            key,
            replaced: Vec::new(),
            changes: 0,
        }
    }

    fn take_changes(&mut self) -> bool {
        std::mem::take(&mut self.changes) > 0
    }

    fn remember(&mut self, original: &str, replacement: &str) {
        self.changes += 1;
        if original.chars().count() < MIN_SUBSTITUTION_LEN || original == replacement {
            return;
        }
        let mut add = |o: String| {
            if !self.replaced.iter().any(|(known, _)| *known == o) {
                self.replaced.push((o, replacement.to_owned()));
            }
        };
        // Fixes quote values as JSON text, where `"` and `\` are escaped.
        if let Ok(escaped) = serde_json::to_string(original) {
            let escaped = &escaped[1..escaped.len() - 1];
            if escaped != original {
                add(escaped.to_owned());
            }
        }
        add(original.to_owned());
    }

    fn substitutions(&self) -> Option<Substitutions> {
        if self.replaced.is_empty() {
            return None;
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(self.replaced.iter().map(|(o, _)| o.as_str()))
            .ok()?;
        Some(Substitutions {
            matcher,
            replacements: self.replaced.iter().map(|(_, r)| r.clone()).collect(),
        })
    }

    fn secret(&mut self, original: &str) -> String {
        self.remember(original, REDACTED);
        REDACTED.to_owned()
    }

    /// The hash of a PII value (the value itself without a key: not reached, since
    /// PII paths are only followed with a key).
    fn hash(&mut self, original: &str) -> String {
        match self.key {
            Some(key) => {
                let hash = hash_with(key, original);
                self.remember(original, &hash);
                hash
            }
            None => original.to_owned(),
        }
    }

    fn walk(&mut self, value: &mut Value) {
        match value {
            Value::Object(map) => self.walk_object(map),
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v)),
            _ => {}
        }
    }

    fn walk_object(&mut self, map: &mut Map<String, Value>) {
        // A PATCH operation: its `path` says what its `value` is.
        let op_path = key_ci(map, "op").and_then(|_| {
            let key = key_ci(map, "path")?;
            let path = map.get(&key)?.as_str()?.to_owned();
            Some((key, path))
        });
        let mut handled: Vec<String> = Vec::new();
        if let Some((path_key, path)) = op_path {
            let redacted = self.filter(&path);
            if redacted != path {
                map.insert(path_key.clone(), Value::String(redacted));
            }
            handled.push(path_key);
            let (root, sub) = split_patch_path(&path);
            let class = classify_path(root, sub);
            if let Some(value_key) = key_ci(map, "value") {
                if let Some(value) = map.get_mut(&value_key) {
                    self.apply(class, value);
                }
                handled.push(value_key);
            }
        }
        for (key, value) in map.iter_mut() {
            if !handled.contains(key) {
                self.apply(classify_key(key), value);
            }
        }
    }

    fn apply(&mut self, class: Class, value: &mut Value) {
        match class {
            Class::Secret => self.secret_leaves(value),
            Class::Whole if self.key.is_some() => self.hash_leaves(value),
            Class::Multi if self.key.is_some() => self.hash_multi(value),
            Class::Filter => {
                if let Value::String(filter) = value {
                    let redacted = self.filter(filter);
                    *filter = redacted;
                } else {
                    self.walk(value);
                }
            }
            _ => self.walk(value),
        }
    }

    fn secret_leaves(&mut self, value: &mut Value) {
        match value {
            Value::String(s) => *s = self.secret(s),
            Value::Number(n) => *value = Value::String(self.secret(&n.to_string())),
            Value::Array(items) => items.iter_mut().for_each(|v| self.secret_leaves(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.secret_leaves(v)),
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn hash_leaves(&mut self, value: &mut Value) {
        match value {
            Value::String(s) => *s = self.hash(s),
            Value::Number(n) => *value = Value::String(self.hash(&n.to_string())),
            Value::Array(items) => items.iter_mut().for_each(|v| self.hash_leaves(v)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let name = attribute_name(key);
                    if name.eq_ignore_ascii_case("type") || name.eq_ignore_ascii_case("primary") {
                        continue;
                    }
                    if name.eq_ignore_ascii_case("password") {
                        self.secret_leaves(v);
                    } else {
                        self.hash_leaves(v);
                    }
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn hash_multi(&mut self, value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| self.hash_multi_item(v)),
            Value::Object(_) => self.hash_multi_item(value),
            _ => self.hash_leaves(value),
        }
    }

    fn hash_multi_item(&mut self, item: &mut Value) {
        let Value::Object(map) = item else {
            self.hash_leaves(item);
            return;
        };
        for (key, v) in map.iter_mut() {
            let name = attribute_name(key);
            if name.eq_ignore_ascii_case("value") || name.eq_ignore_ascii_case("display") {
                self.hash_leaves(v);
            } else {
                self.apply(classify_key(key), v);
            }
        }
    }

    /// A filter with the compared values of PII attributes hashed (with a key) and of
    /// `password` redacted (always). Scans for string literals; every delimiter it
    /// slices at is ASCII, so any UTF-8 input is safe.
    fn filter(&mut self, filter: &str) -> String {
        let bytes = filter.as_bytes();
        let mut out = String::with_capacity(filter.len());
        let mut copied = 0;
        let mut parents: Vec<&str> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    let end = literal_end(bytes, i);
                    let attribute = attribute_before(&filter[..i]);
                    let (root, sub) = match parents.last() {
                        Some(parent) => (
                            split_patch_path(parent).0,
                            Some(attribute.split('.').next().unwrap_or(attribute)),
                        ),
                        None => split_patch_path(attribute),
                    };
                    let class = classify_path(root, sub);
                    let literal = &filter[i..end];
                    let value = || {
                        serde_json::from_str::<String>(literal)
                            .unwrap_or_else(|_| literal.trim_matches('"').to_owned())
                    };
                    let replacement = match class {
                        Class::Secret => Some(self.secret(&value())),
                        Class::Whole | Class::Multi if self.key.is_some() => {
                            Some(self.hash(&value()))
                        }
                        _ => None,
                    };
                    if let Some(replacement) = replacement {
                        out.push_str(&filter[copied..i]);
                        out.push('"');
                        out.push_str(&replacement);
                        out.push('"');
                        copied = end;
                    }
                    i = end;
                }
                b'[' => {
                    parents.push(attribute_token(&filter[..i]));
                    i += 1;
                }
                b']' => {
                    parents.pop();
                    i += 1;
                }
                _ => i += 1,
            }
        }
        out.push_str(&filter[copied..]);
        out
    }

    /// A raw query string with secret parameters redacted and, with a key, the PII in
    /// `filter` hashed (re-encoded: `%20` for spaces).
    fn query(&mut self, query: &str) -> String {
        let mut changed = false;
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let Some((raw_name, raw_value)) = pair.split_once('=') else {
                    return pair.to_owned();
                };
                let name = percent_decode(raw_name, true)
                    .map(|n| n.into_owned())
                    .unwrap_or_else(|_| raw_name.to_owned());
                if is_secret_name(&name) {
                    let value = percent_decode(raw_value, true)
                        .map(|v| v.into_owned())
                        .unwrap_or_else(|_| raw_value.to_owned());
                    self.secret(&value);
                    changed = true;
                    return format!("{raw_name}={}", percent_encode(REDACTED));
                }
                if name.eq_ignore_ascii_case("filter") {
                    match percent_decode(raw_value, true) {
                        Ok(value) => {
                            let redacted = self.filter(&value);
                            if redacted != value {
                                changed = true;
                                return format!("{raw_name}={}", percent_encode(&redacted));
                            }
                        }
                        Err(_) if self.key.is_some() => {
                            changed = true;
                            return format!("{raw_name}={}", self.hash(raw_value));
                        }
                        Err(_) => {}
                    }
                }
                pair.to_owned()
            })
            .collect();
        if changed {
            pairs.join("&")
        } else {
            query.to_owned()
        }
    }
}

/// The index just after the string literal starting at `start` (a `"`), or the end of
/// the input when it is unterminated. Backslash escapes skip the next byte.
fn literal_end(bytes: &[u8], start: usize) -> usize {
    let mut j = start + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

fn is_attribute_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '$')
}

/// The attribute path token that ends `prefix`.
fn attribute_token(prefix: &str) -> &str {
    let trimmed = prefix.trim_end();
    let start = trimmed
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_attribute_char(*c))
        .last()
        .map_or(trimmed.len(), |(i, _)| i);
    &trimmed[start..]
}

/// The attribute a filter literal is compared to: `prefix` ends with
/// `attribute SP operator SP`.
fn attribute_before(prefix: &str) -> &str {
    let trimmed = prefix.trim_end();
    let without_op = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    attribute_token(without_op)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// The recorder
// ---------------------------------------------------------------------------------

/// How to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Rotate when the file would grow past this many bytes (`--record-max-bytes`).
    /// A record larger than this gets a file to itself: nothing is dropped for size.
    pub max_bytes: Option<u64>,
    /// Hash PII (`--redact-pii`).
    pub redact_pii: bool,
    /// Channel capacity in records ([`DEFAULT_CHANNEL`]); at least 1.
    pub channel: usize,
    /// The PII hash key; `None`: 32 random bytes, never written anywhere.
    pub pii_salt: Option<Vec<u8>>,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            max_bytes: None,
            redact_pii: false,
            channel: DEFAULT_CHANNEL,
            pii_salt: None,
        }
    }
}

enum Message {
    /// A redacted, serialized record: one JSON line with its `\n`, and the record's id
    /// (to name it if it is dropped after all).
    Line { line: Vec<u8>, id: String },
    /// Acknowledge once everything before is written.
    Flush(oneshot::Sender<()>),
    /// Write everything before, sync, acknowledge and stop.
    Close(oneshot::Sender<()>),
}

struct Shared {
    path: PathBuf,
    /// The PII hash key (`--redact-pii`).
    key: Option<hmac::Key>,
    dropped: AtomicU64,
    queued_bytes: AtomicUsize,
    queue_bytes_limit: usize,
}

impl Shared {
    /// Counts and logs a record that will never reach the file.
    fn drop_record(&self, id: &str, reason: &str) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            target: "scimguard::record",
            id,
            dropped_total = total,
            file = %self.path.display(),
            "record dropped: {reason}"
        );
    }
}

/// The handle the pipeline records through: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    finished: watch::Receiver<bool>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.shared.path)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Recorder {
    /// Creates (or appends to) `path` with mode 0600 and starts the writer thread. Needs
    /// no runtime; [`Recorder::close`] and [`Recorder::flush`] are async.
    pub fn open(path: &Path, options: RecordOptions) -> io::Result<Recorder> {
        Self::start(path, options, QUEUE_BYTES_LIMIT, None)
    }

    /// `gate`: the writer waits for it before taking anything (tests fill the channel).
    fn start(
        path: &Path,
        options: RecordOptions,
        queue_bytes_limit: usize,
        gate: Option<std::sync::mpsc::Receiver<()>>,
    ) -> io::Result<Recorder> {
        let file = open_private(path)?;
        let size = file.metadata()?.len();
        let key = options.redact_pii.then(|| {
            let salt = options
                .pii_salt
                .clone()
                .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
            hmac::Key::new(hmac::HMAC_SHA256, &salt)
        });
        let (tx, rx) = mpsc::channel(options.channel.max(1));
        let (done_tx, done_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            key,
            dropped: AtomicU64::new(0),
            queued_bytes: AtomicUsize::new(0),
            queue_bytes_limit,
        });
        let writer = Writer {
            path: path.to_owned(),
            file,
            size,
            max_bytes: options.max_bytes,
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("scimguard-record".into())
            .spawn(move || {
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                writer.run(rx);
                done_tx.send_replace(true);
            })?;
        Ok(Recorder {
            tx,
            shared,
            finished: done_rx,
        })
    }

    /// Queues a record for the writer; never waits. A full channel (or a queue over
    /// 64 MiB, or a closed recorder) drops it: counted in [`Recorder::dropped`] and
    /// logged as a warning with its id and the total.
    ///
    /// The record is redacted and serialized here, on the caller's thread, while its
    /// bodies are still in this core's cache; the writer thread only writes finished
    /// lines. Serializing on the writer cost more than the work itself: the writer woke
    /// every 5 ms to a batch of about 75 records the proxy had long stopped touching, and
    /// freed their 30-odd allocations each from the wrong thread.
    pub fn record(&self, mut record: Record) {
        sanitize_with(&mut record, self.shared.key.as_ref());
        let mut line = Vec::with_capacity(record.approximate_size());
        if let Err(e) = write_line(&record, &mut line) {
            self.shared
                .drop_record(&record.id, &format!("cannot serialize it: {e}"));
            return;
        }
        self.enqueue(line, record.id);
    }

    /// Records a finished exchange as [`Recorder::record`] records its [`Record`],
    /// with the same line: written straight from the pipeline's header maps and
    /// buffers when header redaction is all it needs, which is nearly always
    /// (`ExchangeRecord::fast_line`); built as a `Record` and sanitized otherwise.
    pub fn record_exchange(&self, exchange: ExchangeRecord<'_>) {
        match exchange.fast_line(self.shared.key.as_ref()) {
            Some(line) => self.enqueue(line, exchange.id.to_owned()),
            None => self.record(exchange.to_record()),
        }
    }

    /// Queues one serialized record (without its newline) for the writer.
    fn enqueue(&self, mut line: Vec<u8>, id: String) {
        line.push(b'\n');
        let size = line.len();
        let queued = self.shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if queued + size > self.shared.queue_bytes_limit && queued > 0 {
            self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.shared
                .drop_record(&id, "the writer is behind by more than 64 MiB");
            return;
        }
        match self.tx.try_send(Message::Line { line, id }) {
            Ok(()) => {}
            Err(error) => {
                self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                let (message, reason) = match error {
                    mpsc::error::TrySendError::Full(m) => (m, "the channel is full"),
                    mpsc::error::TrySendError::Closed(m) => (m, "the recorder is closed"),
                };
                if let Message::Line { id, .. } = message {
                    self.shared.drop_record(&id, reason);
                }
            }
        }
    }

    /// Records dropped so far (full channel, closed recorder, failed writes).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Waits until every record queued before this call is written to the file.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Writes every record queued before this call, syncs the file and stops the
    /// writer; records after it are dropped (and counted). Any clone may call it; the
    /// rest of them see a closed recorder.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Message::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
        self.finished().await;
    }

    /// Resolves when the writer has stopped: after [`Recorder::close`], or once every
    /// clone is dropped and the queue is written. Take it before dropping the last
    /// handle to wait for the tail to reach the file.
    pub fn finished(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut finished = self.finished.clone();
        async move {
            // An error means the writer thread is gone, which is finished too.
            let _ = finished.wait_for(|done| *done).await;
        }
    }
}

/// Opens `path` for appending, creating it with mode 0600, and sets 0600 on a file that
/// existed (a capture holds request bodies; only its owner reads it).
fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// `FILE.n`.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: Option<u64>,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut pending: Vec<u8> = Vec::new();
        let mut closing: Option<oneshot::Sender<()>> = None;
        'receive: while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(message) = next.take() {
                match message {
                    Message::Line { line, .. } => {
                        self.shared
                            .queued_bytes
                            .fetch_sub(line.len(), Ordering::Relaxed);
                        self.add(&mut pending, &line);
                    }
                    Message::Flush(ack) => {
                        self.write(&mut pending);
                        let _ = ack.send(());
                    }
                    Message::Close(ack) => {
                        closing = Some(ack);
                        break 'receive;
                    }
                }
                taken += 1;
                if taken < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.write(&mut pending);
            // Coalesce: while this thread sleeps it is not waiting on the channel, so
            // the proxy's sends wake nobody. Waking it per record cost a context switch
            // each (measured: recording doubled the proxy's CPU per request); now a
            // busy proxy wakes it at most 200 times a second, and a record reaches the
            // file at most 5 ms after its exchange completed (at once on a quiet proxy:
            // the first record of a burst finds the writer waiting). A full batch means
            // more are queued: no sleep then, so the writer keeps up with any rate.
            if taken < WRITE_BATCH {
                std::thread::sleep(WRITE_COALESCE);
            }
        }
        self.write(&mut pending);
        // Whatever was queued after a close will not be written: say so.
        rx.close();
        while let Ok(message) = rx.try_recv() {
            match message {
                Message::Line { line, id } => {
                    self.shared
                        .queued_bytes
                        .fetch_sub(line.len(), Ordering::Relaxed);
                    self.shared.drop_record(&id, "the recorder is closed");
                }
                Message::Flush(ack) | Message::Close(ack) => {
                    let _ = ack.send(());
                }
            }
        }
        if let Err(e) = self.file.sync_data() {
            tracing::warn!(target: "scimguard::record", file = %self.path.display(), "cannot sync the capture: {e}");
        }
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(target: "scimguard::record", file = %self.path.display(), dropped_total = dropped, "recording stopped; {dropped} record(s) were dropped");
        }
        if let Some(ack) = closing {
            let _ = ack.send(());
        }
    }

    /// Appends one line to `pending`, rotating first when the file would grow past
    /// `max_bytes`.
    fn add(&mut self, pending: &mut Vec<u8>, line: &[u8]) {
        if let Some(max) = self.max_bytes {
            let used = self.size + pending.len() as u64;
            if used > 0 && used + line.len() as u64 > max {
                self.write(pending);
                if let Err(e) = self.rotate() {
                    tracing::warn!(target: "scimguard::record", file = %self.path.display(), "cannot rotate the capture, writing on: {e}");
                }
            }
        }
        pending.extend_from_slice(line);
    }

    /// Hands `pending` to the OS in one call.
    fn write(&mut self, pending: &mut Vec<u8>) {
        if pending.is_empty() {
            return;
        }
        match self.file.write_all(pending) {
            Ok(()) => self.size += pending.len() as u64,
            Err(e) => {
                let lost = pending.iter().filter(|&&b| b == b'\n').count() as u64;
                let total = self.shared.dropped.fetch_add(lost, Ordering::Relaxed) + lost;
                tracing::error!(target: "scimguard::record", file = %self.path.display(), lost, dropped_total = total, "cannot write to the capture: {e}");
            }
        }
        pending.clear();
    }

    /// `FILE.4` → `FILE.5`, …, `FILE` → `FILE.1`, then a new empty `FILE`.
    fn rotate(&mut self) -> io::Result<()> {
        for n in (1..ROTATE_KEEP).rev() {
            match std::fs::rename(rotated_path(&self.path, n), rotated_path(&self.path, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        let _ = self.file.sync_data();
        self.file = open_private(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------

/// A capture that cannot be read, with the line at fault.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
}

/// Reads a capture file: one [`Record`] per line; blank lines are skipped.
pub fn read_capture(path: &Path) -> Result<Vec<Record>, CaptureError> {
    let bytes = std::fs::read(path).map_err(|source| CaptureError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_capture(&bytes, &path.display().to_string())
}

/// Reads a capture with its rotated files, oldest first: `FILE.5` … `FILE.1`, then
/// `FILE`; rotated files that do not exist are skipped.
pub fn read_capture_all(path: &Path) -> Result<Vec<Record>, CaptureError> {
    let mut records = Vec::new();
    for n in (1..=ROTATE_KEEP).rev() {
        let rotated = rotated_path(path, n);
        if rotated.exists() {
            records.extend(read_capture(&rotated)?);
        }
    }
    records.extend(read_capture(path)?);
    Ok(records)
}

/// Parses a capture's bytes; `origin` names it in errors.
pub fn parse_capture(bytes: &[u8], origin: &str) -> Result<Vec<Record>, CaptureError> {
    let mut records = Vec::new();
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let error = |message: String| CaptureError::Line {
            path: origin.to_owned(),
            line: i + 1,
            message,
        };
        let record: Record = serde_json::from_slice(line).map_err(|e| {
            let mut message = json_message(&e);
            if i == last && e.is_eof() {
                message.push_str(
                    " (the last line is incomplete: the recording stopped while writing it). Fix: delete that line",
                );
            }
            error(message)
        })?;
        check_version(record.version).map_err(error)?;
        records.push(record);
    }
    Ok(records)
}

/// A serde_json error's message with its column, without serde_json's "at line 1".
pub(crate) fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text.as_str(),
    };
    format!("{message} (column {})", error.column())
}

#[cfg(test)]
mod skip_tests {
    use super::*;

    #[test]
    fn bodies_that_cannot_name_a_password_are_kept_verbatim_and_others_redacted() {
        let clean = br#"{"userName":"bjensen","name":{"givenName":"B"}}"#;
        let mut record = Record {
            version: RECORD_VERSION,
            id: "1".into(),
            time: String::new(),
            tenant: None,
            operation: "CreateUser".into(),
            mode: "enforce".into(),
            verdict: "forwarded".into(),
            request: RecordedRequest::new("POST", "/Users", &HeaderMap::new(), clean),
            forwarded: Vec::new(),
            response: None,
            findings: Vec::new(),
            error: None,
            timings: Timings::default(),
        };
        sanitize_with(&mut record, None);
        assert_eq!(record.request.body.as_bytes(), clean);

        for secret in [
            &br#"{"userName":"b","Password":"hunter2"}"#[..],
            &br#"{"userName":"b","password":"hunter2"}"#[..],
        ] {
            record.request.body = Body::from(secret);
            sanitize_with(&mut record, None);
            let text = String::from_utf8_lossy(record.request.body.as_bytes()).into_owned();
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};
    use std::time::Duration;

    const TOKEN: &str = "SECRET-TOKEN-3f9a1c";
    const SALT: &[u8] = b"test salt";

    fn headers<N: AsRef<str>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_ref().as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_ref()).unwrap(),
            );
        }
        map
    }

    fn sample(i: usize, body: &[u8], status: u16) -> Record {
        Record {
            version: RECORD_VERSION,
            id: format!("{i:032x}"),
            time: rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64)),
            tenant: Some("t-1".into()),
            operation: "CreateUser".into(),
            mode: "enforce".into(),
            verdict: "forwarded".into(),
            request: RecordedRequest::new(
                "POST",
                "/t-1/scim/v2/Users",
                &headers(&[("content-type", "application/scim+json")]),
                body,
            ),
            forwarded: Vec::new(),
            response: Some(RecordedResponse::new(
                status,
                &headers(&[("content-type", "application/json")]),
                br#"{"id":"u-1"}"#,
            )),
            findings: Vec::new(),
            error: None,
            timings: Timings {
                total_us: 1500 + i as u64,
                upstream_us: Some(1000),
                throttle_us: None,
            },
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    // --- time ---

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::new(951_782_400, 123_456_789)),
            "2000-02-29T00:00:00.123456Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::new(1_735_689_599, 999_999_000)),
            "2024-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(10)),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn log_line_time_is_what_humantime_wrote() {
        // The log line's timestamp replaced humantime's `format_rfc3339_micros`: the
        // same text, byte for byte, over leap days, year ends and sub-second digits.
        let mut secs: u64 = 0;
        while secs < 253_402_300_799 {
            let t = UNIX_EPOCH + Duration::new(secs, (secs % 1_000_000_007) as u32 % 1_000_000_000);
            assert_eq!(
                Rfc3339Micros::of(t).as_str(),
                humantime::format_rfc3339_micros(t).to_string()
            );
            secs += 7_919_993;
        }
    }

    #[test]
    fn rfc3339_since_is_about_now() {
        let started = std::time::Instant::now();
        let before = rfc3339(SystemTime::now() - Duration::from_secs(1));
        let at = rfc3339_since(started);
        let after = rfc3339(SystemTime::now() + Duration::from_secs(1));
        // Same width, so text order is time order.
        assert!(before < at && at < after, "{before} {at} {after}");
    }

    #[test]
    fn rfc3339_agrees_with_httpdate_over_four_centuries() {
        // A differential check: httpdate formats the same instant as IMF-fixdate.
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut secs: u64 = 0;
        while secs < 253_402_300_799 {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let ours = rfc3339(t);
            let theirs = httpdate::fmt_http_date(t);
            // "Sun, 06 Nov 1994 08:49:37 GMT"
            let parts: Vec<&str> = theirs.split(' ').collect();
            let month = MONTHS.iter().position(|m| *m == parts[2]).unwrap() + 1;
            let expected = format!("{}-{month:02}-{}T{}.000000Z", parts[3], parts[1], parts[4]);
            assert_eq!(ours, expected, "at {secs}");
            // A step that is prime to days, hours and leap cycles.
            secs += 86_400 * 97 + 3_607;
        }
    }

    // --- body ---

    #[test]
    fn bodies_are_json_when_they_can_be_text_when_utf8_and_base64_otherwise() {
        let json = Body::from(r#"{"a":"é", "b" :[1, 2.50,{"c":null}]}"#);
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"json":{"a":"é", "b" :[1, 2.50,{"c":null}]}}"#,
            "embedded as received: spacing and number spelling kept"
        );
        let round_trip = |body: &Body| {
            let line = serde_json::to_string(body).unwrap();
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(
                &serde_json::from_str::<Body>(&line).unwrap(),
                body,
                "{line}"
            );
            line
        };
        round_trip(&json);
        // Whatever `json` could not give back exactly is text.
        for text in [
            "{\"a\":1}\n",
            " {\"a\":1}",
            "{\n\"a\": 1\n}",
            "{\"a\":1}{\"b\":2}",
            "{\"a\":}",
            "[1,2",
            "\"just a string\"",
            "42",
            "userName eq \"x\"",
            "{\"a\":\"tab\there\"}",
        ] {
            let line = round_trip(&Body::from(text));
            assert!(line.starts_with(r#"{"text":"#), "{text:?} → {line}");
        }
        // Deeper than the syntax check follows: text, still byte-exact.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let line = round_trip(&Body::from(deep.as_str()));
        assert!(line.starts_with(r#"{"text":"#), "{line}");
        let binary = Body::from(vec![0xff, 0x00, 0x80]);
        let json = serde_json::to_string(&binary).unwrap();
        assert_eq!(json, r#"{"base64":"/wCA"}"#);
        assert_eq!(serde_json::from_str::<Body>(&json).unwrap(), binary);
        assert_eq!(
            serde_json::from_str::<Body>(r#"{"text":""}"#).unwrap(),
            Body::default()
        );
        for bad in [
            r#"{"base64":"%%%"}"#,
            r#"{}"#,
            r#"{"text":"a","base64":"YQ=="}"#,
            r#"{"json":{},"text":"{}"}"#,
            r#"{"text":"a","extra":1}"#,
            r#""plain""#,
        ] {
            assert!(serde_json::from_str::<Body>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn needs_escape_finds_every_byte_that_needs_it_anywhere() {
        let naive = |bytes: &[u8]| bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        for filler in [b'a', 0xff, 0x80, 0x21, 0x20, 0x7f] {
            for len in [1, 7, 8, 9, 16, 17] {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut bytes = vec![filler; len];
                        bytes[at] = b;
                        assert_eq!(needs_escape(&bytes), naive(&bytes), "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn written_lines_of_a_mixed_session_are_serde_jsons() {
        for record in mixed_session() {
            let mut ours = Vec::new();
            write_line(&record, &mut ours).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&record).unwrap()
            );
        }
    }

    #[test]
    fn version_1_records_still_read() {
        let mut line = serde_json::to_value(sample(0, b"{\"a\":1}", 201)).unwrap();
        line["version"] = 1.into();
        line["request"]["body"] = serde_json::json!({"text": "{\"a\":1}"});
        let records = parse_capture(line.to_string().as_bytes(), "v1").unwrap();
        assert_eq!(records[0].request.body.as_bytes(), b"{\"a\":1}");
        line["version"] = (RECORD_VERSION + 1).into();
        let error = parse_capture(line.to_string().as_bytes(), "v3").unwrap_err();
        assert!(error.to_string().contains("not supported"), "{error}");
    }

    // --- secrets ---

    #[test]
    fn secret_headers_are_redacted_and_others_kept() {
        let map = headers::<&str, &str>(&[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("proxy-authorization", &format!("Basic {TOKEN}")),
            ("cookie", &format!("session={TOKEN}")),
            ("set-cookie", &format!("a={TOKEN}; HttpOnly")),
            ("x-amz-security-token", TOKEN),
            ("x-api-key", TOKEN),
            ("x-client-secret", TOKEN),
            ("content-type", "application/scim+json"),
            ("user-agent", "Okta SCIM Client 1.0.0"),
        ]);
        let pairs = redact_headers(&map);
        assert_eq!(
            pairs[0],
            ("authorization".into(), "Bearer [REDACTED]".into())
        );
        assert_eq!(pairs[1].1, "Basic [REDACTED]");
        for (_, value) in &pairs[2..7] {
            assert_eq!(value, REDACTED);
        }
        assert_eq!(pairs[7].1, "application/scim+json");
        assert_eq!(pairs[8].1, "Okta SCIM Client 1.0.0");
        assert!(!format!("{pairs:?}").contains(TOKEN));
        // A credential with no scheme is redacted whole; the function is idempotent.
        assert_eq!(redacted_header_value("Authorization", TOKEN), REDACTED);
        assert_eq!(
            redacted_header_value("authorization", "Bearer [REDACTED]"),
            "Bearer [REDACTED]"
        );
        // Non-UTF-8 values are recorded lossily rather than refused.
        let mut odd = HeaderMap::new();
        odd.insert("x-odd", HeaderValue::from_bytes(b"a\xffb").unwrap());
        assert_eq!(redact_headers(&odd)[0].1, "a\u{fffd}b");
    }

    #[test]
    fn passwords_are_redacted_everywhere_without_pii_mode() {
        let mut record = sample(
            1,
            br#"{"userName":"bjensen","password":"hunter2-secret"}"#,
            201,
        );
        record.findings = vec![serde_json::json!({
            "rule": "user.unsupported-attributes",
            "message": "removed it (\"hunter2-secret\")",
            "fix": {"before": "\"hunter2-secret\"", "after": "(absent)"}
        })];
        record.forwarded.push(RecordedRequest::new(
            "PATCH",
            "/Users/1",
            &HeaderMap::new(),
            br#"{"Operations":[{"op":"replace","path":"password","value":"hunter2-secret"}]}"#,
        ));
        record.request.query = Some(format!("access_token={TOKEN}&count=5"));
        sanitize(&mut record, None);
        let line = serde_json::to_string(&record).unwrap();
        assert!(!line.contains("hunter2-secret"), "{line}");
        assert!(!line.contains(TOKEN), "{line}");
        assert!(line.contains("bjensen"), "no PII redaction asked: {line}");
        assert_eq!(
            record.request.query.as_deref(),
            Some("access_token=%5BREDACTED%5D&count=5")
        );
    }

    // --- PII ---

    fn create_user() -> Value {
        serde_json::from_str(include_str!("../benches/data/create_user.json")).unwrap()
    }

    /// Every PII string of the guide's CreateUser example.
    const PII_VALUES: [&str; 16] = [
        "bjensen",
        "Babs Jensen",
        "Ms. Barbara J Jensen, III",
        "Jensen",
        "Barbara",
        "Jane",
        "Babs",
        "bjensen@example.com",
        "555-555-5555",
        "100 Universal City Plaza",
        "Hollywood",
        "91608",
        "Tour Guide",
        "701984",
        "https://login.example.com/bjensen",
        "100 Universal City Plaza Hollywood, CA 91608 USA",
    ];

    #[test]
    fn redact_pii_hashes_every_personal_value_and_keeps_the_rest() {
        let mut user = create_user();
        redact_pii(&mut user, SALT);
        let text = user.to_string();
        for value in PII_VALUES {
            assert!(!text.contains(value), "{value} left in {text}");
        }
        assert_eq!(user["userName"], pii_hash("bjensen", SALT));
        assert_eq!(user["emails"][0]["type"], "work");
        assert_eq!(user["emails"][0]["primary"], true);
        assert_eq!(user["addresses"][0]["type"], "work");
        assert_eq!(user["active"], true);
        assert_eq!(user["locale"], "en-US");
        assert_eq!(
            user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"],
            "9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734"
        );
        // Stable per salt, different across salts, and of the documented shape.
        let hash = pii_hash("bjensen", SALT);
        assert_eq!(hash, pii_hash("bjensen", SALT));
        assert_ne!(hash, pii_hash("bjensen", b"other salt"));
        assert_eq!(hash.len(), 23);
        assert!(hash.starts_with("sha256:"));
        assert!(hash[7..].bytes().all(|b| b.is_ascii_hexdigit()));
        // The externalId and employeeNumber share a value, hence a hash.
        assert_eq!(
            user["externalId"],
            user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"]
        );
    }

    #[test]
    fn patch_values_are_judged_by_their_path() {
        let mut patch = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "replace", "path": "name.givenName", "value": "Barbara"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "b@example.com"},
                {"op": "add", "path": "emails", "value": [{"value": "c@example.com", "type": "home"}]},
                {"op": "remove", "path": "emails[value eq \"d@example.com\"]"},
                {"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true},
                {"op": "add", "path": "members", "value": [{"value": "g-17", "display": "Jane Doe"}]},
                {"op": "remove", "path": "members[value eq \"g-18\"]"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": 701984},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName", "value": "Boss Person"},
                {"op": "replace", "path": "active", "value": false},
                {"op": "replace", "value": {"displayName": "New Name", "active": true}},
                {"OP": "replace", "PATH": "userName", "VALUE": "upper@example.com"},
                {"op": "replace", "path": "password", "value": "hunter2-secret"}
            ]
        });
        redact_pii(&mut patch, SALT);
        let text = patch.to_string();
        for value in [
            "Barbara",
            "b@example.com",
            "c@example.com",
            "d@example.com",
            "Jane Doe",
            "701984",
            "Boss Person",
            "New Name",
            "upper@example.com",
            "hunter2-secret",
        ] {
            assert!(!text.contains(value), "{value} left in {text}");
        }
        let ops = &patch["Operations"];
        assert_eq!(ops[2]["value"][0]["type"], "home");
        assert_eq!(
            ops[3]["path"],
            format!("emails[value eq \"{}\"]", pii_hash("d@example.com", SALT))
        );
        assert_eq!(ops[4]["value"], true);
        assert_eq!(
            ops[5]["value"][0]["value"], "g-17",
            "group member ids are not PII"
        );
        assert_eq!(ops[6]["path"], "members[value eq \"g-18\"]");
        assert_eq!(ops[9]["value"], false);
        assert_eq!(ops[10]["value"]["active"], true);
        assert_eq!(ops[12]["value"], REDACTED);
    }

    #[test]
    fn filters_hash_pii_values_only() {
        let h = |v: &str| pii_hash(v, SALT);
        let cases = [
            (
                "userName eq \"bjensen\"".to_owned(),
                format!("userName eq \"{}\"", h("bjensen")),
            ),
            (
                "USERNAME Eq \"bjensen\"".to_owned(),
                format!("USERNAME Eq \"{}\"", h("bjensen")),
            ),
            (
                "id eq \"2819c223\"".to_owned(),
                "id eq \"2819c223\"".to_owned(),
            ),
            (
                "emails[type eq \"work\" and value co \"@example.com\"]".to_owned(),
                format!(
                    "emails[type eq \"work\" and value co \"{}\"]",
                    h("@example.com")
                ),
            ),
            (
                "emails.value sw \"b\\\"j\" or meta.lastModified gt \"2011-05-13T04:42:34Z\""
                    .to_owned(),
                format!(
                    "emails.value sw \"{}\" or meta.lastModified gt \"2011-05-13T04:42:34Z\"",
                    h("b\"j")
                ),
            ),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"x\"".to_owned(),
                format!(
                    "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"{}\"",
                    h("x")
                ),
            ),
            (
                "displayName eq \"unterminated".to_owned(),
                format!("displayName eq \"{}\"", h("unterminated")),
            ),
            (
                "members[value eq \"g-1\"]".to_owned(),
                "members[value eq \"g-1\"]".to_owned(),
            ),
            ("userName pr".to_owned(), "userName pr".to_owned()),
            (
                "displayName eq \"Ünïcødé ✓\"".to_owned(),
                format!("displayName eq \"{}\"", h("Ünïcødé ✓")),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_filter(&input, SALT), expected, "{input}");
        }
    }

    #[test]
    fn query_filters_are_decoded_redacted_and_reencoded() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, SALT);
        let mut s = Sanitizer::new(Some(&key));
        let query = "filter=userName+eq+%22bjensen%40example.com%22&startIndex=1&count=10";
        let redacted = s.query(query);
        let expected_filter = format!("userName eq \"{}\"", pii_hash("bjensen@example.com", SALT));
        assert_eq!(
            redacted,
            format!(
                "filter={}&startIndex=1&count=10",
                percent_encode(&expected_filter)
            )
        );
        // Undecodable: hashed whole; nothing to redact: unchanged byte for byte.
        assert!(s.query("filter=%zz").starts_with("filter=sha256:"));
        assert_eq!(
            s.query("filter=id+eq+%22x%22&a&&b="),
            "filter=id+eq+%22x%22&a&&b="
        );
        let mut secrets_only = Sanitizer::new(None);
        assert_eq!(
            secrets_only.query("filter=userName+eq+%22x%22"),
            "filter=userName+eq+%22x%22"
        );
        assert_eq!(
            secrets_only.query("X-Amz-Signature=abc&x=1"),
            "X-Amz-Signature=%5BREDACTED%5D&x=1"
        );
    }

    #[test]
    fn common_plain_headers_are_plain_to_the_dfa_too() {
        for name in COMMON_PLAIN_HEADERS {
            assert!(is_common_plain_header(name), "{name}");
            assert!(
                !SECRET_NAME_PARTS
                    .iter()
                    .any(|part| name.to_ascii_lowercase().contains(part)),
                "{name} names a secret"
            );
        }
        // Only exact lowercase names are skipped.
        for name in [
            "authorization",
            "cookie",
            "x-api-key",
            "accepts",
            "hosts",
            "Host",
        ] {
            assert!(!is_common_plain_header(name), "{name}");
        }
    }

    #[test]
    fn secret_names_are_found_in_any_case_and_place() {
        for name in [
            "authorization",
            "Proxy-Authorization",
            "x-amz-security-token",
            "COOKIE",
            "set-cookie",
            "x-api-key",
            "X-Api_Key",
            "apikey",
            "client_secret",
            "x-amz-signature",
            "password",
            "aws-credential",
            "auth",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "content-type",
            "accept",
            "user-agent",
            "x-amzn-requestid",
            "a",
            "",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn a_body_that_may_name_a_secret_is_told_apart() {
        for (body, may) in [
            (&br#"{"userName":"bjensen","pw":"x"}"#[..], false),
            (br#"{"PassWord":"x"}"#, true),
            (br#"{"p":"passwor"}"#, false),
            (br#"{"x":"ppassword"}"#, true),
            (br#"{"p\u0061ssword":"x"}"#, true),
            (b"password", true),
            (b"PASSWORD", true),
            (b"xx\"paSSwoRd", true),
            (b"assword", false),
            (b"passwor", false),
            (b"pass word", false),
            (b"wwwwpasswordwww", true),
            (br#"{"a":"x\u"}"#, true),
            (br#"{"a":"\\u"}"#, true),
            (br#"{"a":"\n\"\\"}"#, false),
            (b"\\", false),
            (b"", false),
        ] {
            assert_eq!(
                may_name_a_secret(body),
                may,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn sanitize_with_pii_replaces_values_in_findings_errors_and_echoes() {
        let mut record = sample(2, include_bytes!("../benches/data/create_user.json"), 400);
        record.request.query = Some("filter=displayName+eq+%22Babs+Jensen%22".into());
        record.response = Some(RecordedResponse::new(
            400,
            &HeaderMap::new(),
            br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"userName bjensen@example.com exists; see \"Babs Jensen\"","status":"400"}"#,
        ));
        record.findings = vec![serde_json::json!({
            "rule": "user.multi-value",
            "action": "rewrite",
            "location": "/emails/1",
            "message": "AWS keeps one email; dropped bjensen@example.com",
            "source": "guide",
            "fix": {"before": "{\"value\":\"bjensen@example.com\"}", "after": "(absent)"}
        })];
        record.error = Some("upstream said Hollywood is invalid".into());
        record.forwarded.push(RecordedRequest::new(
            "POST",
            "/t-1/scim/v2/Users",
            &HeaderMap::new(),
            br#"{"userName":"bjensen","nickName":"Babs"}"#,
        ));
        sanitize(&mut record, Some(SALT));
        let line = serde_json::to_string(&record).unwrap();
        for value in PII_VALUES
            .iter()
            .chain(&["bjensen@example.com", "Babs Jensen"])
        {
            assert!(!line.contains(value), "{value} left in {line}");
        }
        // The rule data survives.
        assert!(line.contains("user.multi-value"));
        assert!(line.contains("/emails/1"));
        // A non-JSON body under PII redaction is replaced whole.
        let mut binary = sample(3, b"userName=bjensen&x=\xff", 400);
        sanitize(&mut binary, Some(SALT));
        assert_eq!(
            binary.request.body.text(),
            Some("[REDACTED: 20 bytes, not JSON]")
        );
        // Without any PII the body keeps its exact bytes.
        let original = br#"{ "schemas" : ["x"], "active":true }"#;
        let mut plain = sample(4, original, 201);
        sanitize(&mut plain, Some(SALT));
        assert_eq!(plain.request.body.as_bytes(), original);
    }

    // --- the recorder ---

    fn mixed_session() -> Vec<Record> {
        let mut records = Vec::new();
        // forwarded, with a token
        let mut r = sample(
            0,
            br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"]}"#,
            201,
        );
        r.request
            .headers
            .push(("authorization".into(), format!("Bearer {TOKEN}")));
        records.push(r);
        // rejected, no upstream
        let mut r = sample(1, br#"{"userName":""}"#, 400);
        r.verdict = "rejected".into();
        r.timings.upstream_us = None;
        r.findings = vec![
            serde_json::json!({"rule":"user.required","action":"reject","location":"/userName","message":"userName is required","source":"guide"}),
        ];
        records.push(r);
        // rewritten and split into batches
        let mut r = sample(2, br#"{"Operations":[]}"#, 204);
        r.operation = "PatchGroup".into();
        r.verdict = "rewritten".into();
        r.forwarded = vec![
            RecordedRequest::new(
                "PATCH",
                "/t-1/scim/v2/Groups/g",
                &HeaderMap::new(),
                br#"{"Operations":[1]}"#,
            ),
            RecordedRequest::new(
                "PATCH",
                "/t-1/scim/v2/Groups/g",
                &HeaderMap::new(),
                br#"{"Operations":[2]}"#,
            ),
        ];
        records.push(r);
        // an upstream failure with no response body, a binary body, a query
        let mut r = sample(3, &[0xde, 0xad, 0xbe, 0xef], 502);
        r.verdict = "error".into();
        r.error = Some("could not connect to the upstream".into());
        r.request.query = Some("filter=userName%20eq%20%22x%22".into());
        records.push(r);
        // no response at all, no tenant, observe mode
        let mut r = sample(4, b"", 0);
        r.response = None;
        r.tenant = None;
        r.mode = "observe".into();
        r.request.method = "GET".into();
        records.push(r);
        records
    }

    #[test]
    fn a_mixed_session_reads_back_whole_with_mode_0600_and_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.jsonl");
        let session = mixed_session();
        // The token everywhere a caller could put it, bypassing redact_headers.
        let mut leaky = sample(
            5,
            format!(r#"{{"userName":"u","password":"{TOKEN}"}}"#).as_bytes(),
            201,
        );
        leaky.request.query = Some(format!("access_token={TOKEN}&count=1"));
        leaky.request.headers.extend([
            ("Authorization".to_owned(), format!("Bearer {TOKEN}")),
            ("cookie".to_owned(), format!("s={TOKEN}")),
            ("x-api-key".to_owned(), TOKEN.to_owned()),
        ]);
        leaky.forwarded.push(leaky.request.clone());
        let response = leaky.response.as_mut().unwrap();
        response
            .headers
            .push(("set-cookie".to_owned(), format!("s={TOKEN}")));
        leaky.findings = vec![serde_json::json!({"message": format!("removed it (\"{TOKEN}\")")})];
        leaky.error = Some(format!("password {TOKEN} refused"));
        runtime().block_on(async {
            let recorder = Recorder::open(&path, RecordOptions::default()).unwrap();
            for r in &session {
                recorder.record(r.clone());
            }
            recorder.record(leaky);
            recorder.close().await;
            assert_eq!(recorder.dropped(), 0);
        });
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
            "the token reached the file"
        );
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let mut back = read_capture(&path).unwrap();
        assert_eq!(back.len(), session.len() + 1);
        let leaky = back.pop().unwrap();
        assert_eq!(
            leaky.request.query.as_deref(),
            Some("access_token=%5BREDACTED%5D&count=1")
        );
        assert_eq!(leaky.request.headers[1].1, "Bearer [REDACTED]");
        assert_eq!(leaky.error.as_deref(), Some("password [REDACTED] refused"));
        // Identical but for the redacted Authorization header.
        let mut expected = session.clone();
        expected[0].request.headers.last_mut().unwrap().1 = "Bearer [REDACTED]".into();
        assert_eq!(back, expected);
        assert_eq!(back[3].request.body.as_bytes(), [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(back[2].forwarded.len(), 2);
        assert!(String::from_utf8(bytes)
            .unwrap()
            .lines()
            .all(|l| l.starts_with("{\"version\":2,")));
    }

    #[test]
    fn each_record_is_in_the_file_once_flushed_while_the_writer_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.jsonl");
        runtime().block_on(async {
            let recorder = Recorder::open(&path, RecordOptions::default()).unwrap();
            for i in 0..20 {
                recorder.record(sample(i, br#"{"a":1}"#, 201));
                recorder.flush().await;
                let back = read_capture(&path).unwrap();
                assert_eq!(back.len(), i + 1);
                assert_eq!(back[i].id, format!("{i:032x}"));
            }
            recorder.close().await;
        });
    }

    #[test]
    fn dropping_every_handle_still_writes_all_completed_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dropped.jsonl");
        const N: usize = 500;
        runtime().block_on(async {
            let recorder = Recorder::open(&path, RecordOptions::default()).unwrap();
            let clone = recorder.clone();
            for i in 0..N {
                let handle = if i % 2 == 0 { &recorder } else { &clone };
                handle.record(sample(i, br#"{"userName":"x"}"#, 201));
            }
            assert_eq!(recorder.dropped(), 0);
            let finished = recorder.finished();
            drop(recorder);
            drop(clone);
            tokio::time::timeout(Duration::from_secs(30), finished)
                .await
                .expect("the writer stops once every handle is gone");
        });
        let back = read_capture(&path).unwrap();
        assert_eq!(back.len(), N);
        for (i, r) in back.iter().enumerate() {
            assert_eq!(r.id, format!("{i:032x}"), "in order");
        }
    }

    #[test]
    fn a_full_channel_drops_counts_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.jsonl");
        runtime().block_on(async {
            let (open_gate, gate) = std::sync::mpsc::channel();
            let options = RecordOptions {
                channel: 2,
                ..RecordOptions::default()
            };
            let recorder = Recorder::start(&path, options, QUEUE_BYTES_LIMIT, Some(gate)).unwrap();
            for i in 0..5 {
                recorder.record(sample(i, b"{}", 201));
            }
            assert_eq!(recorder.dropped(), 3, "2 fit in the channel, 3 dropped");
            open_gate.send(()).unwrap();
            recorder.close().await;
            // After close, records are dropped and counted too.
            recorder.record(sample(9, b"{}", 201));
            assert_eq!(recorder.dropped(), 4);
            recorder.flush().await;
        });
        let ids: Vec<String> = read_capture(&path)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec![format!("{:032x}", 0), format!("{:032x}", 1)]);
    }

    #[test]
    fn the_byte_budget_drops_records_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.jsonl");
        runtime().block_on(async {
            let (open_gate, gate) = std::sync::mpsc::channel();
            let recorder =
                Recorder::start(&path, RecordOptions::default(), 10_000, Some(gate)).unwrap();
            let big = vec![b'a'; 6_000];
            recorder.record(sample(0, &big, 201));
            recorder.record(sample(1, &big, 201));
            // The first record of a queue always fits, however large.
            assert_eq!(recorder.dropped(), 1);
            open_gate.send(()).unwrap();
            recorder.flush().await;
            recorder.record(sample(2, &big, 201));
            recorder.close().await;
            assert_eq!(recorder.dropped(), 1, "the budget is freed once written");
        });
        assert_eq!(read_capture(&path).unwrap().len(), 2);
    }

    #[test]
    fn pii_mode_hashes_with_one_salt_per_recorder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pii.jsonl");
        runtime().block_on(async {
            let options = RecordOptions {
                redact_pii: true,
                ..RecordOptions::default()
            };
            let recorder = Recorder::open(&path, options).unwrap();
            let body = include_bytes!("../benches/data/create_user.json");
            recorder.record(sample(0, body, 201));
            recorder.record(sample(1, body, 201));
            recorder.close().await;
        });
        let text = std::fs::read_to_string(&path).unwrap();
        for value in PII_VALUES {
            assert!(!text.contains(value), "{value} in the capture");
        }
        let back = read_capture(&path).unwrap();
        let user = |r: &Record| serde_json::from_slice::<Value>(r.request.body.as_bytes()).unwrap();
        assert_eq!(user(&back[0])["userName"], user(&back[1])["userName"]);
        assert_ne!(user(&back[0])["userName"], pii_hash("bjensen", SALT));
    }

    #[test]
    fn rotation_keeps_five_private_files_under_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rot.jsonl");
        let line_len = serde_json::to_vec(&sample(0, br#"{"a":1}"#, 201))
            .unwrap()
            .len() as u64
            + 1;
        let max = line_len * 3;
        const N: usize = 40;
        runtime().block_on(async {
            let options = RecordOptions {
                max_bytes: Some(max),
                ..RecordOptions::default()
            };
            let recorder = Recorder::open(&path, options).unwrap();
            for i in 0..N {
                recorder.record(sample(i, br#"{"a":1}"#, 201));
                if i % 7 == 0 {
                    recorder.flush().await;
                }
            }
            recorder.close().await;
        });
        assert!(!rotated_path(&path, ROTATE_KEEP + 1).exists());
        let mut all = Vec::new();
        for n in (1..=ROTATE_KEEP).rev() {
            let file = rotated_path(&path, n);
            assert!(std::fs::metadata(&file).unwrap().len() <= max);
            #[cfg(unix)]
            assert_eq!(mode(&file), 0o600);
            all.extend(read_capture(&file).unwrap());
        }
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        all.extend(read_capture(&path).unwrap());
        assert_eq!(read_capture_all(&path).unwrap(), all);
        // The newest records, in order, with nothing missing in between.
        assert_eq!(
            all.len(),
            3 * ROTATE_KEEP as usize + N % 3 + if N % 3 == 0 { 3 } else { 0 }
        );
        let first = N - all.len();
        for (k, r) in all.iter().enumerate() {
            assert_eq!(r.id, format!("{:032x}", first + k));
        }
    }

    #[test]
    fn an_oversized_record_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.jsonl");
        runtime().block_on(async {
            let options = RecordOptions {
                max_bytes: Some(100),
                ..RecordOptions::default()
            };
            let recorder = Recorder::open(&path, options).unwrap();
            recorder.record(sample(0, &[b'x'; 500], 201));
            recorder.record(sample(1, &[b'y'; 500], 201));
            recorder.close().await;
            assert_eq!(recorder.dropped(), 0);
        });
        assert_eq!(
            read_capture(&rotated_path(&path, 1)).unwrap()[0].id,
            format!("{:032x}", 0)
        );
        assert_eq!(read_capture(&path).unwrap()[0].id, format!("{:032x}", 1));
    }

    #[test]
    fn reopening_appends_and_tightens_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("again.jsonl");
        std::fs::write(&path, "").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        runtime().block_on(async {
            for i in 0..2 {
                let recorder = Recorder::open(&path, RecordOptions::default()).unwrap();
                recorder.record(sample(i, b"{}", 201));
                recorder.close().await;
            }
        });
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read_capture(&path).unwrap().len(), 2);
        assert!(
            Recorder::open(&dir.path().join("no/such/dir/x"), RecordOptions::default()).is_err()
        );
    }

    // --- reading ---

    #[test]
    fn read_errors_name_the_line() {
        let good = serde_json::to_string(&sample(0, b"{}", 201)).unwrap();
        let text = format!("{good}\n\n{good}\n{{\"version\":1}}\n");
        match parse_capture(text.as_bytes(), "c.jsonl") {
            Err(CaptureError::Line {
                line: 4, message, ..
            }) => {
                assert!(message.contains("missing field"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let newer = good.replacen("\"version\":2", "\"version\":3", 1);
        let e = parse_capture(newer.as_bytes(), "c.jsonl").unwrap_err();
        assert!(
            e.to_string().starts_with("c.jsonl:1: record version 3"),
            "{e}"
        );
        let cut = format!("{good}\n{}", &good[..good.len() / 2]);
        let e = parse_capture(cut.as_bytes(), "c.jsonl").unwrap_err();
        assert!(
            e.to_string().contains("c.jsonl:2:") && e.to_string().contains("incomplete"),
            "{e}"
        );
        let e = parse_capture(b"\xff\xfe\n", "c.jsonl").unwrap_err();
        assert!(e.to_string().starts_with("c.jsonl:1:"), "{e}");
        assert!(parse_capture(b"", "c").unwrap().is_empty());
        assert!(parse_capture(b"\r\n  \n", "c").unwrap().is_empty());
        assert!(matches!(
            read_capture(Path::new("/nonexistent/capture")),
            Err(CaptureError::Io { .. })
        ));
        // CRLF line ends are fine.
        assert_eq!(
            parse_capture(format!("{good}\r\n{good}\r\n").as_bytes(), "c")
                .unwrap()
                .len(),
            2
        );
    }

    /// A header as a client or an upstream might send it: common and secret names (in
    /// any case; `HeaderName` lowercases them), values with quotes, backslashes, tabs
    /// and obs-text bytes that are not UTF-8.
    fn header_strategy() -> impl proptest::strategy::Strategy<Value = (String, Vec<u8>)> {
        use proptest::prelude::*;
        (
            "content-type|Authorization|authorization|cookie|X-Api-Key|x-amzn-requestid|proxy-authorization|x-[a-z]{1,8}|set-cookie|x-session-token",
            "[ -~\t]{0,16}",
            proptest::option::of(proptest::collection::vec(0x80u8..=0xff, 1..3)),
        )
            .prop_map(|(name, value, tail)| {
                let mut value = value.trim_matches([' ', '\t']).as_bytes().to_vec();
                value.extend(tail.unwrap_or_default());
                (name, value)
            })
    }

    /// Bodies of every written form, with and without a way to spell `password`.
    fn body_strategy() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(
                br#"{"userName":"bjensen","emails":[{"value":"b@example.com","primary":true}]}"#
                    .to_vec()
            ),
            Just(br#"{"userName":"b","password":"hunter2"}"#.to_vec()),
            Just(br#"{"userName":"b","pass\u0077ord":"hunter2"}"#.to_vec()),
            Just(b"not json at all".to_vec()),
            Just(b"{\"a\":\n1}".to_vec()),
            Just(vec![0xff, 0xfe, b'{']),
            Just(Vec::new()),
            "\\PC{0,30}".prop_map(String::into_bytes),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn filter_redaction_never_panics(filter in "\\PC{0,40}|[a-zA-Z\\[\\]\" .\\\\]{0,40}") {
            let out = redact_filter(&filter, SALT);
            // Only string literals are ever replaced.
            if !filter.contains('"') {
                proptest::prop_assert_eq!(out, filter);
            }
        }

        #[test]
        fn parse_capture_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_capture(&bytes, "fuzz");
        }

        /// The hand-written line is serde_json's, byte for byte, whatever the strings
        /// hold (quotes, backslashes, control characters, any Unicode).
        #[test]
        fn written_lines_are_serde_jsons(
            texts in proptest::collection::vec("\\PC{0,12}|[\"\\\\\\x00-\\x1f\\x7f a-z]{0,12}", 8),
            body in "\\PC{0,40}|\\{[\"a-z:,\\[\\] ]{0,30}\\}|\\{\"[a-z]{1,5}\":\\[[0-9, ]{0,9}\\]\\}",
            numbers in proptest::collection::vec(proptest::prelude::any::<u64>(), 3),
            has_response in proptest::prelude::any::<bool>(),
        ) {
            let mut r = sample(numbers[0] as usize % 1000, body.as_bytes(), 200);
            // What the pipeline does when the rules read the body as JSON.
            if serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok() {
                r.request.body.mark_known_json();
            }
            r.id = texts[0].clone();
            r.time = texts[1].clone();
            r.tenant = Some(texts[2].clone()).filter(|t| !t.is_empty());
            r.request.query = Some(texts[3].clone());
            r.request.headers.push((texts[4].clone(), texts[5].clone()));
            r.error = Some(texts[6].clone());
            r.forwarded.push(r.request.clone());
            r.forwarded[0].method = texts[7].clone();
            r.findings.push(serde_json::json!({"rule": texts[7], "n": numbers[1]}));
            r.timings = Timings {
                total_us: numbers[0],
                upstream_us: Some(numbers[1]),
                throttle_us: Some(numbers[2]).filter(|n| n % 2 == 0),
            };
            if !has_response {
                r.response = None;
            }
            let mut ours = Vec::new();
            write_line(&r, &mut ours).unwrap();
            proptest::prop_assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&r).unwrap()
            );
        }

        /// The eight-bytes-a-step test, its space-padded tail included, answers what
        /// a byte loop answers, for every length and byte.
        #[test]
        fn special_bytes_are_found_as_a_byte_loop_finds_them(
            // Mostly bytes with nothing to escape, so that both answers come up often.
            bytes in proptest::collection::vec(
                proptest::prop_oneof![12 => 0x23u8..0x5c, 1 => proptest::prelude::any::<u8>()],
                0..40,
            ),
            non_ascii in proptest::prelude::any::<bool>(),
        ) {
            let naive = bytes
                .iter()
                .any(|&b| b < 0x20 || b == b'"' || b == b'\\' || (non_ascii && b > 0x7f));
            proptest::prop_assert_eq!(has_special_byte(&bytes, non_ascii), naive);
        }

        /// The one-pass scan finds what a naive scan finds: the word in any case, or a
        /// backslash-u, anywhere.
        #[test]
        fn may_name_a_secret_is_the_naive_scan(text in "([pPaAsSwWoOrRdDu\\\\x ]|[pP][aA][sS][sS][wW][oO][rR][dD]|[pP][aA][sS][sS]\\\\u0077){0,12}") {
            let bytes = text.as_bytes();
            let naive = bytes.windows(8).any(|w| w.eq_ignore_ascii_case(b"password"))
                || bytes.windows(2).any(|w| w == b"\\u");
            proptest::prop_assert_eq!(may_name_a_secret(bytes), naive);
        }

        /// The fast path writes what the full path writes for the same exchange,
        /// whatever its headers (secret names in any case, quotes, backslashes, tabs,
        /// bytes that are not UTF-8), query and bodies; and it is the path a plain
        /// exchange takes.
        #[test]
        fn fast_lines_are_the_full_paths(
            request_headers in proptest::collection::vec(header_strategy(), 0..8),
            response_headers in proptest::collection::vec(header_strategy(), 0..8),
            query in proptest::option::of(
                "filter=userName%20eq%20%22[a-z]{1,6}%22|access_token=[a-z]{1,6}|a=b&([Tt]oken|x)=[a-z\"]{0,5}|\\PC{0,20}"
            ),
            bodies in proptest::collection::vec(body_strategy(), 2),
            known_json in proptest::prelude::any::<bool>(),
            findings in 0usize..3,
            error in proptest::option::of("\\PC{0,12}"),
            has_response in proptest::prelude::any::<bool>(),
            forwarded in proptest::prelude::any::<bool>(),
        ) {
            let request_map = headers(&request_headers);
            let response_map = headers(&response_headers);
            let mut request_body = Body::from(bodies[0].clone());
            if known_json && serde_json::from_slice::<serde::de::IgnoredAny>(&bodies[0]).is_ok() {
                request_body.mark_known_json();
            }
            let target = match &query {
                Some(query) => format!("/t/scim/v2/Users?{query}"),
                None => "/t/scim/v2/Users".to_owned(),
            };
            let findings: Vec<Finding> = (0..findings)
                .map(|i| Finding {
                    rule: format!("rule.{i}"),
                    action: crate::rules::Action::Reject,
                    location: "/userName".into(),
                    message: "a \"quoted\" message".into(),
                    source: "CreateUser".into(),
                    fix: None,
                    scim_type: "invalidValue",
                    aws_detail: None,
                })
                .collect();
            let exchange = ExchangeRecord {
                id: "0123456789abcdef0123456789abcdef",
                time: "2026-12-06T04:00:00.000001Z",
                tenant: Some("t"),
                operation: "CreateUser",
                mode: "enforce",
                verdict: "forwarded",
                request: ReceivedRequest {
                    method: http::Method::POST,
                    target,
                    headers: request_map.clone(),
                    body: request_body,
                },
                forwarded: if forwarded {
                    vec![RecordedRequest::new("PATCH", "/t/scim/v2/Groups/g", &request_map, &b"{}"[..])]
                } else {
                    Vec::new()
                },
                response: has_response.then(|| (201, &response_map, Body::from(bodies[1].clone()))),
                findings: &findings,
                error: error.as_deref(),
                timings: Timings { total_us: 7, upstream_us: Some(5), throttle_us: None },
            };
            let mut full = exchange.to_record();
            sanitize_with(&mut full, None);
            let mut expected = Vec::new();
            write_line(&full, &mut expected).unwrap();
            match exchange.fast_line(None) {
                Some(fast) => proptest::prop_assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&expected)
                ),
                None => {
                    let clean_body = |b: &[u8]| !may_name_a_secret(b);
                    let plain = !forwarded
                        && query.is_none()
                        && clean_body(&bodies[0])
                        && (!has_response || clean_body(&bodies[1]));
                    proptest::prop_assert!(!plain, "a plain exchange took the full path");
                }
            }
            // PII hashing always takes the full path.
            let key = hmac::Key::new(hmac::HMAC_SHA256, SALT);
            proptest::prop_assert!(exchange.fast_line(Some(&key)).is_none());
        }

        #[test]
        fn sanitize_never_panics(body in "\\PC{0,60}", query in "\\PC{0,30}") {
            let mut r = sample(0, body.as_bytes(), 200);
            r.request.query = Some(query);
            sanitize(&mut r, Some(SALT));
            sanitize(&mut r, None);
        }
    }
}
