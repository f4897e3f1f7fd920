//! The model-file loader (`Model::load`): safetensors header, metadata JSON, tensor
//! shapes and dtypes. A model that loads must also score one streaming window.
#![no_main]

use hark::model::{Model, Scorer};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::scratch("model.safetensors", data);
    if let Ok(mut m) = Model::load(&path) {
        let n_frames = m.meta().streaming.window_frames;
        let n_mels = m.n_mels();
        // Keep each run small: skip absurd (but valid) geometries.
        if n_frames * n_mels > 1 << 16 {
            return;
        }
        let x = vec![-4.0f32; n_frames * n_mels];
        let mut out = vec![0.0f32; n_frames * m.meta().classes.len()];
        if m.score(&x, n_frames, &mut out).is_ok() {
            assert!(out.iter().all(|s| s.is_finite()));
        }
    }
});
