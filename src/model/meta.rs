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

impl ModelMeta {
    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }

    /// Checks the metadata as a whole: format version, front end, classes (non-empty,
    /// unique, no control characters), post-processing, streaming geometry, and the
    /// architecture's parameters. The error names the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.format_version == 0 || self.format_version > FORMAT_VERSION {
            return Err(format!(
                "format_version = {} is not supported: this build reads 1..={FORMAT_VERSION} \
                 (a newer hark wrote this file?)",
                self.format_version
            ));
        }
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        self.features
            .validate()
            .map_err(|e| format!("features: {e}"))?;
        if self.classes.is_empty() {
            return Err("classes is empty: a model needs at least one class".into());
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.trim().is_empty() || c.chars().any(char::is_control) {
                return Err(format!(
                    "classes[{i}] = {c:?}: expected a non-empty label without control characters"
                ));
            }
            if self.classes[..i].contains(c) {
                return Err(format!("classes[{i}] = {c:?} appears twice"));
            }
        }
        self.postprocess
            .resolve(&self.classes)
            .map_err(|e| format!("postprocess: {e}"))?;
        self.streaming.validate()?;
        self.arch
            .validate(self.features.n_mels, self.classes.len())
            .map_err(|e| format!("arch: {e}"))?;
        let min = self.arch.min_frames();
        if self.streaming.window_frames < min {
            return Err(format!(
                "streaming.window_frames = {} is below the {} architecture's minimum of {min} frames",
                self.streaming.window_frames,
                self.arch.name()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid metadata record for tests.
    pub(crate) fn sample() -> ModelMeta {
        ModelMeta {
            format_version: FORMAT_VERSION,
            name: "test-crnn".into(),
            arch: ArchConfig::default(),
            features: FeatureConfig::default(),
            classes: vec!["dog".into(), "speech".into()],
            postprocess: PostprocessConfig::default(),
            streaming: StreamingConfig {
                window_frames: 500,
                hop_frames: 250,
                lookahead_frames: None,
            },
            training: serde_json::Value::Null,
        }
    }

    #[test]
    fn sample_is_valid_and_round_trips_through_json() {
        let m = sample();
        m.validate().unwrap();
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ModelMeta>(&j).unwrap(), m);
    }

    #[test]
    fn each_bad_field_is_named() {
        type Edit = Box<dyn Fn(&mut ModelMeta)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|m| m.format_version = FORMAT_VERSION + 1),
                "format_version",
            ),
            (Box::new(|m| m.classes.clear()), "classes is empty"),
            (Box::new(|m| m.classes.push("dog".into())), "classes[2]"),
            (Box::new(|m| m.classes[1] = "a\tb".into()), "classes[1]"),
            (Box::new(|m| m.features.n_mels = 32), "arch"),
            (Box::new(|m| m.features.fmax = 1e6), "features"),
            (Box::new(|m| m.streaming.window_frames = 3), "window_frames"),
            (Box::new(|m| m.streaming.hop_frames = 0), "hop_frames"),
            (Box::new(|m| m.postprocess.default.on = 2.0), "postprocess"),
        ];
        for (edit, want) in cases {
            let mut m = sample();
            edit(&mut m);
            let e = m.validate().unwrap_err();
            assert!(e.contains(want), "expected {want:?} in {e:?}");
        }
    }
}
