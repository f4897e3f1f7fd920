//! Neural SED models on candle: shared layers, one file per architecture, and the
//! model file (safetensors + JSON metadata).
//!
//! The same constructors build a model for training (`VarMap`) and for inference
//! (weights from the model file), so the two cannot drift apart.

use std::path::PathBuf;

pub mod arch;
pub mod file;
pub mod layers;
pub mod meta;

pub use file::Model;
pub use meta::ModelMeta;

/// Errors of model construction, loading, saving and inference.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The model file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file.
    #[error("{path}: not a valid safetensors model file: {reason}")]
    Format {
        /// The model file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The `hark.model` metadata is missing, not JSON, or has a bad field.
    #[error("{path}: bad model metadata: {reason}")]
    Metadata {
        /// The model file.
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// A tensor the architecture needs is absent from the file.
    #[error("{path}: missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor {
        /// The model file.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// The shape the architecture expects.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape or dtype.
    #[error("{path}: tensor `{name}` is {found}, expected {expected}")]
    TensorMismatch {
        /// The model file.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Expected shape/dtype, formatted.
        expected: String,
        /// Found shape/dtype, formatted.
        found: String,
    },
    /// The file holds a tensor the architecture does not have.
    #[error("{path}: unexpected tensor `{name}`: the architecture has no such tensor")]
    UnexpectedTensor {
        /// The model file.
        path: PathBuf,
        /// Tensor name.
        name: String,
    },
    /// Metadata given in memory (not read from a file) is invalid.
    #[error("invalid model metadata: {0}")]
    InvalidMeta(String),
    /// The input given to the model does not fit it.
    #[error("bad model input: {0}")]
    Input(String),
    /// An invalid architecture parameter.
    #[error("invalid architecture parameter `{field}` = {value}: expected {expected}")]
    InvalidArch {
        /// Parameter name.
        field: String,
        /// The value found.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// An error from candle.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Turns windows of log-mel frames into frame-level class probabilities.
///
/// The streaming runner of `detect` drives any `Scorer`; [`Model`] is the real one.
pub trait Scorer: Send {
    /// Number of classes (columns of the output).
    fn n_classes(&self) -> usize;
    /// Number of mel bands each input frame must have.
    fn n_mels(&self) -> usize;
    /// Fewest frames one call accepts; shorter inputs are padded by the caller.
    fn min_frames(&self) -> usize;
    /// Scores `n_frames` frames given row-major as `(n_frames, n_mels)` in `frames`.
    /// `out` is cleared and filled row-major with `(n_frames, n_classes)` probabilities.
    fn score(
        &mut self,
        frames: &[f32],
        n_frames: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), ModelError>;
}

/// Tunes glibc's allocator for candle inference and training: freed large blocks stay
/// in the heap instead of being unmapped (`M_MMAP_MAX = 0`, trimming off with
/// `M_TRIM_THRESHOLD = -1`, `M_TOP_PAD` large), so the next call's temporaries (e.g.
/// the 18 MB im2col matrix of a 10 s CRNN window) do not page-fault afresh, each page
/// cleared again by the kernel. Measured on a shared 2-core machine: the 128→128
/// convolution of the CRNN went from ~106 ms to ~43 ms. A threshold of `i32::MAX`
/// (2 GiB) was not enough for training: a 2APAE step frees several GiB at its end,
/// the heap was trimmed, and the next step faulted it back in (~2 GB of page faults a
/// step, a quarter of its time); with trimming off an eighth-width 2APAE step went
/// from 18.9 s to 14.0 s (batch 16 × 10 s, one thread). The cost is that the resident
/// size stays at its peak.
///
/// Call once at program start, before other threads allocate. Returns whether every
/// setting was applied (always `false` off glibc).
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator parameters, guarded by the
        // allocator's own lock; it has no memory-safety preconditions.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1
                && libc::mallopt(libc::M_TOP_PAD, 256 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod allocator_tests {
    #[test]
    fn glibc_accepts_every_allocator_setting() {
        // In particular `M_TRIM_THRESHOLD = -1`, glibc's value for "never trim".
        assert!(super::tune_allocator());
    }
}
