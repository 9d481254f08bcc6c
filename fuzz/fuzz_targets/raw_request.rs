//! See [`checks::raw_request`] for what is fed and asserted.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| checks::raw_request(data));
