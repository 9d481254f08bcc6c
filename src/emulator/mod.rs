//! An emulator of AWS IAM Identity Center's SCIM service: the guide's 15 operations
//! over an in-memory store (optionally kept in a state file), answering with AWS's
//! status codes, bodies, headers and error texts.
//!
//! One request, in order:
//!
//! | # | step | answer when it fails |
//! |---|---|---|
//! | 1 | throttle (`--rate`, governor, burst = rate) | 429 ThrottlingException, `Retry-After: 1` |
//! | 2 | tenant: the path is `/{tenant}/scim/v2/…` | 404 `TENANT does not exist.` (another tenant, as AWS answered in 2022), 404 (no SCIM path) |
//! | 3 | `Authorization: Bearer <token>` | 401 UnauthorizedException |
//! | 4 | classify ([`crate::scim::classify`]) | 404 for an unknown path |
//! | 5 | validate: the embedded rules, [`RuleSet::strict`] | 400 with the rule's `aws_detail`, else AWS's generic text |
//! | 6 | the operation, against the store | 404, 409, 400 |
//! | 7 | persist (`--state`): atomic write, then answer | 500 InternalServerException |
//!
//! Validation is the proxy's own rules file, made strict (what scimguard would fix, AWS
//! refuses, unless the rule says `aws_accepts`): the emulator and the proxy share one
//! statement of AWS's constraints. What depends on state — duplicates, unknown ids,
//! membership — the store decides; so does the shape of each value (types, one value
//! per multi-valued attribute), which the typed model checks whatever the rules say.

mod discovery;
mod groups;
mod ids;
mod pages;
mod reply;
mod store;
mod users;

#[cfg(test)]
mod tests;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

pub use ids::random_token;

use self::discovery::Discovery;
use self::reply::{ApiError, Outcome, Reply, ENDPOINT_NOT_FOUND, TENANT_NOT_FOUND};
use self::store::{Persister, Store};
use crate::exchange::ConnInfo;
use crate::rules::{Action, RequestView, RuleSet, RulesError, AWS_GENERIC_DETAIL};
use crate::scim::error::ScimError;
use crate::scim::{classify, Operation, Query, QueryError};

/// A demo tenant id shaped like AWS's identity store ids (`d-` and 10 hex digits); user
/// and group ids start with its digits, as AWS's do.
pub const DEMO_TENANT: &str = "d-9067a1b2c3";

/// Requests per second before 429: AWS's published IAM Identity Center SCIM throttle.
pub const DEFAULT_RATE: u32 = 20;

/// Largest request body: AWS's `maxPayloadSize` (ServiceProviderConfig › bulk).
pub const MAX_BODY_BYTES: usize = 1_048_576;

/// AWS's request id header, on every response.
pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// A state file's bytes loaded and checked as `--state` would load them, then written
/// back in the emulator's own layout. Public so the fuzz target and tests reach the
/// state parser without a file; `path` only names the file in errors.
pub fn reload_state(bytes: &[u8], path: &Path) -> Result<Vec<u8>, EmulatorError> {
    Store::from_bytes(bytes, path).map(|store| store.to_file_bytes())
}

/// A CreateUser/PutUser body as the emulator would store the user (its JSON), or the
/// status and `detail` it answers instead. Public for the fuzz target and tests.
pub fn user_from_body(body: &[u8]) -> Result<serde_json::Value, (u16, String)> {
    users::json_object(body)
        .and_then(|object| users::UserData::from_body(&object))
        .map(|user| serde_json::to_value(user).unwrap_or_default())
        .map_err(|e| (e.status.as_u16(), e.detail.into_owned()))
}

/// What the emulator is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// The path segment before `/scim/v2` ([`DEMO_TENANT`] for a demo).
    pub tenant: String,
    /// The bearer token clients must send ([`random_token`] when none is given).
    pub token: String,
    /// Keep users and groups in this file across restarts; `None`: memory only.
    pub state_file: Option<PathBuf>,
    /// Requests per second before 429 ([`DEFAULT_RATE`]); 0 turns throttling off.
    pub rate: u32,
}

/// The emulator cannot start; the message names the setting or file and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    #[error("the emulator tenant `{tenant}` cannot be used: {problem}. Fix: pass a tenant of letters, digits, '-', '_', '.' or '~' (AWS's look like {DEMO_TENANT})")]
    Tenant {
        tenant: String,
        problem: &'static str,
    },
    #[error("the emulator token cannot be used: {problem}. Fix: pass a token of visible ASCII characters without spaces, or none to get a random one")]
    Token { problem: &'static str },
    #[error("cannot read the emulator state file {}: {source}. Fix: check the file's permissions, or pass another --state FILE", path.display())]
    StateRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the emulator state file {} is damaged or not a scimguard state file: {problem}. Fix: restore it from a backup, or move it away to start with an empty store", path.display())]
    StateCorrupt { path: PathBuf, problem: String },
    #[error("the emulator state file {} cannot be used: {place}: {problem}. Fix: {fix}", path.display())]
    StateInvalid {
        path: PathBuf,
        /// Where in the file: `users[3] (id "…")`, `groups[1] (id "…") members[4]`.
        place: String,
        problem: String,
        fix: String,
    },
    #[error("the directory of the emulator state file {} does not exist. Fix: create it, or pass --state a file in an existing directory", path.display())]
    StateDirectory { path: PathBuf },
    #[error(
        "the embedded rules cannot be loaded ({0}). Fix: this is a scimguard bug; please report it"
    )]
    Rules(#[from] RulesError),
    #[error("the embedded discovery documents are invalid ({0}). Fix: this is a scimguard bug; please report it")]
    Discovery(String),
}

/// What an operation needs besides the store: the time and the id prefix.
pub(crate) struct Ctx<'a> {
    /// Seconds since the Unix epoch: `meta.created` / `meta.lastModified`.
    pub now: u64,
    id_prefix: &'a str,
}

impl Ctx<'_> {
    /// A new user or group id, `9067a1b2c3-<uuid>`.
    pub fn new_id(&self) -> String {
        ids::resource_id(self.id_prefix)
    }
}

struct State {
    store: Store,
    /// Bumped by every change; the persister writes snapshots in this order.
    version: u64,
}

/// The emulated service of one tenant.
pub struct Emulator {
    tenant: String,
    token: String,
    id_prefix: String,
    rules: RuleSet,
    limiter: Option<DefaultDirectRateLimiter>,
    discovery: Discovery,
    state: Mutex<State>,
    persister: Option<Arc<Persister>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("tenant", &self.tenant)
            .field("state_file", &self.state_file())
            .field("throttled", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

fn check_tenant(tenant: &str) -> Result<(), EmulatorError> {
    let problem = if tenant.is_empty() {
        Some("it is empty")
    } else if tenant.len() > 128 {
        Some("it is longer than 128 characters")
    } else if !tenant
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    {
        Some("it must be one URL path segment")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(EmulatorError::Tenant {
            tenant: tenant.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

fn check_token(token: &str) -> Result<(), EmulatorError> {
    if token.is_empty() {
        return Err(EmulatorError::Token {
            problem: "it is empty",
        });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EmulatorError::Token {
            problem: "it holds a space, a control or a non-ASCII character",
        });
    }
    Ok(())
}

/// Compares without stopping at the first difference, so the time taken does not tell
/// how much of a guessed token was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Emulator {
    /// Builds the emulator; with a state file, loads it if it exists.
    pub fn new(config: EmulatorConfig) -> Result<Arc<Emulator>, EmulatorError> {
        check_tenant(&config.tenant)?;
        check_token(&config.token)?;
        let rules = RuleSet::embedded()?.strict();
        let discovery = Discovery::new(&config.tenant).map_err(EmulatorError::Discovery)?;
        let (store, persister) = match config.state_file {
            None => (Store::default(), None),
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if !dir.is_dir() {
                        return Err(EmulatorError::StateDirectory { path });
                    }
                }
                let store = Store::load(&path)?;
                (store, Some(Arc::new(Persister::new(path, 0))))
            }
        };
        let limiter = NonZeroU32::new(config.rate)
            .map(|n| RateLimiter::direct(Quota::per_second(n).allow_burst(n)));
        Ok(Arc::new(Emulator {
            id_prefix: ids::id_prefix(&config.tenant),
            tenant: config.tenant,
            token: config.token,
            rules,
            limiter,
            discovery,
            state: Mutex::new(State { store, version: 0 }),
            persister,
        }))
    }

    /// The tenant id.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The SCIM base path, `/{tenant}/scim/v2`: append it to the listen URL to get the
    /// endpoint to configure in the IdP.
    pub fn base_path(&self) -> String {
        format!("/{}/scim/v2", self.tenant)
    }

    /// The state file, if any.
    pub fn state_file(&self) -> Option<&Path> {
        self.persister.as_deref().map(Persister::path)
    }

    /// How many users and groups the store holds.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.store.users.len(), state.store.groups.len())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the store half-changed: every
        // operation changes it only once it has succeeded.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one request whose body has been read.
    pub async fn handle_request(&self, request: Request<Bytes>) -> Response<Full<Bytes>> {
        let request_id = ids::uuid_v4();
        let (parts, body) = request.into_parts();
        let result = self.respond(&parts, &body).await;
        let response = finish(result, &request_id);
        log(&parts, response.status(), &request_id);
        response
    }

    async fn respond(&self, parts: &Parts, body: &Bytes) -> Result<Reply, ApiError> {
        if let Some(limiter) = &self.limiter {
            if limiter.check().is_err() {
                return Err(ApiError::throttled());
            }
        }
        let path = parts.uri.path();
        self.authorize(path, &parts.headers)?;
        let classified = classify(parts.method.as_str(), path);
        if classified.operation == Operation::Unknown {
            return Err(ApiError::not_found(ENDPOINT_NOT_FOUND));
        }
        let query = Query::parse(parts.uri.query().unwrap_or_default());
        let id = classified.id.as_deref();
        self.validate(classified.operation, id, &query, body)?;
        self.dispatch(classified.operation, id.unwrap_or_default(), &query, body)
            .await
    }

    /// The tenant in the path, then the bearer token. Another tenant is 404 "TENANT does
    /// not exist." (observed from AWS, 2022), a wrong token on this tenant 401; a path
    /// that is not `/{tenant}/scim/v2/…` at all is 404.
    fn authorize(&self, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let (tenant, after) = rest.split_once('/').unwrap_or((rest, ""));
        let is_scim_v2 = |s: &str| {
            s.get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("scim/v2"))
                && matches!(s.as_bytes().get(7), None | Some(b'/'))
        };
        if !is_scim_v2(after) {
            // `/scim/v2/Users`: a SCIM path with no tenant, i.e. a wrong one.
            return Err(if is_scim_v2(rest) {
                ApiError::not_found(TENANT_NOT_FOUND)
            } else {
                ApiError::not_found(ENDPOINT_NOT_FOUND)
            });
        }
        if tenant != self.tenant {
            return Err(ApiError::not_found(TENANT_NOT_FOUND));
        }
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim());
        match token {
            Some(token) if same_secret(token.as_bytes(), self.token.as_bytes()) => Ok(()),
            _ => Err(ApiError::unauthorized()),
        }
    }

    /// The strict rules: any refusal is AWS's 400, with the rule's observed AWS detail
    /// or AWS's generic one. Warnings pass, as AWS accepts those requests.
    fn validate(
        &self,
        operation: Operation,
        id: Option<&str>,
        query: &Result<Query, QueryError>,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let view = RequestView {
            operation,
            // Only an unknown path's shape is judged, and it is answered 404 before this.
            path: "",
            resource_id: id,
            query,
            body,
        };
        let evaluation = self.rules.evaluate(&view);
        let refused = evaluation
            .findings
            .iter()
            .find(|f| f.action == Action::Reject);
        match refused {
            Some(finding) => Err(ApiError::invalid_because(
                finding
                    .aws_detail
                    .clone()
                    .unwrap_or_else(|| AWS_GENERIC_DETAIL.to_owned()),
            )),
            None => Ok(()),
        }
    }

    async fn dispatch(
        &self,
        operation: Operation,
        id: &str,
        query: &Result<Query, QueryError>,
        body: &[u8],
    ) -> Result<Reply, ApiError> {
        use Operation as Op;
        let list_query = || query.as_ref().map_err(|_| ApiError::invalid());
        match operation {
            Op::ListSchemas => Ok(self.discovery.list_schemas()),
            Op::GetSchema => self.discovery.schema(id),
            Op::ListResourceTypes => Ok(self.discovery.resource_types()),
            Op::ServiceProviderConfig => Ok(self.discovery.service_provider_config()),
            Op::GetUser => users::get(&self.lock().store, id),
            Op::ListUsers => users::list(&self.lock().store, list_query()?),
            Op::GetGroup => groups::get(&self.lock().store, id),
            Op::ListGroups => groups::list(&self.lock().store, list_query()?),
            Op::CreateUser => self.change(|s, c| users::create(s, c, body)).await,
            Op::PutUser => self.change(|s, c| users::put(s, c, id, body)).await,
            Op::PatchUser => self.change(|s, c| users::patch(s, c, id, body)).await,
            Op::DeleteUser => self.change(|s, _| users::delete(s, id)).await,
            Op::CreateGroup => self.change(|s, c| groups::create(s, c, body)).await,
            Op::PatchGroup => self.change(|s, c| groups::patch(s, c, id, body)).await,
            Op::DeleteGroup => self.change(|s, _| groups::delete(s, id)).await,
            // Operations AWS lacks: the rules refuse them first ("This error also
            // occurs if the operation is unsupported").
            Op::PutGroup | Op::Bulk | Op::Me | Op::Search | Op::GetResourceType => {
                Err(ApiError::invalid())
            }
            Op::Unknown => Err(ApiError::not_found(ENDPOINT_NOT_FOUND)),
        }
    }

    /// Runs a changing operation under the lock, then, if it changed the store and
    /// there is a state file, writes the snapshot before answering.
    async fn change<F>(&self, operation: F) -> Result<Reply, ApiError>
    where
        F: FnOnce(&mut Store, &Ctx<'_>) -> Result<Outcome, ApiError>,
    {
        let (reply, snapshot) = {
            let mut state = self.lock();
            let ctx = Ctx {
                now: ids::now().0,
                id_prefix: &self.id_prefix,
            };
            let outcome = operation(&mut state.store, &ctx)?;
            let mut snapshot = None;
            if outcome.changed {
                state.version += 1;
                if let Some(persister) = &self.persister {
                    let bytes = state.store.to_file_bytes();
                    snapshot = Some((persister.clone(), state.version, bytes));
                }
            }
            (outcome.reply, snapshot)
        };
        if let Some((persister, version, bytes)) = snapshot {
            let saved = tokio::task::spawn_blocking(move || persister.save(version, &bytes)).await;
            let error = match saved {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(error) = error {
                tracing::error!(
                    state_file = %self.state_file().unwrap_or(Path::new("")).display(),
                    %error,
                    "cannot write the emulator state file; the change is in memory only"
                );
                return Err(ApiError::internal());
            }
        }
        Ok(reply)
    }
}

/// The response: status, body, `Content-Type: application/json` and
/// `x-amzn-RequestId` always; errors in AWS's shape with the same request id.
fn finish(result: Result<Reply, ApiError>, request_id: &str) -> Response<Full<Bytes>> {
    let (status, body) = match result {
        Ok(Reply::Json { status, body }) => (status, Bytes::from(body)),
        Ok(Reply::NoContent) => (StatusCode::NO_CONTENT, Bytes::new()),
        Err(error) => {
            let (secs, millis) = ids::now();
            let mut scim = ScimError::new(error.status.as_u16(), error.detail);
            scim.exception_request_id = Some(request_id.to_owned());
            scim.time_stamp = Some(ids::aws_time_stamp(secs, millis));
            (error.status, Bytes::from(scim.to_json()))
        }
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER.clone(), id);
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// One line per request: what the IdP asked and what the emulator answered.
fn log(parts: &Parts, status: StatusCode, request_id: &str) {
    tracing::info!(
        method = %parts.method,
        path = parts.uri.path(),
        status = status.as_u16(),
        request_id,
        "emulator"
    );
}

/// Reads the whole body, refusing one over [`MAX_BODY_BYTES`] (before reading it when
/// Content-Length already says so).
async fn read_body(parts: &Parts, body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::too_large(MAX_BODY_BYTES))
        }
        Err(_) => Err(ApiError::invalid()),
    }
}

impl crate::server::Handler for Emulator {
    type Body = Full<Bytes>;

    async fn handle(
        &self,
        request: Request<hyper::body::Incoming>,
        _conn: ConnInfo,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        match read_body(&parts, body).await {
            Ok(bytes) => self.handle_request(Request::from_parts(parts, bytes)).await,
            Err(error) => {
                let request_id = ids::uuid_v4();
                log(&parts, error.status, &request_id);
                finish(Err(error), &request_id)
            }
        }
    }
}
