//! /Schemas, /Schemas/{urn}, /ResourceTypes and /ServiceProviderConfig: the guide's
//! own response bodies, kept as data files under `data/`.
//!
//! The guide's text was extracted from a PDF; the files are its JSON with the page
//! breaks repaired (closing brackets the extraction invented, descriptions broken over
//! lines). They are served byte for byte, so the key order is the guide's.

use http::StatusCode;

use super::reply::{ApiError, Reply, LIST_RESPONSE_SCHEMA, SCHEMA_NOT_FOUND};

const SCHEMA_USER: &str = include_str!("data/schema-user.json");
const SCHEMA_GROUP: &str = include_str!("data/schema-group.json");
const SCHEMA_ENTERPRISE_USER: &str = include_str!("data/schema-enterprise-user.json");
const RESOURCE_TYPES: &str = include_str!("data/resource-types.json");
const SERVICE_PROVIDER_CONFIG: &str = include_str!("data/service-provider-config.json");

/// The three schemas, by URN.
const SCHEMAS: [(&str, &str); 3] = [
    ("urn:ietf:params:scim:schemas:core:2.0:User", SCHEMA_USER),
    ("urn:ietf:params:scim:schemas:core:2.0:Group", SCHEMA_GROUP),
    (
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        SCHEMA_ENTERPRISE_USER,
    ),
];

/// The discovery documents of one tenant.
#[derive(Debug)]
pub(crate) struct Discovery {
    list_schemas: Vec<u8>,
    resource_types: Vec<u8>,
}

impl Discovery {
    /// `tenant` fills the `{tenant_id}` of the resource types' `meta.location`; it is
    /// already checked to be URL-safe, so it needs no JSON escaping.
    pub fn new(tenant: &str) -> Result<Discovery, String> {
        let list_schemas = format!(
            r#"{{"schemas":["{LIST_RESPONSE_SCHEMA}"],"totalResults":3,"itemsPerPage":3,"startIndex":1,"Resources":[{},{},{}]}}"#,
            SCHEMA_USER.trim(),
            SCHEMA_GROUP.trim(),
            SCHEMA_ENTERPRISE_USER.trim()
        );
        let resource_types = RESOURCE_TYPES.replace("{tenant_id}", tenant);
        for (name, text) in [
            ("the schema list", list_schemas.as_str()),
            ("resource-types.json", resource_types.as_str()),
            ("service-provider-config.json", SERVICE_PROVIDER_CONFIG),
        ] {
            serde_json::from_str::<serde_json::Value>(text).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(Discovery {
            list_schemas: list_schemas.into_bytes(),
            resource_types: resource_types.into_bytes(),
        })
    }

    fn reply(body: &[u8]) -> Reply {
        Reply::Json {
            status: StatusCode::OK,
            body: body.to_vec(),
        }
    }

    /// ListSchemas.
    pub fn list_schemas(&self) -> Reply {
        Self::reply(&self.list_schemas)
    }

    /// GetSchema: the schema whose URN is `urn` (ignoring case).
    pub fn schema(&self, urn: &str) -> Result<Reply, ApiError> {
        SCHEMAS
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(urn))
            .map(|(_, text)| Self::reply(text.trim().as_bytes()))
            .ok_or_else(|| ApiError::not_found(SCHEMA_NOT_FOUND))
    }

    /// ListResourceTypes.
    pub fn resource_types(&self) -> Reply {
        Self::reply(&self.resource_types)
    }

    /// ServiceProviderConfig. Its `filter.maxResults` stays 50, as the live guide's
    /// example still shows although lists now return up to 100 a page: the guide
    /// contradicts itself, and a client that asks for 50 at a time syncs with either.
    pub fn service_provider_config(&self) -> Reply {
        Self::reply(SERVICE_PROVIDER_CONFIG.trim().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn json(reply: Reply) -> Value {
        let Reply::Json { body, .. } = reply else {
            panic!("not JSON")
        };
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn documents_are_the_guides() {
        let d = Discovery::new("d-9067a1b2c3").unwrap();
        let list = json(d.list_schemas());
        assert_eq!(list["totalResults"], 3);
        let ids: Vec<&str> = list["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, SCHEMAS.map(|(id, _)| id));
        let user = json(
            d.schema("URN:ietf:params:scim:schemas:core:2.0:User")
                .unwrap(),
        );
        let names: Vec<&str> = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "userName",
                "name",
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
                "phoneNumbers",
                "addresses",
                "groups",
                "roles"
            ]
        );
        // A description the PDF broke over three lines, joined again.
        assert!(user["attributes"][0]["description"]
            .as_str()
            .unwrap()
            .contains("typically used by the user to directly authenticate"));
        assert_eq!(
            d.schema("urn:x").map(|_| ()),
            Err(ApiError::not_found(SCHEMA_NOT_FOUND))
        );
        let types = json(d.resource_types());
        assert_eq!(
            types["Resources"][0]["meta"]["location"],
            "https://scim.us-east-1.amazonaws.com/d-9067a1b2c3/scim/v2/ResourceTypes/User"
        );
        assert_eq!(types["Resources"][1]["endpoint"], "/Groups");
        let spc = json(d.service_provider_config());
        assert_eq!(spc["filter"]["maxResults"], 50);
        assert_eq!(spc["bulk"]["maxPayloadSize"], 1_048_576);
    }
}
