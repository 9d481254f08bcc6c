//! See [`checks::config_file`] for what is fed and asserted.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::config_file(data));
