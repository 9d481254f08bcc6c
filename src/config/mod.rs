//! One validated [`Config`], built once from the flags, the `SCIMGUARD_*` environment
//! (both through [`crate::cli::RunArgs`]) and the `--config` TOML file, in that order of
//! precedence. Every bad setting stops start-up with a [`ConfigError`] that names the
//! setting, what was wrong and how to fix it.

mod file;
pub use file::{EmulatorSection, FileConfig, RulesSection, ThrottleSection};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;

use crate::cli::RunArgs;
use crate::emulator::{random_token, EmulatorConfig, DEMO_TENANT};
use crate::rules::{Action, Mode, RuleSet};
use crate::throttle::ThrottleConfig;

/// Where the proxy listens when nothing says otherwise: loopback only, so a first trial
/// never exposes the proxy to the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Largest request body accepted: 1 MiB, AWS's own `maxPayloadSize` of 1,048,576 bytes
/// (guide › ServiceProviderConfig › bulk.maxPayloadSize). AWS refuses anything larger,
/// so buffering more would only waste memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_048_576;

/// A client must finish sending its request headers within 10 s; a slow-loris client
/// that trickles bytes is disconnected then. IdPs send their headers in one write.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A keep-alive connection with no request in flight closes after 75 s, as nginx's
/// `keepalive_timeout`: an IdP reuses its connections within seconds during a sync, and
/// an idle client should not hold a slot for ever.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

/// A request body must arrive whole within 30 s of its headers (→ 408): the largest
/// body AWS accepts (1 MiB) takes under a second on any link an IdP uses, and a body
/// trickled a byte at a time would otherwise hold its connection for ever.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// At most 10,000 client connections at once; the next waits in the kernel's accept
/// queue. Each costs a few KiB while idle; the open-files limit is raised to match.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// At most 1,000 connections at once from one address, so one client cannot take every
/// slot, while a load balancer's few addresses still fit.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;

/// With `--record`, a response body is recorded up to 1 MiB (AWS's largest request,
/// and over ten of its 50-resource list pages); a longer one is recorded cut, with a
/// marker, and still streams to the client whole.
pub const DEFAULT_RECORD_BODY_MAX_BYTES: usize = 1_048_576;

/// TCP + TLS connect to the upstream: 5 s. AWS's regional endpoints connect in well
/// under 100 ms, so 5 s only expires when the upstream is really unreachable (→ 502).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The upstream's whole response must arrive within 30 s (→ 504 otherwise). AWS answers
/// SCIM calls in under a second; Entra ID's provisioning client itself gives up near 60 s.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// On SIGINT/SIGTERM, in-flight requests get 30 s to finish — the same as the upstream
/// timeout, so a request that was forwarded just before the signal can still complete.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A setting that stops start-up. The message names the setting, what was found and
/// the fix, because the user reads it in a terminal and nowhere else.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn setting(name: &str, problem: impl std::fmt::Display, fix: impl std::fmt::Display) -> Self {
        let flag = name.replace('_', "-");
        let env = name.to_ascii_uppercase();
        ConfigError(format!(
            "invalid setting `{name}` (--{flag}, SCIMGUARD_{env} or `{name}` in the config file): {problem}. Fix: {fix}"
        ))
    }
}

/// The validated settings of `scimguard run`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None` means "use the embedded emulator".
    pub upstream: Option<UpstreamUrl>,
    pub tls: Option<TlsFiles>,
    pub upstream_ca: Option<PathBuf>,
    pub forwarded_headers: bool,
    pub limits: Limits,
    /// Settings given that have no effect, for `main` to log once logging is set up.
    pub warnings: Vec<String>,
    /// Enforce (act on findings) or observe (only report them).
    pub mode: Mode,
    /// The rules in effect: the embedded file or `--rules`, with action overrides.
    pub rules: RuleSet,
    /// The embedded emulator's settings, used when `upstream` is `None`.
    pub emulator: EmulatorConfig,
    /// Local throttling toward the upstream.
    pub throttle: ThrottleConfig,
    /// The blast-radius guard.
    pub guard: crate::guard::GuardConfig,
    /// `--throttle-store`: budgets shared with other replicas in Redis.
    pub throttle_store: Option<crate::throttle::StoreConfig>,
    /// Where /metrics, /healthz and /readyz are served, if anywhere.
    pub admin: Option<SocketAddr>,
    /// `--admin-token`: the bearer token the admin listener requires, if any.
    pub admin_token: Option<String>,
    /// `--view-history`: exchanges the live view keeps; 0: no view.
    pub view_history: usize,
    /// `--redact-pii`: hash PII in the capture and in the live view.
    pub redact_pii: bool,
    /// `--record`: the capture file and how to write it.
    pub record: Option<(PathBuf, crate::record::RecordOptions)>,
    /// `--explain-log`: one JSON explanation per exchange.
    pub explain_log: Option<PathBuf>,
    /// `--repair-max-members`, `--repair-timeout`: the bounds of a repair.
    pub repair: crate::repair::RepairSettings,
    /// `--acme-domain` and friends: the listener's certificate from an ACME CA.
    pub acme: Option<crate::tls::acme::AcmeSettings>,
    /// `--client-token-file` and `--upstream-token-file`: token isolation, its files
    /// read (they are re-read on SIGHUP).
    pub token_isolation: Option<std::sync::Arc<crate::auth::TokenIsolation>>,
    /// `--trusted-proxies`: the only peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `--log-format`: text or JSON log lines.
    pub log_format: crate::logging::LogFormat,
}

/// Certificate chain and key for the HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every bound the proxy puts on its inputs and on the upstream, each with its default
/// in a named constant above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    /// 0: no cap per address.
    pub max_connections_per_ip: usize,
    /// A response body longer than this is recorded cut (with `--record`).
    pub record_body_max_bytes: usize,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            record_body_max_bytes: DEFAULT_RECORD_BODY_MAX_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// The configured upstream: the only destination the proxy ever contacts. Requests are
/// sent to `scheme://authority` + `base_path` + the request's own path and query
/// (nginx `proxy_pass` semantics without a location prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The URL's path without its trailing `/`; empty for `https://host` or `https://host/`.
    pub base_path: String,
}

impl UpstreamUrl {
    /// Parses and checks an upstream URL; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let uri: Uri = raw
            .parse()
            .map_err(|e| format!("`{raw}` is not a URL ({e})"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("`{raw}` has no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!(
                "`{raw}` uses scheme `{scheme}`; only http and https are supported"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("`{raw}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{raw}` carries user credentials; the IdP's bearer token is passed through, so remove them"
            ));
        }
        if authority.host().is_empty() {
            return Err(format!("`{raw}` has no host"));
        }
        if uri.query().is_some() {
            return Err(format!(
                "`{raw}` has a query string; the request's own query is appended, so remove it"
            ));
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(UpstreamUrl {
            scheme,
            authority,
            base_path,
        })
    }

    /// The upstream URI for a request's path and query. The request target never chooses
    /// the host: only its path and query are used.
    pub fn join(&self, path_and_query: &PathAndQuery) -> Result<Uri, http::Error> {
        let builder = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone());
        if self.base_path.is_empty() {
            builder.path_and_query(path_and_query.clone()).build()
        } else {
            let joined = format!("{}{}", self.base_path, path_and_query.as_str());
            builder.path_and_query(joined).build()
        }
    }
}

impl std::fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

impl Config {
    /// Merges flags/environment over the config file over the defaults, then validates.
    pub fn from_run_args(args: &RunArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Validates a config file alone, as `scimguard run --config FILE` with no other
    /// flag or environment would: the fuzz target's entry to the checks of [`Self::merge`].
    pub fn from_file_config(file: FileConfig) -> Result<Self, ConfigError> {
        Self::merge(&RunArgs::default(), file)
    }

    fn merge(args: &RunArgs, file: FileConfig) -> Result<Self, ConfigError> {
        let has_tls_files = args.tls_cert.is_some() || file.tls_cert.is_some();
        let acme = acme_settings(args, &file, has_tls_files)?;
        let token_isolation = token_isolation(args, &file)?;
        let trusted_proxies = trusted_proxies(args, &file)?;
        let emulator_token_given = args.token.is_some() || file.emulator.token.is_some();
        let listen = match (args.listen, file.listen) {
            (Some(addr), _) => addr,
            (None, Some(raw)) => raw.parse().map_err(|e| {
                ConfigError::setting(
                    "listen",
                    format!("`{raw}` is not an address ({e})"),
                    "write IP:PORT, e.g. 127.0.0.1:8080",
                )
            })?,
            (None, None) => DEFAULT_LISTEN
                .parse()
                .expect("default listen address is valid"),
        };

        let upstream = args
            .upstream
            .clone()
            .or(file.upstream)
            .map(|raw| {
                UpstreamUrl::parse(&raw).map_err(|problem| {
                    ConfigError::setting(
                        "upstream",
                        problem,
                        "give the SCIM endpoint AWS shows, e.g. https://scim.us-east-1.amazonaws.com/{tenant}/scim/v2, or leave it out to use the embedded emulator",
                    )
                })
            })
            .transpose()?;

        let tls = match (args.tls_cert.clone().or(file.tls_cert), args.tls_key.clone().or(file.tls_key)) {
            (Some(cert), Some(key)) => {
                require_file("tls_cert", &cert)?;
                require_file("tls_key", &key)?;
                Some(TlsFiles { cert, key })
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::setting(
                    "tls_key",
                    "--tls-cert is set but --tls-key is not",
                    "give both, or neither for plain HTTP; `scimguard cert --out certs/` makes a pair for trials",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::setting(
                    "tls_cert",
                    "--tls-key is set but --tls-cert is not",
                    "give both, or neither for plain HTTP; `scimguard cert --out certs/` makes a pair for trials",
                ))
            }
        };

        let upstream_ca = args.upstream_ca.clone().or(file.upstream_ca);
        if let Some(ca) = &upstream_ca {
            require_file("upstream_ca", ca)?;
        }

        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            return Err(ConfigError::setting(
                "max_body_bytes",
                "0 would refuse every request with a body",
                format!(
                    "use a positive number of bytes; AWS accepts up to {DEFAULT_MAX_BODY_BYTES}"
                ),
            ));
        }

        let max_connections = args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(ConfigError::setting(
                "max_connections",
                "0 would accept no client",
                format!("use a positive number; the default is {DEFAULT_MAX_CONNECTIONS}"),
            ));
        }
        let limits = Limits {
            max_body_bytes,
            header_timeout: duration(
                "header_timeout",
                args.header_timeout,
                file.header_timeout,
                DEFAULT_HEADER_TIMEOUT,
            )?,
            idle_timeout: duration(
                "idle_timeout",
                args.idle_timeout,
                file.idle_timeout,
                DEFAULT_IDLE_TIMEOUT,
            )?,
            body_timeout: duration(
                "body_timeout",
                args.body_timeout,
                file.body_timeout,
                DEFAULT_BODY_TIMEOUT,
            )?,
            max_connections,
            max_connections_per_ip: args
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP),
            record_body_max_bytes: args
                .record_body_max_bytes
                .or(file.record_body_max_bytes)
                .unwrap_or(DEFAULT_RECORD_BODY_MAX_BYTES),
            connect_timeout: duration(
                "connect_timeout",
                args.connect_timeout,
                file.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            upstream_timeout: duration(
                "upstream_timeout",
                args.upstream_timeout,
                file.upstream_timeout,
                DEFAULT_UPSTREAM_TIMEOUT,
            )?,
            shutdown_timeout: duration(
                "shutdown_timeout",
                args.shutdown_timeout,
                file.shutdown_timeout,
                DEFAULT_SHUTDOWN_TIMEOUT,
            )?,
        };

        let mode = match (args.mode, file.mode) {
            (Some(mode), _) => mode,
            (None, Some(raw)) => match raw.to_ascii_lowercase().as_str() {
                "enforce" => Mode::Enforce,
                "observe" => Mode::Observe,
                _ => {
                    return Err(ConfigError::setting(
                        "mode",
                        format!("`{raw}` is not a mode"),
                        "use enforce (act on findings) or observe (only log them)",
                    ))
                }
            },
            (None, None) => Mode::Enforce,
        };
        let rules = load_rules(args, file.rules)?;
        // The emulator's settings mean nothing when requests go to a real upstream: say so
        // rather than let the admin believe a token or tenant is in force.
        let mut warnings = Vec::new();
        if upstream.is_some() {
            let given = [
                (
                    "--tenant",
                    args.tenant.is_some() || file.emulator.tenant.is_some(),
                ),
                (
                    "--token",
                    args.token.is_some() || file.emulator.token.is_some(),
                ),
                (
                    "--state",
                    args.state.is_some() || file.emulator.state.is_some(),
                ),
            ];
            for (flag, _) in given.iter().filter(|(_, set)| *set) {
                warnings.push(format!(
                    "{flag} is ignored: it configures the embedded emulator, which does not run with --upstream (the IdP's own bearer token is passed to the upstream)"
                ));
            }
        }
        let emulator = EmulatorConfig {
            tenant: args
                .tenant
                .clone()
                .or(file.emulator.tenant)
                .unwrap_or_else(|| DEMO_TENANT.to_owned()),
            token: args
                .token
                .clone()
                .or(file.emulator.token)
                .unwrap_or_else(random_token),
            state_file: args.state.clone().or(file.emulator.state),
            rate: file.emulator.rate.unwrap_or(crate::emulator::DEFAULT_RATE),
        };

        // Token isolation in front of the embedded emulator: it expects the token
        // scimguard sends upstream, unless told otherwise.
        let mut emulator = emulator;
        if let (None, Some(isolation), false) = (&upstream, &token_isolation, emulator_token_given)
        {
            emulator.token = isolation.upstream_token();
        }

        let mut section = file.throttle;
        let throttle_store = store_config(args, &mut section)?;
        let throttle = ThrottleConfig {
            rate: args
                .rate
                .or(section.rate)
                .unwrap_or(crate::throttle::DEFAULT_RATE),
            burst: args
                .burst
                .or(section.burst)
                .unwrap_or(crate::throttle::DEFAULT_BURST),
            write_rate: args.write_rate.or(section.write_rate),
            write_burst: args.write_burst.or(section.write_burst),
            mode: args.throttle.or(section.mode).unwrap_or_default(),
            max_wait: duration(
                "max_wait",
                args.max_wait,
                section.max_wait,
                crate::throttle::DEFAULT_MAX_WAIT,
            )?,
            max_queue: args
                .max_queue
                .or(section.max_queue)
                .unwrap_or(crate::throttle::DEFAULT_MAX_QUEUE),
        };
        throttle
            .validate()
            .map_err(|e| ConfigError(e.to_string()))?;
        let guard = crate::guard::GuardConfig {
            limit: args
                .guard_deletes
                .or(file.guard_deletes)
                .unwrap_or(crate::guard::DEFAULT_LIMIT),
            window: duration(
                "guard_window",
                args.guard_window,
                file.guard_window,
                crate::guard::DEFAULT_WINDOW,
            )?,
            state_file: args.guard_state.clone().or(file.guard_state),
        };
        guard.validate().map_err(ConfigError)?;
        let admin = match (args.admin, file.admin) {
            (Some(addr), _) => Some(addr),
            (None, Some(raw)) => Some(raw.parse().map_err(|e| {
                ConfigError::setting(
                    "admin",
                    format!("`{raw}` is not an address ({e})"),
                    "write IP:PORT, e.g. 127.0.0.1:9090",
                )
            })?),
            (None, None) => None,
        };
        if let Some(admin) = admin {
            crate::admin::check_admin_address(admin, listen)
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        let admin_token = args.admin_token.clone().or(file.admin_token);
        if admin_token.as_deref() == Some("") {
            return Err(ConfigError::setting(
                "admin_token",
                "it is empty",
                "give a long random token, e.g. `openssl rand -hex 32`",
            ));
        }
        if let Some(admin) = admin {
            crate::admin::check_admin_exposure(admin, admin_token.as_deref())
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        let view_history = args
            .view_history
            .or(file.view_history)
            .unwrap_or(crate::admin::view::DEFAULT_VIEW_HISTORY);

        let redact_pii = args.redact_pii || file.redact_pii.unwrap_or(false);
        let record = args.record.clone().or(file.record).map(|path| {
            let options = crate::record::RecordOptions {
                max_bytes: args.record_max_bytes.or(file.record_max_bytes),
                redact_pii,
                replica: Some(
                    args.replica_name
                        .clone()
                        .or(file.replica_name.clone())
                        .unwrap_or_else(crate::record::default_replica_name),
                ),
                ..crate::record::RecordOptions::default()
            };
            (path, options)
        });
        if record
            .as_ref()
            .is_some_and(|(_, o)| o.replica.as_deref().is_some_and(str::is_empty))
        {
            return Err(ConfigError::setting(
                "replica_name",
                "an empty name cannot tell replicas apart",
                "give each replica a name of its own, e.g. --replica-name scimguard-a, or leave it out to use the host name",
            ));
        }
        if record.as_ref().is_some_and(|(_, o)| o.max_bytes == Some(0)) {
            return Err(ConfigError::setting(
                "record_max_bytes",
                "0 would rotate on every record",
                "use a size in bytes, e.g. 104857600 for 100 MiB",
            ));
        }

        let repair = crate::repair::RepairSettings {
            max_members: args
                .repair_max_members
                .or(file.repair_max_members)
                .unwrap_or(crate::repair::DEFAULT_MAX_MEMBERS),
            timeout: duration(
                "repair_timeout",
                args.repair_timeout,
                file.repair_timeout,
                crate::repair::DEFAULT_TIMEOUT,
            )?,
        };
        if repair.max_members == 0 {
            return Err(ConfigError::setting(
                "repair_max_members",
                "0 would refuse every repair of a group change",
                format!(
                    "use a positive number of members; the default is {}",
                    crate::repair::DEFAULT_MAX_MEMBERS
                ),
            ));
        }

        Ok(Config {
            repair,
            acme,
            token_isolation,
            trusted_proxies,
            record,
            explain_log: args.explain_log.clone().or(file.explain_log),
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            throttle,
            throttle_store,
            guard,
            admin,
            admin_token,
            view_history,
            redact_pii,
            emulator,
            mode,
            rules,
            listen,
            upstream,
            tls,
            upstream_ca,
            forwarded_headers: args.forwarded_headers || file.forwarded_headers.unwrap_or(false),
            limits,
            warnings,
        })
    }
}

/// The rules file (`--rules`, else `[rules] file`, else the embedded one), then the
/// action overrides: `[rules.actions]` first, `--rule ID=ACTION` on top.
fn load_rules(args: &RunArgs, section: RulesSection) -> Result<RuleSet, ConfigError> {
    let path = args.rules.clone().or(section.file);
    let mut rules = match &path {
        Some(path) => RuleSet::load(path),
        None => RuleSet::embedded(),
    }
    .map_err(|e| ConfigError(format!("invalid rules: {e}")))?;
    for (id, action) in &section.actions {
        let action: Action = action.parse().map_err(|e: String| {
            ConfigError::setting(
                "rules.actions",
                format!("{id}: {e}"),
                "write `\"rule.id\" = \"reject\"`",
            )
        })?;
        rules.set_action(id, action).map_err(|e| {
            ConfigError::setting("rules.actions", e, "check the id with `scimguard rules`")
        })?;
    }
    for raw in &args.rule {
        let (id, action) = raw.split_once('=').ok_or_else(|| {
            ConfigError(format!("invalid --rule `{raw}`: expected ID=ACTION. Fix: e.g. --rule user.emails.single-value=warn"))
        })?;
        let action: Action = action.parse().map_err(|e: String| {
            ConfigError(format!(
                "invalid --rule `{raw}`: {e}. Fix: use reject, rewrite, warn or off"
            ))
        })?;
        rules.set_action(id.trim(), action).map_err(|e| {
            ConfigError(format!(
                "invalid --rule `{raw}`: {e}. Fix: check the id with `scimguard rules`"
            ))
        })?;
    }
    Ok(rules)
}

/// `--throttle-store` with its password, failure mode and replica count; the messages
/// never show the password.
fn store_config(
    args: &RunArgs,
    section: &mut ThrottleSection,
) -> Result<Option<crate::throttle::StoreConfig>, ConfigError> {
    let replicas = args.replicas.or(section.replicas).unwrap_or(1);
    let Some(url) = args.throttle_store.clone().or(section.store.take()) else {
        if replicas != 1 {
            return Err(ConfigError::setting(
                "replicas",
                "--replicas only splits the budget of a shared --throttle-store",
                "add --throttle-store redis://HOST:PORT, or drop --replicas",
            ));
        }
        return Ok(None);
    };
    let password = args
        .throttle_store_password
        .clone()
        .or(section.store_password.take());
    let failure = args
        .throttle_store_failure
        .or(section.store_failure)
        .unwrap_or_default();
    crate::throttle::StoreConfig::new(&url, password.as_deref(), failure, replicas)
        .map(Some)
        .map_err(|problem| {
            ConfigError::setting(
                "throttle_store",
                problem,
                "e.g. --throttle-store redis://127.0.0.1:6379/0, the password in SCIMGUARD_THROTTLE_STORE_PASSWORD",
            )
        })
}

/// `--acme-domain` (repeatable), `--acme-contact`, `--acme-cache`, `--acme-directory`,
/// `--acme-ca`: `None` without a domain.
fn acme_settings(
    args: &RunArgs,
    file: &FileConfig,
    has_tls_files: bool,
) -> Result<Option<crate::tls::acme::AcmeSettings>, ConfigError> {
    let domains = if args.acme_domain.is_empty() {
        file.acme_domain.clone().unwrap_or_default()
    } else {
        args.acme_domain.clone()
    };
    if domains.is_empty() {
        return Ok(None);
    }
    if has_tls_files {
        return Err(ConfigError::setting(
            "acme_domain",
            "--acme-domain and --tls-cert both choose the listener's certificate",
            "give one of them: --acme-domain to get certificates from an ACME CA, or --tls-cert/--tls-key to serve your own",
        ));
    }
    let mut names = Vec::with_capacity(domains.len());
    for raw in domains {
        let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let is_dns_name = matches!(
            rustls::pki_types::ServerName::try_from(name.as_str()),
            Ok(rustls::pki_types::ServerName::DnsName(_))
        );
        if !is_dns_name || name.starts_with("*.") || !name.contains('.') {
            return Err(ConfigError::setting(
                "acme_domain",
                format!("`{raw}` is not a fully qualified DNS name"),
                "give the name the IdP will connect to, e.g. scim.example.com (no wildcards, no IP addresses: TLS-ALPN-01 validates one DNS name at a time)",
            ));
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let contact = if args.acme_contact.is_empty() {
        file.acme_contact.clone().unwrap_or_default()
    } else {
        args.acme_contact.clone()
    };
    if let Some(bad) = contact.iter().find(|c| !c.starts_with("mailto:")) {
        return Err(ConfigError::setting(
            "acme_contact",
            format!("`{bad}` is not a mailto: URI"),
            "write mailto:ops@example.com",
        ));
    }
    let cache = args
        .acme_cache
        .clone()
        .or_else(|| file.acme_cache.clone())
        .ok_or_else(|| {
            ConfigError::setting(
                "acme_cache",
                "--acme-domain needs a folder for the account key and certificates",
                "pass --acme-cache DIR, e.g. /var/lib/scimguard/acme, so restarts reuse them instead of ordering again",
            )
        })?;
    let directory = args
        .acme_directory
        .clone()
        .or_else(|| file.acme_directory.clone())
        .unwrap_or_else(|| crate::tls::acme::LETS_ENCRYPT_PRODUCTION.to_owned());
    let is_https = directory
        .parse::<Uri>()
        .ok()
        .is_some_and(|uri| uri.scheme() == Some(&Scheme::HTTPS) && uri.host().is_some());
    if !is_https {
        return Err(ConfigError::setting(
            "acme_directory",
            format!("`{directory}` is not an https URL"),
            format!(
                "give the CA's directory URL, e.g. {} (Let's Encrypt staging)",
                crate::tls::acme::LETS_ENCRYPT_STAGING
            ),
        ));
    }
    let extra_ca = args.acme_ca.clone().or_else(|| file.acme_ca.clone());
    if let Some(ca) = &extra_ca {
        require_file("acme_ca", ca)?;
    }
    Ok(Some(crate::tls::acme::AcmeSettings {
        domains: names,
        contact,
        cache,
        directory,
        extra_ca,
    }))
}

/// `--client-token-file` and `--upstream-token-file`: both or neither, read now so a
/// bad file stops start-up.
fn token_isolation(
    args: &RunArgs,
    file: &FileConfig,
) -> Result<Option<std::sync::Arc<crate::auth::TokenIsolation>>, ConfigError> {
    let client = args
        .client_token_file
        .clone()
        .or_else(|| file.client_token_file.clone());
    let upstream = args
        .upstream_token_file
        .clone()
        .or_else(|| file.upstream_token_file.clone());
    let fix = "give both: the tokens the IdP may present (--client-token-file) and the AWS token sent in their place (--upstream-token-file), or neither to pass the IdP's token through";
    match (client, upstream) {
        (None, None) => Ok(None),
        (Some(client), Some(upstream)) => {
            require_file("client_token_file", &client)?;
            require_file("upstream_token_file", &upstream)?;
            let files = crate::auth::TokenFiles { client, upstream };
            let isolation = crate::auth::TokenIsolation::load(&files)
                .map_err(|e| ConfigError(format!("invalid token file: {e}")))?;
            Ok(Some(std::sync::Arc::new(isolation)))
        }
        (Some(_), None) => Err(ConfigError::setting(
            "upstream_token_file",
            "--client-token-file is set but --upstream-token-file is not",
            fix,
        )),
        (None, Some(_)) => Err(ConfigError::setting(
            "client_token_file",
            "--upstream-token-file is set but --client-token-file is not",
            fix,
        )),
    }
}

/// `--trusted-proxies CIDR,…`: addresses or networks, e.g. 10.0.0.0/8.
fn trusted_proxies(args: &RunArgs, file: &FileConfig) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let raw = if args.trusted_proxies.is_empty() {
        file.trusted_proxies.clone().unwrap_or_default()
    } else {
        args.trusted_proxies.clone()
    };
    raw.iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::setting(
                        "trusted_proxies",
                        format!("`{entry}` is neither an address nor a CIDR network"),
                        "list the load balancer's addresses, e.g. 10.0.0.0/8,192.168.1.10",
                    )
                })
        })
        .collect()
}

fn require_file(name: &str, path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(ConfigError::setting(
            name,
            format!("{} is not a file", path.display()),
            "point it at a PEM file",
        )),
        Err(e) => Err(ConfigError::setting(
            name,
            format!("cannot read {}: {e}", path.display()),
            "check the path; `scimguard cert --out certs/` writes a certificate and key for trials",
        )),
    }
}

/// A duration from a flag, else from the file ("10s", "500ms"), else the default; zero is
/// refused because every one of these bounds would then expire at once.
fn duration(
    name: &str,
    flag: Option<Duration>,
    file: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let value = match (flag, file) {
        (Some(d), _) => d,
        (None, Some(raw)) => humantime::parse_duration(&raw).map_err(|e| {
            ConfigError::setting(
                name,
                format!("`{raw}` is not a duration ({e})"),
                "write a number with a unit, e.g. \"10s\" or \"500ms\"",
            )
        })?,
        (None, None) => default,
    };
    if value.is_zero() {
        return Err(ConfigError::setting(
            name,
            "0 would expire at once",
            format!(
                "use a positive duration; the default is {}",
                humantime::format_duration(default)
            ),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_join_appends_path_and_query() {
        let up = UpstreamUrl::parse("https://scim.us-east-1.amazonaws.com/t-1/scim/v2/").unwrap();
        assert_eq!(up.base_path, "/t-1/scim/v2");
        let pq: PathAndQuery = "/Users?filter=userName%20eq%20%22a%22".parse().unwrap();
        assert_eq!(
            up.join(&pq).unwrap().to_string(),
            "https://scim.us-east-1.amazonaws.com/t-1/scim/v2/Users?filter=userName%20eq%20%22a%22"
        );
        let bare = UpstreamUrl::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            bare.join(&pq).unwrap().to_string(),
            "http://127.0.0.1:9000/Users?filter=userName%20eq%20%22a%22"
        );
    }

    #[test]
    fn upstream_refuses_what_it_cannot_honour() {
        for bad in [
            "ftp://x/",
            "scim.amazonaws.com",
            "https://u:p@h/",
            "https://h/?a=b",
            "not a url",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn connection_limits_come_from_the_file_and_flags() {
        let file: FileConfig = toml::from_str(
            "idle_timeout = \"5s\"\nbody_timeout = \"2s\"\nmax_connections = 50\nmax_connections_per_ip = 0\n",
        )
        .unwrap();
        let args = RunArgs {
            max_connections: Some(60),
            ..RunArgs::default()
        };
        let cfg = Config::merge(&args, file).unwrap();
        assert_eq!(cfg.limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(cfg.limits.body_timeout, Duration::from_secs(2));
        assert_eq!(cfg.limits.max_connections, 60);
        assert_eq!(cfg.limits.max_connections_per_ip, 0);
        let defaults = Config::merge(&RunArgs::default(), FileConfig::default()).unwrap();
        assert_eq!(defaults.limits.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(defaults.limits.max_connections, 10_000);
        assert_eq!(defaults.limits.max_connections_per_ip, 1_000);
        let zero = RunArgs {
            max_connections: Some(0),
            ..RunArgs::default()
        };
        let err = Config::merge(&zero, FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--max-connections"), "{err}");
    }

    #[test]
    fn log_format_comes_from_the_file_unless_a_flag_says_otherwise() {
        use crate::logging::LogFormat;
        let file: FileConfig = toml::from_str("log_format = \"json\"").unwrap();
        let cfg = Config::merge(&RunArgs::default(), file).unwrap();
        assert_eq!(cfg.log_format, LogFormat::Json);
        let file: FileConfig = toml::from_str("log_format = \"json\"").unwrap();
        let args = RunArgs {
            log_format: Some(LogFormat::Text),
            ..RunArgs::default()
        };
        assert_eq!(
            Config::merge(&args, file).unwrap().log_format,
            LogFormat::Text
        );
        assert_eq!(
            Config::merge(&RunArgs::default(), FileConfig::default())
                .unwrap()
                .log_format,
            LogFormat::Text
        );
        let bad = toml::from_str::<FileConfig>("log_format = \"xml\"").unwrap_err();
        assert!(bad.to_string().contains("text"), "{bad}");
    }

    #[test]
    fn flags_beat_file_and_errors_name_the_setting() {
        let file = FileConfig {
            listen: Some("127.0.0.1:1".into()),
            header_timeout: Some("3s".into()),
            ..FileConfig::default()
        };
        let args = RunArgs {
            listen: Some("127.0.0.1:2".parse().unwrap()),
            ..RunArgs::default()
        };
        let cfg = Config::merge(&args, file).unwrap();
        assert_eq!(cfg.listen.port(), 2);
        assert_eq!(cfg.limits.header_timeout, Duration::from_secs(3));

        let bad = FileConfig {
            connect_timeout: Some("soon".into()),
            ..FileConfig::default()
        };
        let err = Config::merge(&RunArgs::default(), bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`connect_timeout`")
                && err.contains("--connect-timeout")
                && err.contains("Fix:"),
            "{err}"
        );
    }

    #[test]
    fn the_store_and_the_guard_come_from_the_file_too() {
        let file: FileConfig = toml::from_str(
            r#"
            guard_deletes = 7
            guard_window = "2m"
            [throttle]
            store = "redis://:hunter2@cache:6379/1"
            store_failure = "deny"
            replicas = 3
            "#,
        )
        .unwrap();
        let cfg = Config::merge(&RunArgs::default(), file).unwrap();
        let store = cfg.throttle_store.unwrap();
        assert_eq!(store.redacted(), "redis://***@cache:6379/1");
        assert_eq!(store.failure, crate::throttle::StoreFailure::Deny);
        assert_eq!(store.replicas, 3);
        assert_eq!(cfg.guard.limit, 7);
        assert_eq!(cfg.guard.window, Duration::from_secs(120));

        let lonely = FileConfig {
            throttle: ThrottleSection {
                replicas: Some(2),
                ..ThrottleSection::default()
            },
            ..FileConfig::default()
        };
        let err = Config::merge(&RunArgs::default(), lonely)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--throttle-store") && err.contains("Fix:"),
            "{err}"
        );
        let bad = RunArgs {
            throttle_store: Some("http://:hunter2@cache".into()),
            ..RunArgs::default()
        };
        let err = Config::merge(&bad, FileConfig::default())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2") && err.contains("Fix:"), "{err}");
    }

    #[test]
    fn acme_settings_are_checked_and_named() {
        let acme = |domains: &[&str], cache: bool| RunArgs {
            acme_domain: domains.iter().map(|d| d.to_string()).collect(),
            acme_cache: cache.then(|| PathBuf::from("/var/lib/scimguard/acme")),
            ..RunArgs::default()
        };
        let cfg =
            Config::merge(&acme(&["SCIM.Example.com."], true), FileConfig::default()).unwrap();
        let settings = cfg.acme.unwrap();
        assert_eq!(settings.domains, ["scim.example.com"]);
        assert_eq!(
            settings.directory,
            crate::tls::acme::LETS_ENCRYPT_PRODUCTION
        );
        for (args, named) in [
            (acme(&["scim.example.com"], false), "--acme-cache"),
            (acme(&["*.example.com"], true), "--acme-domain"),
            (acme(&["10.0.0.1"], true), "--acme-domain"),
            (
                RunArgs {
                    acme_directory: Some("http://ca.example/dir".into()),
                    ..acme(&["scim.example.com"], true)
                },
                "--acme-directory",
            ),
            (
                RunArgs {
                    acme_contact: vec!["ops@example.com".into()],
                    ..acme(&["scim.example.com"], true)
                },
                "--acme-contact",
            ),
            (
                RunArgs {
                    trusted_proxies: vec!["10.0.0.0/33".into()],
                    ..RunArgs::default()
                },
                "--trusted-proxies",
            ),
        ] {
            let err = Config::merge(&args, FileConfig::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(named) && err.contains("Fix:"), "{err}");
        }
    }
}
