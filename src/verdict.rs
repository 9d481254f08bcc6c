//! Findings × mode → [`Verdict`]: forward untouched, forward rewritten (maybe in
//! batches), or reject with an AWS-shaped SCIM error that lists every problem.

use crate::rules::{Action, Evaluation, Finding, Mode, RequestView, RuleSet};
use crate::scim::error::ScimError;
use crate::scim::{Classified, Query};

/// Everything the pure core decides about one request.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub classified: Classified,
    pub evaluation: Evaluation,
    pub verdict: Verdict,
}

/// Classify, check and decide, with no I/O: the proxy's pipeline, the benchmarks and
/// offline checking all judge a request through this one function. `target` is the
/// path with its query as sent on the wire.
pub fn judge(rules: &RuleSet, mode: Mode, method: &str, target: &str, body: &[u8]) -> Judgement {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let classified = crate::scim::classify(method, path);
    let query = Query::parse(query);
    let mut evaluation = rules.evaluate(&RequestView {
        operation: classified.operation,
        path,
        resource_id: classified.id.as_deref(),
        query: &query,
        body,
    });
    let verdict = decide(&mut evaluation, mode);
    Judgement {
        classified,
        evaluation,
        verdict,
    }
}

/// What the pipeline does with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Forward the original bytes.
    Forward,
    /// Forward the fixed body, then each batch in order.
    Rewrite {
        body: Vec<u8>,
        batches: Vec<crate::batches::Batch>,
    },
    /// Answer now; nothing reaches the upstream.
    Reject(ScimError),
}

impl Verdict {
    /// The `x-scimguard-verdict` header value.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Forward => "forwarded",
            Verdict::Rewrite { .. } => "rewritten",
            Verdict::Reject(_) => "rejected",
        }
    }
}

/// What became of a request, as the `x-scimguard-verdict` header, the capture, the log
/// line and the metrics name it. The judgement's [`Verdict`] gives the first three; the
/// later phases can only end in a throttle refusal or an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The request ended before a verdict, or the upstream failed (502/504).
    Error,
    Forwarded,
    Rewritten,
    Rejected,
    /// scimguard's local throttle refused it (429): nothing reached the upstream.
    Throttled,
    /// The blast-radius guard held it (503) until an admin releases the tenant
    /// ([`crate::guard`]): nothing reached the upstream.
    Held,
}

impl Outcome {
    /// The word in the header, the capture, the log line and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Error => "error",
            Outcome::Forwarded => "forwarded",
            Outcome::Rewritten => "rewritten",
            Outcome::Rejected => "rejected",
            Outcome::Throttled => "throttled",
            Outcome::Held => "held",
        }
    }
}

impl From<&Verdict> for Outcome {
    fn from(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Forward => Outcome::Forwarded,
            Verdict::Rewrite { .. } => Outcome::Rewritten,
            Verdict::Reject(_) => Outcome::Rejected,
        }
    }
}

/// Decides. In observe mode every request is forwarded as received: the findings still
/// say what enforce mode would have done. A rewrite takes the evaluation's batches (a
/// 10,000-member change holds 10,000 member entries: they are moved, not copied).
pub fn decide(evaluation: &mut Evaluation, mode: Mode) -> Verdict {
    if mode == Mode::Observe {
        return Verdict::Forward;
    }
    let rejecting: Vec<&Finding> = evaluation
        .findings
        .iter()
        .filter(|f| f.action == Action::Reject)
        .collect();
    if !rejecting.is_empty() {
        return Verdict::Reject(rejection(&rejecting));
    }
    match &evaluation.rewritten {
        Some(body) => Verdict::Rewrite {
            // A serde_json::Value always serializes.
            body: serde_json::to_vec(body).unwrap_or_default(),
            batches: std::mem::take(&mut evaluation.batches),
        },
        None => Verdict::Forward,
    }
}

/// The 400 that lists every rejecting finding, written for the admin who reads it in
/// the IdP's provisioning log: rule, place, what is wrong and why, and the source.
pub fn rejection(findings: &[&Finding]) -> ScimError {
    let mut detail =
        String::from("scimguard rejected this request before it reached AWS IAM Identity Center");
    if findings.len() == 1 {
        detail.push_str(": ");
    } else {
        detail.push_str(&format!(" ({} problems): ", findings.len()));
    }
    if let [f] = findings {
        detail.push_str(&format!(
            "[{}] at {}: {} (source: {})",
            f.rule, f.location, f.message, f.source
        ));
    } else {
        // Each rule's source once, after the problems: a rule that fires on several
        // places would otherwise repeat it, and the problems come first in a capped
        // detail.
        let mut sources: Vec<(&str, &str)> = Vec::new();
        for (i, f) in findings.iter().enumerate() {
            detail.push_str(&format!(
                "({}) [{}] at {}: {} ",
                i + 1,
                f.rule,
                f.location,
                f.message
            ));
            if !sources.iter().any(|(rule, _)| *rule == f.rule) {
                sources.push((&f.rule, &f.source));
            }
        }
        let sources: Vec<String> = sources
            .iter()
            .map(|(rule, source)| format!("[{rule}] {source}"))
            .collect();
        detail.push_str(&format!("Sources: {}", sources.join("; ")));
    }
    let scim_type = findings
        .first()
        .map(|f| f.scim_type)
        .unwrap_or("invalidValue");
    ScimError::new(400, capped(detail)).with_scim_type(scim_type)
}

/// The longest `detail` scimguard sends, in bytes: an IdP's provisioning log shows it
/// whole, and a finding that echoes a 1,000-term filter would otherwise make it 24 KB.
/// The log line and `--explain-log` keep every finding in full.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// `detail` cut to [`MAX_DETAIL_BYTES`] at a character boundary, ending with how much
/// was left out.
fn capped(detail: String) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail;
    }
    // Room for the note: " … (99999999 more characters in scimguard's log)" fits in 64.
    let mut end = MAX_DETAIL_BYTES - 64;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    let left = detail[end..].chars().count();
    format!(
        "{} … ({left} more characters in scimguard's log)",
        detail[..end].trim_end()
    )
}

/// The `x-scimguard-rules` header value: every rule that fired, once each, in order.
pub fn fired_rules(findings: &[Finding]) -> Option<String> {
    let mut ids: Vec<&str> = Vec::new();
    for f in findings {
        if !ids.contains(&f.rule.as_str()) {
            ids.push(&f.rule);
        }
    }
    (!ids.is_empty()).then(|| ids.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recording embeds a request body unchecked only on this word: it must be true
    /// exactly when serde_json read the body as JSON, clean, fixed or rejected.
    #[test]
    fn a_long_detail_is_capped_at_1_kib_saying_how_much_was_left_out() {
        let short = "x".repeat(MAX_DETAIL_BYTES);
        assert_eq!(capped(short.clone()), short);
        let long = "é".repeat(5_000);
        let cut = capped(long);
        assert!(cut.len() <= MAX_DETAIL_BYTES, "{}", cut.len());
        assert!(
            cut.ends_with(" more characters in scimguard's log)"),
            "{cut}"
        );
        let (kept, note) = cut.split_once(" … (").unwrap();
        let left: usize = note.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(kept.chars().count() + left, 5_000);
    }

    #[test]
    fn the_evaluation_says_whether_the_body_is_json() {
        let rules = RuleSet::embedded().unwrap();
        let user = br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"b","displayName":"B","name":{"givenName":"B","familyName":"J"}}"#;
        let fixed = br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"b","displayName":"B","name":{"givenName":"B","familyName":"J"},"password":"x"}"#;
        let colliding = br#"{"userName":"b","USERNAME":"c"}"#;
        for (body, is_json) in [
            (&user[..], true),
            (&fixed[..], true),
            (&colliding[..], true),
            (b"{\"userName\":", false),
            (b"", false),
            (b"   ", false),
            (b"\xff", false),
        ] {
            let judgement = judge(&rules, Mode::Enforce, "POST", "/t/scim/v2/Users", body);
            assert_eq!(
                judgement.evaluation.body_is_json,
                is_json,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let get = judge(&rules, Mode::Enforce, "GET", "/t/scim/v2/Users/1", b"");
        assert!(!get.evaluation.body_is_json);
    }

    #[test]
    fn the_batches_of_a_split_are_held_once() {
        let rules = RuleSet::embedded().unwrap();
        let members: Vec<_> = (0..250)
            .map(|i| serde_json::json!({ "value": format!("u{i}") }))
            .collect();
        let body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": members}],
        })
        .to_string();
        let target = "/t/scim/v2/Groups/9067729b3d-f987ac4d-a175-44f0-a528-6d23c5d2ec4d";
        let judgement = judge(&rules, Mode::Enforce, "PATCH", target, body.as_bytes());
        let Verdict::Rewrite { batches, .. } = &judgement.verdict else {
            panic!("{:?}", judgement.verdict);
        };
        assert_eq!(batches.len(), 2);
        // Moved into the verdict, not copied: the evaluation keeps none.
        assert!(judgement.evaluation.batches.is_empty());
    }
}
