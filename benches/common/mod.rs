//! Shared set-up of the training-step benches (`train_step`, `compare_hark`).

use candle_core::{DType, Device};
use candle_nn::VarMap;
use hark::model::arch::{self, ArchConfig};
use hark::model::layers::seeded_var_builder;
use hark::train::dataset::{Batch, Item};
use hark::train::optim::{AdamW, AdamWConfig};

/// Batch size, frames, mel bands and classes of the benched training step.
pub const B: usize = 16;
pub const T: usize = 500;
pub const F: usize = 64;
pub const C: usize = 10;

/// A network of `arch`, its optimiser and a training batch of 16 × 500 frames × 64
/// mels, 10 classes, weak + strong labels.
pub fn train_setup(arch: &ArchConfig) -> (Box<dyn arch::SedNet>, AdamW, Batch) {
    let map = VarMap::new();
    let vb = seeded_var_builder(&map, 0, DType::F32, &Device::Cpu);
    let net = arch::build(arch, F, C, vb).expect("architecture");
    let vars: Vec<_> = map
        .data()
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let opt = AdamW::new(vars, AdamWConfig::default()).expect("optimiser");
    let items: Vec<Item> = (0..B)
        .map(|k| {
            let mut strong = vec![0.0f32; T * C];
            for t in 100..300 {
                strong[t * C + k % C] = 1.0;
            }
            let mut weak = vec![0.0f32; C];
            weak[k % C] = 1.0;
            Item {
                feats: (0..T * F)
                    .map(|i| ((i * (k + 1)) as f32 * 1e-3).sin())
                    .collect(),
                n_frames: T,
                weak,
                strong: Some(strong),
                soft: None,
                scene: None,
            }
        })
        .collect();
    let batch = Batch::collate(&items, F, C, net.min_frames(), &Device::Cpu).expect("batch");
    (net, opt, batch)
}
