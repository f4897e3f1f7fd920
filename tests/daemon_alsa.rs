//! `hark run`, `hark devices` and bad device names through the real binary with a
//! real cpal/ALSA capture path: an ALSA `file` PCM (see
//! `shared/notes/alsa-file-capture.md`) delivers a raw file as a microphone, unpaced —
//! the daemon must cope with the flood (bounded queues, counted drops) and stop
//! after `--duration`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Writes a 48 kHz stereo f32 raw file (the ALSA file device's default config) and an
/// asoundrc defining `pcm.hark_flood` over it; returns the ALSA_CONFIG_PATH value.
fn alsa_env(dir: &Path) -> String {
    let samples: Vec<i16> = hound::WavReader::open(clip())
        .unwrap()
        .samples::<i16>()
        .map(|s| s.unwrap())
        .collect();
    let raw: PathBuf = dir.join("flood.raw");
    let bytes: Vec<u8> = samples
        .iter()
        .flat_map(|s| {
            let x = f32::from(*s) / 32768.0;
            [x.to_le_bytes(), x.to_le_bytes()].concat()
        })
        .collect();
    std::fs::write(&raw, bytes).unwrap();
    let rc = dir.join("asoundrc");
    std::fs::write(
        &rc,
        format!(
            "pcm.hark_flood {{\n type file\n slave.pcm \"null\"\n file \"/dev/null\"\n infile \"{}\"\n format \"raw\"\n}}\n",
            raw.display()
        ),
    )
    .unwrap();
    format!("/usr/share/alsa/alsa.conf:{}", rc.display())
}

fn hark_alsa(env: &str) -> Command {
    let mut c = hark();
    c.env("ALSA_CONFIG_PATH", env);
    c
}

fn alsa_usable() -> bool {
    Path::new("/usr/share/alsa/alsa.conf").exists()
}

#[test]
fn run_on_a_flooding_alsa_device_stops_after_duration_with_balanced_events() {
    if !alsa_usable() {
        eprintln!("skipped: /usr/share/alsa/alsa.conf missing (ALSA library not installed)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = alsa_env(dir.path());
    let model = test_model(dir.path());
    let t0 = Instant::now();
    let mut child = hark_alsa(&env)
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--input",
            "mic:hark_flood",
            "--duration",
            "1.5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded wait: the run must end by itself.
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("hark run on the flooding device did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let starts = lines.iter().filter(|l| l["type"] == "start").count();
    let stops = lines.iter().filter(|l| l["type"] == "stop").count();
    assert_eq!(starts, stops, "every start needs its stop");
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "status");
    assert_eq!(last["state"], "ended");
    // 1.5 s of capture at 48 kHz → 1.5 s of 16 kHz audio → 76 frames of 20 ms (centred).
    let t = last["t"].as_f64().unwrap();
    assert!((t - 1.52).abs() < 0.03, "analysed {t} s");
    // The flood is absorbed by the bounded ring; what did not fit is counted, not queued.
    assert!(last["dropped_samples"].as_u64().is_some());
}

#[test]
fn devices_lists_the_alsa_device_and_unknown_names_are_errors() {
    if !alsa_usable() {
        eprintln!("skipped: /usr/share/alsa/alsa.conf missing (ALSA library not installed)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = alsa_env(dir.path());
    let o = hark_alsa(&env).arg("devices").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("hark_flood"), "{}", stdout(&o));
    let model = test_model(dir.path());
    let o = hark_alsa(&env)
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--input",
            "mic:no-such-device-xyz",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("no-such-device-xyz") && e.contains("hark_flood"),
        "{e}"
    );
}

/// An ALSA `file` device reading a FIFO: when the writer pauses, capture stalls
/// (no callbacks, no error — as when a device vanishes under ALSA).
#[test]
fn a_stalled_alsa_device_is_reported_and_reopened_and_detection_resumes() {
    if !alsa_usable() {
        eprintln!("skipped: /usr/share/alsa/alsa.conf missing (ALSA library not installed)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("mic.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let rc = dir.path().join("asoundrc");
    std::fs::write(
        &rc,
        format!(
            "pcm.hark_fifo {{\n type file\n slave.pcm \"null\"\n file \"/dev/null\"\n infile \"{}\"\n format \"raw\"\n}}\n",
            fifo.display()
        ),
    )
    .unwrap();
    let env = format!("/usr/share/alsa/alsa.conf:{}", rc.display());
    let cfg = dir.path().join("hark.toml");
    std::fs::write(&cfg, "[source]\nstall_timeout_s = 0.5\n").unwrap();
    let model = test_model(dir.path());
    // 48 kHz stereo f32 (the device's default config) from the 16 kHz clip: each
    // sample three times, both channels equal.
    let samples: Vec<i16> = hound::WavReader::open(clip())
        .unwrap()
        .samples::<i16>()
        .map(|s| s.unwrap())
        .collect();
    let bytes: Vec<u8> = samples
        .iter()
        .flat_map(|s| {
            let x = (f32::from(*s) / 32768.0).to_le_bytes();
            [x, x, x, x, x, x].concat()
        })
        .collect();
    let per_s = 48_000 * 8;
    let child = hark_alsa(&env)
        .args([
            "run",
            "--model",
            model.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            "mic:hark_fifo",
            "--duration",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            // Blocks until hark opens the device.
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let _ = w.write_all(&bytes[..2 * per_s]);
            // The "device" goes silent for 2 s, then comes back.
            std::thread::sleep(Duration::from_secs(2));
            let _ = w.write_all(&bytes[2 * per_s..]);
            std::thread::sleep(Duration::from_millis(500));
        })
    };
    let t0 = Instant::now();
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("no audio from the source") && err.contains("source reopened"),
        "{err}"
    );
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let states: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "status")
        .map(|l| l["state"].as_str().unwrap())
        .collect();
    let rec = states
        .iter()
        .position(|s| *s == "reconnecting")
        .unwrap_or_else(|| panic!("{states:?}"));
    assert!(states[rec + 1..].contains(&"running"), "{states:?}");
    assert_eq!(*states.last().unwrap(), "ended");
    let starts = lines.iter().filter(|l| l["type"] == "start").count();
    let stops = lines.iter().filter(|l| l["type"] == "stop").count();
    assert_eq!(starts, stops);
    // Audio after the stall was analysed too.
    let t = lines.last().unwrap()["t"].as_f64().unwrap();
    assert!(t > 3.0, "analysed only {t} s");
}
