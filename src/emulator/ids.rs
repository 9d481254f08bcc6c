//! Ids, tokens and times in AWS's formats, without a UUID or date crate: a version 4
//! UUID is 16 random bytes with two fields set, and a UTC date is a few lines of
//! arithmetic (Howard Hinnant's `civil_from_days`).

use std::time::{SystemTime, UNIX_EPOCH};

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// A random version 4 UUID in lower case, e.g. `abbf9e53-9ecc-46d2-8efe-104a66ff128f`:
/// AWS's `x-amzn-RequestId` and the second half of every resource id.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The 10 hex digits before the UUID in every id of one identity store
/// (`9067729b3d` in `9067729b3d-94f1e0b3-c394-48d5-8ab1-2c122a167074`). AWS takes them
/// from the identity store id `d-9067729b3d`; so does the emulator when the tenant has
/// that shape, and otherwise derives them from the tenant (FNV-1a), so a tenant keeps
/// its prefix across restarts.
pub(crate) fn id_prefix(tenant: &str) -> String {
    if let Some(digits) = tenant.strip_prefix("d-") {
        if digits.len() == 10 && digits.bytes().all(|b| HEX.contains(&b)) {
            return digits.to_owned();
        }
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hex(&hash.to_be_bytes())[..10].to_owned()
}

/// A new resource id: `{prefix}-{uuid}`.
pub(crate) fn resource_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_v4())
}

/// A random bearer token: 32 random bytes as 64 hex digits (256 bits).
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

/// Now, as whole seconds and the milliseconds within the second since the Unix epoch.
pub(crate) fn now() -> (u64, u32) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs(), since.subsec_millis())
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction.
    (year, month as u32, day as u32)
}

fn split(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rest / 3_600, rest / 60 % 60, rest % 60)
}

/// `meta.created` / `meta.lastModified`: `2020-03-31T02:36:15Z` (UTC, whole seconds).
pub(crate) fn rfc3339(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = split(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// An error body's `timeStamp`: `2022-04-15 14:09:03.693` (UTC, milliseconds).
pub(crate) fn aws_time_stamp(secs: u64, millis: u32) -> String {
    let (y, mo, d, h, mi, s) = split(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{millis:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_the_guide() {
        // CreateUser › Example Response: Date: Tue, 31 Mar 2020 02:36:15 GMT.
        assert_eq!(rfc3339(1_585_622_175), "2020-03-31T02:36:15Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // Leap day and the turn of a century.
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(
            aws_time_stamp(1_650_031_743, 693),
            "2022-04-15 14:09:03.693"
        );
        // Far future: no overflow, no panic.
        let _ = rfc3339(u64::MAX);
    }

    #[test]
    fn ids_have_aws_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{u}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{u}");
        assert_eq!(id_prefix("d-9067729b3d"), "9067729b3d");
        let other = id_prefix("a-custom-tenant");
        assert_eq!(other.len(), 10);
        assert_eq!(other, id_prefix("a-custom-tenant"));
        let id = resource_id("9067729b3d");
        assert_eq!(id.len(), 10 + 1 + 36);
        assert!(id.starts_with("9067729b3d-"));
        let t = random_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, random_token());
    }
}
