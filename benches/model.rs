//! Inference speed of the default-size CDur CRNN through the `Scorer` trait, as the
//! daemon's model thread calls it: one 10 s window (500 frames × 64 mels) and one
//! 1 s window (50 frames). Run with `cargo bench --bench model` (release build).
//!
//! The model has seeded random weights: speed does not depend on the values.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hark::detect::postprocess::PostprocessConfig;
use hark::detect::streaming::StreamingConfig;
use hark::features::FeatureConfig;
use hark::model::arch::ArchConfig;
use hark::model::meta::FORMAT_VERSION;
use hark::model::{Model, ModelMeta, Scorer};

fn cdur(n_classes: usize) -> Model {
    let meta = ModelMeta {
        format_version: FORMAT_VERSION,
        name: "bench-cdur-random".into(),
        arch: ArchConfig::default(),
        features: FeatureConfig::default(),
        classes: (0..n_classes).map(|i| format!("class{i}")).collect(),
        postprocess: PostprocessConfig::default(),
        streaming: StreamingConfig {
            window_frames: 500,
            hop_frames: 250,
            lookahead_frames: None,
        },
        training: serde_json::Value::Null,
    };
    Model::init_random(meta, 1).expect("valid bench model")
}

fn bench_score(c: &mut Criterion) {
    // As the daemon does at start (see `hark::model::tune_allocator`).
    hark::model::tune_allocator();
    let mut model = cdur(10);
    let frames: Vec<f32> = (0..500 * 64)
        .map(|i| (i as f32 * 0.013).sin() * 4.0 - 6.0)
        .collect();
    let mut out = Vec::with_capacity(500 * 10);
    for n in [500usize, 50] {
        c.bench_function(&format!("crnn_score_{n}_frames"), |b| {
            b.iter(|| {
                model
                    .score(black_box(&frames[..n * 64]), n, &mut out)
                    .expect("score");
                black_box(&out);
            })
        });
    }
}

criterion_group!(benches, bench_score);
criterion_main!(benches);
