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
/// A userName that is markup: the pages must show it as text and never run it.
const MARKUP: &str = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>";

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
        Browser::start_with(&[]).await
    }

    /// As [`Browser::start`], with more chromium flags.
    async fn start_with(extra: &[&str]) -> Option<Browser> {
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
        .chain(extra)
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

/// One row of the list as shown: its verdict and its text.
#[derive(Debug)]
struct Row {
    verdict: String,
    text: String,
}

/// Waits until the list shows exactly `count` rows; returns them, top first. Read in one
/// script call: the page re-renders rows as entries arrive, so element handles held
/// across calls may go stale.
async fn wait_for_rows(client: &Client, count: usize) -> Vec<Row> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = client
            .execute(
                "return Array.from(document.querySelectorAll('#list tbody tr')).map(r => [r.getAttribute('data-verdict'), r.innerText])",
                vec![],
            )
            .await
            .unwrap();
        let rows: Vec<Row> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Row {
                verdict: r[0].as_str().unwrap_or_default().to_owned(),
                text: r[1].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        if rows.len() == count {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} rows, expected {count}: {rows:?}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the `n`th row of the list (1 is the top), again if it was re-rendered under
/// the click.
async fn click_row(client: &Client, n: usize) {
    let css = format!("#list tbody tr:nth-child({n})");
    for _ in 0..10 {
        let row = client.find(Locator::Css(&css)).await.unwrap();
        match row.click().await {
            Ok(()) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("could not click {css}");
}

/// The shown text (`innerText`) of the first element matching `css`, once there is one.
async fn text_of(client: &Client, css: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null",
                vec![serde_json::json!(css)],
            )
            .await
            .unwrap();
        if let Some(text) = text.as_str() {
            return text.to_owned();
        }
        assert!(Instant::now() < deadline, "nothing matches {css}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The markup in [`MARKUP`] became no element and ran nothing.
async fn assert_nothing_ran(client: &Client, page: &str) {
    let ran = client
        .execute(
            "return [typeof window.pwned, document.querySelectorAll('img').length, \
             document.querySelectorAll('script:not([src]):not([id])').length]",
            vec![],
        )
        .await
        .unwrap();
    let inline_scripts = if page == "the report" { 1 } else { 0 };
    assert_eq!(
        ran,
        serde_json::json!(["undefined", 0, inline_scripts]),
        "{page} ran the markup"
    );
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
    wait_for_rows(client, 0).await;

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

    let rows = wait_for_rows(client, 3).await;
    let verdicts: Vec<&str> = rows.iter().map(|r| r.verdict.as_str()).collect();
    assert_eq!(
        verdicts,
        ["forwarded", "rewritten", "rejected"],
        "newest first"
    );
    let rewritten = &rows[1].text;
    assert!(rewritten.contains("user.multi-value"), "{rewritten}");
    assert!(rewritten.contains("user.email-primary"), "{rewritten}");
    let rejected = &rows[2].text;
    assert!(rejected.contains("user.required"), "{rejected}");
    assert!(
        rejected.contains("user jdoe refused: no displayName"),
        "{rejected}"
    );
    assert!(rows[0].text.contains("users looked up: asmith"), "{rows:?}");
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
    click_row(client, 3).await;
    let detail = text_of(client, "#detail-findings").await;
    assert!(detail.contains("user.required"), "{detail}");
    assert!(detail.contains("/displayName"), "{detail}");
    assert!(detail.contains("source:"), "{detail}");
    assert!(text_of(client, "#detail")
        .await
        .contains("Bearer $SCIM_TOKEN"));
    browser.screenshot("view-live-detail.png").await;

    // The rewrite's diff: the home email removed, primary added.
    click_row(client, 2).await;
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
    let shown = wait_for_rows(client, 1).await;
    assert_eq!(shown[0].verdict, "rewritten");
    client
        .find(Locator::Css("#filter-verdict"))
        .await
        .unwrap()
        .select_by_value("")
        .await
        .unwrap();
    wait_for_rows(client, 3).await;
    client
        .find(Locator::Css("#filter-text"))
        .await
        .unwrap()
        .send_keys("displayName")
        .await
        .unwrap();
    let shown = wait_for_rows(client, 1).await;
    assert_eq!(shown[0].verdict, "rejected");
    client
        .find(Locator::Css("#filter-rule"))
        .await
        .unwrap()
        .select_by_value("user.email-primary")
        .await
        .unwrap();
    wait_for_rows(client, 0).await;
    browser.screenshot("view-live-filtered.png").await;
    assert_no_secrets(client, "the live view").await;

    // Back to everything; then AWS (the emulator) refuses a duplicate, and a userName
    // made of markup arrives: it must show as text and run nothing.
    for select in ["#filter-rule", "#filter-verdict"] {
        client
            .find(Locator::Css(select))
            .await
            .unwrap()
            .select_by_value("")
            .await
            .unwrap();
    }
    client
        .find(Locator::Css("#filter-text"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    wait_for_rows(client, 3).await;
    let (status, verdict) = proxy
        .scim(
            Method::POST,
            "/Users",
            r#"{"userName":"asmith","displayName":"A Smith","name":{"givenName":"A","familyName":"Smith"},
               "emails":[{"value":"asmith@example.com","type":"work","primary":true}]}"#,
        )
        .await;
    assert_eq!(
        (status, verdict.as_str()),
        (StatusCode::CONFLICT, "forwarded")
    );
    let (status, verdict) = proxy
        .scim(
            Method::POST,
            "/Users",
            &serde_json::json!({
                "userName": MARKUP, "displayName": MARKUP,
                "name": {"givenName": "X", "familyName": "Y"}
            })
            .to_string(),
        )
        .await;
    assert_eq!(
        (status, verdict.as_str()),
        (StatusCode::BAD_REQUEST, "rejected")
    );
    let rows = wait_for_rows(client, 5).await;
    assert!(rows[0].text.contains(MARKUP), "{rows:?}");
    assert_eq!(text_of(client, "#list tbody tr .subject").await, MARKUP);
    click_row(client, 1).await;
    assert!(text_of(client, "#detail-summary").await.contains(MARKUP));
    assert_nothing_ran(client, "the live view").await;
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
    assert_eq!(text_of(client, "#total-exchanges b").await, "5");
    assert_eq!(text_of(client, "#total-rejected b").await, "2");
    assert_eq!(text_of(client, "#total-rewritten b").await, "1");
    assert_eq!(text_of(client, "#total-forwarded b").await, "2");
    let aws_errors = text_of(client, "#aws-errors").await;
    assert!(
        aws_errors.contains("409")
            && aws_errors.contains("Refused to create a new, duplicate resource."),
        "{aws_errors}"
    );
    let rules = text_of(client, "#top-rules").await;
    for rule in ["user.required", "user.multi-value", "user.email-primary"] {
        assert!(rules.contains(rule), "{rules}");
    }
    let failed = text_of(client, "#failed").await;
    assert!(failed.contains("user jdoe"), "{failed}");
    assert!(failed.contains("attribute mappings"), "{failed}");
    assert!(failed.contains("user asmith"), "{failed}");
    wait_for_rows(client, 5).await;
    // The charts are inline SVG; their legends carry the counts.
    let chart = text_of(client, "#chart-verdict").await;
    assert!(
        chart.contains("forwarded 2") && chart.contains("rejected 2"),
        "{chart}"
    );
    assert!(text_of(client, "#chart-operation")
        .await
        .contains("CreateUser 4"));
    assert!(!client
        .find_all(Locator::Css("#chart-verdict svg rect"))
        .await
        .unwrap()
        .is_empty());
    browser.screenshot("report.png").await;
    assert!(failed.contains(MARKUP), "{failed}");
    click_row(client, 1).await;
    assert!(text_of(client, "#detail-summary").await.contains(MARKUP));
    assert_nothing_ran(client, "the report").await;
    assert_no_secrets(client, "the report").await;
    assert_eq!(
        background(client).await,
        "rgb(255, 255, 255)",
        "light by default"
    );
    browser.close().await;

    // A system in dark mode gets the dark theme.
    let dark = Browser::start_with(&["--force-dark-mode"])
        .await
        .expect("found above");
    dark.client()
        .goto(&format!("file://{}", report.display()))
        .await
        .unwrap();
    assert_eq!(text_of(dark.client(), "#total-exchanges b").await, "5");
    assert_eq!(background(dark.client()).await, "rgb(21, 24, 28)");
    dark.screenshot("report-dark.png").await;
    dark.close().await;
}

/// A tripped blast-radius guard shows in the live view, and its button (clicked twice:
/// once to arm, once to confirm) releases it: the next delete goes through. A post from
/// another site is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_releases_a_tripped_guard() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (addr, admin, _stop) = open_proxy(RunArgs {
        guard_deletes: Some(2),
        ..RunArgs::default()
    })
    .await;
    let scim = |method: Method, path: String, body: String| async move {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}/{TENANT}/scim/v2{path}"))
            .header("authorization", format!("Bearer {SCIM_TOKEN}"))
            .header("content-type", "application/scim+json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let (status, _, body, _) = send(&http_client(), request).await;
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
        )
    };
    let mut users = Vec::new();
    for i in 0..4 {
        let body = format!(
            r#"{{"userName":"leaver{i}","displayName":"L {i}","name":{{"givenName":"L","familyName":"{i}"}},
                "emails":[{{"value":"leaver{i}@example.com","type":"work","primary":true}}]}}"#
        );
        let (status, user) = scim(Method::POST, "/Users".into(), body).await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        users.push(user["id"].as_str().unwrap().to_owned());
    }
    let mut statuses = Vec::new();
    for id in &users[..3] {
        statuses.push(
            scim(Method::DELETE, format!("/Users/{id}"), String::new())
                .await
                .0,
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::NO_CONTENT,
            StatusCode::NO_CONTENT,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );

    // A post from another site (a page the admin happens to visit) is refused.
    let forged = Request::post(format!("http://{admin}/guard/{TENANT}/release"))
        .header("origin", "http://attacker.example")
        .header("sec-fetch-site", "cross-site")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, ..) = send(&http_client(), forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let client = browser.client();
    client.goto(&format!("http://{admin}/")).await.unwrap();
    let row = format!("#guard-tenants tr[data-tenant=\"{TENANT}\"][data-tripped=\"yes\"]");
    let shown = text_of(client, &row).await;
    assert!(
        shown.contains("tripped") && shown.contains("DeleteUser"),
        "{shown}"
    );
    browser.screenshot("view-guard-tripped.png").await;
    let button = format!("{row} button.release");
    for click in ["arm", "confirm"] {
        let found = client.find(Locator::Css(&button)).await.unwrap();
        found
            .click()
            .await
            .unwrap_or_else(|e| panic!("{click}: {e}"));
        if click == "arm" {
            assert!(text_of(client, &button).await.contains("confirm"));
        }
    }
    let deadline = Instant::now() + WAIT;
    let mut result = text_of(client, "#guard-result").await;
    while !result.contains("released") {
        assert!(Instant::now() < deadline, "no release shown: {result}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = text_of(client, "#guard-result").await;
    }
    assert!(result.contains("1 held request"), "{result}");
    text_of(
        client,
        &format!("#guard-tenants tr[data-tenant=\"{TENANT}\"][data-tripped=\"no\"]"),
    )
    .await;

    // The IdP's retry goes through.
    let (status, _) = scim(
        Method::DELETE,
        format!("/Users/{}", users[2]),
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_nothing_ran(client, "the live view").await;
    browser.close().await;
}

/// The page's background colour, as computed.
async fn background(client: &Client) -> String {
    client
        .execute(
            "return getComputedStyle(document.body).backgroundColor",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A proxy on the embedded emulator with the view on loopback and no token.
async fn open_proxy(args: RunArgs) -> (SocketAddr, SocketAddr, oneshot::Sender<()>) {
    let config = Config::from_run_args(&RunArgs {
        admin: Some("127.0.0.1:0".parse().unwrap()),
        token: Some(SCIM_TOKEN.to_owned()),
        tenant: Some(TENANT.to_owned()),
        ..args
    })
    .expect("valid test config");
    let mut proxy = Proxy::start(&config).await.expect("proxy builds");
    let admin = proxy.bind_admin().await.unwrap().expect("--admin is set");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(proxy.serve(listener, async {
        let _ = stopped.await;
    }));
    (addr, admin, stop)
}

async fn get(url: String) -> (StatusCode, String) {
    let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let (status, _, body, _) = send(&http_client(), request).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn redact_pii_hashes_names_in_the_view_as_in_the_capture() {
    let (addr, admin, _stop) = open_proxy(RunArgs {
        redact_pii: true,
        ..RunArgs::default()
    })
    .await;
    let user = r#"{"userName":"jane.roe","displayName":"Jane Roe","name":{"givenName":"Jane","familyName":"Roe"},
                   "emails":[{"value":"jane.roe@example.com","type":"work","primary":true}]}"#;
    let request = Request::post(format!("http://{addr}/{TENANT}/scim/v2/Users"))
        .header("authorization", format!("Bearer {SCIM_TOKEN}"))
        .header("content-type", "application/scim+json")
        .body(Full::new(Bytes::from(user)))
        .unwrap();
    let (status, ..) = send(&http_client(), request).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, json) = get(format!("http://{admin}/api/exchanges")).await;
    assert_eq!(status, StatusCode::OK);
    let entries: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1, "{json}");
    for pii in ["jane.roe", "Jane", "Roe", SCIM_TOKEN] {
        assert!(!json.contains(pii), "the view shows {pii}: {json}");
    }
    let summary = entries[0]["summary"].as_str().unwrap();
    assert!(summary.starts_with("user sha256:"), "{summary}");
    assert!(summary.ends_with(" created"), "{summary}");
}

#[tokio::test]
async fn view_history_0_turns_the_view_off_and_metrics_stay() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scimguard.toml");
    std::fs::write(&file, "view_history = 0\nadmin_token = \"from-the-file\"\n").unwrap();
    let config = Config::from_run_args(&RunArgs {
        config: Some(file.clone()),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        ..RunArgs::default()
    })
    .unwrap();
    assert_eq!(config.view_history, 0);
    assert_eq!(config.admin_token.as_deref(), Some("from-the-file"));
    std::fs::write(&file, "admin_token = \"\"\n").unwrap();
    let empty = Config::from_run_args(&RunArgs {
        config: Some(file.clone()),
        ..RunArgs::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        empty.contains("admin_token") && empty.contains("Fix:"),
        "{empty}"
    );

    let (_, admin, _stop) = open_proxy(RunArgs {
        view_history: Some(0),
        ..RunArgs::default()
    })
    .await;
    let (status, body) = get(format!("http://{admin}/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("--view-history 0"), "{body}");
    assert_eq!(
        get(format!("http://{admin}/metrics")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(format!("http://{admin}/healthz")).await.0,
        StatusCode::OK
    );
}

#[test]
fn an_exposed_admin_needs_a_token_and_then_prints_a_one_time_link() {
    let refused = Command::new(binary())
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])
        .env_remove("SCIMGUARD_ADMIN_TOKEN")
        .env_remove("SCIMGUARD_UPSTREAM")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--admin-token"), "{stderr}");

    let mut child = Command::new(binary())
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])
        .env("SCIMGUARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("SCIMGUARD_UPSTREAM")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut banner = Vec::new();
    let login = loop {
        let line = lines_rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no login line in {banner:?}"));
        if let Some(link) = line.strip_prefix("  Admin login:   ") {
            break link.split(' ').next().unwrap().to_owned();
        }
        banner.push(line);
    };
    assert!(
        banner.iter().any(|l| l.starts_with("  Live view:")),
        "{banner:?}"
    );
    assert!(
        !banner.iter().any(|l| l.contains(ADMIN_TOKEN)),
        "{banner:?}"
    );
    assert!(!login.contains(ADMIN_TOKEN));
    let port = login
        .strip_prefix("http://0.0.0.0:")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("{login}"));
    let path = &login[login.find("/login").unwrap()..];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (first, second, page) = runtime.block_on(async {
        let url = format!("http://127.0.0.1:{port}{path}");
        let first = send(
            &http_client(),
            Request::get(&url).body(Full::new(Bytes::new())).unwrap(),
        )
        .await;
        let second = get(url).await.0;
        let page = get(format!("http://127.0.0.1:{port}/")).await.0;
        (first, second, page)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first.0, StatusCode::SEE_OTHER);
    let cookie = first.1.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("scimguard_admin="), "{cookie}");
    assert_eq!(second, StatusCode::FORBIDDEN, "the link works once");
    assert_eq!(page, StatusCode::UNAUTHORIZED, "no cookie, no token");
}

#[test]
fn report_leaves_out_a_cut_last_line_and_names_an_unreadable_capture() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Command::new(binary())
        .arg("report")
        .arg(dir.path().join("missing.jsonl"))
        .arg("--out")
        .arg(dir.path().join("r.html"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("missing.jsonl"));

    let line = r#"{"version":2,"id":"0123456789abcdef0123456789abcdef","time":"2026-12-07T02:00:00.000000Z","tenant":"d-1","operation":"DeleteUser","mode":"enforce","verdict":"forwarded","request":{"method":"DELETE","path":"/d-1/scim/v2/Users/u-1","query":null,"headers":[],"body":{"text":""}},"forwarded":[],"response":{"status":204,"headers":[],"body":{"text":""}},"findings":[],"error":null,"timings":{"total_us":1}}"#;
    let capture = dir.path().join("capture.jsonl");
    std::fs::write(&capture, format!("{line}\n{}", &line[..80])).unwrap();
    let out = dir.path().join("report.html");
    let made = Command::new(binary())
        .arg("report")
        .arg(&capture)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    assert!(String::from_utf8_lossy(&made.stderr).contains("the last line is cut"));
    assert!(String::from_utf8_lossy(&made.stdout).contains("1 exchanges"));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("user u-1 deleted"));
}
