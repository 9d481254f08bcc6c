//! scimguard's integration tests: one binary, a module per area, all over real sockets
//! on 127.0.0.1 port 0.

mod cli;
mod debugging;
mod emulator;
#[allow(dead_code)] // until the browser, ACME and Redis tests call it
mod external;
mod forwarding;
mod fuzz_seeds;
mod limits;
mod pipeline;
mod recording;
mod rules;
mod secrets;
mod shutdown;
mod support;
mod throttle;
mod tls;
mod verdicts;
