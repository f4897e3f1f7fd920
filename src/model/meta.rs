//! The `hark.model` JSON metadata stored in every model file (design §4).

use serde::{Deserialize, Serialize};

use crate::detect::postprocess::PostprocessConfig;
use crate::detect::streaming::StreamingConfig;
use crate::features::FeatureConfig;
use crate::model::arch::ArchConfig;

/// Version of the metadata layout this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Everything needed to rebuild and run a model, besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    /// Layout version of this JSON; files newer than [`FORMAT_VERSION`] are refused.
    pub format_version: u32,
    /// Short human name of the model (e.g. `hark-crnn-11`).
    pub name: String,
    /// Architecture name and its parameters.
    pub arch: ArchConfig,
    /// Front-end settings the model was trained with.
    pub features: FeatureConfig,
    /// Class labels, in output order.
    pub classes: Vec<String>,
    /// Per-class post-processing (thresholds, median, durations).
    pub postprocess: PostprocessConfig,
    /// Sliding-window geometry for streaming inference.
    pub streaming: StreamingConfig,
    /// Free-form record of how the model was trained (data, epochs, metrics).
    #[serde(default)]
    pub training: serde_json::Value,
}
