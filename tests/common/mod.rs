//! Shared helpers of the integration tests: a small CRNN with seeded random weights
//! whose thresholds are set from its own scores on the test clip, so that it emits
//! a deterministic, non-trivial set of events. It is a test fixture, not a detector.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hark::detect::postprocess::{ClassParams, PostprocessConfig};
use hark::detect::streaming::StreamingConfig;
use hark::features::FeatureConfig;
use hark::model::arch::crnn::{CrnnBlock, PoolSize};
use hark::model::arch::{ArchConfig, CrnnConfig};
use hark::model::meta::FORMAT_VERSION;
use hark::model::{Model, ModelMeta};
use hark::pipeline::OfflineDetector;

/// The real recording shipped for tests (5.2 s, 16 kHz mono).
pub fn clip() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/audio/speech_chime_16k.wav")
}

/// The `hark` binary under test.
pub fn hark() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hark"))
}

/// Runs `hark` with `args`, returns its output.
pub fn run(args: &[&str]) -> Output {
    hark().args(args).output().expect("run hark")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Metadata of a small CRNN (8/16/16 channels, BiGRU 16) over hark's default features.
pub fn small_meta(classes: &[&str], pp: PostprocessConfig) -> ModelMeta {
    let block = |channels, pool: Option<(usize, usize)>| CrnnBlock {
        channels,
        pool: pool.map(|(time, mel)| PoolSize { time, mel }),
    };
    ModelMeta {
        format_version: FORMAT_VERSION,
        name: "test-random-crnn".into(),
        arch: ArchConfig::Crnn(CrnnConfig {
            blocks: vec![
                block(8, Some((2, 4))),
                block(16, Some((2, 4))),
                block(16, Some((1, 4))),
            ],
            gru_hidden: 16,
            ..CrnnConfig::default()
        }),
        features: FeatureConfig::default(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
        postprocess: pp,
        streaming: StreamingConfig {
            window_frames: 100,
            hop_frames: 50,
            lookahead_frames: None,
        },
        training: serde_json::json!({"note": "seeded random weights for tests"}),
    }
}

/// Writes the test model to `dir/model.safetensors` and returns its path. The
/// per-class `on` threshold is the 70th percentile of that class's scores on the
/// test clip and `off` the 50th, so each class has events of varied lengths.
pub fn test_model(dir: &Path) -> PathBuf {
    let classes = ["alpha", "beta", "gamma"];
    let probe = small_meta(
        &classes,
        PostprocessConfig {
            default: ClassParams {
                on: 0.999,
                off: 0.998,
                ..ClassParams::default()
            },
            per_class: Default::default(),
        },
    );
    let model = Model::init_random(probe.clone(), 7).expect("init model");
    let mut det = OfflineDetector::new(model, &probe.postprocess).expect("detector");
    let r = det.detect_file(&clip(), true).expect("score clip");
    let nc = classes.len();
    let mut pp = PostprocessConfig {
        default: ClassParams {
            median_frames: 3,
            min_duration_s: 0.06,
            merge_gap_s: 0.04,
            ..ClassParams::default()
        },
        per_class: Default::default(),
    };
    for (c, name) in classes.iter().enumerate() {
        let mut col: Vec<f32> = r.scores.iter().skip(c).step_by(nc).copied().collect();
        col.sort_by(f32::total_cmp);
        let q = |p: f64| col[((col.len() - 1) as f64 * p) as usize];
        pp.per_class.insert(
            name.to_string(),
            hark::detect::postprocess::ClassOverride {
                on: Some(q(0.7)),
                off: Some(q(0.5)),
                ..Default::default()
            },
        );
    }
    let meta = ModelMeta {
        postprocess: pp,
        ..probe
    };
    let model = Model::init_random(meta, 7).expect("init model");
    let path = dir.join("model.safetensors");
    model.save(&path).expect("save model");
    path
}

/// Parses DCASE TSV output into (file, onset, offset, label) rows, checking the header.
pub fn parse_tsv(text: &str) -> Vec<(String, f64, f64, String)> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("filename\tonset\toffset\tevent_label"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "bad row {l:?}");
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].to_string(),
            )
        })
        .collect()
}
