//! Just enough of the Chrome DevTools protocol to test a page: headless
//! Chromium driven over `--remote-debugging-pipe` (commands on fd 3, answers
//! and events on fd 4, NUL-separated JSON), with no dependency beyond libc.
//! It opens a URL, evaluates expressions, waits (bounded) for a condition,
//! takes screenshots and collects everything the page logged: console
//! messages, uncaught exceptions and browser log entries (CSP refusals,
//! failed loads).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Chromium on PATH, or `None` (after saying why) when the caller may skip:
/// under CI (`CI` set) a missing browser is a failure.
pub(crate) fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    match found {
        Some(p) => Some(p),
        None if ci => panic!("chromium is required under CI (.ci/run installs it)"),
        None => {
            eprintln!(
                "skipping the browser test: chromium is not installed (apt-get install chromium)"
            );
            None
        }
    }
}

pub(crate) struct Browser {
    child: Child,
    commands: File,
    answers: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    /// What the page logged, one line each.
    pub log: Vec<String>,
    _profile: tempfile::TempDir,
}

/// How long one step may go unanswered before the test gives up: a guard
/// against a hung browser, not a speed check. The first step starts
/// Chromium, which took over 20 s on a 2-core machine busy with a build.
const STEP: Duration = Duration::from_secs(60);

impl Browser {
    /// A headless browser with one page of `width` × `height`.
    pub(crate) fn launch(path: &Path, width: u32, height: u32) -> Browser {
        let (cmd_read, cmd_write) = pipe();
        let (ans_read, ans_write) = pipe();
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(path);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args([
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
        ])
        .arg("--remote-debugging-pipe")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(cmd_read, 3) < 0 || libc::dup2(ans_write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("chromium starts");
        // SAFETY: each fd came from pipe2 above and is owned by exactly one File.
        let (commands, mut answers_file) = unsafe {
            libc::close(cmd_read);
            libc::close(ans_write);
            (File::from_raw_fd(cmd_write), File::from_raw_fd(ans_read))
        };
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n) = answers_file.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1])
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            commands,
            answers,
            next_id: 0,
            session: None,
            log: Vec::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        b.session = Some(attached["sessionId"].as_str().unwrap().to_string());
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.call(domain, json!({}));
        }
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    /// Send a command and wait for its answer; events that arrive meanwhile
    /// are logged.
    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .expect("browser takes commands");
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method} within {STEP:?}"));
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.event(&v);
        }
    }

    fn event(&mut self, v: &Value) {
        let p = &v["params"];
        match v["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a["value"].to_string())
                    .collect();
                self.log
                    .push(format!("console.{}: {}", p["type"], args.join(" ")));
            }
            Some("Runtime.exceptionThrown") => self
                .log
                .push(format!("exception: {}", p["exceptionDetails"])),
            Some("Log.entryAdded") => self.log.push(format!(
                "{} {}: {} {}",
                p["entry"]["source"], p["entry"]["level"], p["entry"]["text"], p["entry"]["url"]
            )),
            _ => {}
        }
    }

    /// Load `url` afresh (hash included) and wait until the page's script
    /// has read every item.
    pub(crate) fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": "about:blank"}));
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for("document.body && document.body.dataset.loaded !== undefined");
    }

    /// The value of a JavaScript expression.
    pub(crate) fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Poll until `expr` is true (bounded; the page's own timers and media
    /// loading decide when).
    pub(crate) fn wait_for(&mut self, expr: &str) {
        let deadline = Instant::now() + STEP;
        while self.eval(&format!("!!({expr})")) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "still not true after {STEP:?}: {expr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn screenshot(&mut self, to: &Path) {
        use base64::Engine;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array; O_CLOEXEC keeps them out
    // of the child except where dup2 places them (as 3 and 4).
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // Above 9, so placing them at 3 and 4 in the child cannot overwrite one
    // with the other.
    let high = |fd: i32| {
        // SAFETY: duplicates an fd we own and closes the original.
        let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        assert!(moved >= 10, "fcntl: {}", std::io::Error::last_os_error());
        unsafe { libc::close(fd) };
        moved
    };
    (high(fds[0]), high(fds[1]))
}
