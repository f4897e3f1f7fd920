//! The offline trainer (`hark train`, `hark tune`, `hark synth`): datasets with weak,
//! strong and soft labels and a feature cache, soundscape synthesis, augmentation, a
//! balanced sampler, the training losses, AdamW with ReduceLROnPlateau, the training
//! loop over any [`crate::model::arch::SedNet`], and per-class threshold tuning.

use std::path::PathBuf;

pub mod augment;
pub mod dataset;
pub mod loss;
pub mod optim;
pub mod sampler;
pub mod synth;
pub mod thresholds;
pub mod trainer;

pub use dataset::{DataConfig, Dataset, SplitConfig};
pub use synth::{synthesize, SynthConfig, SynthSummary};
pub use thresholds::{tune, TuneConfig, TuneReport};
pub use trainer::{train, EpochSummary, TrainConfig, TrainReport};

/// Errors of datasets, synthesis, training and tuning. Each names the file, field or
/// value at fault and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A config file is not valid TOML for its schema (unknown key, wrong type).
    #[error("{path}: {reason}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// A config value is out of range or inconsistent.
    #[error("invalid setting `{field}` = {value}: expected {expected}")]
    Invalid {
        /// The setting, e.g. `optim.lr`.
        field: String,
        /// The value found.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A metadata TSV line is malformed.
    #[error("{path}:{line}: {reason}")]
    Metadata {
        /// The TSV file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A label in the metadata is not one of the configured classes.
    #[error("{path}:{line}: label `{label}` is not in the class list {classes:?}")]
    UnknownLabel {
        /// The TSV file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The label found.
        label: String,
        /// The configured classes.
        classes: Vec<String>,
    },
    /// A dataset split has no clips.
    #[error("{what} is empty: {reason}")]
    Empty {
        /// Which split or folder.
        what: String,
        /// Why (e.g. no metadata rows, no audio).
        reason: String,
    },
    /// Audio could not be decoded or resampled.
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    /// Features could not be computed.
    #[error(transparent)]
    Features(#[from] crate::features::FeatureError),
    /// The model could not be built, loaded or saved.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// Evaluation failed.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// A tensor computation failed.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// `TrainError::Io` for `path`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `TrainError::Invalid` shorthand.
pub(crate) fn invalid(field: &str, value: impl std::fmt::Display, expected: &str) -> TrainError {
    TrainError::Invalid {
        field: field.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}
