//! The certificate the HTTPS listener serves, swappable while it serves.
//!
//! The listener's `rustls::ServerConfig` is built once with [`ServedCert`] as its
//! certificate resolver, so a new certificate (a SIGHUP reload, an ACME renewal) reaches
//! every new handshake at once while open connections keep the one they started with.
//! It also answers ACME's TLS-ALPN-01 validation handshakes (RFC 8737 §3): a client
//! offering only the `acme-tls/1` protocol gets the challenge certificate for its SNI.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{load_certs, provider, TlsError};

/// The ALPN protocol of TLS-ALPN-01 validation handshakes (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate in service and any pending TLS-ALPN-01 challenge certificates.
#[derive(Debug, Default)]
pub struct ServedCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// Lower-cased DNS name → the self-signed certificate carrying the
    /// `acmeIdentifier` extension for that name's pending challenge.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl ServedCert {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Serves `key` to every handshake from now on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }

    /// The certificate in service, if there is one yet.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        self.challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_ascii_lowercase(), key);
    }

    pub(crate) fn clear_challenges(&self) {
        self.challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl ResolvesServerCert for ServedCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers_only_acme = hello.alpn().is_some_and(|mut offered| {
            offered.next() == Some(ACME_TLS_ALPN) && offered.next().is_none()
        });
        if offers_only_acme {
            // RFC 8737 §3: the validation handshake carries the name being validated
            // in SNI and offers `acme-tls/1` alone; it must never get the real
            // certificate, and a normal client never gets a challenge certificate.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&name)
                .cloned();
        }
        self.current()
    }
}

/// A certificate chain and key from PEM files, checked to belong together.
pub fn certified_key_from_files(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        TlsError(format!(
            "cannot read a private key from {}: {e} (expected PKCS#8, PKCS#1 or SEC1 PEM)",
            key.display()
        ))
    })?;
    certified_key(chain, key_der).map_err(|e| {
        TlsError(format!(
            "{} and {} do not form a usable pair: {}",
            cert.display(),
            key.display(),
            e.0
        ))
    })
}

/// A chain and key as rustls serves them, refused when the key is not the leaf's.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, TlsError> {
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError(format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError(format!("the key does not match the certificate: {e}")))?;
    Ok(certified)
}

/// The leaf certificate's notAfter, as Unix seconds.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    validity(key).map(|(_, not_after)| not_after)
}

/// The leaf certificate's notBefore and notAfter, as Unix seconds.
pub fn validity(key: &CertifiedKey) -> Option<(i64, i64)> {
    let leaf = key.cert.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let validity = parsed.validity();
    Some((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed_key(name: &str) -> Arc<CertifiedKey> {
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        Arc::new(certified_key(vec![made.cert.der().clone()], key).unwrap())
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let one = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let key = PrivateKeyDer::try_from(other.signing_key.serialize_der()).unwrap();
        let err = certified_key(vec![one.cert.der().clone()], key).unwrap_err();
        assert!(err.0.contains("does not match"), "{}", err.0);
    }

    #[test]
    fn validity_is_read_from_the_leaf() {
        let key = self_signed_key("a.example");
        let (before, after) = validity(&key).unwrap();
        assert!(after > before, "{before} {after}");
    }
}
