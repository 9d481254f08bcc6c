//! Log output: tracing-subscriber's stock fmt layer, as text (the default) or as JSON
//! lines (`--log-format json`), written to stderr by tracing-appender's writer thread
//! through a 64 KiB buffer.
//!
//! Why a writer thread and a buffer: at one log line per request (plus one per finding),
//! a `write(2)` per line on the request's own thread would cost more than the proxying
//! itself. The thread drains every line queued, then flushes once, so a busy proxy makes
//! a few writes a second and a quiet one still shows each line at once.
//!
//! Client-controlled text (paths, attribute names and values, filters, finding
//! messages that quote them) is only ever logged as a string *field*: the text format
//! writes those with `Debug` (quoted, `\n` and every other control character escaped)
//! and the JSON format as escaped JSON strings, so no request can start a log line of
//! its own. The free-text `message` of an event is always a fixed word.

use std::io::{self, BufWriter};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};

/// Buffer in front of stderr: 64 KiB, about 200 request lines, so a burst is written in
/// a few system calls.
const BUFFER_BYTES: usize = 64 * 1024;

/// Lines queued for the writer thread before a request's thread waits for it. Waiting
/// (instead of dropping lines) keeps the log whole; at about 200 bytes a line this is at
/// most 25 MiB, far more than a burst at AWS's 20 requests per second can queue.
const QUEUED_LINES: usize = 128 * 1024;

/// The shape of the log lines (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-11-23T05:16:30.371090Z  INFO request{id=…}: scimguard::request: request method=POST …`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`, the event's
    /// fields, and `span` with the request id.
    Json,
}

/// Installs the global subscriber: level from `SCIMGUARD_LOG` (default `info`), colour
/// only when stderr is a terminal and the format is text. Hold the returned guard until
/// exit: dropping it writes the lines still queued.
pub fn init(format: LogFormat) -> WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCIMGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(false)
        .thread_name("scimguard-log")
        .finish(BufWriter::with_capacity(BUFFER_BYTES, io::stderr()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    // Only a second call in one process fails; the first subscriber stays.
    let _ = installed;
    guard
}
