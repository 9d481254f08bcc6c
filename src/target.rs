//! The request target's own checks, before anything else reads it: its length, and no
//! dot-segments. The throttle's tenant, the rules and the upstream URL all come from a
//! path that passed these.

use http::Uri;

use crate::error::ErrorKind;

/// Longest request target scimguard accepts: 8 KiB. AWS's SCIM paths are under 200
/// bytes; the longest real query, a ListUsers filter, stays well below 1 KiB. Beyond
/// this the answer is an AWS-shaped 414 of scimguard's own. (Targets over 65,534 bytes
/// never become a request at all: the `http` crate cannot hold them, and hyper's
/// bare 414 is replaced in [`crate::unparsed`].)
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

/// Refuses a target over [`MAX_TARGET_BYTES`] or with a dot-segment in its path.
pub fn check(uri: &Uri) -> Result<(), ErrorKind> {
    let target = uri.path_and_query().map_or("", |pq| pq.as_str());
    if target.len() > MAX_TARGET_BYTES {
        return Err(ErrorKind::TargetTooLong {
            length: target.len(),
            limit: MAX_TARGET_BYTES,
        });
    }
    if let Some(segment) = dot_segment(uri.path()) {
        return Err(ErrorKind::DotSegment {
            path: uri.path().to_owned(),
            segment,
        });
    }
    Ok(())
}

/// The first segment of `path` that is `.` or `..` once `%2e` is read as a dot, as it
/// was sent. `%2f` and `%5c` count as separators too: some servers decode them into
/// `/` and `\`, so `..%2f..` climbs just as `../..` does (RFC 3986 §5.2.4 removes
/// dot-segments; an upstream may do it after scimguard judged the path).
fn dot_segment(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let decoded = lower
        .replace("%2e", ".")
        .replace("%2f", "/")
        .replace("%5c", "\\");
    let dotted = decoded
        .split(['/', '\\'])
        .any(|segment| segment == "." || segment == "..");
    if !dotted {
        return None;
    }
    // Name the segment as the client wrote it.
    path.split('/')
        .find(|raw| {
            let raw = raw.to_ascii_lowercase();
            raw.contains('.') || raw.contains("%2e")
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_in_every_spelling() {
        for path in [
            "/t/scim/v2/../../t-b/scim/v2/Users",
            "/t/scim/v2/./Users",
            "/t/scim/v2/%2e%2e/Users",
            "/t/scim/v2/%2E%2e/Users",
            "/t/scim/v2/.%2E/Users",
            "/t/scim/v2/%2e/Users",
            "/t/scim/v2/Users/..",
            "/..",
            "/t/scim/v2/..%2f..%2fUsers",
            "/t/scim/v2/..%5CUsers",
        ] {
            assert!(dot_segment(path).is_some(), "{path}");
        }
        for path in [
            "/t/scim/v2/Users",
            "/t/scim/v2/Users/a.b",
            "/t/scim/v2/Users/...",
            "/t/scim/v2/Users/.hidden",
            "/t/scim/v2/Users/%2e%2e%2e",
            "/",
        ] {
            assert_eq!(dot_segment(path), None, "{path}");
        }
        assert_eq!(
            dot_segment("/a/%2E%2e/b").as_deref(),
            Some("%2E%2e"),
            "the segment as sent"
        );
    }

    #[test]
    fn a_target_of_exactly_the_limit_passes() {
        let exact = format!("/{}", "a".repeat(MAX_TARGET_BYTES - 1));
        assert!(check(&exact.parse().unwrap()).is_ok());
        let over = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
        assert!(matches!(
            check(&over.parse().unwrap()),
            Err(ErrorKind::TargetTooLong { length, .. }) if length == MAX_TARGET_BYTES + 1
        ));
    }
}
