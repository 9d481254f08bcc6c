//! `scimguard check FILE…`: judges requests against the rules with no network, for an
//! IdP-mapping CI pipeline. Every request goes through [`crate::verdict::judge`] in
//! enforce mode, exactly as the proxy would judge it.
//!
//! A file holds one of (detected from its content, not its name):
//!
//! | input | looks like |
//! |---|---|
//! | a capture (`--record`) | JSON lines, each a [`Record`](crate::record::Record): its request as received is checked |
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
use serde_json::{json, Value};

use crate::record::RecordedRequest;
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

/// An input file's requests, labelled (`FILE:LINE`, `FILE[i]` or `FILE`), and the
/// lines skipped on the way (a capture's cut last line or a corrupt line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    pub requests: Vec<(String, OfflineRequest)>,
    /// One line per skipped line, naming the file and line.
    pub warnings: Vec<String>,
}

/// Reads one input file. Without `strict`, JSON lines that are cut (the last) or
/// corrupt are skipped with a warning, as every capture reader does
/// ([`crate::record::read`]).
pub fn read_inputs(path: &Path, strict: bool) -> Result<Inputs, InputError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| InputError {
        file: origin.clone(),
        line: None,
        message: format!("cannot read the file: {e}"),
    })?;
    parse(&bytes, &origin, strict)
}

/// Parses an input's bytes strictly; `origin` names it in labels and errors.
pub fn parse_inputs(
    bytes: &[u8],
    origin: &str,
) -> Result<Vec<(String, OfflineRequest)>, InputError> {
    parse(bytes, origin, true).map(|inputs| inputs.requests)
}

/// Parses an input's bytes; `origin` names it in labels, warnings and errors.
pub fn parse(bytes: &[u8], origin: &str, strict: bool) -> Result<Inputs, InputError> {
    let error = |line: Option<usize>, message: String| InputError {
        file: origin.to_owned(),
        line,
        message,
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let inputs = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(error(None, "the file is empty".into())),
        Some(b'{') | Some(b'[') => json::parse_json(bytes, origin, strict)?,
        Some(_) => Inputs {
            requests: raw::parse_raw(bytes, origin)?,
            warnings: Vec::new(),
        },
    };
    if inputs.requests.is_empty() {
        return Err(error(None, "the file holds no request".into()));
    }
    Ok(inputs)
}

mod json;
mod raw;

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
///
/// Without `strict`, a capture's cut last line or a corrupt line is skipped with a
/// warning on stderr and does not change the code.
pub fn check_files(rules: &RuleSet, files: &[PathBuf], format: Format, strict: bool) -> CheckRun {
    let mut inputs = Vec::new();
    let mut stderr = String::new();
    let mut unreadable = false;
    for file in files {
        match read_inputs(file, strict) {
            Ok(read) => {
                inputs.extend(read.requests);
                for warning in read.warnings {
                    stderr.push_str(&format!("scimguard check: warning: {warning}\n"));
                }
            }
            Err(e) => {
                unreadable = true;
                stderr.push_str(&format!("scimguard check: {e}\n"));
            }
        }
    }
    let (stdout, code) = check(rules, &inputs, format);
    CheckRun {
        code: if unreadable { EXIT_UNREADABLE } else { code },
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
mod tests;
