//! One explanation per exchange, on every path. For now: one tracing line with the id,
//! method, path, status and timings.

use crate::exchange::Exchange;

/// Logs the exchange's line (target `scimguard::request`).
pub fn log(exchange: &Exchange) {
    // Microseconds as integers: exact, and cheap to write on every request.
    let elapsed_us = exchange.started.elapsed().as_micros() as u64;
    let upstream_us = exchange.upstream_elapsed.map(|d| d.as_micros() as u64);
    let id = exchange.id.text();
    tracing::info!(
        target: "scimguard::request",
        id = id.as_str(),
        method = exchange.method.as_str(),
        path = exchange.path.as_str(),
        status = exchange.status,
        elapsed_us,
        upstream_us,
        "request"
    );
}
