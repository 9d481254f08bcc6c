//! Real outside programs the tests start (chromium + chromedriver, pebble, redis-server).
//!
//! A missing program makes its tests print one line saying what to install and return
//! early; with `SCIMGUARD_TEST_EXTERNAL=require` (set by `.ci/run`) a missing program
//! fails the test instead, so CI can never pass by skipping.

use std::path::PathBuf;

/// The environment variable that turns a missing program into a failure.
pub const REQUIRE_VAR: &str = "SCIMGUARD_TEST_EXTERNAL";

/// Finds `program` on `PATH` (or in the usual Debian places). `None` means the calling
/// test should return at once: the skip line has been printed. Panics with the install
/// hint when `SCIMGUARD_TEST_EXTERNAL=require`.
pub fn program(program: &str, debian_package: &str) -> Option<PathBuf> {
    if let Some(found) = find(program) {
        return Some(found);
    }
    let hint = format!(
        "{program} not found: install it with `apt-get install {debian_package}` to run this test"
    );
    if std::env::var(REQUIRE_VAR).as_deref() == Ok("require") {
        panic!("{hint} ({REQUIRE_VAR}=require)");
    }
    eprintln!("skipped: {hint}");
    None
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/lib/chromium"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
