//! # scimguard
//!
//! An intercepting validation proxy for SCIM 2.0 provisioning into AWS IAM Identity
//! Center: it sits between an identity provider and AWS's SCIM endpoint and forwards
//! each request to the one configured upstream.
//!
//! ## Map
//!
//! | part | role |
//! |---|---|
//! | [`cli`], [`config`] | raw flags (clap) → one validated [`config::Config`] (file + env + flags) |
//! | [`server`] | accept, TLS, HTTP/1.1 and h2, header timeout, graceful shutdown |
//! | [`pipeline`] | THE flow of one request: every phase, in order |
//! | [`exchange`] | the per-request record the phases share |
//! | [`upstream`] | pooled hyper-util client over hyper-rustls; hop-by-hop headers |
//! | [`explain`] | one log line per exchange, on every path |
//! | [`logging`] | buffered log output: a copy per line, not a system call |
//! | [`scim`] | SCIM's vocabulary, knows nothing of AWS |
//! | [`tls`] | listener and upstream TLS, self-signed certificates |
//! | [`error`] | errors that end a request, with whose fault they are |
//!
//! Everything that decides is pure and lives below `pipeline`; the shell (`server`,
//! `upstream`) only does I/O.

pub mod cli;
pub mod config;
pub mod error;
pub mod exchange;
pub mod explain;
pub mod logging;
pub mod pipeline;
pub mod rules;
pub mod scim;
pub mod server;
pub mod tls;
pub mod upstream;
pub mod verdict;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::server::ServerOptions;
use crate::upstream::Upstream;

/// Start-up failed; the message names the setting or file and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("no --upstream given, and the embedded AWS SCIM emulator is not available yet. Fix: pass --upstream URL (e.g. https://scim.us-east-1.amazonaws.com/{{tenant}}/scim/v2)")]
    NoUpstream,
    #[error("cannot listen on {addr}: {source}. Fix: choose a free address with --listen")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A proxy ready to serve: the pipeline and the listener's options, built from a config.
pub struct Proxy {
    pub pipeline: Arc<Pipeline>,
    pub options: ServerOptions,
}

impl Proxy {
    /// Builds everything that can fail before the first connection: TLS files, the
    /// upstream client.
    pub fn from_config(config: &Config) -> Result<Self, StartError> {
        let upstream_url = config.upstream.clone().ok_or(StartError::NoUpstream)?;
        let upstream = Upstream::new(upstream_url, config.upstream_ca.as_deref(), &config.limits)?;
        let tls = match &config.tls {
            Some(files) => Some(TlsAcceptor::from(tls::server_config(
                &files.cert,
                &files.key,
            )?)),
            None => None,
        };
        Ok(Proxy {
            pipeline: Pipeline::new(
                upstream,
                config.limits,
                config.forwarded_headers,
                config.rules.clone(),
                config.mode,
            ),
            options: ServerOptions {
                tls,
                header_timeout: config.limits.header_timeout,
                shutdown_timeout: config.limits.shutdown_timeout,
            },
        })
    }

    /// Serves on `listener` until `shutdown` resolves, then drains.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        server::serve(listener, self.pipeline, self.options, shutdown).await
    }
}
