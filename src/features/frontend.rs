//! (skeleton; the features helper fills this)
use super::{FeatureConfig, FeatureError};
/// Streaming frontend (skeleton).
pub struct Frontend;
/// Offline log-mel (skeleton).
pub fn logmel(_c: &FeatureConfig, _s: &[f32]) -> Result<Vec<f32>, FeatureError> {
    Ok(Vec::new())
}
