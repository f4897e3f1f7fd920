//! 2APAE (Deshmukh et al., paper 003, Tables I–III): a full-resolution VGG encoder,
//! a 1×1 class convolution, two-step attention pooling, and an autoencoder decoder
//! that reconstructs the input log-mels from the encoder's last feature map (the
//! auxiliary task; its weight α lives in the training config).
//!
//! ```text
//! (B,T,F) → (B,1,T,F) → VGG blocks 32/64/128/256 ([Conv3×3→BN→ReLU]×2 → AvgPool3 s1)
//!   ├→ Conv1×1 (→K, bias) = class map Z (B,K,T,F) → clip head → frame (B,T,K), clip (B,K)
//!   └→ decoder 128/64/32 → 1 channel = reconstruction (B,T,F)   (training mode only)
//! ```
//!
//! Clip heads (switch, for the paper's Tables IV–V): `two_step` (frequency step, then
//! the length-agnostic time step, see `layers::heads`); the others keep the frequency
//! step and replace the time step: `attention` (softmax over time of per-frame linear
//! scores) or a parameter-free pool (`max`, `mean`, `linear_softmax`, `exp_softmax`,
//! `gwrp`) of the frequency step's per-frame probabilities, which are then the frame
//! output. No layer pools time, so any `T ≥ 1` works and frames stay at the input rate.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{AuxOutputs, SedNet, SedOutput};
use crate::model::layers::{
    AttentionPool, ClipPooling, Conv2d, Conv2dGeometry, ConvDecoder, FrequencyAttention, TimeMask,
    TwoStepAttentionPool, VggStack,
};
use crate::model::ModelError;

/// The clip-level head of 2APAE.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClipHead {
    /// Two-step attention pooling (the paper's).
    TwoStep,
    /// Frequency step, then attention pooling over time (softmax of linear scores).
    Attention,
    /// Frequency step, then max over time (GMP).
    Max,
    /// Frequency step, then mean over time (GAP).
    Mean,
    /// Frequency step, then linear-softmax over time.
    LinearSoftmax,
    /// Frequency step, then exponential-softmax over time.
    ExpSoftmax,
    /// Frequency step, then GWRP over time with decay `r`.
    Gwrp {
        /// Decay in `[0, 1]`.
        r: f64,
    },
}

impl ClipHead {
    /// The parameter-free pooling of this head, if it is one.
    fn pooling(self) -> Option<ClipPooling> {
        match self {
            ClipHead::TwoStep | ClipHead::Attention => None,
            ClipHead::Max => Some(ClipPooling::Max),
            ClipHead::Mean => Some(ClipPooling::Mean),
            ClipHead::LinearSoftmax => Some(ClipPooling::LinearSoftmax),
            ClipHead::ExpSoftmax => Some(ClipPooling::ExpSoftmax),
            ClipHead::Gwrp { r } => Some(ClipPooling::Gwrp { r }),
        }
    }

    /// Short name for summaries.
    fn label(self) -> String {
        match self {
            ClipHead::TwoStep => "two-step attention".into(),
            ClipHead::Attention => "frequency attention + time attention".into(),
            other => match other.pooling() {
                Some(p) => format!("frequency attention + {} over time", p.label()),
                None => String::new(),
            },
        }
    }
}

/// Parameters of 2APAE. Input bands and classes come from the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwoStepAeConfig {
    /// Encoder VGG block widths.
    pub channels: Vec<usize>,
    /// Decoder VGG block widths (before the two output units).
    pub decoder_channels: Vec<usize>,
    /// Clip-level head.
    pub head: ClipHead,
    /// End the decoder with Conv→BN→ReLU as the paper's Table III (off: a plain
    /// convolution with a bias, which can output negative log-mels).
    pub final_relu: bool,
}

impl Default for TwoStepAeConfig {
    /// The paper's sizes: encoder 32/64/128/256, decoder 128/64/32, two-step head.
    fn default() -> Self {
        Self {
            channels: vec![32, 64, 128, 256],
            decoder_channels: vec![128, 64, 32],
            head: ClipHead::TwoStep,
            final_relu: false,
        }
    }
}

impl TwoStepAeConfig {
    /// Checks every parameter for `n_mels` bands and `n_classes` classes.
    pub fn validate(&self, n_mels: usize, n_classes: usize) -> std::result::Result<(), ModelError> {
        let bad = |field: String, value: String, expected: &str| {
            Err(ModelError::InvalidArch {
                field,
                value,
                expected: expected.to_string(),
            })
        };
        if self.channels.is_empty() || self.channels.len() > 16 {
            return bad(
                "two_step_ae.channels".into(),
                format!("{} blocks", self.channels.len()),
                "1..=16 encoder blocks",
            );
        }
        if self.decoder_channels.len() > 16 {
            return bad(
                "two_step_ae.decoder_channels".into(),
                format!("{} blocks", self.decoder_channels.len()),
                "0..=16 decoder blocks",
            );
        }
        for (name, list) in [
            ("channels", &self.channels),
            ("decoder_channels", &self.decoder_channels),
        ] {
            for (i, &c) in list.iter().enumerate() {
                if c == 0 || c > 4096 {
                    return bad(
                        format!("two_step_ae.{name}[{i}]"),
                        c.to_string(),
                        "1..=4096 channels",
                    );
                }
            }
        }
        if let Some(p) = self.head.pooling() {
            if let Err(e) = p.check() {
                return bad("two_step_ae.head.r".into(), e, "a decay in [0, 1]");
            }
        }
        if n_mels == 0 {
            return bad("features.n_mels".into(), "0".into(), "at least one band");
        }
        if n_classes == 0 {
            return bad("classes".into(), "0 classes".into(), "at least one class");
        }
        Ok(())
    }

    /// Fewest input frames: no layer pools time.
    pub fn min_frames(&self) -> usize {
        1
    }

    /// One-line description.
    pub fn summary(&self) -> String {
        let list = |v: &[usize]| {
            v.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        format!(
            "two_step_ae: VGG encoder [conv3×3→BN→ReLU]×2→avgpool3 s1 widths {}; 1×1 class conv; \
             {} clip head; AE decoder widths {} → 1{}",
            list(&self.channels),
            self.head.label(),
            list(&self.decoder_channels),
            if self.final_relu {
                " (ReLU output)"
            } else {
                " (linear output)"
            },
        )
    }
}

/// The clip head with its parameters.
#[derive(Debug, Clone)]
enum Head {
    /// Two-step attention pooling.
    TwoStep(TwoStepAttentionPool),
    /// Frequency step then time attention.
    Attention(FrequencyAttention, AttentionPool),
    /// Frequency step then a parameter-free pool over time.
    Pool(FrequencyAttention, ClipPooling),
}

/// 2APAE. Tensors: `encoder.{i}.units.{0,1}.{conv.weight,bn.*}`,
/// `class_conv.{weight,bias}`, `head.freq.{cla,att}.*` and `head.time.{cla,att}.*`
/// (per head), `decoder.blocks.{i}.units.…`, `decoder.out.{0,1}.…`.
#[derive(Debug, Clone)]
pub struct TwoStepAe {
    /// Shared VGG encoder.
    encoder: VggStack,
    /// 1×1 class convolution to the class T-F map.
    class_conv: Conv2d,
    /// Clip head.
    head: Head,
    /// Reconstruction decoder.
    decoder: ConvDecoder,
    /// Input mel bands.
    n_mels: usize,
}

impl TwoStepAe {
    /// Builds 2APAE for `n_mels` bands and `n_classes` classes; validates `cfg`.
    pub fn new(
        cfg: &TwoStepAeConfig,
        n_mels: usize,
        n_classes: usize,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        cfg.validate(n_mels, n_classes)?;
        let encoder = VggStack::new(1, &cfg.channels, vb.pp("encoder"))?;
        let c_last = cfg.channels.last().copied().unwrap_or(1);
        let one = Conv2dGeometry {
            kernel: (1, 1),
            stride: (1, 1),
            padding: (0, 0),
        };
        let class_conv = Conv2d::new(c_last, n_classes, one, true, vb.pp("class_conv"))?;
        let vh = vb.pp("head");
        let head = match cfg.head {
            ClipHead::TwoStep => Head::TwoStep(TwoStepAttentionPool::new(n_mels, n_classes, vh)?),
            ClipHead::Attention => Head::Attention(
                FrequencyAttention::new(n_mels, vh.pp("freq"))?,
                AttentionPool::new(n_classes, n_classes, false, vh.pp("time"))?,
            ),
            other => match other.pooling() {
                Some(p) => Head::Pool(FrequencyAttention::new(n_mels, vh.pp("freq"))?, p),
                None => {
                    return Err(ModelError::InvalidArch {
                        field: "two_step_ae.head".into(),
                        value: format!("{other:?}"),
                        expected: "a known clip head".into(),
                    })
                }
            },
        };
        let decoder = ConvDecoder::new(
            c_last,
            &cfg.decoder_channels,
            cfg.final_relu,
            vb.pp("decoder"),
        )?;
        Ok(Self {
            encoder,
            class_conv,
            head,
            decoder,
            n_mels,
        })
    }

    /// Runs the network on `x (B, T, F)`; the reconstruction is computed when
    /// `reconstruct` is true.
    pub fn forward_all(&self, x: &Tensor, train: bool, reconstruct: bool) -> Result<SedOutput> {
        let (b, t, _) = x.dims3()?;
        let full = TimeMask::full(b, t, x.dtype(), x.device());
        self.forward_all_masked(x, &full, train, reconstruct)
    }

    /// [`TwoStepAe::forward_all`] on a zero-padded batch whose valid frames `mask`
    /// describes (see [`SedNet::forward_with_mask`]); the reconstruction is zero at
    /// padded frames.
    pub fn forward_all_masked(
        &self,
        x: &Tensor,
        mask: &TimeMask,
        train: bool,
        reconstruct: bool,
    ) -> Result<SedOutput> {
        super::check_input("2APAE", x, mask, self.n_mels, 1)?;
        // The first convolution reads the input's padding: make it zero.
        let x = mask.zero(x, 1)?;
        let h = self.encoder.forward_masked(&x.unsqueeze(1)?, mask, train)?; // (B, 256, T, F)
        let z = self.class_conv.forward(&h)?; // (B, K, T, F)
        let (frame, clip) = match &self.head {
            Head::TwoStep(p) => p.forward_masked(&z, mask)?,
            Head::Attention(freq, time) => {
                let p1 = freq.forward(&z)?.transpose(1, 2)?.contiguous()?;
                time.forward_masked(&p1, mask)?
            }
            Head::Pool(freq, pool) => {
                let p1 = freq.forward(&z)?.transpose(1, 2)?.contiguous()?;
                let clip = pool.pool_masked(&p1, mask)?;
                (p1, clip)
            }
        };
        let reconstruction = if reconstruct {
            Some(self.decoder.forward_masked(&h, mask, train)?)
        } else {
            None
        };
        Ok(SedOutput {
            frame: mask.zero(&frame.clamp(1e-7, 1.0)?, 1)?,
            clip: clip.clamp(1e-7, 1.0)?,
            aux: AuxOutputs {
                reconstruction,
                ..AuxOutputs::default()
            },
        })
    }
}

impl SedNet for TwoStepAe {
    /// Frame and clip probabilities; `aux.reconstruction` `(B, T, F)` in training mode
    /// only (inference skips the decoder, about half of the work).
    fn forward_with_mask(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<SedOutput> {
        self.forward_all_masked(x, mask, train, train)
    }

    fn min_frames(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    fn tiny(head: ClipHead) -> TwoStepAeConfig {
        TwoStepAeConfig {
            channels: vec![2, 2],
            decoder_channels: vec![2],
            head,
            final_relu: false,
        }
    }

    const HEADS: [ClipHead; 7] = [
        ClipHead::TwoStep,
        ClipHead::Attention,
        ClipHead::Max,
        ClipHead::Mean,
        ClipHead::LinearSoftmax,
        ClipHead::ExpSoftmax,
        ClipHead::Gwrp { r: 0.7 },
    ];

    #[test]
    fn default_validates_and_names_bad_fields() {
        let c = TwoStepAeConfig::default();
        c.validate(64, 41).unwrap();
        let e = TwoStepAeConfig {
            channels: vec![32, 0],
            ..c.clone()
        }
        .validate(64, 41)
        .unwrap_err()
        .to_string();
        assert!(e.contains("two_step_ae.channels[1]"), "{e}");
        let e = TwoStepAeConfig {
            head: ClipHead::Gwrp { r: 2.0 },
            ..c.clone()
        }
        .validate(64, 41)
        .unwrap_err()
        .to_string();
        assert!(e.contains("two_step_ae.head.r"), "{e}");
        assert!(c.summary().contains("32/64/128/256"));
    }

    #[test]
    fn every_head_gives_frames_at_the_input_rate_for_any_length() {
        for head in HEADS {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 1, DType::F32, &Device::Cpu);
            let net = TwoStepAe::new(&tiny(head), 4, 3, vb).unwrap();
            for t in [1, 2, 7] {
                let x = gradcheck::rand_tensor(&[2, t, 4], t as u64)
                    .to_dtype(DType::F32)
                    .unwrap();
                let out = net.forward_t(&x, false).unwrap();
                assert_eq!(out.frame.dims(), &[2, t, 3], "{head:?} T = {t}");
                assert_eq!(out.clip.dims(), &[2, 3]);
                assert!(out.aux.reconstruction.is_none());
                let out = net.forward_t(&x, true).unwrap();
                let r = out.aux.reconstruction.unwrap();
                assert_eq!(r.dims(), &[2, t, 4]);
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences_for_every_head() {
        for head in HEADS {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
            let net = TwoStepAe::new(&tiny(head), 3, 2, vb).unwrap();
            let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 3, 3], 3)).unwrap();
            let all = || {
                let o = net.forward_t(x.as_tensor(), true)?;
                let r = o.aux.reconstruction.unwrap_or(o.clip.clone());
                Tensor::cat(
                    &[
                        o.frame.flatten_all()?,
                        o.clip.flatten_all()?,
                        r.flatten_all()?,
                    ],
                    0,
                )
            };
            gradcheck::check(&map, &[("x", &x)], all, 1e-5);
        }
    }

    #[test]
    fn masked_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let net = TwoStepAe::new(&tiny(ClipHead::Gwrp { r: 0.5 }), 4, 2, vb).unwrap();
        let lengths = [2, 3];
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 3, 4], 3)).unwrap();
        let all = || {
            let o = net.forward_masked(x.as_tensor(), &lengths, true)?;
            gradcheck::flat_outputs(o)
        };
        gradcheck::check_masked(&map, ("x", &x), 1, &lengths, all, 1e-5);
    }
}
