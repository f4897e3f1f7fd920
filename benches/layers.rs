//! Each layer of the CDur-size CRNN on its own, in inference (the fused kernels) and
//! in training (forward + backward through the hand-written operations), plus the
//! post-processing and end-to-end offline detection of 60 s of audio with the
//! shipped model. Run with `cargo bench --bench layers` (release build).
//!
//! Shapes are those of a training batch (16 clips × 10 s) or of one streaming window
//! (1 × 2 s) at the CRNN's resolutions. Weights and inputs are seeded.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use hark::detect::postprocess::Detector;
use hark::model::layers::{seeded_var_builder, BatchNorm, BiGru, ConvBlock, LpPool2d};
use hark::model::Model;
use hark::pipeline::OfflineDetector;

fn input(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu).expect("input")
}

/// The layers of one benchmark: trainable (weights are variables, the training
/// path) and frozen (plain tensors, as loaded from a model file: the fused kernels).
struct Layers {
    block: ConvBlock,
    bn: BatchNorm,
    gru: BiGru,
}

fn layers(vb: VarBuilder) -> Layers {
    Layers {
        // CDur's second block: 32 → 128 channels at (T/2, F/4).
        block: ConvBlock::new(32, 128, 3, 0.1, vb.pp("block")).expect("block"),
        bn: BatchNorm::new(128, vb.pp("bn")).expect("bn"),
        gru: BiGru::new(128, 128, vb.pp("gru")).expect("gru"),
    }
}

/// Times `f` in inference (frozen layers, plain input) and, with the trainable
/// layers and the input as a variable, forward + backward.
fn both(
    c: &mut Criterion,
    name: &str,
    x: &Tensor,
    (frozen, trainable): (&Layers, &Layers),
    f: impl Fn(&Layers, &Tensor, bool) -> Tensor,
) {
    c.bench_function(&format!("{name}_inference"), |b| {
        b.iter(|| black_box(f(frozen, x, false)))
    });
    let v = Var::from_tensor(x).expect("var");
    c.bench_function(&format!("{name}_forward_backward"), |b| {
        b.iter(|| {
            let y = f(trainable, v.as_tensor(), true);
            black_box(y.sum_all().and_then(|s| s.backward()).expect("backward"))
        })
    });
}

fn bench_layers(c: &mut Criterion) {
    hark::model::tune_allocator();
    let map = VarMap::new();
    let trainable = layers(seeded_var_builder(&map, 1, DType::F32, &Device::Cpu));
    let plain: HashMap<String, Tensor> = map
        .data()
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    let frozen = layers(VarBuilder::from_tensors(plain, DType::F32, &Device::Cpu));
    let ls = (&frozen, &trainable);
    let pool = LpPool2d::new(4.0, 2, 4);
    for (tag, b, t) in [("batch16x10s", 16, 250), ("window2s", 1, 50)] {
        let x = input(&[b, 32, t, 16], 1);
        both(c, &format!("conv_block_{tag}"), &x, ls, |l, x, train| {
            l.block.forward_t(x, train).expect("block")
        });
        let y = input(&[b, 128, t, 16], 2);
        both(c, &format!("batch_norm_{tag}"), &y, ls, |l, x, train| {
            l.bn.forward_t(x, train).expect("bn")
        });
        both(c, &format!("lp_pool_{tag}"), &y, ls, |_, x, _| {
            pool.forward(x).expect("pool")
        });
        let s = input(&[b, t / 2, 128], 3);
        both(c, &format!("bigru_{tag}"), &s, ls, |l, x, _| {
            l.gru.forward(x).expect("gru")
        });
    }
}

fn bench_detect(c: &mut Criterion) {
    hark::model::tune_allocator();
    let model_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/hark-crnn-s11.safetensors");
    let model = Model::load(&model_path).expect("the shipped model");
    let meta = model.meta().clone();
    // Post-processing: 1 h of frame scores (180,000 frames × 11 classes).
    let params = meta
        .postprocess
        .resolve(&meta.classes)
        .expect("post-processing");
    let scores: Vec<f32> = (0..180_000 * meta.classes.len())
        .map(|i| (((i * 7919) % 1000) as f32 / 1000.0).powi(3))
        .collect();
    c.bench_function("postprocess_1h_11_classes", |b| {
        b.iter(|| {
            let mut d = Detector::new(
                meta.classes.clone(),
                params.clone(),
                meta.features.frame_rate(),
                "bench".into(),
            );
            let mut out = Vec::new();
            for f in scores.chunks_exact(meta.classes.len()) {
                d.push_frame(f, &mut out);
            }
            d.finish(&mut out);
            black_box(out.len())
        })
    });
    // End to end: decode, resample, log-mel, streaming model, post-processing.
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("60s.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).expect("wav");
    for i in 0..60 * 16_000u32 {
        let t = i as f32 / 16_000.0;
        let v = 0.3 * (t * 440.0 * std::f32::consts::TAU).sin() * ((t * 0.7).sin().abs());
        w.write_sample((v * 32767.0) as i16).expect("sample");
    }
    w.finalize().expect("wav");
    let mut det = OfflineDetector::new(model, &meta.postprocess).expect("detector");
    let mut g = c.benchmark_group("detect");
    g.sample_size(10);
    g.bench_function("detect_60s_shipped_model", |b| {
        b.iter(|| black_box(det.detect_file(&wav, false).expect("detect").events.len()))
    });
    g.finish();
}

criterion_group!(benches, bench_layers, bench_detect);
criterion_main!(benches);
