//! What each fuzz target asserts about one input, shared by the targets (nightly,
//! `cargo fuzz`) and by `tests/it/fuzz_seeds.rs` (stable), so `cargo test` runs the seed
//! and crash inputs through exactly the code the fuzzers run.
//!
//! Every function takes untrusted bytes and panics only when a property fails.

// Each target includes this whole file but calls one function.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use scimguard::rules::{Mode, RuleSet};
use scimguard::verdict::{judge, Verdict};

/// The operations whose bodies or queries the rules read; the first input byte picks
/// one (and, with its top bit, the mode), the rest is the body (or the query).
const OPERATIONS: &[(&str, &str)] = &[
    ("POST", "/scim/v2/Users"),
    ("PUT", "/scim/v2/Users/9067-u1"),
    ("PATCH", "/scim/v2/Users/9067-u1"),
    ("POST", "/scim/v2/Groups"),
    ("PATCH", "/scim/v2/Groups/9067-g1"),
    ("PUT", "/scim/v2/Groups/9067-g1"),
    ("GET", "/scim/v2/Users?"),
    ("GET", "/scim/v2/Groups?"),
    ("POST", "/scim/v2/Bulk"),
    ("POST", "/scim/v2/Users/.search"),
    ("GET", "/scim/v2/Users/9067-u1?"),
    ("DELETE", "/scim/v2/Groups/9067-g1"),
];

/// Body judging: classify, evaluate the embedded rules, decide; a rewritten body and
/// every batch must be JSON again (the upstream gets them as `application/scim+json`).
pub fn body_judging(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    thread_local! {
        static RULES: RuleSet = RuleSet::embedded().expect("embedded rules load");
    }
    let (method, path) = OPERATIONS[usize::from(first & 0x7f) % OPERATIONS.len()];
    let mode = if first & 0x80 == 0 {
        Mode::Enforce
    } else {
        Mode::Observe
    };
    // A target ending in `?` takes the rest as its query string (ListUsers' filter…).
    let (target, body) = if path.ends_with('?') {
        match std::str::from_utf8(body) {
            Ok(query) if !query.contains('#') => (format!("{path}{query}"), &b""[..]),
            _ => return,
        }
    } else {
        (path.to_owned(), body)
    };
    let judgement = RULES.with(|rules| judge(rules, mode, method, &target, body));
    if let Verdict::Rewrite { body, batches } = &judgement.verdict {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(body) {
            panic!(
                "{method} {target}: rewritten body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            );
        }
        for batch in batches {
            serde_json::to_vec(&batch.body).expect("a batch serializes");
        }
    }
    let _ = judgement.verdict.label();
}

/// Capture reading: both readers; what the strict one reads, the lenient one reads the
/// same; written back as lines, the records read again unchanged.
pub fn capture(data: &[u8]) {
    use scimguard::record::read::parse_lines;
    let lenient = parse_lines(data, "fuzz.jsonl", false);
    let Ok(strict) = parse_lines(data, "fuzz.jsonl", true) else {
        return;
    };
    assert!(strict.warnings.is_empty());
    let lenient = lenient.expect("what strict reads, lenient reads");
    assert_eq!(lenient.records, strict.records);
    let mut lines = Vec::new();
    for record in &strict.records {
        serde_json::to_writer(&mut lines, record).expect("a record serializes");
        lines.push(b'\n');
    }
    let again = parse_lines(&lines, "again.jsonl", true)
        .unwrap_or_else(|e| panic!("records written back do not read: {e}"));
    assert_eq!(again.records, strict.records);
}

/// Raw HTTP request files (and JSON inputs: `check` sniffs the first byte): never a
/// panic; a request read has a method and a path.
pub fn raw_request(data: &[u8]) {
    for strict in [false, true] {
        if let Ok(inputs) = scimguard::offline::parse(data, "fuzz.http", strict) {
            assert!(!inputs.requests.is_empty());
            for (label, request) in &inputs.requests {
                assert!(!label.is_empty());
                let _ = request.target();
            }
        }
    }
}

/// The rules file: parses or says why; a parsed set renders its table.
pub fn rules_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match RuleSet::parse(text, "fuzz.toml") {
        Ok(set) => {
            let _ = scimguard::rules::table(&set);
            let _ = set.strict();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The `--config` file: parse, then validate as `run --config FILE` would.
pub fn config_file(data: &[u8]) {
    use scimguard::config::{Config, FileConfig};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match FileConfig::from_toml_str(text, "fuzz.toml") {
        Ok(mut file) => {
            // A rules file would be read from disk: the rules target covers its parser.
            file.rules.file = None;
            if let Err(e) = Config::from_file_config(file) {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// PATCH bodies: parse, then each operation's kind and path.
pub fn patch_request(data: &[u8]) {
    let Ok(request) = scimguard::scim::PatchRequest::from_json(data) else {
        return;
    };
    let _ = request.has_patch_op_schema();
    for operation in &request.operations {
        if let Some(kind) = operation.kind() {
            let _ = kind.as_str();
        }
        let _ = operation.op_is_canonical();
        if let Some(Err(e)) = operation.parsed_path() {
            let _ = e.to_string();
        }
    }
}

/// The emulator's state file: what loads, written back, loads to the same bytes.
pub fn emulator_state(data: &[u8]) {
    use scimguard::emulator::reload_state;
    let path = Path::new("fuzz-state.json");
    match reload_state(data, path) {
        Ok(bytes) => {
            let again = reload_state(&bytes, path)
                .unwrap_or_else(|e| panic!("a state written back does not load: {e}"));
            assert_eq!(again, bytes, "the state file layout is not stable");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The emulator's CreateUser/PutUser parsing: a refusal is a 4xx; a user stored is an
/// object with a userName.
pub fn emulator_user(data: &[u8]) {
    match scimguard::emulator::user_from_body(data) {
        Ok(user) => assert!(
            user.get("userName").is_some_and(|v| v.is_string()),
            "{user}"
        ),
        Err((status, _)) => assert!((400..500).contains(&status), "{status}"),
    }
}

/// The upstream's `Retry-After` (delta-seconds or an HTTP date).
pub fn retry_after(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
    let delay = scimguard::throttle::parse_retry_after(value, now);
    // Plain digits always give an answer (too many digits is "a very long time").
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        assert!(delay.is_some(), "{value:?}");
    }
}
