#![allow(dead_code)]
#[path = "it/emulator.rs"]
mod emulator;
#[path = "it/support.rs"]
mod support;
