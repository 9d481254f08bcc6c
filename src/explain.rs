//! One explanation per exchange, on every path: one tracing line with the id, method,
//! path, operation, verdict, status and timings, then one line per finding with the
//! rule, the action (as "would …" in observe mode), the place, the message and the fix.

use std::path::Path;

use serde_json::json;

use crate::error::Blame;
use crate::exchange::Exchange;
use crate::rules::Action;

/// Logs the exchange's line (target `scimguard::request`), then one line per hint and
/// per finding, inside the request's span, which carries its id.
///
/// Every text a client or the upstream chose (the path, AWS's detail, a finding's
/// message quoting an attribute) is a string field, never the message: the text format
/// writes string fields quoted and escaped, so none of them can start a line.
pub fn log(exchange: &Exchange) {
    // Microseconds as integers: exact, and cheap to write on every request.
    let timings = exchange.timings();
    let (elapsed_us, upstream_us) = (timings.total_us, timings.upstream_us);
    let operation = exchange.operation.map(|op| op.name()).unwrap_or("-");
    // method, operation, verdict and blame are tokens from closed sets (hyper admits
    // only token characters in a method), so they are written bare.
    tracing::info!(
        target: "scimguard::request",
        method = %exchange.method,
        path = exchange.path.as_str(),
        operation = %operation,
        verdict = %exchange.verdict.as_str(),
        status = exchange.status,
        elapsed_us,
        upstream_us,
        blame = exchange.blame.map(Blame::as_str).map(tracing::field::display),
        error = exchange.error.as_deref(),
        "request"
    );
    for hint in &exchange.hints {
        tracing::info!(target: "scimguard::hint", hint = hint.as_str(), "hint");
    }
    if let Some(back_off) = exchange.upstream_back_off {
        tracing::info!(
            target: "scimguard::hint",
            back_off_s = back_off.as_secs(),
            "the upstream answered 429: relayed as it is, not retried; this tenant's requests wait before going upstream again"
        );
    }
    for finding in &exchange.findings {
        let action = shown_action(exchange.observe, finding.action);
        let fix = finding
            .fix
            .as_ref()
            .map(|f| format!("{} → {}", f.before, f.after));
        tracing::info!(
            target: "scimguard::finding",
            rule = %finding.rule,
            action = %action,
            location = finding.location.as_str(),
            detail = finding.message.as_str(),
            fix = fix.as_deref(),
            "finding"
        );
    }
}

/// A finding's action as the admin reads it: in observe mode nothing was done, so a
/// reject or rewrite is what enforce mode *would* have done.
fn shown_action(observe: bool, action: Action) -> &'static str {
    match (observe, action) {
        (true, Action::Reject) => "would reject",
        (true, Action::Rewrite) => "would rewrite",
        (_, action) => action.as_str(),
    }
}

/// The explanation of one exchange as one JSON object (the `--explain-log` schema in
/// README.md): everything but bodies, so it can be kept and shared freely.
pub fn to_json(exchange: &Exchange) -> serde_json::Value {
    let id = exchange.id.text();
    let findings: Vec<serde_json::Value> = exchange
        .findings
        .iter()
        .map(|f| {
            let action = shown_action(exchange.observe, f.action);
            json!({
                "rule": f.rule, "action": action, "location": f.location,
                "message": f.message, "source": f.source, "fix": f.fix,
            })
        })
        .collect();
    json!({
        "id": id.as_str(),
        "time": crate::record::rfc3339_since(exchange.started),
        "tenant": exchange.tenant,
        "method": exchange.method.as_str(),
        "path": exchange.path,
        "operation": exchange.operation.map(|o| o.name()),
        "mode": if exchange.observe { "observe" } else { "enforce" },
        "verdict": exchange.verdict.as_str(),
        "status": exchange.status,
        "findings": findings,
        "upstream": {
            "status": exchange.upstream_status,
            "detail": exchange.aws_detail,
            "request_id": exchange.aws_request_id,
            "back_off_s": exchange.upstream_back_off.map(|d| d.as_secs()),
        },
        "hints": exchange.hints,
        "error": exchange.error,
        "blame": exchange.blame.map(Blame::as_str),
        "throttle": exchange.throttle,
        "timings": exchange.timings(),
    })
}

/// `--explain-log FILE`: one JSON explanation per line, written by the capture's
/// writer ([`crate::record::writer::LineWriter`]): mode 0600, a bounded queue, so a
/// slow disk never holds a request up, and only whole lines, even on a full disk.
#[derive(Clone, Debug)]
pub struct ExplainLog {
    lines: crate::record::writer::LineWriter,
}

impl ExplainLog {
    /// Opens (appends to) the file, mode 0600, and starts its writer.
    pub fn open(path: &Path) -> std::io::Result<ExplainLog> {
        let options = crate::record::writer::LineOptions {
            what: "explanation log",
            max_bytes: None,
            channel: crate::record::DEFAULT_CHANNEL,
        };
        Ok(ExplainLog {
            lines: crate::record::writer::LineWriter::open(path, options)?,
        })
    }

    /// Counts every line dropped from now on in `metrics`
    /// (`scimguard_explain_log_drops_total`).
    pub fn count_drops_in(&self, metrics: crate::metrics::Metrics) {
        self.lines.on_drop(move |n| metrics.explain_log_drops(n));
    }

    /// Queues the exchange's explanation; never waits. A full queue drops the line,
    /// counts it and says so in the log.
    pub fn write(&self, exchange: &Exchange) {
        let id = exchange.id.text();
        self.lines
            .send(to_json(exchange).to_string().into_bytes(), id.as_str());
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.lines.dropped()
    }

    /// Writes everything queued and stops the writer.
    pub async fn close(&self) {
        self.lines.close().await;
    }
}
