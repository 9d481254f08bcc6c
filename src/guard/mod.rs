//! The blast-radius guard: destructive changes counted per tenant in a sliding window;
//! past the limit, they are held (503) until an admin releases them.
//!
//! The worst sync failures are wrong successes: a mis-scoped group rule or an IdP
//! outage read as "everyone left" makes the IdP delete or deactivate hundreds of users,
//! and AWS obeys (ssosync #59, #236, #88). The guard sees every request, so it holds
//! that blast for any IdP, as Entra ID's "accidental deletions prevention" does for its
//! own provisioning only.
//!
//! - What counts: [`count::count`] — DeleteUser, DeleteGroup, a user deactivated (PATCH
//!   or PUT `active: false`), each member removed from a group (counted on the request as
//!   received, so a PATCH scimguard splits into batches is held or let through whole).
//! - The limit: `--guard-deletes N` (default [`DEFAULT_LIMIT`]) on the sum of all kinds
//!   within `--guard-window` (default [`DEFAULT_WINDOW`]); 0 turns the guard off.
//! - A request that would cross the limit trips the guard for its tenant: it and every
//!   further destructive request of that tenant get 503 with Retry-After and a `detail`
//!   saying why and how to release; everything else flows. In `--mode observe` the
//!   guard only warns.
//! - Release ([`Guard::release`], `POST /guard/{tenant}/release` on the admin listener,
//!   `scimguard guard release`): the window starts again, and for one window the limit
//!   is raised to the largest held request, so a held 250-member removal goes through
//!   on the IdP's retry.
//! - `--guard-state FILE` keeps the state across restarts (written atomically, 0600).
//!
//! Phase: after the verdict (a rejected request changes nothing) and before the
//! throttle (a held request spends no quota).

pub mod count;
pub mod http;
mod shared;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::scim::error::ScimError;
use crate::scim::Operation;

pub use count::{Changes, Window};

/// Destructive changes per tenant allowed within the window by default: 100. A daily
/// sync of a real directory deletes or deactivates a handful; Entra ID's own
/// accidental-deletions threshold defaults to 500 per provisioning cycle (40 min), and
/// 100 in 10 minutes is about the same pace.
pub const DEFAULT_LIMIT: u32 = 100;

/// The window the limit applies to by default: 10 minutes, shorter than an IdP's sync
/// cycle (Entra ID 40 min, Okta on change), so one bad cycle is caught in its stride.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);

/// The highest limit accepted; a window holds at most one entry per counted request.
pub const MAX_LIMIT: u32 = 1_000_000;

/// The longest window accepted: 7 days.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Retry-After on a held request: 5 minutes. The guard waits for a person, so a quick
/// retry only adds load; IdPs retry a 5xx on their next cycle anyway.
pub const HELD_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The held operations kept per tripped tenant for `GET /guard`: the latest 100.
pub const MAX_HELD_SHOWN: usize = 100;

/// The most tenants the guard keeps; beyond, new tenants share one overflow entry
/// (clients choose tenant ids, so the map must be bounded).
pub const MAX_TENANTS: usize = 10_000;

/// The longest tenant id kept as its own entry (as the throttle's bound).
pub const MAX_TENANT_LEN: usize = 256;

const OVERFLOW_TENANT: &str = "(overflow)";

/// The guard's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Destructive changes per tenant within `window`; 0 turns the guard off.
    pub limit: u32,
    pub window: Duration,
    /// `--guard-state`: where the state survives restarts.
    pub state_file: Option<PathBuf>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            limit: DEFAULT_LIMIT,
            window: DEFAULT_WINDOW,
            state_file: None,
        }
    }
}

impl GuardConfig {
    /// Checks the settings and that a state file, if any, can be read; the message
    /// names the flag and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.limit > MAX_LIMIT {
            return Err(format!("--guard-deletes {} is above the maximum of {MAX_LIMIT}. Fix: use a lower --guard-deletes, or 0 to turn the guard off", self.limit));
        }
        if self.window.is_zero() || self.window > MAX_WINDOW {
            return Err("--guard-window must be more than 0 and at most 7 days. Fix: e.g. --guard-window 10m".to_owned());
        }
        if let Some(path) = &self.state_file {
            load(path)?;
        }
        Ok(())
    }
}

/// A tripped guard: since when, what it saw, what it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    /// When it tripped (ms since the Unix epoch).
    pub at_ms: u64,
    /// Changes counted in the window when it tripped.
    pub seen: u64,
    /// Requests held since.
    pub held: u64,
    /// The largest number of changes in one held request.
    pub largest: u32,
    /// The latest held operations (at most [`MAX_HELD_SHOWN`]).
    pub operations: VecDeque<HeldOperation>,
}

/// One held request, for `GET /guard`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOperation {
    pub at_ms: u64,
    pub operation: String,
    /// The request path (the user or group it aimed at).
    pub target: String,
    pub changes: Changes,
}

/// One tenant's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantGuard {
    pub window: Window,
    pub tripped: Option<Trip>,
    /// After a release: the limit for this window is at least this.
    #[serde(default)]
    pub allowance: Option<Allowance>,
}

/// The raised limit a release grants, until `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowance {
    pub until_ms: u64,
    pub limit: u64,
}

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    tenants: HashMap<String, TenantGuard>,
}

const STATE_VERSION: u32 = 1;

fn load(path: &Path) -> Result<HashMap<String, TenantGuard>, String> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => {
            return Err(format!(
                "cannot read --guard-state {}: {e}. Fix: check the path and its permissions",
                path.display()
            ))
        }
    };
    let state: StateFile = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "--guard-state {} is not a guard state file ({e}). Fix: point it at a new path, or remove the file to forget every trip",
            path.display()
        )
    })?;
    if state.version != STATE_VERSION {
        return Err(format!(
            "--guard-state {} has version {}, this scimguard writes {STATE_VERSION}. Fix: remove the file to start afresh",
            path.display(),
            state.version
        ));
    }
    Ok(state.tenants)
}

/// Writes `tenants` to `path` atomically (a temporary file beside it, then renamed),
/// readable by the owner only.
fn save(path: &Path, tenants: &HashMap<String, TenantGuard>) -> std::io::Result<()> {
    let state = StateFile {
        version: STATE_VERSION,
        tenants: tenants.clone(),
    };
    let bytes = serde_json::to_vec(&state)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let mut temp = tempfile_in(dir.unwrap_or(Path::new(".")), path)?;
    temp.1.write_all(&bytes)?;
    temp.1.sync_all()?;
    std::fs::rename(&temp.0, path)
}

fn tempfile_in(dir: &Path, path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "guard-state".to_owned());
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(&temp)?;
    Ok((temp, file))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A request the guard held: answer it with [`Held::error`] and `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub tenant: String,
    pub changes: Changes,
    /// Changes counted in the window when the guard tripped.
    pub seen: u64,
    pub limit: u32,
    pub window: Duration,
}

impl Held {
    /// The 503 in AWS's error shape; its `detail` says what the guard saw and how to
    /// release it.
    pub fn error(&self) -> ScimError {
        let tenant = if self.tenant.is_empty() {
            "-"
        } else {
            &self.tenant
        };
        ScimError::new(
            503,
            format!(
                "scimguard's blast-radius guard held this request before it reached AWS IAM Identity Center: tenant {tenant} has had {} destructive changes (deleted users or groups, deactivated users, removed group members) within {}, and this request's {} more would cross the limit of {} (--guard-deletes per --guard-window). Nothing was changed; destructive requests of this tenant are held until an admin approves, other requests flow. If the changes are intended, release them with `scimguard guard release {tenant} --admin http://ADMIN` (POST /guard/{tenant}/release on the admin listener) and the IdP's retry goes through; if not, fix the IdP's scoping or group rules first.",
                self.seen,
                humantime::format_duration(self.window),
                self.changes.total(),
                self.limit,
            ),
        )
    }
}

/// The guard: cheap to clone, shared by every connection and the admin listener.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    limit: u32,
    window: Duration,
    /// `--mode observe`: count and warn, never hold.
    observe: bool,
    state_file: Option<PathBuf>,
    /// This process's state: the whole state without a shared store, the fallback
    /// while the store does not answer.
    tenants: Mutex<HashMap<String, TenantGuard>>,
    /// With `--throttle-store`: the state shared by every replica.
    shared: Option<shared::SharedState>,
    metrics: Option<Metrics>,
    /// `--record`: every trip and release is a line of the capture.
    recorder: Option<crate::record::Recorder>,
}

/// Why a release did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    #[error("the guard of tenant {0} is not tripped; nothing to release")]
    NotTripped(String),
    #[error("the guard is off (--guard-deletes 0)")]
    Off,
}

/// What one destructive request does to its tenant ([`decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Within the limit: counted, forwarded.
    Pass,
    /// The guard was already tripped: held.
    Held { seen: u64 },
    /// This request crosses the limit: the guard trips, and it is held.
    Trip { seen: u64 },
    /// Observe mode: it would have tripped; counted, forwarded.
    WouldHold { seen: u64 },
}

/// The guard's decision on one tenant's state, which it updates: pure, so the local
/// map and the shared store run the same rule.
fn decide(
    state: &mut TenantGuard,
    held: HeldOperation,
    now: u64,
    window_ms: u64,
    limit: u32,
    observe: bool,
) -> Decision {
    let n = held.changes.total();
    if let Some(trip) = &mut state.tripped {
        trip.held += 1;
        trip.largest = trip.largest.max(n);
        if trip.operations.len() >= MAX_HELD_SHOWN {
            trip.operations.pop_front();
        }
        trip.operations.push_back(held);
        return Decision::Held { seen: trip.seen };
    }
    let effective = match state.allowance {
        Some(allowance) if now < allowance.until_ms => allowance.limit.max(u64::from(limit)),
        _ => u64::from(limit),
    };
    if state.window.try_add(now, window_ms, n, effective) {
        return Decision::Pass;
    }
    let seen = state.window.sum();
    if observe {
        state.window.add(now, n);
        return Decision::WouldHold { seen };
    }
    state.tripped = Some(Trip {
        at_ms: now,
        seen,
        held: 1,
        largest: n,
        operations: VecDeque::from([held]),
    });
    Decision::Trip { seen }
}

/// Release on one tenant's state: the window starts again, and until it ends the limit
/// is at least the largest held request.
fn release_state(
    state: &mut TenantGuard,
    tenant: &str,
    now: u64,
    window_ms: u64,
) -> Result<Trip, ReleaseError> {
    let trip = state
        .tripped
        .take()
        .ok_or_else(|| ReleaseError::NotTripped(tenant.to_owned()))?;
    state.window.clear();
    state.allowance = Some(Allowance {
        until_ms: now.saturating_add(window_ms),
        limit: u64::from(trip.largest),
    });
    Ok(trip)
}

impl Guard {
    /// A guard with `config`, its state read from `--guard-state` if given (a file
    /// that cannot be read is reported by [`GuardConfig::validate`]; here it starts
    /// empty, logged). With `store`, the state lives in that Redis, shared by every
    /// replica; this process's map is then the fallback while Redis does not answer.
    pub fn new(
        config: &GuardConfig,
        observe: bool,
        store: Option<&crate::throttle::StoreConfig>,
        metrics: Option<Metrics>,
        recorder: Option<crate::record::Recorder>,
    ) -> Guard {
        let tenants = match &config.state_file {
            Some(path) => load(path).unwrap_or_else(|error| {
                tracing::error!("{error}; the guard starts with no state");
                HashMap::new()
            }),
            None => HashMap::new(),
        };
        if let Some(metrics) = &metrics {
            for (tenant, state) in &tenants {
                metrics.guard_tripped(tenant, state.tripped.is_some());
            }
        }
        let shared = store.and_then(|store| {
            shared::SharedState::new(store)
                .map_err(|e| tracing::error!("{e}; the guard keeps its state in this process"))
                .ok()
        });
        Guard {
            inner: Arc::new(Inner {
                limit: config.limit,
                window: config.window.clamp(Duration::from_millis(1), MAX_WINDOW),
                observe,
                state_file: config.state_file.clone(),
                tenants: Mutex::new(tenants),
                shared,
                metrics,
                recorder,
            }),
        }
    }

    /// Writes `event` into the capture, when recording.
    fn record(&self, event: &str, tenant: &str, detail: String, data: serde_json::Value) {
        if let Some(recorder) = &self.inner.recorder {
            recorder.record_event(crate::record::Event::new(event, tenant, detail, data));
        }
    }

    /// Whether the guard counts anything (`--guard-deletes` > 0).
    pub fn enabled(&self) -> bool {
        self.inner.limit > 0
    }

    fn window_ms(&self) -> u64 {
        u64::try_from(self.inner.window.as_millis()).unwrap_or(u64::MAX)
    }

    fn key(&self, tenant: &str) -> String {
        let tenants = self.lock();
        if tenant.len() > MAX_TENANT_LEN
            || (tenants.len() >= MAX_TENANTS && !tenants.contains_key(tenant))
        {
            OVERFLOW_TENANT.to_owned()
        } else {
            tenant.to_owned()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantGuard>> {
        self.inner
            .tenants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` on `tenant`'s state: in the shared store when there is one and it
    /// answers, else in this process's map (saved to `--guard-state`).
    async fn update<T>(&self, tenant: &str, change: impl Fn(&mut TenantGuard) -> T) -> T {
        if let Some(shared) = &self.inner.shared {
            match shared.update(tenant, &change).await {
                Ok(answer) => return answer,
                Err(Some(error)) => shared.failed(&error),
                Err(None) => {}
            }
        }
        let mut tenants = self.lock();
        let answer = change(tenants.entry(tenant.to_owned()).or_default());
        self.persist(&tenants);
        answer
    }

    /// Decides one request about to go upstream: `Some` when it is held. `path` names
    /// the target in `GET /guard`; `body` is the request as received.
    pub async fn check(
        &self,
        tenant: &str,
        operation: Operation,
        path: &str,
        body: &[u8],
    ) -> Option<Held> {
        if !self.enabled() {
            return None;
        }
        self.check_changes(tenant, operation, path, count::count(operation, body))
            .await
    }

    /// As [`Guard::check`], for changes counted by the caller: a repair knows how many
    /// members it removes only once it has read the group.
    pub async fn check_changes(
        &self,
        tenant: &str,
        operation: Operation,
        path: &str,
        changes: Changes,
    ) -> Option<Held> {
        let n = changes.total();
        if n == 0 || !self.enabled() {
            return None;
        }
        let inner = &self.inner;
        let now = now_ms();
        let window_ms = self.window_ms();
        let key = self.key(tenant);
        let held = HeldOperation {
            at_ms: now,
            operation: operation.name().to_owned(),
            target: path.chars().take(512).collect(),
            changes,
        };
        let decision = self
            .update(&key, |state| {
                decide(
                    state,
                    held.clone(),
                    now,
                    window_ms,
                    inner.limit,
                    inner.observe,
                )
            })
            .await;
        let held = |seen| Held {
            tenant: key.clone(),
            changes,
            seen,
            limit: inner.limit,
            window: inner.window,
        };
        match decision {
            Decision::Pass => None,
            Decision::WouldHold { seen } => {
                tracing::warn!(
                    tenant = %key,
                    operation = operation.name(),
                    seen,
                    changes = n,
                    limit = inner.limit,
                    "the blast-radius guard would hold this request (--mode observe: forwarded)"
                );
                None
            }
            Decision::Held { seen } => {
                self.count_held(operation);
                Some(held(seen))
            }
            Decision::Trip { seen } => {
                tracing::warn!(
                    tenant = %key,
                    operation = operation.name(),
                    seen,
                    changes = n,
                    limit = inner.limit,
                    window = %humantime::format_duration(inner.window),
                    "the blast-radius guard tripped: destructive requests of this tenant are held until an admin releases them"
                );
                if let Some(metrics) = &inner.metrics {
                    metrics.guard_trip();
                    metrics.guard_tripped(&key, true);
                }
                self.record(
                    crate::record::EVENT_GUARD_TRIP,
                    &key,
                    held(seen).error().detail,
                    serde_json::json!({
                        "seen": seen,
                        "limit": inner.limit,
                        "window_seconds": inner.window.as_secs(),
                        "operation": operation.name(),
                        "target": path,
                        "changes": changes,
                    }),
                );
                self.count_held(operation);
                Some(held(seen))
            }
        }
    }

    fn count_held(&self, operation: Operation) {
        if let Some(metrics) = &self.inner.metrics {
            metrics.guard_held(operation.name());
        }
    }

    /// Lets the held changes of `tenant` through: the window starts again, and until it
    /// ends the limit is at least the largest held request. Returns the trip released.
    pub async fn release(&self, tenant: &str) -> Result<Trip, ReleaseError> {
        if !self.enabled() {
            return Err(ReleaseError::Off);
        }
        let now = now_ms();
        let window_ms = self.window_ms();
        let trip = self
            .update(tenant, |state| release_state(state, tenant, now, window_ms))
            .await?;
        tracing::warn!(
            tenant,
            held = trip.held,
            seen = trip.seen,
            "the blast-radius guard was released by an admin: the held destructive changes may go through"
        );
        if let Some(metrics) = &self.inner.metrics {
            metrics.guard_release();
            metrics.guard_tripped(tenant, false);
        }
        self.record(
            crate::record::EVENT_GUARD_RELEASE,
            tenant,
            format!(
                "an admin released the blast-radius guard of tenant {tenant}: {} held request(s) since it tripped with {} destructive changes in the window; the IdP's retries go through, and the window starts again",
                trip.held, trip.seen
            ),
            serde_json::json!({"held": trip.held, "seen": trip.seen, "largest": trip.largest}),
        );
        Ok(trip)
    }

    /// The state of every tenant the guard has seen, for `GET /guard`.
    pub async fn status(&self) -> serde_json::Value {
        let inner = &self.inner;
        let now = now_ms();
        let window_ms = self.window_ms();
        let mut tenants = match &inner.shared {
            Some(shared) => match shared.all().await {
                Ok(all) => all,
                Err(error) => {
                    shared.failed(&error);
                    self.lock().clone()
                }
            },
            None => self.lock().clone(),
        };
        let mut out = serde_json::Map::new();
        for (tenant, state) in tenants.iter_mut() {
            state.window.prune(now, window_ms);
            out.insert(
                tenant.clone(),
                serde_json::json!({
                    "tripped": state.tripped.is_some(),
                    "changes_in_window": state.window.sum(),
                    "trip": state.tripped,
                }),
            );
        }
        serde_json::json!({
            "limit": inner.limit,
            "window_seconds": inner.window.as_secs(),
            "observe": inner.observe,
            "shared": inner.shared.is_some(),
            "tenants": out,
        })
    }

    /// Whether `tenant`'s guard is tripped now.
    pub async fn is_tripped(&self, tenant: &str) -> bool {
        self.update(tenant, |state| state.tripped.is_some()).await
    }

    fn persist(&self, tenants: &HashMap<String, TenantGuard>) {
        let Some(path) = &self.inner.state_file else {
            return;
        };
        if let Err(e) = save(path, tenants) {
            tracing::error!(
                "cannot write --guard-state {}: {e}; a restart would forget the guard's state",
                path.display()
            );
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("limit", &self.inner.limit)
            .field("window", &self.inner.window)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(limit: u32, file: Option<PathBuf>) -> Guard {
        Guard::new(
            &GuardConfig {
                limit,
                window: Duration::from_secs(60),
                state_file: file,
            },
            false,
            None,
            None,
            None,
        )
    }

    #[tokio::test]
    async fn trips_past_the_limit_holds_only_destructive_requests_and_releases() {
        let g = guard(3, None);
        for _ in 0..3 {
            assert!(g
                .check("t", Operation::DeleteUser, "/t/scim/v2/Users/x", b"")
                .await
                .is_none());
        }
        let held = g
            .check("t", Operation::DeleteGroup, "/t/scim/v2/Groups/g", b"")
            .await
            .unwrap();
        assert_eq!((held.seen, held.limit), (3, 3));
        let detail = held.error().detail;
        assert!(detail.contains("blast-radius guard") && detail.contains("guard release t"));
        assert_eq!(held.error().status, "503");
        assert!(g.check("t", Operation::GetUser, "/", b"").await.is_none());
        assert!(g
            .check("t", Operation::CreateUser, "/", b"{}")
            .await
            .is_none());
        assert!(g
            .check("other", Operation::DeleteUser, "/", b"")
            .await
            .is_none());
        assert!(g
            .check("t", Operation::DeleteUser, "/", b"")
            .await
            .is_some());
        assert!(g.is_tripped("t").await);
        let status = g.status().await;
        assert_eq!(status["tenants"]["t"]["tripped"], true);
        assert_eq!(status["tenants"]["t"]["trip"]["held"], 2);
        let trip = g.release("t").await.unwrap();
        assert_eq!(trip.held, 2);
        assert!(g.release("t").await.is_err());
        assert!(g
            .check("t", Operation::DeleteUser, "/", b"")
            .await
            .is_none());
    }

    #[tokio::test]
    async fn a_request_larger_than_the_limit_is_held_whole_and_goes_through_once_released() {
        let g = guard(5, None);
        let ten: Vec<_> = (0..10)
            .map(|i| serde_json::json!({"value": format!("m{i}")}))
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "Operations": [{"op": "remove", "path": "members", "value": ten}]
        }))
        .unwrap();
        let held = g
            .check("t", Operation::PatchGroup, "/Groups/g", &body)
            .await
            .unwrap();
        assert_eq!(held.changes.removed_members, 10);
        g.release("t").await.unwrap();
        assert!(g
            .check("t", Operation::PatchGroup, "/Groups/g", &body)
            .await
            .is_none());
    }

    #[tokio::test]
    async fn observe_counts_and_never_holds() {
        let g = Guard::new(
            &GuardConfig {
                limit: 1,
                ..GuardConfig::default()
            },
            true,
            None,
            None,
            None,
        );
        for _ in 0..5 {
            assert!(g
                .check("t", Operation::DeleteUser, "/", b"")
                .await
                .is_none());
        }
        assert!(!g.is_tripped("t").await);
    }

    #[tokio::test]
    async fn the_state_file_keeps_a_trip_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guard.json");
        let g = guard(1, Some(path.clone()));
        assert!(g
            .check("t", Operation::DeleteUser, "/", b"")
            .await
            .is_none());
        assert!(g
            .check("t", Operation::DeleteUser, "/", b"")
            .await
            .is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = guard(1, Some(path.clone()));
        assert!(again.is_tripped("t").await);
        assert!(again
            .check("t", Operation::DeleteUser, "/", b"")
            .await
            .is_some());

        std::fs::write(&path, b"{not json").unwrap();
        let config = GuardConfig {
            state_file: Some(path),
            ..GuardConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(
            error.contains("--guard-state") && error.contains("Fix:"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn zero_turns_it_off() {
        let g = guard(0, None);
        for _ in 0..1000 {
            assert!(g
                .check("t", Operation::DeleteUser, "/", b"")
                .await
                .is_none());
        }
        assert_eq!(g.release("t").await, Err(ReleaseError::Off));
    }
}
