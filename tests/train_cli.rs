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
