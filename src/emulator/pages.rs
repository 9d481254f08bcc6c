//! ListUsers and ListGroups pages, in the two formats of the live guide.
//!
//! Without `cursor` (ListUsers › Examples): `totalResults`, `itemsPerPage`, `startIndex`
//! and the first `count` matches in creation order. With `cursor` (ListUsers › Query
//! Parameters, Pagination Examples): `itemsPerPage` (the items on this page), `nextCursor`
//! unless this is the last page, and the matches in id order after the cursor's position.
//!
//! A cursor holds the last id it returned, not an offset: ids never change and are
//! ordered as byte strings whatever their shape (AWS's old `9067729b3d-…` ids, the live
//! guide's plain UUIDs, anything a state file holds), so a user that exists from the
//! first page to the last is returned exactly once even when others are created or
//! deleted between pages. A user created behind the cursor's position is not returned;
//! one created ahead of it is. The cursor also holds the list it belongs to and a hash
//! of the filter, so a changed filter is refused: "ValidationException … if filter
//! parameters are changed between pagination requests" (ListUsers › Errors). A changed
//! `count` is not: the guide names only the filter, and refusing it would stop a reader
//! that asks for a different page size midway, for no gain.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;

use super::reply::{ApiError, Reply, LIST_RESPONSE_SCHEMA};
use crate::scim::Query;

/// Results a page holds at most, and the default `count`: "up to a maximum of 100
/// results per page", "Default: 100" (ListUsers, ListGroups › Query Parameters).
pub(crate) const MAX_RESULTS: usize = 100;

/// The longest cursor accepted: ours are a letter, 16 hex digits and one id, base64.
const MAX_CURSOR_BYTES: usize = 1_024;

/// Which list a cursor walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    Users,
    Groups,
}

impl Listing {
    fn tag(self) -> char {
        match self {
            Listing::Users => 'u',
            Listing::Groups => 'g',
        }
    }
}

/// The envelope without `cursor`, in the key order of the guide's examples.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListResponse<T> {
    pub total_results: usize,
    pub items_per_page: usize,
    pub start_index: usize,
    pub schemas: [&'static str; 1],
    #[serde(rename = "Resources")]
    pub resources: Vec<T>,
}

impl<T> ListResponse<T> {
    /// The first `count` of `matches` (at most [`MAX_RESULTS`]). `startIndex` is always
    /// 1: AWS ignores the parameter (ListUsers › Not supported).
    ///
    /// `totalResults` counts every match, not only the returned ones. The live guide
    /// leaves open whether it is the true total or the capped number (its filtered
    /// example shows 100 with 100 returned); the true total tells a reader that more
    /// exist, which it can then read with `cursor`, where the capped number would let it
    /// take a partial list for the whole one and act on it.
    pub fn page(matches: Vec<T>, count: usize) -> ListResponse<T> {
        let total = matches.len();
        let resources: Vec<T> = matches.into_iter().take(count.min(MAX_RESULTS)).collect();
        ListResponse {
            total_results: total,
            items_per_page: resources.len(),
            start_index: 1,
            schemas: [LIST_RESPONSE_SCHEMA],
            resources,
        }
    }
}

/// The envelope with `cursor` (ListUsers › Pagination Examples): no `totalResults` or
/// `startIndex`; `nextCursor` absent on the last page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CursorPage<T> {
    items_per_page: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    schemas: [&'static str; 1],
    #[serde(rename = "Resources")]
    resources: Vec<T>,
}

/// `count` as the emulator applies it: 1 to 100, default 100 (Query Parameters). The
/// guide names no error for a value out of range, so rather than break a sync over it
/// the emulator clamps: above 100 is 100; below 1 is 0 without `cursor` (RFC 7644
/// §3.4.2.4: `totalResults` only) and 1 with it (a page must make progress).
pub(crate) fn count(query: &Query) -> usize {
    let paged = query.cursor.is_some();
    match query.count_number() {
        Some(Ok(n)) if n < 1 => usize::from(paged),
        Some(Ok(n)) => usize::try_from(n.min(MAX_RESULTS as i64)).unwrap_or(MAX_RESULTS),
        _ => MAX_RESULTS,
    }
}

/// FNV-1a over the filter's canonical text: equal filters, however encoded, hash alike.
fn filter_hash(filter: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in filter.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The cursor after `last_id`: URL-safe base64 (no `+`, which a query string would read
/// as a space), within the guide's pattern `[-a-zA-Z0-9+=/:_]*`.
fn encode_cursor(listing: Listing, filter: &str, last_id: &str) -> String {
    let text = format!("{}{:016x}{last_id}", listing.tag(), filter_hash(filter));
    URL_SAFE_NO_PAD.encode(text)
}

/// Whether `cursor` fits the guide's pattern `[-a-zA-Z0-9+=/:_]*`.
fn fits_pattern(cursor: &str) -> bool {
    cursor
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-+=/:_".contains(&b))
}

/// The last id a cursor returned; `None` for the empty cursor that starts a walk.
fn decode_cursor(listing: Listing, filter: &str, cursor: &str) -> Result<Option<String>, ApiError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    if cursor.len() > MAX_CURSOR_BYTES || !fits_pattern(cursor) {
        return Err(ApiError::invalid());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| ApiError::invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| ApiError::invalid())?;
    let mut chars = text.char_indices();
    let tag = chars.next().map(|(_, c)| c);
    let (hash, last_id) = match text.get(1..17).zip(text.get(17..)) {
        Some((hash, id)) if tag == Some(listing.tag()) && !id.is_empty() => (hash, id),
        _ => return Err(ApiError::invalid()),
    };
    let hash = u64::from_str_radix(hash, 16).map_err(|_| ApiError::invalid())?;
    if hash != filter_hash(filter) {
        // ListUsers › Errors: "… or if filter parameters are changed between pagination
        // requests." AWS's exact detail for it is not known; its generic one it is.
        return Err(ApiError::invalid());
    }
    Ok(Some(last_id.to_owned()))
}

/// The answer to a list request: `matches` (in creation order) as one page of the
/// format the query asks for. `filter` is the filter's canonical text ("" without one).
pub(crate) fn answer<'a, R, T: Serialize>(
    query: &Query,
    listing: Listing,
    filter: &str,
    matches: Vec<&'a R>,
    id: impl Fn(&R) -> &str,
    render: impl Fn(&'a R) -> T,
) -> Result<Reply, ApiError> {
    let count = count(query);
    let Some(cursor) = query.cursor.as_deref() else {
        let resources = matches.into_iter().map(render).collect();
        return Ok(Reply::ok(&ListResponse::page(resources, count)));
    };
    let after = decode_cursor(listing, filter, cursor)?;
    let mut ahead: Vec<&R> = match &after {
        None => matches,
        Some(last) => matches
            .into_iter()
            .filter(|r| id(r) > last.as_str())
            .collect(),
    };
    ahead.sort_unstable_by(|a, b| id(a).cmp(id(b)));
    let more = ahead.len() > count;
    ahead.truncate(count);
    let next_cursor = match ahead.last() {
        Some(last) if more => Some(encode_cursor(listing, filter, id(last))),
        _ => None,
    };
    let resources: Vec<T> = ahead.into_iter().map(render).collect();
    Ok(Reply::ok(&CursorPage {
        items_per_page: resources.len(),
        next_cursor,
        schemas: [LIST_RESPONSE_SCHEMA],
        resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_fit_the_pattern_and_round_trip() {
        for id in [
            "9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074",
            "5418a458-c0a1-7066-bdd4-9ea543c0cf6d",
            "a+b/c=d é",
        ] {
            let c = encode_cursor(Listing::Users, "userName eq \"x\"", id);
            assert!(fits_pattern(&c) && !c.contains('+'), "{c}");
            assert_eq!(
                decode_cursor(Listing::Users, "userName eq \"x\"", &c),
                Ok(Some(id.to_owned()))
            );
            // Another filter, or the other list: refused.
            assert_eq!(
                decode_cursor(Listing::Users, "userName eq \"y\"", &c),
                Err(ApiError::invalid())
            );
            assert_eq!(
                decode_cursor(Listing::Groups, "userName eq \"x\"", &c),
                Err(ApiError::invalid())
            );
        }
        assert_eq!(decode_cursor(Listing::Users, "", ""), Ok(None));
        for bad in ["not base64!", "%%%", "dQ", &"A".repeat(2_000), "////"] {
            assert_eq!(
                decode_cursor(Listing::Users, "", bad),
                Err(ApiError::invalid()),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        /// Any cursor text: a position or a 400, never a panic.
        #[test]
        fn any_cursor_is_answered(cursor in "\\PC{0,80}", filter in "\\PC{0,20}") {
            let _ = decode_cursor(Listing::Users, &filter, &cursor);
        }
    }

    #[test]
    fn count_is_clamped_to_the_guides_range() {
        let q = |raw: &str| Query::parse(raw).unwrap();
        assert_eq!(count(&q("")), 100);
        assert_eq!(count(&q("count=3")), 3);
        assert_eq!(count(&q("count=500")), 100);
        assert_eq!(count(&q("count=x")), 100);
        assert_eq!(count(&q("count=-1")), 0);
        assert_eq!(count(&q("count=0&cursor")), 1);
    }

    #[test]
    fn lists_cap_at_100() {
        let page = ListResponse::page((0..170).collect::<Vec<_>>(), MAX_RESULTS);
        assert_eq!(
            (page.total_results, page.items_per_page, page.start_index),
            (170, 100, 1)
        );
    }
}
