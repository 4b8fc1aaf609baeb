//! The live view in a real browser: headless Chromium (Debian's `chromium`), driven over WebDriver by the
//! `chromedriver` this test starts, against a server with two actors (a supervisor and its child).
//!
//! Without `chromium` and `chromedriver` the test fails under CI (`CI` set) and is skipped, with a message,
//! elsewhere (`apt-get install chromium chromium-driver`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use theater_server::{Server, ServerConfig, ServerLimits};
use theater_tests::guests;

/// How long WebDriver waits for an element to appear before the lookup fails: a bound on a hang, not a
/// measurement.
const ELEMENT_WAIT_MS: u64 = 20_000;

/// `chromedriver` on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chromedriver");
        // It says so once it listens.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("started successfully") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "chromedriver ended before it started"
            );
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session: the few W3C WebDriver commands the test needs, as JSON over HTTP.
struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    async fn new(driver: &Driver) -> Self {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(
                rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )
            .no_proxy()
            .build()
            .unwrap();
        let capabilities = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1280,800"],
            },
        }}});
        let mut session = Self {
            http,
            base: driver.url.clone(),
        };
        let answer = session.post("/session", capabilities).await;
        let id = answer["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        session.base = format!("{}/session/{id}", driver.url);
        session
            .post(
                "/timeouts",
                serde_json::json!({ "implicit": ELEMENT_WAIT_MS }),
            )
            .await;
        session
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let answer: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "WebDriver {path}: {status} {answer}");
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let answer = self.send(reqwest::Method::POST, path, Some(body)).await;
        // `POST /session` answers its id inside `value`.
        answer
    }

    /// The element `css` selects, waiting up to [`ELEMENT_WAIT_MS`] for it to appear.
    async fn find(&self, css: &str) -> String {
        let found = self
            .post(
                "/element",
                serde_json::json!({ "using": "css selector", "value": css }),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        let text = self
            .send(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                None,
            )
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), serde_json::json!({}))
            .await;
    }

    async fn execute(&self, script: &str) -> serde_json::Value {
        self.post(
            "/execute/sync",
            serde_json::json!({ "script": script, "args": [] }),
        )
        .await
    }

    async fn screenshot_png(&self) -> Vec<u8> {
        use base64::Engine as _;
        let data = self.send(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap()
    }

    async fn close(self) {
        self.send(reqwest::Method::DELETE, "", None).await;
    }
}

/// Whether `program` is on the PATH.
fn installed(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_shows_the_tree_and_a_new_event_without_reloading() {
    let missing: Vec<&str> = ["chromium", "chromedriver"]
        .into_iter()
        .filter(|p| !installed(p))
        .collect();
    if !missing.is_empty() {
        let message = format!(
            "{} not installed (apt-get install chromium chromium-driver)",
            missing.join(" and ")
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "the browser test cannot run under CI: {message}"
        );
        eprintln!("SKIPPED the browser test: {message}");
        return;
    }

    // A server with a supervisor that spawns a child in its `init`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("child.toml"),
        format!(
            "name = \"child\"\ncomponent = {:?}\n[[handler]]\ntype = \"runtime\"\n[[handler]]\ntype = \"probe\"\n",
            guests::SUPERVISOR_CHILD
        ),
    )
    .unwrap();
    let parent_manifest = dir.path().join("parent.toml");
    std::fs::write(
        &parent_manifest,
        format!(
            "name = \"parent\"\ncomponent = {:?}\n[[handler]]\ntype = \"supervisor\"\nallowed_manifests = [\"child.toml\"]\n\
             [[handler]]\ntype = \"probe\"\n",
            guests::SUPERVISOR_PARENT
        ),
    )
    .unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: Some(dir.path().join("data")),
        token: None,
        limits: ServerLimits::default(),
    };
    let server = Server::bind(config, theater_tests::support::registry())
        .await
        .unwrap();
    let addr: SocketAddr = server.local_addr();
    let runtime = server.runtime().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = theater_server::Client::new(&addr.to_string(), None).unwrap();
    let parent = client
        .start(&parent_manifest, Some(b"run:spawn:child.toml"))
        .await
        .unwrap();
    let listed = client.list().await.unwrap();
    let child = listed
        .iter()
        .find(|a| a.name == "child")
        .unwrap()
        .id
        .clone();

    let driver = Driver::start();
    let browser = Session::new(&driver).await;
    browser
        .post(
            "/url",
            serde_json::json!({ "url": format!("http://{addr}/") }),
        )
        .await;

    // The tree: the child's item inside the parent's, each with its status.
    let child_item = format!("li.actor[data-id=\"{parent}\"] li.actor[data-id=\"{child}\"]");
    assert_eq!(
        browser.text(&format!("{child_item} > .name")).await,
        "child"
    );
    assert_eq!(
        browser.text(&format!("{child_item} > .status")).await,
        "Idle"
    );
    let parent_item = format!("li.actor[data-id=\"{parent}\"]");
    assert_eq!(
        browser.text(&format!("{parent_item} > .status")).await,
        "Idle"
    );

    // Select the parent: its chain so far fills the table.
    browser.click(&format!("{parent_item} > .name")).await;
    let actor = runtime.get(&parent.parse().unwrap()).unwrap();
    let before = actor.chain_len();
    let last_row = |n: usize| format!("#chain tr.event:nth-child({n})");
    browser.find(&last_row(before)).await;
    // Marks this page: a reload would lose the mark.
    browser
        .execute("window.theaterTestMark = 'same page'; return null;")
        .await;

    // A new event: the parent runs a script (its `handle-script` callback calls `list-children`).
    let out = theater_tests::support::script(&actor, "list")
        .await
        .unwrap();
    assert!(out.contains(&child), "{out}");
    let chain = actor.chain();
    assert!(chain.len() > before);
    let row = last_row(chain.len());
    let shown = browser.text(&format!("{row} .type")).await;
    assert_eq!(shown, chain.events().last().unwrap().event_type);
    assert!(!browser.text(&format!("{row} .time")).await.is_empty());
    assert!(!browser.text(&format!("{row} .data")).await.is_empty());
    let mark = browser.execute("return window.theaterTestMark;").await;
    assert_eq!(mark, "same page", "the page was reloaded");

    let png = browser.screenshot_png().await;
    assert!(png.starts_with(b"\x89PNG"));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("theater-live-view.png");
    std::fs::write(&shot, png).unwrap();
    eprintln!("screenshot: {}", shot.display());

    browser.close().await;
    drop(driver);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
