//! hark's side of the side-by-side comparison with PyTorch and librosa
//! (`benches/compare/run.sh` runs it; not a criterion bench).
//!
//! ```text
//! cargo bench --bench compare_hark -- MODELS_DIR OUT.json [REPS]
//! ```
//! For every `MODELS_DIR/<name>.safetensors` (hark model files, e.g. from `hark model
//! init`) it times inference through the daemon's `Scorer` path on a 10 s clip (500
//! frames) and on the model's streaming window, and writes
//! `MODELS_DIR/<name>.hark_io.safetensors` (the 500-frame input and hark's frame
//! scores) so the comparison script can check that the PyTorch twin loaded the same
//! model. It also times log-mel of 60 s of 16 kHz audio and one training step (batch
//! 16 × 500 frames, clip + frame BCE, gradient clipping, AdamW) of the CDur-size CRNN
//! and AMN. Medians of `REPS` runs (default 20; 5 for training) after a warm-up, in
//! milliseconds, as JSON. Threads: `RAYON_NUM_THREADS` (candle's setting).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use hark::features::{logmel, FeatureConfig};
use hark::model::arch::ArchConfig;
use hark::model::{Model, Scorer};
use hark::train::trainer::{train_step, LossConfig};

/// Median of `reps` timed runs of `f` (after one warm-up run), in milliseconds.
fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// The deterministic log-mel input the twin also reads: `(n, n_mels)` row-major.
fn frames(n: usize, n_mels: usize) -> Vec<f32> {
    (0..n * n_mels)
        .map(|i| ((i as f32) * 0.013).sin() * 2.0 - 4.0 + ((i * 7919) % 113) as f32 / 113.0)
        .collect()
}

/// A deterministic test signal: a tone plus a noise-like term.
fn signal(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (i as f32 * 0.013).sin() * 0.3
                + ((i.wrapping_mul(2_654_435_761) % 1000) as f32 / 5000.0)
        })
        .collect()
}

mod common;
use common::train_setup;

fn model_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .expect("models dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.strip_suffix(".safetensors")?;
            (!name.contains('.')).then(|| (name.to_string(), p.clone()))
        })
        .collect();
    v.sort();
    v
}

fn main() {
    hark::model::tune_allocator();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(dir), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: compare_hark MODELS_DIR OUT.json [REPS]");
        std::process::exit(2);
    };
    let reps: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(20);
    let dir = Path::new(dir);
    let mut results = serde_json::Map::new();
    results.insert(
        "threads".into(),
        std::env::var("RAYON_NUM_THREADS")
            .unwrap_or_else(|_| "default".into())
            .into(),
    );

    let cfg = FeatureConfig::default();
    let x60 = signal(60 * cfg.sample_rate as usize);
    let ms = median_ms(reps, || {
        std::hint::black_box(logmel(&cfg, &x60).expect("logmel"));
    });
    eprintln!("logmel 60 s: {ms:.2} ms");
    results.insert("logmel_60s".into(), ms.into());
    let mut reused = Vec::new();
    let ms = median_ms(reps, || {
        hark::features::logmel_parallel_into(&cfg, &x60, &mut reused).expect("logmel");
    });
    eprintln!("logmel 60 s, split across threads: {ms:.2} ms");
    results.insert("logmel_60s_parallel".into(), ms.into());
    for (name, path) in model_files(dir) {
        let mut model = Model::load(&path).expect("model file");
        let n_mels = model.meta().features.n_mels;
        let window = model.meta().streaming.window_frames.max(model.min_frames());
        let x = frames(500, n_mels);
        let mut scores = Vec::new();
        let clip = median_ms(reps, || {
            model.score(&x, 500, &mut scores).expect("score");
        });
        let io: HashMap<String, Tensor> = HashMap::from([
            (
                "input".to_string(),
                Tensor::from_slice(&x, (1, 500, n_mels), &Device::Cpu).expect("tensor"),
            ),
            (
                "frame".to_string(),
                Tensor::from_slice(&scores, (1, 500, model.n_classes()), &Device::Cpu)
                    .expect("tensor"),
            ),
        ]);
        candle_core::safetensors::save(&io, dir.join(format!("{name}.hark_io.safetensors")))
            .expect("write io");
        let xw = &x[..window * n_mels];
        let win = median_ms(reps * 5, || {
            model.score(xw, window, &mut scores).expect("score");
        });
        eprintln!("{name}: 10 s clip {clip:.2} ms, window of {window} frames {win:.3} ms");
        results.insert(format!("infer_clip/{name}"), clip.into());
        results.insert(format!("infer_window/{name}"), win.into());
        results.insert(format!("window_frames/{name}"), window.into());
    }

    for arch in ["crnn", "amn"] {
        let a: ArchConfig =
            serde_json::from_str(&format!(r#"{{"name":"{arch}"}}"#)).expect("arch json");
        let (net, mut opt, batch) = train_setup(&a);
        let lc = LossConfig::default();
        let ms = median_ms(reps.min(5), || {
            train_step(net.as_ref(), &batch, &mut opt, &lc, 5.0).expect("train step");
        });
        eprintln!("{arch} train step: {ms:.0} ms");
        results.insert(format!("train_step/{arch}"), ms.into());
    }
    std::fs::write(
        out,
        serde_json::to_string_pretty(&serde_json::Value::Object(results)).expect("json"),
    )
    .expect("write json");
}
