//! The live page in a real browser: headless Chromium loads `hark run --http`'s
//! page while hark streams a file in real time; the test reads the page's DOM
//! through the DevTools protocol (over `--remote-debugging-pipe`: no port, no
//! websocket) until events, scores and status appear, and takes a screenshot.
//!
//! Chromium is found as `$HARK_CHROMIUM`, `chromium` or `chromium-browser`. When it
//! is missing the test fails under CI (`CI` set; `.ci/run` installs it) and is
//! skipped with a printed reason otherwise. With `HARK_SAVE_SCREENSHOT=1` the
//! screenshot is also copied to `docs/web-page.png`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The Chromium binary, if one is installed.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HARK_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// A DevTools protocol connection over Chromium's pipe (fd 3: commands to the
/// browser, fd 4: replies and events, each message NUL-terminated JSON).
struct Cdp {
    child: Child,
    to_browser: std::fs::File,
    from_browser: mpsc::Receiver<Value>,
    next_id: u64,
}

/// A pipe whose ends are closed on exec (the child gets `dup2` copies).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded, so both are open descriptors that we now own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Cdp {
    fn launch(exe: &Path, profile: &Path) -> Cdp {
        use std::os::fd::AsRawFd;
        let (cmd_read, cmd_write) = pipe();
        let (resp_read, resp_write) = pipe();
        let (cr, rw) = (cmd_read.as_raw_fd(), resp_write.as_raw_fd());
        let mut command = Command::new(exe);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Move both out of the way first (either may already be 3 or 4),
                // then place them; dup2 clears close-on-exec on the copies.
                let hi_cr = libc::fcntl(cr, libc::F_DUPFD, 10);
                let hi_rw = libc::fcntl(rw, libc::F_DUPFD, 10);
                if hi_cr < 0 || hi_rw < 0 || libc::dup2(hi_cr, 3) < 0 || libc::dup2(hi_rw, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(hi_cr);
                libc::close(hi_rw);
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((cmd_read, resp_write));
        let (tx, rx) = mpsc::channel();
        let mut reader = BufReader::new(std::fs::File::from(resp_read));
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            while reader
                .read_until(0, &mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        Cdp {
            child,
            to_browser: std::fs::File::from(cmd_write),
            from_browser: rx,
            next_id: 0,
        }
    }

    /// Sends a command (to a page session when given) and waits for its result.
    fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser.write_all(&bytes).unwrap();
        loop {
            let v = self
                .from_browser
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("no reply to {method}: {e}"));
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    fn eval(&mut self, session: &str, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
            Some(session),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    fn close(mut self) {
        let mut bytes = serde_json::to_vec(&json!({"id": 0, "method": "Browser.close"})).unwrap();
        bytes.push(0);
        let _ = self.to_browser.write_all(&bytes);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Writes the test clip `times` times over into one WAV, for a longer stream.
fn long_clip(dir: &Path, times: usize) -> PathBuf {
    let mut r = hound::WavReader::open(clip()).unwrap();
    let spec = r.spec();
    let samples: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    let path = dir.join("long.wav");
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for _ in 0..times {
        for &s in &samples {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
    path
}

#[test]
fn the_page_shows_live_events_in_headless_chromium() {
    let Some(exe) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed (CI installs it: see .ci/run)");
        }
        eprintln!("SKIPPED: chromium not found (apt-get install chromium); CI runs this test");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let audio = long_clip(dir.path(), 4);
    let config = dir.path().join("hark.toml");
    std::fs::write(&config, "[pipeline]\nstatus_interval_s = 0.5\n").unwrap();
    let mut daemon = hark()
        .args(["run", "--model", model.to_str().unwrap(), "--config"])
        .arg(&config)
        .arg("--input")
        .arg(format!("file:{}", audio.display()))
        .args(["--realtime", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(daemon.stderr.take().unwrap());
    let url = loop {
        let mut l = String::new();
        assert!(log.read_line(&mut l).unwrap() > 0, "hark exited early");
        if let Some(rest) = l.split("url=").nth(1) {
            break rest.trim().to_string();
        }
    };
    // Keep draining the log so the daemon never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = log.read_to_end(&mut sink);
    });

    let mut cdp = Cdp::launch(&exe, &dir.path().join("chromium-profile"));
    let target = cdp.call("Target.createTarget", json!({"url": url}), None);
    let attached = cdp.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
        None,
    );
    let session = attached["sessionId"].as_str().unwrap().to_string();

    // Wait (bounded) until the page shows a finished event, the score bars and a
    // few seconds of status.
    // (Until the page has loaded, its elements are missing: the probe gives null.)
    let probe = r#"(() => { try { return JSON.stringify({
        closed: document.querySelectorAll('#events tr.event.closed').length,
        rows: document.querySelectorAll('#events tr.event').length,
        bars: document.querySelectorAll('#scores li.score').length,
        state: document.getElementById('st-state').textContent,
        t: parseFloat(document.getElementById('st-t').textContent) || 0,
        model: document.getElementById('model').textContent,
        conn: document.getElementById('conn').textContent
    }); } catch (e) { return "null"; } })()"#;
    let t0 = Instant::now();
    let seen = loop {
        let v: Value = serde_json::from_str(cdp.eval(&session, probe).as_str().unwrap()).unwrap();
        if v["closed"].as_u64().unwrap_or(0) >= 1 && v["t"].as_f64().unwrap_or(0.0) >= 8.0 {
            break v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the page never showed events: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(seen["bars"], 3, "{seen}");
    assert_eq!(seen["state"], "running", "{seen}");
    assert_eq!(seen["model"], "test-random-crnn", "{seen}");
    assert_eq!(seen["conn"], "live", "{seen}");

    // The DOM holds event rows of the model's labels, with times.
    let dom = cdp.eval(&session, "document.documentElement.outerHTML");
    let dom = dom.as_str().unwrap();
    assert!(dom.contains("class=\"event closed\""), "{dom}");
    let labels = cdp.eval(
        &session,
        "[...document.querySelectorAll('#events tr.event')].map(r => r.dataset.label)",
    );
    let labels = labels.as_array().unwrap();
    assert!(!labels.is_empty());
    assert!(
        labels
            .iter()
            .all(|l| ["alpha", "beta", "gamma"].contains(&l.as_str().unwrap())),
        "{labels:?}"
    );
    // The spectrogram has been drawn: its right edge is not blank.
    let drawn = cdp.eval(
        &session,
        "(() => { const c = document.getElementById('spec');
            const d = c.getContext('2d').getImageData(c.width - 20, 0, 20, c.height).data;
            let lit = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) lit++;
            return lit; })()",
    );
    assert!(drawn.as_u64().unwrap() > 0, "empty spectrogram");

    let shot = cdp.call(
        "Page.captureScreenshot",
        json!({"format": "png"}),
        Some(&session),
    );
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "suspiciously small screenshot");
    let shot_path = dir.path().join("web-page.png");
    std::fs::write(&shot_path, &png).unwrap();
    eprintln!("screenshot: {}", shot_path.display());
    if std::env::var_os("HARK_SAVE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/web-page.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::write(docs, &png).unwrap();
    }
    cdp.close();

    // Stop the daemon (SIGTERM) rather than waiting for the whole file.
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn base64_decoder_round_trips_known_values() {
    assert_eq!(base64_decode("aGFyaw=="), b"hark");
    assert_eq!(base64_decode("aGFya3M="), b"harks");
    assert_eq!(base64_decode("aGFya3Mh"), b"harks!");
}
