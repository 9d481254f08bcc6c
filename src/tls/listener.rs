//! The HTTPS listener's certificate source: PEM files (`--tls-cert`/`--tls-key`,
//! re-read by [`ListenerTls::reload`] on SIGHUP) or ACME (`--acme-domain`).
//!
//! Either way the listener's `ServerConfig` never changes; only the certificate inside
//! its [`ServedCert`] does, so a reload or renewal reaches new handshakes at once and
//! never touches open connections.

use std::sync::Arc;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::acme::{Acme, AcmeSettings};
use super::served::{self, ServedCert, ACME_TLS_ALPN};
use super::{provider, TlsError, SERVER_ALPN};
use crate::config::TlsFiles;
use crate::metrics::Metrics;

/// Where the listener's certificate comes from.
enum Source {
    Files(TlsFiles),
    Acme(Arc<Acme>),
}

/// The HTTPS listener's TLS: the acceptor and the certificate behind it.
pub struct ListenerTls {
    served: Arc<ServedCert>,
    config: Arc<ServerConfig>,
    source: Source,
    metrics: Metrics,
}

impl ListenerTls {
    /// Serves the certificate and key in `files`; fails at start-up when they are
    /// unreadable or do not belong together.
    pub fn from_files(files: &TlsFiles, metrics: Metrics) -> Result<Self, TlsError> {
        let key = served::certified_key_from_files(&files.cert, &files.key)?;
        let served = ServedCert::new();
        if let Some(not_after) = served::not_after(&key) {
            metrics.certificate_expiry(not_after);
        }
        served.set(Arc::new(key));
        Ok(ListenerTls {
            config: server_config(served.clone(), false)?,
            served,
            source: Source::Files(files.clone()),
            metrics,
        })
    }

    /// Serves certificates from an ACME CA: the cached one at once, if any; call
    /// [`ListenerTls::spawn_acme`] to order and renew.
    pub fn from_acme(settings: &AcmeSettings, metrics: Metrics) -> Result<Self, TlsError> {
        let acme = Arc::new(Acme::new(settings.clone())?);
        let served = ServedCert::new();
        if let Some(key) = acme.cached_certificate() {
            if let Some(not_after) = served::not_after(&key) {
                metrics.certificate_expiry(not_after);
            }
            tracing::info!(domains = ?settings.domains, "ACME: serving the cached certificate");
            served.set(Arc::new(key));
        }
        Ok(ListenerTls {
            config: server_config(served.clone(), true)?,
            served,
            source: Source::Acme(acme),
            metrics,
        })
    }

    /// The acceptor the server hands every new connection to.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// The certificate in service.
    pub fn served(&self) -> &Arc<ServedCert> {
        &self.served
    }

    /// With ACME, starts ordering and renewing in the background (a no-op task for
    /// files).
    pub fn spawn_acme(&self) -> Option<tokio::task::JoinHandle<()>> {
        match &self.source {
            Source::Acme(acme) => Some(tokio::spawn(
                acme.clone().run(self.served.clone(), self.metrics.clone()),
            )),
            Source::Files(_) => None,
        }
    }

    /// Re-reads `--tls-cert`/`--tls-key`: the new pair serves every new handshake; a
    /// pair that does not load is refused and the one in service kept. ACME
    /// certificates renew on their own, so there is nothing to re-read.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Source::Files(files) = &self.source else {
            return Ok(());
        };
        let key = served::certified_key_from_files(&files.cert, &files.key)?;
        if let Some(not_after) = served::not_after(&key) {
            self.metrics.certificate_expiry(not_after);
        }
        self.served.set(Arc::new(key));
        Ok(())
    }
}

/// The listener's configuration around `served`; with ACME it also offers
/// `acme-tls/1`, which only validation handshakes ask for.
fn server_config(served: Arc<ServedCert>, acme: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(served);
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    if acme {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(Arc::new(config))
}
