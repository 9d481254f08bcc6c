//! Query strings: the SCIM parameters of RFC 7644 §3.4.2 (filter, startIndex, count,
//! attributes, excludedAttributes, sortBy, sortOrder) and `cursor` (the IETF SCIM
//! working group's cursor pagination), decoded.

use thiserror::Error;

use crate::scim::filter::{parse_filter, Filter, ParseError};
use crate::scim::percent::{percent_decode, PercentError};

/// A decoded query string. Values are kept as decoded text: what they mean (a
/// number, a filter) is for the caller to judge, with the helpers below.
///
/// Names match exactly, as RFC 7644 §3.4.2 spells them; `Filter=` or `STARTINDEX=`
/// lands in `others`, so a rule can point out the misspelling.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    pub filter: Option<String>,
    pub start_index: Option<String>,
    pub count: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub cursor: Option<String>,
    /// Every other parameter, decoded, in order, repeats included.
    pub others: Vec<(String, String)>,
    /// Names given more than once, each listed once, in order of first repeat. For a
    /// SCIM parameter the field above holds the first value: servers disagree on which
    /// one wins, so a repeat is worth refusing rather than guessing.
    pub repeated: Vec<String>,
}

/// A query string that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    #[error("bad percent-encoding in query parameter `{param}`: {error}")]
    Encoding {
        /// The parameter's name as far as it could be decoded (raw if the name itself
        /// is the problem).
        param: String,
        /// Byte offset of the pair in the raw query string.
        offset: usize,
        error: PercentError,
    },
}

impl Query {
    /// Parses a raw query string (with or without its leading `?`), decoding
    /// `%XX` and `+` (as a space) in names and values.
    ///
    /// `a&&b` skips the empty pair; `name` without `=` has the empty value.
    pub fn parse(raw: &str) -> Result<Query, QueryError> {
        let raw = raw.strip_prefix('?').unwrap_or(raw);
        let mut query = Query::default();
        let mut seen: Vec<String> = Vec::new();
        let mut offset = 0;
        for pair in raw.split('&') {
            let pair_offset = offset;
            offset += pair.len() + 1;
            if pair.is_empty() {
                continue;
            }
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let encoding = |param: &str, error| QueryError::Encoding {
                param: param.to_owned(),
                offset: pair_offset,
                error,
            };
            let name = percent_decode(raw_name, true).map_err(|e| encoding(raw_name, e))?;
            let value = percent_decode(raw_value, true).map_err(|e| encoding(&name, e))?;
            if seen.iter().any(|s| *s == name) {
                if !query.repeated.iter().any(|r| *r == name) {
                    query.repeated.push(name.clone().into_owned());
                }
            } else {
                seen.push(name.clone().into_owned());
            }
            let slot = match name.as_ref() {
                "filter" => &mut query.filter,
                "startIndex" => &mut query.start_index,
                "count" => &mut query.count,
                "attributes" => &mut query.attributes,
                "excludedAttributes" => &mut query.excluded_attributes,
                "sortBy" => &mut query.sort_by,
                "sortOrder" => &mut query.sort_order,
                "cursor" => &mut query.cursor,
                _ => {
                    query.others.push((name.into_owned(), value.into_owned()));
                    continue;
                }
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        Ok(query)
    }

    /// The `filter` parameter, parsed; `None` without one.
    pub fn parsed_filter(&self) -> Option<Result<Filter, ParseError>> {
        self.filter.as_deref().map(parse_filter)
    }

    /// `startIndex` as a number, if it is one (RFC 7644 §3.4.2.4: 1-based; values
    /// below 1 mean 1, which is for the caller to apply).
    pub fn start_index_number(&self) -> Option<Result<i64, std::num::ParseIntError>> {
        self.start_index.as_deref().map(str::parse)
    }

    /// `count` as a number, if it is one (negative means 0 per RFC 7644 §3.4.2.4).
    pub fn count_number(&self) -> Option<Result<i64, std::num::ParseIntError>> {
        self.count.as_deref().map(str::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idp_style_filters_decode() {
        let q = Query::parse("filter=userName+eq+%22jdoe%22").unwrap();
        assert_eq!(q.filter.as_deref(), Some(r#"userName eq "jdoe""#));
        assert_eq!(
            q.parsed_filter().unwrap().unwrap().to_string(),
            r#"userName eq "jdoe""#
        );
        let q = Query::parse(
            "?filter=userName%20eq%20%22bjensen%40example.com%22&startIndex=1&count=100",
        )
        .unwrap();
        assert_eq!(
            q.filter.as_deref(),
            Some(r#"userName eq "bjensen@example.com""#)
        );
        assert_eq!(q.start_index_number(), Some(Ok(1)));
        assert_eq!(q.count_number(), Some(Ok(100)));
        // AWS guide: `?filter=displayName eq "Group Bar"` as a client really sends it.
        let q = Query::parse("filter=displayName%20eq%20%22Group%20Bar%22").unwrap();
        assert_eq!(q.filter.as_deref(), Some(r#"displayName eq "Group Bar""#));
        // A literal plus is %2B.
        let q = Query::parse("filter=userName+eq+%22a%2Bb%40x%22").unwrap();
        assert_eq!(q.filter.as_deref(), Some(r#"userName eq "a+b@x""#));
    }

    #[test]
    fn every_scim_parameter_has_its_field() {
        let q = Query::parse(
            "filter=a+pr&startIndex=2&count=3&attributes=userName,emails&excludedAttributes=groups\
             &sortBy=name.familyName&sortOrder=descending&cursor=Q0FTRQ%3D%3D&x=1&y",
        )
        .unwrap();
        assert_eq!(
            q,
            Query {
                filter: Some("a pr".into()),
                start_index: Some("2".into()),
                count: Some("3".into()),
                attributes: Some("userName,emails".into()),
                excluded_attributes: Some("groups".into()),
                sort_by: Some("name.familyName".into()),
                sort_order: Some("descending".into()),
                cursor: Some("Q0FTRQ==".into()),
                others: vec![("x".into(), "1".into()), ("y".into(), String::new())],
                repeated: vec![],
            }
        );
        assert_eq!(Query::parse("").unwrap(), Query::default());
        assert_eq!(Query::parse("?&&").unwrap(), Query::default());
    }

    #[test]
    fn repeats_are_reported_not_merged() {
        let q = Query::parse("count=1&filter=a+pr&count=2&filter=b+pr&x=1&x=2&x=3").unwrap();
        assert_eq!(q.count.as_deref(), Some("1"));
        assert_eq!(q.filter.as_deref(), Some("a pr"));
        assert_eq!(q.repeated, ["count", "filter", "x"]);
        assert_eq!(q.others.len(), 3);
        // Names compare after decoding.
        let q = Query::parse("count=1&c%6Funt=2").unwrap();
        assert_eq!(q.repeated, ["count"]);
    }

    #[test]
    fn names_are_exact() {
        let q = Query::parse("Filter=a+pr&STARTINDEX=1").unwrap();
        assert_eq!(q.filter, None);
        assert_eq!(
            q.others,
            [
                ("Filter".into(), "a pr".into()),
                ("STARTINDEX".into(), "1".into())
            ]
        );
    }

    #[test]
    fn bad_encoding_and_invalid_utf8_are_errors() {
        // Invalid UTF-8 after decoding: a lone 0xFF inside the filter string.
        let err = Query::parse("count=1&filter=userName+eq+%22%FF%22").unwrap_err();
        assert_eq!(
            err,
            QueryError::Encoding {
                param: "filter".into(),
                offset: 8,
                error: PercentError::InvalidUtf8 { offset: 13 },
            }
        );
        assert!(err.to_string().contains("`filter`"));
        assert!(matches!(
            Query::parse("filter=%2"),
            Err(QueryError::Encoding {
                error: PercentError::BadEscape { offset: 0 },
                ..
            })
        ));
        assert!(matches!(
            Query::parse("%E9=1"),
            Err(QueryError::Encoding { param, .. }) if param == "%E9"
        ));
    }

    #[test]
    fn numbers_that_are_not() {
        let q = Query::parse("startIndex=one&count=-5").unwrap();
        assert!(matches!(q.start_index_number(), Some(Err(_))));
        assert_eq!(q.count_number(), Some(Ok(-5)));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn encode(s: &str) -> String {
            s.bytes().map(|b| format!("%{b:02X}")).collect()
        }

        proptest! {
            #![proptest_config(crate::scim::filter::tests::config(256))]

            #[test]
            fn any_value_round_trips(name in "[a-z]{1,8}", value in "\\PC{0,30}") {
                let q = Query::parse(&format!("{}={}", encode(&name), encode(&value))).unwrap();
                let got = match name.as_str() {
                    "filter" => q.filter.clone(),
                    "count" => q.count.clone(),
                    "cursor" => q.cursor.clone(),
                    _ => q.others.first().map(|(_, v)| v.clone()),
                };
                prop_assert_eq!(got, Some(value));
            }

            #[test]
            fn never_panics(raw in "\\PC{0,60}") {
                let _ = Query::parse(&raw);
            }
        }
    }
}
