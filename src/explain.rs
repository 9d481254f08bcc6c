//! One explanation per exchange, on every path. For now: one tracing line with the id,
//! method, path, status and timings.

use crate::error::millis;
use crate::exchange::Exchange;

/// Logs the exchange's line (target `scimguard::request`).
pub fn log(exchange: &Exchange) {
    let elapsed_ms = millis(exchange.started.elapsed());
    let upstream_ms = exchange.upstream_elapsed.map(millis);
    tracing::info!(
        target: "scimguard::request",
        id = %exchange.id,
        method = %exchange.method,
        path = %exchange.path,
        status = exchange.status,
        elapsed_ms,
        upstream_ms,
        "request"
    );
}
