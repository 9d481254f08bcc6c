//! TLS on both legs: the HTTPS listener (rustls via tokio-rustls, ALPN h2 + http/1.1),
//! the trust store for the upstream (web PKI roots plus `--upstream-ca`), and
//! self-signed certificates for local trials (`scimguard cert`).
//!
//! | part | role |
//! |---|---|
//! | [`listener`] | the listener's certificate source: files (re-read on SIGHUP) or ACME |
//! | [`served`] | the swappable certificate every new handshake gets; TLS-ALPN-01 answers |
//! | [`acme`] | RFC 8555 issuance and renewal with TLS-ALPN-01 on the listening port |

pub mod acme;
pub mod listener;
pub mod served;

pub use listener::ListenerTls;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// ALPN protocols the listener offers, most preferred first (RFC 7301).
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A TLS set-up problem, with the file it concerns and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate from a PEM file; an empty file is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            TlsError(format!(
                "cannot read certificates from {}: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The HTTPS listener's configuration from a PEM chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        TlsError(format!(
            "cannot read a private key from {}: {e} (expected PKCS#8, PKCS#1 or SEC1 PEM)",
            key.display()
        ))
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError(format!(
                "certificate and key do not form a usable pair: {e}"
            ))
        })?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The client configuration for the upstream: web PKI roots, plus the CAs in `extra_ca`.
pub fn upstream_client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in load_certs(path)? {
            roots.add(cert).map_err(|e| {
                TlsError(format!(
                    "{} holds a certificate that cannot be a trust anchor: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A freshly made self-signed certificate and its private key, both PEM.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a self-signed certificate valid for `names` (IP addresses become IP SANs).
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError(format!("cannot make a certificate for {names:?}: {e}")))?;
    Ok(SelfSigned {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    })
}
