//! Architectures: one file each, composed only from `model::layers`.

use serde::{Deserialize, Serialize};

pub mod crnn;

pub use crnn::CrnnConfig;

/// Architecture name and parameters, as stored in the model file (`arch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum ArchConfig {
    /// CDur-style CRNN baseline.
    Crnn(CrnnConfig),
}
