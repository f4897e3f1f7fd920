//! The `amn` (paper 000) and `two_step_ae` (2APAE, paper 003) architectures end to end:
//! forward golden tests against their PyTorch twins (`scripts/golden_zoo_a.py`), save →
//! load round trips through the model file, the streaming runner, `hark model info`,
//! and the tensors and parameter counts of the paper-size defaults.

mod common;

mod golden_util;
use golden_util::{golden_dir, max_abs_diff, tensor_diff};

use std::collections::HashMap;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use hark::detect::postprocess::PostprocessConfig;
use hark::detect::streaming::{StreamingConfig, StreamingRunner};
use hark::features::FeatureConfig;
use hark::model::arch::{
    expected_tensors, AmSwitch, AmnConfig, ArchConfig, ClipHead, TwoStepAe, TwoStepAeConfig,
};
use hark::model::layers::{EncoderAffinity, Upsample};
use hark::model::meta::FORMAT_VERSION;
use hark::model::{Model, ModelMeta, Scorer};

/// Compares the model file's eval-mode outputs with the twin's, batch and streaming
/// (`Scorer`, batch 1) paths.
fn check_against_twin(stem: &str, lengths: &[usize]) {
    let dir = golden_dir();
    let mut model = Model::load(&dir.join(format!("{stem}.safetensors"))).unwrap();
    let io =
        candle_core::safetensors::load(dir.join(format!("{stem}_io.safetensors")), &Device::Cpu)
            .unwrap();
    for &t in lengths {
        let x = &io[&format!("input_{t}")];
        let out = model.forward(x).unwrap();
        let frame_err = tensor_diff(&out.frame, &io[&format!("frame_{t}")]);
        let clip_err = tensor_diff(&out.clip, &io[&format!("clip_{t}")]);
        eprintln!("{stem} T = {t}: max |frame − torch| = {frame_err:e}, max |clip − torch| = {clip_err:e}");
        assert!(frame_err < 1e-4 && clip_err < 1e-4, "{stem} T = {t}");
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
        assert!(max_abs_diff(&got, &want) < 1e-4, "{stem} T = {t}");
    }
}

#[test]
fn amn_matches_its_pytorch_twin() {
    check_against_twin("amn_tiny", &[37, 4]);
}

#[test]
fn two_step_ae_matches_its_pytorch_twin() {
    check_against_twin("two_step_ae_tiny", &[23, 1]);
}

/// The reconstruction (the decoder runs in training mode only through `SedNet`, so
/// the network is built directly and asked for it in eval mode).
#[test]
fn two_step_ae_reconstruction_matches_its_pytorch_twin() {
    let dir = golden_dir();
    let weights =
        candle_core::safetensors::load(dir.join("two_step_ae_tiny.safetensors"), &Device::Cpu)
            .unwrap();
    let model = Model::load(&dir.join("two_step_ae_tiny.safetensors")).unwrap();
    let ArchConfig::TwoStepAe(cfg) = &model.meta().arch else {
        panic!("golden file is not a two_step_ae: {:?}", model.meta().arch)
    };
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let net = TwoStepAe::new(cfg, 16, 3, vb).unwrap();
    let io =
        candle_core::safetensors::load(dir.join("two_step_ae_tiny_io.safetensors"), &Device::Cpu)
            .unwrap();
    for t in [23usize, 1] {
        let out = net
            .forward_all(&io[&format!("input_{t}")], false, true)
            .unwrap();
        let r = out.aux.reconstruction.unwrap();
        let err = tensor_diff(&r, &io[&format!("reconstruction_{t}")]);
        eprintln!("two_step_ae T = {t}: max |reconstruction − torch| = {err:e}");
        assert!(err < 1e-4, "T = {t}");
        let err = tensor_diff(&out.frame, &io[&format!("frame_{t}")]);
        assert!(err < 1e-4, "T = {t}");
    }
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
            window_frames: 24,
            hop_frames: 12,
            lookahead_frames: None,
        },
        training: serde_json::Value::Null,
    }
}

fn small_amn() -> ArchConfig {
    ArchConfig::Amn(AmnConfig {
        channels: [4, 4, 4],
        mel_pools: [2, 2, 2],
        gru_hidden: 4,
        decoder_am: AmSwitch {
            half: false,
            quarter: true,
        },
        upsample: Upsample::Nearest,
        ..AmnConfig::default()
    })
}

fn small_ae(head: ClipHead) -> ArchConfig {
    ArchConfig::TwoStepAe(TwoStepAeConfig {
        channels: vec![2, 4],
        decoder_channels: vec![2],
        head,
        final_relu: true,
    })
}

fn small_archs() -> Vec<ArchConfig> {
    vec![
        small_amn(),
        small_ae(ClipHead::TwoStep),
        small_ae(ClipHead::Gwrp { r: 0.9 }),
        small_ae(ClipHead::Attention),
    ]
}

/// Deterministic pseudo-log-mel input, `n_frames × n_mels`.
fn frames(n_frames: usize, n_mels: usize) -> Vec<f32> {
    (0..n_frames * n_mels)
        .map(|i| ((i as f32 * 0.37).sin() * 3.0) - 4.0 + (i % 7) as f32 * 0.1)
        .collect()
}

#[test]
fn each_arch_round_trips_through_the_model_file() {
    let dir = tempfile::tempdir().unwrap();
    for (i, arch) in small_archs().into_iter().enumerate() {
        let mut model = Model::init_random(meta(arch.clone(), 8), 7).unwrap();
        let path = dir.path().join(format!("m{i}.safetensors"));
        model.save(&path).unwrap();
        let mut loaded = Model::load(&path).unwrap();
        assert_eq!(loaded.meta().arch, arch);
        assert_eq!(loaded.n_params(), model.n_params());
        let x = frames(19, 8);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        model.score(&x, 19, &mut a).unwrap();
        loaded.score(&x, 19, &mut b).unwrap();
        assert_eq!(a.len(), 19 * 3);
        assert!(max_abs_diff(&a, &b) < 1e-7, "{}", arch.name());
        assert!(
            a.iter().all(|p| (1e-7..=1.0).contains(p)),
            "{}",
            arch.name()
        );
    }
}

#[test]
fn each_arch_runs_in_the_streaming_runner_in_any_chunking() {
    for arch in small_archs() {
        let n = 61;
        let x = frames(n, 8);
        let mut outputs = Vec::new();
        for chunk in [n, 5] {
            let model = Model::init_random(meta(arch.clone(), 8), 3).unwrap();
            let cfg = model.meta().streaming;
            let mut runner = StreamingRunner::new(Box::new(model), cfg).unwrap();
            let mut all = Vec::new();
            for c in x.chunks(chunk * 8) {
                runner.push(c, &mut all).unwrap();
            }
            runner.finish(&mut all).unwrap();
            assert_eq!(all.len(), n * 3, "{}", arch.name());
            outputs.push(all);
        }
        assert!(
            max_abs_diff(&outputs[0], &outputs[1]) < 1e-6,
            "{}",
            arch.name()
        );
    }
}

#[test]
fn model_info_describes_both_architectures() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, needles) in [
        (small_amn(), vec!["amn", "affinity mixup", "τ = 1"]),
        (
            small_ae(ClipHead::TwoStep),
            vec!["two_step_ae", "two-step attention", "2/4"],
        ),
    ] {
        let model = Model::init_random(meta(arch.clone(), 8), 1).unwrap();
        let path = dir.path().join(format!("{}.safetensors", arch.name()));
        model.save(&path).unwrap();
        let o = common::run(&["model", "info", path.to_str().unwrap()]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let s = common::stdout(&o);
        for needle in needles {
            assert!(s.contains(needle), "missing {needle} in:\n{s}");
        }
    }
}

#[test]
fn arch_json_of_both_architectures() {
    let a: ArchConfig = serde_json::from_str(r#"{"name":"amn"}"#).unwrap();
    assert_eq!(a, ArchConfig::Amn(AmnConfig::default()));
    let a: ArchConfig = serde_json::from_str(
        r#"{"name":"amn","tau":0.5,"encoder_am":{"half":false,"quarter":true},"upsample":"nearest"}"#,
    )
    .unwrap();
    let ArchConfig::Amn(c) = a else { panic!() };
    assert_eq!(
        (c.tau, c.encoder_am.half, c.upsample),
        (0.5, false, Upsample::Nearest)
    );
    assert_eq!(c.encoder_affinity, EncoderAffinity::Softmax);
    let a: ArchConfig =
        serde_json::from_str(r#"{"name":"amn","encoder_affinity":"exp_normalized"}"#).unwrap();
    let ArchConfig::Amn(c) = a else { panic!() };
    assert_eq!(c.encoder_affinity, EncoderAffinity::ExpNormalized);
    let e = serde_json::from_str::<ArchConfig>(r#"{"name":"amn","encoder_affinity":"expo"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("expo") && e.contains("softmax") && e.contains("exp_normalized"),
        "{e}"
    );
    let a: ArchConfig =
        serde_json::from_str(r#"{"name":"two_step_ae","head":{"kind":"gwrp","r":0.9}}"#).unwrap();
    let ArchConfig::TwoStepAe(c) = a.clone() else {
        panic!()
    };
    assert_eq!(c.head, ClipHead::Gwrp { r: 0.9 });
    let back: ArchConfig = serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
    assert_eq!(back, a);
    for bad in [
        r#"{"name":"amn","taux":1}"#,
        r#"{"name":"two_step_ae","head":{"kind":"median"}}"#,
        r#"{"name":"two_step_ae","chanels":[1]}"#,
    ] {
        assert!(serde_json::from_str::<ArchConfig>(bad).is_err(), "{bad}");
    }
}

/// Tensor shapes and parameter counts of the paper-size defaults (64 mels; 10 classes
/// for AMN as URBAN-SED, 41 for 2APAE as its DCASE 2018 task 2 events).
#[test]
fn default_sizes_and_parameter_counts() {
    let count = |t: &[(String, Vec<usize>)]| -> usize {
        t.iter()
            .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    };
    let amn = expected_tensors(&ArchConfig::Amn(AmnConfig::default()), 64, 10).unwrap();
    let shapes: HashMap<_, _> = amn.iter().cloned().collect();
    assert_eq!(shapes["affinity.half.proj.weight"], vec![10, 32, 1, 1]);
    assert_eq!(shapes["affinity.quarter.proj.weight"], vec![10, 128, 1, 1]);
    assert_eq!(shapes["gru.fwd.weight_ih_l0"], vec![384, 128]);
    assert_eq!(shapes["out.weight"], vec![10, 256]);
    // Conv blocks: BN(1) + 1·32·9, BN(32) + 32·128·9, BN(128) + 128·128·9;
    // projections 320 + 1280; BiGRU 2·(384·128·2 + 2·384); Linear 256·10 + 10.
    let want_amn = (2 + 288)
        + (64 + 36_864)
        + (256 + 147_456)
        + 320
        + 1280
        + 2 * (384 * 128 * 2 + 2 * 384)
        + 2570;
    assert_eq!(count(&amn), want_amn);

    let ae = expected_tensors(&ArchConfig::TwoStepAe(TwoStepAeConfig::default()), 64, 41).unwrap();
    let shapes: HashMap<_, _> = ae.iter().cloned().collect();
    assert_eq!(
        shapes["encoder.3.units.1.conv.weight"],
        vec![256, 256, 3, 3]
    );
    assert_eq!(shapes["class_conv.weight"], vec![41, 256, 1, 1]);
    assert_eq!(shapes["head.freq.att.weight"], vec![64, 64]);
    assert_eq!(shapes["head.time.cla.weight"], vec![41, 41]);
    assert_eq!(
        shapes["decoder.blocks.0.units.0.conv.weight"],
        vec![128, 256, 3, 3]
    );
    assert_eq!(shapes["decoder.out.1.weight"], vec![1, 1, 3, 3]);
    let vgg = |cin: usize, cout: usize| cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout;
    let want_ae = vgg(1, 32)
        + vgg(32, 64)
        + vgg(64, 128)
        + vgg(128, 256)
        + (256 * 41 + 41)
        + 2 * (64 * 64 + 64)
        + 2 * (41 * 41 + 41)
        + vgg(256, 128)
        + vgg(128, 64)
        + vgg(64, 32)
        + (32 * 9 + 2)
        + (9 + 1);
    assert_eq!(count(&ae), want_ae);
    eprintln!("parameters: amn {want_amn}, two_step_ae {want_ae}");
}
