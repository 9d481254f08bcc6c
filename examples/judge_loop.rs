//! Judges one of the benchmark requests N times, for instruction counts that do not
//! drift with the machine (criterion's timings on this shared machine move by 10–30 %):
//!
//! ```sh
//! cargo build --release --example judge_loop
//! valgrind --tool=callgrind target/release/examples/judge_loop user 1100
//! ```
//!
//! Subtract a 100-iteration run and divide by 1000 for instructions per request.
//! Kinds: `user` (1.2 KB CreateUser), `patch` (PatchGroup adding 100 members), `list`
//! (ListUsers with a filter), `get` (GetUser, no body), `rewritten` (the CreateUser with
//! an email `display` and a `password`, which rules drop: the path where a rule fires).

use scimguard::rules::{Mode, RuleSet};
use scimguard::verdict::judge;

/// The binary's allocator, so the counts match the proxy's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let rules = RuleSet::embedded().expect("embedded rules");
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "user".into());
    let times: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let (method, target, body): (&str, &str, &[u8]) = match kind.as_str() {
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
        "rewritten" => (
            "POST",
            "/t-1/scim/v2/Users",
            include_bytes!("../benches/data/create_user_rewritten.json"),
        ),
        "get" => ("GET", "/t-1/scim/v2/Users/abc", b""),
        _ => (
            "GET",
            "/t-1/scim/v2/Users?filter=userName%20eq%20%22jdoe%22",
            b"",
        ),
    };
    for _ in 0..times {
        std::hint::black_box(judge(
            &rules,
            Mode::Enforce,
            method,
            target,
            std::hint::black_box(body),
        ));
    }
}
