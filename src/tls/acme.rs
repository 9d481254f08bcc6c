//! Certificates from an ACME CA (RFC 8555), validated with TLS-ALPN-01 (RFC 8737) on
//! the listening port itself, as Caddy does: no port 80, no DNS API.
//!
//! The protocol is `instant-acme`'s; this module decides when to order, answers the
//! challenge through [`ServedCert`], and keeps the account key and the certificate in
//! `--acme-cache`. The cache has one folder per directory URL (a staging certificate is
//! never served in production), files 0600 in a 0700 folder, written whole through a
//! rename. A restart loads the cached certificate before the first connection, so it is
//! served even while the CA is down.
//!
//! Renewal starts when a third of the certificate's lifetime is left (30 days of Let's
//! Encrypt's 90), the new certificate is swapped in for new handshakes only, and a
//! failure is logged with the CA's problem document and retried after an exponential
//! back-off, never sooner than the CA's `Retry-After`: Let's Encrypt allows only 5
//! failed validations per account, name and hour.
//!
//! TLS-ALPN-01 needs the CA to complete a TLS handshake with scimguard itself on port
//! 443: behind a load balancer that terminates TLS it cannot work (the balancer answers
//! the handshake); use TCP pass-through there, or `--tls-cert` with the balancer's own
//! certificate management.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::served::{self, ServedCert};
use super::TlsError;
use crate::metrics::Metrics;

/// Let's Encrypt's production directory: the default `--acme-directory`.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous rate limits.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The first retry after a failed order waits 1 minute; each further failure doubles it.
const FIRST_RETRY: Duration = Duration::from_secs(60);
/// Retries never wait more than 6 hours, so a fixed problem heals within the day.
const LONGEST_RETRY: Duration = Duration::from_secs(6 * 3600);
/// One request to the CA may take 30 s before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Validation and issuance: poll the order for up to 2 minutes (Let's Encrypt usually
/// takes seconds), starting at 1 s and doubling, or at the CA's `Retry-After`.
const ORDER_POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_secs(1))
    .backoff(2.0)
    .timeout(Duration::from_secs(120));
/// Largest cache file read back (a chain and key are a few KB).
const MAX_CACHE_FILE_BYTES: u64 = 1 << 20;

/// The ACME settings of `scimguard run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names on the certificate, fixed by configuration (no on-demand issuance).
    pub domains: Vec<String>,
    /// Contact URIs for the account, e.g. `mailto:ops@example.com`.
    pub contact: Vec<String>,
    /// Where the account key and certificates are kept.
    pub cache: PathBuf,
    /// The CA's directory URL.
    pub directory: String,
    /// Extra roots trusted for the directory's own HTTPS (test CAs such as pebble).
    pub extra_ca: Option<PathBuf>,
}

/// Why an order failed, with the CA's problem document when it sent one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AcmeFailure {
    message: String,
    /// Set when the CA refused to validate a challenge (the case a TLS-terminating
    /// load balancer causes).
    validation: bool,
}

impl AcmeFailure {
    fn new(message: impl Into<String>) -> Self {
        AcmeFailure {
            message: message.into(),
            validation: false,
        }
    }
}

impl From<instant_acme::Error> for AcmeFailure {
    fn from(e: instant_acme::Error) -> Self {
        let message = match &e {
            instant_acme::Error::Api(problem) => {
                format!("the ACME server refused: {}", problem_text(problem))
            }
            other => format!("the ACME request failed: {other}"),
        };
        AcmeFailure::new(message)
    }
}

/// An RFC 7807 problem document as one line: type, detail, status, subproblems.
fn problem_text(problem: &instant_acme::Problem) -> String {
    let mut text = format!(
        "type={} detail={:?}",
        problem.r#type.as_deref().unwrap_or("-"),
        problem.detail.as_deref().unwrap_or("-")
    );
    if let Some(status) = problem.status {
        text.push_str(&format!(" status={status}"));
    }
    for sub in &problem.subproblems {
        text.push_str(&format!(
            "; subproblem type={} detail={:?}",
            sub.r#type.as_deref().unwrap_or("-"),
            sub.detail.as_deref().unwrap_or("-")
        ));
    }
    text
}

/// The ACME side of the listener: its settings, cache and HTTP client.
pub struct Acme {
    settings: AcmeSettings,
    cache: Cache,
    http: AcmeHttp,
}

impl Acme {
    /// Checks the settings and opens the cache (creating its folder, 0700). Nothing is
    /// sent to the CA yet.
    pub fn new(settings: AcmeSettings) -> Result<Self, TlsError> {
        let cache = Cache::open(&settings.cache, &settings.directory)?;
        let http = AcmeHttp::new(settings.extra_ca.as_deref())?;
        Ok(Acme {
            settings,
            cache,
            http,
        })
    }

    /// The cached certificate for these names and this directory, if one is there and
    /// usable.
    pub fn cached_certificate(&self) -> Option<CertifiedKey> {
        let pem = self
            .cache
            .read(&self.cache.certificate_file(&self.settings.domains))?;
        match certified_key_from_pem(&pem) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(error = %e, cache = %self.cache.dir.display(), "ACME: the cached certificate is unusable; ordering a new one");
                None
            }
        }
    }

    /// Keeps a valid certificate in `served` forever: orders one when there is none or
    /// a third of its lifetime is left, retrying failures with back-off.
    pub async fn run(self: Arc<Self>, served: Arc<ServedCert>, metrics: Metrics) {
        tracing::info!(
            domains = ?self.settings.domains,
            directory = %self.settings.directory,
            "ACME: certificates are validated with TLS-ALPN-01 on the listening port; the CA must reach this port directly on 443 (a load balancer that terminates TLS makes validation fail)"
        );
        let mut failures: u32 = 0;
        loop {
            if let Some(wait) = served.current().and_then(|key| renewal_wait(&key)) {
                tracing::info!(renew_in_s = wait.as_secs(), "ACME: certificate in service");
                tokio::time::sleep(wait).await;
            }
            match self.order(&served).await {
                Ok(key) => {
                    failures = 0;
                    if let Some(not_after) = served::not_after(&key) {
                        metrics.certificate_expiry(not_after);
                        tracing::info!(domains = ?self.settings.domains, not_after, "ACME: new certificate issued and in service");
                    }
                    served.set(Arc::new(key));
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let retry_after = self.http.take_retry_after();
                    let wait = back_off(failures, retry_after, SystemTime::now());
                    if e.validation {
                        tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "ACME: validation failed. TLS-ALPN-01 needs the ACME server to reach scimguard's own TLS on port 443 of each name; a load balancer that terminates TLS makes this fail (use TCP pass-through, or --tls-cert)");
                    } else {
                        tracing::warn!(error = %e, retry_in_s = wait.as_secs(), "ACME: order failed");
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One order, from account to certificate; the new chain and key are cached.
    async fn order(&self, served: &ServedCert) -> Result<CertifiedKey, AcmeFailure> {
        // Only this order's refusals may set the next wait.
        self.http.take_retry_after();
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .settings
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let outcome = self.authorize(&mut order, served).await;
        let status = match outcome {
            Ok(()) => order.poll_ready(&ORDER_POLL).await,
            Err(e) => Err(e),
        };
        served.clear_challenges();
        let status = status.map_err(|e| self.validation_failure(e))?;
        if status != OrderStatus::Ready {
            return Err(self.invalid_order(&mut order, status).await);
        }

        let key =
            KeyPair::generate().map_err(|e| AcmeFailure::new(format!("cannot make a key: {e}")))?;
        let mut params = CertificateParams::new(self.settings.domains.clone())
            .map_err(|e| AcmeFailure::new(format!("cannot make a CSR: {e}")))?;
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| AcmeFailure::new(format!("cannot make a CSR: {e}")))?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&ORDER_POLL).await?;
        let pem = format!("{}{chain}", key.serialize_pem());
        let certified = certified_key_from_pem(pem.as_bytes())
            .map_err(|e| AcmeFailure::new(format!("the issued certificate is unusable: {e}")))?;
        if let Err(e) = self.cache.write(
            &self.cache.certificate_file(&self.settings.domains),
            pem.as_bytes(),
        ) {
            tracing::warn!(error = %e, "ACME: cannot cache the new certificate; it is served but a restart will order another");
        }
        Ok(certified)
    }

    /// Answers every pending authorization's TLS-ALPN-01 challenge.
    async fn authorize(
        &self,
        order: &mut instant_acme::Order,
        served: &ServedCert,
    ) -> Result<(), instant_acme::Error> {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                _ => {
                    return Err(instant_acme::Error::Str(
                        "an authorization is no longer pending",
                    ))
                }
            }
            let mut challenge =
                authz
                    .challenge(ChallengeType::TlsAlpn01)
                    .ok_or(instant_acme::Error::Str(
                        "the ACME server offers no tls-alpn-01 challenge",
                    ))?;
            let name = challenge.identifier().to_string();
            let digest = challenge.key_authorization().digest();
            let key = challenge_certificate(&name, digest.as_ref())
                .map_err(|e| instant_acme::Error::Other(e.0.into()))?;
            served.set_challenge(&name, Arc::new(key));
            challenge.set_ready().await?;
        }
        Ok(())
    }

    /// A failure while the CA validated the challenges, naming the names; the CA's
    /// verdict on the handshake (RFC 8555 §6.7 `connection`, `tls`, `unauthorized`,
    /// `incorrectResponse`, `dns`, `caa`) marks it as a validation failure.
    fn validation_failure(&self, e: instant_acme::Error) -> AcmeFailure {
        const VALIDATION_PROBLEMS: [&str; 6] = [
            ":connection",
            ":tls",
            ":unauthorized",
            ":incorrectResponse",
            ":dns",
            ":caa",
        ];
        let validation = matches!(&e, instant_acme::Error::Api(problem)
            if problem.r#type.as_deref().is_some_and(|t| VALIDATION_PROBLEMS.iter().any(|v| t.ends_with(v))));
        AcmeFailure {
            message: format!(
                "validating {}: {}",
                self.settings.domains.join(", "),
                AcmeFailure::from(e).message
            ),
            validation,
        }
    }

    /// The failure of an order that did not become ready, with each challenge's problem.
    async fn invalid_order(
        &self,
        order: &mut instant_acme::Order,
        status: OrderStatus,
    ) -> AcmeFailure {
        let mut problems = Vec::new();
        if let Some(problem) = &order.state().error {
            problems.push(problem_text(problem));
        }
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            let _ = authz.refresh().await;
            for challenge in &authz.challenges {
                if let Some(problem) = &challenge.error {
                    problems.push(format!("{}: {}", authz.identifier(), problem_text(problem)));
                }
            }
        }
        AcmeFailure {
            message: format!("the order ended {status:?}: {}", problems.join("; ")),
            validation: true,
        }
    }

    /// The cached account, or a new one (cached at once).
    async fn account(&self) -> Result<Account, AcmeFailure> {
        if let Some(json) = self.cache.read(ACCOUNT_FILE) {
            match serde_json::from_slice::<AccountCredentials>(&json) {
                Ok(credentials) => {
                    return Ok(Account::builder_with_http(Box::new(self.http.clone()))
                        .from_credentials(credentials)
                        .await?)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ACME: the cached account is unreadable; creating a new one")
                }
            }
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(Box::new(self.http.clone()))
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory.clone(),
                None,
            )
            .await?;
        let json = serde_json::to_vec(&credentials)
            .map_err(|e| AcmeFailure::new(format!("cannot serialise the account: {e}")))?;
        if let Err(e) = self.cache.write(ACCOUNT_FILE, &json) {
            tracing::warn!(error = %e, "ACME: cannot cache the account key; a restart will create another account");
        }
        Ok(account)
    }
}

/// How long until `key` should be renewed: when a third of its lifetime is left;
/// `None` when that time has come.
fn renewal_wait(key: &CertifiedKey) -> Option<Duration> {
    let (not_before, not_after) = served::validity(key)?;
    let renew_at = not_after - (not_after - not_before) / 3;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    let wait = renew_at - now;
    (wait > 0).then(|| Duration::from_secs(wait as u64))
}

/// The wait before retry number `failures`: exponential from [`FIRST_RETRY`], capped at
/// [`LONGEST_RETRY`], but never before the CA's `Retry-After`.
fn back_off(failures: u32, retry_after: Option<SystemTime>, now: SystemTime) -> Duration {
    let exponential = FIRST_RETRY
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(LONGEST_RETRY);
    let asked = retry_after
        .and_then(|at| at.duration_since(now).ok())
        .unwrap_or_default();
    exponential.max(asked)
}

/// The self-signed certificate a TLS-ALPN-01 validation handshake must get: the name
/// being validated, and the SHA-256 of the key authorization in the critical
/// `id-pe-acmeIdentifier` extension (RFC 8737 §3).
fn challenge_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, TlsError> {
    let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(|e| {
        TlsError(format!(
            "cannot make a challenge certificate for {name}: {e}"
        ))
    })?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate().map_err(|e| TlsError(format!("cannot make a key: {e}")))?;
    let cert = params.self_signed(&key).map_err(|e| {
        TlsError(format!(
            "cannot make a challenge certificate for {name}: {e}"
        ))
    })?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| TlsError(format!("cannot use the challenge key: {e}")))?;
    // Not `served::certified_key`: its pairing check parses the certificate with
    // webpki, which refuses the critical acmeIdentifier extension; the pair was made
    // together just above.
    let signing = super::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError(format!("cannot use the challenge key: {e}")))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// A cached certificate: the private key's PEM, then the chain's.
fn certified_key_from_pem(pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let key =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError(format!("no private key: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("unreadable certificate: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError("no certificate".into()));
    }
    served::certified_key(chain, key)
}

/// The account file in a directory's cache folder.
const ACCOUNT_FILE: &str = "account.json";

/// `--acme-cache`: one folder per directory URL, named by its SHA-256.
struct Cache {
    dir: PathBuf,
}

impl Cache {
    fn open(root: &Path, directory: &str) -> Result<Self, TlsError> {
        let dir = root.join(format!("directory-{}", short_hash(&[directory])));
        create_private_dir(&dir).map_err(|e| {
            TlsError(format!(
                "cannot create the ACME cache folder {}: {e}. Fix: point --acme-cache at a folder scimguard's user may write",
                dir.display()
            ))
        })?;
        // For people reading the folder: which CA these files belong to.
        let _ = write_private(
            &dir.join("directory-url.txt"),
            format!("{directory}\n").as_bytes(),
        );
        Ok(Cache { dir })
    }

    /// The certificate's file: one per set of names, so changing the names orders anew.
    fn certificate_file(&self, domains: &[String]) -> String {
        let names: Vec<&str> = domains.iter().map(String::as_str).collect();
        format!("certificate-{}.pem", short_hash(&names))
    }

    fn read(&self, file: &str) -> Option<Vec<u8>> {
        use std::io::Read;
        let path = self.dir.join(file);
        let mut bytes = Vec::new();
        match std::fs::File::open(&path) {
            Ok(f) => match f.take(MAX_CACHE_FILE_BYTES).read_to_end(&mut bytes) {
                Ok(_) => Some(bytes),
                Err(e) => {
                    tracing::warn!(error = %e, file = %path.display(), "ACME: cannot read the cache");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(error = %e, file = %path.display(), "ACME: cannot read the cache");
                None
            }
        }
    }

    fn write(&self, file: &str, contents: &[u8]) -> std::io::Result<()> {
        write_private(&self.dir.join(file), contents)
    }
}

/// The first 16 bytes of the SHA-256 of `parts` (each NUL-terminated), as hex.
fn short_hash(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Writes `contents` readable by its owner only (0600) from the first byte, to a
/// temporary file renamed over `path`, so a crash never leaves half a key.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    // The mode applies only when the file is created: a leftover must not lend its own.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The HTTP client instant-acme sends through: hyper-rustls with the web PKI roots and
/// `--acme-ca`, a timeout per request, and the last `Retry-After` the CA sent with an
/// error, so the back-off can honour it.
#[derive(Clone)]
struct AcmeHttp {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl AcmeHttp {
    fn new(extra_ca: Option<&Path>) -> Result<Self, TlsError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(super::upstream_client_config(extra_ca)?)
            .https_only()
            .enable_http1()
            .build();
        Ok(AcmeHttp {
            client: Client::builder(TokioExecutor::new()).build(connector),
            retry_after: Arc::new(Mutex::new(None)),
        })
    }

    fn take_retry_after(&self) -> Option<SystemTime> {
        self.retry_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let sent = self.client.request(req);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let response = tokio::time::timeout(REQUEST_TIMEOUT, sent)
                .await
                .map_err(|_| {
                    instant_acme::Error::Str("the ACME server did not answer within 30 s")
                })?
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            if !response.status().is_success() {
                if let Some(at) = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                {
                    *retry_after.lock().unwrap_or_else(PoisonError::into_inner) = Some(at);
                }
            }
            Ok(BytesResponse::from(response))
        })
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(SystemTime::now() + Duration::from_secs(seconds)),
        Err(_) => httpdate::parse_http_date(value).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_caps_and_honours_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(back_off(1, None, now), Duration::from_secs(60));
        assert_eq!(back_off(2, None, now), Duration::from_secs(120));
        assert_eq!(back_off(40, None, now), LONGEST_RETRY);
        let later = now + Duration::from_secs(3600);
        assert_eq!(back_off(1, Some(later), now), Duration::from_secs(3600));
        // A Retry-After already past does not shorten the back-off.
        assert_eq!(
            back_off(2, Some(now - Duration::from_secs(5)), now),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn renewal_starts_when_a_third_of_the_lifetime_is_left() {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let day = 86_400;
        let lasting = |from: i64, to: i64| {
            let mut params = CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
            params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
            params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
            served::certified_key(vec![cert.der().clone()], der).unwrap()
        };
        // 90 days, 10 of them gone: renew in 50 days (30 before the end).
        let wait = renewal_wait(&lasting(now - 10 * day, now + 80 * day)).unwrap();
        let expected = Duration::from_secs(50 * day as u64);
        assert!(
            wait <= expected && wait > expected - Duration::from_secs(60),
            "{wait:?}"
        );
        // 90 days, 70 of them gone: renew now.
        assert_eq!(renewal_wait(&lasting(now - 70 * day, now + 20 * day)), None);
    }

    /// A CA with a directory and nonces that refuses every account with 429,
    /// `Retry-After: 7200` and a problem document.
    async fn rate_limiting_ca(dir: &Path) -> (String, PathBuf) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, made.cert.pem()).unwrap();
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(super::super::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut request = [0u8; 8192];
                let read = tls.read(&mut request).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&request[..read]).into_owned();
                let base = format!("https://localhost:{port}");
                let answer = if head.starts_with("GET /directory") {
                    let directory = format!(
                        r#"{{"newNonce":"{base}/nonce","newAccount":"{base}/account","newOrder":"{base}/order","revokeCert":"{base}/revoke","keyChange":"{base}/key"}}"#
                    );
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{directory}",
                        directory.len()
                    )
                } else if head.contains(" /nonce ") {
                    "HTTP/1.1 200 OK\r\nReplay-Nonce: bm9uY2U\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                } else {
                    let problem = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new registrations recently","status":429}"#;
                    format!(
                        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7200\r\nReplay-Nonce: bm9uY2U\r\nContent-Type: application/problem+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{problem}",
                        problem.len()
                    )
                };
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
        (format!("https://localhost:{port}/directory"), ca)
    }

    #[tokio::test]
    async fn a_refusal_is_reported_with_its_problem_document_and_its_retry_after_is_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let (directory, ca) = rate_limiting_ca(dir.path()).await;
        let acme = Acme::new(AcmeSettings {
            domains: vec!["scim.example.com".into()],
            contact: vec![],
            cache: dir.path().join("cache"),
            directory,
            extra_ca: Some(ca),
        })
        .unwrap();
        let failure = acme.order(&ServedCert::default()).await.unwrap_err();
        assert!(
            failure
                .message
                .contains("urn:ietf:params:acme:error:rateLimited")
                && failure
                    .message
                    .contains("too many new registrations recently"),
            "{}",
            failure.message
        );
        assert!(!failure.validation);
        let now = SystemTime::now();
        let wait = back_off(1, acme.http.take_retry_after(), now);
        assert!(
            wait > Duration::from_secs(7100) && wait <= Duration::from_secs(7200),
            "the CA's Retry-After beats the 60 s back-off: {wait:?}"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let soon = parse_retry_after("120").unwrap();
        let left = soon.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(110) && left <= Duration::from_secs(120));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn the_cache_is_keyed_by_directory_and_private() {
        let root = tempfile::tempdir().unwrap();
        let production = Cache::open(root.path(), LETS_ENCRYPT_PRODUCTION).unwrap();
        let staging = Cache::open(root.path(), LETS_ENCRYPT_STAGING).unwrap();
        assert_ne!(production.dir, staging.dir);
        let file = staging.certificate_file(&["a.example".into()]);
        staging.write(&file, b"staging").unwrap();
        assert_eq!(
            production.read(&file),
            None,
            "a staging certificate never serves production"
        );
        assert_eq!(staging.read(&file).as_deref(), Some(&b"staging"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(staging.dir.join(&file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&staging.dir)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    #[test]
    fn the_challenge_certificate_carries_the_acme_identifier() {
        let digest = [7u8; 32];
        let key = challenge_certificate("a.example", &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
        // id-pe-acmeIdentifier, RFC 8737 §6.1.
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        assert!(ext.value.ends_with(&digest));
    }
}
