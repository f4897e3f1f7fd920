//! The model file end to end: seeded random models, save → load round trips, scoring
//! through the `Scorer` trait, and every way a model file can be broken, each with an
//! error that names what is wrong.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use hark::detect::postprocess::PostprocessConfig;
use hark::detect::streaming::StreamingConfig;
use hark::features::FeatureConfig;
use hark::model::arch::{ArchConfig, CrnnBlock, CrnnConfig, PoolSize};
use hark::model::meta::FORMAT_VERSION;
use hark::model::{Model, ModelError, ModelMeta, Scorer};

/// A small CRNN (fast in debug builds) on 16 mels, 3 classes.
fn small_meta() -> ModelMeta {
    let arch = ArchConfig::Crnn(CrnnConfig {
        blocks: vec![
            CrnnBlock {
                channels: 4,
                pool: Some(PoolSize { time: 2, mel: 4 }),
            },
            CrnnBlock {
                channels: 8,
                pool: Some(PoolSize { time: 2, mel: 4 }),
            },
        ],
        gru_hidden: 6,
        ..CrnnConfig::default()
    });
    ModelMeta {
        format_version: FORMAT_VERSION,
        name: "test-small-crnn".into(),
        arch,
        features: FeatureConfig {
            n_mels: 16,
            ..FeatureConfig::default()
        },
        classes: vec!["dog".into(), "speech".into(), "alarm".into()],
        postprocess: PostprocessConfig::default(),
        streaming: StreamingConfig {
            window_frames: 100,
            hop_frames: 50,
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
    let mut out = vec![123.0; 5];
    model.score(&x, n_frames, &mut out).unwrap();
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Writes a safetensors file with the given tensors and metadata entries.
fn write_raw(path: &Path, tensors: &[(String, Tensor)], meta: Option<HashMap<String, String>>) {
    let bytes = safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), meta)
        .expect("serialise");
    std::fs::write(path, bytes).expect("write");
}

fn meta_entry(json: String) -> Option<HashMap<String, String>> {
    Some(HashMap::from([("hark.model".to_string(), json)]))
}

/// The tensors and metadata JSON of a valid small model.
fn valid_parts() -> (Vec<(String, Tensor)>, String) {
    let model = Model::init_random(small_meta(), 5).unwrap();
    let json = serde_json::to_string(model.meta()).unwrap();
    (model.tensors().to_vec(), json)
}

fn load_err(path: &Path) -> String {
    match Model::load(path) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn random_model_scores_probabilities_for_any_length() {
    let mut model = Model::init_random(small_meta(), 1).unwrap();
    assert_eq!(model.min_frames(), 4);
    assert_eq!(model.n_classes(), 3);
    for n in [4, 5, 9, 100, 101] {
        let out = score(&mut model, n);
        assert_eq!(out.len(), n * 3, "n_frames = {n}");
        assert!(
            out.iter().all(|p| (1e-7..=1.0).contains(p)),
            "n_frames = {n}"
        );
    }
}

#[test]
fn init_random_is_reproducible_per_seed() {
    let mut a = Model::init_random(small_meta(), 7).unwrap();
    let mut b = Model::init_random(small_meta(), 7).unwrap();
    let mut c = Model::init_random(small_meta(), 8).unwrap();
    let (sa, sb, sc) = (score(&mut a, 40), score(&mut b, 40), score(&mut c, 40));
    assert!(max_abs_diff(&sa, &sb) <= 0.0);
    assert!(max_abs_diff(&sa, &sc) > 1e-4);
}

#[test]
fn save_load_round_trip_gives_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut model = Model::init_random(small_meta(), 3).unwrap();
    model.save(&path).unwrap();
    let mut back = Model::load(&path).unwrap();
    assert_eq!(back.meta(), model.meta());
    assert_eq!(back.n_params(), model.n_params());
    for n in [4, 37, 100] {
        assert!(max_abs_diff(&score(&mut model, n), &score(&mut back, n)) <= 1e-7);
    }
    // Saving again over the same path replaces the file and leaves no temporary file.
    back.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn default_cdur_model_round_trips_and_counts_its_parameters() {
    let meta = ModelMeta {
        arch: ArchConfig::default(),
        features: FeatureConfig::default(),
        streaming: StreamingConfig {
            window_frames: 500,
            hop_frames: 250,
            lookahead_frames: None,
        },
        ..small_meta()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdur.safetensors");
    let mut model = Model::init_random(meta, 11).unwrap();
    // Conv weights 288 + 36 864 + 3 × 147 456, batch-norm affine 2·(1 + 32 + 3·128),
    // BiGRU 2 · (3·128·128 · 2 + 2 · 384), output 256·3 + 3 (as PyTorch counts).
    let conv = 288 + 36_864 + 3 * 147_456;
    let bn = 2 * (1 + 32 + 3 * 128);
    let gru = 2 * (2 * 384 * 128 + 2 * 384);
    assert_eq!(model.n_params(), conv + bn + gru + 256 * 3 + 3);
    model.save(&path).unwrap();
    let mut back = Model::load(&path).unwrap();
    assert!(max_abs_diff(&score(&mut model, 123), &score(&mut back, 123)) <= 1e-7);
}

#[test]
fn describe_names_arch_classes_features_and_streaming() {
    let model = Model::init_random(small_meta(), 1).unwrap();
    let d = model.describe();
    for want in [
        "test-small-crnn",
        "crnn",
        "BiGRU 2×6",
        "LP(2,4)",
        &model.n_params().to_string(),
        "dog, speech, alarm",
        "16 mels",
        "50.0 frames/s",
        "window 100 frames (2.00 s), hop 50 frames (1.00 s)",
        "on 0.5 off 0.3",
    ] {
        assert!(d.contains(want), "missing {want:?} in:\n{d}");
    }
}

#[test]
fn score_rejects_wrong_sizes_and_too_few_frames() {
    let mut model = Model::init_random(small_meta(), 1).unwrap();
    let mut out = Vec::new();
    let e = model.score(&frames(10, 16), 9, &mut out).unwrap_err();
    assert!(matches!(e, ModelError::Input(_)), "{e}");
    let e = model.score(&frames(3, 16), 3, &mut out).unwrap_err();
    assert!(e.to_string().contains("at least 4"), "{e}");
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let e = Model::load(Path::new("/nonexistent/dir/m.safetensors")).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }));
    assert!(
        e.to_string().contains("/nonexistent/dir/m.safetensors"),
        "{e}"
    );
}

#[test]
fn missing_metadata_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (tensors, _) = valid_parts();
    write_raw(&path, &tensors, None);
    let e = load_err(&path);
    assert!(e.contains("hark.model") && e.contains("metadata"), "{e}");
    write_raw(
        &path,
        &tensors,
        Some(HashMap::from([("other".into(), "x".into())])),
    );
    assert!(load_err(&path).contains("no `hark.model`"));
}

#[test]
fn metadata_that_is_not_json_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (tensors, _) = valid_parts();
    write_raw(&path, &tensors, meta_entry("{not json".into()));
    let e = load_err(&path);
    assert!(e.contains("not valid model JSON"), "{e}");
}

#[test]
fn unknown_json_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (tensors, json) = valid_parts();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["colour"] = "blue".into();
    write_raw(&path, &tensors, meta_entry(v.to_string()));
    let e = load_err(&path);
    assert!(e.contains("unknown field `colour`"), "{e}");
    // Also inside the architecture parameters.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["arch"]["gru_size"] = 3.into();
    write_raw(&path, &tensors, meta_entry(v.to_string()));
    let e = load_err(&path);
    assert!(e.contains("gru_size"), "{e}");
}

#[test]
fn newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (tensors, json) = valid_parts();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["format_version"] = (FORMAT_VERSION + 1).into();
    write_raw(&path, &tensors, meta_entry(v.to_string()));
    let e = load_err(&path);
    assert!(
        e.contains("format_version") && e.contains(&(FORMAT_VERSION + 1).to_string()),
        "{e}"
    );
}

#[test]
fn invalid_metadata_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (tensors, json) = valid_parts();
    let cases: [(&str, serde_json::Value, &str); 3] = [
        (
            "classes",
            serde_json::json!(["dog", "dog", "x"]),
            "appears twice",
        ),
        ("classes", serde_json::json!([]), "classes is empty"),
        (
            "streaming",
            serde_json::json!({"window_frames": 2, "hop_frames": 1}),
            "window_frames",
        ),
    ];
    for (key, value, want) in cases {
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v[key] = value;
        write_raw(&path, &tensors, meta_entry(v.to_string()));
        let e = load_err(&path);
        assert!(e.contains(want), "{key}: {e}");
    }
}

#[test]
fn missing_tensor_is_named_with_its_expected_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (mut tensors, json) = valid_parts();
    tensors.retain(|(n, _)| n != "gru.bwd.weight_hh_l0");
    write_raw(&path, &tensors, meta_entry(json));
    let e = Model::load(&path).unwrap_err();
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("gru.bwd.weight_hh_l0") && e.contains("[18, 6]"),
        "{e}"
    );
}

#[test]
fn wrong_shape_names_the_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (mut tensors, json) = valid_parts();
    for (n, t) in tensors.iter_mut() {
        if n == "blocks.1.conv.weight" {
            *t = Tensor::zeros((8, 4, 5, 5), DType::F32, &Device::Cpu).unwrap();
        }
    }
    write_raw(&path, &tensors, meta_entry(json));
    let e = Model::load(&path).unwrap_err();
    assert!(matches!(e, ModelError::TensorMismatch { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("blocks.1.conv.weight")
            && e.contains("[8, 4, 3, 3]")
            && e.contains("[8, 4, 5, 5]"),
        "{e}"
    );
}

#[test]
fn wrong_dtype_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (mut tensors, json) = valid_parts();
    for (n, t) in tensors.iter_mut() {
        if n == "out.bias" {
            *t = t.to_dtype(DType::F64).unwrap();
        }
    }
    write_raw(&path, &tensors, meta_entry(json));
    let e = load_err(&path);
    assert!(
        e.contains("out.bias") && e.contains("F64") && e.contains("F32"),
        "{e}"
    );
}

#[test]
fn non_finite_weight_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (mut tensors, json) = valid_parts();
    for (n, t) in tensors.iter_mut() {
        if n == "out.bias" {
            *t = Tensor::new(&[0.0f32, f32::NAN, 0.0], &Device::Cpu).unwrap();
        }
    }
    write_raw(&path, &tensors, meta_entry(json));
    let e = load_err(&path);
    assert!(
        e.contains("out.bias") && e.contains("NaN at element 1"),
        "{e}"
    );
}

#[test]
fn unexpected_extra_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (mut tensors, json) = valid_parts();
    tensors.push((
        "blocks.2.conv.weight".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    ));
    write_raw(&path, &tensors, meta_entry(json));
    let e = Model::load(&path).unwrap_err();
    assert!(matches!(e, ModelError::UnexpectedTensor { .. }), "{e}");
    assert!(e.to_string().contains("blocks.2.conv.weight"), "{e}");
}

#[test]
fn truncated_file_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    Model::init_random(small_meta(), 2)
        .unwrap()
        .save(&path)
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for keep in [bytes.len() - 1, bytes.len() / 2, 20, 4] {
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let e = Model::load(&path).unwrap_err();
        assert!(matches!(e, ModelError::Format { .. }), "keep {keep}: {e}");
    }
}

#[test]
fn not_a_safetensors_file_is_a_format_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    std::fs::write(
        &path,
        b"RIFF\x24\x00\x00\x00WAVEfmt this is a wav file, not a model",
    )
    .unwrap();
    let e = Model::load(&path).unwrap_err();
    assert!(matches!(e, ModelError::Format { .. }), "{e}");
    assert!(e.to_string().contains("not a valid safetensors"), "{e}");
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        Model::load(&path).unwrap_err(),
        ModelError::Format { .. }
    ));
}

#[test]
fn from_tensors_validates_like_load() {
    let (tensors, _) = valid_parts();
    let mut map: HashMap<String, Tensor> = tensors.into_iter().collect();
    map.remove("out.weight");
    let e = Model::from_tensors(small_meta(), map).unwrap_err();
    assert!(e.to_string().contains("out.weight"), "{e}");
    let mut bad = small_meta();
    bad.classes.clear();
    assert!(matches!(
        Model::init_random(bad, 1).unwrap_err(),
        ModelError::InvalidMeta(_)
    ));
}

/// Largest absolute difference between two tensors of the same shape.
fn tensor_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .unwrap()
}

/// `scripts/golden_model.py` built the PyTorch twin of a narrow CDur-layout CRNN,
/// wrote it as a hark model file and recorded its eval-mode outputs.
#[test]
fn crnn_matches_its_pytorch_twin() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/model");
    let mut model = Model::load(&dir.join("crnn_tiny.safetensors")).unwrap();
    let io =
        candle_core::safetensors::load(dir.join("crnn_tiny_io.safetensors"), &Device::Cpu).unwrap();
    for t in [37usize, 4] {
        let x = &io[&format!("input_{t}")];
        let out = model.forward(x).unwrap();
        let frame_err = tensor_diff(&out.frame, &io[&format!("frame_{t}")]);
        let clip_err = tensor_diff(&out.clip, &io[&format!("clip_{t}")]);
        eprintln!(
            "T = {t}: max |frame − torch| = {frame_err:e}, max |clip − torch| = {clip_err:e}"
        );
        assert!(frame_err < 1e-4 && clip_err < 1e-4, "T = {t}");
        // The streaming path (Scorer, batch 1) gives the same frames.
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
        assert!(max_abs_diff(&got, &want) < 1e-4, "T = {t}");
    }
}

/// Inference must not build an autograd graph: it would cost memory and time, and it
/// would keep the GRU off its plain-loop path.
#[test]
fn inference_builds_no_autograd_graph() {
    let model = Model::init_random(small_meta(), 4).unwrap();
    let x = Tensor::from_vec(frames(20, 16), (1, 20, 16), &Device::Cpu).unwrap();
    let out = model.forward(&x).unwrap();
    assert!(!out.frame.track_op() && !out.clip.track_op());
    let loaded = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        model.save(&path).unwrap();
        Model::load(&path).unwrap()
    };
    assert!(!loaded.forward(&x).unwrap().frame.track_op());
}
