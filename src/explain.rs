//! One explanation per exchange, on every path: one tracing line with the id, method,
//! path, operation, verdict, status and timings, then one line per finding with the
//! rule, the action (as "would …" in observe mode), the place, the message and the fix.

use crate::exchange::Exchange;
use crate::rules::Action;

/// Logs the exchange's line (target `scimguard::request`).
pub fn log(exchange: &Exchange) {
    // Microseconds as integers: exact, and cheap to write on every request.
    let elapsed_us = exchange.started.elapsed().as_micros() as u64;
    let upstream_us = exchange.upstream_elapsed.map(|d| d.as_micros() as u64);
    let id = exchange.id.text();
    let operation = exchange.operation.map(|op| op.name()).unwrap_or("-");
    tracing::info!(
        target: "scimguard::request",
        id = id.as_str(),
        method = exchange.method.as_str(),
        path = exchange.path.as_str(),
        operation,
        verdict = exchange.verdict,
        status = exchange.status,
        elapsed_us,
        upstream_us,
        "request"
    );
    for finding in &exchange.findings {
        let action = match (exchange.observe, finding.action) {
            (true, Action::Reject) => "would reject",
            (true, Action::Rewrite) => "would rewrite",
            (_, action) => action.as_str(),
        };
        let fix = finding
            .fix
            .as_ref()
            .map(|f| format!("{} → {}", f.before, f.after));
        tracing::info!(
            target: "scimguard::finding",
            id = id.as_str(),
            rule = finding.rule.as_str(),
            action,
            location = finding.location.as_str(),
            fix = fix.as_deref(),
            "  {}",
            finding.message
        );
    }
}
