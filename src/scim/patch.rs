//! The PatchOp message (RFC 7644 §3.5.2), kept as sent: `op` keeps its case
//! (`"Replace"` and `"replace"` both reach the rules, which may judge them), and
//! `path` stays text until [`PatchOperation::parsed_path`] is asked for.

use serde::{Deserialize, Deserializer, Serialize};

use crate::scim::filter::ParseError;
use crate::scim::path::{parse_path, PatchPath};

/// `urn:ietf:params:scim:api:messages:2.0:PatchOp`.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A PATCH request body.
///
/// Missing `schemas` or `Operations` deserialize as empty lists, so that a rule, not
/// serde, says what is wrong with such a body. Unknown members are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchRequest {
    #[serde(default)]
    pub schemas: Vec<String>,
    /// RFC 7644 spells the member `Operations`, capital O; other spellings are not it.
    #[serde(rename = "Operations", default)]
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// Parses a JSON body.
    pub fn from_json(body: &[u8]) -> Result<PatchRequest, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Whether `schemas` names the PatchOp message URN (ignoring case).
    pub fn has_patch_op_schema(&self) -> bool {
        self.schemas
            .iter()
            .any(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
    }
}

/// One element of `Operations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOperation {
    /// As sent: `"add"`, `"Replace"`, … See [`PatchOperation::kind`].
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `None` when absent; `Some(Value::Null)` for an explicit `"value": null`, which
    /// is a different request.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<serde_json::Value>,
}

/// Deserializes a member that is present (even as `null`) into `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// The three operations of RFC 7644 §3.5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchOpKind {
    Add,
    Remove,
    Replace,
}

impl PatchOperation {
    /// The operation, matched ignoring case (RFC 7644 §3.5.2 lists them lower-case;
    /// Entra ID has sent `"Replace"` and `"Add"`). `None` for anything else.
    pub fn kind(&self) -> Option<PatchOpKind> {
        [PatchOpKind::Add, PatchOpKind::Remove, PatchOpKind::Replace]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(&self.op))
    }

    /// Whether `op` is spelled exactly as the RFC does (lower-case).
    pub fn op_is_canonical(&self) -> bool {
        self.kind().is_some_and(|k| k.as_str() == self.op)
    }

    /// `path`, parsed (RFC 7644 §3.5.2); `None` without one.
    pub fn parsed_path(&self) -> Option<Result<PatchPath, ParseError>> {
        self.path.as_deref().map(parse_path)
    }
}

impl PatchOpKind {
    /// The RFC's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Remove => "remove",
            PatchOpKind::Replace => "replace",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The AWS guide's PatchGroup "add members" example, verbatim.
    const AWS_ADD_MEMBERS: &str = r#"{
  "schemas": [
    "urn:ietf:params:scim:api:messages:2.0:PatchOp"
  ],
  "Operations": [
    {
      "op": "add",
      "path": "members",
      "value": [
        {
          "value": "906722b2be-ee23ed58-6e4e-4b2f-a94a-3ace8456a36c"
        }
      ]
    }
  ]
}"#;

    /// The AWS guide's PatchGroup example without a path.
    const AWS_REPLACE_NO_PATH: &str = r#"{
  "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
  "Operations": [{
    "op": "replace",
    "value": {
      "id": "9067729b3d-07124c20-d960-4a47-93ff-460d76461f81",
      "displayName": "Group Foo New"
    }
  }]
}"#;

    #[test]
    fn aws_guide_bodies_parse() {
        let req = PatchRequest::from_json(AWS_ADD_MEMBERS.as_bytes()).unwrap();
        assert!(req.has_patch_op_schema());
        assert_eq!(req.operations.len(), 1);
        let op = &req.operations[0];
        assert_eq!(
            (op.kind(), op.op_is_canonical()),
            (Some(PatchOpKind::Add), true)
        );
        let Some(Ok(PatchPath::Attr(attr))) = op.parsed_path() else {
            panic!("{op:?}")
        };
        assert!(attr.is("members"));
        assert_eq!(
            op.value,
            Some(json!([{"value": "906722b2be-ee23ed58-6e4e-4b2f-a94a-3ace8456a36c"}]))
        );

        let req = PatchRequest::from_json(AWS_REPLACE_NO_PATH.as_bytes()).unwrap();
        let op = &req.operations[0];
        assert_eq!(
            (op.kind(), op.path.as_deref()),
            (Some(PatchOpKind::Replace), None)
        );
        assert!(op.parsed_path().is_none());
        assert_eq!(
            op.value.as_ref().and_then(|v| v["displayName"].as_str()),
            Some("Group Foo New")
        );

        // PatchUser's example: `"value": "false"`, a string, as AWS shows it.
        let body = br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations":[{"op":"replace","path":"active","value":"false"}]}"#;
        let req = PatchRequest::from_json(body).unwrap();
        assert_eq!(req.operations[0].value, Some(json!("false")));
    }

    #[test]
    fn op_is_kept_as_sent() {
        let body = br#"{"schemas":[],"Operations":[
            {"op":"Replace","path":"active","value":false},
            {"op":"ADD","path":"emails[type eq \"work\"].value","value":"a@b"},
            {"op":"move","path":"x"}]}"#;
        let req = PatchRequest::from_json(body).unwrap();
        assert!(!req.has_patch_op_schema());
        let ops: Vec<(&str, Option<PatchOpKind>, bool)> = req
            .operations
            .iter()
            .map(|o| (o.op.as_str(), o.kind(), o.op_is_canonical()))
            .collect();
        assert_eq!(
            ops,
            [
                ("Replace", Some(PatchOpKind::Replace), false),
                ("ADD", Some(PatchOpKind::Add), false),
                ("move", None, false),
            ]
        );
        let Some(Ok(path)) = req.operations[1].parsed_path() else {
            panic!("path")
        };
        assert_eq!(path.to_string(), r#"emails[type eq "work"].value"#);
        // Serializing gives back what was sent.
        let again = serde_json::to_value(&req).unwrap();
        assert_eq!(again["Operations"][0]["op"], "Replace");
    }

    #[test]
    fn null_value_differs_from_no_value() {
        let body = br#"{"Operations":[{"op":"remove","path":"members"},
            {"op":"replace","path":"title","value":null}]}"#;
        let req = PatchRequest::from_json(body).unwrap();
        assert!(req.schemas.is_empty());
        assert_eq!(req.operations[0].value, None);
        assert_eq!(req.operations[1].value, Some(serde_json::Value::Null));
        let again = serde_json::to_string(&req.operations[0]).unwrap();
        assert_eq!(again, r#"{"op":"remove","path":"members"}"#);
    }

    #[test]
    fn malformed_bodies() {
        // Lower-case `operations` is not RFC 7644's member: no operations at all.
        let req = PatchRequest::from_json(br#"{"operations":[{"op":"add"}]}"#).unwrap();
        assert!(req.operations.is_empty());
        assert!(PatchRequest::from_json(br#"{"Operations":[{"path":"x"}]}"#).is_err());
        assert!(PatchRequest::from_json(br#"{"Operations":{}}"#).is_err());
        assert!(PatchRequest::from_json(b"[").is_err());
        let req =
            PatchRequest::from_json(br#"{"Operations":[{"op":"add","path":"a[b"}]}"#).unwrap();
        assert!(matches!(req.operations[0].parsed_path(), Some(Err(_))));
    }
}
