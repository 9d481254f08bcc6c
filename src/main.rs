//! The thin binary: CLI → Config → run → ExitCode. All logic is in the library.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use scimguard::cli::{
    CertArgs, CheckArgs, Cli, Command, EmulateArgs, ExportHarArgs, ParseArgs, ParseWhat,
    ReplayArgs, ReportArgs, RulesArgs, RunArgs,
};
use scimguard::config::Config;
use scimguard::logging::LogFormat;
use scimguard::{tls, Proxy, StartError};
use tokio::net::TcpListener;

/// mimalloc instead of glibc malloc: every proxied request allocates for its headers,
/// its parsed body and its explanation, on whichever worker thread runs it, and
/// mimalloc's per-thread free lists serve that pattern with less work and less
/// fragmentation than glibc's arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Prints a banner line. A closed stdout (the reader went away) must not bring the
/// proxy down, so write errors are ignored instead of panicking as `println!` does.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Exit code for a bad setting or input (clap uses 2 for bad flags too).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure while running.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Run(args) = cli.command {
        return run(*args);
    }
    // Held until exit: dropping it writes the log lines still queued.
    let _log_guard = scimguard::logging::init(LogFormat::default());
    match cli.command {
        Command::Run(_) => unreachable!("run returned above"),
        Command::Emulate(args) => emulate(args),
        Command::Cert(args) => cert(args),
        Command::Parse(args) => parse(args),
        Command::Rules(args) => rules(args),
        Command::Check(args) => check(args),
        Command::ExportHar(args) => export_har(args),
        Command::Replay(args) => replay(args),
        Command::Report(args) => report(args),
        Command::Guard(args) => guard(args),
    }
}

/// `scimguard guard status|release TENANT --admin URL`: prints the admin listener's
/// answer; 0 on 2xx, 1 otherwise, 2 when it cannot be asked.
fn guard(args: scimguard::cli::GuardArgs) -> ExitCode {
    let Some(admin) = args.admin.as_deref() else {
        return fail(
            EXIT_CONFIG,
            &"--admin URL is required: the admin listener of the running scimguard, e.g. --admin http://127.0.0.1:9090",
        );
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let release = match &args.action {
        scimguard::cli::GuardAction::Status => None,
        scimguard::cli::GuardAction::Release { tenant } => Some(tenant.as_str()),
    };
    let answer = runtime.block_on(scimguard::guard::http::client(
        admin,
        release,
        args.admin_token.as_deref(),
    ));
    match answer {
        Ok((status, body)) => {
            say!("{}", body.trim_end());
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
        Err(e) => fail(EXIT_CONFIG, &e),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let config = match Config::from_run_args(&args) {
        Ok(config) => config,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    // Held until exit: dropping it writes the log lines still queued.
    let _log_guard = scimguard::logging::init(config.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    scimguard::server::raise_open_files_limit(config.limits.max_connections);
    let result = runtime.block_on(async {
        let mut proxy = Proxy::start(&config).await?;
        let admin = proxy.bind_admin().await?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
        let scheme = if config.tls.is_some() || config.acme.is_some() {
            "https"
        } else {
            "http"
        };
        match (&config.upstream, &proxy.embedded) {
            (Some(upstream), _) => {
                say!("scimguard listening on {scheme}://{local} → forwarding to {upstream}")
            }
            (None, Some(embedded)) => {
                let emulator = &embedded.emulator;
                say!(
                    "scimguard listening on {scheme}://{local} → forwarding to the embedded AWS SCIM emulator at http://{}",
                    embedded.addr
                );
                say!("  SCIM endpoint: {scheme}://{local}{}", emulator.base_path());
                if config.token_isolation.is_some() {
                    // The emulator's token is the isolated upstream token: never shown.
                    say!("  Bearer token:  one of the tokens in --client-token-file");
                } else {
                    say!("  Bearer token:  {}", emulator.token());
                }
                if let Some(state) = emulator.state_file() {
                    say!("  State file:    {}", state.display());
                }
            }
            (None, None) => {}
        }
        if let Some(admin) = admin {
            say!("  Metrics:       http://{admin}/metrics (also /healthz, /readyz)");
            if proxy.pipeline.view().is_some() {
                say!("  Live view:     http://{admin}/");
            }
            if let Some(login) = proxy.admin_auth.login_path() {
                say!("  Admin login:   http://{admin}{login} (works once; or send the admin token as a bearer token)");
            }
        }
        if let Some(acme) = &config.acme {
            say!(
                "  ACME:          certificates for {} from {} (TLS-ALPN-01: the CA must reach this port directly, not through a TLS-terminating load balancer)",
                acme.domains.join(", "),
                acme.directory
            );
            if local.port() != 443 {
                say!(
                    "  ACME:          the CA validates on port 443 of each name; forward 443 to port {} as TCP (not TLS)",
                    local.port()
                );
            }
        }
        let rules_source = move || {
            Config::from_run_args(&args)
                .map(|config| config.rules)
                .map_err(|e| e.to_string())
        };
        let reloader = proxy
            .reloader
            .clone()
            .with_rules(proxy.pipeline.clone(), std::sync::Arc::new(rules_source));
        let reloads = tokio::spawn(reload_on_hangup(reloader));
        proxy.serve(listener, shutdown_signal()).await;
        reloads.abort();
        Ok::<(), StartError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ StartError::Listen { .. }) => fail(EXIT_FAILURE, &e),
        Err(e) => fail(EXIT_CONFIG, &e),
    }
}

/// `scimguard emulate`: the emulator alone, until SIGINT/SIGTERM.
fn emulate(args: EmulateArgs) -> ExitCode {
    let config = scimguard::emulator::EmulatorConfig {
        tenant: args.tenant,
        token: args.token.unwrap_or_else(scimguard::emulator::random_token),
        state_file: args.state,
        rate: args.rate,
    };
    let emulator = match scimguard::emulator::Emulator::new(config) {
        Ok(emulator) => emulator,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let listener = match TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(source) => {
                return fail(
                    EXIT_FAILURE,
                    &StartError::Listen {
                        addr: args.listen,
                        source,
                    },
                );
            }
        };
        let local = listener.local_addr().unwrap_or(args.listen);
        say!("scimguard emulator of AWS IAM Identity Center SCIM listening on http://{local}");
        say!("  SCIM endpoint: http://{local}{}", emulator.base_path());
        say!("  Bearer token:  {}", emulator.token());
        let options =
            scimguard::server::ServerOptions::new(None, &scimguard::config::Limits::default());
        scimguard::server::serve(listener, emulator, options, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// The multi-threaded tokio runtime the long-running commands use.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(EXIT_FAILURE, &e))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("signal received");
}

/// Re-reads the certificate and token files on every SIGHUP.
async fn reload_on_hangup(reloader: scimguard::Reloader) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloading needs a restart");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading");
            reloader.reload();
        }
    }
    #[cfg(not(unix))]
    drop(reloader);
}

/// `scimguard parse filter|path EXPR`: exit 0 when it parses, 1 when not.
fn parse(args: ParseArgs) -> ExitCode {
    let (text, parsed) = match args.what {
        ParseWhat::Filter { expr, json } => scimguard::scim::explain_filter(&expr, json),
        ParseWhat::Path { expr, json } => scimguard::scim::explain_path(&expr, json),
    };
    println!("{text}");
    if parsed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// `scimguard rules`: the rules in effect, or `--check FILE`.
fn rules(args: RulesArgs) -> ExitCode {
    if let Some(path) = &args.check {
        return match scimguard::rules::RuleSet::load(path) {
            Ok(set) => {
                println!("{}: {} rules, valid", path.display(), set.rules().len());
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, &e),
        };
    }
    match Config::from_run_args(&args.selection.into_run_args()) {
        Ok(config) => {
            print!("{}", scimguard::rules::table(&config.rules));
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_CONFIG, &e),
    }
}

/// `scimguard check FILE…`: 0 clean, 1 something would be rejected, 2 unreadable input.
fn check(args: CheckArgs) -> ExitCode {
    let config = match Config::from_run_args(&args.selection.into_run_args()) {
        Ok(config) => config,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let outcome =
        scimguard::offline::check_files(&config.rules, &args.files, args.format, args.strict);
    print!("{}", outcome.stdout);
    eprint!("{}", outcome.stderr);
    ExitCode::from(u8::try_from(outcome.code).unwrap_or(EXIT_CONFIG))
}

/// `scimguard export-har CAPTURE`: HAR 1.2 on stdout.
fn export_har(args: ExportHarArgs) -> ExitCode {
    match read_captures(&args.captures, args.strict) {
        Ok(records) => {
            let har = scimguard::har::to_har(&records, &args.base_url);
            println!("{}", serde_json::to_string_pretty(&har).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_CONFIG, &e),
    }
}

/// `scimguard replay CAPTURE --target URL`: 0 when every status matched, else 1.
fn replay(args: ReplayArgs) -> ExitCode {
    let records = match read_captures(&args.captures, args.strict) {
        Ok(records) => records,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcome = runtime.block_on(scimguard::replay::replay(
        &records,
        &args.target,
        args.token.as_deref(),
        progress,
    ));
    match outcome {
        Ok(summary) => {
            print!("{}", summary.render());
            ExitCode::from(u8::try_from(summary.exit_code()).unwrap_or(EXIT_FAILURE))
        }
        Err(e) => fail(EXIT_CONFIG, &e),
    }
}

/// Reads captures with [`scimguard::record::captures`], printing each skipped line's
/// warning on stderr.
fn read_captures(
    paths: &[std::path::PathBuf],
    strict: bool,
) -> Result<Vec<scimguard::record::Record>, scimguard::record::CaptureError> {
    let capture = scimguard::record::captures(paths, strict)?;
    for warning in &capture.warnings {
        eprintln!("scimguard: warning: {warning}");
    }
    Ok(capture.records)
}

/// `scimguard report CAPTURE… --out FILE`: 0 written, 2 unreadable capture or file.
fn report(args: ReportArgs) -> ExitCode {
    match scimguard::report::write_report(&args.captures, args.strict, &args.out) {
        Ok((count, warnings)) => {
            for warning in &warnings {
                eprintln!("scimguard: warning: {warning}");
            }
            say!("wrote {}: {count} exchanges", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_CONFIG, &e),
    }
}

fn cert(args: CertArgs) -> ExitCode {
    match write_cert(&args) {
        Ok((cert, key)) => {
            println!("wrote {} and {}", cert.display(), key.display());
            println!(
                "serve HTTPS with: scimguard run --tls-cert {} --tls-key {}",
                cert.display(),
                key.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILURE, &e),
    }
}

fn write_cert(args: &CertArgs) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let cert_path = args.out.join("cert.pem");
    let key_path = args.out.join("key.pem");
    if !args.force {
        for path in [&cert_path, &key_path] {
            if path.exists() {
                return Err(format!(
                    "{} exists; pass --force to overwrite it",
                    path.display()
                ));
            }
        }
    }
    let made = tls::self_signed(&args.names).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    std::fs::write(&cert_path, made.cert_pem)
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    write_private(&key_path, made.key_pem.as_bytes())?;
    Ok((cert_path, key_path))
}

/// Writes a private key readable by its owner only (0600), from the first byte.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(contents)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn fail(code: u8, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("scimguard: {error}");
    ExitCode::from(code)
}
