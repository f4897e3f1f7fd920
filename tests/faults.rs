//! Faults: a model slower than real time (the `inference_delay` test hook), failing
//! sinks (MQTT broker down, a hung socket client, stdout on a full disk), SIGTERM at
//! seeded random moments, and `kill -9` followed by a restart. (Capture stalls and
//! vanished devices are in `stall.rs` and `daemon_alsa.rs`.)

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use hark::audio::{AudioError, InputSpec, ReadOutcome, SourceCounters, SourceReader};
use hark::events::socket::SocketOptions;
use hark::pipeline::{run_with_source, Reopen, RunOptions};

/// Log lines of every thread of this test binary (a global subscriber, installed
/// once).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        #[derive(Clone, Copy)]
        struct W(&'static Mutex<Vec<u8>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let w = W(buf);
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || w)
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        buf
    })
}

/// A live source replaying `samples` `speed` times faster than real time, in
/// 100 ms reads, once `go` is set.
struct FastMic {
    samples: Vec<f32>,
    pos: usize,
    speed: f64,
    started: Option<Instant>,
    go: Arc<AtomicBool>,
    counters: Arc<SourceCounters>,
}

impl SourceReader for FastMic {
    fn sample_rate(&self) -> u32 {
        16_000
    }
    fn describe(&self) -> String {
        "mic:fast".into()
    }
    fn is_live(&self) -> bool {
        true
    }
    fn counters(&self) -> Arc<SourceCounters> {
        self.counters.clone()
    }
    fn read(&mut self, buf: &mut [f32]) -> Result<ReadOutcome, AudioError> {
        while !self.go.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let t0 = *self.started.get_or_insert_with(Instant::now);
        if self.pos >= self.samples.len() {
            return Ok(ReadOutcome::End);
        }
        // Deliver at `speed` × real time, like a device would (never faster).
        let due = Duration::from_secs_f64(self.pos as f64 / 16_000.0 / self.speed);
        if let Some(d) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(d);
        }
        let n = buf.len().min(self.samples.len() - self.pos).min(1_600);
        buf[..n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
        self.pos += n;
        Ok(ReadOutcome::Samples(n))
    }
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Checks that every start has exactly one stop; returns the stops' (label, t_start,
/// t_end), sorted.
fn balanced_spans(lines: &[serde_json::Value]) -> Vec<(String, f64, f64)> {
    let mut open = std::collections::HashMap::new();
    let mut spans = Vec::new();
    for v in lines {
        match v["type"].as_str() {
            Some("start") => {
                let id = v["id"].as_str().unwrap().to_string();
                assert!(open.insert(id, v.clone()).is_none(), "duplicate start id");
            }
            Some("stop") => {
                let s = open
                    .remove(v["id"].as_str().unwrap())
                    .unwrap_or_else(|| panic!("stop without start: {v}"));
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

fn connect(sock: &Path, limit: Duration) -> Option<UnixStream> {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = UnixStream::connect(sock) {
            return Some(s);
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_model_slower_than_real_time_sheds_frames_with_a_counter_and_one_warning() {
    let logs = logs();
    let dir = tempfile::tempdir().unwrap();
    let model_path = test_model(dir.path());
    let (clip, _) = hark::audio::decode_file(&clip()).unwrap();
    // 8 × the clip (42 s) delivered at 8 × real time; each 1 s window costs the
    // model 0.4 s extra: it keeps up with 2.5 × real time, so most frames are shed.
    let samples: Vec<f32> = (0..8).flat_map(|_| clip.iter().copied()).collect();
    let total_s = samples.len() as f64 / 16_000.0;
    let go = Arc::new(AtomicBool::new(false));
    let mic = FastMic {
        samples,
        pos: 0,
        speed: 8.0,
        started: None,
        go: go.clone(),
        counters: SourceCounters::new(),
    };
    let sock = dir.path().join("hark.sock");
    let opts = RunOptions {
        input: InputSpec::Mic(Some("fast".into())),
        realtime: false,
        ring_seconds: 2.0,
        duration_s: None,
        socket: Some((sock.clone(), SocketOptions::default())),
        stdout: false,
        mqtt: None,
        http: None,
        queue_seconds: 1.0,
        status_interval: Duration::from_millis(200),
        streaming: None,
        model_threads: 1,
        energy_gate_dbfs: None,
        loud_dbfs: None,
        stall_timeout: Duration::from_secs(30),
        inference_delay: Duration::from_millis(400),
    };
    let model = hark::model::Model::load(&model_path).unwrap();
    let pp = model.meta().postprocess.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let reopen: Reopen = Box::new(|| {
        Err(AudioError::Device {
            device: "fast".into(),
            reason: "gone".into(),
        })
    });
    let runner = std::thread::spawn(move || {
        run_with_source(model, &pp, opts, Box::new(mic), reopen, stop, None)
    });
    let mut reader = BufReader::new(connect(&sock, Duration::from_secs(20)).expect("socket"));
    let mut hello = String::new();
    reader.read_line(&mut hello).unwrap();
    let t0 = Instant::now();
    go.store(true, Ordering::SeqCst);
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let summary = runner.join().unwrap().expect("run ok");
    let wall = t0.elapsed();
    let lines = json_lines(&rest);
    // Shedding is counted and reported in the status; the run still covers all audio.
    assert!(summary.dropped_frames > 0, "{summary:?}");
    let statuses: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["type"] == "status").collect();
    let degraded = statuses.iter().filter(|s| s["state"] == "degraded").count();
    assert!(degraded >= 2, "{degraded} degraded statuses");
    let last = statuses.last().unwrap();
    assert_eq!(last["state"], "ended");
    assert_eq!(last["dropped_frames"], summary.dropped_frames);
    // (Frames shed at the very end are counted but not analysed: `t` may stop a
    // few chunks short of the audio.)
    let t = last["t"].as_f64().unwrap();
    assert!(
        t > total_s * 0.9 && t < total_s + 0.05,
        "analysed up to {last}"
    );
    // The model ran on a fraction of the windows: whole windows were shed, not the
    // queue grown.
    let windows = summary.windows as f64;
    assert!(windows < total_s * 0.8, "{windows} windows for {total_s} s");
    assert!(
        windows >= wall.as_secs_f64() / 0.4 * 0.5,
        "model idle: {windows}"
    );
    // Every start has its stop, and detection went on until the end (fresh audio
    // after the shed frames still gives events).
    let spans = balanced_spans(&lines);
    assert!(
        spans.iter().any(|s| s.1 > total_s * 0.75),
        "no event in the last quarter: {spans:?}"
    );
    // One warning for the whole run (rate-limited to one a minute), however many
    // status intervals were degraded.
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.matches("falling behind real time").count(),
        1,
        "{text}"
    );
    println!(
        "slow model: {:.1} s of audio in {:.1} s, {} windows, {} frames shed, {degraded} degraded statuses",
        total_s,
        wall.as_secs_f64(),
        summary.windows,
        summary.dropped_frames
    );
}

/// The audio of the clip, looped `times` times, as raw s16le bytes and as a WAV.
fn looped(dir: &Path, times: usize) -> (Vec<u8>, std::path::PathBuf) {
    let one: Vec<i16> = hound::WavReader::open(clip())
        .unwrap()
        .samples::<i16>()
        .map(|s| s.unwrap())
        .collect();
    let all: Vec<i16> = (0..times).flat_map(|_| one.iter().copied()).collect();
    let path = dir.join("looped.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for s in &all {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
    (all.iter().flat_map(|s| s.to_le_bytes()).collect(), path)
}

#[test]
fn failing_sinks_do_not_disturb_detection_or_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let (bytes, wav) = looped(dir.path(), 4);
    let o = run(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        wav.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let mut want: Vec<(String, f64, f64)> = parse_tsv(&stdout(&o))
        .into_iter()
        .map(|(_, a, b, l)| (l, a, b))
        .collect();
    want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    // An MQTT broker that is down (a port nobody listens on).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sock = dir.path().join("hark.sock");
    let cfg = dir.path().join("hark.toml");
    // The pipe is analysed faster than real time, so all ~170 event lines come in one
    // burst: the queue holds them all even if the good reader is descheduled, and is
    // far smaller than the hung client's ~1,050 score lines.
    std::fs::write(
        &cfg,
        format!(
            "[socket]\npath = {:?}\nclient_queue = 256\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nreconnect_max_s = 1.0\n",
            sock.display().to_string()
        ),
    )
    .unwrap();
    // stdout on a full disk.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = hark()
        .args(["run", "--model", model.to_str().unwrap(), "--config"])
        .arg(&cfg)
        .args(["--input", "stdin:s16le:16000:1", "--stdout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut good = BufReader::new(connect(&sock, Duration::from_secs(20)).expect("socket"));
    // A hung client: asks for every score line, never reads.
    let mut hung = connect(&sock, Duration::from_secs(5)).unwrap();
    hung.write_all(b"{\"subscribe\":{\"scores\":true}}\n")
        .unwrap();
    let mut hello = String::new();
    good.read_line(&mut hello).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&bytes).unwrap();
    });
    let mut rest = String::new();
    good.read_to_string(&mut rest).unwrap();
    writer.join().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {err}");
    // The well-behaved client saw exactly the offline events.
    assert_eq!(
        balanced_spans(&json_lines(&rest)),
        want,
        "the good client saw {rest:?}; stderr: {err}"
    );
    // Each failure was reported, once per kind, and none stopped the run.
    assert!(err.contains("cannot write to stdout"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.to_lowercase().contains("mqtt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    drop(hung);
    // `hark detect --output` on a full disk is an error naming the file.
    let o = run(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        "--output",
        "/dev/full",
        clip().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("No space left on device"),
        "{}",
        stderr(&o)
    );
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(t0.elapsed() < limit, "daemon did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn spawn_realtime(model: &Path, sock: &Path) -> Child {
    hark()
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--input",
            clip().to_str().unwrap(),
            "--realtime",
            "--socket",
            sock.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigterm_at_any_moment_closes_every_event_removes_the_socket_and_exits() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let sock = dir.path().join("hark.sock");
    // Seeded "random" moments from 0 to 4 s after the start: before the socket
    // exists, while the model loads, mid-event, near the end of the clip.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut times = Vec::new();
    for i in 0..10 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = Duration::from_millis(if i < 2 { 5 * i } else { state % 4_000 });
        let mut child = spawn_realtime(&model, &sock);
        let t_spawn = Instant::now();
        // A client connects as soon as it can and reads everything.
        let client = {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let s = connect(&sock, Duration::from_secs(3))?;
                let mut text = String::new();
                BufReader::new(s).read_to_string(&mut text).ok()?;
                Some(text)
            })
        };
        if let Some(d) = delay.checked_sub(t_spawn.elapsed()) {
            std::thread::sleep(d);
        }
        let t_kill = Instant::now();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = wait_exit(&mut child, Duration::from_secs(10));
        let took = t_kill.elapsed();
        let seen = client.join().unwrap();
        // Before the handler is installed SIGTERM kills at once (no socket yet);
        // afterwards hark exits 0.
        assert!(
            status.success() || status.signal() == Some(libc::SIGTERM),
            "{status:?}"
        );
        assert!(!sock.exists(), "socket left after SIGTERM at {delay:?}");
        if let Some(text) = seen.filter(|t| !t.is_empty()) {
            let lines = json_lines(&text);
            balanced_spans(&lines);
            assert_eq!(lines.last().unwrap()["state"], "ended", "at {delay:?}");
        }
        times.push((delay, took, status.success()));
    }
    let worst = times.iter().map(|t| t.1).max().unwrap();
    println!("SIGTERM → exit: {times:?}; worst {worst:?}");
    assert!(worst < Duration::from_secs(5), "slow exit: {times:?}");
}

#[test]
fn kill_9_at_any_moment_never_blocks_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    let sock = dir.path().join("hark.sock");
    for delay_ms in [0u64, 150, 400, 900, 1_700] {
        let mut child = spawn_realtime(&model, &sock);
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // The next start replaces whatever socket file was left and serves.
        let mut next = spawn_realtime(&model, &sock);
        let s = connect(&sock, Duration::from_secs(20)).expect("restarted daemon serves");
        let mut hello = String::new();
        BufReader::new(s).read_line(&mut hello).unwrap();
        assert!(
            hello.contains("\"hello\""),
            "after kill at {delay_ms} ms: {hello}"
        );
        unsafe { libc::kill(next.id() as i32, libc::SIGTERM) };
        assert!(wait_exit(&mut next, Duration::from_secs(10)).success());
        assert!(!sock.exists());
    }
}
