//! One training step of the CDur-size CRNN (batch 16 × 500 frames × 64 mels, 10
//! classes): forward, forward + backward, and the full step (losses, backward,
//! clipping, AdamW), as `hark train` runs it. The PyTorch twin of the same step is
//! `benches/compare/train_step_torch.py`.
//!
//! `cargo bench --bench train_step` for criterion's statistics. For a quick phase
//! breakdown without criterion, run the bench binary with `HARK_TRAIN_STEPS=N`
//! (e.g. the dev-profile build from `cargo test --bench train_step --no-run`) and
//! optionally `HARK_TRAIN_ARCH='{"name":"amn"}'` for another architecture.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, Criterion};
use hark::model::arch::ArchConfig;
use hark::train::trainer::{batch_loss, train_step, LossConfig};

mod common;
use common::{train_setup as setup, B, F, T};

fn bench(c: &mut Criterion) {
    hark::model::tune_allocator();
    let (net, mut opt, batch) = setup(&ArchConfig::default());
    let lc = LossConfig::default();
    let mut g = c.benchmark_group("crnn_train_b16_t500");
    g.sample_size(10);
    g.bench_function("forward_train", |b| {
        b.iter(|| net.forward_t(&batch.x, true).expect("forward"))
    });
    g.bench_function("forward_backward", |b| {
        b.iter(|| {
            let out = net.forward_t(&batch.x, true).expect("forward");
            let (l, _) = batch_loss(&out, &batch, &lc).expect("loss");
            l.backward().expect("backward")
        })
    });
    g.bench_function("step", |b| {
        b.iter(|| train_step(net.as_ref(), &batch, &mut opt, &lc, 5.0).expect("step"))
    });
    g.finish();
}

/// Phase breakdown over `n` steps of `arch` (default: the CDur-size CRNN), printed to
/// stderr.
fn quick(n: usize, arch: &ArchConfig) {
    hark::model::tune_allocator();
    let (net, mut opt, batch) = setup(arch);
    let lc = LossConfig::default();
    let _ = train_step(net.as_ref(), &batch, &mut opt, &lc, 5.0).expect("warm-up");
    let (mut fw, mut bw, mut st) = (0.0, 0.0, 0.0);
    for _ in 0..n {
        let t0 = Instant::now();
        let out = net.forward_t(&batch.x, true).expect("forward");
        let (l, _) = batch_loss(&out, &batch, &lc).expect("loss");
        let _: f32 = l.to_scalar().expect("scalar");
        let t1 = Instant::now();
        let grads = l.backward().expect("backward");
        let t2 = Instant::now();
        opt.step(&grads).expect("adamw");
        let _ = Tensor::zeros(1, DType::F32, &Device::Cpu);
        let t3 = Instant::now();
        fw += (t1 - t0).as_secs_f64();
        bw += (t2 - t1).as_secs_f64();
        st += (t3 - t2).as_secs_f64();
    }
    let k = n as f64;
    eprintln!(
        "candle {} train step (B={B}, T={T}, F={F}): forward+loss {:.3} s, backward {:.3} s, \
         AdamW {:.3} s, total {:.3} s/step over {n} steps",
        arch.name(),
        fw / k,
        bw / k,
        st / k,
        (fw + bw + st) / k
    );
}

criterion_group!(benches, bench);

fn main() {
    if let Some(n) = std::env::var("HARK_TRAIN_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // HARK_TRAIN_ARCH: an architecture as JSON, e.g. {"name":"atp_sedb"}.
        let arch = match std::env::var("HARK_TRAIN_ARCH") {
            Ok(j) => serde_json::from_str(&j).expect("HARK_TRAIN_ARCH is an ArchConfig JSON"),
            Err(_) => ArchConfig::default(),
        };
        quick(n, &arch);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
