//! Who may use the admin listener. With no `--admin-token` (allowed on loopback only),
//! everyone who can connect. With one, the page, its event stream and `/metrics` need
//! either `Authorization: Bearer TOKEN` or the session cookie a one-time link sets: the
//! link is printed at start, works once, and puts no token in the browser's history.
//! `/healthz` and `/readyz` stay open: they tell nothing but "up" and "ready".
//!
//! Secrets are compared as HMACs under a key made at start, so no comparison's time
//! depends on how much of a guess was right.

use std::collections::VecDeque;
use std::sync::Mutex;

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use ring::hmac;

/// The cookie the one-time link sets.
pub const SESSION_COOKIE: &str = "scimguard_admin";

/// Browsers logged in at once; the oldest session ends beyond it.
pub const MAX_SESSIONS: usize = 32;

/// The admin listener's gate.
pub struct AdminAuth {
    key: hmac::Key,
    /// The token's tag, when `--admin-token` is set.
    token: Option<hmac::Tag>,
    /// The one-time login code, until it is used.
    login: Mutex<Option<String>>,
    /// Tags of live session ids, oldest first.
    sessions: Mutex<VecDeque<Vec<u8>>>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminAuth {
    /// A gate for `token` (`None`: open).
    pub fn new(token: Option<&str>) -> AdminAuth {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>());
        let tag = token.map(|t| hmac::sign(&key, t.as_bytes()));
        let login = tag.as_ref().map(|_| random_hex());
        AdminAuth {
            key,
            token: tag,
            login: Mutex::new(login),
            sessions: Mutex::new(VecDeque::new()),
        }
    }

    /// Whether a token is required.
    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// The one-time login path (`/login?code=…`), until it has been used.
    pub fn login_path(&self) -> Option<String> {
        let login = self.login.lock().unwrap_or_else(|e| e.into_inner());
        login.as_ref().map(|code| format!("/login?code={code}"))
    }

    /// Whether the request may see the view and `/metrics`.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                let (scheme, value) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
            })
            .any(|candidate| hmac::verify(&self.key, candidate.as_bytes(), token.as_ref()).is_ok());
        bearer || self.session_of(headers)
    }

    fn session_of(&self, headers: &HeaderMap) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.is_empty() {
            return false;
        }
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == SESSION_COOKIE)
            .any(|(_, id)| {
                let tag = hmac::sign(&self.key, id.as_bytes());
                sessions.iter().any(|s| s.as_slice() == tag.as_ref())
            })
    }

    /// Spends the one-time code: `Some(session id)` for the cookie when `code` is it.
    pub fn log_in(&self, code: &str) -> Option<String> {
        let mut login = self.login.lock().unwrap_or_else(|e| e.into_inner());
        let expected = login.as_ref()?;
        let tag = hmac::sign(&self.key, expected.as_bytes());
        hmac::verify(&self.key, code.as_bytes(), tag.as_ref()).ok()?;
        *login = None;
        drop(login);
        Some(self.new_session())
    }

    /// Logs in with the token itself (the login form, for a second browser): a session
    /// id for the cookie when the token is right.
    pub fn log_in_with_token(&self, candidate: &str) -> Option<String> {
        let token = self.token.as_ref()?;
        hmac::verify(&self.key, candidate.as_bytes(), token.as_ref()).ok()?;
        Some(self.new_session())
    }

    /// A new session id for the cookie; its tag is kept, and the oldest of more than
    /// [`MAX_SESSIONS`] is forgotten.
    fn new_session(&self) -> String {
        let session = random_hex();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.push_back(hmac::sign(&self.key, session.as_bytes()).as_ref().to_vec());
        while sessions.len() > MAX_SESSIONS {
            sessions.pop_front();
        }
        session
    }
}

/// 128 random bits as 32 hex digits.
fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn open_without_a_token() {
        let auth = AdminAuth::new(None);
        assert!(!auth.required());
        assert!(auth.allows(&HeaderMap::new()));
        assert_eq!(auth.login_path(), None);
    }

    #[test]
    fn a_token_admits_bearer_and_the_one_time_link_sets_a_session() {
        let auth = AdminAuth::new(Some("admin-s3cret"));
        assert!(!auth.allows(&HeaderMap::new()));
        assert!(auth.allows(&headers(&[("authorization", "Bearer admin-s3cret")])));
        assert!(auth.allows(&headers(&[("authorization", "bearer  admin-s3cret ")])));
        assert!(!auth.allows(&headers(&[("authorization", "Bearer admin-s3cre")])));
        assert!(!auth.allows(&headers(&[("authorization", "Basic admin-s3cret")])));

        let path = auth.login_path().unwrap();
        let code = path.strip_prefix("/login?code=").unwrap();
        assert!(!path.contains("admin-s3cret"));
        assert_eq!(auth.log_in("wrong"), None);
        let session = auth.log_in(code).unwrap();
        assert_eq!(auth.log_in(code), None, "the link works once");
        assert_eq!(auth.login_path(), None);
        let cookie = format!("other=1; {SESSION_COOKIE}={session}");
        assert!(auth.allows(&headers(&[("cookie", &cookie)])));
        let forged = format!("{SESSION_COOKIE}={}", "0".repeat(32));
        assert!(!auth.allows(&headers(&[("cookie", &forged)])));

        let second = auth.log_in_with_token("admin-s3cret").unwrap();
        assert_ne!(second, session);
        assert_eq!(auth.log_in_with_token("nope"), None);
    }
}
