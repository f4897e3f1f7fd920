//! The shipped default model and demo clip (the README's first command): the model
//! loads and describes itself, finds every event of `models/demo.wav` (labels and
//! times against `models/demo.tsv`) without false alarms, and the daemon streams the
//! same events as `hark detect`.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

const MODEL: &str = "models/hark-crnn-s11.safetensors";

#[test]
fn the_model_describes_itself() {
    let o = run(&["model", "info", repo(MODEL).to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for class in [
        "speech",
        "scream",
        "laughter",
        "footsteps",
        "door",
        "gunshot",
        "explosion",
        "engine",
        "bird",
        "water",
        "chime",
    ] {
        assert!(out.contains(class), "{class} missing from {out}");
    }
    assert!(!out.to_lowercase().contains("untrained"), "{out}");
}

#[test]
fn the_demo_clip_gives_its_events_and_no_false_alarm() {
    let truth = parse_tsv(&std::fs::read_to_string(repo("models/demo.tsv")).unwrap());
    assert_eq!(truth.len(), 3);
    let o = run(&[
        "detect",
        "--model",
        repo(MODEL).to_str().unwrap(),
        repo("models/demo.wav").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = parse_tsv(&stdout(&o));
    for (_, on, off, label) in &truth {
        assert!(
            got.iter()
                .any(|(_, a, b, l)| l == label && (a - on).abs() <= 0.6 && (b - off).abs() <= 1.0),
            "{label} {on}–{off} not found in {got:?}"
        );
    }
    for (_, a, b, l) in &got {
        assert!(
            truth
                .iter()
                .any(|(_, on, off, label)| label == l && a < off && b > on),
            "false alarm {l} {a}–{b}"
        );
    }
    // The daemon, fed the same file, streams the same events.
    let o = run(&[
        "run",
        "--model",
        repo(MODEL).to_str().unwrap(),
        "--input",
        &format!("file:{}", repo("models/demo.wav").display()),
        "--stdout",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut live: Vec<(String, f64, f64)> = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "stop")
        .map(|v| {
            (
                v["label"].as_str().unwrap().to_string(),
                v["t_start"].as_f64().unwrap(),
                v["t_end"].as_f64().unwrap(),
            )
        })
        .collect();
    live.sort_by(|a, b| a.1.total_cmp(&b.1));
    let offline: Vec<(String, f64, f64)> = got.into_iter().map(|(_, a, b, l)| (l, a, b)).collect();
    assert_eq!(live, offline);
}
