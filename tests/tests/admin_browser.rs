//! The console page in a real headless Chromium, driven over WebDriver
//! (chromedriver): it loads with the token, shows the sessions of a running
//! gate with bots, blocks an address from the page (with its confirmation),
//! and the gate then refuses that address.
//!
//! Needs Debian's `chromium` and `chromium-driver`
//! (`tests/browser/ensure-chromium.sh` installs them); without them the
//! test says so and passes. `SELGATE_CONSOLE_SCREENSHOT=FILE` saves a
//! screenshot (base64 PNG text; `tests/browser/screenshot.sh` makes the
//! README's picture from it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use selgate_core::{CloseReason, Config};
use selgate_peers::RefDbConfig;
use selgate_tests::admin::{self, TOKEN};
use selgate_tests::{assert_bots_ok, lo, normal_bot, wait_until, BotThread, RawClient, TestGate};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free loopback port, ended on drop.
struct Driver {
    child: Child,
    base: String,
    session: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = minreq::delete(format!("{}/session/{s}", self.base))
                .with_timeout(10)
                .send();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver on a port it picks itself (`--port=0`) and reads
    /// the port from what it prints.
    fn start(chromedriver: &Path, log: &Path) -> Driver {
        use std::io::BufRead;
        let log_file = std::fs::File::create(log).expect("chromedriver log");
        let mut child = Command::new(chromedriver)
            .arg("--port=0")
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("start chromedriver");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|p| p.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(30));
        let mut d = Driver {
            child,
            base: String::new(),
            session: None,
        };
        let Ok(port) = port else {
            panic!(
                "chromedriver did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        };
        d.base = format!("http://127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(20), || d
                .raw("GET", "/status", None)
                .is_ok()),
            "chromedriver does not answer on port {port}"
        );
        d
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => minreq::get(url),
            "DELETE" => minreq::delete(url),
            _ => minreq::post(url),
        }
        .with_timeout(60);
        let req = match body {
            Some(b) => req
                .with_header("Content-Type", "application/json")
                .with_body(b.to_string()),
            None => req,
        };
        let r = req.send().map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(r.as_str().unwrap_or("")).map_err(|e| e.to_string())?;
        if r.status_code != 200 {
            return Err(format!(
                "{} {path}: {}",
                r.status_code, v["value"]["message"]
            ));
        }
        Ok(v["value"].clone())
    }

    fn open_session(&mut self, profile: &Path) {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut opts = json!({ "args": args });
        if let Some(bin) = find(&["chromium", "chromium-browser"]) {
            opts["binary"] = json!(bin);
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": opts,
            "unhandledPromptBehavior": "ignore" } } });
        let v = self
            .raw("POST", "/session", Some(caps))
            .expect("a browser session");
        self.session = Some(v["sessionId"].as_str().expect("session id").to_string());
    }

    fn call(&self, method: &str, what: &str, body: Option<Value>) -> Result<Value, String> {
        let s = self.session.as_deref().expect("session");
        self.raw(method, &format!("/session/{s}{what}"), body)
    }

    fn script(&self, js: &str) -> Value {
        match self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        ) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("script failed: {e}");
                Value::Null
            }
        }
    }

    fn wait_script(&self, js: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let v = self.script(js);
            if v == Value::Bool(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

#[test]
fn the_console_page_shows_sessions_and_blocks_an_address() {
    let (Some(chromedriver), Some(_)) = (
        find(&["chromedriver"]),
        find(&["chromium", "chromium-browser"]),
    ) else {
        eprintln!(
            "SKIPPED the_console_page_shows_sessions_and_blocks_an_address: chromium and \
             chromedriver are not installed (tests/browser/ensure-chromium.sh installs them)"
        );
        return;
    };
    let mut admin_addr: Option<SocketAddr> = None;
    let gate = TestGate::start_with(
        Config::default(),
        RefDbConfig::default(),
        1541,
        |_| {},
        |server| admin_addr = Some(admin::serve(server).addr),
    );
    let admin_addr = admin_addr.expect("admin");
    // Players who stay, and bots that come and go for the charts.
    let mut players: Vec<RawClient> = (121..=125)
        .map(|last| {
            let mut c = RawClient::connect(gate.addr(), Some(lo(last))).expect("connect");
            c.establish(&format!("web{last}"), WAIT).expect("a session");
            c
        })
        .collect();
    let bots = BotThread::spawn(
        gate.addr(),
        60,
        lo(130),
        Duration::from_secs(60),
        |i, now| normal_bot(1541, i, now, Duration::from_secs(60)),
    );

    let profile = std::env::temp_dir().join(format!("selgate-e2e-{}-chromium", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let log = profile.with_extension("chromedriver.log");
    let mut driver = Driver::start(&chromedriver, &log);
    driver.open_session(&profile);
    driver
        .call(
            "POST",
            "/url",
            Some(json!({ "url": format!("http://{admin_addr}/#token={TOKEN}") })),
        )
        .expect("load the page");
    assert!(
        driver.wait_script(
            "return document.querySelectorAll('#sessions tbody tr').length >= 5",
            // Generous: a browser's first start on a loaded 2-core machine.
            Duration::from_secs(60)
        ),
        "the page lists the gate's sessions; direct status {:?}; the page shows: {}",
        selgate_tests::admin::Admin { addr: admin_addr }
            .get("/api/status")
            .status,
        driver.script(
            "return document.querySelector('#error').textContent + ' | ' + \
             document.querySelector('#health').textContent + ' | ' + location.href + ' | ' + \
             document.querySelector('#session-count').textContent + ' | rows ' + \
             document.querySelectorAll('#sessions tbody tr').length"
        )
    );
    assert_eq!(
        driver.script("return location.hash"),
        json!(""),
        "the token leaves the address bar"
    );
    assert_eq!(
        driver.script("return document.querySelector('#health').textContent"),
        json!("HEALTHY")
    );
    assert_eq!(
        driver.script("return document.querySelector('.zone .dot').className"),
        json!("dot link-up"),
        "the link state is a colour"
    );
    assert_eq!(
        driver
            .script("return !!document.querySelector('#sessions tr[data-client=\"127.0.0.123\"]')"),
        json!(true)
    );

    // Block 127.0.0.123 from its row, for the default 10 minutes.
    let button = driver
        .call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector",
                "value": "#sessions tr[data-client=\"127.0.0.123\"] button.block" })),
        )
        .expect("the row's block button");
    let element = button
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .expect("an element id")
        .to_string();
    driver
        .call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .expect("click");
    let text = driver
        .call("GET", "/alert/text", None)
        .expect("a confirmation");
    assert!(
        text.as_str().is_some_and(|t| t.contains("127.0.0.123")),
        "the confirmation names the address: {text}"
    );
    driver
        .call("POST", "/alert/accept", Some(json!({})))
        .expect("confirm");

    players[2]
        .expect_closed(WAIT)
        .expect("the blocked player's session is closed");
    let mut again = RawClient::connect(gate.addr(), Some(lo(123))).expect("connect");
    again
        .expect_closed(WAIT)
        .expect("the gate refuses the blocked address");
    assert!(
        driver.wait_script(
            "return !!document.querySelector('#blocks tr[data-target=\"127.0.0.123\"]')",
            Duration::from_secs(30)
        ),
        "the page lists the operator's block"
    );
    assert!(
        players[0].still_open_after(Duration::from_millis(100)),
        "others stay"
    );
    assert!(driver.wait_script(
        "return document.querySelectorAll('#sessions tbody tr').length >= 4",
        Duration::from_secs(10)
    ));
    if let Some(out) = std::env::var_os("SELGATE_CONSOLE_SCREENSHOT") {
        std::thread::sleep(Duration::from_secs(3));
        let png = driver
            .call("GET", "/screenshot", None)
            .expect("a screenshot");
        std::fs::write(out, png.as_str().expect("base64 text")).expect("write the screenshot");
    }
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    let report = bots.join(Duration::from_secs(90));
    assert_bots_ok(&report, 60);
    drop(players);
    drop(again);
    let done = gate.finish();
    assert_eq!(done.closed(CloseReason::RefusedBlocked), 1);
    done.assert_clean();
}
