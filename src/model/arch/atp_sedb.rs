//! ATP-SEDB (paper 001, Huang et al., "Learning generic feature representation with
//! synthetic data for weakly-supervised SED by inter-frame distance loss"): a CNN
//! feature encoder shared by three branches.
//!
//! ```text
//! (B,T,F) → (B,1,T,F) → [Conv k×k → BatchNorm → ReLU → max-pool?] × blocks
//!   → h (B,T',D = C·F')
//!   ├─ ATP head (class-wise embedding-level attention, optional DF dims)
//!   │     → clip (B,K); frame (B,T',K) → linear interpolation to T
//!   ├─ SEDB (optional): Linear D→K → sigmoid → interpolation to T → aux.frame_secondary
//!   └─ IFD projection (optional): Linear D→P → aux.embeddings (B,T',P)
//! ```
//!
//! Only the ATP branch predicts (clip and frame scores); the SEDB and the projection
//! head exist to train the encoder (frame BCE on strong labels, IFD metric loss). The
//! switches `sedb` and `ifd_projection` give the paper's Table 1 ablation: ATP alone,
//! +IFD, +SEDB, both. The paper fixes 3 blocks of conv → BN → ReLU but not their widths
//! or pools; the defaults (128 filters 3×3, max-pool (1,4) after each block, so 64 mels
//! pool to one band and the frame rate is kept) are this crate's choice.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::crnn::PoolSize;
use super::{AuxOutputs, SedNet, SedOutput};
use crate::model::layers::{AtpHead, Conv2dGeometry, ConvBnRelu, MaxPool2d, TimeMask, Upsample};
use crate::model::ModelError;

/// One encoder block: conv → BN → ReLU and the max pool after it, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtpBlock {
    /// Output channels of the block's convolution.
    pub channels: usize,
    /// Max pooling after the block; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolSize>,
}

/// Parameters of ATP-SEDB. Input bands and classes come from the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AtpSedbConfig {
    /// Encoder blocks in order (3 in the paper).
    pub blocks: Vec<AtpBlock>,
    /// Convolution kernel size (odd; "same" padding; no bias before the batch norm).
    pub kernel: usize,
    /// Disentangled-feature dims: per class, how many leading embedding dimensions it
    /// uses (one entry per class, each in `1..=D`); none = every class uses all `D`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub df_dims: Option<Vec<usize>>,
    /// Whether the frame-level SED branch (SEDB) exists.
    pub sedb: bool,
    /// Whether the IFD projection head exists.
    pub ifd_projection: bool,
    /// Output size `P` of the IFD projection head.
    pub projection_dim: usize,
}

impl Default for AtpSedbConfig {
    /// 3 blocks of 128 filters 3×3 with max-pool (1, 4), SEDB and IFD projection (128)
    /// on (the paper's best configuration, "SEDB & IFD"), no DF.
    fn default() -> Self {
        let block = AtpBlock {
            channels: 128,
            pool: Some(PoolSize { time: 1, mel: 4 }),
        };
        Self {
            blocks: vec![block.clone(), block.clone(), block],
            kernel: 3,
            df_dims: None,
            sedb: true,
            ifd_projection: true,
            projection_dim: 128,
        }
    }
}

/// `Err(InvalidArch)` naming `field`, the `value` found and what is `expected`.
fn bad(field: String, value: String, expected: &str) -> std::result::Result<(), ModelError> {
    Err(ModelError::InvalidArch {
        field,
        value,
        expected: expected.to_string(),
    })
}

impl AtpSedbConfig {
    /// Checks every parameter for `n_mels` input bands and `n_classes` outputs.
    pub fn validate(&self, n_mels: usize, n_classes: usize) -> std::result::Result<(), ModelError> {
        if self.blocks.is_empty() || self.blocks.len() > 32 {
            return bad(
                "atp_sedb.blocks".into(),
                format!("{} blocks", self.blocks.len()),
                "1..=32 conv blocks",
            );
        }
        if self.kernel % 2 == 0 || self.kernel > 15 {
            return bad(
                "atp_sedb.kernel".into(),
                self.kernel.to_string(),
                "an odd size 1..=15",
            );
        }
        if n_classes == 0 {
            return bad("classes".into(), "0 classes".into(), "at least one class");
        }
        let mut mels = n_mels;
        for (i, b) in self.blocks.iter().enumerate() {
            if b.channels == 0 || b.channels > 4096 {
                return bad(
                    format!("atp_sedb.blocks[{i}].channels"),
                    b.channels.to_string(),
                    "1..=4096 channels",
                );
            }
            if let Some(p) = b.pool {
                if p.time == 0 || p.time > 64 {
                    return bad(
                        format!("atp_sedb.blocks[{i}].pool.time"),
                        p.time.to_string(),
                        "1..=64 frames",
                    );
                }
                if p.mel == 0 || mels / p.mel == 0 {
                    return bad(
                        format!("atp_sedb.blocks[{i}].pool.mel"),
                        p.mel.to_string(),
                        &format!(
                            "1..={mels} (the {mels} mel bands left of features.n_mels = {n_mels} must not pool to 0)"
                        ),
                    );
                }
                mels /= p.mel;
            }
        }
        let dim = self.embedding_dim(n_mels);
        if let Some(dims) = &self.df_dims {
            if dims.len() != n_classes {
                return bad(
                    "atp_sedb.df_dims".into(),
                    format!("{} entries", dims.len()),
                    &format!("one entry per class ({n_classes})"),
                );
            }
            if let Some((c, d)) = dims.iter().enumerate().find(|(_, &d)| d == 0 || d > dim) {
                return bad(
                    format!("atp_sedb.df_dims[{c}]"),
                    d.to_string(),
                    &format!("1..={dim} (the embedding size)"),
                );
            }
        }
        if self.ifd_projection && (self.projection_dim == 0 || self.projection_dim > 4096) {
            return bad(
                "atp_sedb.projection_dim".into(),
                self.projection_dim.to_string(),
                "1..=4096 dimensions",
            );
        }
        Ok(())
    }

    /// Fewest input frames whose time pools all leave ≥ 1 frame (product of the time
    /// pool sizes).
    pub fn min_frames(&self) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| b.pool.map(|p| p.time))
            .product()
    }

    /// Embedding size `D` = last block's channels × mel bands left after the pools.
    pub fn embedding_dim(&self, n_mels: usize) -> usize {
        let mels = self
            .blocks
            .iter()
            .filter_map(|b| b.pool.map(|p| p.mel))
            .fold(n_mels, |m, k| m.checked_div(k).unwrap_or(m));
        self.blocks.last().map_or(0, |b| b.channels) * mels
    }

    /// One-line description of the architecture.
    pub fn summary(&self) -> String {
        let mut c_in = 1;
        let mut parts = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let mut s = format!("{c_in}→{}", b.channels);
            if let Some(p) = b.pool {
                s.push_str(&format!(" max({},{})", p.time, p.mel));
            }
            parts.push(s);
            c_in = b.channels;
        }
        let df = match &self.df_dims {
            Some(d) => format!(" with DF dims {d:?}"),
            None => String::new(),
        };
        format!(
            "atp_sedb: conv{k}×{k}→BN→ReLU blocks {}; ATP head{df}; SEDB {}; IFD projection {}",
            parts.join(" → "),
            if self.sedb { "on" } else { "off" },
            if self.ifd_projection {
                format!("{}-d", self.projection_dim)
            } else {
                "off".into()
            },
            k = self.kernel,
        )
    }
}

/// The ATP-SEDB network. Tensors: `encoder.{i}.conv.weight`,
/// `encoder.{i}.bn.{weight,bias,running_mean,running_var}`, `atp.{att,cla}.{weight,bias}`,
/// and when enabled `sedb.{weight,bias}`, `projection.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct AtpSedb {
    /// Encoder blocks, each with its optional max pool.
    encoder: Vec<(ConvBnRelu, Option<MaxPool2d>)>,
    /// Main (predicting) branch.
    atp: AtpHead,
    /// Frame-level SED branch.
    sedb: Option<Linear>,
    /// Projection head for the IFD loss.
    projection: Option<Linear>,
    /// Input mel bands.
    n_mels: usize,
    /// Product of the time pools.
    min_frames: usize,
}

impl AtpSedb {
    /// Builds ATP-SEDB for `n_mels` bands and `n_classes` classes; validates `cfg`.
    pub fn new(
        cfg: &AtpSedbConfig,
        n_mels: usize,
        n_classes: usize,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        cfg.validate(n_mels, n_classes)?;
        let vbe = vb.pp("encoder");
        let mut encoder = Vec::with_capacity(cfg.blocks.len());
        let mut c_in = 1;
        for (i, b) in cfg.blocks.iter().enumerate() {
            let block = ConvBnRelu::new(
                c_in,
                b.channels,
                Conv2dGeometry::same(cfg.kernel),
                false,
                vbe.pp(i),
            )?;
            encoder.push((block, b.pool.map(|p| MaxPool2d::new(p.time, p.mel))));
            c_in = b.channels;
        }
        let dim = cfg.embedding_dim(n_mels);
        let atp = AtpHead::new(dim, n_classes, cfg.df_dims.as_deref(), vb.pp("atp"))?;
        let sedb = if cfg.sedb {
            Some(candle_nn::linear(dim, n_classes, vb.pp("sedb"))?)
        } else {
            None
        };
        let projection = if cfg.ifd_projection {
            Some(candle_nn::linear(
                dim,
                cfg.projection_dim,
                vb.pp("projection"),
            )?)
        } else {
            None
        };
        Ok(Self {
            encoder,
            atp,
            sedb,
            projection,
            n_mels,
            min_frames: cfg.min_frames(),
        })
    }

    /// The encoder's frame embeddings `h (B, T', D)` of log-mels `x (B, T, F)`.
    pub fn embed(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let full = TimeMask::full(b, t, x.dtype(), x.device());
        Ok(self.embed_masked(x, &full, train)?.0)
    }

    /// [`AtpSedb::embed`] of a zero-padded batch whose valid frames `mask` describes:
    /// the embeddings, zero at padded frames, and their mask.
    pub fn embed_masked(
        &self,
        x: &Tensor,
        mask: &TimeMask,
        train: bool,
    ) -> Result<(Tensor, TimeMask)> {
        super::check_input("ATP-SEDB", x, mask, self.n_mels, self.min_frames)?;
        let b = x.dim(0)?;
        // The first convolution reads the input's padding: make it zero.
        let mut h = mask.zero(x, 1)?.unsqueeze(1)?;
        let mut m = mask.clone();
        for (block, pool) in &self.encoder {
            h = block.forward_masked(&h, &m, train)?;
            m = block.out_mask(&m)?;
            if let Some(pool) = pool {
                (h, m) = pool.forward_masked(&h, &m)?;
            }
        }
        let (_, c, tp, fp) = h.dims4()?;
        let h = h.transpose(1, 2)?.contiguous()?.reshape((b, tp, c * fp))?;
        Ok((h, m))
    }
}

impl SedNet for AtpSedb {
    fn forward_with_mask(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<SedOutput> {
        let (h, hm) = self.embed_masked(x, mask, train)?;
        let atp = self.atp.forward_masked(&h, &hm)?;
        let up = |f: &Tensor| Upsample::Linear.apply_masked(f, &hm, mask);
        let frame_secondary = match &self.sedb {
            Some(lin) => Some(up(&candle_nn::ops::sigmoid(&lin.forward(&h)?)?)?),
            None => None,
        };
        let (embeddings, embedding_lengths) = match &self.projection {
            Some(lin) => (
                Some(hm.zero(&lin.forward(&h)?, 1)?),
                Some(hm.lengths().to_vec()),
            ),
            None => (None, None),
        };
        Ok(SedOutput {
            frame: up(&atp.frame)?,
            clip: atp.clip,
            aux: AuxOutputs {
                embeddings,
                embedding_lengths,
                frame_secondary,
                ..AuxOutputs::default()
            },
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

    fn tiny(sedb: bool, ifd: bool) -> AtpSedbConfig {
        AtpSedbConfig {
            blocks: vec![
                AtpBlock {
                    channels: 2,
                    pool: Some(PoolSize { time: 2, mel: 2 }),
                },
                AtpBlock {
                    channels: 2,
                    pool: None,
                },
            ],
            projection_dim: 3,
            sedb,
            ifd_projection: ifd,
            df_dims: Some(vec![3, 4]),
            ..AtpSedbConfig::default()
        }
    }

    #[test]
    fn default_is_valid_for_64_mels_and_names_bad_fields() {
        let c = AtpSedbConfig::default();
        c.validate(64, 10).unwrap();
        assert_eq!(c.min_frames(), 1);
        assert_eq!(c.embedding_dim(64), 128);
        let e = c.validate(32, 10).unwrap_err().to_string();
        assert!(e.contains("atp_sedb.blocks[2].pool.mel"), "{e}");
        let df = AtpSedbConfig {
            df_dims: Some(vec![128, 0]),
            ..AtpSedbConfig::default()
        };
        assert!(df
            .validate(64, 3)
            .unwrap_err()
            .to_string()
            .contains("atp_sedb.df_dims"));
        let e = df.validate(64, 2).unwrap_err().to_string();
        assert!(
            e.contains("atp_sedb.df_dims[1]") && e.contains("1..=128"),
            "{e}"
        );
        let k = AtpSedbConfig {
            kernel: 2,
            ..AtpSedbConfig::default()
        };
        assert!(k
            .validate(64, 1)
            .unwrap_err()
            .to_string()
            .contains("atp_sedb.kernel"));
    }

    #[test]
    fn switches_add_and_remove_the_branches() {
        for (sedb, ifd) in [(false, false), (true, false), (false, true), (true, true)] {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 1, DType::F32, &Device::Cpu);
            let cfg = tiny(sedb, ifd);
            let net = AtpSedb::new(&cfg, 8, 2, vb).unwrap();
            assert_eq!(net.min_frames(), 2);
            for t in [2, 3, 9] {
                let x = gradcheck::rand_tensor(&[2, t, 8], t as u64)
                    .to_dtype(DType::F32)
                    .unwrap();
                let out = net.forward_t(&x, false).unwrap();
                assert_eq!(out.frame.dims(), &[2, t, 2]);
                assert_eq!(out.clip.dims(), &[2, 2]);
                assert_eq!(
                    out.aux.frame_secondary.map(|f| f.dims().to_vec()),
                    sedb.then(|| vec![2, t, 2])
                );
                assert_eq!(
                    out.aux.embeddings.map(|f| f.dims().to_vec()),
                    ifd.then(|| vec![2, t / 2, 3])
                );
                assert!(out.aux.reconstruction.is_none() && out.aux.scene_logits.is_none());
            }
            let names: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
            assert_eq!(names.iter().any(|n| n.starts_with("sedb.")), sedb);
            assert_eq!(names.iter().any(|n| n.starts_with("projection.")), ifd);
            let x = Tensor::zeros((1, 1, 8), DType::F32, &Device::Cpu).unwrap();
            assert!(net.forward_t(&x, false).is_err());
        }
    }

    #[test]
    fn training_updates_the_batch_norm_running_statistics() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 1, DType::F64, &Device::Cpu);
        let net = AtpSedb::new(&tiny(false, false), 4, 2, vb).unwrap();
        let stat = |name: &str| -> Vec<f64> {
            let v = map.data().lock().unwrap().get(name).unwrap().clone();
            v.as_tensor().to_vec1().unwrap()
        };
        let x = gradcheck::rand_tensor(&[2, 4, 4], 1);
        let before = stat("encoder.0.bn.running_mean");
        let eval = net.forward_t(&x, false).unwrap().clip;
        assert_eq!(stat("encoder.0.bn.running_mean"), before);
        net.forward_t(&x, true).unwrap();
        let after = stat("encoder.1.bn.running_var");
        assert!(after.iter().all(|v| (v - 1.0).abs() > 1e-9), "{after:?}");
        // Inference now uses the updated statistics.
        let eval2 = net.forward_t(&x, false).unwrap().clip;
        let d = (eval - eval2).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f64>().unwrap() > 1e-9);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let net = AtpSedb::new(&tiny(true, true), 4, 2, vb).unwrap();
        for (name, seed) in [("encoder.0.bn.weight", 5), ("encoder.1.bn.bias", 6)] {
            let v = map.data().lock().unwrap().get(name).unwrap().clone();
            v.set(&gradcheck::rand_tensor(&[2], seed)).unwrap();
        }
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 5, 4], 3)).unwrap();
        let out = |f: fn(SedOutput) -> Tensor| {
            let net = &net;
            let x = &x;
            move || net.forward_t(x.as_tensor(), true).map(f)
        };
        gradcheck::check(&map, &[("x", &x)], out(|o| o.clip), 1e-5);
        gradcheck::check(&map, &[("x", &x)], out(|o| o.frame), 1e-5);
        gradcheck::check(
            &map,
            &[("x", &x)],
            out(|o| o.aux.frame_secondary.unwrap()),
            1e-5,
        );
        gradcheck::check(&map, &[("x", &x)], out(|o| o.aux.embeddings.unwrap()), 1e-5);
    }

    #[test]
    fn masked_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let net = AtpSedb::new(&tiny(true, true), 4, 2, vb).unwrap();
        let lengths = [5, 3];
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 5, 4], 3)).unwrap();
        let all = || {
            let o = net.forward_masked(x.as_tensor(), &lengths, true)?;
            gradcheck::flat_outputs(o)
        };
        gradcheck::check_masked(&map, ("x", &x), 1, &lengths, all, 1e-5);
    }
}
