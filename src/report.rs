//! `scimguard report CAPTURE… --out report.html`: one self-contained HTML file of one
//! or more captures (replicas' captures merged by time): a summary — counts by verdict
//! and operation over time, the top rules, AWS's errors grouped by `detail` — then every
//! user and group that failed with why and the fix in the IdP's terms, then every
//! exchange as the live view shows it ([`crate::admin::entry`], the same page and
//! script, inlined: the file fetches nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::admin::entry::{self, Entry, Extras, Names};
use crate::record::{CaptureError, Record};

/// The base of the report's `curl` commands: scimguard's default listen address.
pub const CURL_BASE_URL: &str = "http://127.0.0.1:8080";

/// At most 60 bars a chart: readable on a laptop screen.
const MAX_BUCKETS: u64 = 60;

/// Bucket widths the charts choose from, smallest first.
const BUCKET_WIDTHS: [u64; 10] = [
    1,
    10,
    60,
    300,
    900,
    3600,
    6 * 3600,
    86400,
    7 * 86400,
    30 * 86400,
];

/// Exchanges the report lists in full (the summary counts them all): every failed one
/// first, then the newest others. 5,000 keeps the file to tens of MiB (bodies are cut at
/// 64 KiB) and the page quick to filter.
pub const MAX_LISTED_EXCHANGES: usize = 5_000;

/// Top rules listed.
const TOP_RULES: usize = 10;

/// Request ids kept per AWS error, to look up in CloudTrail.
const REQUEST_IDS_PER_ERROR: usize = 5;

/// A report that could not be made; the message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("cannot write {}: {source}. Fix: check that its directory exists and is writable", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was read: the captures named, and a warning per line left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sources {
    pub files: Vec<String>,
    /// Cut or corrupt lines skipped (`FILE:N: …`), from [`crate::record::captures`].
    pub warnings: Vec<String>,
}

/// The report's summary section, as the page's script renders it.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub made: String,
    pub sources: Sources,
    pub total: usize,
    /// Exchanges listed in full ([`MAX_LISTED_EXCHANGES`] at most).
    pub listed: usize,
    pub first: Option<String>,
    pub last: Option<String>,
    pub by_verdict: BTreeMap<String, u64>,
    pub by_operation: BTreeMap<String, u64>,
    pub timeline: Vec<Bucket>,
    pub top_rules: Vec<RuleCount>,
    pub aws_errors: Vec<AwsError>,
    pub failed: Vec<Failed>,
}

/// One bar of the charts.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Bucket {
    /// Its start, RFC 3339 in UTC.
    pub start: String,
    pub by_verdict: BTreeMap<String, u64>,
    pub by_operation: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RuleCount {
    pub rule: String,
    pub count: u64,
    /// The first message it gave, as an example.
    pub message: String,
}

/// AWS's refusals with one status and `detail`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct AwsError {
    pub status: u16,
    pub detail: Option<String>,
    pub count: u64,
    pub operations: Vec<String>,
    /// The first few `x-amzn-RequestId`s, for CloudTrail.
    pub request_ids: Vec<String>,
}

/// A user or group whose changes did not all get through.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Failed {
    pub kind: String,
    pub name: String,
    pub operations: Vec<String>,
    pub count: u64,
    pub why: Vec<String>,
    /// What to change, in the IdP's terms.
    pub fix: Vec<String>,
}

/// The entries of merged records, in order, each through the one redaction.
pub fn entries(records: Vec<Record>) -> Vec<Entry> {
    let mut names = Names::default();
    records
        .into_iter()
        .enumerate()
        .map(|(i, mut record)| {
            entry::redacted(&mut record, None);
            entry::entry(
                &record,
                Extras::default(),
                &mut names,
                i as u64 + 1,
                CURL_BASE_URL,
            )
        })
        .collect()
}

/// The summary of a report's entries (in time order).
pub fn summarize(entries: &[Entry], sources: Sources) -> Summary {
    let mut by_verdict = BTreeMap::new();
    let mut by_operation = BTreeMap::new();
    let mut rules: BTreeMap<String, RuleCount> = BTreeMap::new();
    let mut errors: BTreeMap<(u16, Option<String>), AwsError> = BTreeMap::new();
    let mut failed: BTreeMap<(String, String), Failed> = BTreeMap::new();
    for e in entries {
        *by_verdict.entry(e.verdict.clone()).or_insert(0) += 1;
        *by_operation.entry(e.operation.clone()).or_insert(0) += 1;
        for finding in &e.findings {
            let Some(rule) = finding.get("rule").and_then(|r| r.as_str()) else {
                continue;
            };
            let message = finding
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("");
            rules
                .entry(rule.to_owned())
                .or_insert_with(|| RuleCount {
                    rule: rule.to_owned(),
                    count: 0,
                    message: message.to_owned(),
                })
                .count += 1;
        }
        if let Some(upstream) = e.upstream.as_ref().filter(|u| u.status >= 400) {
            let error = errors
                .entry((upstream.status, upstream.detail.clone()))
                .or_insert_with(|| AwsError {
                    status: upstream.status,
                    detail: upstream.detail.clone(),
                    count: 0,
                    operations: Vec::new(),
                    request_ids: Vec::new(),
                });
            error.count += 1;
            if !error.operations.contains(&e.operation) {
                error.operations.push(e.operation.clone());
            }
            if let Some(id) = &upstream.request_id {
                if error.request_ids.len() < REQUEST_IDS_PER_ERROR {
                    error.request_ids.push(id.clone());
                }
            }
        }
        if let Some((why, fix)) = failure(e) {
            let (kind, name) = match &e.subject {
                Some(s) => (s.kind.to_owned(), s.name.clone()),
                None => ("request".to_owned(), e.request.target.clone()),
            };
            let item = failed
                .entry((kind.clone(), name.clone()))
                .or_insert_with(|| Failed {
                    kind,
                    name,
                    operations: Vec::new(),
                    count: 0,
                    why: Vec::new(),
                    fix: Vec::new(),
                });
            item.count += 1;
            if !item.operations.contains(&e.operation) {
                item.operations.push(e.operation.clone());
            }
            for w in why {
                if !item.why.contains(&w) {
                    item.why.push(w);
                }
            }
            for f in fix {
                if !item.fix.contains(&f) {
                    item.fix.push(f);
                }
            }
        }
    }
    let mut top_rules: Vec<RuleCount> = rules.into_values().collect();
    top_rules.sort_by(|a, b| b.count.cmp(&a.count).then(a.rule.cmp(&b.rule)));
    top_rules.truncate(TOP_RULES);
    let mut aws_errors: Vec<AwsError> = errors.into_values().collect();
    aws_errors.sort_by_key(|e| std::cmp::Reverse(e.count));
    Summary {
        made: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        sources,
        total: entries.len(),
        listed: entries.len(),
        first: entries.first().map(|e| e.time.clone()),
        last: entries.last().map(|e| e.time.clone()),
        by_verdict,
        by_operation,
        timeline: timeline(entries),
        top_rules,
        aws_errors,
        failed: failed.into_values().collect(),
    }
}

/// Whether a write changes something in Identity Center (a read that fails is not a
/// user or group failing to sync).
fn is_write(operation: &str) -> bool {
    ["Create", "Put", "Patch", "Delete"]
        .iter()
        .any(|verb| operation.starts_with(verb))
}

/// Why an exchange failed and what to change in the IdP; `None` when it got through.
fn failure(e: &Entry) -> Option<(Vec<String>, Vec<String>)> {
    match e.verdict.as_str() {
        "rejected" => {
            let mut why = Vec::new();
            let mut fix = Vec::new();
            for finding in &e.findings {
                let action = finding.get("action").and_then(|a| a.as_str()).unwrap_or("");
                if !action.contains("reject") {
                    continue;
                }
                let message = finding
                    .get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("");
                let rule = finding.get("rule").and_then(|r| r.as_str()).unwrap_or("?");
                // Rule messages say what is wrong, then after `;` what to do.
                match message.split_once("; ") {
                    Some((wrong, todo)) => {
                        why.push(format!("[{rule}] {wrong}"));
                        fix.push(todo.to_owned());
                    }
                    None => {
                        why.push(format!("[{rule}] {message}"));
                        fix.push(format!("change what the IdP sends so that rule {rule} no longer fires"));
                    }
                }
            }
            Some((why, fix))
        }
        "throttled" => Some((
            vec!["scimguard's throttle refused it (429) after its queue was full or the wait too long".to_owned()],
            vec!["let the IdP retry later (it will), or give scimguard more room: --max-wait, --max-queue, --rate".to_owned()],
        )),
        "error" => Some((
            vec![format!("scimguard could not complete it: {}", e.error.as_deref().unwrap_or("no answer"))],
            vec!["check that the upstream is reachable; the IdP retries failed changes".to_owned()],
        )),
        _ => {
            let upstream = e.upstream.as_ref().filter(|u| u.status >= 400)?;
            if !is_write(&e.operation) {
                return None;
            }
            let detail = upstream.detail.as_deref().unwrap_or("no detail");
            let why = vec![format!("AWS answered {}: {detail}", upstream.status)];
            let fix = match upstream.status {
                409 => "IAM Identity Center has one with this name already: match it to the IdP's object (same userName or displayName), or delete the duplicate in IAM Identity Center",
                404 => "IAM Identity Center no longer has it: re-provision this user or group from the IdP (restart provisioning for it)",
                429 => "AWS throttled the sync: let scimguard shape the rate (--rate) or slow the IdP down",
                400 => "no scimguard rule predicted this refusal: look the request id up in CloudTrail (event source identitystore-scim.amazonaws.com) and compare the request with AWS's guide",
                s if s >= 500 => "AWS failed: retry later; the IdP retries on its own",
                _ => "compare the request with AWS's guide; the request id finds it in CloudTrail",
            };
            Some((why, vec![fix.to_owned()]))
        }
    }
}

/// Counts per bucket, the width chosen so that the span takes at most [`MAX_BUCKETS`].
fn timeline(entries: &[Entry]) -> Vec<Bucket> {
    let seconds: Vec<(u64, &Entry)> = entries
        .iter()
        .filter_map(|e| {
            let t = humantime::parse_rfc3339(&e.time).ok()?;
            let s = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
            Some((s, e))
        })
        .collect();
    let (Some(first), Some(last)) = (
        seconds.iter().map(|(s, _)| *s).min(),
        seconds.iter().map(|(s, _)| *s).max(),
    ) else {
        return Vec::new();
    };
    let span = last - first + 1;
    let width = BUCKET_WIDTHS
        .iter()
        .copied()
        .find(|w| span.div_ceil(*w) <= MAX_BUCKETS)
        .unwrap_or(span.div_ceil(MAX_BUCKETS));
    let start = first - first % width;
    let count = (last - start) / width + 1;
    let mut buckets: Vec<Bucket> = (0..count)
        .map(|i| Bucket {
            start: humantime::format_rfc3339_seconds(
                SystemTime::UNIX_EPOCH + Duration::from_secs(start + i * width),
            )
            .to_string(),
            by_verdict: BTreeMap::new(),
            by_operation: BTreeMap::new(),
        })
        .collect();
    for (s, e) in seconds {
        let bucket = &mut buckets[((s - start) / width) as usize];
        *bucket.by_verdict.entry(e.verdict.clone()).or_insert(0) += 1;
        *bucket.by_operation.entry(e.operation.clone()).or_insert(0) += 1;
    }
    buckets
}

/// The report page of records (merged by time) read from `sources`.
pub fn render(records: Vec<Record>, sources: Sources) -> (String, usize) {
    let mut entries = entries(records);
    let mut summary = summarize(&entries, sources);
    entries = listed(entries, MAX_LISTED_EXCHANGES);
    summary.listed = entries.len();
    let operations: BTreeSet<&str> = entries.iter().map(|e| e.operation.as_str()).collect();
    let title = format!(
        "scimguard report — {} exchanges, {} operations",
        summary.total,
        operations.len()
    );
    let count = summary.total;
    let data = serde_json::json!({ "summary": summary, "entries": entries });
    (crate::admin::page::report_page(&title, &data), count)
}

/// At most `max` entries, in time order: every failed one first (the newest of them if
/// there are more), then the newest of the others.
fn listed(entries: Vec<Entry>, max: usize) -> Vec<Entry> {
    if entries.len() <= max {
        return entries;
    }
    let failed = |e: &Entry| failure(e).is_some();
    let failures = entries.iter().filter(|e| failed(e)).count();
    let keep_failed = failures.min(max);
    let keep_others = max - keep_failed;
    let others = entries.len() - failures;
    let (mut failed_seen, mut others_seen) = (0, 0);
    entries
        .into_iter()
        .filter(|e| {
            if failed(e) {
                failed_seen += 1;
                failed_seen > failures - keep_failed
            } else {
                others_seen += 1;
                others_seen > others - keep_others
            }
        })
        .collect()
}

/// Reads the captures ([`crate::record::captures`]: rotated files, merged by time, cut
/// and corrupt lines skipped with a warning unless `strict`) and writes the report to
/// `out`; returns how many exchanges it holds and the warnings.
pub fn write_report(
    captures: &[PathBuf],
    strict: bool,
    out: &Path,
) -> Result<(usize, Vec<String>), ReportError> {
    let capture = crate::record::captures(captures, strict)?;
    let sources = Sources {
        files: captures.iter().map(|p| p.display().to_string()).collect(),
        warnings: capture.warnings.clone(),
    };
    let (page, count) = render(capture.records, sources);
    std::fs::write(out, page).map_err(|source| ReportError::Write {
        path: out.to_owned(),
        source,
    })?;
    Ok((count, capture.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordedRequest, RecordedResponse, Timings, RECORD_VERSION};
    use std::io::Write;

    fn record(
        time: &str,
        operation: &str,
        verdict: &str,
        body: &str,
        status: u16,
        answer: &str,
    ) -> Record {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer report-secret".parse().unwrap());
        let mut response_headers = http::HeaderMap::new();
        response_headers.insert("x-amzn-requestid", "aws-req-1".parse().unwrap());
        Record {
            version: RECORD_VERSION,
            replica: None,
            id: format!("{:032x}", time.len() + body.len() + status as usize),
            time: time.to_owned(),
            tenant: Some("d-1".to_owned()),
            operation: operation.to_owned(),
            mode: "enforce".to_owned(),
            verdict: verdict.to_owned(),
            request: RecordedRequest::new("POST", "/d-1/scim/v2/Users", &headers, body),
            forwarded: Vec::new(),
            response: Some(RecordedResponse::new(status, &response_headers, answer)),
            findings: Vec::new(),
            error: None,
            timings: Timings::default(),
        }
    }

    fn line(record: &Record) -> String {
        serde_json::to_string(record).unwrap()
    }

    #[test]
    fn captures_merge_by_time_and_a_cut_last_line_is_left_out_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        let r1 = record(
            "2026-12-07T02:00:01.000000Z",
            "CreateUser",
            "forwarded",
            r#"{"userName":"one"}"#,
            201,
            "{}",
        );
        let r2 = record(
            "2026-12-07T02:00:02.000000Z",
            "DeleteUser",
            "forwarded",
            "",
            204,
            "",
        );
        let r3 = record(
            "2026-12-07T02:00:03.000000Z",
            "CreateUser",
            "forwarded",
            r#"{"userName":"three"}"#,
            201,
            "{}",
        );
        std::fs::write(&a, format!("{}\n{}\n", line(&r1), line(&r3))).unwrap();
        let whole = line(&r2);
        let mut file = std::fs::File::create(&b).unwrap();
        write!(file, "{whole}\n{}", &whole[..whole.len() / 2]).unwrap();
        let out = dir.path().join("report.html");
        let (count, warnings) = write_report(&[a.clone(), b.clone()], false, &out).unwrap();
        assert_eq!(count, 3);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("b.jsonl:2") && warnings[0].contains("cut"),
            "{warnings:?}"
        );
        let page = std::fs::read_to_string(&out).unwrap();
        assert!(
            page.contains("b.jsonl:2"),
            "the report says what it left out"
        );
        assert!(!page.contains("report-secret"));
        let error = write_report(&[b], true, &out).unwrap_err().to_string();
        assert!(error.contains("b.jsonl:2"), "{error}");
    }

    #[test]
    fn the_summary_counts_rules_groups_aws_errors_and_names_who_failed() {
        let mut rejected = record(
            "2026-12-07T02:00:00.000000Z",
            "CreateUser",
            "rejected",
            r#"{"userName":"jdoe"}"#,
            400,
            "{}",
        );
        rejected.findings = vec![serde_json::json!({
            "rule": "user.required", "action": "reject", "location": "/displayName",
            "message": "displayName is required by AWS IAM Identity Center but is missing; map a non-empty value to it in the IdP's attribute mappings.",
            "source": "guide"
        })];
        let duplicate = record(
            "2026-12-07T02:03:00.000000Z",
            "CreateUser",
            "forwarded",
            r#"{"userName":"asmith"}"#,
            409,
            r#"{"status":"409","detail":"Duplicate userName"}"#,
        );
        let ok = record(
            "2026-12-07T02:05:00.000000Z",
            "CreateUser",
            "forwarded",
            r#"{"userName":"bok"}"#,
            201,
            r#"{"id":"u-1","userName":"bok"}"#,
        );
        let entries = entries(vec![rejected, duplicate, ok]);
        let json = serde_json::to_string(&entries).unwrap();
        let summary = summarize(&entries, Sources::default());
        assert_eq!(summary.total, 3);
        assert_eq!(summary.by_verdict["rejected"], 1);
        assert_eq!(summary.by_verdict["forwarded"], 2);
        assert_eq!(summary.top_rules[0].rule, "user.required");
        assert_eq!(summary.aws_errors.len(), 1);
        assert_eq!(
            summary.aws_errors[0].detail.as_deref(),
            Some("Duplicate userName")
        );
        assert_eq!(summary.aws_errors[0].request_ids, ["aws-req-1"]);
        let names: Vec<&str> = summary.failed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["asmith", "jdoe"]);
        let jdoe = &summary.failed[1];
        assert_eq!(
            jdoe.fix,
            ["map a non-empty value to it in the IdP's attribute mappings."]
        );
        assert!(summary.failed[0].fix[0].contains("already"));
        // Five minutes fit in 60 ten-second bars.
        assert_eq!(summary.timeline.len(), 31);
        assert_eq!(summary.timeline[0].by_verdict["rejected"], 1);
        assert_eq!(summary.timeline[30].by_verdict["forwarded"], 1);
        let kept = listed(entries, 2);
        let kept: Vec<&str> = kept.iter().map(|e| e.summary.as_str()).collect();
        assert_eq!(
            kept,
            [
                "user jdoe refused: no displayName",
                "user asmith refused by AWS (409): Duplicate userName"
            ],
            "failures first, in time order"
        );
        let page = render(Vec::new(), Sources::default()).0;
        assert!(page.contains("report-data"));
        assert!(!json.contains("report-secret"), "{json}");
    }
}
