//! What a check sees (the [`RequestView`]) and what it leaves behind (findings, a fixed
//! working copy of the body, batches).

use std::cell::OnceCell;

use serde::Serialize;
use serde_json::Value;

use super::{Action, Evaluation, Rule};
use crate::scim::filter::{Filter, ParseError};
use crate::scim::operation::Operation;
use crate::scim::query::{Query, QueryError};

/// A classified request, as the rules see it. Pure data: no I/O behind it.
#[derive(Debug, Clone)]
pub struct RequestView<'a> {
    pub operation: Operation,
    /// The request target's path as received (no query).
    pub path: &'a str,
    /// The resource id from the path (`/Users/{id}`), percent-decoded.
    pub resource_id: Option<&'a str>,
    /// The parsed query string, or why it could not be parsed.
    pub query: &'a Result<Query, QueryError>,
    /// The body exactly as received.
    pub body: &'a [u8],
}

/// One rule firing on one place of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: String,
    /// The rule's action when it fired (in observe mode: what it would have done).
    pub action: Action,
    /// Where: a JSON pointer into the body (`/emails/1`), `query:filter`, `path /…` (the
    /// request's path), or `body`.
    pub location: String,
    /// The rule's message with its placeholders filled in, written for the admin.
    pub message: String,
    /// The guide section, or `observed: …` with AWS's message.
    pub source: String,
    /// What a rewrite changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Fix>,
    /// RFC 7644 §3.12 `scimType` for an error built from this finding.
    #[serde(skip)]
    pub scim_type: &'static str,
    /// What AWS itself would answer (the rule's `aws_detail`), for the emulator.
    #[serde(skip)]
    pub aws_detail: Option<String>,
}

/// A rewrite's change, as compact JSON text (`(absent)` when there is none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    pub before: String,
    pub after: String,
}

/// The request body, parsed once per evaluation.
#[derive(Debug)]
pub enum Body {
    /// No rule of the operation reads the body, so it was not parsed.
    Unread,
    /// No bytes, or only whitespace.
    Empty,
    Invalid(serde_json::Error),
    Json(Value),
}

impl Body {
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Body::Empty;
        }
        match serde_json::from_slice(bytes) {
            Ok(v) => Body::Json(v),
            Err(e) => Body::Invalid(e),
        }
    }
}

/// Mutable state threaded through the rules of one evaluation.
#[derive(Debug)]
pub struct State {
    pub body: Body,
    /// A fix has changed the body.
    pub changed: bool,
    pub findings: Vec<Finding>,
    pub batches: Vec<crate::batches::Batch>,
    /// The query's `filter`, parsed by the first list check that reads it.
    pub filter: OnceCell<Option<Result<Filter, ParseError>>>,
}

impl State {
    /// A state over `body`.
    pub fn new(body: Body) -> Self {
        State {
            body,
            changed: false,
            findings: Vec::new(),
            batches: Vec::new(),
            filter: OnceCell::new(),
        }
    }

    /// A state with the request's body parsed.
    pub fn of(request: &RequestView<'_>) -> Self {
        Self::new(Body::parse(request.body))
    }

    /// The query's filter, parsed; `None` without a filter or a query that decoded.
    pub fn filter(&self, request: &RequestView<'_>) -> Option<&Result<Filter, ParseError>> {
        let query = request.query.as_ref().ok()?;
        self.filter.get_or_init(|| query.parsed_filter()).as_ref()
    }

    pub fn finish(self) -> Evaluation {
        let body_is_json = matches!(self.body, Body::Json(_));
        let rewritten = match (self.changed, self.body) {
            (true, Body::Json(v)) => Some(v),
            _ => None,
        };
        Evaluation {
            findings: self.findings,
            rewritten,
            batches: self.batches,
            body_is_json,
        }
    }

    /// The body as a JSON object, if it is one.
    pub fn object(&self) -> Option<&serde_json::Map<String, Value>> {
        match &self.body {
            Body::Json(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    /// The body as a mutable JSON object, if it is one.
    pub fn object_mut(&mut self) -> Option<&mut serde_json::Map<String, Value>> {
        match &mut self.body {
            Body::Json(Value::Object(map)) => Some(map),
            _ => None,
        }
    }
}

/// A check's handle for reporting: one per rule run.
pub struct Reporter<'r> {
    pub rule: &'r Rule,
}

impl Reporter<'_> {
    /// Whether this rule fixes what it finds (its action is rewrite).
    pub fn rewrites(&self) -> bool {
        self.rule.action == Action::Rewrite
    }

    /// Records a finding without a fix.
    pub fn report(&self, state: &mut State, location: impl Into<String>, vars: &[(&str, String)]) {
        state
            .findings
            .push(self.finding(location.into(), vars, None));
    }

    /// Records a finding the rule cannot fix although its action is rewrite: it rejects
    /// instead (a request AWS would refuse must not be forwarded as if fixed). Under
    /// warn it stays a warning.
    pub fn unfixable(
        &self,
        state: &mut State,
        location: impl Into<String>,
        vars: &[(&str, String)],
    ) {
        let mut finding = self.finding(location.into(), vars, None);
        if finding.action == Action::Rewrite {
            finding.action = Action::Reject;
        }
        state.findings.push(finding);
    }

    /// Records a finding whose fix has been applied to the working body.
    pub fn fixed(
        &self,
        state: &mut State,
        location: impl Into<String>,
        vars: &[(&str, String)],
        before: String,
        after: String,
    ) {
        state.changed = true;
        let fix = Some(Fix { before, after });
        state
            .findings
            .push(self.finding(location.into(), vars, fix));
    }

    fn finding(&self, location: String, vars: &[(&str, String)], fix: Option<Fix>) -> Finding {
        let mut all: Vec<(&str, String)> = Vec::with_capacity(vars.len() + 1);
        all.push(("location", location.clone()));
        all.extend(vars.iter().cloned());
        Finding {
            rule: self.rule.id.clone(),
            action: self.rule.action,
            location,
            message: self.rule.render(&all),
            source: self.rule.source.clone(),
            fix,
            scim_type: self.rule.check.scim_type(),
            aws_detail: self.rule.aws_detail.clone(),
        }
    }
}

/// Compact JSON text of a value for fixes and messages; `(absent)` for none.
pub(crate) fn show(value: Option<&Value>) -> String {
    match value {
        Some(v) => v.to_string(),
        None => "(absent)".to_owned(),
    }
}

/// Escapes a key for a JSON pointer (RFC 6901 §3: `~` → `~0`, `/` → `~1`).
pub(crate) fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
