//! One exchange as the live view and the report show it: an [`Entry`], built from a
//! capture's [`Record`] after [`redacted`] (the same redaction every capture gets), with
//! its subject, a one-line summary in plain words, the rewrite as a diff and the request
//! as a `curl` command. Pure: the view and the report differ only in where records come
//! from.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

use crate::record::{Body, Record, RecordedRequest, Timings, REDACTED};

/// Bodies are shown up to 64 KiB each: a SCIM resource is a few KiB, a page of 100
/// users about 100 KiB; a ring of 1000 exchanges then stays under ~200 MiB at worst.
pub const MAX_SHOWN_BODY_BYTES: usize = 64 * 1024;

/// Names learned from responses, so a PATCH to `/Groups/{id}` reads "group Finance".
/// At most 10,000 ids (oldest forgotten first): a few MiB at most.
pub const MAX_KNOWN_NAMES: usize = 10_000;

/// A record as every output redacts it: [`crate::redact`], THE one redaction (tokens,
/// cookies, passwords, secrets quoted in free text; PII hashed with `pii_salt`), applied
/// to a whole record as the recorder applies it.
pub fn redacted(record: &mut Record, pii_salt: Option<&[u8]>) {
    crate::record::sanitize(record, pii_salt);
}

/// What the pipeline knows that a capture does not hold: the rules' hints, the throttle's
/// decision and AWS's answer as the pipeline read it.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub hints: Vec<String>,
    pub throttle: Option<String>,
    pub upstream: Option<Upstream>,
    /// Whose fault an error was: `client`, `upstream` or `proxy`.
    pub blame: Option<&'static str>,
}

/// AWS's answer (or the emulator's), when the request reached the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    pub status: u16,
    /// The SCIM error's `detail`, when AWS refused.
    pub detail: Option<String>,
    /// `x-amzn-RequestId`, to look the call up in CloudTrail.
    pub request_id: Option<String>,
}

/// The user or group an exchange concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// `user` or `group`.
    pub kind: &'static str,
    /// userName / displayName when known, else the id.
    pub name: String,
    pub id: Option<String>,
}

/// A request as shown: its body as text (JSON pretty-printed), bounded.
#[derive(Debug, Clone, Serialize)]
pub struct ShownRequest {
    pub method: String,
    /// Path and query as on the wire.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShownResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// One line of the original-versus-rewritten diff: `=` kept, `-` removed, `+` added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub op: &'static str,
    pub text: String,
}

/// One exchange, as the page renders it (every value as text: the page never parses
/// markup from it).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Order of arrival in the view (the report: position after merging by time).
    pub seq: u64,
    pub id: String,
    pub time: String,
    /// Which scimguard recorded it (`--replica-name`), when the capture says.
    pub replica: Option<String>,
    pub tenant: Option<String>,
    pub operation: String,
    pub mode: String,
    pub verdict: String,
    /// The status the client got.
    pub status: Option<u16>,
    pub subject: Option<Subject>,
    pub summary: String,
    /// The ids of the rules that fired, in order, each once.
    pub rules: Vec<String>,
    pub findings: Vec<Value>,
    pub hints: Vec<String>,
    pub upstream: Option<Upstream>,
    pub throttle: Option<String>,
    pub error: Option<String>,
    /// Whose fault the error was, when the pipeline knew.
    pub blame: Option<&'static str>,
    pub timings: Timings,
    pub request: ShownRequest,
    pub forwarded: Vec<ShownRequest>,
    pub response: Option<ShownResponse>,
    /// The received body beside the first forwarded one, when a rewrite changed it.
    pub diff: Vec<DiffLine>,
    /// The request as a `curl` command; the token is `$SCIM_TOKEN`, never the real one.
    pub curl: String,
}

/// Ids mapped to the names responses revealed, oldest forgotten first.
#[derive(Debug, Default)]
pub struct Names {
    names: HashMap<String, (&'static str, String)>,
    order: VecDeque<String>,
}

impl Names {
    /// The kind and name of `id`, when a response showed it.
    pub fn get(&self, id: &str) -> Option<(&'static str, &str)> {
        self.names
            .get(id)
            .map(|(kind, name)| (*kind, name.as_str()))
    }

    fn learn(&mut self, id: &str, kind: &'static str, name: &str) {
        if id.is_empty() || name.is_empty() {
            return;
        }
        if self
            .names
            .insert(id.to_owned(), (kind, name.to_owned()))
            .is_none()
        {
            self.order.push_back(id.to_owned());
            while self.order.len() > MAX_KNOWN_NAMES {
                if let Some(old) = self.order.pop_front() {
                    self.names.remove(&old);
                }
            }
        }
    }

    /// Learns every user and group a response body shows (one resource or a list).
    fn learn_from(&mut self, body: &Value) {
        let resources = match body.get("Resources").and_then(Value::as_array) {
            Some(list) => list.iter().collect::<Vec<_>>(),
            None => vec![body],
        };
        for resource in resources {
            let Some(id) = resource.get("id").and_then(Value::as_str) else {
                continue;
            };
            if let Some(name) = resource.get("userName").and_then(Value::as_str) {
                self.learn(id, "user", name);
            } else if let Some(name) = resource.get("displayName").and_then(Value::as_str) {
                self.learn(id, "group", name);
            }
        }
    }
}

/// The entry of a record that has been through [`redacted`]. `names` learns from its
/// response, for the entries after it; `base_url` starts the `curl` command.
pub fn entry(
    record: &Record,
    extras: Extras,
    names: &mut Names,
    seq: u64,
    base_url: &str,
) -> Entry {
    let request_json = json_of(&record.request.body);
    let response_json = record.response.as_ref().and_then(|r| json_of(&r.body));
    let upstream = extras
        .upstream
        .or_else(|| upstream_of(record, response_json.as_ref()));
    let subject = subject_of(record, request_json.as_ref(), response_json.as_ref(), names);
    if let Some(body) = &response_json {
        names.learn_from(body);
    }
    let mut rules: Vec<String> = Vec::new();
    for finding in &record.findings {
        if let Some(rule) = finding.get("rule").and_then(Value::as_str) {
            if !rules.iter().any(|r| r == rule) {
                rules.push(rule.to_owned());
            }
        }
    }
    let summary = summarize(
        record,
        subject.as_ref(),
        request_json.as_ref(),
        upstream.as_ref(),
        &rules,
        names,
    );
    let diff = match record.forwarded.first() {
        Some(sent) => diff(&shown_body(&record.request.body), &shown_body(&sent.body)),
        None => Vec::new(),
    };
    Entry {
        seq,
        id: record.id.clone(),
        time: record.time.clone(),
        replica: record.replica.clone(),
        tenant: record.tenant.clone(),
        operation: record.operation.clone(),
        mode: record.mode.clone(),
        verdict: record.verdict.clone(),
        status: record.response.as_ref().map(|r| r.status),
        subject,
        summary,
        rules,
        findings: shown_findings(record),
        hints: extras.hints,
        upstream,
        throttle: extras.throttle,
        error: record.error.clone(),
        blame: extras.blame,
        timings: record.timings,
        request: shown_request(&record.request),
        forwarded: record.forwarded.iter().map(shown_request).collect(),
        response: record.response.as_ref().map(|r| ShownResponse {
            status: r.status,
            headers: r.headers.clone(),
            body: shown_body(&r.body),
        }),
        diff,
        curl: curl(&record.request, base_url),
    }
}

/// The findings as the admin reads them: in observe mode nothing was done, so a reject
/// or rewrite is what enforce mode *would* have done (as the explanation log says).
fn shown_findings(record: &Record) -> Vec<Value> {
    let mut findings = record.findings.clone();
    if record.mode == "observe" {
        for finding in &mut findings {
            let action = finding.get("action").and_then(Value::as_str);
            let would = match action {
                Some("reject") => "would reject",
                Some("rewrite") => "would rewrite",
                _ => continue,
            };
            finding["action"] = Value::from(would);
        }
    }
    findings
}

fn json_of(body: &Body) -> Option<Value> {
    if body.as_bytes().len() > MAX_SHOWN_BODY_BYTES * 4 {
        return None;
    }
    serde_json::from_slice(body.as_bytes()).ok()
}

/// AWS's answer read back from a capture: the response came from the upstream when the
/// request was forwarded (or rewritten) and scimguard itself did not fail.
fn upstream_of(record: &Record, body: Option<&Value>) -> Option<Upstream> {
    let response = record.response.as_ref()?;
    if !matches!(record.verdict.as_str(), "forwarded" | "rewritten") || record.error.is_some() {
        return None;
    }
    let detail = (response.status >= 400)
        .then(|| body.and_then(|b| b.get("detail")).and_then(Value::as_str))
        .flatten()
        .map(str::to_owned);
    let request_id = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-amzn-requestid"))
        .map(|(_, value)| value.clone());
    Some(Upstream {
        status: response.status,
        detail,
        request_id,
    })
}

/// `/…/scim/v2/{Users|Groups}/{id}` → the kind and the (still percent-encoded) id.
fn resource_of(path: &str) -> Option<(&'static str, Option<&str>)> {
    let mut segments = path.trim_end_matches('/').rsplit('/');
    let last = segments.next()?;
    let before = segments.next();
    let kind_of = |segment: &str| match segment {
        s if s.eq_ignore_ascii_case("Users") => Some("user"),
        s if s.eq_ignore_ascii_case("Groups") => Some("group"),
        _ => None,
    };
    if let Some(kind) = kind_of(last) {
        return Some((kind, None));
    }
    let kind = kind_of(before?)?;
    Some((kind, Some(last)))
}

fn subject_of(
    record: &Record,
    request: Option<&Value>,
    response: Option<&Value>,
    names: &Names,
) -> Option<Subject> {
    let (kind, id) = resource_of(&record.request.path)?;
    let id = id.map(|id| {
        crate::scim::percent::percent_decode(id, false)
            .map(|d| d.into_owned())
            .unwrap_or_else(|_| id.to_owned())
    });
    let attribute = if kind == "user" {
        "userName"
    } else {
        "displayName"
    };
    let named = |v: Option<&Value>| {
        v.and_then(|v| v.get(attribute))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let name = named(request)
        .or_else(|| {
            id.as_deref()
                .and_then(|id| names.get(id))
                .map(|(_, n)| n.to_owned())
        })
        .or_else(|| named(response))
        .or_else(|| filter_value(record.request.query.as_deref()))
        .or_else(|| id.clone())?;
    Some(Subject { kind, name, id })
}

/// The compared value of a list's `filter=userName eq "jdoe"`, when there is one.
fn filter_value(query: Option<&str>) -> Option<String> {
    let query = query?;
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("filter="))?;
    let filter = crate::scim::percent::percent_decode(raw, true).ok()?;
    let start = filter.find('"')? + 1;
    let end = start + filter[start..].find('"')?;
    Some(filter[start..end].to_owned())
}

/// A finding's reason in a few words: "no displayName" for a missing attribute, else its
/// message up to the first `;`.
fn short_reason(finding: &Value) -> String {
    let message = finding.get("message").and_then(Value::as_str).unwrap_or("");
    if let Some(at) = message.find(" is required by AWS IAM Identity Center but is") {
        return format!("no {}", &message[..at]);
    }
    let clause = message.split(';').next().unwrap_or(message).trim();
    let mut short: String = clause.chars().take(100).collect();
    if short.len() < clause.len() {
        short.push('…');
    }
    short
}

/// The exchange in plain words: "user jdoe created", "jdoe added to group Finance",
/// "user jdoe refused: no displayName".
fn summarize(
    record: &Record,
    subject: Option<&Subject>,
    request: Option<&Value>,
    upstream: Option<&Upstream>,
    rules: &[String],
    names: &Names,
) -> String {
    let what = subject
        .map(|s| format!("{} {}", s.kind, s.name))
        .unwrap_or_else(|| record.operation.clone());
    let observe = record.mode == "observe";
    let rejecting: Vec<&Value> = record
        .findings
        .iter()
        .filter(|f| {
            f.get("action")
                .and_then(Value::as_str)
                .is_some_and(|a| a.contains("reject"))
        })
        .collect();
    match record.verdict.as_str() {
        "rejected" => {
            let reasons: Vec<String> = rejecting.iter().map(|f| short_reason(f)).collect();
            return format!("{what} refused: {}", reasons.join("; "));
        }
        "throttled" => return format!("{what} held back: scimguard's throttle answered 429"),
        "error" => {
            let why = record.error.as_deref().unwrap_or("no answer");
            return format!("{what} failed: {why}");
        }
        _ => {}
    }
    if let Some(answer) = upstream.filter(|u| u.status >= 400) {
        let detail = answer.detail.as_deref().unwrap_or("no detail");
        return format!("{what} refused by AWS ({}): {detail}", answer.status);
    }
    let done = done_phrase(record, subject, request, &what, names);
    let mut summary = done;
    if record.verdict == "rewritten" && !rules.is_empty() {
        summary.push_str(&format!(" (rewritten: {})", rules.join(", ")));
    }
    if observe && !rejecting.is_empty() {
        let reasons: Vec<String> = rejecting.iter().map(|f| short_reason(f)).collect();
        summary.push_str(&format!(
            "; enforce mode would refuse it: {}",
            reasons.join("; ")
        ));
    }
    summary
}

/// What a successful exchange did.
fn done_phrase(
    record: &Record,
    subject: Option<&Subject>,
    request: Option<&Value>,
    what: &str,
    names: &Names,
) -> String {
    match record.operation.as_str() {
        "CreateUser" | "CreateGroup" => format!("{what} created"),
        "PutUser" => format!("{what} replaced"),
        "DeleteUser" | "DeleteGroup" => format!("{what} deleted"),
        "GetUser" | "GetGroup" => format!("{what} read"),
        "ListUsers" | "ListGroups" => {
            let kind = if record.operation == "ListUsers" {
                "users"
            } else {
                "groups"
            };
            match filter_value(record.request.query.as_deref()) {
                Some(value) => format!("{kind} looked up: {value}"),
                None => format!("{kind} listed"),
            }
        }
        "PatchGroup" => patch_group_phrase(subject, request, what, names),
        "PatchUser" => {
            let paths = patch_paths(request);
            if paths.is_empty() {
                format!("{what} updated")
            } else {
                format!("{what} updated: {}", paths.join(", "))
            }
        }
        other => other.to_owned(),
    }
}

/// "jdoe added to group Finance", "2 members removed from group Finance".
fn patch_group_phrase(
    subject: Option<&Subject>,
    request: Option<&Value>,
    what: &str,
    names: &Names,
) -> String {
    let group = subject.map(|s| s.name.as_str()).unwrap_or("?");
    let operations = request
        .and_then(|r| r.get("Operations"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut phrases = Vec::new();
    for operation in &operations {
        let op = operation
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let path = operation.get("path").and_then(Value::as_str).unwrap_or("");
        if path.starts_with("members") {
            let mut members: Vec<String> = match operation.get("value") {
                Some(Value::Array(values)) => values
                    .iter()
                    .filter_map(|v| v.get("value").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            };
            if members.is_empty() {
                // `members[value eq "id"]` names the member in the path.
                if let Some(start) = path.find('"') {
                    if let Some(len) = path[start + 1..].find('"') {
                        members.push(path[start + 1..start + 1 + len].to_owned());
                    }
                }
            }
            let who = match members.as_slice() {
                [one] => names
                    .get(one)
                    .map(|(_, n)| n.to_owned())
                    .unwrap_or_else(|| one.clone()),
                [] => "all members".to_owned(),
                many => format!("{} members", many.len()),
            };
            let verb = match op.as_str() {
                "add" => "added to",
                "remove" => "removed from",
                _ => "set as members of",
            };
            phrases.push(format!("{who} {verb} group {group}"));
        } else if path.eq_ignore_ascii_case("displayName") {
            let new = operation
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or("?");
            phrases.push(format!("group {group} renamed to {new}"));
        } else {
            phrases.push(format!("{what} updated: {op} {path}"));
        }
    }
    if phrases.is_empty() {
        format!("{what} updated")
    } else {
        phrases.join("; ")
    }
}

/// The attributes a PATCH touches, e.g. `active=false`, `displayName`.
fn patch_paths(request: Option<&Value>) -> Vec<String> {
    let Some(operations) = request
        .and_then(|r| r.get("Operations"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    operations
        .iter()
        .map(|operation| {
            let path = operation.get("path").and_then(Value::as_str);
            match (path, operation.get("value")) {
                (Some(path), Some(Value::Bool(b))) => format!("{path}={b}"),
                (Some(path), _) => path.to_owned(),
                (None, Some(Value::Object(values))) => {
                    values.keys().cloned().collect::<Vec<_>>().join(", ")
                }
                (None, _) => "?".to_owned(),
            }
        })
        .collect()
}

fn shown_request(request: &RecordedRequest) -> ShownRequest {
    ShownRequest {
        method: request.method.clone(),
        target: request.target(),
        headers: request.headers.clone(),
        body: shown_body(&request.body),
    }
}

/// A body as text: JSON pretty-printed, other UTF-8 as it is, binary as its size; cut at
/// [`MAX_SHOWN_BODY_BYTES`] with a note of what was left out.
pub fn shown_body(body: &Body) -> String {
    let bytes = body.as_bytes();
    let text = match json_of(body) {
        Some(value) => serde_json::to_string_pretty(&value).unwrap_or_default(),
        None => match body.text() {
            Some(text) => text.to_owned(),
            None => return format!("[{} bytes, not text]", bytes.len()),
        },
    };
    if text.len() <= MAX_SHOWN_BODY_BYTES {
        return text;
    }
    let mut cut = MAX_SHOWN_BODY_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n… ({} more bytes not shown)",
        &text[..cut],
        text.len() - cut
    )
}

/// A line diff of two shown bodies.
pub fn diff(before: &str, after: &str) -> Vec<DiffLine> {
    similar::TextDiff::from_lines(before, after)
        .iter_all_changes()
        .map(|change| DiffLine {
            op: match change.tag() {
                similar::ChangeTag::Equal => "=",
                similar::ChangeTag::Delete => "-",
                similar::ChangeTag::Insert => "+",
            },
            text: change.value().trim_end_matches('\n').to_owned(),
        })
        .collect()
}

/// Headers a `curl` command leaves out: curl writes its own, or they describe the
/// connection rather than the request.
const CURL_SKIPPED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "accept-encoding",
    "user-agent",
    "te",
    "upgrade",
];

/// The request as a `curl` command. The token is never in it: `Authorization` becomes
/// `Bearer $SCIM_TOKEN` (expanded by the admin's shell), and any other redacted header is
/// left out.
pub fn curl(request: &RecordedRequest, base_url: &str) -> String {
    let url = format!("{}{}", base_url.trim_end_matches('/'), request.target());
    let mut command = format!("curl -X {} {}", request.method, quote(&url));
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if CURL_SKIPPED_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        if lower == "authorization" {
            command.push_str(" -H \"Authorization: Bearer $SCIM_TOKEN\"");
            continue;
        }
        if value.contains(REDACTED) {
            continue;
        }
        command.push_str(&format!(" -H {}", quote(&format!("{name}: {value}"))));
    }
    if let Some(text) = request.body.text().filter(|t| !t.is_empty()) {
        command.push_str(&format!(" --data-binary {}", quote(text)));
    }
    command
}

/// Single-quotes a word for POSIX shells.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordedResponse, RECORD_VERSION};

    fn request(method: &str, target: &str, body: &str) -> RecordedRequest {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer s3cr3t-token".parse().unwrap());
        headers.insert("content-type", "application/scim+json".parse().unwrap());
        RecordedRequest::new(method, target, &headers, body)
    }

    fn record(operation: &str, verdict: &str, request: RecordedRequest) -> Record {
        Record {
            version: RECORD_VERSION,
            replica: None,
            id: "00".repeat(16),
            time: "2026-12-07T02:00:00.000000Z".to_owned(),
            tenant: Some("d-1".to_owned()),
            operation: operation.to_owned(),
            mode: "enforce".to_owned(),
            verdict: verdict.to_owned(),
            request,
            forwarded: Vec::new(),
            response: None,
            findings: Vec::new(),
            error: None,
            timings: Timings::default(),
        }
    }

    fn response(status: u16, body: &str) -> Option<RecordedResponse> {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-amzn-requestid", "req-1".parse().unwrap());
        Some(RecordedResponse::new(status, &headers, body))
    }

    #[test]
    fn a_refused_user_is_summed_up_with_its_missing_attribute() {
        let mut r = record(
            "CreateUser",
            "rejected",
            request("POST", "/d-1/scim/v2/Users", r#"{"userName":"jdoe"}"#),
        );
        r.findings = vec![serde_json::json!({
            "rule": "user.required", "action": "reject", "location": "/displayName",
            "message": "displayName is required by AWS IAM Identity Center but is missing; map a non-empty value to it in the IdP's attribute mappings.",
            "source": "CreateUser"
        })];
        r.response = response(400, r#"{"detail":"scimguard rejected"}"#);
        let e = entry(&r, Extras::default(), &mut Names::default(), 1, "http://p");
        assert_eq!(e.summary, "user jdoe refused: no displayName");
        assert_eq!(e.rules, ["user.required"]);
        assert_eq!(e.upstream, None, "scimguard answered, not AWS");
        assert_eq!(e.status, Some(400));
    }

    #[test]
    fn a_member_added_to_a_group_is_named_from_earlier_responses() {
        let mut names = Names::default();
        let mut created = record(
            "CreateUser",
            "forwarded",
            request("POST", "/d-1/scim/v2/Users", r#"{"userName":"jdoe"}"#),
        );
        created.response = response(201, r#"{"id":"u-1","userName":"jdoe"}"#);
        assert_eq!(
            entry(&created, Extras::default(), &mut names, 1, "").summary,
            "user jdoe created"
        );
        let mut group = record(
            "CreateGroup",
            "forwarded",
            request(
                "POST",
                "/d-1/scim/v2/Groups",
                r#"{"displayName":"Finance"}"#,
            ),
        );
        group.response = response(201, r#"{"id":"g-1","displayName":"Finance"}"#);
        entry(&group, Extras::default(), &mut names, 2, "");
        let mut patch = record(
            "PatchGroup",
            "forwarded",
            request(
                "PATCH",
                "/d-1/scim/v2/Groups/g-1",
                r#"{"Operations":[{"op":"add","path":"members","value":[{"value":"u-1"}]}]}"#,
            ),
        );
        patch.response = response(204, "");
        let e = entry(&patch, Extras::default(), &mut names, 3, "");
        assert_eq!(e.summary, "jdoe added to group Finance");
        assert_eq!(e.subject.unwrap().id.as_deref(), Some("g-1"));
    }

    #[test]
    fn an_aws_refusal_shows_its_detail_and_request_id() {
        let mut r = record(
            "CreateUser",
            "forwarded",
            request("POST", "/d-1/scim/v2/Users", r#"{"userName":"jdoe"}"#),
        );
        r.response = response(409, r#"{"status":"409","detail":"Duplicate userName"}"#);
        let e = entry(&r, Extras::default(), &mut Names::default(), 1, "");
        assert_eq!(
            e.summary,
            "user jdoe refused by AWS (409): Duplicate userName"
        );
        let upstream = e.upstream.unwrap();
        assert_eq!(upstream.request_id.as_deref(), Some("req-1"));
        assert_eq!(upstream.detail.as_deref(), Some("Duplicate userName"));
    }

    #[test]
    fn a_rewrite_is_shown_as_a_diff_of_the_bodies() {
        let mut r = record(
            "CreateUser",
            "rewritten",
            request(
                "POST",
                "/d-1/scim/v2/Users",
                r#"{"userName":"jdoe","emails":[{"value":"a@x"},{"value":"b@x"}]}"#,
            ),
        );
        r.forwarded = vec![request(
            "POST",
            "/d-1/scim/v2/Users",
            r#"{"userName":"jdoe","emails":[{"value":"a@x","primary":true}]}"#,
        )];
        r.findings = vec![serde_json::json!({"rule": "user.multi-value", "action": "rewrite"})];
        r.response = response(201, r#"{"id":"u-1","userName":"jdoe"}"#);
        let e = entry(&r, Extras::default(), &mut Names::default(), 1, "");
        assert_eq!(e.summary, "user jdoe created (rewritten: user.multi-value)");
        assert!(e.diff.iter().any(|l| l.op == "-" && l.text.contains("b@x")));
        assert!(e
            .diff
            .iter()
            .any(|l| l.op == "+" && l.text.contains("\"primary\": true")));
        assert!(e
            .diff
            .iter()
            .any(|l| l.op == "=" && l.text.contains("jdoe")));
    }

    #[test]
    fn curl_never_carries_the_token_and_quotes_the_body() {
        let mut r = record(
            "CreateUser",
            "forwarded",
            request(
                "POST",
                "/d-1/scim/v2/Users",
                r#"{"userName":"o'neil","password":"Hunter2!"}"#,
            ),
        );
        redacted(&mut r, None);
        let command = curl(&r.request, "http://127.0.0.1:8080");
        assert!(!command.contains("s3cr3t-token"), "{command}");
        assert!(!command.contains("Hunter2!"), "{command}");
        assert!(command.starts_with("curl -X POST 'http://127.0.0.1:8080/d-1/scim/v2/Users'"));
        assert!(
            command.contains("-H \"Authorization: Bearer $SCIM_TOKEN\""),
            "{command}"
        );
        assert!(command.contains(r"o'\''neil"), "{command}");
        let shown = entry(&r, Extras::default(), &mut Names::default(), 1, "");
        let text = serde_json::to_string(&shown).unwrap();
        assert!(
            !text.contains("s3cr3t-token") && !text.contains("Hunter2!"),
            "{text}"
        );
    }

    #[test]
    fn large_bodies_are_cut_with_a_note_and_binary_is_named() {
        let big = format!("\"{}\"", "é".repeat(MAX_SHOWN_BODY_BYTES));
        let shown = shown_body(&Body::from(big.as_str()));
        assert!(shown.len() < MAX_SHOWN_BODY_BYTES + 100);
        assert!(
            shown.ends_with("more bytes not shown)"),
            "{}",
            &shown[shown.len() - 60..]
        );
        assert_eq!(
            shown_body(&Body::from(&[0xff, 0xfe, 0x00][..])),
            "[3 bytes, not text]"
        );
    }

    #[test]
    fn observe_mode_says_what_enforce_mode_would_have_done() {
        let mut r = record(
            "CreateUser",
            "forwarded",
            request("POST", "/d-1/scim/v2/Users", r#"{"userName":"jdoe"}"#),
        );
        r.mode = "observe".to_owned();
        r.findings = vec![serde_json::json!({
            "rule": "user.required", "action": "reject", "location": "/displayName",
            "message": "displayName is required by AWS IAM Identity Center but is missing; map it."
        })];
        r.response = response(201, r#"{"id":"u-1","userName":"jdoe"}"#);
        let e = entry(&r, Extras::default(), &mut Names::default(), 1, "");
        assert_eq!(e.findings[0]["action"], "would reject");
        assert_eq!(
            e.summary,
            "user jdoe created; enforce mode would refuse it: no displayName"
        );
    }

    #[test]
    fn lists_and_filters_name_their_subject() {
        let r = record(
            "ListUsers",
            "forwarded",
            request(
                "GET",
                "/d-1/scim/v2/Users?filter=userName%20eq%20%22jdoe%22",
                "",
            ),
        );
        let e = entry(&r, Extras::default(), &mut Names::default(), 1, "");
        assert_eq!(e.summary, "users looked up: jdoe");
        let mut patch = record(
            "PatchUser",
            "forwarded",
            request(
                "PATCH",
                "/d-1/scim/v2/Users/u-9",
                r#"{"Operations":[{"op":"replace","path":"active","value":false}]}"#,
            ),
        );
        patch.response = response(204, "");
        let e = entry(&patch, Extras::default(), &mut Names::default(), 2, "");
        assert_eq!(e.summary, "user u-9 updated: active=false");
    }
}
