//! The proxy's metrics, exposed by [`crate::admin`] at `/metrics`.
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client): every proxy owns
//! its own registry inside a [`Metrics`] handle, with no global recorder, so several
//! proxies in one test process never see each other's counts. The exposition is the
//! OpenMetrics text format (`# EOF`-terminated), which Prometheus scrapes natively and
//! Prometheus text parsers read.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `scimguard_requests_total` | counter | `operation`, `verdict` |
//! | `scimguard_findings_total` | counter | `rule`, `action` |
//! | `scimguard_upstream_responses_total` | counter | `status` |
//! | `scimguard_errors_total` | counter | `blame` ([`crate::error::Blame::as_str`]) |
//! | `scimguard_throttle_total` | counter | `outcome` ([`crate::throttle::Admission::label`]) |
//! | `scimguard_request_duration_seconds` | histogram | |
//! | `scimguard_upstream_duration_seconds` | histogram | |
//! | `scimguard_throttle_wait_seconds` | histogram | |
//! | `scimguard_throttle_queue_depth` | gauge | |
//! | `scimguard_recording_drops_total` | counter | |
//! | `scimguard_throttle_store` | gauge | `store` (1 for the one deciding now: `redis`, `local`, `allow`, `deny`) |
//! | `scimguard_throttle_store_errors_total` | counter | |
//! | `scimguard_throttle_store_fallbacks_total` | counter | `decision` (`--throttle-store-failure`) |
//! | `scimguard_guard_tripped` | gauge | `tenant` (1 while the blast-radius guard holds it; only tenants the guard has tripped for, at most its 10,000) |
//! | `scimguard_guard_held_total` | counter | `operation` |
//! | `scimguard_guard_trips_total`, `scimguard_guard_releases_total` | counter | |
//! | `scimguard_certificate_expiry_timestamp_seconds` | gauge | |
//! | `scimguard_explain_log_drops_total` | counter | |
//!
//! Labels are bounded sets: operation names, verdicts, rule ids from the loaded rules,
//! HTTP statuses. Tenants are never a label (clients choose them, so they are unbounded).
//!
//! Cost per call: an uncontended read lock and a hash of the labels for a labelled
//! counter, a short mutex for a histogram. A request's usual six calls (request,
//! upstream status, throttle outcome, three latencies) measured about 110 ns together in
//! a release build (`a_request_costs_little`; about 860 ns in a debug build).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The Content-Type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets for the request and upstream latencies, in seconds: 1 ms (scimguard's own
/// answers, such as rejections) to 10 s (the default throttle wait plus a slow upstream).
/// AWS's SCIM answers typically take 50 to 500 ms, so that range gets the most buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for the throttle's wait, in seconds: one token at 10 per second is 0.1 s;
/// the default `--max-wait` is 10 s, the longest wait there can be at the default.
const WAIT_BUCKETS: [f64; 11] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 10.0, 30.0];

/// A cheap, cloneable handle to one proxy's metrics.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
    upstream: Family<StatusLabels, Counter>,
    errors: Family<BlameLabels, Counter>,
    throttle: Family<OutcomeLabels, Counter>,
    latency_total: Histogram,
    latency_upstream: Histogram,
    throttle_wait: Histogram,
    queue_depth: Gauge,
    drops: Counter,
    throttle_store: Family<StoreLabels, Gauge>,
    throttle_store_errors: Counter,
    throttle_store_fallbacks: Family<DecisionLabels, Counter>,
    guard_tripped: Family<TenantLabels, Gauge>,
    guard_held: Family<OperationLabels, Counter>,
    guard_trips: Counter,
    guard_releases: Counter,
    /// The served certificate's notAfter (Unix seconds); 0 while none is served.
    certificate_expiry: Gauge,
    explain_drops: Counter,
    /// Read at every render, so the gauge is current when scraped.
    queue_depth_source: OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    rule: String,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BlameLabels {
    blame: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scimguard");
        let requests = Family::<RequestLabels, Counter>::default();
        let findings = Family::<FindingLabels, Counter>::default();
        let upstream = Family::<StatusLabels, Counter>::default();
        let errors = Family::<BlameLabels, Counter>::default();
        let throttle = Family::<OutcomeLabels, Counter>::default();
        let latency_total = Histogram::new(LATENCY_BUCKETS);
        let latency_upstream = Histogram::new(LATENCY_BUCKETS);
        let throttle_wait = Histogram::new(WAIT_BUCKETS);
        let queue_depth = Gauge::default();
        let drops = Counter::default();
        let throttle_store = Family::<StoreLabels, Gauge>::default();
        let throttle_store_errors = Counter::default();
        let throttle_store_fallbacks = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "throttle_store",
            "The throttle store deciding now: 1 for redis, or for the --throttle-store-failure decision (local, allow, deny) while Redis does not answer",
            throttle_store.clone(),
        );
        let guard_tripped = Family::<TenantLabels, Gauge>::default();
        let guard_held = Family::<OperationLabels, Counter>::default();
        let guard_trips = Counter::default();
        let guard_releases = Counter::default();
        registry.register(
            "guard_tripped",
            "1 while the blast-radius guard holds a tenant's destructive requests, 0 once released",
            guard_tripped.clone(),
        );
        registry.register(
            "guard_held",
            "Destructive requests the blast-radius guard held (503), by operation",
            guard_held.clone(),
        );
        registry.register(
            "guard_trips",
            "Times the blast-radius guard tripped for a tenant",
            guard_trips.clone(),
        );
        registry.register(
            "guard_releases",
            "Times an admin released a tripped guard",
            guard_releases.clone(),
        );
        registry.register(
            "throttle_store_errors",
            "Calls to the shared throttle store that failed or timed out",
            throttle_store_errors.clone(),
        );
        registry.register(
            "throttle_store_fallbacks",
            "Throttle decisions taken without the shared store, by --throttle-store-failure",
            throttle_store_fallbacks.clone(),
        );
        let certificate_expiry = Gauge::default();
        let explain_drops = Counter::default();
        registry.register(
            "requests",
            "Requests answered, by SCIM operation and verdict (forwarded, rewritten, rejected, error, or what the pipeline names)",
            requests.clone(),
        );
        registry.register(
            "findings",
            "Rule findings, by rule id and the rule's action (in observe mode: the action it would have taken)",
            findings.clone(),
        );
        registry.register(
            "upstream_responses",
            "Responses from the upstream, by HTTP status",
            upstream.clone(),
        );
        registry.register(
            "errors",
            "Requests that ended in an error of scimguard's own (413, 429, 502, 504…), by whose fault it was (client, upstream, proxy)",
            errors.clone(),
        );
        registry.register(
            "throttle",
            "Throttle decisions, by outcome (admitted, delayed, refused, would_wait, would_refuse)",
            throttle.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer, throttle wait included",
            latency_total.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time the upstream took to answer (all requests of a split change together)",
            latency_upstream.clone(),
        );
        registry.register(
            "throttle_wait_seconds",
            "Time admitted requests waited for their turn in the throttle",
            throttle_wait.clone(),
        );
        registry.register(
            "throttle_queue_depth",
            "Requests waiting for their turn in the throttle",
            queue_depth.clone(),
        );
        registry.register(
            "recording_drops",
            "Exchanges the recorder could not write: a full queue or a failed write (a full disk)",
            drops.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the HTTPS listener's certificate expires (its notAfter, Unix seconds); alert well before it",
            certificate_expiry.clone(),
        );
        registry.register(
            "explain_log_drops",
            "Explanations --explain-log could not write: a full queue or a failed write",
            explain_drops.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                findings,
                upstream,
                errors,
                throttle,
                latency_total,
                latency_upstream,
                throttle_wait,
                queue_depth,
                drops,
                throttle_store,
                throttle_store_errors,
                throttle_store_fallbacks,
                guard_tripped,
                guard_held,
                guard_trips,
                guard_releases,
                certificate_expiry,
                explain_drops,
                queue_depth_source: OnceLock::new(),
            }),
        }
    }

    /// One answered request: `operation` as [`crate::scim::Operation::name`] spells it,
    /// `verdict` as [`crate::exchange::Exchange::verdict`] (both `'static`, so counting
    /// allocates nothing).
    pub fn request(&self, operation: &'static str, verdict: &'static str) {
        self.inner
            .requests
            .get_or_create(&RequestLabels { operation, verdict })
            .inc();
    }

    /// One finding: the rule's id and `action` as [`crate::rules::Action::as_str`].
    pub fn finding(&self, rule: &str, action: &'static str) {
        self.inner
            .findings
            .get_or_create(&FindingLabels {
                rule: rule.into(),
                action,
            })
            .inc();
    }

    /// One request ended by an error of scimguard's own, by whose fault it was.
    pub fn error(&self, blame: crate::error::Blame) {
        self.inner
            .errors
            .get_or_create(&BlameLabels {
                blame: blame.as_str(),
            })
            .inc();
    }

    /// One response from the upstream (each request of a split change counts).
    pub fn upstream_status(&self, status: u16) {
        self.inner
            .upstream
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    /// One throttle decision, by [`crate::throttle::Admission::label`].
    pub fn throttle(&self, outcome: &'static str) {
        self.inner
            .throttle
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The whole request, arrival to answer.
    pub fn latency_total(&self, elapsed: Duration) {
        self.inner.latency_total.observe(elapsed.as_secs_f64());
    }

    /// The upstream's part.
    pub fn latency_upstream(&self, elapsed: Duration) {
        self.inner.latency_upstream.observe(elapsed.as_secs_f64());
    }

    /// An admitted request's wait in the throttle (zero counts too: it shows how many
    /// went straight through).
    pub fn throttle_wait(&self, waited: Duration) {
        self.inner.throttle_wait.observe(waited.as_secs_f64());
    }

    /// Sets the queue-depth gauge. Unneeded once [`Metrics::queue_depth_from`] is set.
    pub fn queue_depth(&self, depth: usize) {
        self.inner
            .queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// Reads the queue depth from `source` at every render, e.g.
    /// `metrics.queue_depth_from({ let t = throttle.clone(); move || t.queue_depth() })`.
    /// Only the first source set is kept; returns whether this one was.
    pub fn queue_depth_from(&self, source: impl Fn() -> usize + Send + Sync + 'static) -> bool {
        self.inner.queue_depth_source.set(Box::new(source)).is_ok()
    }

    /// The throttle store now deciding: `store` gets 1, every other 0.
    pub fn throttle_store_in_use(&self, store: &'static str) {
        for other in ["redis", "local", "allow", "deny"] {
            let value = i64::from(other == store);
            self.inner
                .throttle_store
                .get_or_create(&StoreLabels { store: other })
                .set(value);
        }
    }

    /// One failed or timed-out call to the shared throttle store.
    pub fn throttle_store_error(&self) {
        self.inner.throttle_store_errors.inc();
    }

    /// One decision taken without the store, by `--throttle-store-failure`.
    pub fn throttle_store_fallback(&self, decision: &'static str) {
        self.inner
            .throttle_store_fallbacks
            .get_or_create(&DecisionLabels { decision })
            .inc();
    }

    /// Whether the guard holds `tenant` now.
    pub fn guard_tripped(&self, tenant: &str, tripped: bool) {
        self.inner
            .guard_tripped
            .get_or_create(&TenantLabels {
                tenant: tenant.to_owned(),
            })
            .set(i64::from(tripped));
    }

    /// One request the guard held, by operation name.
    pub fn guard_held(&self, operation: &'static str) {
        self.inner
            .guard_held
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    /// The guard tripped for a tenant.
    pub fn guard_trip(&self) {
        self.inner.guard_trips.inc();
    }

    /// An admin released a tripped guard.
    pub fn guard_release(&self) {
        self.inner.guard_releases.inc();
    }

    /// One exchange the recorder dropped.
    pub fn record_drop(&self) {
        self.inner.drops.inc();
    }

    /// The HTTPS listener now serves a certificate valid until `not_after` (Unix seconds).
    pub fn certificate_expiry(&self, not_after: i64) {
        self.inner.certificate_expiry.set(not_after);
    }

    /// `n` explanations `--explain-log` could not write.
    pub fn explain_log_drops(&self, n: u64) {
        self.inner.explain_drops.inc_by(n);
    }

    /// The exposition: OpenMetrics text, served as [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        if let Some(source) = self.inner.queue_depth_source.get() {
            self.queue_depth(source());
        }
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; an encoder error would leave a partial text,
        // which a parser reports rather than misreads.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    fn scrape(metrics: &Metrics) -> prometheus_parse::Scrape {
        let text = metrics.render();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    /// The one sample of `name` with `labels`; also used by the admin server's tests.
    pub(crate) fn value(
        scrape: &prometheus_parse::Scrape,
        name: &str,
        labels: &[(&str, &str)],
    ) -> f64 {
        let found: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        match &found[0].value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn histogram(scrape: &prometheus_parse::Scrape, name: &str) -> HashMap<String, f64> {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        match &sample.value {
            prometheus_parse::Value::Histogram(buckets) => buckets
                .iter()
                .map(|b| (b.less_than.to_string(), b.count))
                .collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn counts_what_was_recorded() {
        let metrics = Metrics::new();
        for _ in 0..3 {
            metrics.request("CreateUser", "forwarded");
        }
        metrics.request("CreateUser", "rejected");
        metrics.request("ListUsers", "forwarded");
        metrics.finding("user.userName.required", "reject");
        metrics.finding("user.userName.required", "reject");
        metrics.finding("group.members.batch", "rewrite");
        metrics.upstream_status(201);
        metrics.upstream_status(201);
        metrics.upstream_status(429);
        metrics.throttle("admitted");
        metrics.throttle("refused");
        metrics.latency_total(Duration::from_millis(3));
        metrics.latency_total(Duration::from_millis(300));
        metrics.latency_upstream(Duration::from_millis(200));
        metrics.throttle_wait(Duration::ZERO);
        metrics.throttle_wait(Duration::from_millis(1500));
        metrics.queue_depth(7);
        metrics.record_drop();

        let s = scrape(&metrics);
        let requests = "scimguard_requests_total";
        assert_eq!(
            value(
                &s,
                requests,
                &[("operation", "CreateUser"), ("verdict", "forwarded")]
            ),
            3.0
        );
        assert_eq!(
            value(
                &s,
                requests,
                &[("operation", "CreateUser"), ("verdict", "rejected")]
            ),
            1.0
        );
        assert_eq!(
            value(&s, requests, &[("operation", "ListUsers")]),
            1.0,
            "one series per label pair"
        );
        assert_eq!(
            value(
                &s,
                "scimguard_findings_total",
                &[("rule", "user.userName.required"), ("action", "reject")]
            ),
            2.0
        );
        assert_eq!(
            value(
                &s,
                "scimguard_findings_total",
                &[("rule", "group.members.batch")]
            ),
            1.0
        );
        let upstream = "scimguard_upstream_responses_total";
        assert_eq!(value(&s, upstream, &[("status", "201")]), 2.0);
        assert_eq!(value(&s, upstream, &[("status", "429")]), 1.0);
        assert_eq!(
            value(&s, "scimguard_throttle_total", &[("outcome", "refused")]),
            1.0
        );
        assert_eq!(value(&s, "scimguard_throttle_queue_depth", &[]), 7.0);
        assert_eq!(value(&s, "scimguard_recording_drops_total", &[]), 1.0);

        let total = histogram(&s, "scimguard_request_duration_seconds");
        assert_eq!(total["0.005"], 1.0, "3 ms is under 5 ms");
        assert_eq!(total["0.25"], 1.0, "300 ms is over 250 ms");
        assert_eq!(total["0.5"], 2.0);
        assert_eq!(total["inf"], 2.0);
        assert_eq!(
            value(&s, "scimguard_request_duration_seconds_count", &[]),
            2.0
        );
        let sum = value(&s, "scimguard_request_duration_seconds_sum", &[]);
        assert!((sum - 0.303).abs() < 1e-9, "{sum}");
        let wait = histogram(&s, "scimguard_throttle_wait_seconds");
        assert_eq!((wait["0.01"], wait["1"], wait["2"]), (1.0, 1.0, 2.0));
        assert_eq!(
            histogram(&s, "scimguard_upstream_duration_seconds")["0.25"],
            1.0
        );
    }

    #[test]
    fn handles_are_independent_and_clones_share() {
        let a = Metrics::new();
        let b = Metrics::new();
        let a2 = a.clone();
        a.record_drop();
        a2.record_drop();
        assert_eq!(
            value(&scrape(&a), "scimguard_recording_drops_total", &[]),
            2.0
        );
        assert_eq!(
            value(&scrape(&b), "scimguard_recording_drops_total", &[]),
            0.0
        );
    }

    #[test]
    fn exposition_is_openmetrics_and_escapes_labels() {
        let metrics = Metrics::new();
        metrics.finding("odd \"rule\"\\\nid", "warn");
        let text = metrics.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        // A labelled family shows up with its first series; the others from the start.
        assert!(!text.contains("scimguard_requests"), "{text}");
        assert!(text.contains("# TYPE scimguard_findings counter"), "{text}");
        assert!(text.contains("scimguard_recording_drops_total 0"), "{text}");
        assert!(text.contains("# TYPE scimguard_request_duration_seconds histogram"));
        assert!(
            text.contains(r#"rule="odd \"rule\"\\\nid""#),
            "quotes, backslashes and newlines escaped: {text}"
        );
        assert!(text.lines().count() > 20);
    }

    #[test]
    fn queue_depth_source_is_read_at_render() {
        let metrics = Metrics::new();
        let depth = Arc::new(std::sync::atomic::AtomicUsize::new(3));
        let seen = depth.clone();
        assert!(metrics.queue_depth_from(move || seen.load(std::sync::atomic::Ordering::Relaxed)));
        assert!(
            !metrics.queue_depth_from(|| 0),
            "only the first source is kept"
        );
        assert_eq!(
            value(&scrape(&metrics), "scimguard_throttle_queue_depth", &[]),
            3.0
        );
        depth.store(11, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            value(&scrape(&metrics), "scimguard_throttle_queue_depth", &[]),
            11.0
        );
    }

    /// The per-request set of calls stays cheap: the bound is loose (debug builds and a
    /// shared 2-core machine), the number printed is the one to read.
    #[test]
    fn a_request_costs_little() {
        let metrics = Metrics::new();
        let rounds: u32 = 20_000;
        let start = std::time::Instant::now();
        for i in 0..rounds {
            metrics.request("CreateUser", "forwarded");
            metrics.upstream_status(if i % 10 == 0 { 400 } else { 201 });
            metrics.throttle("admitted");
            metrics.latency_total(Duration::from_micros(u64::from(i % 5000)));
            metrics.latency_upstream(Duration::from_micros(u64::from(i % 4000)));
            metrics.throttle_wait(Duration::ZERO);
        }
        let per_request = start.elapsed() / rounds;
        eprintln!("metrics per request (6 calls): {per_request:?}");
        assert!(per_request < Duration::from_micros(20), "{per_request:?}");
    }
}
