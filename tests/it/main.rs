//! scimguard's integration tests: one binary, a module per area, all over real sockets
//! on 127.0.0.1 port 0.

mod acme;
mod auth;
mod cli;
mod connections;
mod debugging;
mod deployment;
mod emulator;
mod external;
mod forwarding;
mod fuzz_seeds;
mod guard;
mod limits;
mod linear;
mod pipeline;
mod real_clients;
mod recording;
mod reload;
mod repair;
mod rules;
mod secrets;
mod shared_throttle;
mod shutdown;
mod streaming;
mod support;
mod throttle;
mod tls;
mod verdicts;
mod view;
