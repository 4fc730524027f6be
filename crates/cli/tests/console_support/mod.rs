//! The web console's browser test harness (issue 7), shared by the console test suites.
//!
//! Everything is real: [`Cloud`] runs `lumenflow cloud serve` on SQLite in a temp folder,
//! [`Cloud::add_operator`] uses `lumenflow cloud operator add --password-stdin`,
//! [`Cloud::enroll_workspace`] enrolls the sidecar suite's workspace with the real
//! `lumenflow enroll` and starts the real `lumenflow sidecar`, and [`Browser`] drives headless
//! Chromium through chromedriver (Debian's `chromium` and `chromium-driver`) with fantoccini.
//!
//! Use from a test crate:
//!
//! ```ignore
//! mod console_support;
//! use console_support::{Browser, Cloud};
//!
//! let home = tempfile::tempdir().unwrap();
//! let cloud = Cloud::start(home.path());
//! cloud.add_operator("alice", console_support::PASSWORD);
//! let ws = cloud.enroll_workspace(&["--approval-wait", "60"]);
//! let browser = Browser::start(&cloud.url);
//! browser.login("alice", console_support::PASSWORD);
//! browser.goto("#/runs");
//! browser.wait_for("[data-testid=runs-table]");
//! browser.screenshot("runs");
//! ```
//!
//! Screenshots go to `<CARGO_TARGET_TMPDIR>/console-screenshots/<name>.png` (never into the
//! repository); their paths are printed. If chromium or chromedriver is missing, [`Browser::start`]
//! fails the test with a message saying to install them: a browser test never passes silently.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

#[path = "../sidecar_support/mod.rs"]
pub mod sidecar;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

pub use sidecar::{bin, get, post, wait_until, Sidecar, WS};

/// A password that passes `operator add`'s policy.
pub const PASSWORD: &str = "correct horse battery staple";
/// How long a browser wait lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running `lumenflow cloud serve` (killed on drop).
pub struct Cloud {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `sqlite://<home>/cloud.db`
    pub database: String,
    pub home: PathBuf,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Cloud {
    /// Start the control plane in `home` (SQLite, free port, registry refreshed on demand).
    pub fn start(home: &Path) -> Cloud {
        let database = format!("sqlite://{}", home.join("cloud.db").display());
        let log = std::fs::File::create(home.join("cloud.log")).unwrap();
        let mut child = Command::new(bin())
            .args(["cloud", "serve", "--listen", "127.0.0.1:0"])
            .args(["--database", &database, "--registry-refresh", "0"])
            .current_dir(home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "the control plane did not start:\n{}",
                    std::fs::read_to_string(home.join("cloud.log")).unwrap_or_default()
                )
            });
        let url = line.rsplit(' ').next().unwrap().to_string();
        Cloud {
            child,
            url,
            database,
            home: home.to_path_buf(),
        }
    }

    /// Run `lumenflow <args> --database <db> --json` in the home folder; its JSON output.
    pub fn cli(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--database", &self.database, "--json"]);
        let out = sidecar::ok(&self.home, &all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Add a console operator with the real CLI, the password on stdin.
    pub fn add_operator(&self, name: &str, password: &str) {
        let mut child = Command::new(bin())
            .args(["cloud", "operator", "add", name, "--password-stdin"])
            .args(["--database", &self.database])
            .current_dir(&self.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "operator add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An operator (API) token minted with the control plane's key.
    pub fn operator_token(&self) -> String {
        let out = sidecar::ok(
            &self.home,
            &["cloud", "operator-token", "--database", &self.database],
        );
        out.trim().to_string()
    }

    /// Enroll the sidecar suite's workspace (`ws-42`) with a one-time code through the real
    /// `lumenflow enroll`, start its sidecar with `sidecar_args` (e.g. `--approvals cloud
    /// --approval-wait 60`), and register the sidecar's URL with the control plane.
    pub fn enroll_workspace(&self, sidecar_args: &[&str]) -> Workspace {
        let code = self.cli(&["cloud", "enroll-code", "--workspace-id", WS])["code"]
            .as_str()
            .unwrap()
            .to_string();
        let (tmp, root) = sidecar::workspace();
        let out = sidecar::ok(
            &root,
            &[
                "enroll",
                "--control-plane",
                &self.url,
                "--code",
                &code,
                "--json",
            ],
        );
        let enrolled: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(enrolled["subject"], WS, "{out}");
        let mut args = vec!["--backoff-base-ms", "50"];
        args.extend_from_slice(sidecar_args);
        let sidecar = Sidecar::spawn(&root, &args);
        let operator = self.operator_token();
        let (s, body) = post(
            &format!("{}/api/v1/workspaces/{WS}/sidecar", self.url),
            Some(&operator),
            &json!({"sidecar_url": sidecar.url}),
        );
        assert_eq!(s, 200, "{body}");
        Workspace {
            _tmp: tmp,
            root,
            sidecar,
            operator,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("cloud.log")).unwrap_or_default()
    }
}

/// An enrolled workspace with its running sidecar.
pub struct Workspace {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub sidecar: Sidecar,
    /// An operator token of the control plane (for API calls the test makes itself).
    pub operator: String,
}

impl Workspace {
    /// Invoke a tool through the control plane (as an operator's API call would).
    pub fn invoke(&self, cloud_url: &str, tool: &str, input: &Value) -> (u16, Value) {
        post(
            &format!("{cloud_url}/api/v1/workspaces/{WS}/tools/{tool}"),
            Some(&self.operator),
            input,
        )
    }
}

/// A chromedriver process (killed on drop).
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn missing_browser(what: &str) -> ! {
    panic!(
        "{what} is not installed: the console's browser tests need Debian's `chromium` and \
         `chromium-driver` (apt-get install chromium chromium-driver; `bash .ci/run` installs them)"
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Headless Chromium driven through chromedriver, with blocking helpers.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    pub client: Client,
    /// The console's base URL (`http://127.0.0.1:PORT`).
    pub base: String,
    _driver: Driver,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.rt.block_on(client.close());
    }
}

impl Browser {
    /// Start chromedriver on a free port and open a headless Chromium session on `base`.
    pub fn start(base: &str) -> Browser {
        let driver_bin =
            find_program(&["chromedriver"]).unwrap_or_else(|| missing_browser("chromedriver"));
        let chromium = find_program(&["chromium", "chromium-browser"])
            .unwrap_or_else(|| missing_browser("chromium"));
        let port = free_port();
        let child = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_bin.display()));
        let driver = Driver { child, port };
        assert!(
            wait_until(Duration::from_secs(20), || std::net::TcpStream::connect((
                "127.0.0.1",
                driver.port
            ))
            .is_ok()),
            "chromedriver did not listen on port {}",
            driver.port
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Debian's /usr/bin/chromium is a wrapper script; chromedriver runs it as the binary.
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--disable-background-networking",
                         "--window-size=1280,900", "--no-first-run",
                         "--disable-search-engine-choice-screen"],
            }
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = rt
            .block_on(async {
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{}", driver.port))
                    .await
            })
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}"));
        Browser {
            rt,
            client,
            base: base.trim_end_matches('/').to_string(),
            _driver: driver,
        }
    }

    /// Open `path` on the console: `"/"`, or a page hash like `"#/approvals"`.
    pub fn goto(&self, path: &str) {
        let url = if path.starts_with('#') {
            format!("{}/{path}", self.base)
        } else {
            format!("{}{path}", self.base)
        };
        self.rt.block_on(self.client.goto(&url)).unwrap();
    }

    /// Resize the browser window (the viewport follows), e.g. to a phone's width.
    pub fn set_window_size(&self, width: u32, height: u32) {
        self.rt
            .block_on(self.client.set_window_size(width, height))
            .unwrap();
    }

    /// Change the hash route without reloading the page.
    pub fn route(&self, hash: &str) {
        self.js(&format!("location.hash = {}; return true;", json!(hash)));
    }

    /// Run JavaScript in the page (`return ...` for a value).
    pub fn js(&self, script: &str) -> Value {
        self.rt
            .block_on(self.client.execute(script, vec![]))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Run asynchronous JavaScript: the script calls `arguments[0](value)` when done.
    pub fn js_async(&self, script: &str) -> Value {
        self.rt
            .block_on(self.client.execute_async(script, vec![]))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// `fetch` from the page (same origin, the session cookie attached by the browser):
    /// `{status, body}`.
    pub fn fetch(&self, method: &str, path: &str, headers: &Value, body: Option<&Value>) -> Value {
        let script = format!(
            "const done = arguments[0];
             fetch({path}, {{method: {method}, headers: {headers}, credentials: 'same-origin',
                            body: {body}}})
               .then(async r => done({{status: r.status, body: await r.text()}}))
               .catch(e => done({{status: 0, body: String(e)}}));",
            path = json!(path),
            method = json!(method),
            headers = headers,
            body = body
                .map(|b| json!(b.to_string()).to_string())
                .unwrap_or_else(|| "undefined".into()),
        );
        let out = self.js_async(&script);
        let text = out["body"].as_str().unwrap_or("");
        json!({"status": out["status"], "body": serde_json::from_str::<Value>(text).unwrap_or(json!(text))})
    }

    /// Wait until `css` matches a displayed element; returns it.
    pub fn wait_for(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.rt.block_on(async {
                for e in self.client.find_all(Locator::Css(css)).await.ok()? {
                    if e.is_displayed().await.unwrap_or(false) {
                        return Some(e);
                    }
                }
                None
            });
            if let Some(e) = found {
                return e;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("timeout");
                panic!(
                    "nothing displayed matches `{css}` after {WAIT:?} (screenshot {})\npage text:\n{}",
                    shot.display(),
                    self.js("return document.body.innerText;")
                        .as_str()
                        .unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the JavaScript expression `condition` is truthy.
    pub fn wait_js(&self, condition: &str, what: &str) {
        let script = format!("return !!({condition});");
        let deadline = Instant::now() + WAIT;
        while self.js(&script) != Value::Bool(true) {
            if Instant::now() > deadline {
                let shot = self.screenshot("timeout");
                panic!(
                    "{what}: `{condition}` did not hold after {WAIT:?} (screenshot {})\npage text:\n{}",
                    shot.display(),
                    self.js("return document.body.innerText;")
                        .as_str()
                        .unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `css` matches any element now.
    pub fn exists(&self, css: &str) -> bool {
        self.js(&format!(
            "return document.querySelector({}) !== null;",
            json!(css)
        )) == Value::Bool(true)
    }

    /// The text of the first displayed element matching `css` (waiting for it).
    pub fn text(&self, css: &str) -> String {
        let e = self.wait_for(css);
        self.rt.block_on(e.text()).unwrap()
    }

    pub fn click(&self, css: &str) {
        let e = self.wait_for(css);
        self.rt.block_on(e.click()).unwrap();
    }

    /// Clear an input and type `text` into it.
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.wait_for(css);
        self.rt
            .block_on(async {
                e.clear().await?;
                e.send_keys(text).await
            })
            .unwrap();
    }

    /// Log in through the form (the page must show it) and wait for the app's navigation.
    pub fn login(&self, name: &str, password: &str) {
        self.goto("/");
        self.fill("[data-testid=login-name]", name);
        self.fill("[data-testid=login-password]", password);
        self.click("[data-testid=login-submit]");
        self.wait_for("[data-testid=nav]");
        self.wait_js(
            &format!(
                "document.querySelector('[data-testid=operator-name]').textContent === {}",
                json!(name)
            ),
            "the header names the operator",
        );
    }

    /// Save a PNG of the viewport as `<CARGO_TARGET_TMPDIR>/console-screenshots/<name>.png` and
    /// print its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let png = self.rt.block_on(self.client.screenshot()).unwrap();
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}
