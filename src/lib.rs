//! # scimguard
//!
//! An intercepting validation proxy for SCIM 2.0 provisioning into AWS IAM Identity
//! Center: it sits between an identity provider and AWS's SCIM endpoint, checks every
//! request against AWS's constraints (kept as data in `rules/`), and forwards, rewrites
//! or rejects it, explaining each exchange. Without an upstream it proxies to an
//! embedded emulator of AWS's SCIM service.
//!
//! ## Map
//!
//! | part | role |
//! |---|---|
//! | [`cli`], [`config`] | raw flags (clap) → one validated [`config::Config`] (file + env + flags) |
//! | [`server`] | accept, TLS, HTTP/1.1 and h2; connection caps, header and idle timeouts; graceful shutdown |
//! | [`target`], [`unparsed`] | the request target's length and dot-segments; AWS-shaped answers to what hyper refuses |
//! | [`pipeline`] | THE flow of one request: every phase, in order |
//! | [`exchange`] | the per-request record the phases share |
//! | [`batches`] | member changes over AWS's 100 split into sequential requests, each member moved once |
//! | [`body`] | response bodies: whole, or the upstream's answer streamed as it arrives |
//! | [`upstream`] | pooled hyper-util client over hyper-rustls; hop-by-hop headers |
//! | [`explain`] | the explanation of every exchange: log lines, `--explain-log` JSON |
//! | [`guard`] | the blast-radius guard: destructive changes counted per tenant, held past a limit until released |
//! | [`throttle`] | budgets per tenant, local (governor) or shared in Redis: admit, wait, or refuse with Retry-After |
//! | [`metrics`], [`admin`] | counters and histograms; /metrics, /healthz, /readyz; the live view of recent exchanges (`--view-history`, `--admin-token`); the guard's /guard |
//! | [`report`] | `scimguard report`: one self-contained HTML file of captures |
//! | [`record`], [`har`] | captures (redacted JSON lines) and their HAR 1.2 export |
//! | [`redact`] | THE one redaction of secrets (and PII) used by every output |
//! | [`offline`], [`replay`] | `check` captures or request files; `replay` a capture |
//! | [`logging`] | tracing-subscriber's text or JSON lines, through a buffered writer thread |
//! | [`scim`] | SCIM's vocabulary, knows nothing of AWS |
//! | [`rules`], [`verdict`] | AWS's constraints as data; findings × mode → verdict |
//! | [`repair`] | what AWS refuses (members replace, remove-all, PUT /Groups) → read members, diff, batches |
//! | [`emulator`] | the embedded AWS SCIM service: the default upstream |
//! | [`tls`] | listener and upstream TLS: certificate files (SIGHUP reload), ACME, self-signed |
//! | [`auth`] | token isolation: client tokens checked first, the AWS token swapped in |
//! | [`error`] | errors that end a request, with whose fault they are |
//!
//! Everything that decides is pure — classify, parse, check, decide, rewrite: see
//! [`verdict::judge`] — and is unit-tested, benchmarked and fuzzed without a socket; the
//! shell (`server`, `upstream`, `record`'s writer, `throttle`'s wait) only does I/O.
//! [`pipeline`]'s module docs list the phases of one request in order.

pub mod admin;
pub mod auth;
pub mod batches;
pub mod body;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod error;
pub mod exchange;
pub mod explain;
pub mod guard;
pub mod har;
pub mod logging;
pub mod metrics;
pub mod offline;
pub mod pipeline;
pub mod record;
pub mod redact;
pub mod repair;
pub mod replay;
pub mod report;
pub mod rules;
pub mod scim;
pub mod server;
pub mod target;
pub mod throttle;
pub mod tls;
pub mod unparsed;
pub mod upstream;
pub mod verdict;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

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
    #[error("no upstream is configured. Fix: pass --upstream URL (e.g. https://scim.us-east-1.amazonaws.com/{{tenant}}/scim/v2), or start with Proxy::start to use the embedded emulator")]
    NoUpstream,
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    #[error("cannot open {what} file {}: {source}. Fix: check that its directory exists and is writable", path.display())]
    Output {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
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
    /// Counters and histograms of the traffic, served on `--admin`.
    pub metrics: metrics::Metrics,
    /// What /readyz answers.
    pub readiness: admin::Readiness,
    /// Where /metrics, /healthz and /readyz are served, if anywhere.
    pub admin: Option<std::net::SocketAddr>,
    /// Who may use the admin listener (`--admin-token`).
    pub admin_auth: Arc<admin::AdminAuth>,
    admin_listener: Option<TcpListener>,
    /// The in-process emulator serving as the upstream, when no upstream was given.
    pub embedded: Option<Embedded>,
    /// What SIGHUP re-reads: the listener's certificate files and the token files.
    pub reloader: Reloader,
}

/// Re-reads, on SIGHUP, what can change safely while serving: `--tls-cert`/`--tls-key`
/// (new connections get the new pair, open ones keep theirs) and the token files. A
/// file that does not load is refused with a log line and the one in service kept.
#[derive(Clone, Default)]
pub struct Reloader {
    tls: Option<Arc<tls::ListenerTls>>,
    tokens: Option<Arc<auth::TokenIsolation>>,
    rules: Option<(Arc<Pipeline>, Arc<RulesSource>)>,
}

/// Reads the rules again, as start-up did (`--rules`, the config file's `[rules]`,
/// `--rule`); the message says why they cannot be used.
pub type RulesSource = dyn Fn() -> Result<rules::RuleSet, String> + Send + Sync;

impl Reloader {
    /// Reloads everything; returns whether all of it loaded.
    pub fn reload(&self) -> bool {
        let mut ok = true;
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => tracing::info!(
                    "reload: TLS certificate and key re-read; new connections get them"
                ),
                Err(e) => {
                    ok = false;
                    tracing::error!(error = %e, "reload: the new TLS certificate or key was refused; the one in service is kept");
                }
            }
        }
        if let Some((pipeline, source)) = &self.rules {
            match source() {
                Ok(rules) => {
                    let count = rules.rules().len();
                    pipeline.replace_rules(rules);
                    tracing::info!(
                        rules = count,
                        "reload: rules re-read; new requests are judged by them"
                    );
                }
                Err(e) => {
                    ok = false;
                    tracing::error!(error = %e, "reload: the new rules were refused; the rules in effect are kept");
                }
            }
        }
        if let Some(tokens) = &self.tokens {
            match tokens.reload() {
                Ok(()) => tracing::info!("reload: token files re-read"),
                Err(e) => {
                    ok = false;
                    tracing::error!(error = %e, "reload: the new token files were refused; the tokens in effect are kept");
                }
            }
        }
        ok
    }

    /// Also re-reads the proxy's rules from `source` on reload. (The embedded
    /// emulator keeps the rules it started with.)
    pub fn with_rules(mut self, pipeline: Arc<Pipeline>, source: Arc<RulesSource>) -> Self {
        self.rules = Some((pipeline, source));
        self
    }

    /// The listener's certificate source, when it serves HTTPS.
    pub fn tls(&self) -> Option<&Arc<tls::ListenerTls>> {
        self.tls.as_ref()
    }
}

/// The embedded emulator, serving on a loopback port of its own.
pub struct Embedded {
    pub emulator: Arc<emulator::Emulator>,
    /// Where it listens (127.0.0.1, a free port).
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Builds everything that can fail before the first connection: TLS files, the
    /// upstream client.
    pub fn from_config(config: &Config) -> Result<Self, StartError> {
        let upstream_url = config.upstream.clone().ok_or(StartError::NoUpstream)?;
        Self::with_upstream(config, upstream_url)
    }

    /// Like [`Proxy::from_config`], but with no upstream configured it starts the
    /// embedded emulator of AWS's SCIM service on a loopback port and proxies to it, so
    /// scimguard works on a fresh machine with no AWS account.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        if config.upstream.is_some() {
            return Self::from_config(config);
        }
        let emulator = emulator::Emulator::new(config.emulator.clone())?;
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = TcpListener::bind(loopback)
            .await
            .map_err(|source| StartError::Listen {
                addr: loopback,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: loopback,
            source,
        })?;
        let options = ServerOptions::new(None, &config.limits);
        let task = tokio::spawn(server::serve(
            listener,
            emulator.clone(),
            options,
            std::future::pending(),
        ));
        let url =
            config::UpstreamUrl::parse(&format!("http://{addr}")).map_err(config::ConfigError)?;
        let mut proxy = Self::with_upstream(config, url)?;
        proxy.embedded = Some(Embedded {
            emulator,
            addr,
            task,
        });
        Ok(proxy)
    }

    fn with_upstream(
        config: &Config,
        upstream_url: config::UpstreamUrl,
    ) -> Result<Self, StartError> {
        let upstream = Upstream::new(upstream_url, config.upstream_ca.as_deref(), &config.limits)?;
        let metrics = metrics::Metrics::new();
        let listener_tls = match (&config.tls, &config.acme) {
            (Some(files), _) => Some(Arc::new(tls::ListenerTls::from_files(
                files,
                metrics.clone(),
            )?)),
            (None, Some(acme)) => Some(Arc::new(tls::ListenerTls::from_acme(
                acme,
                metrics.clone(),
            )?)),
            (None, None) => None,
        };
        let tls = listener_tls.as_ref().map(|t| t.acceptor());
        let readiness = admin::Readiness::new();
        let recorder = match &config.record {
            Some((path, options)) => Some(record::Recorder::open(path, options.clone()).map_err(
                |source| StartError::Output {
                    what: "--record",
                    path: path.clone(),
                    source,
                },
            )?),
            None => None,
        };
        if let Some(recorder) = &recorder {
            recorder.count_drops_in(metrics.clone());
        }
        let explain_log = match &config.explain_log {
            Some(path) => {
                Some(
                    explain::ExplainLog::open(path).map_err(|source| StartError::Output {
                        what: "--explain-log",
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        if let Some(log) = &explain_log {
            log.count_drops_in(metrics.clone());
        }
        Ok(Proxy {
            pipeline: Pipeline::new(
                upstream,
                config,
                metrics.clone(),
                readiness.clone(),
                recorder,
                explain_log,
            ),
            metrics,
            readiness,
            admin: config.admin,
            admin_auth: Arc::new(admin::AdminAuth::new(config.admin_token.as_deref())),
            admin_listener: None,
            reloader: Reloader {
                tls: listener_tls,
                tokens: config.token_isolation.clone(),
                rules: None,
            },
            options: ServerOptions::new(tls, &config.limits),
            embedded: None,
        })
    }

    /// Binds the admin address (`--admin`), if one is configured; returns where it
    /// listens (port 0 becomes a real port).
    pub async fn bind_admin(&mut self) -> Result<Option<std::net::SocketAddr>, StartError> {
        let Some(addr) = self.admin else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartError::Listen { addr, source })?;
        self.admin_listener = Some(listener);
        Ok(Some(local))
    }

    /// Serves on `listener` until `shutdown` resolves, then drains. With a bound admin
    /// listener, also serves /metrics, /healthz and /readyz, and probes the upstream
    /// while idle so /readyz knows it is reachable.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut background = Vec::new();
        if let Some(acme) = self.reloader.tls.as_ref().and_then(|t| t.spawn_acme()) {
            background.push(acme);
        }
        if let Some(admin_listener) = self.admin_listener {
            let mut rx = stopped.clone();
            let state = admin::AdminState {
                metrics: self.metrics.clone(),
                readiness: self.readiness.clone(),
                view: self.pipeline.view().cloned(),
                auth: self.admin_auth.clone(),
                guard: self.pipeline.guard().cloned(),
            };
            background.push(tokio::spawn(admin::serve(
                admin_listener,
                state,
                async move {
                    let _ = rx.changed().await;
                },
            )));
            background.push(tokio::spawn(self.pipeline.clone().probe_upstream_forever()));
        }
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let pipeline = self.pipeline.clone();
        server::serve(listener, self.pipeline, self.options, shutdown).await;
        // Every exchange has completed: put the capture and explanations on disk.
        pipeline.close().await;
        for task in background {
            task.abort();
        }
        // The proxy has drained: nothing can reach the embedded emulator any more.
        if let Some(embedded) = self.embedded {
            embedded.task.abort();
        }
    }
}
