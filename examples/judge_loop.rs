// Temporary profiling driver (not committed): judge the bench bodies N times.
use scimguard::rules::{Mode, RuleSet};
use scimguard::verdict::judge;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
fn main() {
    let rules = RuleSet::embedded().unwrap();
    let which = std::env::args().nth(1).unwrap_or("user".into());
    let n: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1000);
    let (m, t, b): (&str, &str, &[u8]) = match which.as_str() {
        "user" => (
            "POST",
            "/t-1/scim/v2/Users",
            include_bytes!("../benches/data/create_user.json"),
        ),
        "patch" => (
            "PATCH",
            "/t-1/scim/v2/Groups/abc",
            include_bytes!("../benches/data/patch_group_add100.json"),
        ),
        _ => (
            "GET",
            "/t-1/scim/v2/Users?filter=userName%20eq%20%22jdoe%22",
            b"",
        ),
    };
    for _ in 0..n {
        std::hint::black_box(judge(&rules, Mode::Enforce, m, t, std::hint::black_box(b)));
    }
}
