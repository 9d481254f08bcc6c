//! The fuzz targets' seed and crash inputs (`fuzz/seeds/<target>/`), run on stable
//! through the very checks the fuzzers run (`fuzz/fuzz_targets/checks.rs`), so
//! `cargo test` keeps them passing where there is no nightly toolchain.

use std::path::Path;

#[path = "../../fuzz/fuzz_targets/checks.rs"]
mod checks;

/// Runs every file of `fuzz/seeds/<target>/` through `check`; a target must have seeds.
fn run_seeds(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seed", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "{target}: {} panics", file.display());
    }
}

macro_rules! seed_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                run_seeds(stringify!($target), checks::$target);
            }
        )*
    };
}

seed_tests!(
    body_judging,
    capture,
    raw_request,
    rules_file,
    config_file,
    patch_request,
    emulator_state,
    emulator_user,
    retry_after,
);
