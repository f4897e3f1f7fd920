//! Architectures: one file each, composed only from `model::layers`.
//!
//! Every architecture implements [`SedNet`]: log-mel frames `(B, T, F)` in, frame
//! probabilities at the input frame rate and clip probabilities out. [`build`] makes one
//! from its [`ArchConfig`] (as stored in the model file) and a `VarBuilder`, so the
//! same call builds a network for training (`VarMap`) or inference (model file).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::layers::{ShapeRecorder, TimeMask};
use super::ModelError;

pub mod amn;
pub mod atp_sedb;
pub mod context_attention;
pub mod crnn;
pub mod two_step_ae;

pub use amn::{AmSwitch, Amn, AmnConfig};
pub use atp_sedb::{AtpBlock, AtpSedb, AtpSedbConfig};
pub use context_attention::{ContextAttention, ContextAttentionConfig, EncoderConfig};
pub use crnn::{Crnn, CrnnBlock, CrnnConfig, PoolSize};
pub use two_step_ae::{ClipHead, TwoStepAe, TwoStepAeConfig};

/// Architecture name and parameters, as stored in the model file (`arch`):
/// `{"name": "crnn", ...params}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum ArchConfig {
    /// CDur-style CRNN baseline.
    Crnn(CrnnConfig),
    /// Affinity mixup network (paper 000).
    Amn(AmnConfig),
    /// Two-step attention pooling with an autoencoder (2APAE, paper 003).
    TwoStepAe(TwoStepAeConfig),
    /// CNN encoder with ATP, SEDB and IFD projection heads (paper 001).
    AtpSedb(AtpSedbConfig),
    /// Local/global CRNNs with additive context attention (paper 002).
    ContextAttention(ContextAttentionConfig),
}

impl Default for ArchConfig {
    /// The CDur-size CRNN.
    fn default() -> Self {
        ArchConfig::Crnn(CrnnConfig::default())
    }
}

impl ArchConfig {
    /// The architecture's name as written in the model file.
    pub fn name(&self) -> &'static str {
        match self {
            ArchConfig::Crnn(_) => "crnn",
            ArchConfig::Amn(_) => "amn",
            ArchConfig::TwoStepAe(_) => "two_step_ae",
            ArchConfig::AtpSedb(_) => "atp_sedb",
            ArchConfig::ContextAttention(_) => "context_attention",
        }
    }

    /// Checks the parameters for `n_mels` input bands and `n_classes` outputs; the
    /// error names the first bad parameter.
    pub fn validate(&self, n_mels: usize, n_classes: usize) -> Result<(), ModelError> {
        match self {
            ArchConfig::Crnn(c) => c.validate(n_mels, n_classes),
            ArchConfig::Amn(c) => c.validate(n_mels, n_classes),
            ArchConfig::TwoStepAe(c) => c.validate(n_mels, n_classes),
            ArchConfig::AtpSedb(c) => c.validate(n_mels, n_classes),
            ArchConfig::ContextAttention(c) => c.validate(n_mels, n_classes),
        }
    }

    /// One-line human description of the architecture and its parameters.
    pub fn summary(&self) -> String {
        match self {
            ArchConfig::Crnn(c) => c.summary(),
            ArchConfig::Amn(c) => c.summary(),
            ArchConfig::TwoStepAe(c) => c.summary(),
            ArchConfig::AtpSedb(c) => c.summary(),
            ArchConfig::ContextAttention(c) => c.summary(),
        }
    }

    /// Fewest input frames for which no pooling produces zero frames.
    pub fn min_frames(&self) -> usize {
        match self {
            ArchConfig::Crnn(c) => c.min_frames(),
            ArchConfig::Amn(c) => c.min_frames(),
            ArchConfig::TwoStepAe(c) => c.min_frames(),
            ArchConfig::AtpSedb(c) => c.min_frames(),
            ArchConfig::ContextAttention(c) => c.min_frames(),
        }
    }
}

/// Checks the parameters every conv-recurrent architecture shares: an odd kernel
/// size, the LP-pool exponent and the LeakyReLU slope; errors name `<prefix>.<field>`.
pub(crate) fn check_conv_params(
    prefix: &str,
    kernel: usize,
    lp_p: f64,
    leaky_slope: f64,
) -> Result<(), ModelError> {
    let bad = |field: &str, value: String, expected: &str| {
        Err(ModelError::InvalidArch {
            field: format!("{prefix}.{field}"),
            value,
            expected: expected.to_string(),
        })
    };
    if kernel % 2 == 0 || kernel > 15 {
        return bad("kernel", kernel.to_string(), "an odd size 1..=15");
    }
    if !(lp_p.is_finite() && (1.0..=64.0).contains(&lp_p)) {
        return bad("lp_p", lp_p.to_string(), "a number in 1..=64");
    }
    if !(leaky_slope.is_finite() && (0.0..=1.0).contains(&leaky_slope)) {
        return bad("leaky_slope", leaky_slope.to_string(), "a slope in 0..=1");
    }
    Ok(())
}

/// Checks a network's input `x (B, T, F)` and its `mask`: `n_mels` bands, at least
/// `min_frames` frames, and every clip at least `min_frames` valid frames (`name` is
/// the architecture's name in the message).
pub(crate) fn check_input(
    name: &str,
    x: &Tensor,
    mask: &TimeMask,
    n_mels: usize,
    min_frames: usize,
) -> candle_core::Result<()> {
    let (b, t, f) = x.dims3()?;
    if f != n_mels || t < min_frames {
        candle_core::bail!(
            "{name} input is (batch, {t} frames, {f} mels); it needs {n_mels} mels and ≥ {min_frames} frames"
        );
    }
    if mask.batch() != b || mask.frames() != t {
        candle_core::bail!(
            "{name}: mask of {} clips × {} frames for an input of {b} × {t}",
            mask.batch(),
            mask.frames()
        );
    }
    if mask.min_len() < min_frames {
        candle_core::bail!(
            "{name}: a clip has {} valid frames; the network needs ≥ {min_frames} \
             (zero-pad a shorter clip to {min_frames} frames and count them as valid)",
            mask.min_len()
        );
    }
    Ok(())
}

/// Outputs of a SED network for a batch of `B` windows of `T` frames and `C` classes.
///
/// For a zero-padded batch ([`SedNet::forward_masked`]) every output at a clip's valid
/// frames, and every clip-level output, equals that of the clip run alone unpadded;
/// frame-level outputs are zero at padded frames.
#[derive(Debug, Clone)]
pub struct SedOutput {
    /// Frame-level (strong) probabilities at the input frame rate, `(B, T, C)`.
    pub frame: Tensor,
    /// Clip-level (weak) probabilities, `(B, C)`.
    pub clip: Tensor,
    /// Auxiliary outputs that some architectures produce for their training losses.
    pub aux: AuxOutputs,
}

/// Auxiliary outputs of an architecture (all `None` for the CRNN).
#[derive(Debug, Clone, Default)]
pub struct AuxOutputs {
    /// Reconstruction of the input log-mels for the autoencoder loss (2APAE), `(B, T, F)`.
    pub reconstruction: Option<Tensor>,
    /// Frame embeddings for the IFD metric loss (ATP-SEDB), `(B, T', D)`.
    pub embeddings: Option<Tensor>,
    /// Valid embedding frames of each clip (with `embeddings`; `T'` each unpadded).
    pub embedding_lengths: Option<Vec<usize>>,
    /// Frame probabilities of a second, frame-level head (the SED branch of
    /// ATP-SEDB), `(B, T, C)`.
    pub frame_secondary: Option<Tensor>,
    /// Acoustic-scene logits (context attention), `(B, S)`.
    pub scene_logits: Option<Tensor>,
}

/// A sound event detection network.
pub trait SedNet: Send + Sync {
    /// Runs the network on a zero-padded batch of log-mel frames `x (B, T, F)` whose
    /// valid frames `mask` describes (each clip ≥ `min_frames()` valid frames).
    /// Padding never counts: batch-norm statistics, pools and softmaxes over time and
    /// the recurrences see each clip's valid frames only (see [`SedOutput`]). `train`
    /// selects training behaviour (batch statistics, running-stat updates).
    fn forward_with_mask(
        &self,
        x: &Tensor,
        mask: &TimeMask,
        train: bool,
    ) -> candle_core::Result<SedOutput>;

    /// [`SedNet::forward_with_mask`] for clips of `lengths` frames (one per batch row,
    /// each `min_frames()..=T`), zero-padded to `T`.
    fn forward_masked(
        &self,
        x: &Tensor,
        lengths: &[usize],
        train: bool,
    ) -> candle_core::Result<SedOutput> {
        self.forward_with_mask(x, &TimeMask::for_input(x, lengths)?, train)
    }

    /// Runs the network on log-mel frames `x (B, T, F)`, `T ≥ min_frames()`, none of
    /// them padding (the same code as [`SedNet::forward_with_mask`], without mask work).
    /// `train` selects training behaviour (batch statistics, running-stat updates).
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<SedOutput> {
        let (b, t, _) = x.dims3()?;
        self.forward_with_mask(x, &TimeMask::full(b, t, x.dtype(), x.device()), train)
    }

    /// Fewest frames `T` the network accepts (its pools must not produce 0 frames).
    fn min_frames(&self) -> usize;
}

/// Builds the network described by `arch` for `n_mels` input bands and `n_classes`
/// outputs, taking its tensors from `vb` (validated parameters first).
pub fn build(
    arch: &ArchConfig,
    n_mels: usize,
    n_classes: usize,
    vb: VarBuilder,
) -> Result<Box<dyn SedNet>, ModelError> {
    arch.validate(n_mels, n_classes)?;
    Ok(match arch {
        ArchConfig::Crnn(c) => Box::new(Crnn::new(c, n_mels, n_classes, vb)?),
        ArchConfig::Amn(c) => Box::new(Amn::new(c, n_mels, n_classes, vb)?),
        ArchConfig::TwoStepAe(c) => Box::new(TwoStepAe::new(c, n_mels, n_classes, vb)?),
        ArchConfig::AtpSedb(c) => Box::new(AtpSedb::new(c, n_mels, n_classes, vb)?),
        ArchConfig::ContextAttention(c) => {
            Box::new(ContextAttention::new(c, n_mels, n_classes, vb)?)
        }
    })
}

/// The tensors (name, shape) the architecture expects, in construction order.
pub fn expected_tensors(
    arch: &ArchConfig,
    n_mels: usize,
    n_classes: usize,
) -> Result<Vec<(String, Vec<usize>)>, ModelError> {
    let recorder = ShapeRecorder::default();
    let vb = VarBuilder::from_backend(Box::new(recorder.clone()), DType::F32, Device::Cpu);
    build(arch, n_mels, n_classes, vb)?;
    Ok(recorder.tensors())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_json_is_tagged_by_name_and_rejects_unknown_keys() {
        let a: ArchConfig = serde_json::from_str(r#"{"name":"crnn"}"#).unwrap();
        assert_eq!(a, ArchConfig::default());
        let j = serde_json::to_value(&a).unwrap();
        assert_eq!(j["name"], "crnn");
        let back: ArchConfig = serde_json::from_value(j).unwrap();
        assert_eq!(back, a);
        let e = serde_json::from_str::<ArchConfig>(r#"{"name":"crnn","gru_hiden":3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("gru_hiden"), "{e}");
        assert!(serde_json::from_str::<ArchConfig>(r#"{"name":"cnn"}"#).is_err());
    }

    #[test]
    fn expected_tensors_of_the_default_crnn() {
        let t = expected_tensors(&ArchConfig::default(), 64, 10).unwrap();
        let find = |n: &str| t.iter().find(|(name, _)| name == n).map(|(_, s)| s.clone());
        assert_eq!(find("blocks.0.bn.running_var"), Some(vec![1]));
        assert_eq!(find("blocks.1.conv.weight"), Some(vec![128, 32, 3, 3]));
        assert_eq!(find("gru.fwd.weight_ih_l0"), Some(vec![384, 128]));
        assert_eq!(find("gru.bwd.weight_hh_l0"), Some(vec![384, 128]));
        assert_eq!(find("out.weight"), Some(vec![10, 256]));
        assert_eq!(t.len(), 5 * 5 + 8 + 2);
    }
}
