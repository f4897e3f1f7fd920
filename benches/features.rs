//! Speed of the log-mel front end (criterion; not run in CI).
//!
//! `logmel_60s_default`: hark's default setting on 60 s of 16 kHz audio (3001 frames),
//! the number to compare with librosa (`librosa.feature.melspectrogram` + `np.log` on
//! the same signal took ~17.5 ms on the 2-vCPU build machine; the goal is ≤ 0.2× that).
//! `logmel_60s_parallel`: the same split across rayon's threads (`RAYON_NUM_THREADS`).
//! `frontend_push_1s`: the streaming path the daemon runs, 1 s per call, no allocation.
//! `realfft_1024`: the FFT alone, the floor of the per-frame cost.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hark::features::{logmel, logmel_parallel_into, n_frames, FeatureConfig, Frontend};
use realfft::RealFftPlanner;

/// A deterministic test signal: a tone plus a noise-like term.
fn signal(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (i as f32 * 0.013).sin() * 0.3
                + ((i.wrapping_mul(2_654_435_761) % 1000) as f32 / 5000.0)
        })
        .collect()
}

fn bench_features(c: &mut Criterion) {
    let cfg = FeatureConfig::default();
    let x60 = signal(60 * cfg.sample_rate as usize);
    c.bench_function("logmel_60s_default", |b| {
        b.iter(|| logmel(black_box(&cfg), black_box(&x60)))
    });

    let mut reused = Vec::new();
    c.bench_function("logmel_60s_parallel", |b| {
        b.iter(|| logmel_parallel_into(black_box(&cfg), black_box(&x60), &mut reused))
    });

    let x1 = signal(cfg.sample_rate as usize);
    let mut fe = Frontend::new(&cfg).expect("default config is valid");
    let mut out = Vec::with_capacity(2 * n_frames(&cfg, x1.len()) * cfg.n_mels);
    c.bench_function("frontend_push_1s", |b| {
        b.iter(|| {
            out.clear();
            fe.push(black_box(&x1), &mut out)
        })
    });

    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(cfg.n_fft);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    c.bench_function("realfft_1024", |b| {
        b.iter(|| {
            input.copy_from_slice(&x1[..cfg.n_fft]);
            fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch)
        })
    });
}

criterion_group!(benches, bench_features);
criterion_main!(benches);
