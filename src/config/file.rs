//! The `--config` TOML file as written: every key optional, unknown keys refused.
//! [`super::Config`] merges it with the environment and the flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::throttle::ThrottleMode;

/// The `--config` file. Unknown keys are an error: a typo must not be silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub upstream_ca: Option<PathBuf>,
    pub forwarded_headers: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub record_body_max_bytes: Option<usize>,
    pub connect_timeout: Option<String>,
    pub upstream_timeout: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub mode: Option<String>,
    #[serde(default)]
    pub rules: RulesSection,
    /// `[emulator]`: the embedded emulator, when there is no upstream.
    #[serde(default)]
    pub emulator: EmulatorSection,
    /// `[throttle]`: local throttling toward the upstream.
    #[serde(default)]
    pub throttle: ThrottleSection,
    pub admin: Option<String>,
    pub admin_token: Option<String>,
    pub view_history: Option<usize>,
    pub guard_deletes: Option<u32>,
    pub guard_window: Option<String>,
    pub guard_state: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub redact_pii: Option<bool>,
    pub record_max_bytes: Option<u64>,
    pub explain_log: Option<PathBuf>,
    pub repair_max_members: Option<usize>,
    pub repair_timeout: Option<String>,
    pub acme_domain: Option<Vec<String>>,
    pub acme_contact: Option<Vec<String>>,
    pub acme_cache: Option<PathBuf>,
    pub acme_directory: Option<String>,
    pub acme_ca: Option<PathBuf>,
    pub client_token_file: Option<PathBuf>,
    pub upstream_token_file: Option<PathBuf>,
    pub trusted_proxies: Option<Vec<String>>,
    pub replica_name: Option<String>,
    pub log_format: Option<crate::logging::LogFormat>,
}

/// `[throttle]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSection {
    pub rate: Option<u32>,
    pub burst: Option<u32>,
    pub write_rate: Option<u32>,
    pub write_burst: Option<u32>,
    pub mode: Option<ThrottleMode>,
    pub max_wait: Option<String>,
    pub max_queue: Option<usize>,
    /// redis://HOST:PORT[/DB] shared by every replica.
    pub store: Option<String>,
    pub store_password: Option<String>,
    pub store_failure: Option<crate::throttle::StoreFailure>,
    pub replicas: Option<u32>,
}

/// `[emulator]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorSection {
    pub tenant: Option<String>,
    pub token: Option<String>,
    pub state: Option<PathBuf>,
    pub rate: Option<u32>,
}

/// `[rules]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    /// A rules file replacing the embedded one.
    pub file: Option<PathBuf>,
    /// `[rules.actions]`: rule id → reject | rewrite | warn | off.
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
}

impl FileConfig {
    /// Reads and parses a config file; errors name the file, and TOML's own message
    /// carries the line and column.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read config file {}: {e}. Fix: check the path given to --config / SCIMGUARD_CONFIG",
                path.display()
            ))
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses a config file's text; `origin` names it in the error. Split from
    /// [`FileConfig::load`] so the fuzz target and tests reach the parser without a file.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            ConfigError(format!(
                "config file {origin} is not valid: {e}Fix: use the keys listed in README.md (the flag names with `_`)"
            ))
        })
    }
}
