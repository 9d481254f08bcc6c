//! The guard's state in the throttle's Redis (`--throttle-store`), shared by every
//! replica: one JSON value per tenant, changed by compare-and-set.
//!
//! A change reads the tenant's value, runs the same pure rule as the local map
//! ([`super::decide`] or a release) and writes the result only if nobody changed the
//! value meanwhile (a two-line Lua script); on a conflict it reads again, up to
//! [`MAX_ATTEMPTS`] times. Only destructive requests and admin calls get here, so two
//! round trips each cost nothing next to AWS's answer. Each call is bounded by
//! [`STORE_TIMEOUT`](crate::throttle::shared::STORE_TIMEOUT); a store that fails makes
//! the guard use this process's own state for [`BREAKER_OPEN`] (logged once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use redis::aio::ConnectionManager;

use super::TenantGuard;
use crate::throttle::shared::{BREAKER_OPEN, KEY_PREFIX, STORE_TIMEOUT};
use crate::throttle::StoreConfig;

/// Compare-and-set: KEYS[1] the tenant's state, KEYS[2] the set of tenants; ARGV[1]
/// the value read ("" for none), ARGV[2] the new value. Returns 1 when written.
const CAS_LUA: &str = r#"
local current = redis.call("GET", KEYS[1]) or ""
if current ~= ARGV[1] then return 0 end
redis.call("SET", KEYS[1], ARGV[2])
redis.call("SADD", KEYS[2], ARGV[3])
return 1
"#;

/// Reads, decides and writes again at most this many times when replicas race.
pub const MAX_ATTEMPTS: usize = 8;

/// The most tenants `GET /guard` reads from the store (as the local bound).
const MAX_LISTED: usize = super::MAX_TENANTS;

pub(super) struct SharedState {
    connection: ConnectionManager,
    cas: redis::Script,
    redacted: String,
    epoch: Instant,
    /// No call before this (ns since `epoch`) after a failure.
    open_until: AtomicU64,
    healthy: AtomicBool,
}

fn key(tenant: &str) -> String {
    format!("{KEY_PREFIX}guard:{{{tenant}}}")
}

fn tenants_key() -> String {
    format!("{KEY_PREFIX}guard:tenants")
}

impl SharedState {
    pub(super) fn new(store: &StoreConfig) -> Result<SharedState, String> {
        let connection = store.connect_lazily().map_err(|e| {
            format!(
                "cannot use {} for the guard's state: {:?}",
                store.redacted(),
                e.kind()
            )
        })?;
        Ok(SharedState {
            connection,
            cas: redis::Script::new(CAS_LUA),
            redacted: store.redacted().to_owned(),
            epoch: Instant::now(),
            open_until: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs `change` on `tenant`'s shared state; `Err` when the store cannot be used
    /// now (the caller then uses its own state): `Err(None)` while the breaker is open,
    /// `Err(Some(why))` when this call failed.
    pub(super) async fn update<T>(
        &self,
        tenant: &str,
        change: &impl Fn(&mut TenantGuard) -> T,
    ) -> Result<T, Option<String>> {
        if self.now() < self.open_until.load(Ordering::Acquire) {
            return Err(None);
        }
        self.try_update(tenant, change).await.map_err(Some)
    }

    async fn try_update<T>(
        &self,
        tenant: &str,
        change: &impl Fn(&mut TenantGuard) -> T,
    ) -> Result<T, String> {
        let key = key(tenant);
        for _ in 0..MAX_ATTEMPTS {
            let mut connection = self.connection.clone();
            let read = tokio::time::timeout(
                STORE_TIMEOUT,
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<String>>(&mut connection),
            )
            .await
            .map_err(|_| "no answer within 50 ms".to_owned())?
            .map_err(|e| e.to_string())?;
            let old = read.unwrap_or_default();
            let mut state: TenantGuard = if old.is_empty() {
                TenantGuard::default()
            } else {
                serde_json::from_str(&old).unwrap_or_default()
            };
            let answer = change(&mut state);
            let new = serde_json::to_string(&state).map_err(|e| e.to_string())?;
            if new == old {
                self.answered();
                return Ok(answer);
            }
            let written: i64 = tokio::time::timeout(
                STORE_TIMEOUT,
                self.cas
                    .key(&key)
                    .key(tenants_key())
                    .arg(&old)
                    .arg(&new)
                    .arg(tenant)
                    .invoke_async(&mut connection),
            )
            .await
            .map_err(|_| "no answer within 50 ms".to_owned())?
            .map_err(|e| e.to_string())?;
            if written == 1 {
                self.answered();
                return Ok(answer);
            }
        }
        Err(format!(
            "{MAX_ATTEMPTS} replicas' changes raced for one tenant"
        ))
    }

    /// Every tenant's shared state (at most [`MAX_LISTED`]).
    pub(super) async fn all(&self) -> Result<HashMap<String, TenantGuard>, String> {
        let mut connection = self.connection.clone();
        let read = async {
            let tenants: Vec<String> = redis::cmd("SMEMBERS")
                .arg(tenants_key())
                .query_async(&mut connection)
                .await?;
            let tenants: Vec<String> = tenants.into_iter().take(MAX_LISTED).collect();
            if tenants.is_empty() {
                return Ok(HashMap::new());
            }
            let keys: Vec<String> = tenants.iter().map(|t| key(t)).collect();
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>(
                tenants
                    .into_iter()
                    .zip(values)
                    .filter_map(|(t, v)| Some((t, serde_json::from_str(&v?).ok()?)))
                    .collect(),
            )
        };
        tokio::time::timeout(STORE_TIMEOUT * 4, read)
            .await
            .map_err(|_| "no answer within 200 ms".to_owned())?
            .map_err(|e| e.to_string())
    }

    pub(super) fn failed(&self, error: &str) {
        self.open_until.store(
            self.now()
                .saturating_add(u64::try_from(BREAKER_OPEN.as_nanos()).unwrap_or(u64::MAX)),
            Ordering::Release,
        );
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                store = %self.redacted,
                "the guard's shared state does not answer ({error}); this replica guards on its own until it does"
            );
        }
    }

    fn answered(&self) {
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(store = %self.redacted, "the guard's shared state answers again");
        }
    }
}
