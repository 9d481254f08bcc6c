//! The live view and the report, in a real browser: Debian's chromium, headless, driven
//! through chromedriver (WebDriver, the `fantoccini` crate). Screenshots are kept under
//! `target/test-artifacts/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fantoccini::{Client, ClientBuilder, Locator};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use scimguard::cli::RunArgs;
use scimguard::config::Config;
use scimguard::Proxy;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{binary, http_client, send};

/// The emulator's bearer token: it must never reach either page.
const SCIM_TOKEN: &str = "view-scim-token-5ecret";
/// The admin listener's token: it must never reach either page either.
const ADMIN_TOKEN: &str = "view-admin-token-5ecret";
/// A password sent in a request body: shown nowhere.
const PASSWORD: &str = "Pa55word-never-shown";
const TENANT: &str = "d-9067a1b2c3";

/// Every wait in the browser ends within this.
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver and chromium, stopped when dropped.
struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// `None` (the skip line printed) when chromium or chromedriver is missing.
    async fn start() -> Option<Browser> {
        let chromium = crate::external::program("chromium", "chromium")?;
        let chromedriver = crate::external::program("chromedriver", "chromium-driver")?;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            client: None,
            _profile: profile,
        };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1400,1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        )])
        .collect::<Vec<_>>();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver on {url} did not start a session: {e}"),
            }
        };
        browser.client = Some(client);
        Some(browser)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client().screenshot().await.expect("a screenshot");
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts")
}

/// The proxy on the embedded emulator, with the live view on a loopback admin port
/// guarded by a token, recording to `capture`.
struct ViewProxy {
    addr: SocketAddr,
    admin: SocketAddr,
    login: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ViewProxy {
    async fn start(capture: &Path) -> ViewProxy {
        let args = RunArgs {
            admin: Some("127.0.0.1:0".parse().unwrap()),
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            token: Some(SCIM_TOKEN.to_owned()),
            tenant: Some(TENANT.to_owned()),
            record: Some(capture.to_owned()),
            ..RunArgs::default()
        };
        let config = Config::from_run_args(&args).expect("valid test config");
        let mut proxy = Proxy::start(&config).await.expect("proxy builds");
        let admin = proxy.bind_admin().await.unwrap().expect("--admin is set");
        let login = proxy.admin_auth.login_path().expect("a one-time link");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy.serve(listener, async {
            let _ = stopped.await;
        }));
        ViewProxy {
            addr,
            admin,
            login,
            stop: Some(stop),
            task,
        }
    }

    /// Sends one SCIM request with the emulator's token; returns status and verdict.
    async fn scim(&self, method: Method, path: &str, body: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}/{TENANT}/scim/v2{path}", self.addr))
            .header("authorization", format!("Bearer {SCIM_TOKEN}"))
            .header("content-type", "application/scim+json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let (status, headers, _, _) = send(&http_client(), request).await;
        let verdict = headers
            .get("x-scimguard-verdict")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, verdict)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the proxy drains")
            .unwrap();
    }
}

/// Waits until `css` matches exactly `count` elements; returns them.
async fn wait_for_count(
    client: &Client,
    css: &str,
    count: usize,
) -> Vec<fantoccini::elements::Element> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = client.find_all(Locator::Css(css)).await.unwrap();
        if found.len() == count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{css}: {} elements, expected {count}\n{}",
            found.len(),
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Neither the tokens nor the password, anywhere in what the browser holds.
async fn assert_no_secrets(client: &Client, page: &str) {
    let source = client.source().await.unwrap();
    let text: String = client
        .execute("return document.documentElement.textContent", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for secret in [SCIM_TOKEN, ADMIN_TOKEN, PASSWORD] {
        assert!(!source.contains(secret), "{page} shows {secret}");
        assert!(!text.contains(secret), "{page} shows {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_view_shows_exchanges_as_they_happen_and_the_report_sums_them_up() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.jsonl");
    let proxy = ViewProxy::start(&capture).await;
    let client = browser.client();

    // Without the token the page is closed; the one-time link sets the session cookie.
    client
        .goto(&format!("http://{}/", proxy.admin))
        .await
        .unwrap();
    assert!(text_of(client, "body").await.contains("needs its token"));
    client
        .goto(&format!("http://{}{}", proxy.admin, proxy.login))
        .await
        .unwrap();
    assert_eq!(text_of(client, "#status").await, "live");
    wait_for_count(client, "#list tbody tr", 0).await;

    // Three exchanges, with no reload: refused, rewritten, forwarded.
    let (status, verdict) = proxy
        .scim(
            Method::POST,
            "/Users",
            &format!(r#"{{"userName":"jdoe","name":{{"givenName":"J"}},"password":"{PASSWORD}"}}"#),
        )
        .await;
    assert_eq!(
        (status, verdict.as_str()),
        (StatusCode::BAD_REQUEST, "rejected")
    );
    let (status, verdict) = proxy
        .scim(
            Method::POST,
            "/Users",
            r#"{"userName":"asmith","displayName":"A Smith","name":{"givenName":"A","familyName":"Smith"},
               "emails":[{"value":"a@home.example","type":"home"},{"value":"asmith@example.com","type":"work"}]}"#,
        )
        .await;
    assert_eq!(
        (status, verdict.as_str()),
        (StatusCode::CREATED, "rewritten")
    );
    let (status, verdict) = proxy
        .scim(
            Method::GET,
            "/Users?filter=userName%20eq%20%22asmith%22",
            "",
        )
        .await;
    assert_eq!((status, verdict.as_str()), (StatusCode::OK, "forwarded"));

    let rows = wait_for_count(client, "#list tbody tr", 3).await;
    let verdicts = {
        let mut v = Vec::new();
        for row in &rows {
            v.push(row.attr("data-verdict").await.unwrap().unwrap_or_default());
        }
        v
    };
    assert_eq!(
        verdicts,
        ["forwarded", "rewritten", "rejected"],
        "newest first"
    );
    let rewritten = rows[1].text().await.unwrap();
    assert!(rewritten.contains("user.multi-value"), "{rewritten}");
    assert!(rewritten.contains("user.email-primary"), "{rewritten}");
    let rejected = rows[2].text().await.unwrap();
    assert!(rejected.contains("user.required"), "{rejected}");
    assert!(
        rejected.contains("user jdoe refused: no displayName"),
        "{rejected}"
    );
    assert!(rows[0]
        .text()
        .await
        .unwrap()
        .contains("users looked up: asmith"));
    // The counter strip follows (pushed every 2 s).
    let deadline = Instant::now() + WAIT;
    while text_of(client, "#count-requests b").await != "3" {
        assert!(
            Instant::now() < deadline,
            "the counters never showed 3 requests"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(text_of(client, "#count-rejected b").await, "1");
    assert_eq!(text_of(client, "#count-rewritten b").await, "1");

    // The detail pane of the refusal: its finding, where, from which guide section.
    rows[2].click().await.unwrap();
    let detail = text_of(client, "#detail-findings").await;
    assert!(detail.contains("user.required"), "{detail}");
    assert!(detail.contains("/displayName"), "{detail}");
    assert!(detail.contains("source:"), "{detail}");
    assert!(text_of(client, "#detail")
        .await
        .contains("Bearer $SCIM_TOKEN"));
    browser.screenshot("view-live-detail.png").await;

    // The rewrite's diff: the home email removed, primary added.
    rows[1].click().await.unwrap();
    let diff = text_of(client, "#detail-diff").await;
    assert!(
        diff.contains("- ") && diff.contains("a@home.example"),
        "{diff}"
    );
    assert!(diff.contains("\"primary\": true"), "{diff}");

    // Filters: by verdict, then by free text.
    client
        .find(Locator::Css("#filter-verdict"))
        .await
        .unwrap()
        .select_by_value("rewritten")
        .await
        .unwrap();
    let shown = wait_for_count(client, "#list tbody tr", 1).await;
    assert_eq!(
        shown[0].attr("data-verdict").await.unwrap().as_deref(),
        Some("rewritten")
    );
    client
        .find(Locator::Css("#filter-verdict"))
        .await
        .unwrap()
        .select_by_value("")
        .await
        .unwrap();
    wait_for_count(client, "#list tbody tr", 3).await;
    client
        .find(Locator::Css("#filter-text"))
        .await
        .unwrap()
        .send_keys("displayName")
        .await
        .unwrap();
    let shown = wait_for_count(client, "#list tbody tr", 1).await;
    assert_eq!(
        shown[0].attr("data-verdict").await.unwrap().as_deref(),
        Some("rejected")
    );
    client
        .find(Locator::Css("#filter-rule"))
        .await
        .unwrap()
        .select_by_value("user.email-primary")
        .await
        .unwrap();
    wait_for_count(client, "#list tbody tr", 0).await;
    browser.screenshot("view-live-filtered.png").await;
    assert_no_secrets(client, "the live view").await;

    // The report of the capture, opened from disk.
    proxy.stop().await;
    let report = dir.path().join("report.html");
    let output = Command::new(binary())
        .arg("report")
        .arg(&capture)
        .arg("--out")
        .arg(&report)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let html = std::fs::read_to_string(&report).unwrap();
    for secret in [SCIM_TOKEN, ADMIN_TOKEN, PASSWORD] {
        assert!(!html.contains(secret), "the report file holds {secret}");
    }
    client
        .goto(&format!("file://{}", report.display()))
        .await
        .unwrap();
    assert_eq!(text_of(client, "#total-exchanges b").await, "3");
    assert_eq!(text_of(client, "#total-rejected b").await, "1");
    assert_eq!(text_of(client, "#total-rewritten b").await, "1");
    assert_eq!(text_of(client, "#total-forwarded b").await, "1");
    let rules = text_of(client, "#top-rules").await;
    for rule in ["user.required", "user.multi-value", "user.email-primary"] {
        assert!(rules.contains(rule), "{rules}");
    }
    let failed = text_of(client, "#failed").await;
    assert!(failed.contains("user jdoe"), "{failed}");
    assert!(failed.contains("attribute mappings"), "{failed}");
    wait_for_count(client, "#chart-verdict svg rect", 3).await;
    wait_for_count(client, "#list tbody tr", 3).await;
    browser.screenshot("report.png").await;
    assert_no_secrets(client, "the report").await;
    browser.close().await;
}
