//! Model file (skeleton; the model helper replaces this file).
use std::path::Path;

use super::{ModelError, ModelMeta, Scorer};

/// A loaded model.
pub struct Model {
    /// Its metadata.
    pub meta: ModelMeta,
}

impl Model {
    /// Loads a model file.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        Err(ModelError::Format {
            path: path.to_path_buf(),
            reason: "skeleton".into(),
        })
    }
}

impl Scorer for Model {
    fn n_classes(&self) -> usize {
        self.meta.classes.len()
    }
    fn n_mels(&self) -> usize {
        self.meta.features.n_mels
    }
    fn min_frames(&self) -> usize {
        1
    }
    fn score(&mut self, _: &[f32], _: usize, _: &mut Vec<f32>) -> Result<(), ModelError> {
        Err(ModelError::Input("skeleton".into()))
    }
}
