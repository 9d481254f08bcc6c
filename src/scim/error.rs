//! The SCIM error body (RFC 7644 §3.12) in the shape AWS IAM Identity Center really sends.
//!
//! AWS answers with both `schemas` (the RFC's key) and `schema` (its own historical key),
//! and `status` as a JSON string, e.g.
//! `{"schema":[E],"schemas":[E],"detail":"…","status":"400"}`; IdPs that parse AWS's
//! errors expect exactly that, so everything scimguard answers itself uses it too.

use serde::Serialize;

/// `urn:ietf:params:scim:api:messages:2.0:Error` (RFC 7644 §3.12).
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM error response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScimError {
    pub schemas: [&'static str; 1],
    /// AWS's duplicate of `schemas`; kept because AWS sends it.
    pub schema: [&'static str; 1],
    /// The HTTP status as a string, as AWS sends it ("400", not 400).
    pub status: String,
    /// RFC 7644 §3.12 `scimType` (`invalidFilter`, `invalidPath`, `invalidValue`, …).
    #[serde(rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    /// Plain words for the admin: what happened and what to check.
    pub detail: String,
    /// AWS adds a request id to every error; the emulator fills it, the proxy does not.
    #[serde(rename = "exceptionRequestId", skip_serializing_if = "Option::is_none")]
    pub exception_request_id: Option<String>,
    /// AWS's `timeStamp` ("2022-04-15 14:09:03.693"); filled by the emulator only.
    #[serde(rename = "timeStamp", skip_serializing_if = "Option::is_none")]
    pub time_stamp: Option<String>,
}

impl ScimError {
    /// An error with the given HTTP status code and detail text.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        ScimError {
            schemas: [ERROR_SCHEMA],
            schema: [ERROR_SCHEMA],
            status: status.to_string(),
            scim_type: None,
            detail: detail.into(),
            exception_request_id: None,
            time_stamp: None,
        }
    }

    /// Adds RFC 7644 §3.12's `scimType`.
    pub fn with_scim_type(mut self, scim_type: impl Into<String>) -> Self {
        self.scim_type = Some(scim_type.into());
        self
    }

    /// The JSON body. Serializing this struct cannot fail (only strings and arrays).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_aws_shape_with_string_status() {
        let body = ScimError::new(502, "upstream down").to_json();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "502");
        assert_eq!(v["schemas"][0], ERROR_SCHEMA);
        assert_eq!(v["schema"][0], ERROR_SCHEMA);
        assert_eq!(v["detail"], "upstream down");
        assert!(v.get("scimType").is_none());
    }
}
