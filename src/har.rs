//! `scimguard export-har CAPTURE > out.har`: a capture as HAR 1.2 (the W3C draft's
//! HTTP Archive), for browser devtools and other HTTP tools.
//!
//! One entry per record: the request as received and the response the client got.
//! What HAR has no field for goes in `_scimguard` (HAR 1.2 allows custom fields that
//! start with `_`): the id, tenant, operation, mode, verdict, findings, error, and the
//! requests as forwarded upstream.
//!
//! | HAR | from |
//! |---|---|
//! | `startedDateTime` | `time` (RFC 3339 is ISO 8601) |
//! | `timings.blocked` | `throttle_us` (queued by the throttle), else -1 |
//! | `timings.wait` | `upstream_us` (the upstream's answer), else 0 |
//! | `timings.receive` | the rest of `total_us`: scimguard's own work |
//! | `time` | the sum of the timings above, in milliseconds |
//! | `httpVersion` | `HTTP/1.1`: the capture does not say which version the client used |
//! | `headersSize` | -1 (the capture keeps headers, not their wire size) |
//! | bodies | `text`; a body that is not UTF-8 is base64 (`content.encoding`, or `postData.comment` = `base64`) |

use base64::Engine as _;
use serde_json::{json, Value};

use crate::record::{Body, Record, RecordedRequest};
use crate::scim::percent::percent_decode;

/// The base of request URLs when the listener's address is unknown (`.invalid` is
/// reserved, RFC 2606 §2, so no tool will try to reach it).
pub const DEFAULT_BASE_URL: &str = "http://scimguard.invalid";

/// HAR 1.2 for `records`; URLs are `base_url` + path + query.
///
/// Each record is redacted again on the way ([`crate::record::sanitize`]), so a capture
/// written by an older scimguard, whose secret names were fewer, exports no secret.
pub fn to_har(records: &[Record], base_url: &str) -> Value {
    let base = base_url.trim_end_matches('/');
    let entries: Vec<Value> = records
        .iter()
        .map(|record| {
            let mut record = record.clone();
            crate::record::sanitize(&mut record, None);
            entry(&record, base)
        })
        .collect();
    json!({
        "log": {
            "version": "1.2",
            "creator": {"name": "scimguard", "version": env!("CARGO_PKG_VERSION")},
            "entries": entries,
        }
    })
}

/// Microseconds as HAR's milliseconds.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn entry(record: &Record, base: &str) -> Value {
    let t = &record.timings;
    let blocked = t.throttle_us.unwrap_or(0);
    let wait = t.upstream_us.unwrap_or(0);
    // Whatever of the total is neither throttle nor upstream is scimguard's own work;
    // totals that are inconsistent (a hand-edited capture) clamp at 0.
    let receive = t.total_us.saturating_sub(blocked).saturating_sub(wait);
    let mut timings = json!({
        "blocked": -1,
        "dns": -1,
        "connect": -1,
        "send": 0,
        "wait": ms(wait),
        "receive": ms(receive),
        "ssl": -1,
    });
    if t.throttle_us.is_some() {
        timings["blocked"] = json!(ms(blocked));
    }
    let mut entry = json!({
        "startedDateTime": record.time,
        "time": ms(blocked + wait + receive),
        "request": request(&record.request, base),
        "response": response(record),
        "cache": {},
        "timings": timings,
        "comment": format!("scimguard: {} {}", record.operation, record.verdict),
        "_scimguard": {
            "id": record.id,
            "tenant": record.tenant,
            "operation": record.operation,
            "mode": record.mode,
            "verdict": record.verdict,
            "findings": record.findings,
            "error": record.error,
            "forwarded": record
                .forwarded
                .iter()
                .map(|f| request(f, base))
                .collect::<Vec<_>>(),
        },
    });
    if let Some(error) = &record.error {
        // Chrome's own export names a failed request's reason `_error`.
        entry["response"]["_error"] = json!(error);
    }
    entry
}

fn headers(pairs: &[(String, String)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect(),
    )
}

fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A body as HAR text, and whether that text is base64.
fn body_text(body: &Body) -> (String, bool) {
    match body.text() {
        Some(text) => (text.to_owned(), false),
        None => (
            base64::engine::general_purpose::STANDARD.encode(body.as_bytes()),
            true,
        ),
    }
}

/// The query's pairs, decoded (`+` as a space); undecodable parts stay as sent.
fn query_string(query: Option<&str>) -> Value {
    let decode = |raw: &str| {
        percent_decode(raw, true)
            .map(|d| d.into_owned())
            .unwrap_or_else(|_| raw.to_owned())
    };
    Value::Array(
        query
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                json!({"name": decode(name), "value": decode(value)})
            })
            .collect(),
    )
}

fn request(request: &RecordedRequest, base: &str) -> Value {
    let mut out = json!({
        "method": request.method,
        "url": format!("{base}{}", request.target()),
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": headers(&request.headers),
        "queryString": query_string(request.query.as_deref()),
        "headersSize": -1,
        "bodySize": request.body.as_bytes().len(),
    });
    if !request.body.is_empty() {
        let (text, base64) = body_text(&request.body);
        let mut post = json!({
            "mimeType": header(&request.headers, "content-type").unwrap_or(""),
            "text": text,
        });
        if base64 {
            post["comment"] = json!("base64");
        }
        out["postData"] = post;
    }
    out
}

fn response(record: &Record) -> Value {
    let Some(response) = &record.response else {
        // No response: what browsers export for a request that failed (status 0).
        return json!({
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        });
    };
    let status_text = http::StatusCode::from_u16(response.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let (text, base64) = body_text(&response.body);
    let mut content = json!({
        "size": response.body.as_bytes().len(),
        "mimeType": header(&response.headers, "content-type").unwrap_or("x-unknown"),
        "text": text,
    });
    if base64 {
        content["encoding"] = json!("base64");
    }
    json!({
        "status": response.status,
        "statusText": status_text,
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": headers(&response.headers),
        "content": content,
        "redirectURL": header(&response.headers, "location").unwrap_or(""),
        "headersSize": -1,
        "bodySize": response.body.as_bytes().len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordedResponse, Timings, RECORD_VERSION};

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_an_older_capture_kept_are_redacted_on_export() {
        let mut record = records().remove(0);
        record.request.query = Some("sig=s-9f8e7d&count=1".into());
        record
            .request
            .headers
            .push(("x-session".into(), "h-6c5b4a".into()));
        record.request.body = Body::from(r#"{"userName":"b","passwd":"p-3a2b1c"}"#);
        let har = to_har(&[record], DEFAULT_BASE_URL).to_string();
        for secret in ["s-9f8e7d", "h-6c5b4a", "p-3a2b1c"] {
            assert!(!har.contains(secret), "{secret} in {har}");
        }
        assert!(har.contains("count=1") && har.contains("userName"), "{har}");
    }

    fn records() -> Vec<Record> {
        let base = Record {
            version: RECORD_VERSION,
            id: "0".repeat(32),
            time: "2024-05-01T12:34:56.123456Z".into(),
            replica: None,
            tenant: Some("t-1".into()),
            operation: "CreateUser".into(),
            mode: "enforce".into(),
            verdict: "forwarded".into(),
            request: RecordedRequest {
                method: "POST".into(),
                path: "/t-1/scim/v2/Users".into(),
                query: None,
                headers: pairs(&[
                    ("content-type", "application/scim+json"),
                    ("authorization", "Bearer [REDACTED]"),
                ]),
                body: Body::from(r#"{"userName":"bjensen"}"#),
            },
            forwarded: Vec::new(),
            response: Some(RecordedResponse {
                status: 201,
                headers: pairs(&[("content-type", "application/json")]),
                body: Body::from(r#"{"id":"u-1"}"#),
            }),
            findings: Vec::new(),
            error: None,
            timings: Timings {
                total_us: 12_500,
                upstream_us: Some(10_000),
                throttle_us: Some(1_000),
            },
        };
        let mut list = vec![base.clone()];
        // A list with a filter, no body, no throttle.
        let mut r = base.clone();
        r.operation = "ListUsers".into();
        r.request.method = "GET".into();
        r.request.query = Some("filter=userName+eq+%22bjensen%22&count=%ZZ&flag".into());
        r.request.body = Body::default();
        r.timings = Timings {
            total_us: 800,
            upstream_us: Some(700),
            throttle_us: None,
        };
        list.push(r);
        // Rejected: no upstream; findings.
        let mut r = base.clone();
        r.verdict = "rejected".into();
        r.response.as_mut().unwrap().status = 400;
        r.findings = vec![json!({"rule": "user.required", "action": "reject"})];
        r.timings = Timings {
            total_us: 90,
            upstream_us: None,
            throttle_us: None,
        };
        list.push(r);
        // Rewritten with batches; binary bodies both ways; a redirect.
        let mut r = base.clone();
        r.verdict = "rewritten".into();
        r.request.body = Body::from(vec![0xff, 0xfe, 0x00]);
        r.forwarded = vec![r.request.clone(), r.request.clone()];
        let resp = r.response.as_mut().unwrap();
        resp.status = 302;
        resp.headers.push(("location".into(), "/elsewhere".into()));
        resp.body = Body::from(vec![0x80]);
        list.push(r);
        // No response at all; an unknown status; inconsistent timings.
        let mut r = base.clone();
        r.verdict = "error".into();
        r.response = None;
        r.error = Some("could not connect to the upstream".into());
        r.timings = Timings {
            total_us: 5,
            upstream_us: Some(50),
            throttle_us: None,
        };
        list.push(r);
        let mut r = base;
        r.response.as_mut().unwrap().status = 599;
        list.push(r);
        list
    }

    #[test]
    fn the_har_crate_parses_it_as_1_2() {
        let list = records();
        let har_json = to_har(&list, "http://127.0.0.1:8443/");
        let text = serde_json::to_string_pretty(&har_json).unwrap();
        let parsed = har::from_str(&text).expect("the har crate accepts the export");
        assert_eq!(parsed.version(), har::HarVersion::V1_2);
        let har::Spec::V1_2(log) = parsed.log else {
            panic!("not 1.2")
        };
        assert_eq!(log.creator.name, "scimguard");
        assert_eq!(log.entries.len(), list.len());
        let first = &log.entries[0];
        assert_eq!(first.request.url, "http://127.0.0.1:8443/t-1/scim/v2/Users");
        assert_eq!(first.request.method, "POST");
        assert_eq!(
            first.request.post_data.as_ref().unwrap().text.as_deref(),
            Some(r#"{"userName":"bjensen"}"#)
        );
        assert_eq!(
            first.request.post_data.as_ref().unwrap().mime_type,
            "application/scim+json"
        );
        assert_eq!(first.response.status, 201);
        assert_eq!(first.response.status_text, "Created");
        assert_eq!(
            first.response.content.text.as_deref(),
            Some(r#"{"id":"u-1"}"#)
        );
        assert_eq!(first.time, 12.5);
        assert_eq!(first.timings.blocked, Some(1.0));
        assert_eq!(first.timings.wait, 10.0);
        assert_eq!(first.timings.receive, 1.5);
        let list_entry = &log.entries[1];
        assert_eq!(
            list_entry.request.url,
            "http://127.0.0.1:8443/t-1/scim/v2/Users?filter=userName+eq+%22bjensen%22&count=%ZZ&flag"
        );
        let query: Vec<(&str, &str)> = list_entry
            .request
            .query_string
            .iter()
            .map(|q| (q.name.as_str(), q.value.as_str()))
            .collect();
        assert_eq!(
            query,
            [
                ("filter", "userName eq \"bjensen\""),
                ("count", "%ZZ"),
                ("flag", "")
            ]
        );
        assert!(list_entry.request.post_data.is_none());
        assert_eq!(list_entry.request.body_size, 0);
        let binary = &log.entries[3];
        assert_eq!(binary.response.content.encoding.as_deref(), Some("base64"));
        assert_eq!(binary.response.content.text.as_deref(), Some("gA=="));
        assert_eq!(binary.response.redirect_url.as_deref(), Some("/elsewhere"));
        assert_eq!(
            binary.request.post_data.as_ref().unwrap().text.as_deref(),
            Some("//4A")
        );
        assert_eq!(log.entries[4].response.status, 0);
        assert_eq!(log.entries[5].response.status_text, "");
    }

    #[test]
    fn every_required_har_1_2_field_is_there_with_its_type() {
        let har_json = to_har(&records(), DEFAULT_BASE_URL);
        validate(&har_json).unwrap();
        // The validator itself rejects what it should.
        let mut broken = har_json.clone();
        broken["log"]["entries"][0]["request"]
            .as_object_mut()
            .unwrap()
            .remove("httpVersion");
        assert!(validate(&broken).is_err());
        let mut broken = har_json.clone();
        broken["log"]["entries"][1]["timings"]["wait"] = json!(-1);
        assert!(validate(&broken).is_err());
        let mut broken = har_json;
        broken["log"]["entries"][2]["scimguard"] = json!(1);
        assert!(validate(&broken).is_err());
        validate(&to_har(&[], DEFAULT_BASE_URL)).unwrap();
    }

    #[test]
    fn scimguard_data_rides_along() {
        let list = records();
        let har_json = to_har(&list, DEFAULT_BASE_URL);
        let entries = har_json["log"]["entries"].as_array().unwrap();
        assert_eq!(entries[2]["_scimguard"]["verdict"], "rejected");
        assert_eq!(
            entries[2]["_scimguard"]["findings"][0]["rule"],
            "user.required"
        );
        assert_eq!(
            entries[3]["_scimguard"]["forwarded"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            entries[4]["response"]["_error"],
            "could not connect to the upstream"
        );
        assert_eq!(entries[4]["time"], json!(0.05), "inconsistent totals clamp");
        assert_eq!(
            entries[0]["request"]["url"],
            "http://scimguard.invalid/t-1/scim/v2/Users"
        );
        assert!(entries[0]["comment"]
            .as_str()
            .unwrap()
            .contains("CreateUser forwarded"));
    }

    #[test]
    fn a_capture_written_by_the_recorder_exports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.jsonl");
        let list = records();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let options = crate::record::RecordOptions {
                redact_pii: true,
                ..Default::default()
            };
            let recorder = crate::record::Recorder::open(&path, options).unwrap();
            for r in &list {
                recorder.record(r.clone());
            }
            recorder.close().await;
        });
        let back = crate::record::read_capture(&path).unwrap();
        let text = serde_json::to_string(&to_har(&back, DEFAULT_BASE_URL)).unwrap();
        assert!(!text.contains("bjensen"), "PII redacted before export");
        validate(&serde_json::from_str(&text).unwrap()).unwrap();
        let parsed = har::from_str(&text).unwrap();
        let har::Spec::V1_2(log) = parsed.log else {
            panic!("not 1.2")
        };
        assert_eq!(log.entries.len(), list.len());
    }

    // --- a strict HAR 1.2 validator (the spec's required fields, types and ranges) ---

    type Check = Result<(), String>;

    fn object<'a>(v: &'a Value, at: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
        v.as_object()
            .ok_or_else(|| format!("{at} is not an object"))
    }

    /// Every key is known to the spec or a custom `_` field; every required key exists.
    fn keys(v: &Value, at: &str, required: &[&str], optional: &[&str]) -> Check {
        let map = object(v, at)?;
        for key in required {
            if !map.contains_key(*key) {
                return Err(format!("{at}.{key} is missing"));
            }
        }
        for key in map.keys() {
            if !required.contains(&key.as_str())
                && !optional.contains(&key.as_str())
                && !key.starts_with('_')
            {
                return Err(format!("{at}.{key} is not a HAR 1.2 field"));
            }
        }
        Ok(())
    }

    fn string(v: &Value, at: &str) -> Check {
        v.as_str()
            .map(|_| ())
            .ok_or_else(|| format!("{at} is not a string"))
    }

    fn number(v: &Value, at: &str, min: f64) -> Result<f64, String> {
        let n = v.as_f64().ok_or_else(|| format!("{at} is not a number"))?;
        if n < min {
            return Err(format!("{at} = {n} is below {min}"));
        }
        Ok(n)
    }

    fn name_values(v: &Value, at: &str, extra: &[&str]) -> Check {
        let items = v
            .as_array()
            .ok_or_else(|| format!("{at} is not an array"))?;
        for (i, item) in items.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let mut optional = vec!["comment"];
            optional.extend_from_slice(extra);
            keys(item, &at, &["name", "value"], &optional)?;
            string(&item["name"], &at)?;
            string(&item["value"], &at)?;
        }
        Ok(())
    }

    /// ISO 8601 with a time zone: `YYYY-MM-DDThh:mm:ss(.f+)?(Z|±hh:mm)`.
    fn iso8601(v: &Value, at: &str) -> Check {
        let s = v.as_str().ok_or_else(|| format!("{at} is not a string"))?;
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| {
            b.get(r.clone())
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        };
        let ok = b.len() >= 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19)
            && (s.ends_with('Z') || s[19..].contains(['+', '-']));
        ok.then_some(())
            .ok_or_else(|| format!("{at} = {s} is not ISO 8601"))
    }

    fn validate(har: &Value) -> Check {
        keys(har, "har", &["log"], &[])?;
        let log = &har["log"];
        keys(
            log,
            "log",
            &["version", "creator", "entries"],
            &["browser", "pages", "comment"],
        )?;
        if log["version"] != "1.2" {
            return Err("log.version is not 1.2".into());
        }
        keys(
            &log["creator"],
            "log.creator",
            &["name", "version"],
            &["comment"],
        )?;
        string(&log["creator"]["name"], "log.creator.name")?;
        string(&log["creator"]["version"], "log.creator.version")?;
        let entries = log["entries"]
            .as_array()
            .ok_or("log.entries is not an array")?;
        for (i, e) in entries.iter().enumerate() {
            let at = format!("entries[{i}]");
            keys(
                e,
                &at,
                &[
                    "startedDateTime",
                    "time",
                    "request",
                    "response",
                    "cache",
                    "timings",
                ],
                &["pageref", "serverIPAddress", "connection", "comment"],
            )?;
            iso8601(&e["startedDateTime"], &format!("{at}.startedDateTime"))?;
            let time = number(&e["time"], &format!("{at}.time"), 0.0)?;

            let rq = &e["request"];
            let at_rq = format!("{at}.request");
            keys(
                rq,
                &at_rq,
                &[
                    "method",
                    "url",
                    "httpVersion",
                    "cookies",
                    "headers",
                    "queryString",
                    "headersSize",
                    "bodySize",
                ],
                &["postData", "comment"],
            )?;
            string(&rq["method"], &at_rq)?;
            let url = rq["url"].as_str().ok_or("url is not a string")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("{at_rq}.url {url} is not absolute"));
            }
            string(&rq["httpVersion"], &at_rq)?;
            name_values(
                &rq["cookies"],
                &format!("{at_rq}.cookies"),
                &["path", "domain", "expires", "httpOnly", "secure"],
            )?;
            name_values(&rq["headers"], &format!("{at_rq}.headers"), &[])?;
            name_values(&rq["queryString"], &format!("{at_rq}.queryString"), &[])?;
            number(&rq["headersSize"], &at_rq, -1.0)?;
            number(&rq["bodySize"], &at_rq, -1.0)?;
            if let Some(post) = rq.get("postData") {
                keys(
                    post,
                    &format!("{at_rq}.postData"),
                    &["mimeType"],
                    &["params", "text", "comment"],
                )?;
                string(&post["mimeType"], &at_rq)?;
                if post.get("text").is_none() && post.get("params").is_none() {
                    return Err(format!("{at_rq}.postData has neither text nor params"));
                }
            }

            let rs = &e["response"];
            let at_rs = format!("{at}.response");
            keys(
                rs,
                &at_rs,
                &[
                    "status",
                    "statusText",
                    "httpVersion",
                    "cookies",
                    "headers",
                    "content",
                    "redirectURL",
                    "headersSize",
                    "bodySize",
                ],
                &["comment"],
            )?;
            number(&rs["status"], &at_rs, 0.0)?;
            string(&rs["statusText"], &at_rs)?;
            string(&rs["httpVersion"], &at_rs)?;
            name_values(
                &rs["cookies"],
                &format!("{at_rs}.cookies"),
                &["path", "domain", "expires", "httpOnly", "secure"],
            )?;
            name_values(&rs["headers"], &format!("{at_rs}.headers"), &[])?;
            let content = &rs["content"];
            keys(
                content,
                &format!("{at_rs}.content"),
                &["size", "mimeType"],
                &["compression", "text", "encoding", "comment"],
            )?;
            number(&content["size"], &at_rs, 0.0)?;
            string(&content["mimeType"], &at_rs)?;
            string(&rs["redirectURL"], &at_rs)?;
            number(&rs["headersSize"], &at_rs, -1.0)?;
            number(&rs["bodySize"], &at_rs, -1.0)?;

            keys(
                &e["cache"],
                &format!("{at}.cache"),
                &[],
                &["beforeRequest", "afterRequest", "comment"],
            )?;

            let t = &e["timings"];
            let at_t = format!("{at}.timings");
            keys(
                t,
                &at_t,
                &["send", "wait", "receive"],
                &["blocked", "dns", "connect", "ssl", "comment"],
            )?;
            let mut sum = 0.0;
            for key in ["send", "wait", "receive"] {
                sum += number(&t[key], &format!("{at_t}.{key}"), 0.0)?;
            }
            for key in ["blocked", "dns", "connect", "ssl"] {
                if let Some(v) = t.get(key) {
                    let n = number(v, &format!("{at_t}.{key}"), -1.0)?;
                    // ssl is part of connect, so it is not added again (HAR 1.2).
                    if n >= 0.0 && key != "ssl" {
                        sum += n;
                    }
                }
            }
            if (sum - time).abs() > 1e-6 {
                return Err(format!(
                    "{at}.time {time} is not the sum of its timings {sum}"
                ));
            }
        }
        Ok(())
    }
}
