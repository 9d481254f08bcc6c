//! Throttling: per-tenant token buckets in front of the upstream, so AWS never has to
//! throttle.
//!
//! AWS IAM Identity Center throttles its SCIM endpoint at about 20 requests per second
//! (its published figure for Identity Center APIs) and answers 429; sync tools that
//! mishandle a 429 then create duplicates (409) or lose changes. [`Throttle`] smooths an
//! IdP's bursts to a configured rate instead.
//!
//! ## The buckets
//!
//! One governor GCRA bucket per tenant (`rate` per second, `burst` at once), keyed by the
//! path segment before `/scim/v2` (`""`: the upstream as a whole). Every request of the
//! tenant takes a token from it, so the tenant's total never exceeds `rate`. When a write
//! rate is configured, writes also take a token from a second bucket of their own
//! (`write_rate`, `write_burst`): a write must fit both, a read only the first. So
//! `--rate 10 --write-rate 2` means "at most 10 per second in all, of which at most 2
//! writes", never 12.
//!
//! ## The modes
//!
//! - [`ThrottleMode::Shape`]: a request over the rate waits its turn, first come first
//!   served (each bucket has a fair FIFO lock; only the holder asks governor for a token,
//!   so no later request can take the token an earlier one waits for). A request whose
//!   turn would come later than `max_wait`, or that finds `max_queue` requests already
//!   waiting, is refused at once with the time its turn would have come as Retry-After.
//! - [`ThrottleMode::Reject`]: a request over the rate is refused at once.
//! - [`ThrottleMode::Observe`]: never delays. The bucket is charged exactly as in shape
//!   mode (a detached task holds the request's place in the queue and takes its token
//!   when its turn comes), so the [`Admission::WouldWait`] and
//!   [`Admission::WouldRefuse`] answers are what shape mode would have done.
//!
//! A write that gets its write token but is then refused by the tenant's bucket (reject
//! mode, or a turn beyond `max_wait`) does not get the write token back: governor has no
//! refund, and the loss only makes the next write wait one write period more.
//!
//! A request under the rate costs a tenant lookup, a try-lock and one governor check:
//! about 160 ns in a release build (`an_admission_under_the_rate_costs_little`).
//!
//! ## Back-off
//!
//! A 429 from the upstream is relayed unchanged by the pipeline; it calls
//! [`Throttle::back_off`] with the upstream's Retry-After, and both buckets of that
//! tenant then let nothing through until that moment (shape: waiters wait; reject:
//! refused). Nothing is retried here.
//!
//! ## Where the budgets live
//!
//! [`Throttle`] is the one interface; behind it the budgets are either this process's
//! own ([`local`], governor) or shared by every replica in one Redis ([`shared`],
//! `--throttle-store redis://…`: the same GCRA as one Lua script, with the upstream's
//! back-off shared too, and a fallback while the store does not answer).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::metrics::Metrics;
use crate::scim::error::ScimError;
use crate::scim::Operation;

pub mod local;
pub mod shared;

pub use local::LocalThrottle;
pub use shared::{StoreConfig, StoreFailure};

/// Requests per second per tenant by default: half of AWS's published figure of about 20
/// for Identity Center APIs, leaving the other half to whatever else calls the same
/// tenant (the console, a second sync) and to AWS counting in its own windows.
pub const DEFAULT_RATE: u32 = 10;

/// Requests a tenant may send at once after being idle: one second's worth at the
/// default rate, so an IdP's first page of changes goes out without delay.
pub const DEFAULT_BURST: u32 = 10;

/// The longest a request waits for its turn in shape mode: 10 s, so that a client whose
/// HTTP timeout is 30 s (a common setting) still has 20 s left for the upstream itself.
/// At the default rate it covers a queue of 100 requests per tenant.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

/// The most requests waiting at once, over all tenants: the listener's connection cap
/// ([`crate::server::MAX_CONNECTIONS`], 1,024), since an HTTP/1.1 client has one request
/// in flight per connection. Each waiting request holds its body (up to the body cap) in
/// memory, so this also bounds the memory queueing can take.
pub const DEFAULT_MAX_QUEUE: usize = 1024;

/// The highest rate accepted: 1,000,000 per second, one token per microsecond. Governor
/// counts in nanoseconds; far above any SCIM upstream's limit, and the period stays a
/// whole number of nanoseconds.
pub const MAX_RATE: u32 = 1_000_000;

/// The longest `max_wait` accepted: 1 hour. No client waits that long, and it keeps every
/// deadline far from `Instant`'s range.
pub const MAX_MAX_WAIT: Duration = Duration::from_secs(3600);

/// The most tenants with a bucket of their own. AWS gives one tenant per Identity Center
/// instance, so a real deployment has a handful; the bound only matters against a client
/// that invents tenant ids. Idle tenants (bucket full again, nobody waiting, no back-off)
/// are forgotten first; beyond that, new tenants share one overflow bucket.
pub const MAX_TENANTS: usize = 10_000;

/// The longest tenant id that gets its own bucket: 256 bytes. AWS tenant ids are a few
/// dozen characters; longer ones share the overflow bucket, so 10,000 tenants take at
/// most about 2.5 MB of keys.
pub const MAX_TENANT_LEN: usize = 256;

/// The longest back-off an upstream's Retry-After can impose: 5 minutes. AWS answers a
/// few seconds; a bogus day-long value would otherwise stall the sync for a day, and the
/// next 429 after 5 minutes backs off again anyway.
pub const MAX_BACK_OFF: Duration = Duration::from_secs(300);

/// What happens to a request over the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleMode {
    /// Wait its turn, up to `max_wait`, in a bounded queue; refuse beyond that.
    #[default]
    Shape,
    /// Refuse at once with 429 and Retry-After.
    Reject,
    /// Never delay; report what shape mode would have done.
    Observe,
}

impl ThrottleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleMode::Shape => "shape",
            ThrottleMode::Reject => "reject",
            ThrottleMode::Observe => "observe",
        }
    }
}

impl fmt::Display for ThrottleMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The throttle's settings, as the config resolves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Requests per second per tenant, all operations together; 0 turns throttling off.
    pub rate: u32,
    /// Requests a tenant may send at once after being idle.
    pub burst: u32,
    /// Writes per second per tenant, on top of `rate`; `None` or 0: no write bucket.
    pub write_rate: Option<u32>,
    /// Writes at once; `None`: `burst`.
    pub write_burst: Option<u32>,
    pub mode: ThrottleMode,
    /// Shape mode: the longest a request waits for its turn.
    pub max_wait: Duration,
    /// Shape and observe mode: the most requests waiting at once, over all tenants.
    pub max_queue: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            write_rate: None,
            write_burst: None,
            mode: ThrottleMode::Shape,
            max_wait: DEFAULT_MAX_WAIT,
            max_queue: DEFAULT_MAX_QUEUE,
        }
    }
}

/// A throttle setting that cannot work; the message names the flag and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThrottleConfigError {
    #[error("{flag} {value} is above the maximum of {MAX_RATE} requests per second. Fix: use a lower {flag}, or --rate 0 to turn throttling off")]
    RateTooHigh { flag: &'static str, value: u32 },
    #[error("{flag} 0 would refuse every request. Fix: use {flag} 1 or more (the default is {DEFAULT_BURST})")]
    BurstZero { flag: &'static str },
    #[error("--write-burst has no effect without --write-rate. Fix: add --write-rate N, or drop --write-burst")]
    WriteBurstWithoutRate,
    #[error("--max-wait {} is longer than the maximum of 1 hour. Fix: use a shorter --max-wait (the default is 10s)", humantime::format_duration(*.0))]
    MaxWaitTooLong(Duration),
}

impl ThrottleConfig {
    /// Whether throttling is on (`rate` > 0).
    pub fn enabled(&self) -> bool {
        self.rate > 0
    }

    /// Checks the settings; [`Throttle::new`] clamps instead of failing, so call this
    /// where the config is validated to tell the user.
    pub fn validate(&self) -> Result<(), ThrottleConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.rate > MAX_RATE {
            return Err(ThrottleConfigError::RateTooHigh {
                flag: "--rate",
                value: self.rate,
            });
        }
        if self.burst == 0 {
            return Err(ThrottleConfigError::BurstZero { flag: "--burst" });
        }
        match (self.write_rate, self.write_burst) {
            (Some(rate), _) if rate > MAX_RATE => {
                return Err(ThrottleConfigError::RateTooHigh {
                    flag: "--write-rate",
                    value: rate,
                })
            }
            (Some(rate), Some(0)) if rate > 0 => {
                return Err(ThrottleConfigError::BurstZero {
                    flag: "--write-burst",
                })
            }
            (None | Some(0), Some(_)) => return Err(ThrottleConfigError::WriteBurstWithoutRate),
            _ => {}
        }
        if self.max_wait > MAX_MAX_WAIT {
            return Err(ThrottleConfigError::MaxWaitTooLong(self.max_wait));
        }
        Ok(())
    }
}

/// Which buckets a request takes tokens from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    Read,
    Write,
}

impl OpClass {
    /// Reads change nothing (GET, list, `.search`); everything else is a write. `Me` and
    /// unknown operations go by method: GET, HEAD and OPTIONS read.
    pub fn of(operation: Operation, method: &http::Method) -> OpClass {
        use Operation as Op;
        match operation {
            Op::GetUser
            | Op::ListUsers
            | Op::GetGroup
            | Op::ListGroups
            | Op::GetSchema
            | Op::ListSchemas
            | Op::ListResourceTypes
            | Op::ServiceProviderConfig
            | Op::Search
            | Op::GetResourceType => OpClass::Read,
            Op::CreateUser
            | Op::PutUser
            | Op::PatchUser
            | Op::DeleteUser
            | Op::CreateGroup
            | Op::PatchGroup
            | Op::DeleteGroup
            | Op::PutGroup
            | Op::Bulk => OpClass::Write,
            Op::Me | Op::Unknown => {
                if matches!(
                    *method,
                    http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
                ) {
                    OpClass::Read
                } else {
                    OpClass::Write
                }
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OpClass::Read => "read",
            OpClass::Write => "write",
        }
    }
}

/// Why a request was (or in observe mode would have been) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Reject mode: the tenant is over its rate.
    OverRate,
    /// Shape mode: its turn would come later than `max_wait`.
    WaitTooLong,
    /// Shape mode: `max_queue` requests are already waiting.
    QueueFull,
    /// The upstream answered 429 with a Retry-After that has not passed yet.
    UpstreamBackOff,
    /// `--throttle-store-failure deny`: the shared store does not answer (503, not 429).
    StoreUnavailable,
}

impl Refusal {
    /// A short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::OverRate => "over_rate",
            Refusal::WaitTooLong => "wait_too_long",
            Refusal::QueueFull => "queue_full",
            Refusal::UpstreamBackOff => "upstream_back_off",
            Refusal::StoreUnavailable => "store_unavailable",
        }
    }

    /// The reason in words, for the error detail and the log line.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::OverRate => "this tenant is over its request rate and scimguard refuses such requests at once (--throttle reject)",
            Refusal::WaitTooLong => "this tenant is over its request rate and the request's turn in scimguard's queue would have come later than --max-wait allows",
            Refusal::QueueFull => "this tenant is over its request rate and scimguard's queue of waiting requests is full (--max-queue)",
            Refusal::UpstreamBackOff => "the upstream answered 429 (throttled) for this tenant with a Retry-After that has not passed yet, and scimguard sends nothing to that tenant until then",
            Refusal::StoreUnavailable => "scimguard's shared throttle store (--throttle-store) does not answer and --throttle-store-failure deny holds every request until it does",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the throttle decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead. `waited` is zero when a token was there at once.
    Admitted { waited: Duration },
    /// Answer 429 with [`throttled_error`] and `Retry-After: retry_after_header(retry_after)`.
    Refused {
        retry_after: Duration,
        reason: Refusal,
    },
    /// Observe mode: go ahead now; shape mode would have delayed it by about `wait`.
    WouldWait { wait: Duration },
    /// Observe mode: go ahead now; shape or reject mode would have refused it.
    WouldRefuse {
        retry_after: Duration,
        reason: Refusal,
    },
}

impl Admission {
    /// Only [`Admission::Refused`] stops the request; every other answer forwards it.
    pub fn is_refused(&self) -> bool {
        matches!(self, Admission::Refused { .. })
    }

    /// How long the request actually waited (zero unless admitted after waiting).
    pub fn waited(&self) -> Duration {
        match self {
            Admission::Admitted { waited } => *waited,
            _ => Duration::ZERO,
        }
    }

    /// A label for metrics and logs: `admitted`, `delayed`, `refused`, `would_wait` or
    /// `would_refuse`.
    pub fn label(&self) -> &'static str {
        match self {
            Admission::Admitted { waited } if waited.is_zero() => "admitted",
            Admission::Admitted { .. } => "delayed",
            Admission::Refused { .. } => "refused",
            Admission::WouldWait { .. } => "would_wait",
            Admission::WouldRefuse { .. } => "would_refuse",
        }
    }
}

/// The Retry-After header value for a wait: whole seconds, rounded up, at least 1 (a
/// `Retry-After: 0` invites an immediate retry that would be refused again).
pub fn retry_after_header(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    let secs = if wait.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    secs.max(1)
}

/// An upstream's Retry-After value (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as
/// a wait from `now`; a date in the past is zero. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than u64 holds is still "a very long time"; MAX_BACK_OFF caps it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The 429 body for a request scimguard refused itself: AWS's ThrottlingException
/// wording, so IdPs that handle AWS's 429 handle this one, then scimguard's explanation.
/// A request held because the shared store does not answer gets 503 instead: nothing
/// is over any rate, and a 429 would tell the IdP to slow down for no reason.
pub fn throttled_error(retry_after: Duration, reason: Refusal) -> ScimError {
    let secs = retry_after_header(retry_after);
    let plural = if secs == 1 { "" } else { "s" };
    if reason == Refusal::StoreUnavailable {
        return ScimError::new(
            503,
            format!(
                "This 503 comes from scimguard, not from AWS: {}. The request was not sent to AWS and changed nothing; retry it after {secs} second{plural} (Retry-After). Fix: bring the Redis named by --throttle-store back, or choose --throttle-store-failure local.",
                reason.describe()
            ),
        );
    }
    ScimError::new(
        429,
        format!(
            "ThrottlingException: Too many requests exceeded the limits. This 429 comes from scimguard, not from AWS: {}. The request was not sent to AWS and changed nothing; retry it after {secs} second{plural} (Retry-After). scimguard spaces each tenant's requests so that AWS IAM Identity Center, which throttles at about 20 requests per second, does not throttle them.",
            reason.describe(),
        ),
    )
}

/// The throttle: cheap to clone, shared by every connection. Budgets are this
/// process's own or, with a store, shared by every replica in Redis.
#[derive(Clone)]
pub struct Throttle {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Local(LocalThrottle),
    Shared(Arc<shared::SharedThrottle>),
}

impl Throttle {
    /// A throttle of this process's own; out-of-range values are clamped (see
    /// [`ThrottleConfig::validate`] for telling the user instead).
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            backend: Backend::Local(LocalThrottle::new(config)),
        }
    }

    /// With `store`, budgets shared in Redis (connected on first use); without, local.
    /// `metrics` gets the store's gauge, errors and fallback decisions.
    pub fn with_store(
        config: ThrottleConfig,
        store: Option<&StoreConfig>,
        metrics: Option<Metrics>,
    ) -> Result<Throttle, String> {
        let Some(store) = store else {
            if let Some(metrics) = &metrics {
                metrics.throttle_store_in_use("local");
            }
            return Ok(Throttle::new(config));
        };
        // The local throttle's clamping, so both stores read the same settings.
        let config = *LocalThrottle::new(config).config();
        let shared = shared::SharedThrottle::new(config, store.clone(), metrics).map_err(|e| {
            format!(
                "cannot use the throttle store {}: {:?}",
                store.redacted(),
                e.kind()
            )
        })?;
        Ok(Throttle {
            backend: Backend::Shared(Arc::new(shared)),
        })
    }

    /// The settings in force (after clamping).
    pub fn config(&self) -> &ThrottleConfig {
        match &self.backend {
            Backend::Local(local) => local.config(),
            Backend::Shared(shared) => shared.config(),
        }
    }

    /// Decides one request of `tenant` (`""` when the path has none: the upstream as a
    /// whole). Call it after validation, once per request sent upstream (each batch of
    /// a split request too). In shape mode it returns when the request's turn has come,
    /// at most `max_wait` later; dropping the future gives its place up.
    pub async fn admit(&self, tenant: &str, class: OpClass) -> Admission {
        if !self.config().enabled() {
            return Admission::Admitted {
                waited: Duration::ZERO,
            };
        }
        match &self.backend {
            Backend::Local(local) => local.admit(tenant, class).await,
            Backend::Shared(shared) => shared.admit(tenant, class).await,
        }
    }

    /// The upstream throttled `tenant` and asked for `retry_after`: nothing of that
    /// tenant goes through before then (at most [`MAX_BACK_OFF`] from now), on every
    /// replica when the budgets are shared. A later back-off never shortens an earlier
    /// one.
    pub fn back_off(&self, tenant: &str, retry_after: Duration) {
        if !self.config().enabled() {
            return;
        }
        match &self.backend {
            Backend::Local(local) => local.back_off(tenant, retry_after),
            Backend::Shared(shared) => shared.back_off(tenant, retry_after),
        }
    }

    /// The upstream answered 429 for `tenant`: backs off for its Retry-After (seconds
    /// or an HTTP-date) when it sent a usable one, and returns the back-off applied
    /// (capped at [`MAX_BACK_OFF`]) for the explanation. Without one, nothing changes:
    /// the bucket's own rate already spaces the next requests.
    pub fn upstream_throttled(&self, tenant: &str, headers: &http::HeaderMap) -> Option<Duration> {
        let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
        let wait = parse_retry_after(value, SystemTime::now())?.min(MAX_BACK_OFF);
        self.back_off(tenant, wait);
        Some(wait)
    }

    /// Requests waiting for their turn now, over all tenants (in observe mode: the
    /// places held on behalf of requests that went ahead).
    pub fn queue_depth(&self) -> usize {
        match &self.backend {
            Backend::Local(local) => local.queue_depth(),
            Backend::Shared(shared) => shared.queue_depth(),
        }
    }
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("config", self.config())
            .field("shared", &matches!(self.backend, Backend::Shared(_)))
            .field("queue_depth", &self.queue_depth())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
        let cases = [
            (Duration::ZERO, 1),
            (Duration::from_nanos(1), 1),
            (Duration::from_millis(100), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1_001), 2),
            (Duration::from_millis(2_500), 3),
            (Duration::from_secs(30), 30),
            (Duration::MAX, u64::MAX),
        ];
        for (wait, header) in cases {
            assert_eq!(retry_after_header(wait), header, "{wait:?}");
        }
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |secs| httpdate::fmt_http_date(now + Duration::from_secs(secs));
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_retry_after(" 12 ", now),
            Some(Duration::from_secs(12))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(&at(90), now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "soon", "5 s", "Mon, 99 Foo 2024"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn the_429_body_has_aws_wording_and_says_when_to_retry() {
        let error = throttled_error(Duration::from_millis(1_200), Refusal::WaitTooLong);
        assert_eq!(error.status, "429");
        assert!(error
            .detail
            .starts_with("ThrottlingException: Too many requests exceeded the limits."));
        assert!(error.detail.contains("not from AWS"), "{}", error.detail);
        assert!(error.detail.contains("--max-wait"), "{}", error.detail);
        assert!(error.detail.contains("after 2 seconds"), "{}", error.detail);
        let json: serde_json::Value = serde_json::from_slice(&error.to_json()).unwrap();
        assert_eq!(json["status"], "429");
        let one = throttled_error(Duration::from_millis(10), Refusal::OverRate);
        assert!(
            one.detail.contains("after 1 second (Retry-After)"),
            "{}",
            one.detail
        );
    }

    #[test]
    fn operation_classes() {
        use http::Method;
        let reads = [
            Operation::GetUser,
            Operation::ListUsers,
            Operation::GetGroup,
            Operation::ListGroups,
            Operation::GetSchema,
            Operation::ListSchemas,
            Operation::ListResourceTypes,
            Operation::ServiceProviderConfig,
            Operation::Search,
            Operation::GetResourceType,
        ];
        for op in Operation::ALL {
            let class = OpClass::of(op, &Method::POST);
            let expected = if reads.contains(&op) {
                OpClass::Read
            } else {
                OpClass::Write
            };
            assert_eq!(class, expected, "{op}");
        }
        assert_eq!(OpClass::of(Operation::Me, &Method::GET), OpClass::Read);
        assert_eq!(
            OpClass::of(Operation::Unknown, &Method::HEAD),
            OpClass::Read
        );
        assert_eq!(
            OpClass::of(Operation::Unknown, &Method::DELETE),
            OpClass::Write
        );
    }

    #[test]
    fn modes_parse_as_the_cli_and_config_spell_them() {
        use clap::ValueEnum;
        for mode in [
            ThrottleMode::Shape,
            ThrottleMode::Reject,
            ThrottleMode::Observe,
        ] {
            assert_eq!(ThrottleMode::from_str(mode.as_str(), false), Ok(mode));
            let parsed: ThrottleMode =
                serde_json::from_value(serde_json::json!(mode.as_str())).unwrap();
            assert_eq!(parsed, mode);
        }
        assert_eq!(ThrottleMode::default(), ThrottleMode::Shape);
    }
}
