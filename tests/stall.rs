//! The stall watchdog: a live source that stops delivering samples (an ALSA device
//! that vanished, a dead USB microphone) gets its open events stopped, the status
//! `reconnecting`, and is reopened with backoff; detection resumes on the new stream.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hark::audio::{AudioError, InputSpec, ReadOutcome, SourceCounters, SourceReader};
use hark::events::socket::SocketOptions;
use hark::pipeline::{run_with_source, Reopen, RunOptions};

/// A live source that plays `samples` then either goes silent forever (stalls,
/// answering `Idle` like a microphone whose callbacks stopped) or ends.
struct FakeMic {
    samples: Vec<f32>,
    pos: usize,
    stall_at_end: bool,
    counters: Arc<SourceCounters>,
    /// Audio flows only once the test's client is connected.
    go: Arc<AtomicBool>,
}

impl SourceReader for FakeMic {
    fn sample_rate(&self) -> u32 {
        16_000
    }
    fn describe(&self) -> String {
        "mic:fake".into()
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
        if self.pos >= self.samples.len() {
            if self.stall_at_end {
                std::thread::sleep(Duration::from_millis(20));
                return Ok(ReadOutcome::Idle);
            }
            return Ok(ReadOutcome::End);
        }
        let n = buf.len().min(self.samples.len() - self.pos).min(1600);
        buf[..n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
        self.pos += n;
        Ok(ReadOutcome::Samples(n))
    }
}

#[test]
fn a_stalled_source_stops_events_reports_reconnecting_and_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = common::test_model(dir.path());
    let (clip, _) = hark::audio::decode_file(&common::clip()).unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let first = FakeMic {
        go: go.clone(),
        samples: clip[..48_000].to_vec(),
        pos: 0,
        stall_at_end: true,
        counters: SourceCounters::new(),
    };
    let attempts = Arc::new(AtomicUsize::new(0));
    let rest = clip[48_000..].to_vec();
    let a = attempts.clone();
    let go2 = go.clone();
    let reopen: Reopen = Box::new(move || {
        // The device is still gone on the first try, back on the second.
        if a.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(AudioError::Device {
                device: "fake".into(),
                reason: "unplugged".into(),
            });
        }
        Ok(Box::new(FakeMic {
            go: go2.clone(),
            samples: rest.clone(),
            pos: 0,
            stall_at_end: false,
            counters: SourceCounters::new(),
        }))
    });
    let sock = dir.path().join("hark.sock");
    let opts = RunOptions {
        input: InputSpec::Mic(Some("fake".into())),
        realtime: false,
        ring_seconds: 2.0,
        duration_s: None,
        socket: Some((sock.clone(), SocketOptions::default())),
        stdout: false,
        mqtt: None,
        http: None,
        queue_seconds: 30.0,
        status_interval: Duration::from_secs(3600),
        streaming: None,
        model_threads: 1,
        energy_gate_dbfs: None,
        loud_dbfs: None,
        stall_timeout: Duration::from_millis(300),
        inference_delay: Duration::ZERO,
    };
    let model = hark::model::Model::load(&model_path).unwrap();
    let pp = model.meta().postprocess.clone();
    let stop = Arc::new(AtomicBool::new(false));
    // Hold the model thread's first window until the client is connected: the
    // socket exists before any audio is read, so connect first.
    let runner = std::thread::spawn(move || {
        run_with_source(model, &pp, opts, Box::new(first), reopen, stop, None)
    });
    let t0 = Instant::now();
    let stream = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no socket");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Let the socket thread register the client (it accepts every 20 ms), then play.
    let mut reader = BufReader::new(stream);
    let mut hello = String::new();
    reader.read_line(&mut hello).unwrap();
    assert!(hello.contains("\"hello\""), "{hello}");
    go.store(true, Ordering::SeqCst);
    let lines: Vec<serde_json::Value> = reader
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let summary = runner.join().unwrap().expect("run ok");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one failed reopen, then success"
    );
    let states: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "status")
        .map(|l| l["state"].as_str().unwrap())
        .collect();
    let rec = states
        .iter()
        .position(|s| *s == "reconnecting")
        .expect("reconnecting status");
    assert!(states[rec + 1..].contains(&"running"), "{states:?}");
    assert_eq!(*states.last().unwrap(), "ended");
    // No event is open across the stall: every start before the reconnecting
    // status has its stop before it too.
    let rec_line = lines
        .iter()
        .position(|l| l["type"] == "status" && l["state"] == "reconnecting")
        .unwrap();
    let mut open = std::collections::HashSet::new();
    for l in &lines[..rec_line] {
        match l["type"].as_str() {
            Some("start") => {
                open.insert(l["id"].as_str().unwrap().to_string());
            }
            Some("stop") => {
                open.remove(l["id"].as_str().unwrap());
            }
            _ => {}
        }
    }
    assert!(
        open.is_empty(),
        "events left open across the stall: {open:?}"
    );
    // Detection went on after the reopen: audio time covers both streams.
    assert!(summary.audio_s > 5.0, "analysed {} s", summary.audio_s);
    let starts = lines.iter().filter(|l| l["type"] == "start").count();
    let stops = lines.iter().filter(|l| l["type"] == "stop").count();
    assert_eq!(starts, stops);
}
