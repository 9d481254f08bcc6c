//! Log output: tracing-subscriber's stock fmt layer, as text (the default) or as JSON
//! lines (`--log-format json`), written to stderr in batches by a thread of its own
//! ([`Batched`]).
//!
//! Why batches: at one log line per request (plus one per finding), a `write(2)` per
//! line would cost more than the proxying itself, and so does waking a writer thread
//! per line. tracing-appender's writer thread, which this replaced, woke for nearly
//! every line once the proxy shared a core with it: one write, two `sched_yield` and a
//! futex per request, about a third of a GET's own cost. Here a line is copied into a
//! shared buffer; the thread is woken by the first line of a batch only, gathers for
//! [`GATHER`], and writes the batch in one call. A quiet proxy's line shows within
//! [`GATHER`]; a request never waits on stderr unless [`QUEUED_BYTES`] are waiting.
//!
//! Client-controlled text (paths, attribute names and values, filters, finding
//! messages that quote them) is only ever logged as a string *field*: the text format
//! writes those with `Debug` (quoted, `\n` and every other control character escaped)
//! and the JSON format as escaped JSON strings, so no request can start a log line of
//! its own. The free-text `message` of an event is always a fixed word.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long the writer gathers lines after the first of a batch: short enough that a
/// line shows at once to a person reading the log, long enough to take a burst's lines
/// in one write.
pub const GATHER: Duration = Duration::from_millis(20);

/// How long the exit waits for the last lines to reach stderr.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Bytes waiting for stderr before a request's thread waits for the writer. Waiting
/// (instead of dropping lines) keeps the log whole; 16 MiB is about 80,000 lines, far
/// more than a burst at AWS's 20 requests per second can queue.
pub const QUEUED_BYTES: usize = 16 * 1024 * 1024;

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
pub fn init(format: LogFormat) -> Batched {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCIMGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let batched = Batched::start(Box::new(io::stderr()), QUEUED_BYTES);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(batched.writer());
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
    batched
}

/// Lines gathered in memory and written by one thread in batches. Dropping it writes
/// what is queued and stops the thread: hold it until exit.
pub struct Batched {
    shared: Arc<Shared>,
    /// Says when the writer thread has written everything and stopped.
    finished: Option<std::sync::mpsc::Receiver<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The writer waits here for a batch's first line.
    lines: Condvar,
    /// A request's thread waits here while the queue is full.
    room: Condvar,
    limit: usize,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Batched {
    /// Starts the writer thread onto `sink`; writers wait while `limit` bytes queue.
    pub fn start(sink: Box<dyn Write + Send>, limit: usize) -> Batched {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            lines: Condvar::new(),
            room: Condvar::new(),
            limit,
        });
        let writer = shared.clone();
        let (done, finished) = std::sync::mpsc::channel();
        let started = std::thread::Builder::new()
            .name("scimguard-log".to_owned())
            .spawn(move || {
                write_batches(&writer, sink);
                let _ = done.send(());
            });
        if let Err(e) = &started {
            eprintln!(
                "scimguard: cannot start the log writer ({e}); logging to stderr line by line"
            );
            // No thread: lines are written as they come, by whoever logs.
            shared.lock().closed = true;
        }
        Batched {
            shared,
            finished: started.ok().map(|_| finished),
        }
    }

    /// What the fmt layer writes each event through.
    pub fn writer(&self) -> BatchWriter {
        BatchWriter {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Batched {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.lines.notify_all();
        // A stderr nobody reads (a stalled pipe) must not hold the exit for ever.
        if let Some(finished) = self.finished.take() {
            let _ = finished.recv_timeout(EXIT_WAIT);
        }
    }
}

/// The writer thread: sleeps until a batch's first line, gathers for [`GATHER`], writes
/// the batch in one call; after close, writes what is left and stops.
fn write_batches(shared: &Shared, mut sink: Box<dyn Write + Send>) {
    let mut batch = Vec::new();
    loop {
        let mut queue = shared.lock();
        while queue.bytes.is_empty() && !queue.closed {
            queue = shared
                .lines
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if !queue.closed {
            drop(queue);
            std::thread::sleep(GATHER);
            queue = shared.lock();
        }
        let closed = queue.closed;
        std::mem::swap(&mut batch, &mut queue.bytes);
        drop(queue);
        shared.room.notify_all();
        // A failed write (stderr closed) loses that batch only; the proxy goes on.
        let _ = sink.write_all(&batch).and_then(|()| sink.flush());
        batch.clear();
        if closed && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

/// What the fmt layer makes each event's writer from.
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// One event's writer: its line goes into the queue whole (the fmt layer writes each
/// event with one `write_all`).
pub struct BatchLine<'a> {
    shared: &'a Shared,
}

impl Write for BatchLine<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = self.shared;
        let mut queue = shared.lock();
        if queue.closed {
            // After shutdown (or with no thread): straight to stderr.
            drop(queue);
            return io::stderr().write(line);
        }
        while queue.bytes.len() >= shared.limit && !queue.closed {
            queue = shared
                .room
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let first = queue.bytes.is_empty();
        queue.bytes.extend_from_slice(line);
        drop(queue);
        if first {
            shared.lines.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchLine<'a>;

    fn make_writer(&'a self) -> BatchLine<'a> {
        BatchLine {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// A sink the test reads back, counting its writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(bytes);
            sink.1 += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_in_few_writes_and_all_by_drop() {
        let sink = Sink::default();
        let batched = Batched::start(Box::new(sink.clone()), 1024 * 1024);
        let writer = batched.writer();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let writer = &writer;
                scope.spawn(move || {
                    for i in 0..1000 {
                        let line = format!("thread {t} line {i}\n");
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(batched);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> = (0..1000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "each thread's lines, whole and in order");
        }
        assert_eq!(text.lines().count(), 4000);
        assert!(writes < 400, "{writes} writes for 4,000 lines");
    }

    /// A sink that never returns, as stderr piped to a reader that stopped reading.
    struct Stalled;

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stderr_does_not_hold_the_exit() {
        let batched = Batched::start(Box::new(Stalled), 1024);
        batched
            .writer()
            .make_writer()
            .write_all(b"a line\n")
            .unwrap();
        std::thread::sleep(GATHER * 3);
        let dropped = std::time::Instant::now();
        drop(batched);
        assert!(dropped.elapsed() < EXIT_WAIT * 3, "{:?}", dropped.elapsed());
    }

    #[test]
    fn a_full_queue_makes_the_writer_wait_and_loses_nothing() {
        let sink = Sink::default();
        // A limit below one line: every line waits for the one before it to be written.
        let batched = Batched::start(Box::new(sink.clone()), 1);
        let writer = batched.writer();
        for i in 0..20 {
            writer
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(batched);
        let text = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
        let expected: String = (0..20).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }
}
