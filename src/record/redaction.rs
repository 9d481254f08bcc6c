//! A record redacted as a whole, the same way for every exchange: [`crate::redact`]'s
//! structural redaction of headers, queries and bodies first, so the free-text pass
//! knows every value found in any part (a response's `detail` may quote the request's
//! userName), then that pass over findings, the error, queries and bodies.

use ring::hmac;

use super::{Body, Record};
use crate::redact::{self, Redactor};

/// Redacts one record in place, as the recorder does before writing it: secrets
/// always; PII too when `pii_salt` is given. Bodies are re-serialized only when
/// something in them changed (compactly); a body that is not JSON is scanned for secret
/// members, or under PII redaction replaced whole (`[REDACTED: N bytes, not JSON]`).
pub fn sanitize(record: &mut Record, pii_salt: Option<&[u8]>) {
    let key = pii_salt.map(|salt| hmac::Key::new(hmac::HMAC_SHA256, salt));
    sanitize_with(record, key.as_ref());
}

pub(crate) fn sanitize_with(record: &mut Record, key: Option<&hmac::Key>) {
    let mut redactor = Redactor::new(key);
    let mut bodies: Vec<&mut Body> = Vec::new();
    for request in std::iter::once(&mut record.request).chain(record.forwarded.iter_mut()) {
        redact::header_pairs(&mut request.headers);
        if let Some(query) = &request.query {
            let redacted = redactor.query(query);
            request.query = Some(redacted);
        }
        bodies.push(&mut request.body);
    }
    if let Some(response) = &mut record.response {
        redact::header_pairs(&mut response.headers);
        bodies.push(&mut response.body);
    }
    for body in bodies.iter_mut() {
        if let Some(redacted) = redactor.body(body.as_bytes()) {
            **body = Body::from(redacted);
        }
    }
    let secrets = redactor.into_secrets();
    if secrets.is_empty() {
        return;
    }
    for body in bodies {
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body.as_bytes()) {
            if secrets.scrub_json(&mut value) > 0 {
                if let Ok(bytes) = serde_json::to_vec(&value) {
                    *body = Body::from(bytes);
                }
            }
        }
    }
    for finding in &mut record.findings {
        secrets.scrub_json(finding);
    }
    if let Some(error) = &mut record.error {
        secrets.scrub_string(error);
    }
    for request in std::iter::once(&mut record.request).chain(record.forwarded.iter_mut()) {
        if let Some(query) = &mut request.query {
            secrets.scrub_string(query);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use crate::record::{RecordedRequest, RecordedResponse};
    use crate::redact::tests::PII_VALUES;
    use crate::redact::{pii_hash, REDACTED};
    use http::HeaderMap;
    use serde_json::Value;

    const TOKEN: &str = "SECRET-TOKEN-3f9a1c";
    const SALT: &[u8] = b"test salt";

    fn create_user() -> Value {
        serde_json::from_str(include_str!("../../benches/data/create_user.json")).unwrap()
    }

    #[test]
    fn bodies_without_a_secret_name_are_kept_verbatim_and_others_redacted() {
        let clean = br#"{ "userName":"bjensen","name":{"givenName":"B"}}"#;
        let mut record = sample(0, clean, 201);
        sanitize_with(&mut record, None);
        assert_eq!(record.request.body.as_bytes(), clean);
        for secret in [
            &br#"{"userName":"b","Password":"hunter2"}"#[..],
            &br#"{"userName":"b","passwd":"hunter2"}"#[..],
            &br#"{"userName":"b","password":"hunter2""#[..],
        ] {
            record.request.body = Body::from(secret);
            sanitize_with(&mut record, None);
            let text = String::from_utf8_lossy(record.request.body.as_bytes()).into_owned();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains(REDACTED), "{text}");
        }
    }

    #[test]
    fn passwords_are_redacted_everywhere_without_pii_mode() {
        let mut record = sample(
            1,
            br#"{"userName":"bjensen","password":"hunter2-secret"}"#,
            201,
        );
        record.findings = vec![serde_json::json!({
            "rule": "user.unsupported-attributes",
            "message": "removed it (\"hunter2-secret\")",
            "fix": {"before": "\"hunter2-secret\"", "after": "(absent)"}
        })];
        record.forwarded.push(RecordedRequest::new(
            "PATCH",
            "/Users/1",
            &HeaderMap::new(),
            br#"{"Operations":[{"op":"replace","path":"password","value":"hunter2-secret"}]}"#,
        ));
        record.request.query = Some(format!("access_token={TOKEN}&count=5"));
        record.error = Some(format!("the token {TOKEN} was refused"));
        sanitize(&mut record, None);
        let line = serde_json::to_string(&record).unwrap();
        assert!(!line.contains("hunter2-secret"), "{line}");
        assert!(!line.contains(TOKEN), "{line}");
        assert!(line.contains("bjensen"), "no PII redaction asked: {line}");
        assert_eq!(
            record.request.query.as_deref(),
            Some("access_token=%5BREDACTED%5D&count=5")
        );
    }

    #[test]
    fn pii_values_are_hashed_in_bodies_filters_findings_errors_and_echoes() {
        let mut record = sample(
            2,
            include_bytes!("../../benches/data/create_user.json"),
            400,
        );
        record.request.query = Some("filter=displayName+eq+%22Babs+Jensen%22".into());
        record.response = Some(RecordedResponse::new(
            400,
            &HeaderMap::new(),
            br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"userName bjensen@example.com exists; see \"Babs Jensen\"","status":"400"}"#,
        ));
        record.findings = vec![serde_json::json!({
            "rule": "user.multi-value",
            "action": "rewrite",
            "location": "/emails/1",
            "message": "AWS keeps one email; dropped bjensen@example.com",
            "source": "guide",
            "fix": {"before": "{\"value\":\"bjensen@example.com\"}", "after": "(absent)"}
        })];
        record.error = Some("upstream said Hollywood is invalid".into());
        record.forwarded.push(RecordedRequest::new(
            "POST",
            "/t-1/scim/v2/Users",
            &HeaderMap::new(),
            br#"{"userName":"bjensen","nickName":"Babs"}"#,
        ));
        sanitize(&mut record, Some(SALT));
        let line = serde_json::to_string(&record).unwrap();
        for value in PII_VALUES {
            assert!(!line.contains(value), "{value} left in {line}");
        }
        assert!(line.contains("user.multi-value"));
        assert!(line.contains("/emails/1"));
        let body: Value = serde_json::from_slice(record.request.body.as_bytes()).unwrap();
        assert_eq!(body["userName"], pii_hash("bjensen", SALT));
        // A non-JSON body under PII redaction is replaced whole.
        let mut binary = sample(3, b"userName=bjensen&x=\xff", 400);
        sanitize(&mut binary, Some(SALT));
        assert_eq!(
            binary.request.body.text(),
            Some("[REDACTED: 20 bytes, not JSON]")
        );
        // Without any PII the body keeps its exact bytes.
        let original = br#"{ "schemas" : ["x"], "active":true }"#;
        let mut plain = sample(4, original, 201);
        sanitize(&mut plain, Some(SALT));
        assert_eq!(plain.request.body.as_bytes(), original);
        let mut user = create_user();
        crate::redact::redact_pii(&mut user, SALT);
        for value in PII_VALUES {
            assert!(!user.to_string().contains(value), "{value}");
        }
    }

    proptest::proptest! {
        #[test]
        fn sanitize_never_panics(body in "\\PC{0,60}", query in "\\PC{0,30}") {
            let mut record = sample(0, body.as_bytes(), 201);
            record.request.query = Some(query.clone());
            sanitize(&mut record, None);
            let mut record = sample(0, body.as_bytes(), 201);
            record.request.query = Some(query);
            sanitize(&mut record, Some(SALT));
        }
    }
}
