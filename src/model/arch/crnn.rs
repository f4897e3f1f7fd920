//! CDur-style CRNN (Dinkel et al., "Towards duration robust weakly supervised sound
//! event detection"): conv blocks with LP pooling, a BiGRU, per-frame sigmoid scores,
//! linear-softmax clip pooling, and linear interpolation back to the input frame rate.
//!
//! ```text
//! (B,T,F) → (B,1,T,F) → [BatchNorm2d → Conv3×3 → LeakyReLU → LP-pool?] × blocks
//!   → (B,T',C·F') → BiGRU → Linear → sigmoid → clamp[1e-7,1] → frame (B,T',K)
//!   clip = clamp(Σp²/Σp over T')          frame → linear interpolation to T
//! ```

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::{AuxOutputs, SedNet, SedOutput};
use crate::model::layers::{
    linear_softmax_pool_masked, CrnnEncoder, EncoderBlock, EncoderSpec, TimeMask, Upsample,
};
use crate::model::ModelError;

/// Pooling window (= stride) of a block, in frames and mel bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSize {
    /// Frames per window.
    pub time: usize,
    /// Mel bands per window.
    pub mel: usize,
}

/// One conv block of the CRNN and the LP pool after it, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrnnBlock {
    /// Output channels of the block's convolution.
    pub channels: usize,
    /// LP pooling after the block; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolSize>,
}

/// Parameters of the CRNN. Input bands and classes come from the model file's
/// `features.n_mels` and `classes`, so they are not repeated here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrnnConfig {
    /// Conv blocks in order, each optionally followed by LP pooling.
    pub blocks: Vec<CrnnBlock>,
    /// Convolution kernel size (odd; "same" padding).
    pub kernel: usize,
    /// Exponent of the LP pooling (4 in CDur).
    pub lp_p: f64,
    /// Negative slope of the LeakyReLU (0.1 in CDur).
    pub leaky_slope: f64,
    /// GRU hidden size per direction (the BiGRU outputs twice this).
    pub gru_hidden: usize,
}

impl Default for CrnnConfig {
    /// CDur: 1→32 (LP (2,4)), 32→128, 128→128 (LP (2,4)), 128→128, 128→128 (LP (1,4)),
    /// 3×3 kernels, LP p = 4, LeakyReLU 0.1, BiGRU 128 per direction.
    fn default() -> Self {
        let block = |channels, pool: Option<(usize, usize)>| CrnnBlock {
            channels,
            pool: pool.map(|(time, mel)| PoolSize { time, mel }),
        };
        Self {
            blocks: vec![
                block(32, Some((2, 4))),
                block(128, None),
                block(128, Some((2, 4))),
                block(128, None),
                block(128, Some((1, 4))),
            ],
            kernel: 3,
            lp_p: 4.0,
            leaky_slope: 0.1,
            gru_hidden: 128,
        }
    }
}

impl CrnnConfig {
    /// The encoder part of the CRNN (everything but the classifier).
    pub fn encoder_spec(&self) -> EncoderSpec {
        EncoderSpec {
            blocks: self
                .blocks
                .iter()
                .map(|b| EncoderBlock {
                    channels: b.channels,
                    pool: b.pool.map(|p| (p.time, p.mel)),
                })
                .collect(),
            kernel: self.kernel,
            leaky_slope: self.leaky_slope,
            lp_p: self.lp_p,
            gru_hidden: self.gru_hidden,
        }
    }

    /// Checks every parameter for `n_mels` input bands and `n_classes` outputs; the
    /// mel axis must survive the pools (e.g. 64 mels / 4 / 4 / 4 = 1).
    pub fn validate(&self, n_mels: usize, n_classes: usize) -> std::result::Result<(), ModelError> {
        let bad = |field: String, value: String, expected: &str| {
            Err(ModelError::InvalidArch {
                field,
                value,
                expected: expected.to_string(),
            })
        };
        super::check_conv_params("crnn", self.kernel, self.lp_p, self.leaky_slope)?;
        if self.gru_hidden == 0 || self.gru_hidden > 4096 {
            return bad(
                "crnn.gru_hidden".into(),
                self.gru_hidden.to_string(),
                "1..=4096 units",
            );
        }
        if n_classes == 0 {
            return bad("classes".into(), "0 classes".into(), "at least one class");
        }
        validate_blocks("crnn", &self.blocks, n_mels)?;
        Ok(())
    }

    /// Fewest input frames whose time pools all leave ≥ 1 frame: the product of the
    /// time pool sizes (`⌊⌊T/a⌋/b⌋ = ⌊T/(ab)⌋`).
    pub fn min_frames(&self) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| b.pool.map(|p| p.time))
            .product()
    }

    /// One-line description, e.g. `crnn: conv3×3 1→32 LP(2,4) → 32→128 → … ; BiGRU 2×128`.
    pub fn summary(&self) -> String {
        let mut c_in = 1;
        let mut parts = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let mut s = format!("{c_in}→{}", b.channels);
            if let Some(p) = b.pool {
                s.push_str(&format!(" LP({},{})", p.time, p.mel));
            }
            parts.push(s);
            c_in = b.channels;
        }
        format!(
            "crnn: BN→conv{k}×{k}→LeakyReLU({}) blocks {}; LP p = {}; BiGRU 2×{}; \
             linear-softmax clip pooling",
            self.leaky_slope,
            parts.join(" → "),
            self.lp_p,
            self.gru_hidden,
            k = self.kernel,
        )
    }

    /// Mel bands left after the pools.
    pub fn mels_out(&self, n_mels: usize) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| b.pool.map(|p| p.mel))
            .fold(n_mels, |m, k| m / k)
    }
}

/// Checks a stack of conv blocks for `n_mels` input bands: channel counts, pool
/// sizes, and that the mel axis never pools to 0. Errors name `<prefix>.blocks[i]…`.
pub(crate) fn validate_blocks(
    prefix: &str,
    blocks: &[CrnnBlock],
    n_mels: usize,
) -> std::result::Result<(), ModelError> {
    let bad = |field: String, value: String, expected: String| {
        Err(ModelError::InvalidArch {
            field,
            value,
            expected,
        })
    };
    if blocks.is_empty() || blocks.len() > 32 {
        return bad(
            format!("{prefix}.blocks"),
            format!("{} blocks", blocks.len()),
            "1..=32 conv blocks".into(),
        );
    }
    let mut mels = n_mels;
    for (i, b) in blocks.iter().enumerate() {
        if b.channels == 0 || b.channels > 4096 {
            return bad(
                format!("{prefix}.blocks[{i}].channels"),
                b.channels.to_string(),
                "1..=4096 channels".into(),
            );
        }
        if let Some(p) = b.pool {
            if p.time == 0 || p.time > 64 {
                return bad(
                    format!("{prefix}.blocks[{i}].pool.time"),
                    p.time.to_string(),
                    "1..=64 frames".into(),
                );
            }
            if p.mel == 0 || mels / p.mel == 0 {
                return bad(
                    format!("{prefix}.blocks[{i}].pool.mel"),
                    p.mel.to_string(),
                    format!(
                        "1..={mels} (the {mels} mel bands left of features.n_mels = {n_mels} must not pool to 0)"
                    ),
                );
            }
            mels /= p.mel;
        }
    }
    Ok(())
}

/// The CDur-style CRNN. Tensors: `blocks.{i}.bn.{weight,bias,running_mean,running_var}`,
/// `blocks.{i}.conv.weight`, `gru.{fwd,bwd}.{weight_ih_l0,…}`, `out.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct Crnn {
    /// Conv blocks with LP pools, then the BiGRU.
    encoder: CrnnEncoder,
    /// Frame classifier (logits).
    out: Linear,
    /// Input mel bands.
    n_mels: usize,
    /// Product of the time pools.
    min_frames: usize,
}

impl Crnn {
    /// Builds the CRNN for `n_mels` bands and `n_classes` classes; validates `cfg`.
    pub fn new(
        cfg: &CrnnConfig,
        n_mels: usize,
        n_classes: usize,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        cfg.validate(n_mels, n_classes)?;
        let encoder = CrnnEncoder::new(&cfg.encoder_spec(), n_mels, vb.clone())?;
        let out = candle_nn::linear(encoder.out_dim(), n_classes, vb.pp("out"))?;
        Ok(Self {
            encoder,
            out,
            n_mels,
            min_frames: cfg.min_frames(),
        })
    }
}

impl SedNet for Crnn {
    fn forward_with_mask(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<SedOutput> {
        super::check_input("CRNN", x, mask, self.n_mels, self.min_frames)?;
        let (h, hm) = self.encoder.forward_masked(x, mask, train)?;
        let frame = candle_nn::ops::sigmoid(&self.out.forward(&h)?)?.clamp(1e-7, 1.0)?;
        let clip = linear_softmax_pool_masked(&frame, &hm)?.clamp(1e-7, 1.0)?;
        let frame = Upsample::Linear.apply_masked(&frame, &hm, mask)?;
        Ok(SedOutput {
            frame,
            clip,
            aux: AuxOutputs::default(),
        })
    }

    fn min_frames(&self) -> usize {
        self.min_frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    fn tiny() -> CrnnConfig {
        CrnnConfig {
            blocks: vec![
                CrnnBlock {
                    channels: 2,
                    pool: Some(PoolSize { time: 2, mel: 2 }),
                },
                CrnnBlock {
                    channels: 3,
                    pool: Some(PoolSize { time: 1, mel: 2 }),
                },
            ],
            gru_hidden: 2,
            ..CrnnConfig::default()
        }
    }

    #[test]
    fn default_is_cdur_and_needs_four_frames_and_64_mels() {
        let c = CrnnConfig::default();
        assert_eq!(c.min_frames(), 4);
        assert_eq!(c.mels_out(64), 1);
        c.validate(64, 10).unwrap();
        let e = c.validate(32, 10).unwrap_err().to_string();
        assert!(
            e.contains("crnn.blocks[4].pool.mel") && e.contains("32"),
            "{e}"
        );
        assert!(c
            .validate(64, 0)
            .unwrap_err()
            .to_string()
            .contains("classes"));
        let bad = CrnnConfig {
            kernel: 4,
            ..CrnnConfig::default()
        };
        assert!(bad
            .validate(64, 1)
            .unwrap_err()
            .to_string()
            .contains("crnn.kernel"));
    }

    #[test]
    fn min_frames_is_the_shortest_input_the_pools_keep() {
        let pooled = |c: &CrnnConfig, t: usize| {
            c.blocks
                .iter()
                .filter_map(|b| b.pool)
                .fold(t, |n, p| n / p.time)
        };
        for times in [vec![2, 2, 1], vec![3, 2], vec![1], vec![5, 1, 3]] {
            let cfg = CrnnConfig {
                blocks: times
                    .iter()
                    .map(|&time| CrnnBlock {
                        channels: 2,
                        pool: Some(PoolSize { time, mel: 1 }),
                    })
                    .collect(),
                gru_hidden: 2,
                ..CrnnConfig::default()
            };
            let shortest = (1..100).find(|&t| pooled(&cfg, t) >= 1).unwrap();
            assert_eq!(cfg.min_frames(), shortest, "{times:?}");
            // The network runs at exactly that length.
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 1, DType::F32, &Device::Cpu);
            let net = Crnn::new(&cfg, 4, 1, vb).unwrap();
            let x = Tensor::zeros((1, shortest, 4), DType::F32, &Device::Cpu).unwrap();
            assert_eq!(
                net.forward_t(&x, false).unwrap().frame.dims(),
                &[1, shortest, 1]
            );
        }
    }

    #[test]
    fn forward_shapes_for_several_lengths() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 1, DType::F32, &Device::Cpu);
        let net = Crnn::new(&CrnnConfig::default(), 64, 3, vb).unwrap();
        assert_eq!(net.min_frames(), 4);
        for t in [4, 5, 7, 33, 101] {
            let x = gradcheck::rand_tensor(&[2, t, 64], t as u64)
                .to_dtype(DType::F32)
                .unwrap();
            let out = net.forward_t(&x, false).unwrap();
            assert_eq!(out.frame.dims(), &[2, t, 3], "T = {t}");
            assert_eq!(out.clip.dims(), &[2, 3], "T = {t}");
            let v: Vec<f32> = out.frame.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v.iter().all(|p| (1e-7..=1.0).contains(p)), "T = {t}");
        }
        let x = Tensor::zeros((1, 3, 64), DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward_t(&x, false).is_err());
        let x = Tensor::zeros((1, 8, 40), DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward_t(&x, false).is_err());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let net = Crnn::new(&tiny(), 4, 2, vb).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 5, 4], 3)).unwrap();
        let frame = || net.forward_t(x.as_tensor(), true).map(|o| o.frame);
        gradcheck::check(&map, &[("x", &x)], frame, 1e-5);
        let clip = || net.forward_t(x.as_tensor(), true).map(|o| o.clip);
        gradcheck::check(&map, &[("x", &x)], clip, 1e-5);
    }

    #[test]
    fn masked_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let net = Crnn::new(&tiny(), 4, 2, vb).unwrap();
        let lengths = [5, 2, 4];
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[3, 5, 4], 3)).unwrap();
        let all = || {
            let o = net.forward_masked(x.as_tensor(), &lengths, true)?;
            gradcheck::flat_outputs(o)
        };
        gradcheck::check_masked(&map, ("x", &x), 1, &lengths, all, 1e-5);
    }
}
