//! A minimal W3C WebDriver client for browser tests: it starts `chromedriver` on a free
//! port, opens a headless Chromium session with a fresh profile, and speaks the
//! protocol's JSON over plain `std::net::TcpStream` (one HTTP/1.1 request per
//! connection), so tests need no async runtime and no browser-automation crate.
//!
//! ```ignore
//! let browser = Browser::launch((1200, 900)).unwrap_or_else(|e| panic!("{e}"));
//! browser.goto("http://127.0.0.1:9900/");
//! let title = browser.execute("return document.title", json!([]));
//! std::fs::write("page.png", browser.screenshot());
//! ```
//!
//! The binaries are the Debian packages `chromium` and `chromium-driver`
//! (`/usr/bin/chromium`, `/usr/bin/chromedriver`); `TIOGA_CHROMIUM` and
//! `TIOGA_CHROMEDRIVER` point elsewhere. Dropping the [`Browser`] ends the session
//! (which closes Chromium) and kills chromedriver.
//!
//! Not part of `common/mod.rs`, so only the tests that want it compile it:
//! `#[path = "common/webdriver.rs"] mod webdriver;`.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// Default Chromium binary (Debian package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Default chromedriver binary (Debian package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long chromedriver may take to accept connections.
const DRIVER_READY: Duration = Duration::from_secs(20);
/// Read and write timeout of one WebDriver command (starting Chromium is the slowest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium and chromedriver binaries to use.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The browser.
    pub chromium: PathBuf,
    /// The WebDriver server.
    pub chromedriver: PathBuf,
}

impl Binaries {
    /// The binaries named by `TIOGA_CHROMIUM` / `TIOGA_CHROMEDRIVER`, else the Debian
    /// paths; `Err` lists the missing ones.
    pub fn find() -> Result<Binaries, String> {
        let pick = |var: &str, default: &str| {
            PathBuf::from(std::env::var_os(var).unwrap_or_else(|| default.into()))
        };
        let bins = Binaries {
            chromium: pick("TIOGA_CHROMIUM", CHROMIUM),
            chromedriver: pick("TIOGA_CHROMEDRIVER", CHROMEDRIVER),
        };
        let missing: Vec<String> = [&bins.chromium, &bins.chromedriver]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        match missing.is_empty() {
            true => Ok(bins),
            false => Err(format!("not found: {}", missing.join(", "))),
        }
    }
}

/// A headless Chromium session behind its own chromedriver process.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    /// Holds the Chromium profile and chromedriver's log; removed on drop.
    dir: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session whose window is
    /// `size` = (width, height) CSS pixels.
    pub fn launch(bins: &Binaries, size: (u32, u32)) -> Result<Browser, String> {
        Browser::launch_with(bins, size, &[])
    }

    /// [`Browser::launch`] with more Chromium command-line switches.
    pub fn launch_with(
        bins: &Binaries,
        size: (u32, u32),
        extra: &[&str],
    ) -> Result<Browser, String> {
        let dir = tempfile::Builder::new()
            .prefix("tioga-browser-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let log = dir.path().join("chromedriver.log");
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("log file: {e}"))?;
        // Below the ephemeral range, as the harness's other ports (`free_addr`).
        let port = crate::common::free_addr().port();
        let driver = Command::new(&bins.chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bins.chromedriver.display()))?;
        let mut browser = Browser {
            driver,
            addr: ([127, 0, 0, 1], port).into(),
            session: String::new(),
            dir,
        };
        browser.wait_driver()?;
        browser.session = browser.new_session(bins, size, extra)?;
        Ok(browser)
    }

    /// Polls chromedriver's `GET /status` until it reports ready.
    fn wait_driver(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DRIVER_READY;
        loop {
            if let Ok((200, v)) = http(self.addr, "GET", "/status", None) {
                if v["value"]["ready"] == json!(true) {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(format!("chromedriver exited ({status}); {}", self.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "chromedriver not ready after {DRIVER_READY:?}; {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn new_session(
        &self,
        bins: &Binaries,
        size: (u32, u32),
        extra: &[&str],
    ) -> Result<String, String> {
        let profile = self.dir.path().join("profile");
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--window-size={},{}", size.0, size.1));
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra.iter().map(|a| a.to_string()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": bins.chromium.display().to_string(), "args": args},
        }}});
        let value = self
            .command("POST", "/session", Some(caps))
            .map_err(|e| format!("{e}; {}", self.log()))?;
        match value["sessionId"].as_str() {
            Some(id) => Ok(id.to_string()),
            None => Err(format!("no sessionId in {value}")),
        }
    }

    /// chromedriver's output so far, for error messages.
    fn log(&self) -> String {
        let log = self.dir.path().join("chromedriver.log");
        let text = fs::read_to_string(log).unwrap_or_default();
        format!("chromedriver log:\n{text}")
    }

    /// Sends one command; returns the answer's `value`, or the WebDriver error.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let (status, mut answer) = http(self.addr, method, path, body)?;
        let value = answer["value"].take();
        match (status, value["error"].as_str()) {
            (200, None) => Ok(value),
            (_, error) => Err(format!(
                "{method} {path}: HTTP {status} {}: {}",
                error.unwrap_or("?"),
                value["message"].as_str().unwrap_or("")
            )),
        }
    }

    /// Runs a session command, panicking with the WebDriver error.
    fn session_command(&self, method: &str, tail: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{tail}", self.session);
        self.command(method, &path, body)
            .unwrap_or_else(|e| panic!("webdriver: {e}"))
    }

    /// Navigates to `url` and waits for the page's load event.
    pub fn goto(&self, url: &str) {
        self.session_command("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body: use `return`) with `args` as `arguments`, and
    /// returns its result as JSON.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        let body = json!({ "script": script, "args": args });
        self.session_command("POST", "/execute/sync", Some(body))
    }

    /// Resizes the browser window to `width` x `height` CSS pixels (headless Chromium
    /// may keep a minimum width; read `window.innerWidth` for the result).
    pub fn set_window_size(&self, width: u32, height: u32) {
        let body = json!({ "width": width, "height": height });
        self.session_command("POST", "/window/rect", Some(body));
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let value = self.session_command("GET", "/screenshot", None);
        let text = value.as_str().expect("screenshot is a base64 string");
        base64_decode(text).expect("screenshot is valid base64")
    }

    /// Writes a screenshot to `path`, creating its directory.
    pub fn save_screenshot(&self, path: &Path) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create screenshot dir");
        }
        fs::write(path, self.screenshot()).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.command("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One HTTP/1.1 exchange with chromedriver on a fresh connection; returns the status
/// and the JSON body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let fail = |e: std::io::Error| format!("{method} {path}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(fail)?;
    stream
        .set_read_timeout(Some(COMMAND_TIMEOUT))
        .map_err(fail)?;
    stream
        .set_write_timeout(Some(COMMAND_TIMEOUT))
        .map_err(fail)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(fail)?;
    stream.write_all(body.as_bytes()).map_err(fail)?;
    let (status, body) = read_response(&mut stream).map_err(|e| format!("{method} {path}: {e}"))?;
    let value = serde_json::from_slice(&body)
        .map_err(|e| format!("{method} {path}: HTTP {status}, body is not JSON: {e}"))?;
    Ok((status, value))
}

/// Reads one response: the head, then `content-length` bytes (or up to EOF without one).
fn read_response(stream: &mut TcpStream) -> Result<(u16, Vec<u8>), String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut expected: Option<(usize, usize)> = None; // (body start, body length)
    loop {
        if let Some((start, len)) = expected {
            if raw.len() >= start.saturating_add(len) {
                break;
            }
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if expected.is_none() {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let len = header_value(&raw[..end], "content-length").and_then(|v| v.parse().ok());
                expected = Some((end + 4, len.unwrap_or(usize::MAX)));
            }
        }
    }
    let Some((start, len)) = expected else {
        return Err("connection closed before the response head ended".to_string());
    };
    let head = String::from_utf8_lossy(&raw[..start]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    let status = status.ok_or_else(|| format!("bad status line in {head:?}"))?;
    let end = raw.len().min(start.saturating_add(len));
    Ok((status, raw[start..end].to_vec()))
}

/// The value of header `name` (lowercase) in a response head.
fn header_value(head: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(head)
        .lines()
        .skip(1)
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
}

/// Decodes standard base64 (padding and line breaks allowed).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        acc = (acc << 6) | u32::from(sextet(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
