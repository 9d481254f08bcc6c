//! Log output: tracing's fmt layer writing into one shared 64 KiB buffer in front of
//! stderr, flushed when full, every 200 ms by a small thread, and at exit.
//!
//! Why not a line-per-write stderr or a channel to a writer thread: at one log line per
//! request, a `write(2)` per line, or a futex wake of a writer thread per line, cost
//! more than the proxying itself (measured: about 0.4 × a bare hyper pass-through's CPU
//! per request). A buffer shared under an uncontended mutex costs a copy.
//!
//! Lines are formatted by [`LeanFormat`], not tracing-subscriber's default format: that
//! one spent about 12,000 instructions on our request line (callgrind), mostly in
//! `core::fmt` for every field; this one writes strings and integers directly.

use std::io::{self, BufWriter, Stderr, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::fmt as stdfmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Buffer size: 64 KiB, about 400 request lines, so a busy proxy writes a few times per
/// second instead of thousands.
const BUFFER_BYTES: usize = 64 * 1024;

/// A line waits at most 200 ms in the buffer on a quiet proxy.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// The shared buffer; cloned into tracing as its writer.
#[derive(Clone)]
pub struct BufferedStderr {
    inner: Arc<Mutex<BufWriter<Stderr>>>,
}

/// Flushes the buffer when dropped: hold it until the process exits.
pub struct FlushGuard {
    writer: BufferedStderr,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let _ = self.writer.lock().flush();
    }
}

impl BufferedStderr {
    fn new() -> Self {
        BufferedStderr {
            inner: Arc::new(Mutex::new(BufWriter::with_capacity(
                BUFFER_BYTES,
                io::stderr(),
            ))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BufWriter<Stderr>> {
        // A panic while holding the lock leaves a buffer of whole lines: keep using it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One event's writer: holds the lock for the event's writes only.
pub struct LockedWriter<'a>(MutexGuard<'a, BufWriter<Stderr>>);

impl Write for LockedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LockedWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        LockedWriter(self.lock())
    }
}

/// Installs the global subscriber: level from `SCIMGUARD_LOG` (default `info`), colour
/// only when stderr is a terminal.
pub fn init() -> FlushGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCIMGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    let writer = BufferedStderr::new();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .with_ansi(ansi)
        .event_format(LeanFormat { ansi })
        .init();
    let flusher = writer.clone();
    let _ = std::thread::Builder::new()
        .name("scimguard-log-flush".into())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_INTERVAL);
            let _ = flusher.lock().flush();
        });
    FlushGuard { writer }
}

/// `2026-11-23T05:16:30.371090Z  INFO target: message key=value …`, the layout of
/// tracing-subscriber's default format, written without `core::fmt` on the hot path.
pub struct LeanFormat {
    ansi: bool,
}

impl<S, N> FormatEvent<S, N> for LeanFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> stdfmt::Result {
        let meta = event.metadata();
        writer
            .write_str(crate::record::Rfc3339Micros::of(std::time::SystemTime::now()).as_str())?;
        let (level, colour) = match *meta.level() {
            Level::ERROR => (" ERROR ", "\x1b[31m"),
            Level::WARN => ("  WARN ", "\x1b[33m"),
            Level::INFO => ("  INFO ", "\x1b[32m"),
            Level::DEBUG => (" DEBUG ", "\x1b[34m"),
            Level::TRACE => (" TRACE ", "\x1b[35m"),
        };
        if self.ansi {
            writer.write_str(colour)?;
            writer.write_str(level)?;
            writer.write_str("\x1b[0m")?;
        } else {
            writer.write_str(level)?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(":")?;
        let mut visitor = LeanVisitor {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        writer.write_char('\n')
    }
}

/// `n` in decimal, written into the end of `digits` without `core::fmt`: the log line's
/// integers, and the capture line's (`record::write_line`).
pub(crate) fn decimal(n: u64, digits: &mut [u8; 20]) -> &str {
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&digits[at..]).unwrap_or("?")
}

/// Writes ` message` first-class and every other field as ` name=value`.
struct LeanVisitor<'w, 'a> {
    writer: &'w mut Writer<'a>,
    result: stdfmt::Result,
}

impl LeanVisitor<'_, '_> {
    fn name(&mut self, field: &Field) -> stdfmt::Result {
        self.writer.write_char(' ')?;
        if field.name() != "message" {
            self.writer.write_str(field.name())?;
            self.writer.write_char('=')?;
        }
        Ok(())
    }
}

impl Visit for LeanVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| self.writer.write_str(value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() {
            let mut digits = [0u8; 20];
            let text = decimal(value, &mut digits);
            self.result = self.name(field).and_then(|()| self.writer.write_str(text));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn stdfmt::Debug) {
        if self.result.is_ok() {
            self.result = self
                .name(field)
                .and_then(|()| write!(self.writer, "{value:?}"));
        }
    }
}
