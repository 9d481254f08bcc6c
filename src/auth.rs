//! Token isolation: the IdP presents a token of scimguard's own (`--client-token-file`),
//! and only scimguard holds the AWS SCIM token (`--upstream-token-file`).
//!
//! AWS's token is a year-long bearer that can create and delete every user and group;
//! with isolation it never leaves this process but toward the configured upstream. A
//! request without a valid client token is answered 401 in AWS's shape before its body
//! is read or judged; an admitted one reaches the upstream with the AWS token in place of
//! the client's. Without the two files, the IdP's token passes through as before.
//!
//! Client tokens are kept only as SHA-256 digests, and a presented token's digest is
//! compared with every one of them in constant time, so neither the comparison's timing
//! nor a memory dump gives a token away. A client-token line may be the digest itself,
//! `sha256:<64 hex digits>`, so the file need not hold the token at all. Both files are
//! re-read by [`TokenIsolation::reload`] (SIGHUP), for rotation without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

use crate::scim::error::ScimError;

/// A token file larger than 64 KiB is refused: a thousand tokens fit in a tenth of it.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;
/// At most 1,000 client tokens: rotation needs two or three.
const MAX_CLIENT_TOKENS: usize = 1000;

/// AWS's words for a missing or wrong token (observed: `UnauthorizedException`), then
/// scimguard's own fix.
const UNAUTHORIZED_DETAIL: &str = "Authorization header is invalid or missing. scimguard keeps the AWS token itself: present one of the client tokens configured in scimguard's --client-token-file as `Authorization: Bearer <token>`.";

/// The two files of token isolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFiles {
    /// Tokens the IdP may present, one a line, or `sha256:<hex>` of one.
    pub client: PathBuf,
    /// The AWS SCIM token.
    pub upstream: PathBuf,
}

/// A token file that cannot be used. The message names the file and line, never a token.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenFileError(pub String);

/// The tokens in effect, swapped whole on reload.
struct Tokens {
    /// SHA-256 of every accepted client token.
    client: Vec<[u8; 32]>,
    /// `Bearer <AWS token>`, marked sensitive so hyper's HPACK never indexes it.
    upstream: HeaderValue,
}

/// Token isolation, shared by every connection.
pub struct TokenIsolation {
    files: TokenFiles,
    tokens: RwLock<Arc<Tokens>>,
}

impl fmt::Debug for TokenIsolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the tokens: Config is Debug, and configs end up in logs.
        f.debug_struct("TokenIsolation")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TokenIsolation {
    /// Reads both files; fails with the file, the line and the fix.
    pub fn load(files: &TokenFiles) -> Result<Self, TokenFileError> {
        let tokens = read_tokens(files)?;
        Ok(TokenIsolation {
            files: files.clone(),
            tokens: RwLock::new(Arc::new(tokens)),
        })
    }

    /// Re-reads both files; a file that does not load is refused and the tokens in
    /// effect kept.
    pub fn reload(&self) -> Result<(), TokenFileError> {
        let tokens = read_tokens(&self.files)?;
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(tokens);
        Ok(())
    }

    fn current(&self) -> Arc<Tokens> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether `headers` carry `Authorization: Bearer <t>` with `t` a client token.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(token) = bearer_token(headers) else {
            return false;
        };
        let digest = sha256(token);
        let tokens = self.current();
        // Every digest is compared, whatever matched first.
        let mut found = subtle::Choice::from(0);
        for accepted in &tokens.client {
            found |= accepted.ct_eq(&digest);
        }
        found.into()
    }

    /// The AWS token alone, for the embedded emulator standing in for AWS.
    pub(crate) fn upstream_token(&self) -> String {
        let value = self.upstream_authorization();
        let text = value.to_str().unwrap_or_default();
        text.strip_prefix("Bearer ").unwrap_or(text).to_owned()
    }

    /// `Bearer <AWS token>`, for whatever calls the upstream.
    pub fn upstream_authorization(&self) -> HeaderValue {
        self.current().upstream.clone()
    }
}

/// The pipeline's first check, before the body is read: with token isolation, a
/// request without a valid client token gets this 401 and nothing else happens to it.
pub fn refusal(isolation: Option<&TokenIsolation>, headers: &HeaderMap) -> Option<ScimError> {
    let isolation = isolation?;
    (!isolation.admits(headers)).then(|| ScimError::new(401, UNAUTHORIZED_DETAIL))
}

/// Puts the AWS token in place of the client's in a request bound upstream (a no-op
/// without token isolation).
pub fn swap_token(isolation: Option<&TokenIsolation>, headers: &mut HeaderMap) {
    if let Some(isolation) = isolation {
        headers.insert(AUTHORIZATION, isolation.upstream_authorization());
    }
}

/// The credentials a call to the upstream on behalf of a request must carry: the AWS
/// token under token isolation, otherwise the request's own `Authorization`.
pub fn upstream_credentials(
    isolation: Option<&TokenIsolation>,
    request_headers: &HeaderMap,
) -> Option<HeaderValue> {
    match isolation {
        Some(isolation) => Some(isolation.upstream_authorization()),
        None => request_headers.get(AUTHORIZATION).cloned(),
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1).
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !token.starts_with(b" ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn read_tokens(files: &TokenFiles) -> Result<Tokens, TokenFileError> {
    let client_text = read_bounded(&files.client, "--client-token-file")?;
    let mut client = Vec::new();
    for (number, line) in token_lines(&client_text) {
        if client.len() == MAX_CLIENT_TOKENS {
            return Err(TokenFileError(format!(
                "{} holds more than {MAX_CLIENT_TOKENS} tokens. Fix: keep only the tokens in use",
                files.client.display()
            )));
        }
        client.push(client_digest(line).map_err(|problem| {
            TokenFileError(format!(
                "line {number} of {} (--client-token-file) {problem}",
                files.client.display()
            ))
        })?);
    }
    if client.is_empty() {
        return Err(TokenFileError(format!(
            "{} (--client-token-file) holds no token. Fix: write one token a line (or sha256:<hex> of it); `#` starts a comment",
            files.client.display()
        )));
    }

    let upstream_text = read_bounded(&files.upstream, "--upstream-token-file")?;
    let mut lines = token_lines(&upstream_text);
    let (number, token) = lines.next().ok_or_else(|| {
        TokenFileError(format!(
            "{} (--upstream-token-file) holds no token. Fix: write the AWS SCIM access token on one line",
            files.upstream.display()
        ))
    })?;
    if lines.next().is_some() {
        return Err(TokenFileError(format!(
            "{} (--upstream-token-file) holds more than one token. Fix: keep only the AWS SCIM access token in use",
            files.upstream.display()
        )));
    }
    let bad_line = |problem: &str| {
        TokenFileError(format!(
            "line {number} of {} (--upstream-token-file) {problem}",
            files.upstream.display()
        ))
    };
    if !is_token(token) {
        return Err(bad_line(
            "is not a token (printable ASCII without spaces). Fix: paste the AWS SCIM access token alone",
        ));
    }
    let mut upstream = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| bad_line("is not a token. Fix: paste the AWS SCIM access token alone"))?;
    upstream.set_sensitive(true);
    Ok(Tokens { client, upstream })
}

/// A client-token line as the digest it stands for.
fn client_digest(line: &str) -> Result<[u8; 32], &'static str> {
    if let Some(hex) = line.strip_prefix("sha256:") {
        let mut digest = [0u8; 32];
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("is not sha256: and 64 hex digits. Fix: write `sha256:` then the hex SHA-256 of the token, e.g. from `printf %s TOKEN | sha256sum`");
        }
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| "is not sha256: and 64 hex digits")?;
        }
        return Ok(digest);
    }
    if !is_token(line) {
        return Err("is not a token (printable ASCII without spaces). Fix: one token a line; `#` starts a comment");
    }
    Ok(sha256(line.as_bytes()))
}

/// RFC 6750 §2.1's b64token is narrower; any visible ASCII is accepted so opaque tokens
/// of other shapes work, but never spaces or control characters.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Non-blank lines that are not `#` comments, trimmed, with their 1-based numbers.
fn token_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

fn read_bounded(path: &Path, setting: &str) -> Result<String, TokenFileError> {
    use std::io::Read;
    let cannot = |e: &dyn fmt::Display| {
        TokenFileError(format!(
            "cannot read {} ({setting}): {e}. Fix: check the path and that scimguard's user may read it",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(TokenFileError(format!(
            "{} ({setting}) is larger than {MAX_TOKEN_FILE_BYTES} bytes. Fix: keep only tokens in it",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        TokenFileError(format!(
            "{} ({setting}) is not UTF-8 text. Fix: write tokens as plain text, one a line",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "idp-token-4f1c9e";
    const AWS: &str = "aws-token-77ab01";

    fn isolation(client_file: &str, upstream_file: &str) -> (tempfile::TempDir, TokenFiles) {
        let dir = tempfile::tempdir().unwrap();
        let files = TokenFiles {
            client: dir.path().join("client"),
            upstream: dir.path().join("upstream"),
        };
        std::fs::write(&files.client, client_file).unwrap();
        std::fs::write(&files.upstream, upstream_file).unwrap();
        (dir, files)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn plain_and_hashed_tokens_are_admitted_and_nothing_else() {
        let hashed = "second-token-0d1e";
        let hex: String = sha256(hashed.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (_dir, files) = isolation(
            &format!("# rotated 2026-12\n{CLIENT}\n\nsha256:{hex}\n"),
            AWS,
        );
        let isolation = TokenIsolation::load(&files).unwrap();
        assert!(isolation.admits(&bearer(CLIENT)));
        assert!(isolation.admits(&bearer(hashed)));
        let mut lower = HeaderMap::new();
        lower.insert(AUTHORIZATION, format!("bearer {CLIENT}").parse().unwrap());
        assert!(isolation.admits(&lower), "the scheme is case-insensitive");
        assert!(
            !isolation.admits(&bearer(AWS)),
            "the AWS token is not a client token"
        );
        assert!(
            !isolation.admits(&bearer(&hex)),
            "a digest is not its token"
        );
        assert!(!isolation.admits(&bearer(&format!("{CLIENT}x"))));
        assert!(!isolation.admits(&HeaderMap::new()));
        let mut basic = HeaderMap::new();
        basic.insert(AUTHORIZATION, format!("Basic {CLIENT}").parse().unwrap());
        assert!(!isolation.admits(&basic));
    }

    #[test]
    fn the_swap_puts_the_aws_token_in() {
        let (_dir, files) = isolation(CLIENT, &format!("{AWS}\n"));
        let isolation = TokenIsolation::load(&files).unwrap();
        let mut headers = bearer(CLIENT);
        swap_token(Some(&isolation), &mut headers);
        assert_eq!(headers[AUTHORIZATION], format!("Bearer {AWS}").as_str());
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert_eq!(
            upstream_credentials(None, &bearer(CLIENT)).unwrap(),
            format!("Bearer {CLIENT}").as_str()
        );
    }

    #[test]
    fn bad_files_name_the_line_but_never_a_token() {
        for (client, upstream, expected) in [
            ("", AWS, "holds no token"),
            ("has space", AWS, "line 1"),
            ("sha256:abc", AWS, "64 hex digits"),
            (CLIENT, "", "holds no token"),
            (CLIENT, "aws-one\naws-two", "more than one token"),
        ] {
            let (_dir, files) = isolation(client, upstream);
            let err = TokenIsolation::load(&files).unwrap_err().to_string();
            assert!(err.contains(expected) && err.contains("Fix:"), "{err}");
            for secret in [CLIENT, AWS, "has space", "aws-one"] {
                assert!(!err.contains(secret), "{err}");
            }
        }
        let debug = format!(
            "{:?}",
            TokenIsolation::load(&isolation(CLIENT, AWS).1).unwrap()
        );
        assert!(!debug.contains(CLIENT) && !debug.contains(AWS), "{debug}");
    }

    #[test]
    fn a_reload_that_fails_keeps_the_tokens_in_effect() {
        let (_dir, files) = isolation(CLIENT, AWS);
        let isolation = TokenIsolation::load(&files).unwrap();
        std::fs::write(&files.client, "new-token\n").unwrap();
        isolation.reload().unwrap();
        assert!(isolation.admits(&bearer("new-token")));
        assert!(!isolation.admits(&bearer(CLIENT)));
        std::fs::write(&files.client, "").unwrap();
        assert!(isolation.reload().is_err());
        assert!(isolation.admits(&bearer("new-token")));
    }
}
