//! Context-attention CRNN (paper 002, "Sound event detection with soft labels and
//! self-attention"): a local CRNN encodes the target segment (the query), a global CRNN
//! encodes the whole context (keys and values), additive attention (paper eq. 3) gathers
//! the context relevant to each target frame, and the concatenation [local, attended
//! context] goes through fully connected layers to the event scores; an optional scene
//! head classifies the acoustic scene.
//!
//! # Target segments and context inside one streaming window
//!
//! The paper predicts one target segment (1 s) from a chunk of audio around it. Here the
//! input window of `T` frames is the context, and it is tiled by target segments of
//! `L = min(segment_frames, T)` frames: segment `i` starts at `min(i·L, T − L)`, so
//! every segment is a full `L` frames and the last one overlaps its neighbour when `L`
//! does not divide `T` (the last `L` frames are all taken from the last segment). The local CRNN runs
//! on each segment on its own (it sees only its segment), the global CRNN on the whole
//! window; every frame of the window is then a target frame, so the network gives frame
//! scores for all `T` frames and works for any `T ≥ min_frames`.
//!
//! ```text
//! x (B,T,F) ─ segments (B·n,L,F) → local CRNN → (B·n,L',Dq) → interp. to L → q (B,T,Dq)
//!           └──────────────────────→ global CRNN → k = v (B,T'',Dk)
//! c = AdditiveAttention(q, k, v) (B,T,Dk);  z = [q, c] (B,T,Dq+Dk)
//! frame = clamp(σ(fc2(ReLU(fc1(z)))), 1e-7, 1) (B,T,K);  clip = Σp²/Σp over T
//! scene logits = scene(mean_T z) (B,S)   (only when n_scenes > 0)
//! ```
//!
//! A CRNN encoder is `[BatchNorm2d → Conv k×k → LeakyReLU → LP-pool?] × blocks →
//! BiGRU` (the layers of the CDur CRNN); its output has `2 × gru_hidden` features.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::crnn::{validate_blocks, CrnnBlock, PoolSize};
use super::{AuxOutputs, SedNet, SedOutput};
use crate::model::layers::{
    linear_softmax_pool_masked, AdditiveAttention, CrnnEncoder, EncoderBlock, EncoderSpec,
    TimeMask, Upsample,
};
use crate::model::ModelError;

/// One CRNN encoder (local or global branch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// Conv blocks in order, each optionally followed by LP pooling.
    pub blocks: Vec<CrnnBlock>,
    /// GRU hidden size per direction (the encoder outputs twice this).
    pub gru_hidden: usize,
}

impl EncoderConfig {
    /// Product of the time pools: fewest frames the encoder accepts.
    pub fn min_frames(&self) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| b.pool.map(|p| p.time))
            .product()
    }

    /// Output feature size (`2 × gru_hidden`).
    pub fn out_dim(&self) -> usize {
        2 * self.gru_hidden
    }

    /// Checks the encoder named `name` for `n_mels` bands.
    fn validate(&self, name: &str, n_mels: usize) -> std::result::Result<(), ModelError> {
        if self.gru_hidden == 0 || self.gru_hidden > 4096 {
            return bad(
                format!("{name}.gru_hidden"),
                self.gru_hidden.to_string(),
                "1..=4096 units",
            );
        }
        validate_blocks(name, &self.blocks, n_mels)?;
        Ok(())
    }

    /// Short description, e.g. `1→32 LP(2,4) → 32→64; BiGRU 2×32`.
    fn summary(&self) -> String {
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
        format!("{}; BiGRU 2×{}", parts.join(" → "), self.gru_hidden)
    }
}

/// Parameters of the context-attention CRNN. Input bands and classes come from the
/// model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextAttentionConfig {
    /// Local CRNN, run on each target segment (the query).
    pub local: EncoderConfig,
    /// Global CRNN, run on the whole window (keys and values).
    pub global: EncoderConfig,
    /// Convolution kernel size of both encoders (odd; "same" padding).
    pub kernel: usize,
    /// Exponent of the LP pooling.
    pub lp_p: f64,
    /// Negative slope of the LeakyReLU.
    pub leaky_slope: f64,
    /// Target segment length in frames (clamped to the window length).
    pub segment_frames: usize,
    /// Hidden units of the additive attention.
    pub att_dim: usize,
    /// Width of the first fully connected layer after the fusion.
    pub fc_hidden: usize,
    /// Acoustic scenes of the scene head (0 = no scene head).
    pub n_scenes: usize,
}

impl Default for ContextAttentionConfig {
    /// Both encoders 1→32 LP(2,4) → 32→64 LP(2,4) → 64→64 LP(1,4) (64 mels → 1 band),
    /// local BiGRU 2×32, global BiGRU 2×64; 3×3 kernels, LP p = 4, LeakyReLU 0.1;
    /// 1-s targets (50 frames at 50 frames/s, the paper's segment); attention 32 units;
    /// FC 64; no scene head. The paper uses the DCASE 2023 task 4b baseline CRNN for
    /// both branches without giving sizes: these widths are this crate's choice.
    fn default() -> Self {
        let blocks = vec![
            CrnnBlock {
                channels: 32,
                pool: Some(PoolSize { time: 2, mel: 4 }),
            },
            CrnnBlock {
                channels: 64,
                pool: Some(PoolSize { time: 2, mel: 4 }),
            },
            CrnnBlock {
                channels: 64,
                pool: Some(PoolSize { time: 1, mel: 4 }),
            },
        ];
        Self {
            local: EncoderConfig {
                blocks: blocks.clone(),
                gru_hidden: 32,
            },
            global: EncoderConfig {
                blocks,
                gru_hidden: 64,
            },
            kernel: 3,
            lp_p: 4.0,
            leaky_slope: 0.1,
            segment_frames: 50,
            att_dim: 32,
            fc_hidden: 64,
            n_scenes: 0,
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

impl ContextAttentionConfig {
    /// The shared encoder settings of one branch (`local` or `global`).
    pub fn encoder_spec(&self, enc: &EncoderConfig) -> EncoderSpec {
        EncoderSpec {
            blocks: enc
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
            gru_hidden: enc.gru_hidden,
        }
    }

    /// Checks every parameter for `n_mels` input bands and `n_classes` outputs.
    pub fn validate(&self, n_mels: usize, n_classes: usize) -> std::result::Result<(), ModelError> {
        super::check_conv_params(
            "context_attention",
            self.kernel,
            self.lp_p,
            self.leaky_slope,
        )?;
        if n_classes == 0 {
            return bad("classes".into(), "0 classes".into(), "at least one class");
        }
        self.local.validate("context_attention.local", n_mels)?;
        self.global.validate("context_attention.global", n_mels)?;
        let local_min = self.local.min_frames();
        if self.segment_frames < local_min || self.segment_frames > 100_000 {
            return bad(
                "context_attention.segment_frames".into(),
                self.segment_frames.to_string(),
                &format!("{local_min}..=100000 frames (at least the local encoder's time pooling)"),
            );
        }
        for (field, v) in [
            ("context_attention.att_dim", self.att_dim),
            ("context_attention.fc_hidden", self.fc_hidden),
        ] {
            if v == 0 || v > 4096 {
                return bad(field.into(), v.to_string(), "1..=4096 units");
            }
        }
        if self.n_scenes > 1024 {
            return bad(
                "context_attention.n_scenes".into(),
                self.n_scenes.to_string(),
                "0..=1024 scenes (0 = no scene head)",
            );
        }
        Ok(())
    }

    /// Fewest input frames: both encoders' time pools must leave ≥ 1 frame.
    pub fn min_frames(&self) -> usize {
        self.local.min_frames().max(self.global.min_frames())
    }

    /// One-line description of the architecture.
    pub fn summary(&self) -> String {
        format!(
            "context_attention: BN→conv{k}×{k}→LeakyReLU({}) LP p = {}; local CRNN {} on \
             {}-frame target segments; global CRNN {}; additive attention {} units; FC {}; {}",
            self.leaky_slope,
            self.lp_p,
            self.local.summary(),
            self.segment_frames,
            self.global.summary(),
            self.att_dim,
            self.fc_hidden,
            if self.n_scenes == 0 {
                "no scene head".to_string()
            } else {
                format!("scene head {} scenes", self.n_scenes)
            },
            k = self.kernel,
        )
    }
}

/// Start frames of the target segments of a `t`-frame window with segments of `l`
/// frames: `min(i·l, t − l)` for `i < ⌈t/l⌉` (`l` is clamped to `1..=t`; an empty
/// window has no segments).
pub fn segment_starts(t: usize, l: usize) -> Vec<usize> {
    if t == 0 {
        return Vec::new();
    }
    let l = l.clamp(1, t);
    let n = t.div_ceil(l);
    (0..n).map(|i| (i * l).min(t - l)).collect()
}

/// The context-attention CRNN. Tensors: `local.blocks.{i}.{bn,conv}.*`,
/// `local.gru.{fwd,bwd}.*`, the same under `global.`, `attention.{query,key,score}.*`,
/// `fc1.{weight,bias}`, `fc2.{weight,bias}`, and with a scene head `scene.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct ContextAttention {
    /// Encoder of the target segments.
    local: CrnnEncoder,
    /// Encoder of the whole window.
    global: CrnnEncoder,
    /// Attention from local frames over the global context.
    attention: AdditiveAttention,
    /// First fully connected layer after the fusion.
    fc1: Linear,
    /// Event logits.
    fc2: Linear,
    /// Scene logits (when `n_scenes > 0`).
    scene: Option<Linear>,
    /// Target segment length.
    segment_frames: usize,
    /// Input mel bands.
    n_mels: usize,
    /// Fewest frames accepted.
    min_frames: usize,
}

impl ContextAttention {
    /// Builds the network for `n_mels` bands and `n_classes` classes; validates `cfg`.
    pub fn new(
        cfg: &ContextAttentionConfig,
        n_mels: usize,
        n_classes: usize,
        vb: VarBuilder,
    ) -> std::result::Result<Self, ModelError> {
        cfg.validate(n_mels, n_classes)?;
        let local = CrnnEncoder::new(&cfg.encoder_spec(&cfg.local), n_mels, vb.pp("local"))?;
        let global = CrnnEncoder::new(&cfg.encoder_spec(&cfg.global), n_mels, vb.pp("global"))?;
        let (dq, dk) = (cfg.local.out_dim(), cfg.global.out_dim());
        let attention = AdditiveAttention::new(dq, dk, cfg.att_dim, vb.pp("attention"))?;
        let fc1 = candle_nn::linear(dq + dk, cfg.fc_hidden, vb.pp("fc1"))?;
        let fc2 = candle_nn::linear(cfg.fc_hidden, n_classes, vb.pp("fc2"))?;
        let scene = if cfg.n_scenes > 0 {
            Some(candle_nn::linear(dq + dk, cfg.n_scenes, vb.pp("scene"))?)
        } else {
            None
        };
        Ok(Self {
            local,
            global,
            attention,
            fc1,
            fc2,
            scene,
            segment_frames: cfg.segment_frames,
            n_mels,
            min_frames: cfg.min_frames(),
        })
    }

    /// Local features of every frame, `(B, T, Dq)`: the local CRNN on each target
    /// segment, resampled to the segment's frames and put back in window order.
    #[cfg(test)]
    fn local_features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        self.local_features_masked(x, &TimeMask::full(b, t, x.dtype(), x.device()), train)
    }

    /// Local features of a zero-padded batch, `(B, T, Dq)`, zero at padded frames:
    /// each clip is tiled by its own target segments (of `min(segment_frames, len)`
    /// frames, see [`segment_starts`]), the segments of all clips run through the local
    /// CRNN as one padded batch, and each frame takes the features of its segment.
    fn local_features_masked(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<Tensor> {
        let (b, t, f) = x.dims3()?;
        let l_max = self.segment_frames.min(t);
        // Rows of x (B·T, F) that make the segments (N·L_max, F); rows past a short
        // segment's end are padding (the encoder never reads them).
        let mut rows: Vec<u32> = Vec::new();
        let mut seg_lens: Vec<usize> = Vec::new();
        // Per clip: index of its first segment, its starts and its segment length.
        let mut tiling: Vec<(usize, Vec<usize>, usize)> = Vec::with_capacity(b);
        for (bi, &len) in mask.lengths().iter().enumerate() {
            let l = self.segment_frames.min(len);
            let starts = segment_starts(len, l);
            for &s0 in &starts {
                rows.extend((0..l_max).map(|j| (bi * t + s0 + j.min(l - 1)) as u32));
                seg_lens.push(l);
            }
            tiling.push((seg_lens.len() - starts.len(), starts, l));
        }
        let n = seg_lens.len();
        let segs = if n == b && l_max == t {
            x.clone() // one segment per clip: the clip itself
        } else {
            x.reshape((b * t, f))?
                .index_select(&Tensor::from_vec(rows, n * l_max, x.device())?, 0)?
                .reshape((n, l_max, f))?
        };
        let seg_mask = mask.with_lengths(seg_lens, l_max)?;
        let (q, qm) = self.local.forward_masked(&segs, &seg_mask, train)?; // (N, L', Dq)
        let q = Upsample::Linear.apply_masked(&q, &qm, &seg_mask)?; // (N, L_max, Dq)
        let dq = q.dim(2)?;
        if n == b && l_max == t {
            return Ok(q);
        }
        let mut idx: Vec<u32> = Vec::with_capacity(b * t);
        for (&len, (first, starts, l)) in mask.lengths().iter().zip(&tiling) {
            let k = starts.len();
            for j in 0..t {
                let row = if j < len {
                    let i = if j >= len - l { k - 1 } else { j / l };
                    (first + i) * l_max + j - starts[i]
                } else {
                    0 // padding, zeroed below
                };
                idx.push(row as u32);
            }
        }
        let q = q
            .reshape((n * l_max, dq))?
            .index_select(&Tensor::from_vec(idx, b * t, x.device())?, 0)?
            .reshape((b, t, dq))?;
        mask.zero(&q, 1)
    }
}

impl SedNet for ContextAttention {
    fn forward_with_mask(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<SedOutput> {
        super::check_input("context-attention", x, mask, self.n_mels, self.min_frames)?;
        let q = self.local_features_masked(x, mask, train)?; // (B, T, Dq)
        let (k, km) = self.global.forward_masked(x, mask, train)?; // (B, T'', Dk)
        let att = self.attention.forward_masked(&q, &k, &k, &km)?;
        let z = Tensor::cat(&[&q, &att.context], 2)?; // (B, T, Dq + Dk)
        let logits = self.fc2.forward(&self.fc1.forward(&z)?.relu()?)?;
        let frame = candle_nn::ops::sigmoid(&logits)?.clamp(1e-7, 1.0)?;
        let clip = linear_softmax_pool_masked(&frame, mask)?.clamp(1e-7, 1.0)?;
        let scene_logits = match &self.scene {
            Some(lin) => {
                let pooled = if mask.is_padded() {
                    mask.zero(&z, 1)?
                        .sum(1)?
                        .broadcast_div(&mask.lengths_tensor(2, z.dtype())?)?
                } else {
                    z.mean(1)?
                };
                Some(lin.forward(&pooled)?)
            }
            None => None,
        };
        Ok(SedOutput {
            frame: mask.zero(&frame, 1)?,
            clip,
            aux: AuxOutputs {
                scene_logits,
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

    fn tiny(n_scenes: usize) -> ContextAttentionConfig {
        let enc = |time, hidden| EncoderConfig {
            blocks: vec![CrnnBlock {
                channels: 2,
                pool: Some(PoolSize { time, mel: 2 }),
            }],
            gru_hidden: hidden,
        };
        ContextAttentionConfig {
            local: enc(1, 2),
            global: enc(2, 2),
            segment_frames: 3,
            att_dim: 2,
            fc_hidden: 3,
            n_scenes,
            ..ContextAttentionConfig::default()
        }
    }

    #[test]
    fn segments_tile_the_window_and_the_last_one_is_full() {
        assert_eq!(segment_starts(10, 5), vec![0, 5]);
        assert_eq!(segment_starts(11, 5), vec![0, 5, 6]);
        assert_eq!(segment_starts(4, 4), vec![0]);
        assert_eq!(segment_starts(3, 1), vec![0, 1, 2]);
        assert_eq!(segment_starts(3, 9), vec![0]);
        assert_eq!(segment_starts(3, 0), vec![0, 1, 2]);
        assert!(segment_starts(0, 4).is_empty());
    }

    #[test]
    fn default_is_valid_and_bad_fields_are_named() {
        let c = ContextAttentionConfig::default();
        c.validate(64, 11).unwrap();
        assert_eq!(c.min_frames(), 4);
        let e = ContextAttentionConfig {
            segment_frames: 2,
            ..c.clone()
        }
        .validate(64, 11)
        .unwrap_err()
        .to_string();
        assert!(e.contains("context_attention.segment_frames"), "{e}");
        let e = c.validate(16, 11).unwrap_err().to_string();
        assert!(
            e.contains("context_attention.local.blocks[2].pool.mel"),
            "{e}"
        );
        let e = ContextAttentionConfig { att_dim: 0, ..c }
            .validate(64, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("att_dim"), "{e}");
    }

    /// A local frame's features depend only on its own target segment.
    #[test]
    fn local_features_see_only_their_segment() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 1, DType::F64, &Device::Cpu);
        let net = ContextAttention::new(&tiny(0), 4, 2, vb).unwrap();
        let x = gradcheck::rand_tensor(&[1, 7, 4], 1); // segments at 0, 3, 4
        let q = net.local_features(&x, false).unwrap();
        let x2 = x
            .slice_assign(&[0..1, 6..7, 0..4], &gradcheck::rand_tensor(&[1, 1, 4], 9))
            .unwrap();
        let q2 = net.local_features(&x2, false).unwrap();
        let d: Vec<f64> = (q - q2)
            .unwrap()
            .abs()
            .unwrap()
            .max(2)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        // Frames 0..3 (first segment) are unchanged; 4..7 (last segment) change.
        assert!(d[..3].iter().all(|&v| v == 0.0), "{d:?}");
        assert!(d[4..].iter().all(|&v| v > 0.0), "{d:?}");
        // Segment 1 (frames 3..6) lost frames 4, 5 to the last segment; frame 3 stays.
        assert_eq!(d[3], 0.0);
    }

    #[test]
    fn forward_shapes_for_several_lengths_with_and_without_scenes() {
        for n_scenes in [0, 3] {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 1, DType::F32, &Device::Cpu);
            let net = ContextAttention::new(&tiny(n_scenes), 4, 2, vb).unwrap();
            assert_eq!(net.min_frames(), 2);
            for t in [2, 3, 5, 8] {
                let x = gradcheck::rand_tensor(&[2, t, 4], t as u64)
                    .to_dtype(DType::F32)
                    .unwrap();
                let out = net.forward_t(&x, false).unwrap();
                assert_eq!(out.frame.dims(), &[2, t, 2]);
                assert_eq!(out.clip.dims(), &[2, 2]);
                assert_eq!(
                    out.aux.scene_logits.map(|s| s.dims().to_vec()),
                    (n_scenes > 0).then(|| vec![2, n_scenes])
                );
            }
            let x = Tensor::zeros((1, 1, 4), DType::F32, &Device::Cpu).unwrap();
            assert!(net.forward_t(&x, false).is_err());
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let net = ContextAttention::new(&tiny(2), 4, 2, vb).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 5, 4], 3)).unwrap();
        let out = |f: fn(SedOutput) -> Tensor| {
            let net = &net;
            let x = &x;
            move || net.forward_t(x.as_tensor(), true).map(f)
        };
        gradcheck::check(&map, &[("x", &x)], out(|o| o.frame), 1e-5);
        gradcheck::check(&map, &[("x", &x)], out(|o| o.clip), 1e-5);
        gradcheck::check(
            &map,
            &[("x", &x)],
            out(|o| o.aux.scene_logits.unwrap()),
            1e-5,
        );
    }

    #[test]
    fn masked_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let net = ContextAttention::new(&tiny(2), 4, 2, vb).unwrap();
        let lengths = [5, 3];
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 5, 4], 3)).unwrap();
        let all = || {
            let o = net.forward_masked(x.as_tensor(), &lengths, true)?;
            gradcheck::flat_outputs(o)
        };
        gradcheck::check_masked(&map, ("x", &x), 1, &lengths, all, 1e-5);
    }
}
