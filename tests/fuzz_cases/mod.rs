//! The checks behind each cargo-fuzz target (`fuzz/fuzz_targets/*.rs` include this
//! file), shared with `tests/fuzz_regressions.rs`, which replays every saved input
//! of `tests/data/fuzz/<target>/` through them in every `cargo test`. Each function
//! must return normally for any input: typed errors are fine, a panic, abort or
//! hang is a finding.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use hark::audio::stdin::StdinSource;
use hark::audio::{decode_file, PcmFormat, ReadOutcome, SourceReader};
use hark::config::Config;
use hark::detect::postprocess::PostprocessConfig;
use hark::events::protocol::Subscription;
use hark::features::FeatureConfig;
use hark::metrics::tsv::{parse_events, parse_score_table, read_durations};
use hark::model::{Model, Scorer};
use hark::pipeline::{DetectStage, StageOutput};
use hark::train::{DataConfig, Dataset, SplitConfig};

/// Writes `data` to this process's scratch file `name` and returns its path (for
/// loaders that read paths).
pub fn scratch(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hark-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write scratch file");
    p
}

/// Audio decoding: `decode_file` (symphonia; the first byte picks the extension
/// hint) and raw PCM through `StdinSource` (the first byte picks format and
/// channels). Samples must be finite.
pub fn audio_decode(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ext = ["wav", "flac", "ogg", "mp3", "bin"][usize::from(sel % 5)];
    let path = scratch(&format!("input.{ext}"), body);
    if let Ok((x, rate)) = decode_file(&path) {
        assert!(rate > 0);
        assert!(x.iter().all(|v| v.is_finite()));
    }
    let format = if sel & 0x80 == 0 {
        PcmFormat::S16Le
    } else {
        PcmFormat::F32Le
    };
    let channels = u16::from((sel >> 3) & 0x7) + 1;
    let mut src = StdinSource::new(body, format, 16_000, channels).expect("valid spec");
    let mut buf = vec![0.0f32; 257];
    loop {
        match src.read(&mut buf) {
            Ok(ReadOutcome::Samples(n)) => {
                assert!(n <= buf.len());
                assert!(buf[..n].iter().all(|v| v.is_finite()));
            }
            Ok(ReadOutcome::Idle) => {}
            Ok(ReadOutcome::End) | Err(_) => break,
        }
    }
}

/// The daemon's config parser and validator, then the per-class checks.
pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    if let Ok(cfg) = Config::parse(text, path) {
        let labels = vec!["speech".to_string(), "door".to_string()];
        let _ = cfg.check_labels(path, &labels, &PostprocessConfig::default());
        let _ = cfg.postprocess(&PostprocessConfig::default());
    }
}

/// The model-file loader; a model that loads is run the way the daemon runs it
/// (streaming windows, post-processing) over two windows of frames, and every
/// score must be a probability.
pub fn model_load(data: &[u8]) {
    let path = scratch("model.safetensors", data);
    let Ok(m) = Model::load(&path) else {
        return;
    };
    let n_frames = 2 * m.meta().streaming.window_frames;
    let n_mels = m.n_mels();
    // Keep each run small: skip large (but valid) geometries.
    if n_frames * n_mels > 1 << 16 {
        return;
    }
    let pp = m.meta().postprocess.clone();
    let Ok(mut stage) = DetectStage::new(m, &pp, "fuzz".into()) else {
        return;
    };
    let x: Vec<f32> = (0..n_frames * n_mels)
        .map(|i| -4.0 + (i % 7) as f32)
        .collect();
    let mut check = |o: StageOutput<'_>| {
        if let StageOutput::Scores { scores, .. } = o {
            assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
        }
    };
    if stage.push(&x, &mut check).is_ok() {
        let _ = stage.finish(&mut check);
    }
}

/// The socket protocol's client line parser (`{"subscribe":{...}}`); the socket
/// passes only valid UTF-8 lines.
pub fn socket_subscribe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let classes = vec!["speech".to_string(), "door".to_string()];
    for line in text.split('\n') {
        if let Ok(sub) = Subscription::parse(line, &classes) {
            if let Some(labels) = &sub.labels {
                assert!(labels.iter().all(|l| classes.contains(l)));
            }
        }
    }
}

/// The TSV readers of `hark eval`: event lists, score tables, durations.
pub fn tsv_eval(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.tsv");
    if let Ok(list) = parse_events(path, text) {
        for e in &list.events {
            assert!(e.onset <= e.offset, "{e:?}");
        }
        let _ = list.files();
    }
    let _ = parse_score_table(path, text);
    let p = scratch("durations.tsv", data);
    let _ = read_durations(&p);
}

/// The training metadata readers (weak, strong, soft, scenes; the first byte picks
/// which) behind `Dataset::load_split`. The audio folder is missing, so metadata
/// that parses ends in a "missing audio" error.
pub fn tsv_train(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let meta = scratch("meta.tsv", body);
    let base = meta.parent().expect("scratch dir").to_path_buf();
    let mut split = SplitConfig {
        audio_dir: base.join("no-audio"),
        weak: None,
        strong: None,
        soft: None,
        scenes: None,
    };
    match sel % 4 {
        0 => split.weak = Some(meta),
        1 => split.strong = Some(meta),
        2 => split.soft = Some(meta),
        _ => {
            split.weak = Some(meta.clone());
            split.scenes = Some(meta);
        }
    }
    let cfg = DataConfig {
        classes: vec!["speech".into(), "door".into()],
        scene_classes: vec!["home".into()],
        train: split.clone(),
        validation: None,
        validation_fraction: 0.2,
        cache_dir: None,
    };
    let _ = Dataset::load_split(&cfg, &split, &base, &FeatureConfig::default(), "data.train");
}

/// A target's check.
pub type Check = fn(&[u8]);

/// Every target by name, for the regression replay.
pub const TARGETS: &[(&str, Check)] = &[
    ("audio_decode", audio_decode),
    ("config_parse", config_parse),
    ("model_load", model_load),
    ("socket_subscribe", socket_subscribe),
    ("tsv_eval", tsv_eval),
    ("tsv_train", tsv_train),
];
