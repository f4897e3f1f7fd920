//! Affinity mixup network (AMN, Izadi et al., paper 000, Fig. 1): a CDur-like CRNN
//! whose encoder and decoder mix features over time with affinity matrices computed at
//! the 1/2 and 1/4 time resolutions.
//!
//! ```text
//! (B,T,F) → (B,1,T,F) → block0 (BN→Conv→LeakyReLU) → LP-pool (2, m0)      [1/2]
//!   A½ = affinity(·)         → block1 → [AM-enc ½: Ã½ X′] → LP-pool (2, m1) [1/4]
//!   A¼ = affinity(·)         → block2 → [AM-enc ¼: Ã¼ X′] → LP-pool (1, m2)
//!   → (B,T/4,C·F′) → BiGRU → Linear → sigmoid = Z (B,T/4,K)
//!   → [AM-dec ¼: A¼ Z] → up-sample to T/2 → [AM-dec ½: A½ Z] → up-sample to T
//!   frame = clamp(Z, 1e-7, 1)           clip = clamp(Σp²/Σp over T, 1e-7, 1)
//! ```
//!
//! Switches: AM per resolution in the encoder and in the decoder (Tables 4–5), no
//! affinity gradient in the encoder and/or decoder (Table 7), τ (Table 6), linear or
//! nearest up-sampling. An affinity is computed only at resolutions some AM uses.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::{AuxOutputs, SedNet, SedOutput};
use crate::model::layers::{
    linear_softmax_pool_masked, mix_decoder, mix_encoder, Affinity, BiGru, ConvBlock,
    EncoderAffinity, LpPool2d, TimeMask, Upsample,
};
use crate::model::ModelError;

/// Affinity mixup on/off at the two time resolutions of one side (encoder or decoder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmSwitch {
    /// AM at the 1/2 time resolution.
    pub half: bool,
    /// AM at the 1/4 time resolution.
    pub quarter: bool,
}

impl AmSwitch {
    /// AM at both resolutions (the full AMN).
    pub const BOTH: AmSwitch = AmSwitch {
        half: true,
        quarter: true,
    };
    /// No AM.
    pub const NONE: AmSwitch = AmSwitch {
        half: false,
        quarter: false,
    };
}

/// Parameters of the AMN. Input bands and classes come from the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmnConfig {
    /// Output channels of the Conv2D block and the two Conv2D-AM blocks.
    pub channels: [usize; 3],
    /// Mel pooling after each block (time pooling is fixed: 2, 2, 1).
    pub mel_pools: [usize; 3],
    /// Convolution kernel size (odd; "same" padding).
    pub kernel: usize,
    /// Negative slope of the LeakyReLU.
    pub leaky_slope: f64,
    /// Exponent of the LP down-sampling.
    pub lp_p: f64,
    /// GRU hidden size per direction.
    pub gru_hidden: usize,
    /// Affinity temperature τ (eq. 3; 1 in the paper).
    pub tau: f64,
    /// AM in the encoder per resolution (Table 4).
    pub encoder_am: AmSwitch,
    /// AM in the decoder per resolution (Table 5).
    pub decoder_am: AmSwitch,
    /// Gradient through the affinity where the encoder mixes (Table 7).
    pub encoder_affinity_grad: bool,
    /// Gradient through the affinity where the decoder mixes (Table 7).
    pub decoder_affinity_grad: bool,
    /// How the encoder forms `Ã` from the per-class affinities (eq. 4): `softmax`
    /// (class mean of `A`, the default), `exp` (as printed) or `exp_normalized`.
    pub encoder_affinity: EncoderAffinity,
    /// Up-sampling of the frame scores back to the input frame rate.
    pub upsample: Upsample,
}

impl Default for AmnConfig {
    /// The paper's AMN on the CDur sizes: channels 32/128/128, mel pools 4/4/4 (64 mels
    /// → 1), 3×3 kernels, LeakyReLU 0.1, LP p = 4, BiGRU 128, τ = 1, AM everywhere
    /// with gradients, linear up-sampling.
    fn default() -> Self {
        Self {
            channels: [32, 128, 128],
            mel_pools: [4, 4, 4],
            kernel: 3,
            leaky_slope: 0.1,
            lp_p: 4.0,
            gru_hidden: 128,
            tau: 1.0,
            encoder_am: AmSwitch::BOTH,
            decoder_am: AmSwitch::BOTH,
            encoder_affinity_grad: true,
            decoder_affinity_grad: true,
            encoder_affinity: EncoderAffinity::Softmax,
            upsample: Upsample::Linear,
        }
    }
}

impl AmnConfig {
    /// Checks every parameter for `n_mels` bands and `n_classes` classes.
    pub fn validate(&self, n_mels: usize, n_classes: usize) -> std::result::Result<(), ModelError> {
        let bad = |field: String, value: String, expected: &str| {
            Err(ModelError::InvalidArch {
                field,
                value,
                expected: expected.to_string(),
            })
        };
        super::check_conv_params("amn", self.kernel, self.lp_p, self.leaky_slope)?;
        for (i, &c) in self.channels.iter().enumerate() {
            if c == 0 || c > 4096 {
                return bad(
                    format!("amn.channels[{i}]"),
                    c.to_string(),
                    "1..=4096 channels",
                );
            }
        }
        let mut mels = n_mels;
        for (i, &m) in self.mel_pools.iter().enumerate() {
            if m == 0 || mels / m == 0 {
                return bad(
                    format!("amn.mel_pools[{i}]"),
                    m.to_string(),
                    &format!(
                        "1..={mels} (the {mels} mel bands left of features.n_mels = {n_mels} must not pool to 0)"
                    ),
                );
            }
            mels /= m;
        }
        if self.gru_hidden == 0 || self.gru_hidden > 4096 {
            return bad(
                "amn.gru_hidden".into(),
                self.gru_hidden.to_string(),
                "1..=4096 units",
            );
        }
        if !(self.tau.is_finite() && self.tau > 0.0 && self.tau <= 1e6) {
            return bad(
                "amn.tau".into(),
                self.tau.to_string(),
                "a temperature in (0, 1e6]",
            );
        }
        if n_classes == 0 {
            return bad("classes".into(), "0 classes".into(), "at least one class");
        }
        Ok(())
    }

    /// Fewest input frames: two time poolings by 2 must leave one frame.
    pub fn min_frames(&self) -> usize {
        4
    }

    /// One-line description.
    pub fn summary(&self) -> String {
        let on = |s: AmSwitch| match (s.half, s.quarter) {
            (true, true) => "½+¼",
            (true, false) => "½",
            (false, true) => "¼",
            (false, false) => "off",
        };
        format!(
            "amn: BN→conv{k}×{k}→LeakyReLU({}) blocks 1→{}→{}→{}, LP p = {} pools (2,{}) (2,{}) (1,{}); \
             BiGRU 2×{}; affinity mixup τ = {} encoder {}{} (Ã {}) decoder {}{}; {:?} up-sampling; \
             linear-softmax clip pooling",
            self.leaky_slope,
            self.channels[0],
            self.channels[1],
            self.channels[2],
            self.lp_p,
            self.mel_pools[0],
            self.mel_pools[1],
            self.mel_pools[2],
            self.gru_hidden,
            self.tau,
            on(self.encoder_am),
            if self.encoder_affinity_grad { "" } else { " (no grad)" },
            self.encoder_affinity.name(),
            on(self.decoder_am),
            if self.decoder_affinity_grad { "" } else { " (no grad)" },
            self.upsample,
            k = self.kernel,
        )
    }
}

/// The AMN. Tensors: `blocks.{0,1,2}.{bn,conv}.*`, `affinity.{half,quarter}.proj.weight`
/// (only for resolutions some AM uses), `gru.{fwd,bwd}.*`, `out.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct Amn {
    /// The Conv2D block and the two Conv2D-AM blocks.
    blocks: [ConvBlock; 3],
    /// LP down-sampling after each block.
    pools: [LpPool2d; 3],
    /// Affinity at 1/2 resolution, when used.
    aff_half: Option<Affinity>,
    /// Affinity at 1/4 resolution, when used.
    aff_quarter: Option<Affinity>,
    /// Recurrent part.
    gru: BiGru,
    /// Frame classifier (logits).
    out: Linear,
    /// The switches.
    cfg: AmnConfig,
    /// Input mel bands.
    n_mels: usize,
}

impl Amn {
    /// Builds the AMN for `n_mels` bands and `n_classes` classes; validates `cfg`.
    pub fn new(
        cfg: &AmnConfig,
        n_mels: usize,
        n_classes: usize,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        cfg.validate(n_mels, n_classes)?;
        let vbb = vb.pp("blocks");
        let [c0, c1, c2] = cfg.channels;
        let block = |i: usize, c_in, c_out| {
            ConvBlock::new(c_in, c_out, cfg.kernel, cfg.leaky_slope, vbb.pp(i))
        };
        let blocks = [block(0, 1, c0)?, block(1, c0, c1)?, block(2, c1, c2)?];
        let [m0, m1, m2] = cfg.mel_pools;
        let pools = [
            LpPool2d::new(cfg.lp_p, 2, m0),
            LpPool2d::new(cfg.lp_p, 2, m1),
            LpPool2d::new(cfg.lp_p, 1, m2),
        ];
        let va = vb.pp("affinity");
        let aff_half = if cfg.encoder_am.half || cfg.decoder_am.half {
            Some(Affinity::new(c0, n_classes, cfg.tau, va.pp("half"))?)
        } else {
            None
        };
        let aff_quarter = if cfg.encoder_am.quarter || cfg.decoder_am.quarter {
            Some(Affinity::new(c1, n_classes, cfg.tau, va.pp("quarter"))?)
        } else {
            None
        };
        let mels_out = n_mels / m0 / m1 / m2;
        let gru = BiGru::new(c2 * mels_out, cfg.gru_hidden, vb.pp("gru"))?;
        let out = candle_nn::linear(gru.out_dim(), n_classes, vb.pp("out"))?;
        Ok(Self {
            blocks,
            pools,
            aff_half,
            aff_quarter,
            gru,
            out,
            cfg: cfg.clone(),
            n_mels,
        })
    }

    /// Mixes an encoder feature (time described by `mask`) with the affinity `a` when
    /// `on`.
    fn mix_enc(&self, on: bool, a: &Option<Tensor>, x: Tensor, mask: &TimeMask) -> Result<Tensor> {
        match (on, a) {
            (true, Some(a)) => mix_encoder(
                a,
                &x,
                self.cfg.encoder_affinity,
                !self.cfg.encoder_affinity_grad,
                mask,
            ),
            _ => Ok(x),
        }
    }

    /// Mixes decoder scores (time described by `mask`) with the affinity `a` when `on`.
    fn mix_dec(&self, on: bool, a: &Option<Tensor>, z: Tensor, mask: &TimeMask) -> Result<Tensor> {
        match (on, a) {
            (true, Some(a)) => mix_decoder(a, &z, !self.cfg.decoder_affinity_grad, mask),
            _ => Ok(z),
        }
    }
}

impl SedNet for Amn {
    fn forward_with_mask(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<SedOutput> {
        super::check_input("AMN", x, mask, self.n_mels, self.cfg.min_frames())?;
        let b = x.dim(0)?;
        let (enc, dec) = (self.cfg.encoder_am, self.cfg.decoder_am);
        let h = self.blocks[0].forward_masked(&x.unsqueeze(1)?, mask, train)?;
        let (h, m_half) = self.pools[0].forward_masked(&h, mask)?; // 1/2
        let a_half = match &self.aff_half {
            Some(a) => Some(a.forward_masked(&h, &m_half)?),
            None => None,
        };
        let h = self.blocks[1].forward_masked(&h, &m_half, train)?;
        let h = self.mix_enc(enc.half, &a_half, h, &m_half)?;
        let (h, m_quarter) = self.pools[1].forward_masked(&h, &m_half)?; // 1/4
        let a_quarter = match &self.aff_quarter {
            Some(a) => Some(a.forward_masked(&h, &m_quarter)?),
            None => None,
        };
        let h = self.blocks[2].forward_masked(&h, &m_quarter, train)?;
        let h = self.mix_enc(enc.quarter, &a_quarter, h, &m_quarter)?;
        let (h, m_gru) = self.pools[2].forward_masked(&h, &m_quarter)?;
        let (_, c, tq, fq) = h.dims4()?;
        let h = h.permute((0, 2, 1, 3))?.reshape((b, tq, c * fq))?;
        let h = self.gru.forward_masked(&h, &m_gru)?;
        let z = candle_nn::ops::sigmoid(&self.out.forward(&h)?)?;
        let z = self.mix_dec(dec.quarter, &a_quarter, z, &m_quarter)?;
        let z = self.cfg.upsample.apply_masked(&z, &m_quarter, &m_half)?;
        let z = self.mix_dec(dec.half, &a_half, z, &m_half)?;
        let z = self.cfg.upsample.apply_masked(&z, &m_half, mask)?;
        let frame = z.clamp(1e-7, 1.0)?;
        let clip = linear_softmax_pool_masked(&frame, mask)?.clamp(1e-7, 1.0)?;
        Ok(SedOutput {
            frame: mask.zero(&frame, 1)?,
            clip,
            aux: AuxOutputs::default(),
        })
    }

    fn min_frames(&self) -> usize {
        self.cfg.min_frames()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    fn tiny() -> AmnConfig {
        AmnConfig {
            channels: [2, 2, 2],
            mel_pools: [2, 1, 2],
            gru_hidden: 2,
            ..AmnConfig::default()
        }
    }

    #[test]
    fn default_validates_for_64_mels_and_names_bad_fields() {
        let c = AmnConfig::default();
        c.validate(64, 10).unwrap();
        assert_eq!(c.min_frames(), 4);
        let e = c.validate(32, 10).unwrap_err().to_string();
        assert!(e.contains("amn.mel_pools[2]"), "{e}");
        let e = AmnConfig {
            tau: 0.0,
            ..AmnConfig::default()
        }
        .validate(64, 10)
        .unwrap_err()
        .to_string();
        assert!(e.contains("amn.tau"), "{e}");
        assert!(c.summary().contains("τ = 1"));
    }

    #[test]
    fn forward_shapes_for_several_lengths_and_switches() {
        for (enc, dec, up) in [
            (AmSwitch::BOTH, AmSwitch::BOTH, Upsample::Linear),
            (AmSwitch::NONE, AmSwitch::NONE, Upsample::Nearest),
            (
                AmSwitch {
                    half: false,
                    quarter: true,
                },
                AmSwitch {
                    half: true,
                    quarter: false,
                },
                Upsample::Linear,
            ),
        ] {
            let cfg = AmnConfig {
                encoder_am: enc,
                decoder_am: dec,
                upsample: up,
                ..tiny()
            };
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 1, DType::F32, &Device::Cpu);
            let net = Amn::new(&cfg, 8, 3, vb).unwrap();
            for t in [4, 5, 7, 33] {
                let x = gradcheck::rand_tensor(&[2, t, 8], t as u64)
                    .to_dtype(DType::F32)
                    .unwrap();
                let out = net.forward_t(&x, false).unwrap();
                assert_eq!(out.frame.dims(), &[2, t, 3], "T = {t}");
                assert_eq!(out.clip.dims(), &[2, 3]);
                let v: Vec<f32> = out.frame.flatten_all().unwrap().to_vec1().unwrap();
                assert!(v.iter().all(|p| (1e-7..=1.0).contains(p)), "T = {t}");
            }
            let x = Tensor::zeros((1, 3, 8), DType::F32, &Device::Cpu).unwrap();
            assert!(net.forward_t(&x, false).is_err());
        }
    }

    fn tiny_no_am() -> AmnConfig {
        AmnConfig {
            encoder_am: AmSwitch::NONE,
            decoder_am: AmSwitch::NONE,
            ..tiny()
        }
    }

    #[test]
    fn affinity_tensors_exist_only_where_used() {
        let names = |cfg: &AmnConfig| -> Vec<String> {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 1, DType::F32, &Device::Cpu);
            Amn::new(cfg, 8, 3, vb).unwrap();
            let mut n: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
            n.retain(|k| k.starts_with("affinity"));
            n.sort();
            n
        };
        assert_eq!(
            names(&tiny()),
            ["affinity.half.proj.weight", "affinity.quarter.proj.weight"]
        );
        assert!(names(&tiny_no_am()).is_empty());
        let only_dec_quarter = AmnConfig {
            encoder_am: AmSwitch::NONE,
            decoder_am: AmSwitch {
                half: false,
                quarter: true,
            },
            ..tiny()
        };
        assert_eq!(names(&only_dec_quarter), ["affinity.quarter.proj.weight"]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (kind, up) in [
            (EncoderAffinity::Softmax, Upsample::Linear),
            (EncoderAffinity::Exp, Upsample::Nearest),
            (EncoderAffinity::ExpNormalized, Upsample::Linear),
        ] {
            let cfg = AmnConfig {
                encoder_affinity: kind,
                upsample: up,
                ..tiny()
            };
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
            let net = Amn::new(&cfg, 4, 2, vb).unwrap();
            let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 9, 4], 3)).unwrap();
            let both = || {
                let o = net.forward_t(x.as_tensor(), true)?;
                Tensor::cat(&[o.frame.flatten_all()?, o.clip.flatten_all()?], 0)
            };
            gradcheck::check(&map, &[("x", &x)], both, 1e-5);
        }
    }

    #[test]
    fn no_affinity_gradient_switch_detaches_the_projections() {
        let cfg = AmnConfig {
            encoder_affinity_grad: false,
            decoder_affinity_grad: false,
            ..tiny()
        };
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let net = Amn::new(&cfg, 4, 2, vb).unwrap();
        let x = gradcheck::rand_tensor(&[2, 8, 4], 3);
        let loss = net
            .forward_t(&x, true)
            .unwrap()
            .frame
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let data = map.data().lock().unwrap();
        assert!(grads
            .get(data["affinity.half.proj.weight"].as_tensor())
            .is_none());
        assert!(grads
            .get(data["affinity.quarter.proj.weight"].as_tensor())
            .is_none());
        assert!(grads.get(data["out.weight"].as_tensor()).is_some());
    }

    #[test]
    fn masked_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let net = Amn::new(&tiny(), 4, 2, vb).unwrap();
        let lengths = [9, 4];
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 9, 4], 3)).unwrap();
        let all = || {
            let o = net.forward_masked(x.as_tensor(), &lengths, true)?;
            gradcheck::flat_outputs(o)
        };
        gradcheck::check_masked(&map, ("x", &x), 1, &lengths, all, 1e-5);
    }
}
