//! The local budget: one governor GCRA bucket per tenant in this process.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{Mutex as FairMutex, OwnedMutexGuard};

use super::*;

type Limiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

/// One token bucket and the queue of requests waiting on it.
struct Bucket {
    limiter: Limiter,
    /// The time one token takes to come back.
    period: Duration,
    burst: u32,
    /// Held by the request whose turn it is; tokio's mutex is fair (FIFO), which makes
    /// the queue first come, first served.
    turn: Arc<FairMutex<()>>,
    /// Requests queued on this bucket, the holder of `turn` included.
    waiters: AtomicUsize,
    /// When the holder of `turn` expects its token (ns since the throttle's epoch): the
    /// start of the estimate for a newcomer.
    head_ready_at: AtomicU64,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        // Clamped, so neither is zero and the period is at least 1 µs.
        let rate = NonZeroU32::new(rate.clamp(1, MAX_RATE)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Bucket {
            limiter: RateLimiter::direct_with_clock(quota, MonotonicClock),
            period: quota.replenish_interval(),
            burst: burst.get(),
            turn: Arc::new(FairMutex::new(())),
            waiters: AtomicUsize::new(0),
            head_ready_at: AtomicU64::new(0),
        }
    }

    /// The time an empty bucket takes to fill again.
    fn refill(&self) -> Duration {
        self.period.saturating_mul(self.burst)
    }
}

/// A tenant's buckets and back-off.
struct Tenant {
    all: Bucket,
    write: Option<Bucket>,
    /// The upstream's Retry-After has not passed before this (ns since the epoch); 0:
    /// never backed off.
    blocked_until: AtomicU64,
    /// The last admit or back-off (ns since the epoch), for forgetting idle tenants.
    last_used: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Write,
    All,
}

const READ_STAGES: &[Stage] = &[Stage::All];
/// The write bucket first: taking the tenant's token first would spend it while the
/// write still waits for a write token, a token the reads could have used meanwhile.
const WRITE_STAGES: &[Stage] = &[Stage::Write, Stage::All];

impl Tenant {
    fn bucket(&self, stage: Stage) -> &Bucket {
        match stage {
            Stage::Write => self.write.as_ref().unwrap_or(&self.all),
            Stage::All => &self.all,
        }
    }
}

/// The throttle: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct LocalThrottle {
    shared: Arc<Shared>,
}

struct Shared {
    /// As given, with out-of-range values clamped.
    config: ThrottleConfig,
    epoch: Instant,
    tenants: RwLock<HashMap<Box<str>, Arc<Tenant>>>,
    /// Shared by tenants beyond [`MAX_TENANTS`] or [`MAX_TENANT_LEN`].
    overflow: Arc<Tenant>,
    /// No eviction scan before this (ns since the epoch) after one freed nothing, so a
    /// flood of invented tenants costs one scan per refill time, not one per request.
    next_eviction: AtomicU64,
    /// Requests waiting, over all tenants.
    waiting: AtomicUsize,
}

/// What [`Shared::enter`] found.
enum Entry {
    /// A token was taken at once.
    Now,
    /// Queued: wait with [`Waiter::wait`].
    Queued(Waiter),
    Refused(Refusal, Duration),
}

/// A place in a bucket's queue; dropping it (a client that went away) gives it back.
struct Waiter {
    slot: Slot,
    /// Already holding the bucket's turn (it was free when the request came).
    turn: Option<OwnedMutexGuard<()>>,
    /// When the request's turn was expected to come, measured on entry.
    estimate: Duration,
}

/// Counts one waiting request in the throttle's and the bucket's totals while alive.
struct Slot {
    shared: Arc<Shared>,
    tenant: Arc<Tenant>,
    stage: Stage,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
        self.tenant
            .bucket(self.stage)
            .waiters
            .fetch_sub(1, Ordering::AcqRel);
    }
}

impl LocalThrottle {
    /// A throttle with these settings; out-of-range values are clamped (see
    /// [`ThrottleConfig::validate`] for telling the user instead).
    pub fn new(config: ThrottleConfig) -> LocalThrottle {
        let mut config = config;
        config.rate = config.rate.min(MAX_RATE);
        config.burst = config.burst.max(1);
        config.write_rate = config
            .write_rate
            .filter(|r| *r > 0)
            .map(|r| r.min(MAX_RATE));
        config.write_burst = config
            .write_rate
            .map(|_| config.write_burst.unwrap_or(config.burst).max(1));
        config.max_wait = config.max_wait.min(MAX_MAX_WAIT);
        let shared = Shared {
            config,
            epoch: Instant::now(),
            tenants: RwLock::new(HashMap::new()),
            overflow: Arc::new(Shared::new_tenant(&config, 0)),
            next_eviction: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        };
        LocalThrottle {
            shared: Arc::new(shared),
        }
    }

    /// The settings in force (after clamping).
    pub fn config(&self) -> &ThrottleConfig {
        &self.shared.config
    }

    /// Decides one request of `tenant` (`""` when the path has none: the upstream as a
    /// whole). Call it after validation, once per request sent upstream (each batch of
    /// a split request too). In shape mode it returns when the request's turn has come,
    /// at most `max_wait` later; dropping the future gives its place up.
    pub async fn admit(&self, tenant: &str, class: OpClass) -> Admission {
        let shared = &self.shared;
        if !shared.config.enabled() {
            return Admission::Admitted {
                waited: Duration::ZERO,
            };
        }
        let tenant = shared.tenant(tenant);
        let stages = if class == OpClass::Write && tenant.write.is_some() {
            WRITE_STAGES
        } else {
            READ_STAGES
        };
        match shared.config.mode {
            ThrottleMode::Reject => shared.reject(&tenant, stages),
            ThrottleMode::Shape => shared.shape(tenant, stages).await,
            ThrottleMode::Observe => shared.observe(tenant, stages),
        }
    }

    /// The upstream throttled `tenant` and asked for `retry_after`: nothing of that
    /// tenant goes through before then (at most [`MAX_BACK_OFF`] from now). A later
    /// back-off never shortens an earlier one.
    pub fn back_off(&self, tenant: &str, retry_after: Duration) {
        let shared = &self.shared;
        if !shared.config.enabled() {
            return;
        }
        let now = Instant::now();
        let until = now
            .checked_add(retry_after.min(MAX_BACK_OFF))
            .unwrap_or(now);
        let tenant = shared.tenant(tenant);
        tenant
            .blocked_until
            .fetch_max(shared.ns(until), Ordering::AcqRel);
    }

    /// Requests waiting for their turn now, over all tenants (in observe mode: the
    /// places held on behalf of requests that went ahead).
    pub fn queue_depth(&self) -> usize {
        self.shared.waiting.load(Ordering::Acquire)
    }
}

impl fmt::Debug for LocalThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalThrottle")
            .field("config", &self.shared.config)
            .field("queue_depth", &self.queue_depth())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn new_tenant(config: &ThrottleConfig, now_ns: u64) -> Tenant {
        Tenant {
            all: Bucket::new(config.rate, config.burst),
            write: config
                .write_rate
                .map(|rate| Bucket::new(rate, config.write_burst.unwrap_or(config.burst))),
            blocked_until: AtomicU64::new(0),
            last_used: AtomicU64::new(now_ns),
        }
    }

    /// `at` as nanoseconds since the epoch (584 years fit in a u64).
    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ns: u64) -> Instant {
        self.epoch
            .checked_add(Duration::from_nanos(ns))
            .unwrap_or(self.epoch)
    }

    /// The tenant's state, created on first use.
    fn tenant(&self, key: &str) -> Arc<Tenant> {
        if key.len() > MAX_TENANT_LEN {
            return self.overflow.clone();
        }
        let now = self.ns(Instant::now());
        {
            let map = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(tenant) = map.get(key) {
                tenant.last_used.store(now, Ordering::Relaxed);
                return tenant.clone();
            }
        }
        let mut map = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(tenant) = map.get(key) {
            return tenant.clone();
        }
        if map.len() >= MAX_TENANTS {
            self.evict(&mut map, now);
            if map.len() >= MAX_TENANTS {
                return self.overflow.clone();
            }
        }
        let tenant = Arc::new(Shared::new_tenant(&self.config, now));
        map.insert(key.into(), tenant.clone());
        tenant
    }

    /// Forgets tenants indistinguishable from new ones: nobody holds them (no waiter),
    /// unused for longer than their buckets take to fill, no back-off pending.
    fn evict(&self, map: &mut HashMap<Box<str>, Arc<Tenant>>, now: u64) {
        if now < self.next_eviction.load(Ordering::Relaxed) {
            return;
        }
        let idle = self.overflow.all.refill().max(
            self.overflow
                .write
                .as_ref()
                .map_or(Duration::ZERO, Bucket::refill),
        );
        let idle = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
        map.retain(|_, tenant| {
            Arc::strong_count(tenant) > 1
                || now.saturating_sub(tenant.last_used.load(Ordering::Relaxed)) <= idle
                || tenant.blocked_until.load(Ordering::Relaxed) > now
        });
        if map.len() >= MAX_TENANTS {
            self.next_eviction
                .store(now.saturating_add(idle), Ordering::Relaxed);
        }
    }

    /// How long the tenant's back-off still lasts, if it does.
    fn blocked_for(&self, tenant: &Tenant, now: Instant) -> Option<Duration> {
        let until = tenant.blocked_until.load(Ordering::Acquire);
        if until == 0 {
            return None;
        }
        let left = self.instant(until).saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    fn deadline(&self, start: Instant) -> Instant {
        start.checked_add(self.config.max_wait).unwrap_or(start)
    }

    fn reject(&self, tenant: &Tenant, stages: &[Stage]) -> Admission {
        let now = Instant::now();
        if let Some(left) = self.blocked_for(tenant, now) {
            return Admission::Refused {
                retry_after: left,
                reason: Refusal::UpstreamBackOff,
            };
        }
        for &stage in stages {
            if let Err(not_until) = tenant.bucket(stage).limiter.check() {
                return Admission::Refused {
                    retry_after: not_until.wait_time_from(Instant::now()),
                    reason: Refusal::OverRate,
                };
            }
        }
        Admission::Admitted {
            waited: Duration::ZERO,
        }
    }

    async fn shape(self: &Arc<Self>, tenant: Arc<Tenant>, stages: &[Stage]) -> Admission {
        let start = Instant::now();
        let deadline = self.deadline(start);
        let mut waited = false;
        for &stage in stages {
            match self.enter(&tenant, stage, deadline) {
                Entry::Now => {}
                Entry::Refused(reason, retry_after) => {
                    return Admission::Refused {
                        retry_after,
                        reason,
                    }
                }
                Entry::Queued(waiter) => {
                    waited = true;
                    if let Err((reason, retry_after)) = waiter.wait(deadline).await {
                        return Admission::Refused {
                            retry_after,
                            reason,
                        };
                    }
                }
            }
        }
        Admission::Admitted {
            waited: if waited {
                start.elapsed()
            } else {
                Duration::ZERO
            },
        }
    }

    fn observe(self: &Arc<Self>, tenant: Arc<Tenant>, stages: &'static [Stage]) -> Admission {
        let start = Instant::now();
        let deadline = self.deadline(start);
        for (i, &stage) in stages.iter().enumerate() {
            match self.enter(&tenant, stage, deadline) {
                Entry::Now => {}
                Entry::Refused(reason, retry_after) => {
                    return Admission::WouldRefuse {
                        retry_after,
                        reason,
                    }
                }
                Entry::Queued(waiter) => {
                    let rest = &stages[i + 1..];
                    let mut wait = waiter.estimate;
                    for &later in rest {
                        wait += self.estimate(&tenant, tenant.bucket(later), start).0;
                    }
                    // The place this request would have held in shape mode, held by a
                    // task so later requests see the same queue; it ends by the
                    // deadline at the latest. Without a runtime there is no queue to
                    // keep, and dropping the waiter gives the place back.
                    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                        let shared = self.clone();
                        runtime.spawn(async move {
                            if waiter.wait(deadline).await.is_err() {
                                return;
                            }
                            for &later in rest {
                                match shared.enter(&tenant, later, deadline) {
                                    Entry::Now => {}
                                    Entry::Refused(..) => return,
                                    Entry::Queued(waiter) => {
                                        if waiter.wait(deadline).await.is_err() {
                                            return;
                                        }
                                    }
                                }
                            }
                        });
                    }
                    return Admission::WouldWait { wait };
                }
            }
        }
        Admission::Admitted {
            waited: Duration::ZERO,
        }
    }

    /// When a newcomer's turn on `bucket` would come: the head's expected token (or the
    /// back-off's end), then one period per request queued. `true` when the back-off is
    /// what it waits for.
    fn estimate(&self, tenant: &Tenant, bucket: &Bucket, now: Instant) -> (Duration, bool) {
        let head = self
            .instant(bucket.head_ready_at.load(Ordering::Acquire))
            .saturating_duration_since(now);
        let blocked = self.blocked_for(tenant, now).unwrap_or_default();
        let queued = u32::try_from(bucket.waiters.load(Ordering::Acquire)).unwrap_or(u32::MAX);
        (
            head.max(blocked)
                .saturating_add(bucket.period.saturating_mul(queued)),
            blocked > head,
        )
    }

    /// Takes a token at once if nobody is queued on the bucket and one is there;
    /// otherwise joins the queue, or refuses when the turn would come too late or the
    /// queue is full.
    fn enter(self: &Arc<Self>, tenant: &Arc<Tenant>, stage: Stage, deadline: Instant) -> Entry {
        let bucket = tenant.bucket(stage);
        let now = Instant::now();
        let mut turn = None;
        let mut wait = None;
        if bucket.waiters.load(Ordering::Acquire) == 0 {
            if let Ok(guard) = bucket.turn.clone().try_lock_owned() {
                // Holding the turn: asking governor cannot take an earlier request's
                // token, since every queued request holds or waits for the turn.
                if let Some(left) = self.blocked_for(tenant, now) {
                    wait = Some((left, true));
                } else {
                    match bucket.limiter.check() {
                        Ok(()) => return Entry::Now,
                        Err(not_until) => wait = Some((not_until.wait_time_from(now), false)),
                    }
                }
                turn = Some(guard);
            }
        }
        let (wait, backed_off) = wait.unwrap_or_else(|| self.estimate(tenant, bucket, now));
        let reason = if backed_off {
            Refusal::UpstreamBackOff
        } else {
            Refusal::WaitTooLong
        };
        if wait > deadline.saturating_duration_since(now) {
            return Entry::Refused(reason, wait);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.config.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Entry::Refused(Refusal::QueueFull, wait.max(bucket.period));
        }
        bucket.waiters.fetch_add(1, Ordering::AcqRel);
        let slot = Slot {
            shared: self.clone(),
            tenant: tenant.clone(),
            stage,
        };
        if turn.is_some() {
            bucket
                .head_ready_at
                .store(self.ns(now + wait), Ordering::Release);
        }
        Entry::Queued(Waiter {
            slot,
            turn,
            estimate: wait,
        })
    }
}

impl Waiter {
    /// Waits for the turn, then for a token (and any back-off), until `deadline`.
    async fn wait(self, deadline: Instant) -> Result<(), (Refusal, Duration)> {
        let Waiter { slot, turn, .. } = self;
        let shared = &slot.shared;
        let tenant = &slot.tenant;
        let bucket = tenant.bucket(slot.stage);
        let _turn = match turn {
            Some(guard) => guard,
            None => {
                let lock = bucket.turn.clone().lock_owned();
                match tokio::time::timeout_at(deadline.into(), lock).await {
                    Ok(guard) => guard,
                    Err(_) => {
                        let (wait, backed_off) = shared.estimate(tenant, bucket, Instant::now());
                        let reason = if backed_off {
                            Refusal::UpstreamBackOff
                        } else {
                            Refusal::WaitTooLong
                        };
                        return Err((reason, wait.max(bucket.period)));
                    }
                }
            }
        };
        loop {
            let now = Instant::now();
            let (ready_at, backed_off) = match shared.blocked_for(tenant, now) {
                Some(left) => (now + left, true),
                None => match bucket.limiter.check() {
                    Ok(()) => return Ok(()),
                    Err(not_until) => (not_until.earliest_possible(), false),
                },
            };
            bucket
                .head_ready_at
                .store(shared.ns(ready_at), Ordering::Release);
            if ready_at > deadline {
                let reason = if backed_off {
                    Refusal::UpstreamBackOff
                } else {
                    Refusal::WaitTooLong
                };
                return Err((reason, ready_at.saturating_duration_since(now)));
            }
            tokio::time::sleep_until(ready_at.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::task::JoinSet;

    /// No test here runs longer than this, whatever goes wrong.
    const TEST_TIMEOUT: Duration = Duration::from_secs(15);

    fn config(mode: ThrottleMode, rate: u32, burst: u32) -> ThrottleConfig {
        ThrottleConfig {
            rate,
            burst,
            mode,
            ..ThrottleConfig::default()
        }
    }

    /// Runs `n` admits of `tenant` at once; returns each one's answer and when it came
    /// (from the start), in order of arrival.
    async fn burst(
        throttle: &LocalThrottle,
        tenant: &'static str,
        class: OpClass,
        n: usize,
    ) -> Vec<(Admission, Duration)> {
        let start = Instant::now();
        let mut set = JoinSet::new();
        for i in 0..n {
            let throttle = throttle.clone();
            set.spawn(async move {
                let admission = throttle.admit(tenant, class).await;
                (i, admission, start.elapsed())
            });
        }
        let mut out = vec![None; n];
        let all = async {
            while let Some(done) = set.join_next().await {
                let (i, admission, at) = done.unwrap();
                out[i] = Some((admission, at));
            }
        };
        tokio::time::timeout(TEST_TIMEOUT, all).await.unwrap();
        out.into_iter().map(Option::unwrap).collect()
    }

    #[tokio::test]
    async fn shape_spreads_a_burst_of_50_over_about_4_seconds() {
        let throttle = LocalThrottle::new(config(ThrottleMode::Shape, 10, 10));
        let results = burst(&throttle, "t", OpClass::Write, 50).await;
        assert!(
            results
                .iter()
                .all(|(a, _)| matches!(a, Admission::Admitted { .. })),
            "none refused: {results:?}"
        );
        let mut times: Vec<Duration> = results.iter().map(|(_, at)| *at).collect();
        times.sort();
        // The burst of 10 at once, then one every 100 ms: the 50th at 40 × 100 ms.
        assert!(times[9] < Duration::from_millis(50), "{times:?}");
        let last = times[49];
        assert!(
            last >= Duration::from_millis(3_900) && last < Duration::from_millis(4_600),
            "spread over about 4 s: {last:?}"
        );
        for (k, at) in times.iter().enumerate().skip(10) {
            let due = Duration::from_millis(100 * (k as u64 - 9));
            // Never early (a few ms of timer rounding aside); late by a timer tick at most.
            assert!(
                *at + Duration::from_millis(5) >= due,
                "request {k} at {at:?}, due {due:?}"
            );
        }
        let delayed = results
            .iter()
            .filter(|(a, _)| a.label() == "delayed")
            .count();
        assert_eq!(delayed, 40);
        assert_eq!(throttle.queue_depth(), 0);
        eprintln!("shape: 50 requests admitted over {last:?}");
    }

    #[tokio::test]
    async fn reject_refuses_40_of_50_at_once_with_retry_after() {
        let throttle = LocalThrottle::new(config(ThrottleMode::Reject, 10, 10));
        let start = Instant::now();
        let results = burst(&throttle, "t", OpClass::Read, 50).await;
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "nothing waits"
        );
        let refused: Vec<Duration> = results
            .iter()
            .filter_map(|(a, _)| match a {
                Admission::Refused {
                    retry_after,
                    reason: Refusal::OverRate,
                } => Some(*retry_after),
                _ => None,
            })
            .collect();
        assert_eq!(refused.len(), 40, "{results:?}");
        for retry_after in refused {
            // The next token comes within one period (100 ms); the header says 1 s.
            assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}");
            assert!(retry_after_header(retry_after) >= 1);
        }
        assert_eq!(throttle.queue_depth(), 0);
    }

    #[tokio::test]
    async fn observe_delays_nothing_and_reports_what_shape_would_do() {
        let throttle = LocalThrottle::new(config(ThrottleMode::Observe, 20, 10));
        let start = Instant::now();
        let mut answers = Vec::new();
        for _ in 0..50 {
            answers.push(throttle.admit("t", OpClass::Read).await);
        }
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "none delayed: {:?}",
            start.elapsed()
        );
        assert!(answers[..10].iter().all(|a| *a
            == Admission::Admitted {
                waited: Duration::ZERO
            }));
        let waits: Vec<Duration> = answers[10..]
            .iter()
            .map(|a| match a {
                Admission::WouldWait { wait } => *wait,
                other => panic!("{other:?}"),
            })
            .collect();
        // Shape mode would queue them 50 ms apart: the 40th about 2 s out.
        assert!(waits[0] <= Duration::from_millis(60), "{waits:?}");
        let last = waits[39];
        assert!(
            last >= Duration::from_millis(1_900) && last <= Duration::from_millis(2_100),
            "{waits:?}"
        );
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        // Their places are held as shape mode would hold them, then given back.
        assert_eq!(throttle.queue_depth(), 40);
        let drained = async {
            while throttle.queue_depth() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(4), drained)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn observe_reports_would_refuse_beyond_max_wait() {
        let throttle = LocalThrottle::new(ThrottleConfig {
            max_wait: Duration::from_millis(200),
            ..config(ThrottleMode::Observe, 10, 1)
        });
        let mut labels = Vec::new();
        for _ in 0..5 {
            labels.push(throttle.admit("t", OpClass::Read).await.label());
        }
        assert_eq!(
            labels,
            [
                "admitted",
                "would_wait",
                "would_wait",
                "would_refuse",
                "would_refuse"
            ]
        );
    }

    #[tokio::test]
    async fn two_tenants_do_not_share_a_bucket() {
        let throttle = LocalThrottle::new(config(ThrottleMode::Reject, 10, 10));
        for tenant in ["a", "b", ""] {
            for _ in 0..10 {
                assert!(!throttle.admit(tenant, OpClass::Read).await.is_refused());
            }
            assert!(
                throttle.admit(tenant, OpClass::Read).await.is_refused(),
                "{tenant}"
            );
        }

        // Shape: a long queue on one tenant does not delay another.
        let throttle = LocalThrottle::new(config(ThrottleMode::Shape, 10, 1));
        let queued = {
            let throttle = throttle.clone();
            tokio::spawn(async move { burst(&throttle, "busy", OpClass::Read, 10).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(throttle.queue_depth() >= 8);
        let start = Instant::now();
        let other = throttle.admit("quiet", OpClass::Read).await;
        assert_eq!(
            other,
            Admission::Admitted {
                waited: Duration::ZERO
            }
        );
        assert!(start.elapsed() < Duration::from_millis(20));
        queued.abort();
    }

    #[tokio::test]
    async fn back_off_is_honoured() {
        // Shape: the tenant's next request waits out the upstream's Retry-After.
        let throttle = LocalThrottle::new(config(ThrottleMode::Shape, 10, 10));
        throttle.back_off("t", Duration::from_millis(400));
        let admission = throttle.admit("t", OpClass::Read).await;
        let waited = admission.waited();
        assert!(
            waited >= Duration::from_millis(390) && waited < Duration::from_millis(600),
            "{admission:?}"
        );
        assert_eq!(
            throttle.admit("other", OpClass::Read).await,
            Admission::Admitted {
                waited: Duration::ZERO
            },
            "only the throttled tenant backs off"
        );

        // A back-off longer than --max-wait refuses at once, saying why.
        throttle.back_off("t", Duration::from_secs(30));
        let start = Instant::now();
        match throttle.admit("t", OpClass::Write).await {
            Admission::Refused {
                retry_after,
                reason: Refusal::UpstreamBackOff,
            } => assert!(retry_after > Duration::from_secs(29), "{retry_after:?}"),
            other => panic!("{other:?}"),
        }
        assert!(start.elapsed() < Duration::from_millis(50));
        // A shorter back-off never shortens a longer one.
        throttle.back_off("t", Duration::from_millis(1));
        assert!(throttle.admit("t", OpClass::Read).await.is_refused());

        // Reject: refused until then, with the back-off's remainder as Retry-After.
        let throttle = LocalThrottle::new(config(ThrottleMode::Reject, 10, 10));
        throttle.back_off("t", Duration::from_secs(2));
        match throttle.admit("t", OpClass::Read).await {
            Admission::Refused {
                retry_after,
                reason: Refusal::UpstreamBackOff,
            } => assert_eq!(retry_after_header(retry_after), 2),
            other => panic!("{other:?}"),
        }

        // An absurd Retry-After is capped, never a panic.
        throttle.back_off("t", Duration::MAX);
        match throttle.admit("t", OpClass::Read).await {
            Admission::Refused { retry_after, .. } => assert!(retry_after <= MAX_BACK_OFF),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_upstream_429_backs_off_for_its_retry_after() {
        use http::header::{HeaderValue, RETRY_AFTER};
        let throttle = super::Throttle::new(config(ThrottleMode::Reject, 10, 10));
        let mut headers = http::HeaderMap::new();
        assert_eq!(throttle.upstream_throttled("t", &headers), None);
        assert!(!throttle.admit("t", OpClass::Read).await.is_refused());
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(throttle.upstream_throttled("t", &headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(
            throttle.upstream_throttled("t", &headers),
            Some(Duration::from_secs(3))
        );
        match throttle.admit("t", OpClass::Read).await {
            Admission::Refused {
                retry_after,
                reason: Refusal::UpstreamBackOff,
            } => assert_eq!(retry_after_header(retry_after), 3),
            other => panic!("{other:?}"),
        }
        headers.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert_eq!(
            throttle.upstream_throttled("t", &headers),
            Some(MAX_BACK_OFF)
        );
    }

    #[tokio::test]
    async fn back_off_reaches_requests_already_waiting() {
        let throttle = LocalThrottle::new(config(ThrottleMode::Shape, 10, 1));
        assert!(!throttle.admit("t", OpClass::Read).await.is_refused());
        let waiting = {
            let throttle = throttle.clone();
            tokio::spawn(async move { throttle.admit("t", OpClass::Read).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        throttle.back_off("t", Duration::from_millis(500));
        let admission = tokio::time::timeout(TEST_TIMEOUT, waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(
            admission.waited() >= Duration::from_millis(490),
            "{admission:?}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_leaving_it_frees_places() {
        let throttle = LocalThrottle::new(ThrottleConfig {
            max_queue: 3,
            ..config(ThrottleMode::Shape, 1, 1)
        });
        assert!(!throttle.admit("t", OpClass::Read).await.is_refused());
        let mut queued = Vec::new();
        for _ in 0..3 {
            let throttle = throttle.clone();
            queued.push(tokio::spawn(async move {
                throttle.admit("t", OpClass::Read).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(throttle.queue_depth(), 3);
        let start = Instant::now();
        match throttle.admit("t", OpClass::Read).await {
            Admission::Refused {
                retry_after,
                reason: Refusal::QueueFull,
            } => assert!(retry_after >= Duration::from_millis(900), "{retry_after:?}"),
            other => panic!("{other:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "refused at once"
        );
        // The queue bound counts all tenants.
        assert!(throttle.admit("u", OpClass::Read).await.label() == "admitted");
        let refused = throttle.admit("u", OpClass::Read).await;
        assert_eq!(
            refused,
            Admission::Refused {
                retry_after: match refused {
                    Admission::Refused { retry_after, .. } => retry_after,
                    _ => Duration::ZERO,
                },
                reason: Refusal::QueueFull
            }
        );
        // Clients that give up (dropped futures) give their places back.
        for task in &queued {
            task.abort();
        }
        for task in queued {
            let _ = task.await;
        }
        assert_eq!(throttle.queue_depth(), 0);
    }

    #[tokio::test]
    async fn a_turn_beyond_max_wait_is_refused_at_once() {
        let throttle = LocalThrottle::new(ThrottleConfig {
            max_wait: Duration::from_millis(250),
            ..config(ThrottleMode::Shape, 10, 1)
        });
        let results = burst(&throttle, "t", OpClass::Read, 10).await;
        let admitted = results.iter().filter(|(a, _)| !a.is_refused()).count();
        // At once, then at 100 and 200 ms; 300 ms is past the 250 ms limit.
        assert_eq!(admitted, 3, "{results:?}");
        for (admission, at) in &results {
            if let Admission::Refused {
                retry_after,
                reason,
            } = admission
            {
                assert_eq!(*reason, Refusal::WaitTooLong);
                assert!(*retry_after > Duration::from_millis(250), "{retry_after:?}");
                assert!(*at < Duration::from_millis(50), "refused without waiting");
            }
        }
    }

    #[tokio::test]
    async fn rate_zero_turns_throttling_off() {
        let throttle = LocalThrottle::new(config(ThrottleMode::Reject, 0, 0));
        throttle.back_off("t", Duration::from_secs(60));
        for _ in 0..1_000 {
            assert_eq!(
                throttle.admit("t", OpClass::Write).await,
                Admission::Admitted {
                    waited: Duration::ZERO
                }
            );
        }
        assert_eq!(throttle.queue_depth(), 0);
    }

    #[tokio::test]
    async fn writes_take_from_their_own_bucket_and_the_tenants() {
        let throttle = LocalThrottle::new(ThrottleConfig {
            write_rate: Some(2),
            write_burst: Some(2),
            ..config(ThrottleMode::Reject, 10, 10)
        });
        let mut writes = Vec::new();
        for _ in 0..3 {
            writes.push(throttle.admit("t", OpClass::Write).await.is_refused());
        }
        assert_eq!(writes, [false, false, true]);
        // The two writes spent two of the tenant's 10 tokens: 8 reads remain.
        let mut reads = 0;
        while !throttle.admit("t", OpClass::Read).await.is_refused() {
            reads += 1;
            assert!(reads < 100);
        }
        assert_eq!(reads, 8);

        // Shape: writes are spaced by the write rate (2 per second = 500 ms apart).
        let throttle = LocalThrottle::new(ThrottleConfig {
            write_rate: Some(10),
            write_burst: Some(1),
            ..config(ThrottleMode::Shape, 100, 10)
        });
        let results = burst(&throttle, "t", OpClass::Write, 4).await;
        let mut times: Vec<Duration> = results.iter().map(|(_, at)| *at).collect();
        times.sort();
        assert!(times[3] >= Duration::from_millis(295), "{times:?}");
        assert!(results.iter().all(|(a, _)| !a.is_refused()));
    }

    /// The admitted stream conforms to the upstream's limit: a second governor bucket at
    /// twice the rate (AWS's 20 against scimguard's 10, scaled ×10 to keep the test
    /// short) refuses none of 200 requests sent at once from two threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_admitted_stream_never_trips_an_upstream_at_twice_the_rate() {
        let throttle = LocalThrottle::new(config(ThrottleMode::Shape, 100, 10));
        let upstream = Arc::new(RateLimiter::direct_with_clock(
            Quota::per_second(NonZeroU32::new(200).unwrap())
                .allow_burst(NonZeroU32::new(10).unwrap()),
            MonotonicClock,
        ));
        let start = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..200 {
            let throttle = throttle.clone();
            let upstream = upstream.clone();
            set.spawn(async move {
                let admission = throttle.admit("t", OpClass::Write).await;
                (admission, upstream.check().is_ok())
            });
        }
        let mut tripped = 0;
        let all = async {
            while let Some(done) = set.join_next().await {
                let (admission, accepted) = done.unwrap();
                assert!(!admission.is_refused(), "{admission:?}");
                tripped += usize::from(!accepted);
            }
        };
        tokio::time::timeout(TEST_TIMEOUT, all).await.unwrap();
        assert_eq!(tripped, 0, "the upstream would have answered 429");
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1_850) && elapsed < Duration::from_millis(2_600),
            "190 requests over the burst at 100/s: {elapsed:?}"
        );
    }

    #[tokio::test]
    async fn tenants_beyond_the_bound_share_one_bucket_until_idle_ones_go() {
        // 1 per second: a tenant stays "recent" for its 1 s refill.
        let throttle = LocalThrottle::new(config(ThrottleMode::Reject, 1, 1));
        let names: Vec<String> = (0..MAX_TENANTS).map(|i| format!("t{i}")).collect();
        for name in &names {
            assert!(!throttle.admit(name, OpClass::Read).await.is_refused());
        }
        assert!(!throttle.admit("x", OpClass::Read).await.is_refused());
        assert!(
            throttle.admit("y", OpClass::Read).await.is_refused(),
            "x and y share the overflow bucket"
        );
        let long = "z".repeat(MAX_TENANT_LEN + 1);
        assert!(throttle.admit(&long, OpClass::Read).await.is_refused());

        // 1,000 per second: idle after 1 ms, so the full map makes room.
        let throttle = LocalThrottle::new(config(ThrottleMode::Reject, 1_000, 1));
        for name in &names {
            assert!(!throttle.admit(name, OpClass::Read).await.is_refused());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!throttle.admit("x", OpClass::Read).await.is_refused());
        assert!(!throttle.admit("y", OpClass::Read).await.is_refused());
        assert!(throttle.shared.tenants.read().unwrap().len() <= 2);
    }

    /// A request under the rate costs a map lookup, a try-lock and one governor check;
    /// the bound is loose (debug builds, a shared 2-core machine), the number printed is
    /// the one to read.
    #[tokio::test]
    async fn an_admission_under_the_rate_costs_little() {
        let throttle = LocalThrottle::new(config(ThrottleMode::Shape, MAX_RATE, u32::MAX));
        let rounds: u32 = 20_000;
        let start = Instant::now();
        for i in 0..rounds {
            let class = if i % 2 == 0 {
                OpClass::Read
            } else {
                OpClass::Write
            };
            let admission = throttle.admit("d-9067642ac7", class).await;
            assert_eq!(admission.label(), "admitted");
        }
        let per_admit = start.elapsed() / rounds;
        eprintln!("throttle admit under the rate: {per_admit:?}");
        assert!(per_admit < Duration::from_micros(50), "{per_admit:?}");
    }

    #[test]
    fn validate_names_the_flag_and_new_clamps() {
        assert_eq!(ThrottleConfig::default().validate(), Ok(()));
        let off = ThrottleConfig {
            rate: 0,
            burst: 0,
            ..ThrottleConfig::default()
        };
        assert_eq!(
            off.validate(),
            Ok(()),
            "rate 0 is off; nothing else matters"
        );
        let bad = [
            ThrottleConfig {
                rate: MAX_RATE + 1,
                ..ThrottleConfig::default()
            },
            ThrottleConfig {
                burst: 0,
                ..ThrottleConfig::default()
            },
            ThrottleConfig {
                write_rate: Some(u32::MAX),
                ..ThrottleConfig::default()
            },
            ThrottleConfig {
                write_rate: Some(2),
                write_burst: Some(0),
                ..ThrottleConfig::default()
            },
            ThrottleConfig {
                write_burst: Some(3),
                ..ThrottleConfig::default()
            },
            ThrottleConfig {
                max_wait: Duration::MAX,
                ..ThrottleConfig::default()
            },
        ];
        for config in bad {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains("Fix:"), "{message}");
            assert!(message.contains("--"), "names the flag: {message}");
            // Clamped instead, never a panic.
            let throttle = LocalThrottle::new(config);
            assert!(throttle.config().burst >= 1);
            assert!(throttle.config().max_wait <= MAX_MAX_WAIT);
        }
    }

    #[tokio::test]
    async fn extreme_settings_never_panic() {
        let configs = [
            ThrottleConfig {
                rate: u32::MAX,
                burst: u32::MAX,
                write_rate: Some(u32::MAX),
                write_burst: Some(u32::MAX),
                mode: ThrottleMode::Shape,
                max_wait: Duration::MAX,
                max_queue: usize::MAX,
            },
            ThrottleConfig {
                rate: 1,
                burst: 0,
                write_rate: Some(0),
                write_burst: Some(0),
                mode: ThrottleMode::Shape,
                max_wait: Duration::ZERO,
                max_queue: 0,
            },
        ];
        for config in configs {
            for mode in [
                ThrottleMode::Shape,
                ThrottleMode::Reject,
                ThrottleMode::Observe,
            ] {
                let throttle = LocalThrottle::new(ThrottleConfig { mode, ..config });
                for _ in 0..3 {
                    let _ = throttle.admit("", OpClass::Write).await;
                    let _ = throttle.admit("t", OpClass::Read).await;
                }
                // Capped at MAX_BACK_OFF (5 minutes), within a 1 h --max-wait: shape mode
                // would wait it out, so give up after 50 ms, which must free the place.
                throttle.back_off("t", Duration::MAX);
                let admit = throttle.admit("t", OpClass::Read);
                let _ = tokio::time::timeout(Duration::from_millis(50), admit).await;
                // Observe mode went ahead at once and keeps the place for 5 minutes.
                let held = usize::from(mode == ThrottleMode::Observe && config.max_queue > 0);
                assert_eq!(throttle.queue_depth(), held, "{mode}");
            }
        }
    }
}
