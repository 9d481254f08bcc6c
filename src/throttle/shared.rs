//! The shared budget: every replica's buckets in one Redis (or Valkey), so two replicas
//! behind a load balancer admit one budget between them, not one each.
//!
//! Each request costs one round trip: `EVALSHA` of [`GCRA_LUA`] (the `redis` crate's
//! `Script` sends `EVALSHA` and loads the script on `NOSCRIPT`, so a restarted or
//! flushed Redis costs one extra round trip, once). The script reads Redis's own clock,
//! so replicas agree on time without a clock of their own.
//!
//! In shape mode the script *reserves* a turn up to `max_wait` ahead and the replica
//! sleeps until it; observe mode reserves the same turn without sleeping, so what it
//! reports is what shape mode would have done. A client that leaves while sleeping does
//! not give its reserved turn back: the next request waits one period more.
//!
//! ## When the store does not answer
//!
//! Every call is bounded by [`STORE_TIMEOUT`] (50 ms). A failed call opens a circuit
//! breaker for [`BREAKER_OPEN`] (1 s): meanwhile requests are decided by
//! `--throttle-store-failure` without touching Redis (`local`: this replica's own
//! buckets at `--rate / --replicas`; `allow`; `deny`: 503), then one request probes the
//! store again. So a dead Redis costs one request at most 50 ms per second, not every
//! request a timeout (Envoy's global rate-limit users saw every request wait 1–10 s for
//! the store). The outage and the recovery are each logged once, every error and every
//! fallback decision is counted, and the store in use is a gauge.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{IntoConnectionInfo, RedisResult};

use super::local::LocalThrottle;
use super::{
    Admission, OpClass, Refusal, ThrottleConfig, ThrottleMode, MAX_BACK_OFF, MAX_TENANT_LEN,
};
use crate::metrics::Metrics;

/// The GCRA decision, run atomically inside Redis; see the file for its contract.
pub const GCRA_LUA: &str = include_str!("gcra.lua");

/// The longest a request waits for the store: 50 ms. A Redis next to scimguard answers
/// in well under a millisecond, and AWS itself takes 50–500 ms, so this bounds the cost
/// of a dead store to a tenth of a typical AWS answer.
pub const STORE_TIMEOUT: Duration = Duration::from_millis(50);

/// How long the breaker stays open after a failed call before one request probes the
/// store again: 1 s, so recovery is noticed within a second and a dead store costs at
/// most one [`STORE_TIMEOUT`] per second.
pub const BREAKER_OPEN: Duration = Duration::from_secs(1);

/// Every key scimguard writes starts with this, so one Redis can serve other uses too.
pub const KEY_PREFIX: &str = "scimguard:";

/// The bucket tenants share when their id is longer than [`MAX_TENANT_LEN`].
const OVERFLOW_TENANT: &str = "\u{0}overflow";

/// The most replicas `--replicas` accepts: the local fallback splits the rate by it.
pub const MAX_REPLICAS: u32 = 1_000;

/// What a replica does while the store does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreFailure {
    /// Its own buckets at `--rate / --replicas`, so the fleet stays under the budget.
    #[default]
    Local,
    /// Admit everything (AWS's own throttle is the only limit).
    Allow,
    /// Answer 503 with Retry-After (never 429: nothing is over any rate).
    Deny,
}

impl StoreFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreFailure::Local => "local",
            StoreFailure::Allow => "allow",
            StoreFailure::Deny => "deny",
        }
    }
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--throttle-store` and its companions, validated. Its `Debug` and [`redacted`] never
/// show a password.
///
/// [`redacted`]: StoreConfig::redacted
#[derive(Clone)]
pub struct StoreConfig {
    info: redis::ConnectionInfo,
    redacted: String,
    pub failure: StoreFailure,
    /// How many replicas share the store: the local fallback admits `rate / replicas`.
    pub replicas: u32,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.redacted)
            .field("failure", &self.failure)
            .field("replicas", &self.replicas)
            .finish()
    }
}

/// `url` with any user and password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

impl StoreConfig {
    /// Checks `url` (`redis://`, `rediss://`, `valkey://` or `valkeys://`
    /// `[user:password@]host[:port][/db]`); a `password` given apart (from the
    /// environment) replaces one in the URL. The error never repeats the password.
    pub fn new(
        url: &str,
        password: Option<&str>,
        failure: StoreFailure,
        replicas: u32,
    ) -> Result<StoreConfig, String> {
        let redacted = redact_url(url);
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if !["redis", "rediss", "valkey", "valkeys"].contains(&scheme) {
            return Err(format!(
                "`{redacted}` is not a Redis URL; write redis://HOST:PORT[/DB] (rediss:// for TLS)"
            ));
        }
        let mut info = url
            .into_connection_info()
            .map_err(|e| format!("`{redacted}` is not a usable Redis URL ({:?})", e.kind()))?;
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        if replicas == 0 || replicas > MAX_REPLICAS {
            return Err(format!(
                "--replicas {replicas} is out of range; give the number of scimguard replicas sharing the store, 1 to {MAX_REPLICAS}"
            ));
        }
        Ok(StoreConfig {
            info,
            redacted,
            failure,
            replicas,
        })
    }

    /// The URL without its password, for every message.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// A connection manager that connects on first use and reconnects by itself; each
    /// call's own bound is [`STORE_TIMEOUT`], applied by the caller.
    pub fn connect_lazily(&self) -> RedisResult<ConnectionManager> {
        let client = redis::Client::open(self.info.clone())?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        ConnectionManager::new_lazy_with_config(client, config)
    }
}

/// The script's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptAnswer {
    /// Go now.
    Now,
    /// A turn was reserved this far ahead.
    Reserved(Duration),
    /// Over the rate; the earliest turn is this far ahead.
    OverRate(Duration),
    /// The tenant is backing off for this much longer.
    BackedOff(Duration),
}

/// One bucket's parameters in whole microseconds: period T and tolerance tau.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketParams {
    pub period_us: u64,
    pub tau_us: u64,
}

impl BucketParams {
    /// `rate` per second with `burst` at once (both at least 1): governor's T and tau,
    /// in microseconds.
    pub fn new(rate: u32, burst: u32) -> BucketParams {
        let period_us = (1_000_000 / u64::from(rate.max(1))).max(1);
        BucketParams {
            period_us,
            tau_us: period_us * u64::from(burst.max(1) - 1),
        }
    }
}

/// [`GCRA_LUA`], ready to invoke: keys are `scimguard:throttle:{tenant}:…`.
pub struct GcraScript(redis::Script);

impl Default for GcraScript {
    fn default() -> Self {
        GcraScript(redis::Script::new(GCRA_LUA))
    }
}

fn keys(tenant: &str) -> [String; 3] {
    let base = format!("{KEY_PREFIX}throttle:{{{tenant}}}");
    [
        format!("{base}:all"),
        format!("{base}:write"),
        format!("{base}:blocked"),
    ]
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl GcraScript {
    /// One decision for `tenant`: its bucket, the write bucket when `write` is given,
    /// and a reservation of at most `max_wait`. `now_us` replaces Redis's clock (tests).
    pub async fn admit(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
        tenant: &str,
        all: BucketParams,
        write: Option<BucketParams>,
        max_wait: Duration,
        now_us: Option<u64>,
    ) -> RedisResult<ScriptAnswer> {
        let [k_all, k_write, k_blocked] = keys(tenant);
        let write = write.unwrap_or_default();
        let (code, wait): (i64, i64) = self
            .0
            .key(k_all)
            .key(k_write)
            .key(k_blocked)
            .arg("admit")
            .arg(now_us.map(|n| n.to_string()).unwrap_or_default())
            .arg(all.period_us)
            .arg(all.tau_us)
            .arg(write.period_us)
            .arg(write.tau_us)
            .arg(micros(max_wait))
            .invoke_async(connection)
            .await?;
        let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
        Ok(match code {
            0 => ScriptAnswer::Now,
            1 => ScriptAnswer::Reserved(wait),
            3 => ScriptAnswer::BackedOff(wait),
            _ => ScriptAnswer::OverRate(wait),
        })
    }

    /// Nothing of `tenant` goes before `now + wait`, on every replica.
    pub async fn back_off(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
        tenant: &str,
        wait: Duration,
        now_us: Option<u64>,
    ) -> RedisResult<()> {
        let [k_all, k_write, k_blocked] = keys(tenant);
        let _: (i64, i64) = self
            .0
            .key(k_all)
            .key(k_write)
            .key(k_blocked)
            .arg("back_off")
            .arg(now_us.map(|n| n.to_string()).unwrap_or_default())
            .arg(micros(wait))
            .invoke_async(connection)
            .await?;
        Ok(())
    }
}

/// Lets requests reach the store unless it failed within [`BREAKER_OPEN`]; then one
/// probe at a time.
struct Breaker {
    epoch: Instant,
    /// No call before this (ns since `epoch`).
    open_until: AtomicU64,
    healthy: AtomicBool,
    probing: AtomicBool,
}

impl Breaker {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn may_try(&self) -> bool {
        if self.healthy.load(Ordering::Acquire) {
            return true;
        }
        if self.now() < self.open_until.load(Ordering::Acquire) {
            return false;
        }
        !self.probing.swap(true, Ordering::AcqRel)
    }
}

/// The shared throttle: [`GcraScript`] on a lazily connected Redis, with the breaker
/// and the fallback.
pub(super) struct SharedThrottle {
    config: ThrottleConfig,
    store: StoreConfig,
    connection: ConnectionManager,
    script: GcraScript,
    /// `--throttle-store-failure local`: this replica's share of the budget.
    fallback: Option<LocalThrottle>,
    breaker: Breaker,
    /// Shape mode: requests sleeping until their reserved turn.
    waiting: Arc<AtomicUsize>,
    metrics: Option<Metrics>,
}

/// Counts one sleeping request while alive.
struct Sleeper(Arc<AtomicUsize>);

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SharedThrottle {
    pub(super) fn new(
        config: ThrottleConfig,
        store: StoreConfig,
        metrics: Option<Metrics>,
    ) -> RedisResult<SharedThrottle> {
        let connection = store.connect_lazily()?;
        let fallback = (store.failure == StoreFailure::Local).then(|| {
            let share = |n: u32| (n / store.replicas).max(1);
            LocalThrottle::new(ThrottleConfig {
                rate: share(config.rate),
                burst: share(config.burst),
                write_rate: config.write_rate.map(share),
                write_burst: config.write_burst.map(share),
                ..config
            })
        });
        if let Some(metrics) = &metrics {
            metrics.throttle_store_in_use("redis");
        }
        tracing::info!(
            store = store.redacted(),
            failure = %store.failure,
            replicas = store.replicas,
            "throttle budgets shared in Redis"
        );
        let script = GcraScript::default();
        // Connect and load the script now, so the first request does not spend its
        // 50 ms on a TCP (and TLS) handshake and a NOSCRIPT round trip, fall back, and
        // open the breaker for a second at start.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut warm = connection.clone();
            runtime.spawn(async move {
                let load = redis::Script::new(GCRA_LUA);
                let call = load.load_async(&mut warm);
                if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(5), call).await {
                    tracing::debug!("the throttle store is not there yet: {error}");
                }
            });
        }
        Ok(SharedThrottle {
            config,
            store,
            connection,
            script,
            fallback,
            breaker: Breaker {
                epoch: Instant::now(),
                open_until: AtomicU64::new(0),
                healthy: AtomicBool::new(true),
                probing: AtomicBool::new(false),
            },
            waiting: Arc::new(AtomicUsize::new(0)),
            metrics,
        })
    }

    pub(super) fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    pub(super) fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
            + self.fallback.as_ref().map_or(0, LocalThrottle::queue_depth)
    }

    fn tenant_key(tenant: &str) -> &str {
        if tenant.len() > MAX_TENANT_LEN {
            OVERFLOW_TENANT
        } else {
            tenant
        }
    }

    pub(super) async fn admit(&self, tenant: &str, class: OpClass) -> Admission {
        if !self.breaker.may_try() {
            return self.fall_back(tenant, class).await;
        }
        let mode = self.config.mode;
        let queue_full = mode == ThrottleMode::Shape
            && self.waiting.load(Ordering::Acquire) >= self.config.max_queue;
        let max_wait = if mode == ThrottleMode::Reject || queue_full {
            Duration::ZERO
        } else {
            self.config.max_wait
        };
        let all = BucketParams::new(self.config.rate, self.config.burst);
        let write = match (class, self.config.write_rate) {
            (OpClass::Write, Some(rate)) => Some(BucketParams::new(
                rate,
                self.config.write_burst.unwrap_or(self.config.burst),
            )),
            _ => None,
        };
        let mut connection = self.connection.clone();
        let call = self.script.admit(
            &mut connection,
            Self::tenant_key(tenant),
            all,
            write,
            max_wait,
            None,
        );
        let answer = match tokio::time::timeout(STORE_TIMEOUT, call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                self.failed(&error.to_string());
                return self.fall_back(tenant, class).await;
            }
            Err(_) => {
                self.failed("no answer within 50 ms");
                return self.fall_back(tenant, class).await;
            }
        };
        self.answered();
        let refused = |retry_after, reason| match mode {
            ThrottleMode::Observe => Admission::WouldRefuse {
                retry_after,
                reason,
            },
            _ => Admission::Refused {
                retry_after,
                reason,
            },
        };
        match answer {
            ScriptAnswer::Now => Admission::Admitted {
                waited: Duration::ZERO,
            },
            ScriptAnswer::Reserved(wait) if mode == ThrottleMode::Observe => {
                Admission::WouldWait { wait }
            }
            ScriptAnswer::Reserved(wait) => {
                self.waiting.fetch_add(1, Ordering::AcqRel);
                let _sleeper = Sleeper(self.waiting.clone());
                tokio::time::sleep(wait).await;
                Admission::Admitted { waited: wait }
            }
            ScriptAnswer::OverRate(wait) => refused(
                wait,
                match mode {
                    ThrottleMode::Reject => Refusal::OverRate,
                    _ if queue_full => Refusal::QueueFull,
                    _ => Refusal::WaitTooLong,
                },
            ),
            ScriptAnswer::BackedOff(wait) => refused(wait, Refusal::UpstreamBackOff),
        }
    }

    /// The decision while the store does not answer.
    async fn fall_back(&self, tenant: &str, class: OpClass) -> Admission {
        let failure = self.store.failure;
        if let Some(metrics) = &self.metrics {
            metrics.throttle_store_fallback(failure.as_str());
        }
        match (&self.fallback, failure) {
            (Some(local), _) => local.admit(tenant, class).await,
            (None, StoreFailure::Deny) => Admission::Refused {
                retry_after: BREAKER_OPEN,
                reason: Refusal::StoreUnavailable,
            },
            (None, _) => Admission::Admitted {
                waited: Duration::ZERO,
            },
        }
    }

    fn failed(&self, error: &str) {
        let breaker = &self.breaker;
        breaker.open_until.store(
            breaker.now().saturating_add(BREAKER_OPEN.as_nanos() as u64),
            Ordering::Release,
        );
        breaker.probing.store(false, Ordering::Release);
        if let Some(metrics) = &self.metrics {
            metrics.throttle_store_error();
        }
        if breaker.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                store = self.store.redacted(),
                failure = %self.store.failure,
                "the throttle store does not answer ({error}); deciding by --throttle-store-failure {} until it does, retrying every {} s",
                self.store.failure,
                BREAKER_OPEN.as_secs()
            );
            if let Some(metrics) = &self.metrics {
                metrics.throttle_store_in_use(self.store.failure.as_str());
            }
        }
    }

    fn answered(&self) {
        let breaker = &self.breaker;
        breaker.probing.store(false, Ordering::Release);
        if !breaker.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(
                store = self.store.redacted(),
                "the throttle store answers again; budgets are shared again"
            );
            if let Some(metrics) = &self.metrics {
                metrics.throttle_store_in_use("redis");
            }
        }
    }

    /// Every replica backs off: written to the store in the background (bounded by
    /// [`STORE_TIMEOUT`]) and to the local fallback at once.
    pub(super) fn back_off(self: &Arc<Self>, tenant: &str, wait: Duration) {
        let wait = wait.min(MAX_BACK_OFF);
        if let Some(local) = &self.fallback {
            local.back_off(tenant, wait);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.breaker.may_try() {
            return;
        }
        let shared = self.clone();
        let tenant = Self::tenant_key(tenant).to_owned();
        runtime.spawn(async move {
            let mut connection = shared.connection.clone();
            let call = shared.script.back_off(&mut connection, &tenant, wait, None);
            match tokio::time::timeout(STORE_TIMEOUT, call).await {
                Ok(Ok(())) => shared.answered(),
                Ok(Err(error)) => shared.failed(&error.to_string()),
                Err(_) => shared.failed("no answer within 50 ms"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_checked() {
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/2"),
            "redis://***@cache:6379/2"
        );
        assert_eq!(
            redact_url("rediss://user:p%40ss@cache/0"),
            "rediss://***@cache/0"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        let config =
            StoreConfig::new("redis://:s3cret@cache:6379/2", None, StoreFailure::Local, 2).unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
        let error =
            StoreConfig::new("http://:s3cret@cache", None, StoreFailure::Local, 1).unwrap_err();
        assert!(
            !error.contains("s3cret") && error.contains("redis://"),
            "{error}"
        );
        let error =
            StoreConfig::new("redis://cache", Some("pw"), StoreFailure::Local, 0).unwrap_err();
        assert!(error.contains("--replicas"), "{error}");
        let with_env =
            StoreConfig::new("redis://cache", Some("from-env"), StoreFailure::Deny, 1).unwrap();
        assert_eq!(with_env.info.redis_settings().password(), Some("from-env"));
        assert!(!format!("{with_env:?}").contains("from-env"));
    }

    #[test]
    fn bucket_params_match_governor() {
        assert_eq!(
            BucketParams::new(10, 10),
            BucketParams {
                period_us: 100_000,
                tau_us: 900_000
            }
        );
        assert_eq!(BucketParams::new(0, 0).tau_us, 0);
        assert_eq!(BucketParams::new(super::super::MAX_RATE, 1).period_us, 1);
    }
}
