//! The writer of JSON-lines files (the capture and `--explain-log`): a thread fed
//! through a bounded channel, so writing never blocks the proxy, that leaves only whole
//! lines in its file whatever the disk does.
//!
//! | what | how |
//! |---|---|
//! | file | created (or re-opened for appending) with mode 0600 |
//! | durability | each batch of lines is handed to the OS with one `write` as soon as the writer has it; `fsync` only on close (a killed process loses nothing written; a power cut may) |
//! | a failed write | the file is cut back to the end of its last whole line, then each line of the batch is tried alone; every line not written is counted as dropped; writing resumes with whole lines when space returns |
//! | back-pressure | none: [`LineWriter::send`] never waits; a full channel (or over 64 MiB queued) drops the line |
//! | drops | counted ([`LineWriter::dropped`], and the metric given to [`LineWriter::on_drop`]); logged at most once a second with the count since the last warning and the total |
//! | rotation | past `max_bytes`, `FILE` becomes `FILE.1`, older ones shift up to `FILE.5` and the oldest is deleted |

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ring::hmac;
use tokio::sync::{mpsc, oneshot, watch};

use super::redaction::sanitize_with;
use super::{ExchangeRecord, Record};

/// Default channel capacity: 1024 lines. At AWS's default 20 requests per second
/// per tenant that is over 50 s of a stalled disk before anything is dropped.
pub const DEFAULT_CHANNEL: usize = 1024;
/// Rotated files kept: `FILE.1` (newest) to `FILE.5` (oldest).
pub const ROTATE_KEEP: u32 = 5;
/// The channel also holds at most 64 MiB of lines: 1024 records of 1 MiB bodies would
/// otherwise queue 1 GiB while the disk stalls.
const QUEUE_BYTES_LIMIT: usize = 64 * 1024 * 1024;
/// The writer takes up to 256 queued lines per `write` call: one system call per
/// batch under load, one per line when idle.
const WRITE_BATCH: usize = 256;
/// How long the writer lets lines gather before writing them: each wake of the writer
/// preempts the proxy on its core, so a busy proxy wakes it at most 200 times a second,
/// and a line reaches the file at most 5 ms after its exchange completed.
const WRITE_COALESCE: Duration = Duration::from_millis(5);
/// Drops are logged at most once a second: a full disk drops every line, and a
/// warning per line would flood the log it shares the disk with.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// How to write one file.
#[derive(Debug, Clone)]
pub struct LineOptions {
    /// What the file is, for log messages: `capture`, `explanation log`.
    pub what: &'static str,
    /// Rotate when the file would grow past this many bytes. A line larger than this
    /// gets a file to itself: nothing is dropped for size.
    pub max_bytes: Option<u64>,
    /// Channel capacity in lines ([`DEFAULT_CHANNEL`]); at least 1.
    pub channel: usize,
}

enum Message {
    /// One line with its `\n`, and an id to name it if it is dropped.
    Line { line: Vec<u8>, id: String },
    /// Acknowledge once everything before is written.
    Flush(oneshot::Sender<()>),
    /// Write everything before, sync, acknowledge and stop.
    Close(oneshot::Sender<()>),
}

type DropHook = Box<dyn Fn(u64) + Send + Sync>;

struct Shared {
    path: PathBuf,
    what: &'static str,
    dropped: AtomicU64,
    queued_bytes: AtomicUsize,
    queue_bytes_limit: usize,
    on_drop: OnceLock<DropHook>,
    /// When drops were last logged, and how many since.
    drop_log: Mutex<(Option<Instant>, u64)>,
}

impl Shared {
    /// Counts `lost` lines that will never reach the file; logs them at most once a
    /// second (the count since the last warning, the total, the last reason).
    fn drop_lines(&self, lost: u64, id: &str, reason: &str) {
        if lost == 0 {
            return;
        }
        let total = self.dropped.fetch_add(lost, Ordering::Relaxed) + lost;
        if let Some(hook) = self.on_drop.get() {
            hook(lost);
        }
        let Ok(mut log) = self.drop_log.lock() else {
            return;
        };
        log.1 += lost;
        let due = log.0.is_none_or(|at| at.elapsed() >= DROP_LOG_INTERVAL);
        if due {
            let since = std::mem::take(&mut log.1);
            log.0 = Some(Instant::now());
            tracing::warn!(
                target: "scimguard::record",
                file = %self.path.display(),
                dropped = since,
                dropped_total = total,
                last_id = id,
                "{since} {} line(s) dropped: {reason}",
                self.what
            );
        }
    }
}

/// A handle to a JSON-lines file's writer: cheap to clone, never blocks.
#[derive(Clone)]
pub struct LineWriter {
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    finished: watch::Receiver<bool>,
}

impl std::fmt::Debug for LineWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineWriter")
            .field("path", &self.shared.path)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl LineWriter {
    /// Creates (or appends to) `path` with mode 0600 and starts the writer thread.
    /// Needs no runtime; [`LineWriter::close`] and [`LineWriter::flush`] are async.
    pub fn open(path: &Path, options: LineOptions) -> io::Result<LineWriter> {
        Self::start(path, options, QUEUE_BYTES_LIMIT, None)
    }

    /// `gate`: the writer waits for it before taking anything (tests fill the channel).
    fn start(
        path: &Path,
        options: LineOptions,
        queue_bytes_limit: usize,
        gate: Option<std::sync::mpsc::Receiver<()>>,
    ) -> io::Result<LineWriter> {
        let mut file = LineFile::open(path, options.what)?;
        file.max_bytes = options.max_bytes;
        let (tx, rx) = mpsc::channel(options.channel.max(1));
        let (done_tx, done_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            what: options.what,
            dropped: AtomicU64::new(0),
            queued_bytes: AtomicUsize::new(0),
            queue_bytes_limit,
            on_drop: OnceLock::new(),
            drop_log: Mutex::new((None, 0)),
        });
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("scimguard-writer".into())
            .spawn(move || {
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                run(file, &writer_shared, rx);
                done_tx.send_replace(true);
            })?;
        Ok(LineWriter {
            tx,
            shared,
            finished: done_rx,
        })
    }

    /// Calls `hook` with the number of lines each time some are dropped (the
    /// `/metrics` counter). Set once; later calls are ignored.
    pub fn on_drop(&self, hook: impl Fn(u64) + Send + Sync + 'static) {
        let _ = self.shared.on_drop.set(Box::new(hook));
    }

    /// Queues one line (without its newline) for the writer; never waits. `id` names it
    /// if it is dropped.
    pub fn send(&self, mut line: Vec<u8>, id: &str) {
        line.push(b'\n');
        let size = line.len();
        let queued = self.shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if queued + size > self.shared.queue_bytes_limit && queued > 0 {
            self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.shared
                .drop_lines(1, id, "the writer is behind by more than 64 MiB");
            return;
        }
        let message = Message::Line {
            line,
            id: id.to_owned(),
        };
        if let Err(error) = self.tx.try_send(message) {
            self.shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            let reason = match error {
                mpsc::error::TrySendError::Full(_) => "the queue is full",
                mpsc::error::TrySendError::Closed(_) => "the writer is closed",
            };
            self.shared.drop_lines(1, id, reason);
        }
    }

    /// Lines dropped so far (full channel, closed writer, failed writes).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Waits until every line queued before this call is written to the file.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Message::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Writes every line queued before this call, syncs the file and stops the writer;
    /// lines after it are dropped (and counted). Any clone may call it.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Message::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
        self.finished().await;
    }

    /// Resolves when the writer has stopped: after [`LineWriter::close`], or once every
    /// clone is dropped and the queue is written.
    pub fn finished(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut finished = self.finished.clone();
        async move {
            // An error means the writer thread is gone, which is finished too.
            let _ = finished.wait_for(|done| *done).await;
        }
    }
}

/// The writer thread: gathers lines, writes them in batches, stops on close or when
/// every handle is gone.
fn run(mut file: LineFile, shared: &Shared, mut rx: mpsc::Receiver<Message>) {
    let mut pending = Pending::default();
    let mut closing: Option<oneshot::Sender<()>> = None;
    'receive: while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(message) = next.take() {
            match message {
                Message::Line { line, id } => {
                    shared.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
                    if file.would_rotate(pending.bytes.len(), line.len()) {
                        file.write(&mut pending, shared);
                        file.rotate();
                    }
                    pending.push(line, id);
                }
                Message::Flush(ack) => {
                    file.write(&mut pending, shared);
                    let _ = ack.send(());
                }
                Message::Close(ack) => {
                    closing = Some(ack);
                    break 'receive;
                }
            }
            taken += 1;
            if taken < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        file.write(&mut pending, shared);
        // While this thread sleeps the proxy's sends wake nobody; a full batch means
        // more are queued, so no sleep then and the writer keeps up with any rate.
        if taken < WRITE_BATCH {
            std::thread::sleep(WRITE_COALESCE);
        }
    }
    file.write(&mut pending, shared);
    // Whatever was queued after a close will not be written: say so.
    rx.close();
    while let Ok(message) = rx.try_recv() {
        match message {
            Message::Line { line, id } => {
                shared.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
                shared.drop_lines(1, &id, "the writer is closed");
            }
            Message::Flush(ack) | Message::Close(ack) => {
                let _ = ack.send(());
            }
        }
    }
    if let Err(e) = file.file.sync_data() {
        tracing::warn!(target: "scimguard::record", file = %file.path.display(), "cannot sync the {}: {e}", file.what);
    }
    let dropped = shared.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(target: "scimguard::record", file = %file.path.display(), dropped_total = dropped, "{} stopped; {dropped} line(s) were dropped in all", file.what);
    }
    if let Some(ack) = closing {
        let _ = ack.send(());
    }
}

/// Lines gathered for one `write`, with where each ends and its id.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: Vec<(usize, String)>,
}

impl Pending {
    fn push(&mut self, line: Vec<u8>, id: String) {
        self.bytes.extend_from_slice(&line);
        self.lines.push((self.bytes.len(), id));
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.lines.clear();
    }
}

/// The open file and the length of its whole lines.
struct LineFile {
    path: PathBuf,
    what: &'static str,
    file: File,
    /// Bytes of whole lines in the file: where a failed write is cut back to.
    size: u64,
    max_bytes: Option<u64>,
}

impl LineFile {
    fn open(path: &Path, what: &'static str) -> io::Result<LineFile> {
        let file = open_private(path)?;
        let size = file.metadata()?.len();
        Ok(LineFile {
            path: path.to_owned(),
            what,
            file,
            size,
            max_bytes: None,
        })
    }

    /// Whether adding a line of `len` bytes to `pending` bytes would grow the file past
    /// `max_bytes` (an empty file takes any line).
    fn would_rotate(&self, pending: usize, len: usize) -> bool {
        self.max_bytes.is_some_and(|max| {
            let used = self.size + pending as u64;
            used > 0 && used + len as u64 > max
        })
    }

    /// Hands `pending` to the OS in one call. On an error (a full disk), cuts the file
    /// back to its last whole line and tries each line alone, so whatever fits is
    /// written whole and whatever does not is counted as dropped.
    fn write(&mut self, pending: &mut Pending, shared: &Shared) {
        if pending.bytes.is_empty() {
            return;
        }
        if self.append(&pending.bytes).is_err() {
            let mut start = 0;
            let mut lost = 0;
            let mut last = (String::new(), String::new());
            for (end, id) in &pending.lines {
                if let Err(e) = self.append(&pending.bytes[start..*end]) {
                    lost += 1;
                    last = (id.clone(), e.to_string());
                }
                start = *end;
            }
            shared.drop_lines(lost, &last.0, &format!("cannot write: {}", last.1));
        }
        pending.clear();
    }

    /// Appends whole lines, or nothing: a partial write is cut off again.
    fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        match self.file.write_all(lines) {
            Ok(()) => {
                self.size += lines.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.cut_back();
                Err(e)
            }
        }
    }

    /// Truncates the file to its whole lines. Should that fail too, the file is
    /// reopened, and if even that fails, the next write tries again (the file may then
    /// hold a cut line, which readers skip with a warning).
    fn cut_back(&mut self) {
        if self.file.set_len(self.size).is_ok() {
            return;
        }
        match open_private(&self.path) {
            Ok(file) => {
                let _ = file.set_len(self.size);
                self.file = file;
            }
            Err(e) => {
                tracing::error!(target: "scimguard::record", file = %self.path.display(), "cannot cut the {} back to its last whole line: {e}", self.what);
            }
        }
    }

    /// `FILE.4` → `FILE.5`, …, `FILE` → `FILE.1`, then a new empty `FILE`.
    fn rotate(&mut self) {
        if let Err(e) = self.try_rotate() {
            tracing::warn!(target: "scimguard::record", file = %self.path.display(), "cannot rotate the {}, writing on: {e}", self.what);
        }
    }

    fn try_rotate(&mut self) -> io::Result<()> {
        for n in (1..ROTATE_KEEP).rev() {
            match std::fs::rename(rotated_path(&self.path, n), rotated_path(&self.path, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        let _ = self.file.sync_data();
        self.file = open_private(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Opens `path` for appending, creating it with mode 0600, and sets 0600 on a file that
/// existed (a capture holds request bodies; only its owner reads it).
pub fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// `FILE.n`.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

// ---------------------------------------------------------------------------------
// The recorder
// ---------------------------------------------------------------------------------

/// How to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Rotate when the file would grow past this many bytes (`--record-max-bytes`).
    pub max_bytes: Option<u64>,
    /// Hash PII (`--redact-pii`).
    pub redact_pii: bool,
    /// Channel capacity in records ([`DEFAULT_CHANNEL`]); at least 1.
    pub channel: usize,
    /// The PII hash key; `None`: 32 random bytes, never written anywhere.
    pub pii_salt: Option<Vec<u8>>,
    /// The replica named in every record (`--replica-name`); `None`: no name.
    pub replica: Option<String>,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            max_bytes: None,
            redact_pii: false,
            channel: DEFAULT_CHANNEL,
            pii_salt: None,
            replica: None,
        }
    }
}

/// The handle the pipeline records through: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct Recorder {
    lines: LineWriter,
    /// The PII hash key (`--redact-pii`).
    key: Option<Arc<hmac::Key>>,
    replica: Option<Arc<str>>,
}

impl Recorder {
    /// Creates (or appends to) `path` with mode 0600 and starts the writer thread. Needs
    /// no runtime; [`Recorder::close`] and [`Recorder::flush`] are async.
    pub fn open(path: &Path, options: RecordOptions) -> io::Result<Recorder> {
        Self::start(path, options, QUEUE_BYTES_LIMIT, None)
    }

    fn start(
        path: &Path,
        options: RecordOptions,
        queue_bytes_limit: usize,
        gate: Option<std::sync::mpsc::Receiver<()>>,
    ) -> io::Result<Recorder> {
        let line_options = LineOptions {
            what: "capture",
            max_bytes: options.max_bytes,
            channel: options.channel,
        };
        let lines = LineWriter::start(path, line_options, queue_bytes_limit, gate)?;
        let key = options.redact_pii.then(|| {
            let salt = options
                .pii_salt
                .clone()
                .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
            Arc::new(hmac::Key::new(hmac::HMAC_SHA256, &salt))
        });
        Ok(Recorder {
            lines,
            key,
            replica: options.replica.map(Arc::from),
        })
    }

    /// Counts every record dropped from now on in `metrics`
    /// (`scimguard_recording_drops_total`).
    pub fn count_drops_in(&self, metrics: crate::metrics::Metrics) {
        self.lines.on_drop(move |n| {
            for _ in 0..n {
                metrics.record_drop();
            }
        });
    }

    /// Redacts a record, stamps it with the replica's name and queues it; never waits.
    /// A full channel (or a queue over 64 MiB, or a closed recorder) drops it: counted in
    /// [`Recorder::dropped`] and logged.
    pub fn record(&self, mut record: Record) {
        sanitize_with(&mut record, self.key.as_deref());
        self.stamp(&mut record.replica);
        self.queue(&record, &record.id);
    }

    /// Records an event beside the exchanges (a guard trip or release), stamped with
    /// the replica's name; never waits, dropped as a record is.
    pub fn record_event(&self, mut event: super::Event) {
        self.stamp(&mut event.replica);
        self.queue(&event, &event.event);
    }

    fn stamp(&self, replica: &mut Option<String>) {
        if replica.is_none() {
            *replica = self.replica.as_deref().map(str::to_owned);
        }
    }

    /// Serializes one line and queues it; `id` names it when it is dropped.
    fn queue(&self, line: &impl serde::Serialize, id: &str) {
        match serde_json::to_vec(line) {
            Ok(line) => self.lines.send(line, id),
            Err(e) => self
                .lines
                .shared
                .drop_lines(1, id, &format!("cannot serialize it: {e}")),
        }
    }

    /// Records a finished exchange.
    pub fn record_exchange(&self, exchange: ExchangeRecord<'_>) {
        self.record(exchange.to_record());
    }

    /// Records dropped so far (full channel, closed recorder, failed writes).
    pub fn dropped(&self) -> u64 {
        self.lines.dropped()
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        self.lines.path()
    }

    /// Waits until every record queued before this call is written to the file.
    pub async fn flush(&self) {
        self.lines.flush().await
    }

    /// Writes every record queued before this call, syncs the file and stops the
    /// writer; records after it are dropped (and counted).
    pub async fn close(&self) {
        self.lines.close().await
    }

    /// Resolves when the writer has stopped: after [`Recorder::close`], or once every
    /// clone is dropped and the queue is written. Take it before dropping the last
    /// handle to wait for the tail to reach the file.
    pub fn finished(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lines.finished()
    }
}

#[cfg(test)]
mod tests;
