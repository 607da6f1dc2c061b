//! A headless chromium driven over WebDriver (fantoccini) through a chromedriver this test
//! starts on a loopback port of the OS's choosing. Missing chromium fails the test loudly:
//! `.ci/run` installs it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long one wait for the page may take before the test fails naming it.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Browser {
    pub client: Client,
    /// chromedriver's port, for the commands fantoccini has no call for.
    port: u16,
    /// Kept so chromedriver (and its chromium) ends with the test.
    _driver: Child,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

impl Browser {
    /// Starts chromedriver and a headless chromium window of 1280x900; screenshots go to
    /// `shots`.
    pub async fn start(shots: &Path) -> Browser {
        for program in ["chromedriver", "chromium"] {
            assert!(
                installed(program),
                "{program} is not installed: the dashboard tests drive a real browser \
                 (apt-get install chromium chromium-driver fonts-liberation; .ci/run does)"
            );
        }
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut lines = BufReader::new(driver.stdout.take().expect("piped")).lines();
        let port = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("chromedriver's output") {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .expect("chromedriver said its port within 10 s")
        .expect("chromedriver printed its port");
        // Keep reading so chromedriver never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": [
                "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                format!("--user-data-dir={}", profile.path().display()),
            ]}),
        );
        // The nodes' certificates come from the test fleet's CA, which chromium does not
        // know; every address the browser visits is 127.0.0.1.
        caps.insert("acceptInsecureCerts".into(), json!(true));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session through chromedriver");
        Browser {
            client,
            port,
            _driver: driver,
            shots: shots.to_path_buf(),
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|err| panic!("open {url}: {err}"));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    /// Waits until `script` returns something truthy (not null/false/""/0), returning it.
    pub async fn wait_js(&self, what: &str, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let value = self
                .client
                .execute(script, vec![])
                .await
                .unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if start.elapsed() > WAIT {
                let shot = self.screenshot(&format!("failed-{}", slug(what))).await;
                panic!("waited 10 s for {what}; last value {value}; screenshot {shot:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css}: {err}"))
            .click()
            .await
            .unwrap_or_else(|err| panic!("click {css}: {err}"));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css}: {err}"));
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Saves the page as `<shots>/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let path = self.shots.join(format!("{name}.png"));
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&path, png).unwrap(),
            Err(err) => eprintln!("no screenshot {name}: {err}"),
        }
        path
    }

    /// The value of the session cookie the browser holds (HttpOnly: the page cannot read
    /// it, WebDriver can).
    pub async fn session_cookie(&self) -> String {
        let cookie = self
            .client
            .get_named_cookie("shoal_session")
            .await
            .expect("the browser holds a session cookie");
        cookie.value().to_string()
    }

    /// Runs a DevTools command in the page through chromedriver's passthrough.
    pub async fn cdp(&self, cmd: &str, params: Value) {
        let session = self.client.session_id().await.unwrap().expect("a session");
        let url = format!(
            "http://127.0.0.1:{}/session/{session}/goog/cdp/execute",
            self.port
        );
        // Plain HTTP to chromedriver; the builder only brings the TLS setup reqwest needs.
        let response = shoal_daemon::testsuite::http_client_builder()
            .build()
            .unwrap()
            .post(&url)
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await
            .expect("chromedriver answers");
        assert!(
            response.status().is_success(),
            "{cmd}: {}",
            response.status()
        );
    }

    /// Makes the page prefer a dark (or light) colour scheme.
    pub async fn prefer_dark(&self, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        let features = json!([{"name": "prefers-color-scheme", "value": scheme}]);
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": features }),
        )
        .await;
    }

    /// Cuts the page off the network, or lets it back.
    pub async fn offline(&self, offline: bool) {
        self.cdp("Network.enable", json!({})).await;
        let conditions = json!({"offline": offline, "latency": 0,
            "downloadThroughput": -1, "uploadThroughput": -1});
        self.cdp("Network.emulateNetworkConditions", conditions)
            .await;
    }

    /// Waits until the page's live socket is open.
    pub async fn wait_live(&self) {
        self.wait_js(
            "the live socket",
            "return document.body.dataset.live === 'open';",
        )
        .await;
    }

    /// Logs in through the login form (logging out first if a session is open).
    pub async fn log_in(&self, api: &str, key: &str) {
        self.goto(&format!("{api}/")).await;
        if self.count("form.who button").await > 0 {
            self.click("form.who button").await;
        }
        self.wait_js(
            "the login page",
            "return document.body.dataset.page === 'login';",
        )
        .await;
        self.screenshot("login").await;
        self.type_into("#key", key).await;
        self.click("#login").await;
        self.wait_js(
            "the fleet page",
            "return document.body.dataset.page === 'fleet';",
        )
        .await;
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect()
}
