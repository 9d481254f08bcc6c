//! Record mode (`--record FILE`): every exchange as one JSON line, written by a writer
//! thread fed through a bounded channel, so recording never blocks the proxy and a kill
//! loses at most the exchanges still in the channel.
//!
//! | what | where |
//! |---|---|
//! | format | here: one [`Record`] per line (JSON lines), `version` 2 ([`RECORD_VERSION`]), written by `serde_json` from derived structs |
//! | secrets, PII | [`redaction`]: [`crate::redact`] applied to the whole record, the same path for every exchange |
//! | file | [`writer`]: created (or re-opened for appending) with mode 0600; only whole lines, even when the disk fills; rotation |
//! | reading | [`read`]: several captures merged by time; a cut last line or a corrupt line is skipped with a warning (`--strict`: an error) |
//!
//! The PII hash is HMAC-SHA-256 keyed by a salt that is never written anywhere: 32 random
//! bytes per [`Recorder`] unless [`RecordOptions::pii_salt`] gives one. So one value has
//! one hash throughout a capture and its rotations (correlation survives), while whoever
//! receives the capture cannot test guesses (a dictionary of e-mail addresses) against
//! the hashes. Pass the same salt to make hashes comparable across captures.

pub mod read;
pub mod redaction;
pub mod writer;

use std::time::SystemTime;

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::rules::Finding;

pub use crate::redact::{pii_hash, redact_filter, redact_pii, REDACTED};
pub use crate::redact::{PII_ATTRIBUTES, PII_MULTI_VALUED};
pub use read::{
    captures, json_message, parse_capture, read_capture, read_capture_all, Capture, CaptureError,
};
pub use redaction::sanitize;
pub use writer::{rotated_path, RecordOptions, Recorder, DEFAULT_CHANNEL, ROTATE_KEEP};

/// The record format's version. Version 2 added the `json` body form; readers take
/// every version up to this one ([`check_version`]) and refuse later ones. The optional
/// `replica` field came later within version 2: readers take records without it.
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

/// One exchange, as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// The request id (`x-scimguard-request-id`).
    pub id: String,
    /// When the request arrived, RFC 3339 in UTC with microseconds ([`rfc3339`]).
    pub time: String,
    /// Which scimguard recorded it (`--replica-name`); absent in older captures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// AWS's tenant id from the path, when there is one.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The operation's name (`CreateUser`, `Unknown`, `-` before classification).
    pub operation: String,
    /// `enforce` or `observe`.
    pub mode: String,
    /// `forwarded`, `rewritten`, `rejected`, `throttled` or `error`.
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

/// Something that happened beside the exchanges, as a line of its own: the blast-radius
/// guard tripping or being released. Readers keep events apart from records
/// ([`Capture::events`]); `replay` and `export-har` leave them out, `check` skips them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// [`RECORD_VERSION`].
    pub version: u32,
    /// What happened: [`EVENT_GUARD_TRIP`] or [`EVENT_GUARD_RELEASE`].
    pub event: String,
    /// When, as [`rfc3339`].
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    /// What happened, in words.
    pub detail: String,
    /// Its figures (changes seen, limit, window, held requests, the request at fault).
    #[serde(default)]
    pub data: Value,
}

/// The guard tripped: a tenant's destructive requests are held from now on.
pub const EVENT_GUARD_TRIP: &str = "guard.trip";
/// An admin released a tripped guard.
pub const EVENT_GUARD_RELEASE: &str = "guard.release";

impl Event {
    /// An event of now.
    pub fn new(event: &str, tenant: &str, detail: String, data: Value) -> Event {
        Event {
            version: RECORD_VERSION,
            event: event.to_owned(),
            time: rfc3339(SystemTime::now()),
            replica: None,
            tenant: Some(tenant.to_owned()),
            detail,
            data,
        }
    }

    /// The event on one line of a capture, if it is one (an object with `version`,
    /// `event`, `time` and `detail`; a record has no `event` nor `detail`).
    pub fn from_line(line: &[u8]) -> Option<Event> {
        serde_json::from_slice(line).ok()
    }
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    bytes: Bytes,
}

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

    /// The body as JSON to embed verbatim in the line, when that gives the same bytes
    /// back: one object or array (serde_json reads it), without surrounding whitespace
    /// (it would be lost) or raw line breaks (a record is one line).
    fn embeddable_json(&self) -> Option<&RawValue> {
        let shaped = matches!(
            (self.bytes.first(), self.bytes.last()),
            (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
        ) && memchr::memchr2(b'\n', b'\r', &self.bytes).is_none();
        if !shaped {
            return None;
        }
        serde_json::from_slice::<&RawValue>(&self.bytes).ok()
    }
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
        Body { bytes }
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

/// The written form, borrowing the body.
#[derive(Serialize)]
enum BodyRef<'a> {
    #[serde(rename = "json")]
    Json(&'a RawValue),
    #[serde(rename = "text")]
    Text(&'a str),
    #[serde(rename = "base64")]
    Base64(String),
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

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let form = match (self.embeddable_json(), std::str::from_utf8(&self.bytes)) {
            (Some(raw), _) => BodyRef::Json(raw),
            (None, Ok(text)) => BodyRef::Text(text),
            (None, Err(_)) => {
                BodyRef::Base64(base64::engine::general_purpose::STANDARD.encode(&self.bytes))
            }
        };
        form.serialize(serializer)
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
    /// Secret headers are redacted ([`crate::redact::headers`]).
    pub fn new(method: &str, target: &str, headers: &HeaderMap, body: impl Into<Body>) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        RecordedRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers: crate::redact::headers(headers),
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
            headers: crate::redact::headers(headers),
            body: body.into(),
        }
    }
}

/// Findings as the record holds them.
pub fn findings_json(findings: &[Finding]) -> Vec<Value> {
    findings
        .iter()
        .filter_map(|f| serde_json::to_value(f).ok())
        .collect()
}

/// The request as received, held for its record without copying: its header map and
/// body share the proxy's buffers.
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
    /// The [`Record`] this exchange is, before redaction.
    pub fn to_record(&self) -> Record {
        Record {
            version: RECORD_VERSION,
            id: self.id.to_owned(),
            time: self.time.to_owned(),
            replica: None,
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
}

/// `t` as RFC 3339 in UTC with microseconds: `2024-05-01T12:34:56.123456Z` (one width,
/// so text order is time order). Times before 1970 are written as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let t = t.max(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_micros(t).to_string()
}

/// The wall-clock time at which `started` was taken, as [`rfc3339`]: for
/// `Exchange::started`, which is monotonic.
pub fn rfc3339_since(started: std::time::Instant) -> String {
    let now = SystemTime::now();
    rfc3339(now.checked_sub(started.elapsed()).unwrap_or(now))
}

/// The name a replica records under when `--replica-name` is not given: the host's
/// name (Linux's `/proc/sys/kernel/hostname`, else `$HOSTNAME`), else `scimguard`.
pub fn default_replica_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "scimguard".to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};
    use std::time::{Duration, UNIX_EPOCH};

    pub(crate) fn headers<N: AsRef<str>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_ref().as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_ref()).unwrap(),
            );
        }
        map
    }

    pub(crate) fn sample(i: usize, body: &[u8], status: u16) -> Record {
        Record {
            version: RECORD_VERSION,
            id: format!("{i:032x}"),
            time: rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64)),
            replica: None,
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
        let started = std::time::Instant::now();
        let before = rfc3339(SystemTime::now() - Duration::from_secs(1));
        let at = rfc3339_since(started);
        let after = rfc3339(SystemTime::now() + Duration::from_secs(1));
        assert!(before < at && at < after, "{before} {at} {after}");
    }

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
        // Deeply nested JSON is embedded too, still byte-exact.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        round_trip(&Body::from(deep.as_str()));
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
    fn version_1_records_and_records_without_a_replica_still_read() {
        let mut line = serde_json::to_value(sample(0, b"{\"a\":1}", 201)).unwrap();
        assert!(line.get("replica").is_none(), "absent when not set");
        line["version"] = 1.into();
        line["request"]["body"] = serde_json::json!({"text": "{\"a\":1}"});
        let records = parse_capture(line.to_string().as_bytes(), "v1").unwrap();
        assert_eq!(records[0].request.body.as_bytes(), b"{\"a\":1}");
        assert_eq!(records[0].replica, None);
        line["replica"] = "a".into();
        let records = parse_capture(line.to_string().as_bytes(), "v1").unwrap();
        assert_eq!(records[0].replica.as_deref(), Some("a"));
        line["version"] = (RECORD_VERSION + 1).into();
        let error = parse_capture(line.to_string().as_bytes(), "v3").unwrap_err();
        assert!(error.to_string().contains("not supported"), "{error}");
    }

    #[test]
    fn the_default_replica_name_is_the_host_name() {
        let name = default_replica_name();
        assert!(!name.is_empty() && !name.contains('\n'), "{name:?}");
    }
}
