//! THE one redaction, used by every output: the capture, HAR, `--explain-log`, the log,
//! error `detail`s and the web view.
//!
//! | what | how |
//! |---|---|
//! | secret names | a header, query parameter or body attribute whose name contains (any case) one of [`SECRET_NAME_PARTS`] |
//! | headers | the value becomes `[REDACTED]`; Authorization and Proxy-Authorization keep their scheme (`Bearer [REDACTED]`) |
//! | query | a secret-named parameter's value; a filter comparing a secret-named attribute (`password eq "…"`) |
//! | JSON bodies | every leaf under a secret-named member; a PATCH operation's `value` when its `path` is secret-named; filters in `.search` bodies and PATCH paths |
//! | other bodies | a tolerant scan finds `"name": value` with a secret name and redacts the value ([`scan_text`]) |
//! | free text | [`Secrets`]: the values redacted above, raw and JSON-escaped, replaced wherever a rule, AWS or an error echoes them |
//! | PII (`--redact-pii`) | [`PII_ATTRIBUTES`] and the `value`/`display` of [`PII_MULTI_VALUED`] become `sha256:<16 hex>` (HMAC keyed by a salt never written anywhere) |

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use http::HeaderMap;
use ring::hmac;
use serde_json::{Map, Value};

use crate::scim::percent::percent_decode;

/// What a secret becomes.
pub const REDACTED: &str = "[REDACTED]";

/// A name containing any of these, in any case, carries a secret. `pw` covers `pwd`
/// and the bare `pw=` some IdPs send.
///
/// Safe for SCIM: no attribute of RFC 7643's User, Group and EnterpriseUser schemas
/// (§4.1, §4.2, §4.3), nor of AWS's supported list (guide: "Supported attributes"),
/// contains any part but `password` — `key`, `sig`, `auth`, `pass` and `pw` match none
/// of userName, displayName, emails, addresses, x509Certificates, employeeNumber,
/// costCenter, division, department, manager, members, meta, schemas, Operations…
/// (the test `no_scim_attribute_is_secret_but_password` holds this); of
/// ServiceProviderConfig's, `changePassword` holds only a boolean, which redaction
/// leaves, and `authenticationSchemes` is let through by name (`PLAIN_SCIM_NAMES`). Nor do the
/// headers every exchange carries (content-type, accept, user-agent, host,
/// x-amzn-requestid, keep-alive…), nor SCIM's query parameters (filter, attributes,
/// excludedAttributes, sortBy, sortOrder, startIndex, count, cursor).
pub const SECRET_NAME_PARTS: [&str; 10] = [
    "pass",
    "pw",
    "secret",
    "token",
    "key",
    "sig",
    "session",
    "cookie",
    "auth",
    "credential",
];

/// Recorded values shorter than 3 characters are not searched for in free text
/// (messages, `detail`): "HR" would otherwise mangle every "HR" in every message, and
/// two characters identify nobody. Structural redaction covers every length.
const MIN_SUBSTITUTION_LEN: usize = 3;

/// At most this many values are remembered for the free-text pass: a request naming
/// more secrets than that is hostile, and the structural redaction still covers them.
const MAX_REMEMBERED: usize = 4096;

/// Attributes whose every string (and number) is PII, matched case-insensitively by
/// their last name (after a schema URN), at any depth. `type` and `primary` inside them
/// stay (they are vocabulary, not data).
pub const PII_ATTRIBUTES: [&str; 21] = [
    "userName",
    "displayName",
    "nickName",
    "name",
    "formatted",
    "familyName",
    "givenName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
    "title",
    "externalId",
    "display",
    "profileUrl",
    "employeeNumber",
    "addresses",
    "streetAddress",
    "locality",
    "region",
    "postalCode",
    "country",
];

/// Multi-valued attributes whose `value` and `display` are PII; their `type` and
/// `primary` stay.
pub const PII_MULTI_VALUED: [&str; 5] = [
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "x509Certificates",
];

static SECRET_PARTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(SECRET_NAME_PARTS)
        .expect("ten short literal patterns build an automaton")
});

/// Whether a header, query parameter or attribute name carries a secret. An attribute
/// is judged by its name after a schema URN (`urn:…:User:password` → `password`), so an
/// extension's URN never hides or flags its attributes.
pub fn is_secret_name(name: &str) -> bool {
    SECRET_PARTS.is_match(name) && !is_one_of(name, &PLAIN_SCIM_NAMES)
}

/// SCIM names that contain a secret name part but hold none: ServiceProviderConfig's
/// `authenticationSchemes` (RFC 7643 §5) describes how to authenticate, with no
/// credential in it.
const PLAIN_SCIM_NAMES: [&str; 1] = ["authenticationSchemes"];

/// The secret name parts, lowercase, for searching a lowercased copy of a body:
/// aho-corasick's packed (SIMD) searcher takes a 1.2 KB body in about a tenth of the
/// time its case-insensitive automaton takes, and every recorded or judged body is
/// searched. `None` where the packed searcher is not available.
static SECRET_PARTS_PACKED: LazyLock<Option<aho_corasick::packed::Searcher>> =
    LazyLock::new(|| aho_corasick::packed::Searcher::new(SECRET_NAME_PARTS));

/// The longest secret name part ("credential"): chunks overlap by one byte less.
const LONGEST_PART: usize = 10;

/// Whether `bytes` could name a secret at all: a secret name part anywhere (any case),
/// or a `\u` escape, which could spell one without its letters. When not, there is
/// nothing to redact in them and parsing them can be skipped.
pub fn may_name_a_secret(bytes: &[u8]) -> bool {
    if memchr::memmem::find(bytes, b"\\u").is_some() {
        return true;
    }
    let Some(packed) = SECRET_PARTS_PACKED.as_ref() else {
        return SECRET_PARTS.is_match(bytes);
    };
    // Lowercased a chunk at a time into a buffer on the stack, so a large body costs no
    // copy of its size; chunks overlap so a part across a boundary is found.
    const CHUNK: usize = 4096;
    let mut lower = [0u8; CHUNK];
    let mut start = 0;
    while start < bytes.len() {
        let from = start.saturating_sub(LONGEST_PART - 1);
        let end = (from + CHUNK).min(bytes.len());
        let piece = &mut lower[..end - from];
        piece.copy_from_slice(&bytes[from..end]);
        piece.make_ascii_lowercase();
        if packed.find(&*piece).is_some() {
            return true;
        }
        start = end;
    }
    false
}

/// A secret header's value as shown. Authorization keeps its scheme (`Bearer
/// [REDACTED]`): which scheme the IdP used matters when debugging, the credential never.
pub fn header_value<'v>(name: &str, value: &'v str) -> Cow<'v, str> {
    if !is_secret_name(name) {
        return Cow::Borrowed(value);
    }
    match credential_of(name, value) {
        Some((scheme, _)) => Cow::Owned(format!("{scheme} {REDACTED}")),
        None => Cow::Borrowed(REDACTED),
    }
}

/// An Authorization value's scheme and credential, when it has a scheme: RFC 9110
/// §11.1, the scheme is a token; 20 characters covers every registered one and keeps a
/// credential without a scheme from being taken for one.
fn credential_of<'v>(name: &str, value: &'v str) -> Option<(&'v str, &'v str)> {
    if !(name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization"))
    {
        return None;
    }
    let (scheme, credential) = value.trim_start().split_once(' ')?;
    let token = !scheme.is_empty()
        && scheme.len() <= 20
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    token.then_some((scheme, credential.trim()))
}

/// A header value as text: invalid UTF-8 (obs-text) replaced.
pub fn header_text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Headers as shown: names lowercase, values as text, secret values redacted.
pub fn headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let text = header_text(value.as_bytes());
            let shown = header_value(name.as_str(), &text).into_owned();
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

/// Redacts `[name, value]` pairs in place (whatever a caller built, no secret header
/// leaves).
pub fn header_pairs(pairs: &mut [(String, String)]) {
    for (name, value) in pairs.iter_mut() {
        let shown = header_value(name, value);
        if shown != value.as_str() {
            *value = shown.into_owned();
        }
    }
}

/// A raw query string with secret-named parameters and secret filter values redacted.
pub fn query(query: &str) -> String {
    Redactor::new(None).query(query)
}

/// A request target (or URI) as shown: its query's secrets redacted ([`query`]).
pub fn target(target: &str) -> String {
    match target.split_once('?') {
        Some((path, raw)) => format!("{path}?{}", query(raw)),
        None => target.to_owned(),
    }
}

/// `sha256:` and the first 16 hex digits (64 bits) of HMAC-SHA-256(salt, value):
/// collisions within one capture are negligible (2^32 values for an even chance).
pub fn pii_hash(value: &str, salt: &[u8]) -> String {
    hash_with(&hmac::Key::new(hmac::HMAC_SHA256, salt), value)
}

fn hash_with(key: &hmac::Key, value: &str) -> String {
    let tag = hmac::sign(key, value.as_bytes());
    let hex: String = tag.as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Replaces PII in a JSON value (a SCIM resource, a PATCH request, a list response, a
/// search request) with per-value hashes keyed by `salt`, and every secret with
/// [`REDACTED`]. See [`PII_ATTRIBUTES`] and [`PII_MULTI_VALUED`].
pub fn redact_pii(value: &mut Value, salt: &[u8]) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    Redactor::new(Some(&key)).walk(value);
}

/// A SCIM filter with the values compared to PII attributes hashed:
/// `userName eq "bjensen"` → `userName eq "sha256:…"`; `emails[type eq "work" and
/// value co "@example.com"]` hashes the value and keeps the type.
pub fn redact_filter(filter: &str, salt: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    Redactor::new(Some(&key)).filter(filter)
}

/// A body that is not JSON with the value after every `"secret-name"` followed by `:`
/// redacted: a quoted value up to its closing quote (or the end), a bare one up to the
/// next `,`, `}`, `]` or line break. A truncated or hand-written body still loses its
/// `"password": "…"`. `None` when nothing was found.
pub fn scan_text(text: &str) -> Option<String> {
    scan_text_collecting(text, &mut Vec::new())
}

fn scan_text_collecting(text: &str, found: &mut Vec<String>) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let end = literal_end(bytes, i);
        // An unclosed literal runs to the end of the text, which may end inside a
        // multi-byte character's neighbour: only a closing quote is cut off.
        let name_end = if end > i + 1 && bytes[end - 1] == b'"' {
            end - 1
        } else {
            end
        };
        let name = &text[i + 1..name_end];
        let mut j = end;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b':' || !is_secret_name(name) {
            i = end;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let (start, stop, quoted) = if bytes.get(j) == Some(&b'"') {
            let stop = literal_end(bytes, j);
            let inner_end = if stop > j + 1 && bytes[stop - 1] == b'"' {
                stop - 1
            } else {
                stop
            };
            (j + 1, inner_end, true)
        } else {
            let stop = bytes[j..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b'\n' | b'\r'))
                .map_or(bytes.len(), |p| j + p);
            (j, stop, false)
        };
        let value = text[start..stop].trim();
        if !value.is_empty() && (quoted || value != "null") {
            found.push(value.to_owned());
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = stop;
        }
        i = stop.max(end);
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

// ---------------------------------------------------------------------------------
// Secrets a request carries, for the free-text pass
// ---------------------------------------------------------------------------------

/// The secret values one request carries (and those redaction replaced, with their
/// replacements), so that every free text built from the request — a finding's
/// message and fix, a hint, an error `detail`, AWS's `detail` — can be scrubbed of them
/// before anything is logged, recorded, answered or shown.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// (original, replacement), originals of at least [`MIN_SUBSTITUTION_LEN`] chars,
    /// each also in its JSON-escaped form when that differs.
    replaced: Vec<(String, String)>,
}

impl Secrets {
    /// The secrets of a request: secret-named query parameters, filters comparing a
    /// secret-named attribute, secret headers' credentials, and in the body every
    /// secret-named member, every PATCH `value` whose `path` is secret-named (or the
    /// secret members of its `value` object), and filters of a `.search` body.
    pub fn of_request(target: &str, headers: &HeaderMap, body: &[u8]) -> Secrets {
        let mut redactor = Redactor::new(None);
        if let Some((_, query)) = target.split_once('?') {
            redactor.query(query);
        }
        for (name, value) in headers {
            if is_secret_name(name.as_str()) {
                let text = header_text(value.as_bytes());
                let credential = credential_of(name.as_str(), &text).map_or(&*text, |(_, c)| c);
                redactor.secret(credential);
            }
        }
        redactor.body(body);
        redactor.into_secrets()
    }

    pub fn is_empty(&self) -> bool {
        self.replaced.is_empty()
    }

    /// `text` with every known secret replaced.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        // A request carries a few secrets (its bearer token, maybe a password): a search
        // for each is cheaper than building an automaton for every request a rule
        // fires on. Longest first, so a secret inside another is not replaced first.
        if !self.replaced.iter().any(|(o, _)| text.contains(o.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_owned();
        for (original, replacement) in &self.replaced {
            if out.contains(original.as_str()) {
                out = out.replace(original.as_str(), replacement);
            }
        }
        Cow::Owned(out)
    }

    /// Scrubs a string in place; true when it changed.
    pub fn scrub_string(&self, text: &mut String) -> bool {
        match self.scrub(text) {
            Cow::Owned(scrubbed) => {
                *text = scrubbed;
                true
            }
            Cow::Borrowed(_) => false,
        }
    }

    /// Scrubs every string of a JSON value; counts the strings changed.
    pub fn scrub_json(&self, value: &mut Value) -> usize {
        if self.replaced.is_empty() {
            return 0;
        }
        match value {
            Value::String(s) => usize::from(self.scrub_string(s)),
            Value::Array(items) => items.iter_mut().map(|v| self.scrub_json(v)).sum(),
            Value::Object(map) => map.values_mut().map(|v| self.scrub_json(v)).sum(),
            _ => 0,
        }
    }

    /// Scrubs findings' messages and fixes.
    pub fn scrub_findings(&self, findings: &mut [crate::rules::Finding]) {
        if self.replaced.is_empty() {
            return;
        }
        for finding in findings {
            self.scrub_string(&mut finding.message);
            if let Some(fix) = &mut finding.fix {
                self.scrub_string(&mut fix.before);
                self.scrub_string(&mut fix.after);
            }
        }
    }

    /// Scrubs every free text an exchange's outputs show: findings, hints, AWS's
    /// `detail`, the error.
    pub fn scrub_exchange(&self, exchange: &mut crate::exchange::Exchange) {
        if self.replaced.is_empty() {
            return;
        }
        self.scrub_findings(&mut exchange.findings);
        for hint in &mut exchange.hints {
            self.scrub_string(hint);
        }
        for text in [&mut exchange.aws_detail, &mut exchange.error]
            .into_iter()
            .flatten()
        {
            self.scrub_string(text);
        }
    }
}

/// Scrubs an exchange's free texts of the secrets its request carried
/// ([`Secrets::scrub_exchange`] with the exchange's own [`Secrets`]).
pub fn scrub_exchange(exchange: &mut crate::exchange::Exchange) {
    let secrets = std::mem::take(&mut exchange.secrets);
    secrets.scrub_exchange(exchange);
    exchange.secrets = secrets;
}

// ---------------------------------------------------------------------------------
// The structural redaction
// ---------------------------------------------------------------------------------

/// What an attribute name (or a PATCH path) says its value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Secret,
    /// Every string in it is PII.
    Whole,
    /// A multi-valued attribute: its elements' `value` and `display` are PII.
    Multi,
    /// A filter expression (`.search` bodies).
    Filter,
    Other,
}

fn is_one_of(name: &str, list: &[&str]) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The attribute name of a key: the part after a schema URN's last `:`.
fn attribute_name(key: &str) -> &str {
    key.rsplit(':').next().unwrap_or(key)
}

fn classify_key(key: &str) -> Class {
    let name = attribute_name(key);
    if is_secret_name(name) {
        Class::Secret
    } else if is_one_of(name, &PII_ATTRIBUTES) {
        Class::Whole
    } else if is_one_of(name, &PII_MULTI_VALUED) {
        Class::Multi
    } else if name.eq_ignore_ascii_case("filter") {
        Class::Filter
    } else {
        Class::Other
    }
}

/// What `root[.sub]` (a PATCH path or a filter's attribute) names.
fn classify_path(root: &str, sub: Option<&str>) -> Class {
    if is_secret_name(root) || sub.is_some_and(is_secret_name) {
        return Class::Secret;
    }
    if sub.is_some_and(|s| s.eq_ignore_ascii_case("type") || s.eq_ignore_ascii_case("primary")) {
        return Class::Other;
    }
    if is_one_of(root, &PII_ATTRIBUTES) || sub.is_some_and(|s| is_one_of(s, &PII_ATTRIBUTES)) {
        return Class::Whole;
    }
    if is_one_of(root, &PII_MULTI_VALUED) {
        return match sub {
            None => Class::Multi,
            Some(s) if s.eq_ignore_ascii_case("value") || s.eq_ignore_ascii_case("display") => {
                Class::Whole
            }
            Some(_) => Class::Other,
        };
    }
    Class::Other
}

/// A PATCH path's root attribute and sub-attribute: `emails[type eq "work"].value` →
/// (`emails`, `value`); `urn:…:2.0:User:manager.displayName` → (`manager`,
/// `displayName`).
fn split_patch_path(path: &str) -> (&str, Option<&str>) {
    let bracket = path.find('[');
    let head = &path[..bracket.unwrap_or(path.len())];
    let head = attribute_name(head.trim());
    let (root, mut sub) = match head.split_once('.') {
        Some((root, sub)) => (root, Some(sub)),
        None => (head, None),
    };
    if bracket.is_some() {
        if let Some(close) = path.rfind(']') {
            let after = path[close + 1..].trim_start_matches('.');
            sub = (!after.is_empty()).then_some(after);
        }
    }
    (root, sub)
}

/// A key of `map` equal to `name` ignoring case (SCIM attribute names are
/// case-insensitive, RFC 7643 §2.1).
fn key_ci(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// One exchange's redaction: the key for PII (none: secrets only) and every value
/// replaced so far, for the free-text pass ([`Redactor::into_secrets`]).
pub struct Redactor<'k> {
    key: Option<&'k hmac::Key>,
    /// (original, replacement), originals of at least [`MIN_SUBSTITUTION_LEN`] chars.
    replaced: Vec<(String, String)>,
    /// Replacements made since the last [`Redactor::take_changes`].
    changes: usize,
}

impl<'k> Redactor<'k> {
    /// Secrets only without a key; PII hashed too with one.
    pub fn new(key: Option<&'k hmac::Key>) -> Self {
        Redactor {
            key,
            replaced: Vec::new(),
            changes: 0,
        }
    }

    /// Whether anything was replaced since the last call.
    pub fn take_changes(&mut self) -> bool {
        std::mem::take(&mut self.changes) > 0
    }

    /// Whether any value was replaced so far.
    pub fn replaced_any(&self) -> bool {
        !self.replaced.is_empty()
    }

    /// The values replaced so far, for the free-text pass.
    pub fn into_secrets(mut self) -> Secrets {
        self.replaced
            .sort_by_key(|(original, _)| std::cmp::Reverse(original.len()));
        Secrets {
            replaced: self.replaced,
        }
    }

    fn remember(&mut self, original: &str, replacement: &str) {
        self.changes += 1;
        if original.chars().count() < MIN_SUBSTITUTION_LEN
            || original == replacement
            || self.replaced.len() >= MAX_REMEMBERED
        {
            return;
        }
        let mut add = |o: String| {
            if !self.replaced.iter().any(|(known, _)| *known == o) {
                self.replaced.push((o, replacement.to_owned()));
            }
        };
        // Fixes and messages quote values as JSON text, where `"` and `\` are escaped.
        if let Ok(escaped) = serde_json::to_string(original) {
            let escaped = &escaped[1..escaped.len() - 1];
            if escaped != original {
                add(escaped.to_owned());
            }
        }
        add(original.to_owned());
    }

    /// Remembers a secret value and gives its replacement.
    pub fn secret(&mut self, original: &str) -> String {
        self.remember(original, REDACTED);
        REDACTED.to_owned()
    }

    /// The hash of a PII value (the value itself without a key: not reached, since
    /// PII paths are only followed with a key).
    fn hash(&mut self, original: &str) -> String {
        match self.key {
            Some(key) => {
                let hash = hash_with(key, original);
                self.remember(original, &hash);
                hash
            }
            None => original.to_owned(),
        }
    }

    /// A body redacted: `None` when it is unchanged. A JSON body is walked; any other
    /// text is scanned ([`scan_text`]); under PII redaction a body that is not JSON is
    /// replaced whole (`[REDACTED: N bytes, not JSON]`), since nothing in it can be
    /// told apart.
    pub fn body(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        if body.iter().all(u8::is_ascii_whitespace)
            || (self.key.is_none() && !may_name_a_secret(body))
        {
            return None;
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(mut value) => {
                self.take_changes();
                self.walk(&mut value);
                self.take_changes()
                    .then(|| serde_json::to_vec(&value).ok())
                    .flatten()
            }
            Err(_) if self.key.is_some() => {
                Some(format!("[REDACTED: {} bytes, not JSON]", body.len()).into_bytes())
            }
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let mut found = Vec::new();
                let scanned = scan_text_collecting(&text, &mut found)?;
                for value in found {
                    self.secret(&value);
                }
                Some(scanned.into_bytes())
            }
        }
    }

    /// Redacts a JSON value in place.
    pub fn walk(&mut self, value: &mut Value) {
        match value {
            Value::Object(map) => self.walk_object(map),
            Value::Array(items) => items.iter_mut().for_each(|v| self.walk(v)),
            _ => {}
        }
    }

    fn walk_object(&mut self, map: &mut Map<String, Value>) {
        // A PATCH operation: its `path` says what its `value` is.
        let op_path = key_ci(map, "op").and_then(|_| {
            let key = key_ci(map, "path")?;
            let path = map.get(&key)?.as_str()?.to_owned();
            Some((key, path))
        });
        let mut handled: Vec<String> = Vec::new();
        if let Some((path_key, path)) = op_path {
            let redacted = self.filter(&path);
            if redacted != path {
                map.insert(path_key.clone(), Value::String(redacted));
            }
            handled.push(path_key);
            let (root, sub) = split_patch_path(&path);
            let class = classify_path(root, sub);
            if let Some(value_key) = key_ci(map, "value") {
                if let Some(value) = map.get_mut(&value_key) {
                    self.apply(class, value);
                }
                handled.push(value_key);
            }
        }
        for (key, value) in map.iter_mut() {
            if !handled.contains(key) {
                self.apply(classify_key(key), value);
            }
        }
    }

    fn apply(&mut self, class: Class, value: &mut Value) {
        match class {
            Class::Secret => self.secret_leaves(value),
            Class::Whole if self.key.is_some() => self.hash_leaves(value),
            Class::Multi if self.key.is_some() => self.hash_multi(value),
            Class::Filter => {
                if let Value::String(filter) = value {
                    let redacted = self.filter(filter);
                    *filter = redacted;
                } else {
                    self.walk(value);
                }
            }
            _ => self.walk(value),
        }
    }

    fn secret_leaves(&mut self, value: &mut Value) {
        match value {
            Value::String(s) if s != REDACTED => *s = self.secret(s),
            Value::Number(n) => *value = Value::String(self.secret(&n.to_string())),
            Value::Array(items) => items.iter_mut().for_each(|v| self.secret_leaves(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.secret_leaves(v)),
            Value::String(_) | Value::Bool(_) | Value::Null => {}
        }
    }

    fn hash_leaves(&mut self, value: &mut Value) {
        match value {
            Value::String(s) => *s = self.hash(s),
            Value::Number(n) => *value = Value::String(self.hash(&n.to_string())),
            Value::Array(items) => items.iter_mut().for_each(|v| self.hash_leaves(v)),
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let name = attribute_name(key);
                    if name.eq_ignore_ascii_case("type") || name.eq_ignore_ascii_case("primary") {
                        continue;
                    }
                    if is_secret_name(name) {
                        self.secret_leaves(v);
                    } else {
                        self.hash_leaves(v);
                    }
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn hash_multi(&mut self, value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| self.hash_multi_item(v)),
            Value::Object(_) => self.hash_multi_item(value),
            _ => self.hash_leaves(value),
        }
    }

    fn hash_multi_item(&mut self, item: &mut Value) {
        let Value::Object(map) = item else {
            self.hash_leaves(item);
            return;
        };
        for (key, v) in map.iter_mut() {
            let name = attribute_name(key);
            if name.eq_ignore_ascii_case("value") || name.eq_ignore_ascii_case("display") {
                self.hash_leaves(v);
            } else {
                self.apply(classify_key(key), v);
            }
        }
    }

    /// A filter with the compared values of secret attributes redacted (always) and of
    /// PII attributes hashed (with a key). Scans for string literals; every delimiter it
    /// slices at is ASCII, so any UTF-8 input is safe.
    pub fn filter(&mut self, filter: &str) -> String {
        let bytes = filter.as_bytes();
        let mut out = String::with_capacity(filter.len());
        let mut copied = 0;
        let mut parents: Vec<&str> = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    let end = literal_end(bytes, i);
                    let attribute = attribute_before(&filter[..i]);
                    let (root, sub) = match parents.last() {
                        Some(parent) => (
                            split_patch_path(parent).0,
                            Some(attribute.split('.').next().unwrap_or(attribute)),
                        ),
                        None => split_patch_path(attribute),
                    };
                    let class = classify_path(root, sub);
                    let literal = &filter[i..end];
                    let value = || {
                        serde_json::from_str::<String>(literal)
                            .unwrap_or_else(|_| literal.trim_matches('"').to_owned())
                    };
                    let replacement = match class {
                        Class::Secret => Some(self.secret(&value())),
                        Class::Whole | Class::Multi if self.key.is_some() => {
                            Some(self.hash(&value()))
                        }
                        _ => None,
                    };
                    if let Some(replacement) = replacement {
                        out.push_str(&filter[copied..i]);
                        out.push('"');
                        out.push_str(&replacement);
                        out.push('"');
                        copied = end;
                    }
                    i = end;
                }
                b'[' => {
                    parents.push(attribute_token(&filter[..i]));
                    i += 1;
                }
                b']' => {
                    parents.pop();
                    i += 1;
                }
                _ => i += 1,
            }
        }
        out.push_str(&filter[copied..]);
        out
    }

    /// A raw query string with secret parameters redacted and, with a key, the PII in
    /// `filter` hashed (re-encoded: `%20` for spaces).
    pub fn query(&mut self, query: &str) -> String {
        let mut changed = false;
        let decode = |raw: &str| {
            percent_decode(raw, true)
                .map(Cow::into_owned)
                .unwrap_or_else(|_| raw.to_owned())
        };
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let Some((raw_name, raw_value)) = pair.split_once('=') else {
                    return pair.to_owned();
                };
                let name = decode(raw_name);
                if is_secret_name(&name) {
                    if raw_value.is_empty() {
                        return pair.to_owned();
                    }
                    self.secret(&decode(raw_value));
                    changed = true;
                    return format!("{raw_name}={}", percent_encode(REDACTED));
                }
                if name.eq_ignore_ascii_case("filter") {
                    match percent_decode(raw_value, true) {
                        Ok(value) => {
                            let redacted = self.filter(&value);
                            if redacted != value {
                                changed = true;
                                return format!("{raw_name}={}", percent_encode(&redacted));
                            }
                        }
                        Err(_) if self.key.is_some() => {
                            changed = true;
                            return format!("{raw_name}={}", self.hash(raw_value));
                        }
                        Err(_) => {}
                    }
                }
                pair.to_owned()
            })
            .collect();
        if changed {
            pairs.join("&")
        } else {
            query.to_owned()
        }
    }
}

/// The index just after the string literal starting at `start` (a `"`), or the end of
/// the input when it is unterminated. Backslash escapes skip the next byte.
fn literal_end(bytes: &[u8], start: usize) -> usize {
    let mut j = start + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

fn is_attribute_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '$')
}

/// The attribute path token that ends `prefix`.
fn attribute_token(prefix: &str) -> &str {
    let trimmed = prefix.trim_end();
    let start = trimmed
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_attribute_char(*c))
        .last()
        .map_or(trimmed.len(), |(i, _)| i);
    &trimmed[start..]
}

/// The attribute a filter literal is compared to: `prefix` ends with
/// `attribute SP operator SP`.
fn attribute_before(prefix: &str) -> &str {
    let trimmed = prefix.trim_end();
    let without_op = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    attribute_token(without_op)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};
    use serde_json::Value;

    #[test]
    fn a_secret_name_is_found_in_any_case_across_every_chunk_boundary() {
        for at in (4070..4110).chain(8170..8200) {
            let mut body = vec![b'x'; 9000];
            body[at..at + 10].copy_from_slice(b"CrEdEnTiAl");
            assert!(may_name_a_secret(&body), "at {at}");
        }
        assert!(!may_name_a_secret(&vec![b'x'; 9000]));
        assert!(may_name_a_secret(b"{\"PW\":1}"));
        assert!(may_name_a_secret(b"\\u0070ass"));
        assert!(!may_name_a_secret(b""));
    }

    proptest::proptest! {
        #[test]
        fn the_packed_search_agrees_with_the_automaton(
            body in proptest::collection::vec(
                proptest::sample::select(b"aAcCdDeEgGhHiIkKlLnNoOpPrRsStTuUwWyY\"{}: x".to_vec()),
                0..300,
            )
        ) {
            let reference = SECRET_PARTS.is_match(&body) || memchr::memmem::find(&body, b"\\u").is_some();
            proptest::prop_assert_eq!(may_name_a_secret(&body), reference);
        }
    }

    const TOKEN: &str = "SECRET-TOKEN-3f9a1c";
    const SALT: &[u8] = b"test salt";

    fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// Every attribute and sub-attribute name of RFC 7643's User, Group, EnterpriseUser
    /// and ServiceProviderConfig schemas, the list and error responses, PATCH, and
    /// SCIM's query parameters.
    const SCIM_NAMES: [&str; 85] = [
        "id",
        "externalId",
        "meta",
        "resourceType",
        "created",
        "lastModified",
        "location",
        "version",
        "schemas",
        "userName",
        "name",
        "formatted",
        "familyName",
        "givenName",
        "middleName",
        "honorificPrefix",
        "honorificSuffix",
        "displayName",
        "nickName",
        "profileUrl",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "active",
        "emails",
        "value",
        "display",
        "type",
        "primary",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "streetAddress",
        "locality",
        "region",
        "postalCode",
        "country",
        "groups",
        "$ref",
        "entitlements",
        "roles",
        "x509Certificates",
        "employeeNumber",
        "costCenter",
        "organization",
        "division",
        "department",
        "manager",
        "members",
        "Operations",
        "op",
        "path",
        "totalResults",
        "itemsPerPage",
        "startIndex",
        "Resources",
        "detail",
        "status",
        "scimType",
        "filter",
        "attributes",
        "excludedAttributes",
        "sortBy",
        "sortOrder",
        "count",
        "cursor",
        "nextCursor",
        "documentationUri",
        "patch",
        "bulk",
        "maxOperations",
        "maxPayloadSize",
        "maxResults",
        "sort",
        "etag",
        "supported",
        "specUri",
        "description",
        "authenticationSchemes",
        "primary",
        "endpoint",
        "schemaExtensions",
    ];

    #[test]
    fn no_scim_attribute_is_secret_but_password() {
        for name in SCIM_NAMES {
            assert!(!is_secret_name(name), "{name} would be redacted");
        }
        for name in [
            "password",
            "urn:ietf:params:scim:schemas:core:2.0:User:password",
        ] {
            assert!(is_secret_name(attribute_name(name)), "{name}");
        }
        // changePassword names a secret part but holds only `supported`: a boolean,
        // which redaction leaves.
        let mut config = serde_json::json!({"changePassword": {"supported": false}});
        Redactor::new(None).walk(&mut config);
        assert_eq!(config["changePassword"]["supported"], false);
    }

    #[test]
    fn secret_names_are_found_in_any_case_and_place() {
        for name in [
            "authorization",
            "Proxy-Authorization",
            "x-amz-security-token",
            "COOKIE",
            "set-cookie",
            "x-api-key",
            "X-Access-Key",
            "X-Session",
            "apikey",
            "client_secret",
            "x-amz-signature",
            "sig",
            "key",
            "pw",
            "pwd",
            "passwd",
            "password",
            "aws-credential",
            "auth",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "content-type",
            "accept",
            "user-agent",
            "x-amzn-requestid",
            "host",
            "content-length",
            "keep-alive",
            "x-scimguard-request-id",
            "a",
            "",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn secret_headers_are_redacted_and_authorization_keeps_its_scheme() {
        let map = header_map(&[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("proxy-authorization", &format!("Basic {TOKEN}")),
            ("cookie", &format!("session={TOKEN}")),
            ("set-cookie", &format!("a={TOKEN}; HttpOnly")),
            ("x-amz-security-token", TOKEN),
            ("x-access-key", TOKEN),
            ("x-session", TOKEN),
            ("content-type", "application/scim+json"),
        ]);
        let pairs = headers(&map);
        assert_eq!(
            pairs[0],
            ("authorization".into(), "Bearer [REDACTED]".into())
        );
        assert_eq!(pairs[1].1, "Basic [REDACTED]");
        for (_, value) in &pairs[2..7] {
            assert_eq!(value, REDACTED);
        }
        assert_eq!(pairs[7].1, "application/scim+json");
        assert!(!format!("{pairs:?}").contains(TOKEN));
        // A credential with no scheme is redacted whole; redaction is idempotent.
        assert_eq!(header_value("Authorization", TOKEN), REDACTED);
        assert_eq!(
            header_value("authorization", "Bearer [REDACTED]"),
            "Bearer [REDACTED]"
        );
        let mut odd = HeaderMap::new();
        odd.insert("x-odd", HeaderValue::from_bytes(b"a\xffb").unwrap());
        assert_eq!(headers(&odd)[0].1, "a\u{fffd}b");
    }

    #[test]
    fn secret_query_parameters_and_filter_values_are_redacted() {
        assert_eq!(
            query("key=k1&sig=s1&pw=p1&count=5&X-Amz-Signature=abc"),
            "key=%5BREDACTED%5D&sig=%5BREDACTED%5D&pw=%5BREDACTED%5D&count=5&X-Amz-Signature=%5BREDACTED%5D"
        );
        assert_eq!(
            query("filter=password%20eq%20%22hunter22%22"),
            "filter=password%20eq%20%22%5BREDACTED%5D%22"
        );
        assert_eq!(
            query("filter=userName%20eq%20%22b%22"),
            "filter=userName%20eq%20%22b%22"
        );
        assert_eq!(query("token="), "token=");
        assert_eq!(
            target("http://h?access_token=t0k&count=1"),
            "http://h?access_token=%5BREDACTED%5D&count=1"
        );
        assert_eq!(target("/Users"), "/Users");
    }

    #[test]
    fn bodies_lose_secret_members_patch_values_and_filters() {
        let mut r = Redactor::new(None);
        let out = r
            .body(br#"{"userName":"bjensen","passwd":"hunter22","name":{"apiKey":"k-123"}}"#)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("hunter22") && !text.contains("k-123"),
            "{text}"
        );
        assert!(text.contains("bjensen"), "{text}");
        for patch in [
            r#"{"Operations":[{"op":"replace","path":"password","value":"hunter22"}]}"#,
            r#"{"Operations":[{"op":"Replace","value":{"password":"hunter22"}}]}"#,
            r#"{"Operations":[{"op":"add","path":"emails[value eq \"x\"].secret","value":"hunter22"}]}"#,
        ] {
            let out = Redactor::new(None).body(patch.as_bytes()).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("hunter22"), "{text}");
        }
        let search = br#"{"filter":"password eq \"hunter22\""}"#;
        let out = Redactor::new(None).body(search).unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("hunter22"));
        // A body with no secret name is left alone (no parse, no re-serialization).
        assert_eq!(Redactor::new(None).body(br#"{ "userName" : "b" }"#), None);
    }

    #[test]
    fn a_body_that_is_not_json_is_scanned_for_secret_members() {
        for (body, kept) in [
            (
                r#"{"userName":"b","password":"hunter22""#,
                r#"{"userName":"b","password":"[REDACTED]""#,
            ),
            (
                r#"{"password" : "hunter22", "x": 1,"#,
                r#"{"password" : "[REDACTED]", "x": 1,"#,
            ),
            (r#"{"Password":hunter22,}"#, r#"{"Password":[REDACTED],}"#),
            (r#"{"password":"hunter22"#, r#"{"password":"[REDACTED]"#),
            (r#"password=hunter22"#, r#"password=hunter22"#),
        ] {
            let mut r = Redactor::new(None);
            let out = r
                .body(body.as_bytes())
                .map(|b| String::from_utf8(b).unwrap());
            assert_eq!(out.as_deref().unwrap_or(body), kept, "{body}");
        }
        assert_eq!(scan_text(r#"{"a":"b"}"#), None);
        // An unclosed name ending in a multi-byte character (found by proptest).
        assert_eq!(scan_text("\\u\"\u{a51}"), None);
        assert_eq!(scan_text("\"pass\u{e9}"), None);
        assert_eq!(scan_text(r#"""#), None);
        assert_eq!(scan_text(r#""password":"#), None);
    }

    #[test]
    fn secrets_of_a_request_scrub_free_text_raw_and_json_escaped() {
        let cases = [
            ("/Users", r#"{"userName":"b","password":"Hunter\"22"}"#),
            (
                "/Users/1",
                r#"{"Operations":[{"op":"replace","path":"password","value":"Hunter\"22"}]}"#,
            ),
            (
                "/Users/1",
                r#"{"Operations":[{"op":"replace","value":{"password":"Hunter\"22"}}]}"#,
            ),
            ("/Users?filter=password%20eq%20%22Hunter%5C%2222%22", ""),
        ];
        for (target, body) in cases {
            let secrets = Secrets::of_request(target, &HeaderMap::new(), body.as_bytes());
            assert!(!secrets.is_empty(), "{target} {body}");
            let message = r#"removed "Hunter\"22" (raw: Hunter"22)"#;
            let scrubbed = secrets.scrub(message);
            assert!(!scrubbed.contains("Hunter"), "{target} {body}: {scrubbed}");
        }
        let headers = header_map(&[("authorization", &format!("Bearer {TOKEN}"))]);
        let secrets = Secrets::of_request("/Users", &headers, b"");
        assert_eq!(
            secrets.scrub(&format!("token {TOKEN} seen")),
            "token [REDACTED] seen"
        );
        assert!(
            Secrets::of_request("/Users", &HeaderMap::new(), br#"{"userName":"b"}"#).is_empty()
        );
    }

    #[test]
    fn pii_is_hashed_and_secrets_still_redacted() {
        let mut user = serde_json::json!({
            "userName": "bjensen", "password": "hunter22",
            "emails": [{"value": "b@example.com", "type": "work", "primary": true}],
            "active": true
        });
        redact_pii(&mut user, SALT);
        let text = user.to_string();
        for value in ["bjensen", "hunter22", "b@example.com"] {
            assert!(!text.contains(value), "{value} in {text}");
        }
        assert_eq!(user["emails"][0]["type"], "work");
        assert_eq!(user["password"], REDACTED);
        assert_eq!(user["userName"], pii_hash("bjensen", SALT));
        assert_eq!(
            redact_filter(
                r#"emails[type eq "work" and value co "@example.com"]"#,
                SALT
            ),
            format!(
                r#"emails[type eq "work" and value co "{}"]"#,
                pii_hash("@example.com", SALT)
            )
        );
    }

    /// Every PII string of the guide's CreateUser example.
    pub(crate) const PII_VALUES: [&str; 16] = [
        "bjensen",
        "Babs Jensen",
        "Ms. Barbara J Jensen, III",
        "Jensen",
        "Barbara",
        "Jane",
        "Babs",
        "bjensen@example.com",
        "555-555-5555",
        "100 Universal City Plaza",
        "Hollywood",
        "91608",
        "Tour Guide",
        "701984",
        "https://login.example.com/bjensen",
        "100 Universal City Plaza Hollywood, CA 91608 USA",
    ];

    #[test]
    fn redact_pii_hashes_every_personal_value_and_keeps_the_rest() {
        let mut user: Value =
            serde_json::from_str(include_str!("../benches/data/create_user.json")).unwrap();
        redact_pii(&mut user, SALT);
        let text = user.to_string();
        for value in PII_VALUES {
            assert!(!text.contains(value), "{value} left in {text}");
        }
        assert_eq!(user["userName"], pii_hash("bjensen", SALT));
        assert_eq!(user["emails"][0]["type"], "work");
        assert_eq!(user["emails"][0]["primary"], true);
        assert_eq!(user["addresses"][0]["type"], "work");
        assert_eq!(user["active"], true);
        assert_eq!(user["locale"], "en-US");
        assert_eq!(
            user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"],
            "9067729b3d-ee533c18-538a-4cd3-a572-63fb863ed734"
        );
        // Stable per salt, different across salts, and of the documented shape.
        let hash = pii_hash("bjensen", SALT);
        assert_eq!(hash, pii_hash("bjensen", SALT));
        assert_ne!(hash, pii_hash("bjensen", b"other salt"));
        assert_eq!(hash.len(), 23);
        assert!(hash.starts_with("sha256:"));
        assert!(hash[7..].bytes().all(|b| b.is_ascii_hexdigit()));
        // The externalId and employeeNumber share a value, hence a hash.
        assert_eq!(
            user["externalId"],
            user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"]
        );
    }

    #[test]
    fn patch_values_are_judged_by_their_path() {
        let mut patch = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "replace", "path": "name.givenName", "value": "Barbara"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "b@example.com"},
                {"op": "add", "path": "emails", "value": [{"value": "c@example.com", "type": "home"}]},
                {"op": "remove", "path": "emails[value eq \"d@example.com\"]"},
                {"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true},
                {"op": "add", "path": "members", "value": [{"value": "g-17", "display": "Jane Doe"}]},
                {"op": "remove", "path": "members[value eq \"g-18\"]"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": 701984},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName", "value": "Boss Person"},
                {"op": "replace", "path": "active", "value": false},
                {"op": "replace", "value": {"displayName": "New Name", "active": true}},
                {"OP": "replace", "PATH": "userName", "VALUE": "upper@example.com"},
                {"op": "replace", "path": "password", "value": "hunter2-secret"}
            ]
        });
        redact_pii(&mut patch, SALT);
        let text = patch.to_string();
        for value in [
            "Barbara",
            "b@example.com",
            "c@example.com",
            "d@example.com",
            "Jane Doe",
            "701984",
            "Boss Person",
            "New Name",
            "upper@example.com",
            "hunter2-secret",
        ] {
            assert!(!text.contains(value), "{value} left in {text}");
        }
        let ops = &patch["Operations"];
        assert_eq!(ops[2]["value"][0]["type"], "home");
        assert_eq!(
            ops[3]["path"],
            format!("emails[value eq \"{}\"]", pii_hash("d@example.com", SALT))
        );
        assert_eq!(ops[4]["value"], true);
        assert_eq!(
            ops[5]["value"][0]["value"], "g-17",
            "group member ids are not PII"
        );
        assert_eq!(ops[6]["path"], "members[value eq \"g-18\"]");
        assert_eq!(ops[9]["value"], false);
        assert_eq!(ops[10]["value"]["active"], true);
        assert_eq!(ops[12]["value"], REDACTED);
    }

    #[test]
    fn filters_hash_pii_values_only() {
        let h = |v: &str| pii_hash(v, SALT);
        let cases = [
            (
                "userName eq \"bjensen\"".to_owned(),
                format!("userName eq \"{}\"", h("bjensen")),
            ),
            (
                "USERNAME Eq \"bjensen\"".to_owned(),
                format!("USERNAME Eq \"{}\"", h("bjensen")),
            ),
            (
                "id eq \"2819c223\"".to_owned(),
                "id eq \"2819c223\"".to_owned(),
            ),
            (
                "emails[type eq \"work\" and value co \"@example.com\"]".to_owned(),
                format!(
                    "emails[type eq \"work\" and value co \"{}\"]",
                    h("@example.com")
                ),
            ),
            (
                "emails.value sw \"b\\\"j\" or meta.lastModified gt \"2011-05-13T04:42:34Z\""
                    .to_owned(),
                format!(
                    "emails.value sw \"{}\" or meta.lastModified gt \"2011-05-13T04:42:34Z\"",
                    h("b\"j")
                ),
            ),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"x\"".to_owned(),
                format!(
                    "urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"{}\"",
                    h("x")
                ),
            ),
            (
                "displayName eq \"unterminated".to_owned(),
                format!("displayName eq \"{}\"", h("unterminated")),
            ),
            (
                "members[value eq \"g-1\"]".to_owned(),
                "members[value eq \"g-1\"]".to_owned(),
            ),
            ("userName pr".to_owned(), "userName pr".to_owned()),
            (
                "displayName eq \"Ünïcødé ✓\"".to_owned(),
                format!("displayName eq \"{}\"", h("Ünïcødé ✓")),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_filter(&input, SALT), expected, "{input}");
        }
    }

    #[test]
    fn query_filters_are_decoded_redacted_and_reencoded() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, SALT);
        let mut s = Redactor::new(Some(&key));
        let query = "filter=userName+eq+%22bjensen%40example.com%22&startIndex=1&count=10";
        let redacted = s.query(query);
        let expected_filter = format!("userName eq \"{}\"", pii_hash("bjensen@example.com", SALT));
        assert_eq!(
            redacted,
            format!(
                "filter={}&startIndex=1&count=10",
                percent_encode(&expected_filter)
            )
        );
        // Undecodable: hashed whole; nothing to redact: unchanged byte for byte.
        assert!(s.query("filter=%zz").starts_with("filter=sha256:"));
        assert_eq!(
            s.query("filter=id+eq+%22x%22&a&&b="),
            "filter=id+eq+%22x%22&a&&b="
        );
        let mut secrets_only = Redactor::new(None);
        assert_eq!(
            secrets_only.query("filter=userName+eq+%22x%22"),
            "filter=userName+eq+%22x%22"
        );
        assert_eq!(
            secrets_only.query("X-Amz-Signature=abc&x=1"),
            "X-Amz-Signature=%5BREDACTED%5D&x=1"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn filter_redaction_never_panics(filter in "\\PC{0,40}|[a-zA-Z\\[\\]\" .\\\\]{0,40}") {
            let out = redact_filter(&filter, SALT);
            // Only string literals are ever replaced.
            if !filter.contains('"') {
                proptest::prop_assert_eq!(out, filter);
            }
        }

        #[test]
        fn scanning_and_collecting_never_panic(text in "\\PC{0,60}|[\"pasword:{} ,\\\\]{0,40}") {
            let _ = scan_text(&text);
            let secrets = Secrets::of_request(&format!("/Users?{text}"), &HeaderMap::new(), text.as_bytes());
            let _ = secrets.scrub(&text);
        }
    }
}
