//! Helpers of the PyTorch golden tests of the model zoo.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::Tensor;

/// Folder of the golden model files written by `scripts/golden_*.py`.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/model")
}

/// Largest absolute difference between two tensors of the same shape.
pub fn tensor_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .unwrap()
}

/// Largest absolute difference between two slices of the same length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
