//! Shared test machinery: a recording upstream, a proxy on port 0, run-time certificates
//! and clients. Everything talks over real sockets on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use scimguard::cli::RunArgs;
use scimguard::config::Config;
use scimguard::Proxy;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// The request target as received (origin-form on HTTP/1.1, the URI on h2).
    pub uri: http::Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How the test upstream answers.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// 201 with a fixed body and a mix of end-to-end and hop-by-hop headers.
    Answer,
    /// Waits this long, then answers like `Answer`.
    Delay(Duration),
    /// Never answers.
    Stall,
    /// Answers like `Answer` to the first N requests, then 400 in AWS's error shape.
    FailFrom(usize),
}

/// The body `Behaviour::Answer` sends.
pub const UPSTREAM_BODY: &str = r#"{"id":"9067729b3d-94f1e0b3","userName":"bjensen"}"#;

/// A recording upstream on 127.0.0.1:0, optionally HTTPS with h2.
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The TLS SNI of every HTTPS connection, in order.
    pub snis: Arc<Mutex<Vec<String>>>,
    _task: JoinHandle<()>,
}

impl TestUpstream {
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_with(behaviour, None).await
    }

    /// With `tls`, serves HTTPS offering h2 and http/1.1 by ALPN.
    pub async fn start_with(behaviour: Behaviour, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let snis = Arc::new(Mutex::new(Vec::new()));
        let sni_record = snis.clone();
        let task = tokio::spawn(async move {
            let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                let sni_record = sni_record.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let record = record.clone();
                        async move { Ok::<_, Infallible>(answer(req, behaviour, record).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                                sni_record.lock().unwrap().push(sni);
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                    }
                });
            }
        });
        TestUpstream {
            addr,
            seen,
            snis,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    behaviour: Behaviour,
    record: Arc<Mutex<Vec<Seen>>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    record.lock().unwrap().push(Seen {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body,
    });
    let count = record.lock().unwrap().len();
    match behaviour {
        Behaviour::Answer => {}
        Behaviour::Delay(d) => tokio::time::sleep(d).await,
        Behaviour::Stall => std::future::pending::<()>().await,
        Behaviour::FailFrom(n) if count > n => {
            let body = r#"{"schema":["urn:ietf:params:scim:api:messages:2.0:Error"],"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"Request is unparsable, syntactically incorrect, or violates schema.","status":"400"}"#;
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .header("content-type", "application/json")
                .header("x-amzn-requestid", "f00dfeed-0000-4000-8000-000000000400")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap();
        }
        Behaviour::FailFrom(_) => {}
    }
    let mut builder = Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "application/scim+json")
        .header("x-amzn-requestid", "b0d3cf5e-0000-4d5e-9d8a-3a6d4c7e0001")
        .header("x-upstream-hop", "secret-for-this-hop")
        .header("keep-alive", "timeout=5");
    if parts.version == Version::HTTP_11 {
        builder = builder.header("connection", "x-upstream-hop");
    }
    builder
        .body(Full::new(Bytes::from_static(UPSTREAM_BODY.as_bytes())))
        .unwrap()
}

/// A proxy serving on 127.0.0.1:0 inside the test's runtime.
pub struct TestProxy {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TestProxy {
    /// Starts a proxy from flags, exactly as `scimguard run` would build it.
    pub async fn start(args: RunArgs) -> Self {
        let config = Config::from_run_args(&args).expect("valid test config");
        let proxy = Proxy::from_config(&config).expect("proxy builds");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.serve(listener, async {
            let _ = stopped.await;
        }));
        TestProxy {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// A proxy in front of `upstream` with default settings.
    pub async fn in_front_of(upstream: &str) -> Self {
        Self::start(RunArgs {
            upstream: Some(upstream.to_owned()),
            ..RunArgs::default()
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and returns the serve task, which ends once drained.
    pub fn shutdown(mut self) -> JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
    }
}

/// A plain HTTP/1.1 client.
pub fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// An HTTPS client trusting only `ca`, h2-only when `h2` is set.
pub fn https_client(
    ca: &Path,
    h2: bool,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // ALPN offers exactly one protocol, so the test knows which one the proxy speaks.
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    let connector = if h2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build(connector)
}

/// Sends a request and returns the status, headers and whole body.
pub async fn send<C>(
    client: &Client<C, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, Bytes, Version)
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let response = client.request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, body, parts.version)
}

/// A private CA and a leaf for localhost/127.0.0.1 it signed, written as PEM files.
pub struct TestPki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    pub fn mint() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "scimguard test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("ca.pem");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        std::fs::write(&cert, leaf.pem()).unwrap();
        std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
        TestPki {
            _dir: dir,
            ca: ca_path,
            cert,
            key,
        }
    }

    /// A server config for the leaf, offering h2 and http/1.1.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let chain: Vec<_> = CertificateDer::pem_file_iter(&self.cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&self.key).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Parses the AWS-shaped SCIM error body and returns (status string, detail).
pub fn scim_error(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON error body");
    let schema = "urn:ietf:params:scim:api:messages:2.0:Error";
    assert_eq!(v["schemas"][0], schema, "{v}");
    assert_eq!(v["schema"][0], schema, "{v}");
    (
        v["status"].as_str().expect("status is a string").to_owned(),
        v["detail"].as_str().expect("detail").to_owned(),
    )
}

/// The path to the built binary.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_scimguard")
}

/// `scimguard` itself as a child process, its stdout and stderr collected line by line;
/// killed when dropped.
pub struct RunningBinary {
    pub child: std::process::Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl RunningBinary {
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(binary())
            .args(args)
            .env_remove("SCIMGUARD_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scimguard starts");
        let collect = |stream: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        RunningBinary {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits up to 20 s for a stdout line containing `needle`.
    pub async fn stdout_line(&self, needle: &str) -> String {
        for _ in 0..200 {
            if let Some(line) = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no stdout line with {needle:?}; stderr: {:?}",
            self.stderr.lock().unwrap()
        );
    }

    /// Sends `signal` (e.g. "HUP", "TERM") with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGTERM, then waits up to 10 s for the process to end; returns its stderr.
    pub async fn stop(mut self) -> String {
        self.signal("TERM");
        for _ in 0..100 {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let the reader threads take the last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to a `scimguard` child and waits up to 10 s for it to end (it writes
/// its capture and log on the way out).
pub fn terminate(child: &mut std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "scimguard did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the first `/metrics` line starting with `line_start` (a name with its
/// labels), if there is one.
pub fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// The address of the first `scheme://` URL in a banner line.
pub fn listening_addr(banner: &str, scheme: &str) -> std::net::SocketAddr {
    let prefix = format!("{scheme}://");
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} URL in {banner}"));
    url.trim_start_matches(&prefix).parse().unwrap()
}

/// A port free a moment ago on 127.0.0.1, for programs that must be told their port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TLS connection to `addr` for `name`, verified against `roots_pem`; `Err` with
/// rustls' reason when the handshake fails.
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    roots_pem: &[u8],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())
}

/// The leaf certificate `addr` serves for `name`, verified against `roots_pem`.
pub async fn served_certificate(
    addr: SocketAddr,
    name: &str,
    roots_pem: &[u8],
) -> Result<CertificateDer<'static>, String> {
    let tls = tls_connect(addr, name, roots_pem).await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no certificate")?[0]
        .clone();
    Ok(leaf.into_owned())
}

/// Sends raw HTTP/1.1 `request` text over `stream` and reads until the server closes or
/// 5 s pass.
pub async fn raw_exchange<S>(stream: &mut S, request: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A certificate's serial number, as hex.
pub fn serial_of(cert: &CertificateDer<'_>) -> String {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    parsed.raw_serial_as_string()
}
