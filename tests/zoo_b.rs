//! The paper-001 (`atp_sedb`) and paper-002 (`context_attention`) architectures end to
//! end: PyTorch golden outputs (all heads), the model file, the streaming runner,
//! `hark model info`, and the parameter counts of the default sizes.

mod golden_util;
use golden_util::{golden_dir, max_abs_diff, tensor_diff};

use std::process::Command;

use candle_core::Device;
use hark::detect::postprocess::PostprocessConfig;
use hark::detect::streaming::{StreamingConfig, StreamingRunner};
use hark::features::FeatureConfig;
use hark::model::arch::{
    ArchConfig, AtpBlock, AtpSedbConfig, ContextAttentionConfig, CrnnBlock, EncoderConfig, PoolSize,
};
use hark::model::meta::FORMAT_VERSION;
use hark::model::{Model, ModelMeta, Scorer};

/// Loads golden model `stem` and checks every output named in `outputs` against the
/// twin's for each input length, and the batch-1 `Scorer` path against the frames.
fn check_golden(stem: &str, lengths: &[usize], outputs: &[&str]) {
    let dir = golden_dir();
    let mut model = Model::load(&dir.join(format!("{stem}.safetensors"))).unwrap();
    let io =
        candle_core::safetensors::load(dir.join(format!("{stem}_io.safetensors")), &Device::Cpu)
            .unwrap();
    for &t in lengths {
        let x = &io[&format!("input_{t}")];
        let out = model.forward(x).unwrap();
        for &name in outputs {
            let got = match name {
                "frame" => out.frame.clone(),
                "clip" => out.clip.clone(),
                "frame_secondary" => out.aux.frame_secondary.clone().unwrap(),
                "embeddings" => out.aux.embeddings.clone().unwrap(),
                "scene_logits" => out.aux.scene_logits.clone().unwrap(),
                other => panic!("unknown output {other}"),
            };
            let err = tensor_diff(&got, &io[&format!("{name}_{t}")]);
            eprintln!("{stem} T = {t}: max |{name} − torch| = {err:e}");
            assert!(err < 1e-4, "{stem} T = {t}: {name} differs by {err}");
        }
        let x0: Vec<f32> = x.get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut got = Vec::new();
        model.score(&x0, t, &mut got).unwrap();
        let want: Vec<f32> = io[&format!("frame_{t}")]
            .get(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-4, "{stem} T = {t} (Scorer)");
    }
}

/// `scripts/golden_zoo_b.py`: 3-block conv→BN→ReLU encoder with max pools (2,4) (1,4)
/// (1,4), ATP head with DF dims [5, 8, 3], SEDB and a 6-d projection head.
#[test]
fn atp_sedb_matches_its_pytorch_twin() {
    check_golden(
        "zoo_b_atp_sedb",
        &[37, 2],
        &["frame", "clip", "frame_secondary", "embeddings"],
    );
}

/// `scripts/golden_zoo_b.py`: local and global CRNNs, 10-frame target segments (37
/// frames: a partial last segment; 20: exact tiling; 4: one segment shorter than 10),
/// additive attention, FC head and a 3-scene head.
#[test]
fn context_attention_matches_its_pytorch_twin() {
    check_golden(
        "zoo_b_context_attention",
        &[37, 20, 4],
        &["frame", "clip", "scene_logits"],
    );
}

/// Small configurations of both architectures on 16 mels (fast in debug builds).
fn small_archs() -> Vec<ArchConfig> {
    let pool = |time, mel| Some(PoolSize { time, mel });
    let atp = ArchConfig::AtpSedb(AtpSedbConfig {
        blocks: vec![
            AtpBlock {
                channels: 4,
                pool: pool(2, 4),
            },
            AtpBlock {
                channels: 4,
                pool: pool(2, 4),
            },
        ],
        df_dims: Some(vec![2, 4, 3]),
        projection_dim: 5,
        ..AtpSedbConfig::default()
    });
    let enc = |hidden| EncoderConfig {
        blocks: vec![
            CrnnBlock {
                channels: 4,
                pool: pool(2, 4),
            },
            CrnnBlock {
                channels: 4,
                pool: pool(2, 4),
            },
        ],
        gru_hidden: hidden,
    };
    let ca = ArchConfig::ContextAttention(ContextAttentionConfig {
        local: enc(3),
        global: enc(4),
        segment_frames: 12,
        att_dim: 4,
        fc_hidden: 6,
        n_scenes: 2,
        ..ContextAttentionConfig::default()
    });
    vec![atp, ca]
}

fn meta(arch: ArchConfig, n_mels: usize) -> ModelMeta {
    ModelMeta {
        format_version: FORMAT_VERSION,
        name: format!("test-{}", arch.name()),
        arch,
        features: FeatureConfig {
            n_mels,
            ..FeatureConfig::default()
        },
        classes: vec!["dog".into(), "speech".into(), "alarm".into()],
        postprocess: PostprocessConfig::default(),
        streaming: StreamingConfig {
            window_frames: 40,
            hop_frames: 20,
            lookahead_frames: None,
        },
        training: serde_json::Value::Null,
    }
}

/// Deterministic pseudo-log-mel input, `n_frames × n_mels`.
fn frames(n_frames: usize, n_mels: usize) -> Vec<f32> {
    (0..n_frames * n_mels)
        .map(|i| ((i as f32 * 0.37).sin() * 3.0) - 4.0 + (i % 7) as f32 * 0.1)
        .collect()
}

fn score(model: &mut Model, n_frames: usize) -> Vec<f32> {
    let x = frames(n_frames, model.n_mels());
    let mut out = Vec::new();
    model.score(&x, n_frames, &mut out).unwrap();
    out
}

#[test]
fn zoo_b_models_round_trip_through_the_model_file_and_json() {
    let dir = tempfile::tempdir().unwrap();
    for arch in small_archs() {
        let name = arch.name();
        let json = serde_json::to_string(&arch).unwrap();
        assert!(json.contains(&format!("\"name\":\"{name}\"")), "{json}");
        let back: ArchConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, arch);
        let mut bad: serde_json::Value = serde_json::from_str(&json).unwrap();
        bad["segmnt_frames"] = 3.into();
        let e = serde_json::from_value::<ArchConfig>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("segmnt_frames"), "{e}");

        let path = dir.path().join(format!("{name}.safetensors"));
        let mut model = Model::init_random(meta(arch.clone(), 16), 3).unwrap();
        model.save(&path).unwrap();
        let mut loaded = Model::load(&path).unwrap();
        assert_eq!(loaded.meta(), model.meta());
        assert_eq!(loaded.n_params(), model.n_params());
        let min = model.min_frames();
        assert_eq!(min, 4, "{name}");
        for n in [min, 5, 37, 100] {
            let (a, b) = (score(&mut model, n), score(&mut loaded, n));
            assert_eq!(a.len(), n * 3, "{name} n = {n}");
            assert!(a.iter().all(|p| (0.0..=1.0).contains(p)), "{name} n = {n}");
            assert!(max_abs_diff(&a, &b) <= 1e-7, "{name} n = {n}");
        }
        let x = frames(min - 1, 16);
        assert!(model.score(&x, min - 1, &mut Vec::new()).is_err(), "{name}");
        let d = loaded.describe();
        assert!(d.contains(name) && d.contains("min input 4 frames"), "{d}");
    }
}

/// Feeding a stream in one block or in uneven chunks gives the same frame scores.
#[test]
fn zoo_b_models_run_in_the_streaming_runner() {
    for arch in small_archs() {
        let name = arch.name();
        let model = Model::init_random(meta(arch, 16), 5).unwrap();
        let cfg = model.meta().streaming;
        let n = 131;
        let x = frames(n, 16);
        let run = |chunks: &[usize]| {
            let model = Model::init_random(meta(model.meta().arch.clone(), 16), 5).unwrap();
            let mut runner = StreamingRunner::new(Box::new(model), cfg).unwrap();
            let mut out = Vec::new();
            let mut at = 0;
            for &c in chunks.iter().cycle() {
                if at >= n {
                    break;
                }
                let end = (at + c).min(n);
                runner.push(&x[at * 16..end * 16], &mut out).unwrap();
                at = end;
            }
            runner.finish(&mut out).unwrap();
            out
        };
        let whole = run(&[n]);
        let chunked = run(&[7, 1, 30, 13]);
        assert_eq!(whole.len(), n * 3, "{name}");
        assert!(whole.iter().all(|p| (0.0..=1.0).contains(p)), "{name}");
        assert!(max_abs_diff(&whole, &chunked) <= 1e-6, "{name}");
    }
}

/// `hark model info` describes both architectures.
#[test]
fn model_info_describes_the_zoo_b_golden_models() {
    for (stem, words) in [
        (
            "zoo_b_atp_sedb",
            &[
                "atp_sedb",
                "ATP head with DF dims [5, 8, 3]",
                "SEDB on",
                "IFD projection 6-d",
            ][..],
        ),
        (
            "zoo_b_context_attention",
            &[
                "context_attention",
                "10-frame target segments",
                "scene head 3 scenes",
            ][..],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hark"))
            .args(["model", "info"])
            .arg(golden_dir().join(format!("{stem}.safetensors")))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stem}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for w in words {
            assert!(text.contains(w), "{stem}: `{w}` not in\n{text}");
        }
    }
}

/// The default (paper-size) configurations on 64 mels and 10 classes, counted by hand
/// as PyTorch counts (batch-norm running statistics excluded).
#[test]
fn default_sizes_count_their_parameters() {
    let count = |arch: ArchConfig| {
        let mut m = meta(arch, 64);
        m.classes = (0..10).map(|i| format!("c{i}")).collect();
        Model::init_random(m, 1).unwrap().n_params()
    };
    // ATP-SEDB: convs 1→128, 128→128 ×2 (3×3, no bias); BN affine 3 × 2·128;
    // ATP att + cla 2 · (128·10 + 10); SEDB 128·10 + 10; projection 128·128 + 128.
    let atp = 9 * 128 + 2 * 9 * 128 * 128 + 3 * 2 * 128 + 3 * (128 * 10 + 10) + 128 * 128 + 128;
    assert_eq!(count(ArchConfig::AtpSedb(AtpSedbConfig::default())), atp);
    // Ablations drop exactly their heads.
    let plain = AtpSedbConfig {
        sedb: false,
        ifd_projection: false,
        ..AtpSedbConfig::default()
    };
    assert_eq!(
        count(ArchConfig::AtpSedb(plain)),
        atp - (128 * 10 + 10) - (128 * 128 + 128)
    );
    // Context attention: per encoder, BN affine 2·(1 + 32 + 64) and convs 9·(32 + 32·64 +
    // 64·64); BiGRU on 64 features: 2 · (3H·64 + 3H·H + 2·3H) for H = 32 (local) and 64
    // (global); attention W_q 32·64, W_k 32·128 + 32, v 32; fc1 192·64 + 64; fc2 64·10 + 10.
    let enc = 2 * (1 + 32 + 64) + 9 * (32 + 32 * 64 + 64 * 64);
    let gru = |h: usize| 2 * (3 * h * 64 + 3 * h * h + 2 * 3 * h);
    let ca =
        2 * enc + gru(32) + gru(64) + 32 * 64 + 32 * 128 + 32 + 32 + 192 * 64 + 64 + 64 * 10 + 10;
    assert_eq!(
        count(ArchConfig::ContextAttention(
            ContextAttentionConfig::default()
        )),
        ca
    );
    eprintln!("default parameter counts: atp_sedb {atp}, context_attention {ca}");
}
