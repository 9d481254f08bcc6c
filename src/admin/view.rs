//! The live view's memory: the last `--view-history` exchanges as [`Entry`] JSON, a
//! counter window of the last minutes, the throttle's state per tenant, and the
//! Server-Sent Events stream the page listens to.
//!
//! The pipeline calls [`View::observe`] once per exchange, at its end; everything shown
//! goes through [`super::entry::redacted`] first. The ring is independent of `--record`.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Response};
use hyper::body::{Body, Frame, SizeHint};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use super::entry::{self, Entry, Extras, Names, Upstream};
use crate::exchange::Exchange;
use crate::record::{Record, RecordedRequest, RecordedResponse, RECORD_VERSION};

/// Exchanges kept by default (`--view-history`).
pub const DEFAULT_VIEW_HISTORY: usize = 1000;

/// The ring also stops at 256 MiB of entries, whatever `--view-history` says: each entry
/// holds up to four bodies of [`entry::MAX_SHOWN_BODY_BYTES`].
pub const MAX_VIEW_BYTES: usize = 256 * 1024 * 1024;

/// The counter strip covers the last 5 minutes, in 10-second buckets: long enough to see
/// a sync's burst, short enough to see it end.
pub const COUNTER_WINDOW: Duration = Duration::from_secs(300);
const BUCKET: Duration = Duration::from_secs(10);

/// Counters and throttle state are pushed every 2 s; the push also keeps idle
/// connections alive through proxies that cut silent streams.
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// Tenants tracked for the throttle table; beyond it the least recently seen goes.
const MAX_TENANTS: usize = 1000;

/// Events queued for one slow page before it is cut off (it reconnects and catches up).
const CLIENT_QUEUE: usize = 256;

/// Pages open at once: each holds one of the admin listener's 64 connections, and the
/// rest must stay free for scrapes and probes.
pub const MAX_EVENT_STREAMS: usize = 16;

/// Handle to the view's state: cheap to clone, shared by the pipeline and the admin
/// listener.
#[derive(Clone)]
pub struct View {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    pii_salt: Option<Vec<u8>>,
    base_url: String,
    /// The names learned so far and the last entry's number: held while an entry is
    /// built, which pretty-prints and diffs bodies, so readers of the ring never wait
    /// for that.
    names: Mutex<(Names, u64)>,
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    streams: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct State {
    ring: VecDeque<Arc<str>>,
    bytes: usize,
    buckets: VecDeque<(u64, Counts)>,
    tenants: BTreeMap<String, TenantThrottle>,
}

/// What one counter bucket holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub requests: u64,
    pub rejected: u64,
    pub rewritten: u64,
    /// 429s the client got, from scimguard's throttle or from AWS.
    pub too_many_requests: u64,
    /// 5xx from the upstream, or scimguard's own 502/504.
    pub upstream_errors: u64,
}

/// The throttle as one tenant has met it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TenantThrottle {
    /// The last decision: admitted, delayed, refused, would_wait, would_refuse.
    pub last: Option<String>,
    pub admitted: u64,
    pub delayed: u64,
    pub refused: u64,
    /// 429s AWS answered.
    pub upstream_429: u64,
    /// The longest wait in the queue, in ms.
    pub max_wait_ms: u64,
    /// Until when AWS's Retry-After holds the tenant back (seconds since the epoch).
    pub back_off_until: Option<u64>,
    /// When the tenant was last seen (seconds since the epoch).
    pub seen: u64,
}

/// The counter strip and the throttle table, as pushed to the page.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub window_s: u64,
    pub counts: Counts,
    pub tenants: Vec<TenantRow>,
    /// Exchanges held in the ring.
    pub held: usize,
    pub capacity: usize,
}

#[derive(Debug, Serialize)]
pub struct TenantRow {
    pub tenant: String,
    #[serde(flatten)]
    pub throttle: TenantThrottle,
    /// Seconds left of AWS's back-off.
    pub back_off_s: u64,
}

#[derive(Clone)]
enum Event {
    Entry(Arc<str>),
}

impl View {
    /// A view keeping `capacity` exchanges (at least 1); `pii_salt` hashes PII as
    /// `--redact-pii` does; `base_url` starts the `curl` commands.
    pub fn new(capacity: usize, pii_salt: Option<Vec<u8>>, base_url: String) -> View {
        let (events, _) = broadcast::channel(CLIENT_QUEUE);
        View {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                pii_salt,
                base_url,
                names: Mutex::new((Names::default(), 0)),
                state: Mutex::new(State::default()),
                events,
                streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
            }),
        }
    }

    /// The view of a config: `None` when there is no admin listener to show it or
    /// `--view-history 0` turned it off.
    pub fn from_config(config: &crate::config::Config) -> Option<View> {
        config.admin?;
        if config.view_history == 0 {
            return None;
        }
        // `--redact-pii` hashes PII in the view as in the capture (another key: the
        // capture's is never shared).
        let salt = config
            .redact_pii
            .then(|| rand::random::<[u8; 32]>().to_vec());
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        Some(View::new(
            config.view_history,
            salt,
            format!("{scheme}://{}", config.listen),
        ))
    }

    /// Takes in one answered exchange and gives its response back unchanged: only the
    /// head the page shows is read, the rest still streams to the client.
    /// Called before the capture takes the received request, after the pipeline has
    /// worked out the hints and scrubbed the exchange of the request's secrets.
    pub async fn observe(
        &self,
        exchange: &Exchange,
        response: Response<crate::body::Body>,
    ) -> Response<crate::body::Body> {
        let (parts, body) = response.into_parts();
        // The page shows at most MAX_SHOWN_BODY_BYTES of a body: only that much is read
        // before the answer streams on to the client.
        let (bytes, body) = match crate::body::read_head(body, entry::MAX_SHOWN_BODY_BYTES).await {
            Ok(head) => (head.bytes.clone(), head.into_body()),
            Err(error) => (Bytes::new(), crate::body::failed(error)),
        };
        let hints = exchange.hints.clone();
        self.push_exchange(
            exchange,
            hints,
            parts.status.as_u16(),
            &parts.headers,
            &bytes,
        );
        Response::from_parts(parts, body)
    }

    fn push_exchange(
        &self,
        exchange: &Exchange,
        hints: Vec<String>,
        status: u16,
        headers: &HeaderMap,
        body: &Bytes,
    ) {
        let request = match &exchange.received {
            Some(received) => received.to_recorded(),
            None => RecordedRequest::new(
                exchange.method.as_str(),
                &exchange.path,
                &HeaderMap::new(),
                Bytes::new(),
            ),
        };
        let record = Record {
            version: RECORD_VERSION,
            replica: None,
            id: exchange.id.text().as_str().to_owned(),
            time: crate::record::rfc3339_since(exchange.started),
            tenant: exchange.tenant.clone(),
            operation: exchange
                .operation
                .map(|o| o.name())
                .unwrap_or("-")
                .to_owned(),
            mode: if exchange.observe {
                "observe"
            } else {
                "enforce"
            }
            .to_owned(),
            verdict: exchange.verdict.as_str().to_owned(),
            request,
            forwarded: exchange.forwarded.clone(),
            response: Some(RecordedResponse::new(status, headers, body.clone())),
            findings: crate::record::findings_json(&exchange.findings),
            error: exchange.error.clone(),
            timings: exchange.timings(),
        };
        let extras = Extras {
            hints,
            throttle: exchange.throttle.map(str::to_owned),
            upstream: exchange.upstream_status.map(|status| Upstream {
                status,
                detail: exchange.aws_detail.clone(),
                request_id: exchange.aws_request_id.clone(),
            }),
            blame: exchange.blame.map(|b| b.as_str()),
        };
        let back_off = exchange.upstream_back_off;
        let wait = exchange.throttle_wait;
        self.push(record, extras, back_off, wait);
    }

    /// Adds one record (redacted here) to the ring, the counters and the stream.
    pub fn push(
        &self,
        mut record: Record,
        extras: Extras,
        back_off: Option<Duration>,
        wait: Duration,
    ) {
        entry::redacted(&mut record, self.inner.pii_salt.as_deref());
        let now = SystemTime::now();
        let shown: Entry = {
            let mut names = self.inner.names.lock().unwrap_or_else(|e| e.into_inner());
            let (names, seq) = &mut *names;
            *seq += 1;
            entry::entry(&record, extras, names, *seq, &self.inner.base_url)
        };
        let Ok(json) = serde_json::to_string(&shown) else {
            return;
        };
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.count(&shown, now);
        state.throttle(&shown, back_off, wait, now);
        let json: Arc<str> = Arc::from(json);
        state.bytes += json.len();
        state.ring.push_back(json.clone());
        while state.ring.len() > self.inner.capacity || state.bytes > MAX_VIEW_BYTES {
            match state.ring.pop_front() {
                Some(old) => state.bytes -= old.len(),
                None => break,
            }
        }
        drop(state);
        // No page listening is not an error.
        let _ = self.inner.events.send(Event::Entry(json));
    }

    /// The entries held, oldest first, as JSON texts.
    pub fn entries(&self) -> Vec<Arc<str>> {
        let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.ring.iter().cloned().collect()
    }

    /// The counters of the last [`COUNTER_WINDOW`] and the throttle per tenant.
    pub fn stats(&self) -> Stats {
        let now = SystemTime::now();
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        state.expire(now);
        let mut counts = Counts::default();
        for (_, bucket) in &state.buckets {
            counts.requests += bucket.requests;
            counts.rejected += bucket.rejected;
            counts.rewritten += bucket.rewritten;
            counts.too_many_requests += bucket.too_many_requests;
            counts.upstream_errors += bucket.upstream_errors;
        }
        let now_s = epoch_seconds(now);
        let tenants = state
            .tenants
            .iter()
            .map(|(tenant, throttle)| TenantRow {
                tenant: tenant.clone(),
                back_off_s: throttle
                    .back_off_until
                    .map_or(0, |until| until.saturating_sub(now_s)),
                throttle: throttle.clone(),
            })
            .collect();
        Stats {
            window_s: COUNTER_WINDOW.as_secs(),
            counts,
            tenants,
            held: state.ring.len(),
            capacity: self.inner.capacity,
        }
    }

    /// The `/events` stream: every held entry, then each new one as it happens, and the
    /// stats every [`STATS_INTERVAL`]. Ends when the page goes away. `None` when
    /// [`MAX_EVENT_STREAMS`] pages are open already.
    pub fn event_stream(&self) -> Option<SseBody> {
        let permit = self.inner.streams.clone().try_acquire_owned().ok()?;
        let (tx, rx) = mpsc::channel::<Bytes>(CLIENT_QUEUE);
        // Subscribed before the snapshot, so nothing falls between them; the page drops
        // what it already has by id.
        let mut events = self.inner.events.subscribe();
        let history = self.entries();
        let view = self.clone();
        tokio::spawn(async move {
            // Held until the page goes away.
            let _permit = permit;
            let _ = tx.send(Bytes::from_static(b"retry: 2000\n\n")).await;
            for json in history {
                if tx.send(sse("entry", &json)).await.is_err() {
                    return;
                }
            }
            let mut tick = tokio::time::interval(STATS_INTERVAL);
            loop {
                let message = tokio::select! {
                    event = events.recv() => match event {
                        Ok(Event::Entry(json)) => sse("entry", &json),
                        // Too slow: the page missed entries; it reconnects and reloads.
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick() => {
                        let stats = serde_json::to_string(&view.stats()).unwrap_or_default();
                        sse("stats", &stats)
                    }
                    () = tx.closed() => return,
                };
                if tx.send(message).await.is_err() {
                    return;
                }
            }
        });
        Some(SseBody { rx })
    }
}

/// One Server-Sent Event; `data` is one line of JSON (serde_json writes no newline).
fn sse(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl State {
    fn expire(&mut self, now: SystemTime) {
        let oldest = epoch_seconds(now).saturating_sub(COUNTER_WINDOW.as_secs()) / BUCKET.as_secs();
        while self.buckets.front().is_some_and(|(b, _)| *b <= oldest) {
            self.buckets.pop_front();
        }
    }

    fn count(&mut self, shown: &Entry, now: SystemTime) {
        self.expire(now);
        let bucket = epoch_seconds(now) / BUCKET.as_secs();
        if self.buckets.back().is_none_or(|(b, _)| *b != bucket) {
            self.buckets.push_back((bucket, Counts::default()));
        }
        let Some((_, counts)) = self.buckets.back_mut() else {
            return;
        };
        counts.requests += 1;
        match shown.verdict.as_str() {
            "rejected" => counts.rejected += 1,
            "rewritten" => counts.rewritten += 1,
            _ => {}
        }
        if shown.status == Some(429) {
            counts.too_many_requests += 1;
        }
        let upstream_5xx = shown.upstream.as_ref().is_some_and(|u| u.status >= 500);
        let gateway = shown.verdict == "error" && matches!(shown.status, Some(502 | 504));
        if upstream_5xx || gateway {
            counts.upstream_errors += 1;
        }
    }

    fn throttle(
        &mut self,
        shown: &Entry,
        back_off: Option<Duration>,
        wait: Duration,
        now: SystemTime,
    ) {
        let upstream_429 = shown.upstream.as_ref().is_some_and(|u| u.status == 429);
        if shown.throttle.is_none() && !upstream_429 {
            return;
        }
        let tenant = shown.tenant.clone().unwrap_or_default();
        if !self.tenants.contains_key(&tenant) && self.tenants.len() >= MAX_TENANTS {
            let stalest = self
                .tenants
                .iter()
                .min_by_key(|(_, t)| t.seen)
                .map(|(name, _)| name.clone());
            if let Some(stalest) = stalest {
                self.tenants.remove(&stalest);
            }
        }
        let entry = self.tenants.entry(tenant).or_default();
        let now_s = epoch_seconds(now);
        entry.seen = now_s;
        if let Some(decision) = &shown.throttle {
            match decision.as_str() {
                "admitted" => entry.admitted += 1,
                "delayed" | "would_wait" => entry.delayed += 1,
                "refused" | "would_refuse" => entry.refused += 1,
                _ => {}
            }
            entry.last = Some(decision.clone());
        }
        entry.max_wait_ms = entry.max_wait_ms.max(wait.as_millis() as u64);
        if upstream_429 {
            entry.upstream_429 += 1;
        }
        if let Some(back_off) = back_off {
            entry.back_off_until = Some(now_s + back_off.as_secs());
        }
    }
}

/// The `/events` response body: frames as the stream's task sends them.
pub struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u8, verdict: &str, status: u16) -> Record {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer view-secret".parse().unwrap());
        Record {
            version: RECORD_VERSION,
            replica: None,
            id: format!("{id:032x}"),
            time: "2026-12-07T02:00:00.000000Z".to_owned(),
            tenant: Some("d-1".to_owned()),
            operation: "CreateUser".to_owned(),
            mode: "enforce".to_owned(),
            verdict: verdict.to_owned(),
            request: RecordedRequest::new(
                "POST",
                "/d-1/scim/v2/Users",
                &headers,
                r#"{"userName":"jdoe","password":"pw-secret"}"#,
            ),
            forwarded: Vec::new(),
            response: Some(RecordedResponse::new(status, &HeaderMap::new(), "{}")),
            findings: Vec::new(),
            error: None,
            timings: crate::record::Timings::default(),
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_redacts_every_entry() {
        let view = View::new(3, None, "http://127.0.0.1:8080".into());
        for i in 0..5 {
            view.push(
                record(i, "forwarded", 201),
                Extras::default(),
                None,
                Duration::ZERO,
            );
        }
        let held = view.entries();
        assert_eq!(held.len(), 3);
        assert!(held[0].contains(&format!("{:032x}", 2)), "{}", held[0]);
        assert!(held[2].contains(&format!("{:032x}", 4)));
        for json in &held {
            assert!(
                !json.contains("view-secret") && !json.contains("pw-secret"),
                "{json}"
            );
        }
        assert_eq!(view.stats().held, 3);
        assert_eq!(
            view.stats().counts.requests,
            5,
            "counters are not bounded by the ring"
        );
    }

    /// The next data frame of a stream, as text.
    async fn next_frame(body: &mut SseBody) -> String {
        use http_body_util::BodyExt;
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a frame within 5 s")
            .expect("the stream is open")
            .unwrap();
        String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_stream_replays_the_ring_then_follows_and_open_pages_are_bounded() {
        let view = View::new(10, None, String::new());
        view.push(
            record(1, "rejected", 400),
            Extras::default(),
            None,
            Duration::ZERO,
        );
        let mut stream = view.event_stream().unwrap();
        assert_eq!(next_frame(&mut stream).await, "retry: 2000\n\n");
        let first = next_frame(&mut stream).await;
        assert!(first.starts_with("event: entry\ndata: {"), "{first}");
        assert!(first.contains(&format!("{:032x}", 1)) && first.ends_with("}\n\n"));
        view.push(
            record(2, "forwarded", 201),
            Extras::default(),
            None,
            Duration::ZERO,
        );
        let mut next = next_frame(&mut stream).await;
        while next.starts_with("event: stats") {
            next = next_frame(&mut stream).await;
        }
        assert!(next.contains(&format!("{:032x}", 2)), "{next}");

        let mut open: Vec<SseBody> = (1..MAX_EVENT_STREAMS)
            .map(|_| view.event_stream().unwrap())
            .collect();
        assert!(view.event_stream().is_none(), "one page too many");
        open.pop();
        // The closed page's task notices and gives its slot back.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(again) = view.event_stream() {
                open.push(again);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the slot never came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(stream);
    }

    #[test]
    fn counters_and_throttle_state_follow_the_traffic() {
        let view = View::new(10, None, String::new());
        view.push(
            record(1, "rejected", 400),
            Extras::default(),
            None,
            Duration::ZERO,
        );
        view.push(
            record(2, "rewritten", 201),
            Extras::default(),
            None,
            Duration::ZERO,
        );
        let throttled = Extras {
            throttle: Some("refused".into()),
            ..Extras::default()
        };
        view.push(record(3, "throttled", 429), throttled, None, Duration::ZERO);
        let aws_429 = Extras {
            throttle: Some("delayed".into()),
            upstream: Some(Upstream {
                status: 429,
                detail: None,
                request_id: None,
            }),
            ..Extras::default()
        };
        view.push(
            record(4, "forwarded", 429),
            aws_429,
            Some(Duration::from_secs(30)),
            Duration::from_millis(250),
        );
        let bad_gateway = Extras {
            upstream: Some(Upstream {
                status: 503,
                detail: None,
                request_id: None,
            }),
            ..Extras::default()
        };
        view.push(
            record(5, "forwarded", 503),
            bad_gateway,
            None,
            Duration::ZERO,
        );
        let stats = view.stats();
        assert_eq!(
            stats.counts,
            Counts {
                requests: 5,
                rejected: 1,
                rewritten: 1,
                too_many_requests: 2,
                upstream_errors: 1,
            }
        );
        let tenant = &stats.tenants[0];
        assert_eq!(tenant.tenant, "d-1");
        assert_eq!((tenant.throttle.refused, tenant.throttle.delayed), (1, 1));
        assert_eq!(tenant.throttle.upstream_429, 1);
        assert_eq!(tenant.throttle.max_wait_ms, 250);
        assert!(
            (29..=30).contains(&tenant.back_off_s),
            "{}",
            tenant.back_off_s
        );
        assert_eq!(tenant.throttle.last.as_deref(), Some("delayed"));
    }
}
