//! scimguard's integration tests: one binary, a module per area, all over real sockets
//! on 127.0.0.1 port 0.

mod cli;
mod debugging;
mod emulator;
#[allow(dead_code)] // until the browser and ACME tests call it
mod external;
mod forwarding;
mod guard;
mod limits;
mod pipeline;
mod recording;
mod rules;
mod secrets;
mod shared_throttle;
mod shutdown;
mod support;
mod throttle;
mod tls;
mod verdicts;
