//! Inference speed of the default-size `atp_sedb` (paper 001) and `context_attention`
//! (paper 002) networks through the `Scorer` trait, as the daemon's model thread calls
//! them: one 10 s window (500 frames × 64 mels) and one 1 s window (50 frames), 10
//! classes. Run with `cargo bench --bench zoo_b` (release build).
//!
//! The models have seeded random weights: speed does not depend on the values.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hark::detect::postprocess::PostprocessConfig;
use hark::detect::streaming::StreamingConfig;
use hark::features::FeatureConfig;
use hark::model::arch::{ArchConfig, AtpSedbConfig, ContextAttentionConfig};
use hark::model::meta::FORMAT_VERSION;
use hark::model::{Model, ModelMeta, Scorer};

fn model(arch: ArchConfig, n_classes: usize) -> Model {
    let meta = ModelMeta {
        format_version: FORMAT_VERSION,
        name: format!("bench-{}-random", arch.name()),
        arch,
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
    let frames: Vec<f32> = (0..500 * 64)
        .map(|i| (i as f32 * 0.013).sin() * 4.0 - 6.0)
        .collect();
    let mut out = Vec::with_capacity(500 * 10);
    for arch in [
        ArchConfig::AtpSedb(AtpSedbConfig::default()),
        ArchConfig::ContextAttention(ContextAttentionConfig::default()),
    ] {
        let name = arch.name();
        let mut model = model(arch, 10);
        for n in [500usize, 50] {
            c.bench_function(&format!("{name}_score_{n}_frames"), |b| {
                b.iter(|| {
                    model
                        .score(black_box(&frames[..n * 64]), n, &mut out)
                        .expect("score");
                    black_box(&out);
                })
            });
        }
    }
}

criterion_group!(benches, bench_score);
criterion_main!(benches);
