//! `hark run` and `hark listen` through the real binary: file, stdin and socket
//! input/output, signals, stale and live sockets.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// (label, t_start, t_end) of every stop line, checking that each start has exactly
/// one stop with the same id and label.
fn spans_of(lines: &[serde_json::Value]) -> Vec<(String, f64, f64)> {
    let mut open = std::collections::HashMap::new();
    let mut spans = Vec::new();
    for v in lines {
        match v["type"].as_str() {
            Some("start") => {
                let id = v["id"].as_str().unwrap().to_string();
                assert!(open.insert(id, v.clone()).is_none(), "duplicate start id");
                assert!(v["wall"].as_str().is_some_and(|w| w.ends_with('Z')));
            }
            Some("stop") => {
                let id = v["id"].as_str().unwrap();
                let s = open
                    .remove(id)
                    .unwrap_or_else(|| panic!("stop without start: {v}"));
                assert_eq!(s["label"], v["label"]);
                assert_eq!(s["t"], v["t_start"]);
                spans.push((
                    v["label"].as_str().unwrap().to_string(),
                    v["t_start"].as_f64().unwrap(),
                    v["t_end"].as_f64().unwrap(),
                ));
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "starts without stops: {open:?}");
    spans.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    spans
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn offline_spans(model: &Path) -> Vec<(String, f64, f64)> {
    let o = run(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        clip().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut v: Vec<_> = parse_tsv(&stdout(&o))
        .into_iter()
        .map(|(_, on, off, l)| (l, on, off))
        .collect();
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    v
}

#[test]
fn run_on_a_file_emits_the_events_of_detect() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let o = run(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        &format!("file:{}", clip().display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    let spans = spans_of(&lines);
    assert!(!spans.is_empty());
    assert_eq!(spans, offline_spans(&model));
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "status");
    assert_eq!(last["state"], "ended");
    assert!((last["t"].as_f64().unwrap() - 5.24).abs() < 1e-9, "{last}");
}

fn wav_samples() -> Vec<i16> {
    hound::WavReader::open(clip())
        .unwrap()
        .samples::<i16>()
        .map(|s| s.unwrap())
        .collect()
}

fn run_stdin(model: &Path, spec: &str, bytes: Vec<u8>) -> String {
    let mut child = hark()
        .args(["run", "--model", model.to_str().unwrap(), "--input", spec])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // Odd-sized writes split samples across reads.
        for chunk in bytes.chunks(1001) {
            stdin.write_all(chunk).unwrap();
        }
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn raw_pcm_on_stdin_gives_the_same_events_as_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let want = offline_spans(&model);
    let s16: Vec<u8> = wav_samples().iter().flat_map(|s| s.to_le_bytes()).collect();
    let out = run_stdin(&model, "stdin:s16le:16000:1", s16);
    assert_eq!(spans_of(&json_lines(&out)), want);
    // The same audio as f32 stereo (both channels equal) downmixes to the same signal.
    let f32s: Vec<u8> = wav_samples()
        .iter()
        .flat_map(|s| {
            let x = f32::from(*s) / 32768.0;
            [x.to_le_bytes(), x.to_le_bytes()].concat()
        })
        .collect();
    let out = run_stdin(&model, "stdin:f32le:16000:2", f32s);
    assert_eq!(spans_of(&json_lines(&out)), want);
}

#[test]
fn duration_stops_after_that_much_audio() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let o = run(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        clip().to_str().unwrap(),
        "--duration",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    for (_, _, end) in spans_of(&lines) {
        assert!(end <= 2.02 + 1e-9, "event ends at {end}");
    }
    let t = lines.last().unwrap()["t"].as_f64().unwrap();
    assert!((t - 2.02).abs() < 0.03, "analysed {t} s");
    let o = run(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        clip().to_str().unwrap(),
        "--duration",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--duration"));
}

fn spawn_daemon(model: &Path, sock: &Path, extra: &[&str]) -> Child {
    hark()
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--input",
            clip().to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn connect(sock: &Path) -> UnixStream {
    let t0 = Instant::now();
    loop {
        match UnixStream::connect(sock) {
            Ok(s) => return s,
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(20), "no socket: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(t0.elapsed() < limit, "daemon did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn socket_clients_get_hello_then_events_and_sigterm_closes_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let sock = dir.path().join("hark.sock");
    let mut child = spawn_daemon(&model, &sock, &["--realtime"]);
    let stream = connect(&sock);
    let mode = std::fs::metadata(&sock).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let hello: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["version"], 1);
    assert_eq!(hello["model"], "test-random-crnn");
    assert_eq!(
        hello["classes"],
        serde_json::json!(["alpha", "beta", "gamma"])
    );
    assert!(hello["source"]
        .as_str()
        .unwrap()
        .contains("speech_chime_16k.wav"));
    // Let ~2.5 s of the 5.2 s clip play in real time, then stop the daemon.
    std::thread::sleep(Duration::from_millis(2500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    // (How fast it stops is read from the stream's time below, not from a wall clock
    // that a busy CI machine stretches; the limit here only catches a hang.)
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "exit {status:?}");
    assert!(!sock.exists(), "socket not removed");
    let lines = json_lines(&rest);
    let spans = spans_of(&lines);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "status");
    let t = last["t"].as_f64().unwrap();
    assert!(t > 1.5 && t < 4.5, "stopped at {t}");
    // Every event the client saw ended by the time the stream stopped.
    for (_, _, end) in spans {
        assert!(end <= t + 1e-9);
    }
}

#[test]
fn stale_sockets_are_replaced_and_live_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let sock = dir.path().join("hark.sock");
    // kill -9 leaves the socket file behind.
    let mut first = spawn_daemon(&model, &sock, &["--realtime"]);
    drop(connect(&sock));
    // A second daemon on the same path is refused while the first lives.
    let o = hark()
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--input",
            clip().to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("in use"), "{}", stderr(&o));
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(sock.exists(), "kill -9 should leave the socket file");
    // The next start replaces the stale socket and serves normally.
    let mut second = spawn_daemon(&model, &sock, &[]);
    let status = wait_exit(&mut second, Duration::from_secs(30));
    assert!(status.success());
    assert!(!sock.exists());
}

#[test]
fn unusable_socket_paths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let file = dir.path().join("regular-file");
    std::fs::write(&file, b"keep me").unwrap();
    for (path, needle) in [
        (dir.path().join("no/such/dir/hark.sock"), "no/such/dir"),
        (file.clone(), "not a socket"),
    ] {
        let o = hark()
            .args([
                "run",
                "--model",
                model.to_str().unwrap(),
                "--input",
                clip().to_str().unwrap(),
                "--socket",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn listen_prints_the_daemon_lines() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let sock = dir.path().join("hark.sock");
    let mut daemon = spawn_daemon(&model, &sock, &["--realtime"]);
    drop(connect(&sock));
    let o = run(&["listen", "--socket", sock.to_str().unwrap(), "--scores"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(wait_exit(&mut daemon, Duration::from_secs(30)).success());
    let lines = json_lines(&stdout(&o));
    assert_eq!(lines[0]["type"], "hello");
    assert!(lines.iter().any(|l| l["type"] == "scores"));
    // The client connected late, so it may miss early events; every stop it sees
    // is one of the offline events.
    let all = offline_spans(&model);
    for v in lines.iter().filter(|v| v["type"] == "stop") {
        let s = (
            v["label"].as_str().unwrap().to_string(),
            v["t_start"].as_f64().unwrap(),
            v["t_end"].as_f64().unwrap(),
        );
        assert!(all.contains(&s), "{s:?} not in {all:?}");
    }
    let o = run(&[
        "listen",
        "--socket",
        dir.path().join("none.sock").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("none.sock"));
}

#[test]
fn sighup_reloads_per_class_settings_and_rejects_bad_configs() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let cfg = dir.path().join("hark.toml");
    std::fs::write(&cfg, "[pipeline]\nstatus_interval_s = 60\n").unwrap();
    let offline = offline_spans(&model);
    assert!(
        offline.iter().any(|s| s.1 > 3.8),
        "fixture needs events late in the clip: {offline:?}"
    );
    let child = hark()
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            clip().to_str().unwrap(),
            "--realtime",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // A bad config is rejected and the old settings stay.
    std::fs::write(&cfg, "[classes.zebra]\non = 0.5\n").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(1500));
    // Disable every class at ~3 s of audio: no event may start after that.
    std::fs::write(
        &cfg,
        "[classes.alpha]\nenabled = false\n[classes.beta]\nenabled = false\n[classes.gamma]\nenabled = false\n",
    )
    .unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("rejected") && err.contains("zebra"), "{err}");
    assert!(err.contains("config reloaded"), "{err}");
    let lines = json_lines(&stdout(&o));
    let spans = spans_of(&lines);
    for (_, start, _) in &spans {
        assert!(
            *start < 3.5,
            "an event started at {start} s after every class was disabled"
        );
    }
}

#[test]
fn energy_gate_skips_inference_and_loud_marks_sound_above_a_level() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let cfg = dir.path().join("hark.toml");
    // A gate at 0 dBFS skips every window: no model events, only `loud` ones.
    std::fs::write(
        &cfg,
        "[pipeline]\nenergy_gate_dbfs = 0.0\nloud_dbfs = -40.0\n",
    )
    .unwrap();
    let o = run(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--input",
        clip().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    let spans = spans_of(&lines);
    assert!(!spans.is_empty());
    assert!(spans.iter().all(|(l, _, _)| l == "loud"), "{spans:?}");
    // The clip starts with 0.5 s of digital silence before the first word.
    assert!(spans[0].1 >= 0.45, "{spans:?}");
    let last = lines.last().unwrap();
    assert_eq!(last["windows"], 0, "{last}");
    assert!(last["windows_gated"].as_u64().unwrap() > 0, "{last}");
    // Without the gate the model runs and its events come back.
    std::fs::write(&cfg, "[pipeline]\nloud_dbfs = -40.0\n").unwrap();
    let o = run(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--input",
        clip().to_str().unwrap(),
    ]);
    let spans = spans_of(&json_lines(&stdout(&o)));
    assert!(spans.iter().any(|(l, _, _)| l != "loud"));
    // `loud` is a label the config may tune once enabled, and only then.
    std::fs::write(&cfg, "[classes.loud]\nmin_duration_s = 0.5\n").unwrap();
    let o = run(&[
        "check-config",
        cfg.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("classes.loud"), "{}", stderr(&o));
    std::fs::write(&cfg, "[pipeline]\nloud_dbfs = 5.0\n").unwrap();
    let o = run(&["check-config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pipeline.loud_dbfs"), "{}", stderr(&o));
}

#[test]
fn sighup_starts_and_stops_sinks_without_dropping_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let cfg = dir.path().join("hark.toml");
    let sock = dir.path().join("late.sock");
    std::fs::write(&cfg, "").unwrap();
    let child = hark()
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            clip().to_str().unwrap(),
            "--realtime",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // Add a socket: it appears and serves, while the stream keeps running.
    std::fs::write(&cfg, format!("[socket]\npath = \"{}\"\n", sock.display())).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let mut r = BufReader::new(connect(&sock));
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("\"hello\""), "{line}");
    std::thread::sleep(Duration::from_millis(1500));
    // Remove it again: the socket goes away, the client sees EOF.
    std::fs::write(&cfg, "").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    let t0 = Instant::now();
    while sock.exists() {
        assert!(t0.elapsed() < Duration::from_secs(5), "socket not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("restarting sink"), "{}", stderr(&o));
    // The stream was never interrupted: stdout saw the whole clip and balanced events.
    let lines = json_lines(&stdout(&o));
    spans_of(&lines);
    let last = lines.last().unwrap();
    assert_eq!(last["state"], "ended");
    assert!((last["t"].as_f64().unwrap() - 5.24).abs() < 1e-9, "{last}");
}
