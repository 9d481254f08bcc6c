//! AWS's constraints as data: [`RuleSet`] loads `rules/*.toml` (the default file is
//! embedded in the binary) and checks a classified request against every rule that
//! applies to its operation.
//!
//! A rule is `id` + `operations` + a [`Check`] (a closed set of kinds, matched in one
//! place: [`check::run`]) + a default [`Action`] + a `message` template + its `source`
//! (the guide section, or `observed:` with AWS's own message). `rules/README.md`
//! documents the schema.
//!
//! Layout: [`check`] holds the closed [`Check`] enum and the one match that runs a check;
//! each kind's code is one function in the module of its resource (`checks/user.rs`,
//! `checks/patch.rs`, `checks/list.rs`, `group.rs`); `attr.rs` reads attribute paths
//! case-insensitively on the body's `serde_json::Value`, parsed once per request and only
//! when a rule of the operation reads the body.

mod attr;
pub mod check;
mod checks;
pub mod context;
mod group;
mod load;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use check::Check;
pub use context::{Finding, Fix, RequestView};
pub use load::RulesError;

use crate::scim::operation::Operation;

/// The embedded default rules: AWS IAM Identity Center as its live guide describes it
/// (the 2025 rewrite), plus behaviour observed from the real service.
pub const DEFAULT_RULES: &str = include_str!("../../rules/aws-identity-center.toml");

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Answer at once with a SCIM error; the request never reaches the upstream.
    Reject,
    /// Apply the rule's safe fix and forward the fixed request.
    Rewrite,
    /// Forward unchanged; report the finding.
    Warn,
    /// Do not run the rule.
    Off,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::Rewrite => "rewrite",
            Action::Warn => "warn",
            Action::Off => "off",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "reject" => Ok(Action::Reject),
            "rewrite" => Ok(Action::Rewrite),
            "warn" => Ok(Action::Warn),
            "off" => Ok(Action::Off),
            _ => Err(format!(
                "`{s}` is not an action; use reject, rewrite, warn or off"
            )),
        }
    }
}

/// Whether actions apply (enforce) or are only reported as "would …" (observe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Observe,
}

/// One rule, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub operations: Vec<Operation>,
    pub check: Check,
    pub action: Action,
    pub message: String,
    pub source: String,
    /// What AWS itself answers in `detail` when it refuses such a request (observed), for
    /// the emulator; `None` means AWS's generic [`AWS_GENERIC_DETAIL`].
    pub aws_detail: Option<String>,
    /// AWS accepts such requests as they are (the fix is hygiene, not a necessity): the
    /// emulator does not refuse them.
    pub aws_accepts: bool,
}

/// AWS's `detail` for almost every refusal (guide › Errors › ValidationException).
pub const AWS_GENERIC_DETAIL: &str =
    "Request is unparsable, syntactically incorrect, or violates schema.";

impl Rule {
    /// The text that replaces `{name}` placeholders of the message with `vars`.
    pub fn render(&self, vars: &[(&str, String)]) -> String {
        render_template(&self.message, vars)
    }
}

/// Replaces every `{name}` in `template` with its value in `vars`; unknown names stay
/// as written. `{{` and `}}` stand for literal braces (messages quote JSON).
pub fn render_template(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            out.push('}');
            rest = after;
            continue;
        }
        match tail[1..].find('}') {
            Some(close) => {
                let name = &tail[1..1 + close];
                match vars.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&tail[..close + 2]),
                }
                rest = &tail[close + 2..];
            }
            None => {
                out.push_str(tail);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod template_tests {
    use super::render_template;

    #[test]
    fn fills_placeholders_and_unescapes_braces() {
        let vars = [("value", "u-1".to_owned()), ("n", "3".to_owned())];
        assert_eq!(
            render_template("{{\"value\": \"{value}\"}} x{n} {missing}", &vars),
            "{\"value\": \"u-1\"} x3 {missing}"
        );
        assert_eq!(render_template("open { only", &vars), "open { only");
    }
}

/// When a hint applies to an exchange the upstream answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HintWhen {
    /// Always (subject to `status` and `detail_contains`).
    Any,
    /// A rule would have refused or fixed this request (observe mode, or a rule set to
    /// warn) and the upstream refused it too.
    Predicted,
    /// The upstream refused it and no rule fired.
    Unpredicted,
    /// A rule would have refused it, yet the upstream accepted it: the rule may be stale.
    Stale,
}

/// Advice for the admin when the upstream's answer says more than the rules did:
/// prediction against reality, kept as data beside the rules (`[[hint]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hint {
    pub when: HintWhen,
    /// `4xx`, `2xx`, or one status such as `404`.
    pub status: String,
    /// Only when AWS's `detail` contains this text (case-insensitive).
    #[serde(default)]
    pub detail_contains: Option<String>,
    /// The advice; `{status}`, `{detail}`, `{rules}` and `{aws_request_id}` are filled.
    pub message: String,
}

impl Hint {
    fn status_matches(&self, status: u16) -> bool {
        match self.status.as_bytes() {
            [d, b'x', b'x'] => status / 100 == u16::from(d.wrapping_sub(b'0')),
            _ => self.status.parse::<u16>() == Ok(status),
        }
    }
}

/// What the upstream answered, for [`RuleSet::hints`].
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    /// AWS's `detail`, when the body had one.
    pub detail: Option<&'a str>,
    /// AWS's `x-amzn-RequestId`, for CloudTrail.
    pub aws_request_id: Option<&'a str>,
}

/// The rules in effect: loaded, validated and with overrides applied.
#[derive(Debug, Clone)]
pub struct RuleSet {
    hints: Vec<Hint>,
    rules: Vec<Rule>,
    /// Per operation, the indexes of the rules that apply to it, in file order.
    by_operation: BTreeMap<Operation, Vec<usize>>,
}

/// The outcome of checking one request.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Every finding, in rule order; each carries the action it had.
    pub findings: Vec<Finding>,
    /// The request body after every rewrite fix, when any fix changed it.
    pub rewritten: Option<serde_json::Value>,
    /// Sequential follow-up requests when a fix split the request (member batches).
    pub batches: Vec<crate::batches::Batch>,
    /// serde_json read the received body as one JSON value (a body rule parsed it), so a
    /// recording may embed those bytes without reading them again.
    pub body_is_json: bool,
}

impl RuleSet {
    /// The embedded default rules.
    pub fn embedded() -> Result<Self, RulesError> {
        Self::parse(DEFAULT_RULES, "rules/aws-identity-center.toml (embedded)")
    }

    /// Parses a rules file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, RulesError> {
        let (rules, hints) = load::parse(text, origin)?;
        let mut set = Self::from_rules(rules);
        set.hints = hints;
        Ok(set)
    }

    /// The advice that applies to an exchange the upstream answered, given what the
    /// rules found (`findings`, with the action each had or would have had) in `mode`.
    ///
    /// A `predicted` hint says that rules foresaw a refusal, so it applies only in
    /// observe mode (in enforce mode the request reached AWS fixed or unrefused, and the
    /// findings do not explain AWS's answer), and names each rule once.
    pub fn hints(&self, mode: Mode, findings: &[Finding], answer: Answer<'_>) -> Vec<String> {
        let any_refused = findings.iter().any(|f| matches!(f.action, Action::Reject));
        let refused = answer.status >= 400 && answer.status < 500;
        let accepted = (200..300).contains(&answer.status);
        let observed = mode == Mode::Observe;
        let applies = |h: &&Hint| {
            h.status_matches(answer.status)
                && match &h.detail_contains {
                    Some(text) => answer.detail.is_some_and(|d| {
                        d.to_ascii_lowercase().contains(&text.to_ascii_lowercase())
                    }),
                    None => true,
                }
                && match h.when {
                    HintWhen::Any => true,
                    HintWhen::Predicted => observed && refused && !findings.is_empty(),
                    HintWhen::Unpredicted => refused && findings.is_empty(),
                    HintWhen::Stale => accepted && any_refused,
                }
        };
        // Most answers (a clean 2xx) match no hint: build the variables only for one.
        let mut applying = self.hints.iter().filter(applies).peekable();
        if applying.peek().is_none() {
            return Vec::new();
        }
        let mut rules: Vec<&str> = Vec::new();
        for f in findings {
            if (!any_refused || f.action == Action::Reject) && !rules.contains(&f.rule.as_str()) {
                rules.push(&f.rule);
            }
        }
        let vars = [
            ("status", answer.status.to_string()),
            ("detail", answer.detail.unwrap_or("(no detail)").to_owned()),
            ("rules", rules.join(", ")),
            (
                "aws_request_id",
                answer.aws_request_id.unwrap_or("(none)").to_owned(),
            ),
        ];
        applying
            .map(|h| render_template(&h.message, &vars))
            .collect()
    }

    /// Reads and parses a rules file.
    pub fn load(path: &std::path::Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            origin: path.display().to_string(),
            line: None,
            message: format!("cannot read the file: {e}"),
            fix: "check the path given to --rules".into(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn from_rules(rules: Vec<Rule>) -> Self {
        let mut by_operation: BTreeMap<Operation, Vec<usize>> = BTreeMap::new();
        for (i, rule) in rules.iter().enumerate() {
            for op in &rule.operations {
                by_operation.entry(*op).or_default().push(i);
            }
        }
        RuleSet {
            rules,
            by_operation,
            hints: Vec::new(),
        }
    }

    /// All rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Changes one rule's action (`[rules.actions]`, `--rule ID=ACTION`). The error names
    /// the unknown id or the action the rule's check cannot take.
    pub fn set_action(&mut self, id: &str, action: Action) -> Result<(), String> {
        let rule =
            self.rules.iter_mut().find(|r| r.id == id).ok_or_else(|| {
                format!("no rule has the id `{id}`; `scimguard rules` lists them")
            })?;
        if !rule.check.supports(action) {
            return Err(format!(
                "rule `{id}` cannot {action}: its check `{}` supports {}",
                rule.check.kind(),
                rule.check.supported_actions()
            ));
        }
        rule.action = action;
        Ok(())
    }

    /// AWS's own view, for the emulator: what scimguard would fix, AWS refuses, so every
    /// rewrite becomes a reject, except the rules marked `aws_accepts` (AWS takes the
    /// request as sent; the guide's own examples do it), which are off. Warnings stay
    /// warnings: AWS accepts those requests.
    pub fn strict(mut self) -> Self {
        for rule in &mut self.rules {
            if rule.aws_accepts {
                rule.action = Action::Off;
            } else if rule.action == Action::Rewrite {
                rule.action = Action::Reject;
            }
        }
        self
    }

    /// Runs every rule for the request's operation. Rewrites change a working copy of
    /// the body, so later rules see the fixed body; in observe mode the caller simply
    /// forwards the original bytes. The body is parsed once, and only when a rule of the
    /// operation reads it (a GetUser or a ListUsers has no body rule).
    pub fn evaluate(&self, request: &RequestView<'_>) -> Evaluation {
        let indexes = self
            .by_operation
            .get(&request.operation)
            .map_or(&[][..], Vec::as_slice);
        let active = || {
            indexes
                .iter()
                .map(|&i| &self.rules[i])
                .filter(|rule| rule.action != Action::Off)
        };
        let mut state = if active().any(|rule| rule.check.reads_body()) {
            context::State::of(request)
        } else {
            context::State::new(context::Body::Unread)
        };
        for rule in active() {
            check::run(rule, request, &mut state);
        }
        state.finish()
    }
}

/// The rules as a table for `scimguard rules`: id, action, operations, then the source
/// on its own indented line (sources are long).
pub fn table(rules: &RuleSet) -> String {
    let width = rules.rules().iter().map(|r| r.id.len()).max().unwrap_or(0);
    let mut out = String::new();
    for rule in rules.rules() {
        let ops = rule
            .operations
            .iter()
            .map(|o| o.name())
            .collect::<Vec<_>>()
            .join(",");
        out.push_str(&format!(
            "{:<width$}  {:<7}  {ops}\n    source: {}\n",
            rule.id,
            rule.action.as_str(),
            rule.source
        ));
    }
    out
}
