//! `scimguard check FILE…`: judges requests against the rules with no network, for an
//! IdP-mapping CI pipeline. Every request goes through [`crate::verdict::judge`] in
//! enforce mode, exactly as the proxy would judge it.
//!
//! A file holds one of (detected from its content, not its name):
//!
//! | input | looks like |
//! |---|---|
//! | a capture (`--record`) | JSON lines, each a [`Record`]: its request as received is checked |
//! | a request file | one JSON object `{"method", "path", "query"?, "headers"?, "body"?}`, or an array of them |
//! | JSON lines of request objects | one request object per line (mixing in records is fine) |
//! | raw HTTP/1.1 | request line, headers, blank line, body; CRLF or LF; several requests when each body's length is known |
//!
//! A request file's `query` is the raw query string as sent on the wire
//! (`filter=userName%20eq%20%22x%22`), or may come with the `path` after a `?`;
//! `headers` is an object (`{"Content-Type": "…"}`) or a list of `[name, value]` pairs
//! or `{"name", "value"}` objects; `body` is the JSON body itself, or a string taken as
//! the body's exact text (to check a body that is not valid JSON).
//!
//! A raw request's body is its Content-Length bytes, or its chunks under
//! `Transfer-Encoding: chunked`; with neither, the rest of the file unless that starts
//! with another request line, with the final line break an editor adds removed.
//!
//! Exit codes: [`EXIT_CLEAN`] when nothing would be rejected (forwarded, rewritten or
//! warned), [`EXIT_REJECTED`] when anything would be, [`EXIT_UNREADABLE`] when an input
//! cannot be read (the others are still checked and reported).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::record::{check_version, json_message, Record, RecordedRequest};
use crate::rules::{Mode, RuleSet};
use crate::verdict::{judge, Verdict};

/// Nothing would be rejected.
pub const EXIT_CLEAN: i32 = 0;
/// At least one request would be rejected.
pub const EXIT_REJECTED: i32 = 1;
/// An input could not be read or parsed.
pub const EXIT_UNREADABLE: i32 = 2;

/// A request to check, as it would arrive at the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineRequest {
    pub method: String,
    /// The path as on the wire.
    pub path: String,
    /// The raw query string as on the wire, without its `?`.
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OfflineRequest {
    /// The path with its query, as [`crate::verdict::judge`] takes it.
    pub fn target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

impl From<&RecordedRequest> for OfflineRequest {
    fn from(r: &RecordedRequest) -> Self {
        OfflineRequest {
            method: r.method.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            headers: r.headers.clone(),
            body: r.body.as_bytes().to_vec(),
        }
    }
}

/// An input that cannot be read, with the file and (when it is known) the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct InputError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// One line per request, findings indented below, a summary line.
    #[default]
    Text,
    /// An array with one object per request.
    Json,
}

/// Reads one input file into labelled requests (`FILE:LINE`, `FILE[i]` or `FILE`).
pub fn read_inputs(path: &Path) -> Result<Vec<(String, OfflineRequest)>, InputError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| InputError {
        file: origin.clone(),
        line: None,
        message: format!("cannot read the file: {e}"),
    })?;
    parse_inputs(&bytes, &origin)
}

/// Parses an input's bytes; `origin` names it in labels and errors.
pub fn parse_inputs(
    bytes: &[u8],
    origin: &str,
) -> Result<Vec<(String, OfflineRequest)>, InputError> {
    let error = |line: Option<usize>, message: String| InputError {
        file: origin.to_owned(),
        line,
        message,
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let requests = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(error(None, "the file is empty".into())),
        Some(b'{') | Some(b'[') => parse_json(bytes, origin)?,
        Some(_) => parse_raw(bytes, origin)?,
    };
    if requests.is_empty() {
        return Err(error(None, "the file holds no request".into()));
    }
    Ok(requests)
}

// ---------------------------------------------------------------------------------
// JSON inputs
// ---------------------------------------------------------------------------------

fn parse_json(bytes: &[u8], origin: &str) -> Result<Vec<(String, OfflineRequest)>, InputError> {
    let error = |line: Option<usize>, message: String| InputError {
        file: origin.to_owned(),
        line,
        message,
    };
    // Elements are kept as their raw text: a record's `json` bodies must be read back
    // from the very bytes written, which a parsed `Value` no longer has.
    match serde_json::from_slice::<&RawValue>(bytes) {
        Ok(whole) if whole.get().starts_with('[') => {
            let items: Vec<&RawValue> = serde_json::from_str(whole.get())
                .map_err(|e| error(Some(e.line()), json_message(&e)))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    json_input(item.get())
                        .map(|r| (format!("{origin}[{i}]"), r))
                        .map_err(|m| error(None, format!("element {i}: {m}")))
                })
                .collect()
        }
        Ok(whole) => json_input(whole.get())
            .map(|r| vec![(origin.to_owned(), r)])
            .map_err(|m| error(None, m)),
        Err(whole) => {
            // Several documents: JSON lines, when the first line stands alone.
            let first_line_alone = bytes
                .split(|&b| b == b'\n')
                .find(|l| !l.iter().all(u8::is_ascii_whitespace))
                .is_some_and(|l| serde_json::from_slice::<&RawValue>(l).is_ok());
            if !first_line_alone {
                return Err(error(Some(whole.line()), json_message(&whole)));
            }
            let mut requests = Vec::new();
            for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let text = serde_json::from_slice::<&RawValue>(line)
                    .map_err(|e| error(Some(i + 1), json_message(&e)))?;
                let request = json_input(text.get()).map_err(|m| error(Some(i + 1), m))?;
                requests.push((format!("{origin}:{}", i + 1), request));
            }
            Ok(requests)
        }
    }
}

/// A record (an object with `version` and `request`) or a request object, from the
/// text of one JSON value.
fn json_input(text: &str) -> Result<OfflineRequest, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| json_message(&e))?;
    let Some(map) = value.as_object() else {
        return Err("expected a request object {\"method\", \"path\", …} or a record".into());
    };
    if map.contains_key("version") && map.contains_key("request") {
        let record: Record =
            serde_json::from_str(text).map_err(|e| format!("not a record: {e}"))?;
        check_version(record.version)?;
        return Ok(OfflineRequest::from(&record.request));
    }
    request_object(map)
}

const REQUEST_FIELDS: [&str; 5] = ["method", "path", "query", "headers", "body"];

fn request_object(map: &serde_json::Map<String, Value>) -> Result<OfflineRequest, String> {
    if let Some(unknown) = map.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{unknown}`; a request has {}",
            REQUEST_FIELDS.join(", ")
        ));
    }
    let method = match map.get("method") {
        Some(Value::String(m)) if is_token(m) => m.clone(),
        Some(Value::String(m)) => return Err(format!("`method` `{m}` is not an HTTP method")),
        Some(_) => return Err("`method` must be a string".into()),
        None => return Err("`method` is missing".into()),
    };
    let target = match map.get("path") {
        Some(Value::String(p)) if p.starts_with('/') => p.clone(),
        Some(Value::String(p)) => {
            return Err(format!(
                "`path` `{p}` must start with `/` (e.g. /scim/v2/Users)"
            ))
        }
        Some(_) => return Err("`path` must be a string".into()),
        None => return Err("`path` is missing".into()),
    };
    let (path, path_query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target, None),
    };
    let query = match map.get("query") {
        None | Some(Value::Null) => path_query,
        Some(Value::String(q)) if path_query.is_none() => {
            Some(q.strip_prefix('?').unwrap_or(q).to_owned())
        }
        Some(Value::String(_)) => {
            return Err("the query is given twice: in `path` after `?` and in `query`".into())
        }
        Some(_) => return Err("`query` must be a string (the raw query string)".into()),
    };
    let headers = match map.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(h) => headers_from_json(h)?,
    };
    let body = match map.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => serde_json::to_vec(other).map_err(|e| e.to_string())?,
    };
    Ok(OfflineRequest {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn headers_from_json(value: &Value) -> Result<Vec<(String, String)>, String> {
    let text = |v: &Value, what: &str| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("header {what} must be a string"))
    };
    match value {
        Value::Object(map) => {
            let mut out = Vec::new();
            for (name, v) in map {
                match v {
                    Value::Array(values) => {
                        for v in values {
                            out.push((name.clone(), text(v, "value")?));
                        }
                    }
                    v => out.push((name.clone(), text(v, "value")?)),
                }
            }
            Ok(out)
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    Ok((text(&pair[0], "name")?, text(&pair[1], "value")?))
                }
                Value::Object(o) if o.len() == 2 => match (o.get("name"), o.get("value")) {
                    (Some(n), Some(v)) => Ok((text(n, "name")?, text(v, "value")?)),
                    _ => Err("a header object is {\"name\": …, \"value\": …}".to_owned()),
                },
                _ => Err("each header is [name, value] or {\"name\", \"value\"}".to_owned()),
            })
            .collect(),
        _ => Err("`headers` must be an object or a list of [name, value] pairs".into()),
    }
}

// ---------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------

/// RFC 9110 §5.6.2 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A cursor over the file that knows its line number.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The 1-based line `pos` is on.
    line: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos.min(self.bytes.len())..]
    }

    /// The next line without its LF or CRLF, and its line number; `None` at the end.
    fn line(&mut self) -> Option<(usize, &'a [u8])> {
        if self.at_end() {
            return None;
        }
        let rest = self.rest();
        let (line, advance) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], at + 1),
            None => (rest, rest.len()),
        };
        let number = self.line;
        self.pos += advance;
        self.line += 1;
        Some((number, line.strip_suffix(b"\r").unwrap_or(line)))
    }

    /// Takes `n` bytes.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let rest = self.rest();
        let taken = rest.get(..n)?;
        self.pos += n;
        self.line += taken.iter().filter(|&&b| b == b'\n').count();
        Some(taken)
    }

    fn skip_whitespace(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if !b.is_ascii_whitespace() {
                break;
            }
            if b == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
    }
}

/// Whether `bytes` starts with what looks like a request line (`TOKEN SP /…` or
/// `TOKEN SP http…`), to tell a following request from a body.
fn starts_with_request_line(bytes: &[u8]) -> bool {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let mut parts = line.split_ascii_whitespace();
    match (parts.next(), parts.next()) {
        (Some(method), Some(target)) => {
            is_token(method)
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && (target.starts_with('/') || target.to_ascii_lowercase().starts_with("http"))
        }
        _ => false,
    }
}

fn parse_raw(bytes: &[u8], origin: &str) -> Result<Vec<(String, OfflineRequest)>, InputError> {
    let error = |line: usize, message: String| InputError {
        file: origin.to_owned(),
        line: Some(line),
        message,
    };
    let mut cursor = Cursor {
        bytes,
        pos: 0,
        line: 1,
    };
    let mut requests = Vec::new();
    loop {
        cursor.skip_whitespace();
        let Some((start, request_line)) = cursor.line() else {
            break;
        };
        let request_line = std::str::from_utf8(request_line)
            .map_err(|_| error(start, "the request line is not UTF-8".into()))?;
        let (method, path, query) =
            parse_request_line(request_line).map_err(|m| error(start, m))?;
        let mut headers = Vec::new();
        while let Some((number, line)) = cursor.line() {
            if line.is_empty() {
                break;
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| error(number, "the header line is not UTF-8".into()))?;
            headers.push(parse_header(line).map_err(|m| error(number, m))?);
        }
        let body_line = cursor.line;
        let body = read_body(&mut cursor, &headers).map_err(|m| error(body_line, m))?;
        requests.push((
            format!("{origin}:{start}"),
            OfflineRequest {
                method,
                path,
                query,
                headers,
                body,
            },
        ));
    }
    Ok(requests)
}

fn parse_request_line(line: &str) -> Result<(String, String, Option<String>), String> {
    let parts: Vec<&str> = line.split_ascii_whitespace().collect();
    let (method, target) = match parts.as_slice() {
        [method, target] => (*method, *target),
        [method, target, version] if version.starts_with("HTTP/") => (*method, *target),
        _ => {
            return Err(format!(
                "`{line}` is not a request line; expected `METHOD /path HTTP/1.1`"
            ))
        }
    };
    if !is_token(method) {
        return Err(format!("`{method}` is not an HTTP method"));
    }
    let target = target.split('#').next().unwrap_or_default();
    let origin_form = if target.starts_with('/') {
        target.to_owned()
    } else {
        let lower = target.to_ascii_lowercase();
        let after_scheme = ["http://", "https://"]
            .iter()
            .find(|s| lower.starts_with(*s))
            .map(|s| &target[s.len()..])
            .ok_or_else(|| {
                format!(
                    "the target `{target}` is neither a path (/scim/v2/Users) nor an http(s) URL"
                )
            })?;
        match after_scheme.find(['/', '?']) {
            Some(at) if after_scheme[at..].starts_with('/') => after_scheme[at..].to_owned(),
            Some(at) => format!("/{}", &after_scheme[at..]),
            None => "/".to_owned(),
        }
    };
    let (path, query) = match origin_form.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (origin_form, None),
    };
    Ok((method.to_owned(), path, query))
}

fn parse_header(line: &str) -> Result<(String, String), String> {
    if line.starts_with([' ', '\t']) {
        return Err(
            "a header line folded onto the previous one is obsolete (RFC 9112 §5.2); join it"
                .into(),
        );
    }
    let (name, value) = line.split_once(':').ok_or_else(|| {
        format!("`{line}` is not a header (`Name: value`); a blank line must end the headers")
    })?;
    if !is_token(name) {
        return Err(format!("`{name}` is not a header name"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn read_body(cursor: &mut Cursor<'_>, headers: &[(String, String)]) -> Result<Vec<u8>, String> {
    let lengths = header(headers, "content-length");
    let encodings = header(headers, "transfer-encoding");
    if !encodings.is_empty() {
        if !lengths.is_empty() {
            return Err("both Content-Length and Transfer-Encoding are given; keep one".into());
        }
        if encodings.len() != 1 || !encodings[0].eq_ignore_ascii_case("chunked") {
            return Err(format!(
                "Transfer-Encoding `{}` is not supported; use chunked or Content-Length",
                encodings.join(", ")
            ));
        }
        return read_chunked(cursor);
    }
    if let Some(first) = lengths.first() {
        let all_same = lengths.iter().all(|l| l == first);
        let length = first
            .parse::<usize>()
            .ok()
            .filter(|_| all_same && first.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("Content-Length `{}` is not one number", lengths.join(", ")))?;
        let available = cursor.rest().len();
        return cursor.take(length).map(<[u8]>::to_vec).ok_or_else(|| {
            format!("Content-Length says {length} bytes but only {available} follow")
        });
    }
    // Neither: no body when another request follows, else the rest of the file.
    let rest = cursor.rest();
    let start = rest
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    if start == rest.len() || starts_with_request_line(&rest[start..]) {
        return Ok(Vec::new());
    }
    let body = cursor.take(rest.len()).unwrap_or_default();
    // The line break an editor ends a file with is not part of the body.
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    Ok(body.to_vec())
}

/// RFC 9112 §7.1: hex size lines (extensions ignored), data, a last chunk of 0 and
/// optional trailer lines up to a blank line.
fn read_chunked(cursor: &mut Cursor<'_>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let (number, line) = cursor
            .line()
            .ok_or("the chunked body ends before its last chunk (a `0` line)")?;
        let line = std::str::from_utf8(line).unwrap_or_default();
        let size_text = line.split(';').next().unwrap_or_default().trim();
        // 15 hex digits are far beyond any file; more would overflow.
        let size = (!size_text.is_empty() && size_text.len() <= 15)
            .then(|| usize::from_str_radix(size_text, 16).ok())
            .flatten()
            .ok_or_else(|| format!("line {number}: `{line}` is not a chunk size in hex"))?;
        if size == 0 {
            while let Some((_, trailer)) = cursor.line() {
                if trailer.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        let available = cursor.rest().len();
        let data = cursor.take(size).ok_or_else(|| {
            format!("a chunk of {size} bytes (line {number}) has only {available} bytes left")
        })?;
        body.extend_from_slice(data);
        match cursor.line() {
            Some((_, [])) => {}
            _ => {
                return Err(format!(
                    "the chunk of {size} bytes at line {number} is not followed by a line break"
                ))
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------------

/// One request's outcome, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct Outcome<'a> {
    label: &'a str,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    operation: &'static str,
    verdict: &'static str,
    findings: Vec<crate::rules::Finding>,
    /// The error the proxy would answer, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection: Option<Value>,
    /// The body the proxy would forward, when rewritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    rewritten: Option<Value>,
    /// Follow-up requests of a split, when rewritten into several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    batches: Vec<crate::batches::Batch>,
}

/// Checks every request (enforce mode) and renders the outcome; the code is
/// [`EXIT_REJECTED`] when any would be rejected, else [`EXIT_CLEAN`].
pub fn check(
    rules: &RuleSet,
    inputs: &[(String, OfflineRequest)],
    format: Format,
) -> (String, i32) {
    let mut outcomes = Vec::with_capacity(inputs.len());
    for (label, request) in inputs {
        let judgement = judge(
            rules,
            Mode::Enforce,
            &request.method,
            &request.target(),
            &request.body,
        );
        let (rejection, rewritten, batches) = match &judgement.verdict {
            Verdict::Forward => (None, None, Vec::new()),
            Verdict::Reject(error) => (serde_json::to_value(error).ok(), None, Vec::new()),
            Verdict::Rewrite { body, batches } => (
                None,
                Some(
                    serde_json::from_slice(body)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into())),
                ),
                batches.clone(),
            ),
        };
        outcomes.push(Outcome {
            label,
            method: &request.method,
            path: &request.path,
            query: request.query.as_deref(),
            operation: judgement.classified.operation.name(),
            verdict: judgement.verdict.label(),
            findings: judgement.evaluation.findings,
            rejection,
            rewritten,
            batches,
        });
    }
    let code = if outcomes.iter().any(|o| o.verdict == "rejected") {
        EXIT_REJECTED
    } else {
        EXIT_CLEAN
    };
    let output = match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(&outcomes).unwrap_or_else(|_| "[]".into());
            text.push('\n');
            text
        }
        Format::Text => render_text(&outcomes),
    };
    (output, code)
}

fn render_text(outcomes: &[Outcome<'_>]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let target = match o.query {
            Some(q) => format!("{}?{q}", o.path),
            None => o.path.to_owned(),
        };
        out.push_str(&format!(
            "{}: {} {} → {}: {}",
            o.label, o.method, target, o.operation, o.verdict
        ));
        if !o.batches.is_empty() {
            out.push_str(&format!(" (split into {} requests)", o.batches.len() + 1));
        }
        out.push('\n');
        for f in &o.findings {
            out.push_str(&format!(
                "    {} [{}] at {}: {}\n",
                f.action, f.rule, f.location, f.message
            ));
            if let Some(fix) = &f.fix {
                out.push_str(&format!("        fix: {} → {}\n", fix.before, fix.after));
            }
            out.push_str(&format!("        source: {}\n", f.source));
        }
    }
    let count = |v: &str| outcomes.iter().filter(|o| o.verdict == v).count();
    out.push_str(&format!(
        "{} request(s) checked: {} forwarded, {} rewritten, {} rejected\n",
        outcomes.len(),
        count("forwarded"),
        count("rewritten"),
        count("rejected")
    ));
    out
}

/// The whole of `scimguard check`: what to print on stdout and stderr, and the exit
/// code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Reads every file and checks every request in them. An unreadable file is reported
/// on stderr and makes the code [`EXIT_UNREADABLE`]; the other files are still checked.
pub fn check_files(rules: &RuleSet, files: &[PathBuf], format: Format) -> CheckRun {
    let mut inputs = Vec::new();
    let mut stderr = String::new();
    for file in files {
        match read_inputs(file) {
            Ok(requests) => inputs.extend(requests),
            Err(e) => stderr.push_str(&format!("scimguard check: {e}\n")),
        }
    }
    let (stdout, code) = check(rules, &inputs, format);
    CheckRun {
        code: if stderr.is_empty() {
            code
        } else {
            EXIT_UNREADABLE
        },
        stdout,
        stderr,
    }
}

/// The example request file in the module docs, for `--help` texts and tests.
pub fn example_request() -> Value {
    json!({
        "method": "POST",
        "path": "/scim/v2/Users",
        "headers": {"Content-Type": "application/scim+json"},
        "body": {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "bjensen@example.com",
            "displayName": "Barbara Jensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Body, RecordedResponse, Timings, RECORD_VERSION};

    fn rules() -> RuleSet {
        RuleSet::embedded().unwrap()
    }

    fn parse(text: &str) -> Vec<(String, OfflineRequest)> {
        parse_inputs(text.as_bytes(), "f").unwrap()
    }

    fn parse_err(text: &[u8]) -> InputError {
        parse_inputs(text, "f").unwrap_err()
    }

    const GOOD_USER: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","displayName":"Babs","name":{"givenName":"Barbara","familyName":"Jensen"},"emails":[{"value":"b@example.com","type":"work","primary":true}],"active":true}"#;
    const NO_NAME_USER: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","displayName":"Babs","emails":[{"value":"b@example.com","type":"work","primary":true}]}"#;
    const TWO_EMAILS_USER: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bjensen","displayName":"Babs","name":{"givenName":"Barbara","familyName":"Jensen"},"emails":[{"value":"b@example.com","type":"work","primary":true},{"value":"c@example.com","type":"home"}]}"#;

    fn request(method: &str, target: &str, body: &str) -> OfflineRequest {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        OfflineRequest {
            method: method.into(),
            path,
            query,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn record_line(i: usize, body: &str) -> String {
        let record = Record {
            version: RECORD_VERSION,
            id: format!("{i:032x}"),
            time: "2024-05-01T00:00:00.000000Z".into(),
            tenant: None,
            operation: "CreateUser".into(),
            mode: "enforce".into(),
            verdict: "forwarded".into(),
            request: RecordedRequest {
                method: "POST".into(),
                path: "/t-1/scim/v2/Users".into(),
                query: None,
                headers: vec![("authorization".into(), "Bearer [REDACTED]".into())],
                body: Body::from(body),
            },
            forwarded: Vec::new(),
            response: Some(RecordedResponse {
                status: 201,
                headers: Vec::new(),
                body: Body::default(),
            }),
            findings: Vec::new(),
            error: None,
            timings: Timings::default(),
        };
        serde_json::to_string(&record).unwrap()
    }

    // --- reading ---

    #[test]
    fn reads_a_capture_as_json_lines() {
        let text = format!(
            "{}\n\n{}\n",
            record_line(0, GOOD_USER),
            record_line(1, NO_NAME_USER)
        );
        let inputs = parse(&text);
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[0].0, "f:1");
        assert_eq!(inputs[1].0, "f:3");
        assert_eq!(inputs[1].1.body, NO_NAME_USER.as_bytes());
        assert_eq!(inputs[0].1.path, "/t-1/scim/v2/Users");
        // A capture of a single record is one JSON document.
        assert_eq!(parse(&record_line(0, GOOD_USER)).len(), 1);
    }

    #[test]
    fn reads_request_files_in_every_shape() {
        let one = parse(&example_request().to_string());
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, "f");
        let r = &one[0].1;
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_deref()),
            ("POST", "/scim/v2/Users", None)
        );
        assert_eq!(
            r.headers,
            vec![(
                "Content-Type".to_owned(),
                "application/scim+json".to_owned()
            )]
        );
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["userName"], "bjensen@example.com");

        let list = parse(
            r#"[
              {"method": "GET", "path": "/scim/v2/Users", "query": "?filter=userName%20eq%20%22x%22"},
              {"method": "GET", "path": "/scim/v2/Users?count=5", "headers": [["Accept", "application/scim+json"], {"name": "X-A", "value": "1"}]},
              {"method": "POST", "path": "/scim/v2/Users", "body": "{not json"},
              {"method": "DELETE", "path": "/scim/v2/Users/1", "body": null, "headers": {"X-Multi": ["a", "b"]}}
            ]"#,
        );
        assert_eq!(list.len(), 4);
        assert_eq!(list[0].0, "f[0]");
        assert_eq!(
            list[0].1.query.as_deref(),
            Some("filter=userName%20eq%20%22x%22")
        );
        assert_eq!(list[1].1.query.as_deref(), Some("count=5"));
        assert_eq!(list[1].1.headers.len(), 2);
        assert_eq!(list[2].1.body, b"{not json");
        assert!(list[3].1.body.is_empty());
        assert_eq!(list[3].1.headers.len(), 2);

        let lines = parse(
            "{\"method\":\"GET\",\"path\":\"/Users\"}\n{\"method\":\"GET\",\"path\":\"/Groups\"}\n",
        );
        assert_eq!(
            lines.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
            ["f:1", "f:2"]
        );
    }

    #[test]
    fn json_errors_say_what_and_where() {
        let cases: [(&str, Option<usize>, &str); 10] = [
            (r#"{"method":"GET"}"#, None, "`path` is missing"),
            (r#"{"path":"/Users"}"#, None, "`method` is missing"),
            (
                r#"{"method":"GET","path":"Users"}"#,
                None,
                "must start with `/`",
            ),
            (
                r#"{"method":"G T","path":"/Users"}"#,
                None,
                "not an HTTP method",
            ),
            (
                r#"{"method":"GET","path":"/Users","heders":{}}"#,
                None,
                "unknown field `heders`",
            ),
            (
                r#"{"method":"GET","path":"/U?a=1","query":"b=2"}"#,
                None,
                "given twice",
            ),
            (
                r#"{"method":"GET","path":"/U","headers":"x"}"#,
                None,
                "`headers` must be",
            ),
            (r#"[1]"#, None, "element 0"),
            (
                "{\"method\":\"GET\",\n\"path\": }",
                Some(2),
                "expected value",
            ),
            (
                "{\"method\":\"GET\",\"path\":\"/U\"}\n{\"method\":\"GET\"}\n",
                Some(2),
                "`path` is missing",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse_err(text.as_bytes());
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
        let e = parse_err(
            record_line(0, "{}")
                .replace("\"version\":2", "\"version\":7")
                .as_bytes(),
        );
        assert!(e.message.contains("version 7"), "{e}");
        let e = parse_err(b"  \n ");
        assert_eq!(e.to_string(), "f: the file is empty");
        assert_eq!(parse_err(b"[]").message, "the file holds no request");
    }

    #[test]
    fn reads_raw_http_with_crlf_lf_chunks_and_several_requests() {
        let crlf = format!(
            "POST /t-1/scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n{GOOD_USER}",
            GOOD_USER.len()
        );
        let one = parse(&crlf);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, "f:1");
        assert_eq!(one[0].1.body, GOOD_USER.as_bytes());
        assert_eq!(
            one[0].1.headers[1],
            ("Content-Type".into(), "application/scim+json".into())
        );

        // LF, no Content-Length: the rest of the file less its final line break.
        let lf = format!(
            "\nPOST /scim/v2/Users HTTP/1.1\nContent-Type: application/json\n\n{GOOD_USER}\n"
        );
        let one = parse(&lf);
        assert_eq!(one[0].0, "f:2");
        assert_eq!(one[0].1.body, GOOD_USER.as_bytes());

        // Several: a GET without a body, then lengths, then chunks, then an absolute URL.
        let several = "GET /scim/v2/Users?filter=userName%20eq%20%22x%22 HTTP/1.1\nHost: x\n\n\
             PATCH /scim/v2/Groups/g HTTP/1.1\nContent-Length: 2\n\n{}\n\
             POST /scim/v2/Users HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\nX-Trailer: y\r\n\r\n\
             GET https://scim.us-east-1.amazonaws.com/t-1/scim/v2/Groups?count=1#frag HTTP/1.1\n\n\
             DELETE http://h?x=1\n";
        let all = parse(several);
        assert_eq!(all.len(), 5, "{all:?}");
        assert_eq!(
            all[0].1.query.as_deref(),
            Some("filter=userName%20eq%20%22x%22")
        );
        assert!(all[0].1.body.is_empty());
        assert_eq!(all[1].0, "f:4");
        assert_eq!(all[1].1.body, b"{}");
        assert_eq!(all[2].1.body, br#"{"a": 1}"#);
        assert_eq!(all[3].1.path, "/t-1/scim/v2/Groups");
        assert_eq!(all[3].1.query.as_deref(), Some("count=1"));
        assert_eq!(
            (all[4].1.path.as_str(), all[4].1.query.as_deref()),
            ("/", Some("x=1"))
        );
        assert_eq!(all[4].0, "f:20");
    }

    #[test]
    fn raw_errors_say_what_and_where() {
        let cases: [(&[u8], usize, &str); 10] = [
            (b"hello big world\n", 1, "not a request line"),
            (b"GET Users HTTP/1.1\n\n", 1, "neither a path"),
            (b"G@T /Users HTTP/1.1\n\n", 1, "not an HTTP method"),
            (b"GET /Users HTTP/1.1\nHost x\n\n", 2, "not a header"),
            (b"GET /Users HTTP/1.1\nA: b\n  folded\n\n", 3, "folded"),
            (
                b"POST /Users HTTP/1.1\nContent-Length: 50\n\n{}",
                4,
                "only 2 follow",
            ),
            (
                b"POST /Users HTTP/1.1\nContent-Length: x\n\n{}",
                4,
                "not one number",
            ),
            (
                b"POST /Users HTTP/1.1\nContent-Length: 2\nContent-Length: 3\n\n{}",
                5,
                "not one number",
            ),
            (
                b"POST /Users HTTP/1.1\nTransfer-Encoding: chunked\n\nzz\n",
                4,
                "not a chunk size",
            ),
            (
                b"POST /Users HTTP/1.1\nTransfer-Encoding: gzip\n\n",
                4,
                "not supported",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse_err(text);
            assert_eq!(e.line, Some(line), "{e}");
            assert!(e.message.contains(needle), "{e}");
            assert!(e.to_string().starts_with(&format!("f:{line}: ")), "{e}");
        }
        for text in [
            &b"POST /U HTTP/1.1\nTransfer-Encoding: chunked\n\n5\nab"[..],
            b"POST /U HTTP/1.1\nTransfer-Encoding: chunked\n\n2\nabc\n0\n\n",
            b"POST /U HTTP/1.1\nTransfer-Encoding: chunked\n\n",
            b"POST /U HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked\n\nx",
            b"GET /U HTTP/1.1\nX: \xff\n\n",
            b"\xff\xfe /U\n",
        ] {
            assert!(
                parse_inputs(text, "f").is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn unreadable_files_are_input_errors() {
        let e = read_inputs(Path::new("/nonexistent/requests.json")).unwrap_err();
        assert_eq!(e.file, "/nonexistent/requests.json");
        assert!(e.message.starts_with("cannot read the file"));
    }

    // --- checking ---

    #[test]
    fn exit_codes_follow_the_worst_verdict() {
        let rules = rules();
        let clean = [("a".to_owned(), request("POST", "/scim/v2/Users", GOOD_USER))];
        let rewritten = [(
            "b".to_owned(),
            request("POST", "/scim/v2/Users", TWO_EMAILS_USER),
        )];
        let rejected = [(
            "c".to_owned(),
            request("POST", "/scim/v2/Users", NO_NAME_USER),
        )];
        assert_eq!(check(&rules, &clean, Format::Text).1, EXIT_CLEAN);
        assert_eq!(check(&rules, &rewritten, Format::Text).1, EXIT_CLEAN);
        assert_eq!(check(&rules, &rejected, Format::Text).1, EXIT_REJECTED);
        let mixed: Vec<_> = clean
            .iter()
            .chain(&rewritten)
            .chain(&rejected)
            .cloned()
            .collect();
        assert_eq!(check(&rules, &mixed, Format::Json).1, EXIT_REJECTED);
        assert_eq!(check(&rules, &[], Format::Text).1, EXIT_CLEAN);
        // A GET with a broken filter is judged from its query as on the wire.
        let bad_filter = [(
            "d".to_owned(),
            request("GET", "/scim/v2/Users?filter=userName%20eq", ""),
        )];
        let (text, code) = check(&rules, &bad_filter, Format::Text);
        assert_eq!(code, EXIT_REJECTED, "{text}");
    }

    #[test]
    fn text_output_explains_each_request() {
        let rules = rules();
        let inputs = [
            (
                "ok.json".to_owned(),
                request("POST", "/scim/v2/Users", GOOD_USER),
            ),
            (
                "two.json".to_owned(),
                request("POST", "/scim/v2/Users", TWO_EMAILS_USER),
            ),
            (
                "bad.json".to_owned(),
                request("POST", "/scim/v2/Users", NO_NAME_USER),
            ),
        ];
        let (text, _) = check(&rules, &inputs, Format::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ok.json: POST /scim/v2/Users → CreateUser: forwarded"
        );
        assert!(
            text.contains("two.json: POST /scim/v2/Users → CreateUser: rewritten"),
            "{text}"
        );
        assert!(text.contains("        fix: "), "{text}");
        assert!(
            text.contains("bad.json: POST /scim/v2/Users → CreateUser: rejected"),
            "{text}"
        );
        assert!(text.contains("    reject [user.required] at "), "{text}");
        assert!(
            text.contains("        source: CreateUser › Constraints"),
            "{text}"
        );
        assert_eq!(
            *lines.last().unwrap(),
            "3 request(s) checked: 1 forwarded, 1 rewritten, 1 rejected"
        );
    }

    #[test]
    fn json_output_has_the_same_data() {
        let rules = rules();
        let inputs = [
            (
                "two".to_owned(),
                request("POST", "/scim/v2/Users", TWO_EMAILS_USER),
            ),
            (
                "bad".to_owned(),
                request("POST", "/scim/v2/Users?x=1", NO_NAME_USER),
            ),
        ];
        let (text, code) = check(&rules, &inputs, Format::Json);
        assert_eq!(code, EXIT_REJECTED);
        let v: Value = serde_json::from_str(&text).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["verdict"], "rewritten");
        assert_eq!(items[0]["operation"], "CreateUser");
        assert!(items[0]["rewritten"]["emails"].as_array().is_some());
        assert!(items[0]["findings"][0]["fix"]["before"].is_string());
        assert_eq!(items[1]["verdict"], "rejected");
        assert_eq!(items[1]["query"], "x=1");
        assert_eq!(items[1]["rejection"]["status"], "400");
        assert!(items[1]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "user.required" && f["action"] == "reject"));
        assert!(items[1].get("rewritten").is_none());
    }

    #[test]
    fn check_files_reports_unreadable_inputs_with_code_2_and_checks_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.http");
        std::fs::write(
            &good,
            format!(
                "POST /scim/v2/Users HTTP/1.1\nContent-Length: {}\n\n{GOOD_USER}",
                GOOD_USER.len()
            ),
        )
        .unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"method\": \"GET\",\n \"path\": 3}").unwrap();
        let capture = dir.path().join("capture.jsonl");
        std::fs::write(
            &capture,
            format!(
                "{}\n{}\n",
                record_line(0, GOOD_USER),
                record_line(1, NO_NAME_USER)
            ),
        )
        .unwrap();
        let rules = rules();

        let run = check_files(&rules, std::slice::from_ref(&good), Format::Text);
        assert_eq!((run.code, run.stderr.as_str()), (EXIT_CLEAN, ""));
        assert!(run.stdout.contains("good.http:1: POST"), "{}", run.stdout);

        let run = check_files(&rules, &[good.clone(), capture.clone()], Format::Text);
        assert_eq!(run.code, EXIT_REJECTED);
        assert!(
            run.stdout
                .contains("capture.jsonl:2: POST /t-1/scim/v2/Users → CreateUser: rejected"),
            "{}",
            run.stdout
        );

        let missing = dir.path().join("missing.json");
        let run = check_files(&rules, &[good, bad.clone(), missing, capture], Format::Json);
        assert_eq!(run.code, EXIT_UNREADABLE);
        assert!(
            run.stderr
                .contains(&format!("{}: `path` must be a string", bad.display())),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("missing.json: cannot read the file"),
            "{}",
            run.stderr
        );
        let checked: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            checked.as_array().unwrap().len(),
            3,
            "the readable files are still checked"
        );
    }

    #[test]
    fn a_capture_written_by_the_recorder_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.jsonl");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let recorder =
                crate::record::Recorder::open(&path, crate::record::RecordOptions::default())
                    .unwrap();
            for (i, body) in [GOOD_USER, TWO_EMAILS_USER, NO_NAME_USER]
                .iter()
                .enumerate()
            {
                let line = record_line(i, body);
                recorder.record(serde_json::from_str(&line).unwrap());
            }
            recorder.close().await;
        });
        let run = check_files(&rules(), &[path], Format::Text);
        assert_eq!(run.code, EXIT_REJECTED, "{}", run.stdout);
        assert!(
            run.stdout
                .ends_with("3 request(s) checked: 1 forwarded, 1 rewritten, 1 rejected\n"),
            "{}",
            run.stdout
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_inputs(&bytes, "fuzz");
        }

        #[test]
        fn raw_http_like_input_never_panics(
            text in "(GET|POST|PATCH) (/[a-zA-Z?=%&]{0,10}|https?://[a-z/?]{0,8}) HTTP/1.1\r?\n([A-Za-z-]{1,12}: ?[0-9a-z ;]{0,6}\r?\n){0,4}\r?\n[0-9a-f{}\r\n;\"]{0,40}"
        ) {
            let _ = parse_inputs(text.as_bytes(), "fuzz");
            let _ = parse_inputs(format!("{text}\nTransfer-Encoding: chunked\n\n").as_bytes(), "fuzz");
        }

        #[test]
        fn checking_any_request_never_panics(
            method in "GET|POST|PUT|PATCH|DELETE",
            target in "/[a-zA-Z0-9/?=%&.\"]{0,30}",
            body in "\\PC{0,60}"
        ) {
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                None => (target.clone(), None),
            };
            let request = OfflineRequest { method, path, query, headers: Vec::new(), body: body.into_bytes() };
            let (_, code) = check(&rules(), &[("p".into(), request)], Format::Json);
            proptest::prop_assert!(code == EXIT_CLEAN || code == EXIT_REJECTED);
        }
    }
}
