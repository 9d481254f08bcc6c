//! Repair what AWS refuses: a PatchGroup `replace` of `members`, a PatchGroup that
//! removes every member, and a PUT /Groups/{id} become the adds and removes AWS takes.
//!
//! AWS refuses all three ("Replacing group memberships is not supported."; live guide,
//! PatchGroup: "If you attempt to replace or remove all group memberships as part of a
//! single request the result will be a ValidationException"; there is no PutGroup), and
//! GetGroup returns no members, so an IdP cannot compute the difference itself. The live
//! guide's ListUsers offers the missing read: `filter=groups.value eq "<group id>"` with
//! cursor pages of up to 100. A repair, under the group's lock and a time budget:
//!
//! | # | step | upstream requests |
//! |---|---|---|
//! | 1 | read the request: member operations, displayName / externalId | none |
//! | 2 | GetGroup: the group exists, its name and attributes | `GET /Groups/{id}` |
//! | 3 | its members, page by page (at most `--repair-max-members`) | `GET /Users?filter=groups.value eq "{id}"&count=100&cursor=…` |
//! | 4 | diff: who to add, who to remove ([`plan::diff`]) | none |
//! | 5 | PATCHes of at most 100 membership changes, in order ([`plan::requests`]) | `PATCH /Groups/{id}` each |
//! | 6 | answer as AWS answers the operation asked for | PUT: `GET /Groups/{id}` |
//!
//! Every request goes to the configured upstream with the request's own headers (its
//! credentials), through the pipeline's send, so each takes a token of the tenant's
//! throttle budget and is recorded in the capture. Nothing is sent when nothing changed.
//! A repair that cannot finish says exactly what was applied.
//!
//! The rules decide: a repair runs when, in enforce mode, a finding of one of
//! [`REPAIR_RULES`] has the action `rewrite`; in observe mode it logs "would repair" and
//! the request is forwarded as received. Set those rules to `reject` to refuse instead.

pub mod plan;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;

use crate::body::{full, Body};
use serde_json::Value;
use tokio::time::Instant;

use self::plan::{Changes, Request};
use crate::error::Error;
use crate::rules::context::{Finding, Fix};
use crate::rules::{Action, Mode};
use crate::scim::error::ScimError;
use crate::scim::Operation;
use crate::throttle::OpClass;

/// `--repair-max-members`: the most members a repair reads before it refuses.
pub const DEFAULT_MAX_MEMBERS: usize = 50_000;

/// `--repair-timeout`: the time a repair may take, below the 30 s or more after which
/// IdPs give up on a request (Microsoft Entra ID, Okta).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(25);

/// Members a read asks for per page: the live guide's maximum `count`.
const PAGE_SIZE: usize = 100;

/// Member ids a report names before it says "and N more".
const REPORT_IDS: usize = 20;

/// The rules whose `rewrite` is a repair.
pub const REPAIR_RULES: [&str; 3] = [
    "group.patch.replace-members",
    "group.patch.remove-all-members",
    "group.put",
];

/// The bounds of a repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairSettings {
    pub max_members: usize,
    pub timeout: Duration,
}

impl Default for RepairSettings {
    fn default() -> Self {
        RepairSettings {
            max_members: DEFAULT_MAX_MEMBERS,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// How a repair reaches the upstream: the pipeline's own send (the configured upstream,
/// the request's headers, the tenant's throttle, the capture).
pub trait RepairIo {
    /// Sends one request; `target` is a path and query under the upstream's base path.
    fn send(
        &mut self,
        method: Method,
        target: String,
        body: Option<Vec<u8>>,
        class: OpClass,
    ) -> impl Future<Output = Result<Response<Body>, Error>> + Send;

    /// Asks the blast-radius guard about `removed` member removals, known once the
    /// group is read (issue: "member removals count towards the guard"). `Some` is the
    /// answer to give instead: the guard held the repair, and nothing is sent.
    fn admit_removals(
        &mut self,
        removed: u32,
    ) -> impl Future<Output = Option<Response<Body>>> + Send;
}

type Locks = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// Repairs, and the per-group locks that serialise changes to a group.
#[derive(Debug, Default)]
pub struct Repairer {
    settings: RepairSettings,
    locks: Locks,
}

/// Holds a group's lock; the last holder removes the lock from the map.
pub struct GroupGuard {
    key: String,
    locks: Locks,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        if locks
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

/// One repair's request: what it changes and how it was sent.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub operation: Operation,
    /// The path before `/Groups` (`/{tenant}/scim/v2`), as received.
    pub prefix: &'a str,
    pub group_id: &'a str,
    /// The body as received.
    pub body: &'a [u8],
}

impl Repairer {
    pub fn new(settings: RepairSettings) -> Self {
        Repairer {
            settings,
            locks: Locks::default(),
        }
    }

    /// Whether this request is repaired: enforce mode, a group change, and a finding of
    /// a repair rule whose action is `rewrite`. In observe mode such a finding is logged
    /// as "would repair" and the request forwarded as received.
    pub fn wanted(&self, mode: Mode, operation: Operation, findings: &[Finding]) -> bool {
        let Some(finding) = findings
            .iter()
            .find(|f| f.action == Action::Rewrite && REPAIR_RULES.contains(&f.rule.as_str()))
        else {
            return false;
        };
        if !matches!(operation, Operation::PatchGroup | Operation::PutGroup) {
            return false;
        }
        if mode == Mode::Observe {
            tracing::info!(
                rule = %finding.rule,
                "would repair: read the group's members, then send the adds and removes AWS takes; forwarded as received (observe mode)"
            );
            return false;
        }
        true
    }

    /// Serialises changes to one group while a repair of it runs: every PatchGroup,
    /// PutGroup and DeleteGroup holds its group's lock until answered.
    pub async fn serialise(
        &self,
        tenant: &str,
        operation: Operation,
        group_id: Option<&str>,
    ) -> Option<GroupGuard> {
        if !matches!(
            operation,
            Operation::PatchGroup | Operation::PutGroup | Operation::DeleteGroup
        ) {
            return None;
        }
        let key = format!("{tenant}\u{0}{}", group_id?);
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            locks.entry(key.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        Some(GroupGuard {
            key,
            locks: self.locks.clone(),
            guard: Some(guard),
        })
    }

    /// Runs one repair and answers as AWS answers the operation the IdP asked for. The
    /// first repair finding gets the summary as its fix.
    #[tracing::instrument(name = "repair", skip_all, fields(group = job.group_id))]
    pub async fn run<I: RepairIo>(
        &self,
        io: &mut I,
        job: Job<'_>,
        findings: &mut [Finding],
    ) -> Response<Body> {
        let mut run = Run {
            io,
            job,
            settings: self.settings,
            deadline: Instant::now() + self.settings.timeout,
            reads: 0,
        };
        let outcome = run.repair().await;
        if let Some(finding) = findings
            .iter_mut()
            .find(|f| f.action == Action::Rewrite && REPAIR_RULES.contains(&f.rule.as_str()))
        {
            let (before, after) = match &outcome {
                Ok((changes, before, summary, _)) => (
                    format!("{before} members"),
                    format!(
                        "{} members ({summary})",
                        before + changes.add.len() - changes.remove.len()
                    ),
                ),
                Err(report) => ("the group as it was".to_owned(), report.summary.clone()),
            };
            finding.message.push_str(&format!(" Repaired: {after}."));
            finding.fix = Some(Fix { before, after });
        }
        match outcome {
            Ok((_, _, summary, response)) => {
                tracing::info!(%summary, reads = run.reads, "repaired");
                response
            }
            Err(report) => {
                tracing::warn!(summary = %report.summary, "repair stopped");
                report.response
            }
        }
    }
}

/// A repair that stopped: its answer and a line for the explanation.
struct Stopped {
    response: Response<Body>,
    summary: String,
}

struct Run<'r, I> {
    io: &'r mut I,
    job: Job<'r>,
    settings: RepairSettings,
    deadline: Instant,
    reads: usize,
}

/// The answer of one upstream request, buffered.
struct Answer {
    status: StatusCode,
    response: Response<Body>,
    body: Bytes,
}

/// Why an upstream request gave no usable answer.
enum Failure {
    /// The upstream answered with an error: relayed with scimguard's detail in front.
    Status(Answer),
    /// No answer: scimguard's own error (throttled, unreachable, timed out).
    Local(Error),
    /// The time budget ran out.
    Timeout,
}

impl<I: RepairIo> Run<'_, I> {
    fn group_path(&self) -> String {
        format!(
            "{}/Groups/{}",
            self.job.prefix,
            encode(self.job.group_id, false)
        )
    }

    async fn send(
        &mut self,
        method: Method,
        target: String,
        body: Option<Vec<u8>>,
        class: OpClass,
    ) -> Result<Answer, Failure> {
        let sent =
            tokio::time::timeout_at(self.deadline, self.io.send(method, target, body, class));
        let response = match sent.await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(e)) => return Err(Failure::Local(e)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let (parts, stream) = response.into_parts();
        let body = stream
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let answer = Answer {
            status,
            response: Response::from_parts(parts, full(body.clone())),
            body,
        };
        if status.is_success() {
            Ok(answer)
        } else {
            Err(Failure::Status(answer))
        }
    }

    /// The repair; `Ok` holds the changes, the member count before, the summary and the
    /// answer.
    async fn repair(&mut self) -> Result<(Changes, usize, String, Response<Body>), Stopped> {
        let ask = match self.job.operation {
            Operation::PutGroup => plan::read_put(self.job.body),
            _ => plan::read_patch(self.job.body),
        }
        .map_err(|problem| {
            stopped(
                400,
                format!("scimguard cannot repair this request, and sent nothing: {problem}."),
                format!("not repaired: {problem}"),
            )
        })?;

        let group = self
            .send(Method::GET, self.group_path(), None, OpClass::Read)
            .await
            .map_err(|f| self.read_failed(f, "the group"))?;
        self.reads += 1;
        let group: Value = serde_json::from_slice(&group.body).unwrap_or(Value::Null);
        let name = group
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or(self.job.group_id)
            .to_owned();

        let current = self.members(&name).await?;
        let changes = plan::diff(&ask, &current, &group);
        let summary = changes.summary(&name);
        if !changes.remove.is_empty() {
            let removed = u32::try_from(changes.remove.len()).unwrap_or(u32::MAX);
            if let Some(response) = self.io.admit_removals(removed).await {
                return Err(Stopped {
                    response,
                    summary: format!("held by the blast-radius guard, nothing sent: {summary}"),
                });
            }
        }
        let requests = plan::requests(&changes);
        for (i, request) in requests.iter().enumerate() {
            let body = serde_json::to_vec(&request.body).unwrap_or_default();
            tracing::info!(
                request = i + 1,
                of = requests.len(),
                added = request.added.len(),
                removed = request.removed.len(),
                "repair: sending"
            );
            if let Err(failure) = self
                .send(Method::PATCH, self.group_path(), Some(body), OpClass::Write)
                .await
            {
                return Err(self.write_failed(failure, &requests, i, &summary));
            }
        }
        let response = match self.job.operation {
            // PutGroup is answered as GetGroup answers, after the changes.
            Operation::PutGroup if requests.is_empty() => json_response(&group),
            Operation::PutGroup => match self
                .send(Method::GET, self.group_path(), None, OpClass::Read)
                .await
            {
                Ok(answer) => answer.response,
                Err(_) => json_response(&group),
            },
            _ => no_content(),
        };
        Ok((changes, current.len(), summary, response))
    }

    /// The group's members, by cursor pages of [`PAGE_SIZE`].
    async fn members(&mut self, name: &str) -> Result<Vec<String>, Stopped> {
        let filter = format!("groups.value eq \"{}\"", self.job.group_id);
        let mut members: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut cursor = String::new();
        loop {
            let target = format!(
                "{}/Users?filter={}&count={PAGE_SIZE}&cursor={}",
                self.job.prefix,
                encode(&filter, true),
                encode(&cursor, true)
            );
            let page = self
                .send(Method::GET, target, None, OpClass::Read)
                .await
                .map_err(|f| self.read_failed(f, "the group's members"))?;
            self.reads += 1;
            let page: Value = serde_json::from_slice(&page.body).unwrap_or(Value::Null);
            tracing::debug!(
                page = self.reads - 1,
                members = page["Resources"].as_array().map_or(0, Vec::len),
                "repair: read members"
            );
            let ids = page["Resources"].as_array().map(|r| {
                r.iter()
                    .filter_map(|u| u["id"].as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            });
            let Some(ids) = ids else {
                return Err(stopped(
                    502,
                    format!("scimguard could not read the members of group {name}: the upstream's list has no Resources. Nothing was changed."),
                    "not repaired: the upstream's member list was unreadable".to_owned(),
                ));
            };
            for id in ids {
                if seen.insert(id.clone()) {
                    members.push(id);
                }
            }
            if members.len() > self.settings.max_members {
                let max = self.settings.max_members;
                let error = ScimError::new(
                    400,
                    format!("scimguard did not repair this change of group {name}: the group has more than {max} members (--repair-max-members), too many to read and compare within one request. Nothing was changed. Send the members to add and to remove as PATCH add and remove operations, or raise --repair-max-members."),
                )
                .with_scim_type("tooMany");
                return Err(Stopped {
                    response: crate::pipeline::scim_response(&error),
                    summary: format!("not repaired: group {name} has more than {max} members"),
                });
            }
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() && next != cursor => cursor = next.to_owned(),
                _ => return Ok(members),
            }
        }
    }

    fn read_failed(&self, failure: Failure, what: &str) -> Stopped {
        let prefix =
            format!("scimguard could not read {what} to repair this request; nothing was changed");
        match failure {
            // A group that does not exist is AWS's own 404, relayed unchanged.
            Failure::Status(answer)
                if answer.status == StatusCode::NOT_FOUND && what == "the group" =>
            {
                Stopped {
                    response: answer.response,
                    summary: "not repaired: the group does not exist".to_owned(),
                }
            }
            failure => self.failed(failure, prefix, "not repaired: a read failed".to_owned()),
        }
    }

    fn write_failed(
        &self,
        failure: Failure,
        requests: &[Request],
        at: usize,
        summary: &str,
    ) -> Stopped {
        let applied = &requests[..at];
        let pending = &requests[at..];
        let count = |list: &[Request], f: fn(&Request) -> &Vec<String>| -> Vec<String> {
            list.iter().flat_map(|r| f(r).iter().cloned()).collect()
        };
        let done = match at {
            0 => "none was applied".to_owned(),
            1 => format!(
                "request 1 was applied ({})",
                changes_text(
                    &count(applied, |r| &r.added),
                    &count(applied, |r| &r.removed)
                )
            ),
            n => format!(
                "requests 1 to {n} were applied ({})",
                changes_text(
                    &count(applied, |r| &r.added),
                    &count(applied, |r| &r.removed)
                )
            ),
        };
        let state = if matches!(failure, Failure::Timeout) {
            format!("request {} did not finish within --repair-timeout {} and may or may not have been applied", at + 1, humantime::format_duration(self.settings.timeout))
        } else {
            format!("request {} failed", at + 1)
        };
        let prefix = format!(
            "scimguard repaired this request ({summary}) into {} PATCH request(s) of at most 100 membership changes: {done}; {state}. Not applied: {}. Send the request again to finish the change",
            requests.len(),
            changes_text(&count(pending, |r| &r.added), &count(pending, |r| &r.removed)),
        );
        self.failed(failure, prefix, format!("partly repaired: {done}; {state}"))
    }

    /// The answer for a failure: the upstream's status (or scimguard's own), with the
    /// report in front of the upstream's detail.
    fn failed(&self, failure: Failure, prefix: String, summary: String) -> Stopped {
        let response = match failure {
            Failure::Status(answer) => {
                let detail = serde_json::from_slice::<Value>(&answer.body)
                    .ok()
                    .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
                let mut response = crate::pipeline::scim_response(&ScimError::new(
                    answer.status.as_u16(),
                    format!("{prefix}: the upstream answered {}: {detail}", answer.status),
                ));
                for name in ["x-amzn-requestid", "retry-after"] {
                    if let Some(v) = answer.response.headers().get(name) {
                        response.headers_mut().insert(name, v.clone());
                    }
                }
                response
            }
            Failure::Local(error) => {
                let own = crate::pipeline::error_response(&error);
                let mut response = crate::pipeline::scim_response(&ScimError::new(
                    own.status().as_u16(),
                    format!("{prefix}: {}", error.detail()),
                ));
                if let Some(retry) = own.headers().get(http::header::RETRY_AFTER) {
                    response.headers_mut().insert(http::header::RETRY_AFTER, retry.clone());
                }
                response
            }
            Failure::Timeout => crate::pipeline::scim_response(&ScimError::new(
                504,
                format!(
                    "{prefix}: the repair took longer than --repair-timeout {}. Send the request again, or raise --repair-timeout",
                    humantime::format_duration(self.settings.timeout)
                ),
            )),
        };
        Stopped { response, summary }
    }
}

/// "added 30 (u1, u2, …), removed 50 (…)", each list cut at [`REPORT_IDS`] ids.
fn changes_text(added: &[String], removed: &[String]) -> String {
    let list = |ids: &[String]| {
        let shown: Vec<&str> = ids.iter().take(REPORT_IDS).map(String::as_str).collect();
        let more = ids.len().saturating_sub(REPORT_IDS);
        if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    match (added.is_empty(), removed.is_empty()) {
        (true, true) => "no membership change".to_owned(),
        (false, true) => format!("{} added: {}", added.len(), list(added)),
        (true, false) => format!("{} removed: {}", removed.len(), list(removed)),
        (false, false) => format!(
            "{} added: {}; {} removed: {}",
            added.len(),
            list(added),
            removed.len(),
            list(removed)
        ),
    }
}

fn stopped(status: u16, detail: String, summary: String) -> Stopped {
    Stopped {
        response: crate::pipeline::scim_response(&ScimError::new(status, detail)),
        summary,
    }
}

fn no_content() -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn json_response(value: &Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Percent-encodes a path segment (`query`: false) or a query value (true).
fn encode(text: &str, query: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let plain = b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (query && b == b':');
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second change to the same group waits for the first; other groups do not; the
    /// lock leaves the map with its last holder.
    #[tokio::test]
    async fn changes_to_one_group_wait_for_each_other() {
        let repairer = Repairer::new(RepairSettings::default());
        let first = repairer
            .serialise("t", Operation::PatchGroup, Some("g1"))
            .await
            .expect("a group change is serialised");
        let waiting = repairer.serialise("t", Operation::DeleteGroup, Some("g1"));
        tokio::pin!(waiting);
        let short = Duration::from_millis(50);
        assert!(tokio::time::timeout(short, &mut waiting).await.is_err());
        // Another group, or the same id in another tenant, goes ahead.
        let other = repairer.serialise("t", Operation::PutGroup, Some("g2"));
        assert!(tokio::time::timeout(short, other).await.is_ok());
        let tenant = repairer.serialise("u", Operation::PatchGroup, Some("g1"));
        assert!(tokio::time::timeout(short, tenant).await.is_ok());
        drop(first);
        let second = tokio::time::timeout(short, &mut waiting).await.unwrap();
        assert!(second.is_some());
        drop(second);
        assert!(repairer.locks.lock().unwrap().is_empty());
        // Reads and users are not serialised.
        assert!(repairer
            .serialise("t", Operation::ListUsers, None)
            .await
            .is_none());
        assert!(repairer
            .serialise("t", Operation::PatchUser, Some("u1"))
            .await
            .is_none());
    }

    #[test]
    fn reports_cut_long_id_lists() {
        let ids: Vec<String> = (0..25).map(|i| format!("u{i}")).collect();
        let text = changes_text(&ids, &ids[..2]);
        assert!(text.starts_with("25 added: u0, u1,"), "{text}");
        assert!(text.contains("u19 and 5 more; 2 removed: u0, u1"), "{text}");
        assert_eq!(encode("a b\"/é:", true), "a%20b%22%2F%C3%A9:");
        assert_eq!(encode("a:b", false), "a%3Ab");
    }
}
