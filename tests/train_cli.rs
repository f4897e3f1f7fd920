//! The user's path through the CLI: `hark synth` → `hark train` → `hark tune` →
//! `hark detect`, on generated sounds.

use std::path::Path;
use std::process::{Command, Output};

mod train_util;
use train_util::{make_sources, CLASSES};

fn hark(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(args)
        .output()
        .expect("run hark");
    assert!(
        o.status.success(),
        "hark {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn synth_train_tune_detect() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_sources(d);
    let synth = d.join("synth");
    let (fg, bg) = (d.join("fg"), d.join("bg"));
    hark(&[
        "synth",
        s(&synth),
        "--foreground",
        s(&fg),
        "--background",
        s(&bg),
        "-n",
        "48",
        "--seconds",
        "2.5",
        "--events",
        "1:2",
        "--snr",
        "15:25",
        "--polyphony",
        "1",
        "--max-event",
        "1",
        "--seed",
        "7",
    ]);
    for f in ["strong.tsv", "weak.tsv", "summary.json"] {
        assert!(synth.join(f).is_file(), "{f}");
    }
    assert_eq!(std::fs::read_dir(synth.join("audio")).unwrap().count(), 48);
    let config = format!(
        r#"
output = "model/home.safetensors"
[arch]
name = "crnn"
blocks = [{{ channels = 8, pool = {{ time = 2, mel = 4 }} }}, {{ channels = 16, pool = {{ time = 2, mel = 4 }} }}, {{ channels = 16, pool = {{ time = 1, mel = 4 }} }}]
gru_hidden = 16
[data]
classes = {classes:?}
[data.train]
audio_dir = "synth/audio"
strong = "synth/strong.tsv"
[optim]
lr = 0.01
batch_size = 8
balanced = true
[schedule]
epochs = 6
"#,
        classes = CLASSES
    );
    std::fs::write(d.join("train.toml"), config).unwrap();
    hark(&["train", s(&d.join("train.toml")), "--no-progress"]);
    let model = d.join("model/home.safetensors");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("model/home.train.json")).unwrap())
            .unwrap();
    assert_eq!(summary.as_array().unwrap().len(), 6);
    let o = hark(&[
        "tune",
        s(&model),
        "--audio",
        s(&synth.join("audio")),
        "--strong",
        s(&synth.join("strong.tsv")),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for c in CLASSES {
        let t = &report["classes"][c];
        assert!(t["f1_after"].as_f64().unwrap() >= t["f1_before"].as_f64().unwrap());
    }
    let info = String::from_utf8_lossy(&hark(&["model", "info", s(&model)]).stdout).into_owned();
    assert!(info.contains("chirp"), "{info}");
    let clip = synth.join("audio/soundscape_0000.wav");
    let o = hark(&["detect", "--model", s(&model), s(&clip)]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("filename\tonset\toffset\tevent_label"));
    let events: Vec<&str> = lines.collect();
    assert!(
        !events.is_empty(),
        "no events detected in a clip with events"
    );
    for e in events {
        let label = e.split('\t').nth(3).unwrap();
        assert!(CLASSES.contains(&label), "{e}");
    }
}

#[test]
fn synth_from_a_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_sources(d);
    // Relative paths are resolved against the config's folder; -n and --seed override.
    std::fs::write(
        d.join("synth.toml"),
        r#"
foreground_dir = "fg"
background_dir = "bg"
n_clips = 100
clip_seconds = 3.0
events = [1, 2]
room_tone_prob = 0.5
band_limit_prob = 0.5
min_crop_seconds = 0.5
max_event_seconds = 1.0
holdout = { fraction = 0.3, part = "train", seed = 1 }
"#,
    )
    .unwrap();
    let out = d.join("out");
    hark(&[
        "synth",
        s(&out),
        "--config",
        s(&d.join("synth.toml")),
        "-n",
        "5",
        "--seed",
        "3",
    ]);
    assert_eq!(std::fs::read_dir(out.join("audio")).unwrap().count(), 5);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["config"]["seed"], 3);
    assert_eq!(summary["config"]["room_tone_prob"], 0.5);

    // An unknown key and a flag beside --config are errors that name them.
    std::fs::write(
        d.join("bad.toml"),
        "foreground_dir = \"fg\"\nsnr = [0, 1]\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args([
            "synth",
            s(&d.join("o2")),
            "--config",
            s(&d.join("bad.toml")),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml") && err.contains("snr"), "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args([
            "synth",
            s(&d.join("o3")),
            "--config",
            s(&d.join("synth.toml")),
            "--snr",
            "0:10",
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn train_check_validates_without_training() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("audio")).unwrap();
    std::fs::write(d.join("weak.tsv"), "filename\tevent_labels\n").unwrap();
    let config = |weak: &str| {
        format!(
            "output = \"m.safetensors\"\n[arch]\nname = \"crnn\"\n[data]\nclasses = [\"a\", \"b\"]\n\
             [data.train]\naudio_dir = \"audio\"\nweak = \"{weak}\"\n"
        )
    };
    std::fs::write(d.join("ok.toml"), config("weak.tsv")).unwrap();
    let o = hark(&["train", s(&d.join("ok.toml")), "--check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("OK") && out.contains("2 classes"), "{out}");
    assert!(!d.join("m.safetensors").exists(), "--check must not train");
    std::fs::write(d.join("bad.toml"), config("missing.tsv")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_hark"))
        .args(["train", s(&d.join("bad.toml")), "--check"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("missing.tsv"), "{err}");
}
