//! A real browser for the console's tests: Debian's headless Chromium,
//! driven over WebDriver by Debian's `chromedriver` (started here on a free
//! loopback port) through the `fantoccini` client. The API is synchronous:
//! the client runs on a private single-thread tokio runtime. Every lookup
//! polls until it succeeds or a generous deadline passes (the machine may be
//! busy), then panics with the page's address and text and a screenshot.
//! Chromedriver and Chromium (one process group) are killed on drop, also
//! when the test panics; the profile lives in a temporary folder.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::dovecot::free_port;

/// How long a lookup, a wait or a page load may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// Chromium's path: the first of `chromium`, `chromium-browser` and
/// `google-chrome` on PATH. Panics, saying to run scripts/setup, when none is.
pub fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("chromium is not installed: run scripts/setup (it installs Debian's `chromium`)");
}

/// Where the tests' screenshots go: `target/test-artifacts/screenshots/`
/// (created).
pub fn screenshot_dir() -> PathBuf {
    let dir = crate::workspace_root().join("target/test-artifacts/screenshots");
    std::fs::create_dir_all(&dir).expect("creating the screenshot folder");
    dir
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Its domain, when the browser reports one.
    pub domain: Option<String>,
    /// Its path.
    pub path: Option<String>,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `Secure`.
    pub secure: bool,
    /// `SameSite`: `"Strict"`, `"Lax"` or `"None"`, when reported.
    pub same_site: Option<String>,
}

/// A headless Chromium session; chromedriver and Chromium end on drop.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Option<Child>,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium
    /// session with a fresh profile. Panics, saying to run scripts/setup,
    /// when Chromium or chromedriver is missing.
    pub fn start() -> Browser {
        let chromium = chromium();
        let chromedriver = Path::new("/usr/bin/chromedriver");
        assert!(
            chromedriver.is_file(),
            "{} is missing: run scripts/setup (it installs Debian's `chromium-driver`)",
            chromedriver.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("connector-browser-")
            .tempdir()
            .expect("creating a folder for the browser");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log"))
            .expect("creating chromedriver's log");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the WebDriver client");
        let mut browser = Browser {
            runtime,
            client: None,
            driver: Some(driver),
            dir,
        };
        let webdriver = format!("http://127.0.0.1:{port}");
        browser.wait_for_driver(&webdriver);
        let profile = browser.dir.path().join("profile");
        let capabilities = json!({
            "browserName": "chrome",
            "timeouts": { "pageLoad": 60_000, "script": 30_000, "implicit": 0 },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "credentials_enable_service": false,
                    "profile.password_manager_enabled": false,
                },
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("the capabilities are an object")
        };
        let connect = async {
            tokio::time::timeout(
                Duration::from_secs(60),
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&webdriver),
            )
            .await
        };
        match browser.runtime.block_on(connect) {
            Ok(Ok(client)) => browser.client = Some(client),
            Ok(Err(e)) => panic!(
                "chromedriver could not start Chromium: {e}\n{}",
                browser.driver_log()
            ),
            Err(_) => panic!(
                "chromedriver did not start Chromium in 60 s:\n{}",
                browser.driver_log()
            ),
        }
        browser
    }

    fn wait_for_driver(&mut self, webdriver: &str) {
        let status = format!("{webdriver}/status");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(answer) = agent.get(&status).call()
                && let Ok(text) = answer.into_string()
                && serde_json::from_str::<Value>(&text).is_ok_and(|b| b["value"]["ready"] == true)
            {
                return;
            }
            if let Some(exit) = self
                .driver
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "chromedriver exited ({exit}) before answering:\n{}",
                    self.driver_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer {status} in 30 s:\n{}",
                self.driver_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the WebDriver session is open")
    }

    /// Runs one WebDriver command to its end.
    fn run<T>(&self, command: impl Future<Output = T>) -> T {
        self.runtime.block_on(command)
    }

    /// Polls `attempt` until it gives a value; after [`PATIENCE`] panics
    /// saying what was awaited, with the page's address and text and a
    /// screenshot (`<what>` in [`screenshot_dir`]).
    pub fn wait_until<T>(&self, what: &str, mut attempt: impl FnMut(&Browser) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(value) = attempt(self) {
                return value;
            }
            if Instant::now() >= deadline {
                let shot = self.try_screenshot(&format!("timeout-{what}"));
                panic!(
                    "waited {} s for {what}; the browser is at {} ({}), showing:\n{}",
                    PATIENCE.as_secs(),
                    self.run(self.client().current_url())
                        .map(|u| u.to_string())
                        .unwrap_or_else(|e| format!("<unknown: {e}>")),
                    shot.map(|p| format!("screenshot {}", p.display()))
                        .unwrap_or_else(|e| format!("no screenshot: {e}")),
                    self.try_page_text()
                        .unwrap_or_else(|e| format!("<no text: {e}>"))
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        if let Err(e) = self.run(self.client().goto(url)) {
            panic!("the browser could not open {url}: {e}");
        }
    }

    /// The address the browser shows.
    pub fn current_url(&self) -> String {
        self.run(self.client().current_url())
            .unwrap_or_else(|e| panic!("reading the browser's address: {e}"))
            .to_string()
    }

    /// Waits until the address satisfies `accept` and returns it.
    pub fn wait_for_url(&self, what: &str, accept: impl Fn(&str) -> bool) -> String {
        self.wait_until(what, |b| {
            let url = b.run(b.client().current_url()).ok()?.to_string();
            accept(&url).then_some(url)
        })
    }

    fn try_page_text(&self) -> Result<String, fantoccini::error::CmdError> {
        let text = self.run(self.client().execute(
            "return document.body ? document.body.innerText : '';",
            Vec::new(),
        ))?;
        Ok(text.as_str().unwrap_or_default().to_string())
    }

    /// The page's visible text (`document.body.innerText`).
    pub fn page_text(&self) -> String {
        self.wait_until("the page's text", |b| b.try_page_text().ok())
    }

    /// Waits until the page's visible text contains `needle` and returns
    /// the text.
    pub fn wait_for_text(&self, needle: &str) -> String {
        self.wait_until(&format!("the text {needle:?}"), |b| {
            b.try_page_text().ok().filter(|text| text.contains(needle))
        })
    }

    /// The page's HTML as the browser now has it.
    pub fn page_source(&self) -> String {
        self.wait_until("the page's source", |b| b.run(b.client().source()).ok())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the
    /// page and returns what it returns.
    pub fn run_script(&self, script: &str, args: Vec<Value>) -> Value {
        self.run(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("the script failed: {e}\n{script}"))
    }

    /// Waits for the element `locator` finds, then runs `act` on it until
    /// it succeeds (the element may be replaced while the page changes).
    fn with_element(
        &self,
        what: &str,
        locator: Locator<'_>,
        act: impl AsyncFn(fantoccini::elements::Element) -> Result<(), fantoccini::error::CmdError>,
    ) {
        self.wait_until(what, |b| {
            b.run(async {
                let element = b.client().find(locator).await.ok()?;
                act(element).await.ok()
            })
        })
    }

    /// Types `value` into the form field named `name`, replacing what it
    /// held.
    pub fn fill(&self, name: &str, value: &str) {
        let selector = format!("[name=\"{}\"]", css_string(name));
        self.with_element(
            &format!("the field {name:?}"),
            Locator::Css(&selector),
            async |field| {
                field.clear().await?;
                field.send_keys(value).await
            },
        );
    }

    /// Chooses the file `path` in the file input the CSS `selector` finds.
    pub fn upload(&self, selector: &str, path: &std::path::Path) {
        let path = path.to_str().expect("a UTF-8 path").to_string();
        self.with_element(
            &format!("a file input at {selector:?}"),
            Locator::Css(selector),
            async |input| input.send_keys(&path).await,
        );
    }

    /// Clicks the element the CSS `selector` finds.
    pub fn click(&self, selector: &str) {
        self.with_element(
            &format!("an element at {selector:?}"),
            Locator::Css(selector),
            async |element| element.click().await,
        );
    }

    /// Clicks the button (a `button`, or an `input` of type `submit` or
    /// `button`) whose text is `text`.
    pub fn click_button(&self, text: &str) {
        let literal = xpath_string(text);
        let xpath = format!(
            "//button[normalize-space(.)={literal}] | \
             //input[(@type='submit' or @type='button') and @value={literal}]"
        );
        self.with_element(
            &format!("a button {text:?}"),
            Locator::XPath(&xpath),
            async |button| button.click().await,
        );
    }

    /// The cookies the browser holds for the current page's address, with
    /// their flags.
    pub fn cookies(&self) -> Vec<BrowserCookie> {
        let cookies = self
            .run(self.client().get_all_cookies())
            .unwrap_or_else(|e| panic!("reading the browser's cookies: {e}"));
        cookies
            .into_iter()
            .map(|c| BrowserCookie {
                name: c.name().to_string(),
                value: c.value().to_string(),
                domain: c.domain().map(str::to_string),
                path: c.path().map(str::to_string),
                http_only: c.http_only().unwrap_or(false),
                secure: c.secure().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
            })
            .collect()
    }

    fn try_screenshot(&self, name: &str) -> Result<PathBuf, String> {
        let png = self
            .run(self.client().screenshot())
            .map_err(|e| e.to_string())?;
        let file: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = screenshot_dir().join(format!("{file}.png"));
        std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Saves what the browser shows as `<name>.png` in [`screenshot_dir`]
    /// and returns the file's path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        self.try_screenshot(name)
            .unwrap_or_else(|e| panic!("taking a screenshot {name}: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let test = std::thread::current()
                .name()
                .unwrap_or("browser")
                .to_string();
            if let Ok(path) = self.try_screenshot(&format!("panic-{test}")) {
                eprintln!("the browser's last page: {}", path.display());
            }
        }
        if let Some(client) = self.client.take() {
            // The timer needs the runtime's context: made inside block_on.
            let close =
                async { tokio::time::timeout(Duration::from_secs(10), client.close()).await };
            let _ = self.runtime.block_on(close);
        }
        if let Some(mut driver) = self.driver.take() {
            // chromedriver leads a process group of its own, which Chromium
            // joins: end them all.
            if let Ok(group) = i32::try_from(driver.id()) {
                // SAFETY: kill(2) with a negative pid signals that process
                // group only; no memory is involved.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
            let _ = driver.kill();
            let _ = driver.wait();
        }
    }
}

/// `text` as the inside of a double-quoted CSS string.
fn css_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `text` as an XPath string literal (XPath 1.0 has no escapes: a text with
/// both quote kinds is joined with `concat`).
fn xpath_string(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        let parts: Vec<String> = text.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}
