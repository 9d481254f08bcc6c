//! Raw command-line flags, as clap parses them. Nothing here is validated beyond its
//! type: [`crate::config`] merges these with the config file and the environment and
//! checks the result once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::rules::Mode;
use crate::throttle::ThrottleMode;

/// An intercepting validation proxy for SCIM 2.0 provisioning into AWS IAM Identity Center.
#[derive(Debug, Parser)]
#[command(name = "scimguard", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy: listen for an IdP's SCIM requests and forward them upstream (to the
    /// embedded AWS emulator when no --upstream is given).
    Run(Box<RunArgs>),
    /// Run the embedded emulator of AWS IAM Identity Center's SCIM service alone.
    Emulate(EmulateArgs),
    /// Write a self-signed certificate and key for localhost / 127.0.0.1, for local trials.
    Cert(CertArgs),
    /// Parse a SCIM filter or PATCH path: print its canonical form, or where it is wrong.
    Parse(ParseArgs),
    /// Print the rules in effect (id, operations, action, source), or validate a rules file.
    Rules(RulesArgs),
    /// Check captured exchanges or request files against the rules, without a network.
    /// Exit 0 when clean, 1 when anything would be rejected, 2 on unreadable input.
    Check(CheckArgs),
    /// Turn a capture (--record) into HAR 1.2 on stdout, for browser devtools.
    ExportHar(ExportHarArgs),
    /// Re-send a capture's requests, in order and as received, to a target; summarise
    /// the statuses that differ from the capture.
    Replay(ReplayArgs),
    /// Write one self-contained HTML report of captures (merged by time): a summary,
    /// who failed and why, and every exchange.
    Report(ReportArgs),
    /// Ask a running scimguard's blast-radius guard (on its --admin listener): status,
    /// or release a tenant's held destructive changes.
    Guard(GuardArgs),
}

/// Flags of `scimguard guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    #[command(subcommand)]
    pub action: GuardAction,

    /// The admin listener of the running scimguard, e.g. http://127.0.0.1:9090.
    #[arg(long, env = "SCIMGUARD_ADMIN_URL", value_name = "URL", global = true)]
    pub admin: Option<String>,

    /// The admin token, when the admin listener is not on loopback.
    #[arg(
        long,
        env = "SCIMGUARD_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GuardAction {
    /// Print every tenant's guard state (JSON): tripped or not, counts, held operations.
    Status,
    /// Let a tripped tenant's held changes through and start its window again.
    Release {
        /// The tenant id (the path segment before /scim/v2).
        tenant: String,
    },
}

/// Flags of `scimguard report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Captures (--record), e.g. one per replica, merged by time; each with its
    /// rotated files.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,

    /// Refuse a capture with a cut last line or a corrupt line (by default such lines
    /// are skipped with a warning naming them, in the report too).
    #[arg(long)]
    pub strict: bool,

    /// The HTML file to write.
    #[arg(long, default_value = "report.html", value_name = "FILE")]
    pub out: PathBuf,
}

/// Flags of `scimguard check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Captures (JSON lines from --record), request files ({method, path, query,
    /// headers, body} JSON, the query as sent on the wire), or raw HTTP requests.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::offline::Format::Text)]
    pub format: crate::offline::Format,

    /// Refuse a capture with a cut last line or a corrupt line (by default such lines
    /// are skipped with a warning naming them).
    #[arg(long)]
    pub strict: bool,

    #[command(flatten)]
    pub selection: RulesSelection,
}

/// Flags of `scimguard export-har`.
#[derive(Debug, Args)]
pub struct ExportHarArgs {
    /// Captures (each one's rotated files .1 … .5 are read too, oldest first);
    /// several captures, e.g. one per replica, are merged by time.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,

    /// Refuse a capture with a cut last line or a corrupt line (by default such lines
    /// are skipped with a warning naming them).
    #[arg(long)]
    pub strict: bool,

    /// The scheme and host the HAR's URLs get (the capture has paths only).
    #[arg(long, default_value = crate::har::DEFAULT_BASE_URL, value_name = "URL")]
    pub base_url: String,
}

/// Flags of `scimguard replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The captures to re-send; several captures, e.g. one per replica, are merged by
    /// time.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,

    /// Refuse a capture with a cut last line or a corrupt line (by default such lines
    /// are skipped with a warning naming them).
    #[arg(long)]
    pub strict: bool,

    /// Where to send: the emulator, or scimguard in front of AWS (its URL; the
    /// captured paths are appended to its path).
    #[arg(long, value_name = "URL")]
    pub target: String,

    /// Bearer token for the target (captures never hold the original one).
    #[arg(
        long,
        env = "SCIMGUARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// Flags of `scimguard parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    #[command(subcommand)]
    pub what: ParseWhat,
}

#[derive(Debug, Subcommand)]
pub enum ParseWhat {
    /// A filter (RFC 7644 §3.4.2.2), e.g. 'userName eq "bjensen"'.
    Filter {
        expr: String,
        /// Print the syntax tree as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A PATCH path (RFC 7644 §3.5.2), e.g. 'members[value eq "2819c223"]'.
    Path {
        expr: String,
        /// Print the syntax tree as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which rules apply, for the commands that judge without running the proxy.
#[derive(Debug, Default, Args)]
pub struct RulesSelection {
    /// The config file whose `[rules]` section applies.
    #[arg(long, env = "SCIMGUARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A rules file replacing the embedded one.
    #[arg(long, env = "SCIMGUARD_RULES", value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Change one rule's action, e.g. --rule user.multi-value=reject (repeatable).
    #[arg(long = "rule", value_name = "ID=ACTION")]
    pub rule: Vec<String>,
}

impl RulesSelection {
    /// The same selection as `scimguard run` flags, so both resolve rules identically.
    pub fn into_run_args(self) -> RunArgs {
        RunArgs {
            config: self.config,
            rules: self.rules,
            rule: self.rule,
            ..RunArgs::default()
        }
    }
}

/// Flags of `scimguard rules`.
#[derive(Debug, Default, Args)]
pub struct RulesArgs {
    /// Validate this rules file and exit (0 when usable, 2 when not).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["rules", "rule"])]
    pub check: Option<PathBuf>,

    #[command(flatten)]
    pub selection: RulesSelection,
}

/// Flags of `scimguard run`. Every one can also come from the environment
/// (`SCIMGUARD_*`) or the `--config` file; a flag beats the environment, which beats the file.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// TOML file holding any of these settings (keys are the flag names with `_`).
    #[arg(long, env = "SCIMGUARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on for the IdP's requests [default: 127.0.0.1:8080].
    #[arg(long, env = "SCIMGUARD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// SCIM endpoint to forward to, e.g. https://scim.us-east-1.amazonaws.com.
    /// The request's path and query are appended to this URL's path.
    #[arg(long, env = "SCIMGUARD_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,

    /// PEM certificate chain to serve HTTPS with (needs --tls-key).
    #[arg(long, env = "SCIMGUARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "SCIMGUARD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s) to trust for the upstream, in addition to the web PKI roots.
    #[arg(long, env = "SCIMGUARD_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// Add X-Forwarded-For/-Proto/-Host toward the upstream (off: AWS does not need them).
    #[arg(long, env = "SCIMGUARD_FORWARDED_HEADERS")]
    pub forwarded_headers: bool,

    /// Largest request body accepted, in bytes; larger ones get 413 [default: 1048576].
    #[arg(long, env = "SCIMGUARD_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Time a client has to send its request headers, e.g. 10s [default: 10s].
    #[arg(long, env = "SCIMGUARD_HEADER_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub header_timeout: Option<Duration>,

    /// Time a keep-alive connection may stay with no request in flight, e.g. 75s
    /// [default: 75s].
    #[arg(long, env = "SCIMGUARD_IDLE_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Time a client has to send a request body once its headers arrived; then 408
    /// [default: 30s].
    #[arg(long, env = "SCIMGUARD_BODY_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub body_timeout: Option<Duration>,

    /// Client connections at once; more wait to be accepted [default: 10000].
    #[arg(long, env = "SCIMGUARD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Client connections at once from one IP address; 0 turns the cap off
    /// [default: 1000].
    #[arg(long, env = "SCIMGUARD_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// With --record, response bodies longer than this are recorded cut, with a
    /// marker (they still reach the client whole) [default: 1048576].
    #[arg(long, env = "SCIMGUARD_RECORD_BODY_MAX_BYTES", value_name = "BYTES")]
    pub record_body_max_bytes: Option<usize>,

    /// Time allowed to connect to the upstream [default: 5s].
    #[arg(long, env = "SCIMGUARD_CONNECT_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub connect_timeout: Option<Duration>,

    /// Time allowed for the upstream's whole response [default: 30s].
    #[arg(long, env = "SCIMGUARD_UPSTREAM_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub upstream_timeout: Option<Duration>,

    /// The most members a repair of a group change reads before it refuses the change
    /// [default: 50000].
    #[arg(long, env = "SCIMGUARD_REPAIR_MAX_MEMBERS", value_name = "N")]
    pub repair_max_members: Option<usize>,

    /// Time a repair of a group change may take, e.g. 25s [default: 25s].
    #[arg(long, env = "SCIMGUARD_REPAIR_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub repair_timeout: Option<Duration>,

    /// enforce: act on findings (reject, rewrite); observe: change nothing, log what
    /// would have happened [default: enforce].
    #[arg(long, env = "SCIMGUARD_MODE", value_enum)]
    pub mode: Option<Mode>,

    /// A rules file replacing the embedded AWS IAM Identity Center rules.
    #[arg(long, env = "SCIMGUARD_RULES", value_name = "FILE")]
    pub rules: Option<PathBuf>,

    /// Change one rule's action, e.g. --rule user.multi-value=reject (repeatable).
    #[arg(long = "rule", value_name = "ID=ACTION")]
    pub rule: Vec<String>,

    /// Requests per second per tenant sent upstream; 0 turns local throttling off
    /// [default: 10, half of AWS's published 20].
    #[arg(long, env = "SCIMGUARD_RATE", value_name = "N")]
    pub rate: Option<u32>,

    /// Requests a tenant may send at once after being idle [default: 10].
    #[arg(long, env = "SCIMGUARD_BURST", value_name = "N")]
    pub burst: Option<u32>,

    /// Writes per second per tenant, within --rate [default: no separate write limit].
    #[arg(long, env = "SCIMGUARD_WRITE_RATE", value_name = "N")]
    pub write_rate: Option<u32>,

    /// Writes a tenant may send at once [default: --burst].
    #[arg(long, env = "SCIMGUARD_WRITE_BURST", value_name = "N")]
    pub write_burst: Option<u32>,

    /// shape: over-rate requests wait their turn; reject: 429 at once; observe: never
    /// delay, log what would have happened [default: shape].
    #[arg(long, env = "SCIMGUARD_THROTTLE", value_enum)]
    pub throttle: Option<ThrottleMode>,

    /// Shape mode: the longest a request waits for its turn before 429 [default: 10s].
    #[arg(long, env = "SCIMGUARD_MAX_WAIT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_wait: Option<Duration>,

    /// Shape mode: the most requests waiting at once [default: 1024].
    #[arg(long, env = "SCIMGUARD_MAX_QUEUE", value_name = "N")]
    pub max_queue: Option<usize>,

    /// Share every tenant's throttle budget with other replicas in this Redis or Valkey:
    /// redis://HOST:PORT[/DB], rediss:// for TLS [default: each replica its own].
    #[arg(
        long,
        env = "SCIMGUARD_THROTTLE_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub throttle_store: Option<String>,

    /// The store's password, if not in the URL (prefer the environment variable).
    #[arg(
        long,
        env = "SCIMGUARD_THROTTLE_STORE_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub throttle_store_password: Option<String>,

    /// While the store does not answer: local (this replica's own budget at --rate /
    /// --replicas), allow, or deny (503) [default: local].
    #[arg(long, env = "SCIMGUARD_THROTTLE_STORE_FAILURE", value_enum)]
    pub throttle_store_failure: Option<crate::throttle::StoreFailure>,

    /// How many replicas share --throttle-store; the local fallback admits --rate /
    /// --replicas [default: 1].
    #[arg(long, env = "SCIMGUARD_REPLICAS", value_name = "N")]
    pub replicas: Option<u32>,

    /// Blast-radius guard: destructive changes (deletions, deactivations, removed
    /// members) per tenant allowed within --guard-window; beyond, they are held (503)
    /// until an admin releases them; 0 turns the guard off [default: 100].
    #[arg(long, env = "SCIMGUARD_GUARD_DELETES", value_name = "N")]
    pub guard_deletes: Option<u32>,

    /// The window --guard-deletes applies to, e.g. 10m [default: 10m].
    #[arg(long, env = "SCIMGUARD_GUARD_WINDOW", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub guard_window: Option<Duration>,

    /// Keep the guard's counts and trips in this file across restarts (0600).
    #[arg(long, env = "SCIMGUARD_GUARD_STATE", value_name = "FILE")]
    pub guard_state: Option<PathBuf>,

    /// Record every exchange to this file as JSON lines (mode 0600; tokens redacted).
    #[arg(long, env = "SCIMGUARD_RECORD", value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Replace names, emails, phone numbers and addresses by stable hashes in the
    /// capture (so it can be shared with a vendor) and in the live view.
    #[arg(long, env = "SCIMGUARD_REDACT_PII")]
    pub redact_pii: bool,

    /// With --record: rotate the file past this many bytes (5 old files are kept).
    #[arg(long, env = "SCIMGUARD_RECORD_MAX_BYTES", value_name = "BYTES")]
    pub record_max_bytes: Option<u64>,

    /// Write one JSON explanation per exchange to this file (schema in README.md).
    #[arg(long, env = "SCIMGUARD_EXPLAIN_LOG", value_name = "FILE")]
    pub explain_log: Option<PathBuf>,

    /// With --record: the name every record carries, so captures of several replicas
    /// can be merged and told apart [default: the host name].
    #[arg(long, env = "SCIMGUARD_REPLICA_NAME", value_name = "NAME")]
    pub replica_name: Option<String>,

    /// Serve /metrics, /healthz and /readyz on this address (keep it on loopback; never
    /// the proxy's port), e.g. 127.0.0.1:9090 [default: off].
    #[arg(long, env = "SCIMGUARD_ADMIN", value_name = "ADDR")]
    pub admin: Option<SocketAddr>,

    /// Require this bearer token on --admin (the live view, /metrics; /healthz and
    /// /readyz stay open). Needed when --admin is not on loopback; a one-time login link
    /// for browsers is printed at start.
    #[arg(
        long,
        env = "SCIMGUARD_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Exchanges the live view on --admin keeps in memory; 0 turns the view off
    /// [default: 1000].
    #[arg(long, env = "SCIMGUARD_VIEW_HISTORY", value_name = "N")]
    pub view_history: Option<usize>,

    /// Without --upstream: the embedded emulator's bearer token [default: a random one,
    /// printed at start].
    #[arg(
        long,
        env = "SCIMGUARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Without --upstream: the embedded emulator's tenant id [default: d-9067a1b2c3].
    #[arg(long, env = "SCIMGUARD_TENANT", value_name = "ID")]
    pub tenant: Option<String>,

    /// Without --upstream: keep the embedded emulator's users and groups in this file.
    #[arg(long, env = "SCIMGUARD_STATE", value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Get the listener's certificate from an ACME CA for this DNS name (repeatable, or
    /// comma-separated), validated with TLS-ALPN-01 on the listening port.
    #[arg(
        long,
        env = "SCIMGUARD_ACME_DOMAIN",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub acme_domain: Vec<String>,

    /// Contact for the ACME account, e.g. mailto:ops@example.com (repeatable).
    #[arg(
        long,
        env = "SCIMGUARD_ACME_CONTACT",
        value_name = "URI",
        value_delimiter = ','
    )]
    pub acme_contact: Vec<String>,

    /// Folder for the ACME account key and certificates (files 0600), reused across
    /// restarts.
    #[arg(long, env = "SCIMGUARD_ACME_CACHE", value_name = "DIR")]
    pub acme_cache: Option<PathBuf>,

    /// The ACME CA's directory URL [default: Let's Encrypt production,
    /// https://acme-v02.api.letsencrypt.org/directory].
    #[arg(long, env = "SCIMGUARD_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<String>,

    /// PEM CA certificate(s) to trust for the ACME directory's own HTTPS (test CAs).
    #[arg(long, env = "SCIMGUARD_ACME_CA", value_name = "FILE")]
    pub acme_ca: Option<PathBuf>,

    /// Tokens the IdP may present, one a line (or `sha256:<hex>` of one); any other
    /// request is refused with 401 before it is read. Needs --upstream-token-file.
    #[arg(long, env = "SCIMGUARD_CLIENT_TOKEN_FILE", value_name = "FILE")]
    pub client_token_file: Option<PathBuf>,

    /// The AWS SCIM token, sent upstream in place of the IdP's token.
    #[arg(long, env = "SCIMGUARD_UPSTREAM_TOKEN_FILE", value_name = "FILE")]
    pub upstream_token_file: Option<PathBuf>,

    /// With --forwarded-headers: the load balancers (addresses or CIDR networks,
    /// comma-separated) whose X-Forwarded-For is kept; anyone else's is replaced.
    #[arg(
        long,
        env = "SCIMGUARD_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// Log lines as text or as JSON objects, one a line [default: text].
    #[arg(long, env = "SCIMGUARD_LOG_FORMAT", value_enum)]
    pub log_format: Option<crate::logging::LogFormat>,

    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish [default: 30s].
    #[arg(long, env = "SCIMGUARD_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Option<Duration>,
}

/// Flags of `scimguard emulate`.
#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "SCIMGUARD_LISTEN",
        default_value = "127.0.0.1:9000",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// The tenant id in the SCIM path (/{tenant}/scim/v2).
    #[arg(long, env = "SCIMGUARD_TENANT", default_value = crate::emulator::DEMO_TENANT, value_name = "ID")]
    pub tenant: String,

    /// The bearer token clients must send [default: a random one, printed at start].
    #[arg(
        long,
        env = "SCIMGUARD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Keep users and groups in this file across restarts (written atomically).
    #[arg(long, env = "SCIMGUARD_STATE", value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Requests per second before answering 429, as AWS does; 0 turns it off.
    #[arg(long, default_value_t = crate::emulator::DEFAULT_RATE, value_name = "N")]
    pub rate: u32,
}

/// Flags of `scimguard cert`.
#[derive(Debug, Args)]
pub struct CertArgs {
    /// Folder to write `cert.pem` and `key.pem` into (created if missing).
    #[arg(long, default_value = "certs", value_name = "DIR")]
    pub out: PathBuf,

    /// Names the certificate is valid for; IP addresses become IP SANs.
    #[arg(long = "name", value_name = "NAME", default_values = ["localhost", "127.0.0.1", "::1"])]
    pub names: Vec<String>,

    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}
