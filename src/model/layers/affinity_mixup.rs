//! Affinity mixup (AM, Izadi et al., paper 000, eqs. 3–4): a per-class time×time
//! affinity matrix computed from one encoder feature at a time resolution, used to mix
//! the later encoder feature and the decoder's frame scores at that resolution.
//!
//! ```text
//! X (B,b,t,f) → X̃ = W X (1×1 conv, b→c) → D[c,i,j] = Σ_f (X̃[c,i,f] − X̃[c,j,f])²
//! A = softmax_j(−D / (τ √f))                                   (B, c, t, t)   eq. 3
//! encoder: Ã = mean_c A_c (rows sum to 1, Ã ∈ [0, 1]);  X′ ← Ã X′          eq. 4
//! decoder: Z̃[:, k] = A_k Z′[:, k] for every class k
//! ```
//!
//! Eq. 4 is printed as `Ã = mean_c exp(A_c)` with `Ã ∈ [0, 1]`, which cannot both
//! hold for the `A` of eq. 3: `exp` of a softmax lies in `[1, e]`, so every row of `Ã`
//! sums to about `t` and `Ã X′` is dominated by the clip's sum over time, the same for
//! every frame. Read with `A` as a log-softmax (as PyTorch code often keeps it),
//! `exp(A)` is the softmax and `Ã` is the class mean of the affinities, in `[0, 1]`
//! with unit rows. hark uses that reading by default ([`EncoderAffinity::Softmax`])
//! and keeps the printed one ([`EncoderAffinity::Exp`], optionally row-normalised) for
//! the ablation that compares them.
//!
//! Gradients flow through `A` unless the mixing is told to detach it (the paper's
//! Table 7 ablation, where event-F1 collapses without them).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::conv::{Conv2d, Conv2dGeometry};
use super::mask::TimeMask;

/// The affinity of one time resolution: a bias-free 1×1 projection `W (c, b)` (tensor
/// `proj.weight`, shape `(c, b, 1, 1)`) and the temperature τ.
#[derive(Debug, Clone)]
pub struct Affinity {
    /// Projection of the `b` feature channels to `c` class channels.
    proj: Conv2d,
    /// Temperature τ (> 0; 1 in the paper).
    tau: f64,
}

impl Affinity {
    /// An affinity for features of `channels` channels, projected to `n_classes`
    /// class channels, with temperature `tau` (> 0, validated by the caller).
    pub fn new(channels: usize, n_classes: usize, tau: f64, vb: VarBuilder) -> Result<Self> {
        let geom = Conv2dGeometry {
            kernel: (1, 1),
            stride: (1, 1),
            padding: (0, 0),
        };
        Ok(Self {
            proj: Conv2d::new(channels, n_classes, geom, false, vb.pp("proj"))?,
            tau,
        })
    }

    /// The affinity matrices `A (B, c, t, t)` of feature `x (B, b, t, f)` (eq. 3);
    /// each row sums to 1.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t) = (x.dim(0)?, x.dim(2)?);
        self.forward_masked(x, &TimeMask::full(b, t, x.dtype(), x.device()))
    }

    /// [`Affinity::forward`] of a padded batch (time on axis 2 of `x`): the softmax of
    /// each row runs over valid frames only, so padded frames get affinity 0.
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask) -> Result<Tensor> {
        let f = x.dim(3)?;
        let xt = self.proj.forward(x)?; // (B, c, t, f)
        let sq = xt.sqr()?.sum_keepdim(3)?; // (B, c, t, 1)
        let gram = xt.matmul(&xt.transpose(2, 3)?)?; // (B, c, t, t)
        let d2 = sq
            .broadcast_add(&sq.transpose(2, 3)?)?
            .sub(&(gram * 2.0)?)?
            .relu()?; // rounding can make the diagonal slightly negative
        let logits = (d2 * (-1.0 / (self.tau * (f as f64).sqrt())))?;
        mask.softmax(&logits, 3)
    }
}

/// How the encoder turns the per-class affinities `A (B, c, t, t)` into the one
/// time-mixing matrix `Ã (B, t, t)` of eq. 4 (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderAffinity {
    /// `Ã = mean_c A_c`: in `[0, 1]`, rows sum to 1 (eq. 4 with `A` read as a
    /// log-softmax).
    #[default]
    Softmax,
    /// `Ã = mean_c exp(A_c)`, eq. 4 as printed: rows sum to about `t`.
    Exp,
    /// `mean_c exp(A_c)` with each row divided by its sum.
    ExpNormalized,
}

impl EncoderAffinity {
    /// The name used in config and model files.
    pub fn name(self) -> &'static str {
        match self {
            EncoderAffinity::Softmax => "softmax",
            EncoderAffinity::Exp => "exp",
            EncoderAffinity::ExpNormalized => "exp_normalized",
        }
    }
}

/// Mixes an encoder feature `x (B, b', t, f')` with the class-averaged affinity `Ã`
/// of `a (B, c, t, t)` (eq. 4, formed as `kind` says): `x'[·, i] = Σ_j Ã[i, j] x[·, j]`
/// for every channel. With `detach`, no gradient flows into `a`. `mask` describes the
/// time axis (padded frames `j` get weight 0 in `Ã`, and padded rows of the output are
/// zero).
pub fn mix_encoder(
    a: &Tensor,
    x: &Tensor,
    kind: EncoderAffinity,
    detach: bool,
    mask: &TimeMask,
) -> Result<Tensor> {
    let a = if detach { a.detach() } else { a.clone() };
    let at = match kind {
        // A from `Affinity::forward_masked` is already 0 at padded columns.
        EncoderAffinity::Softmax => mask.zero(&a.mean(1)?, 2)?,
        // exp(0) = 1: the masked columns must be zeroed after the exponential.
        EncoderAffinity::Exp => mask.zero(&a.exp()?.mean(1)?, 2)?,
        EncoderAffinity::ExpNormalized => {
            let at = mask.zero(&a.exp()?.mean(1)?, 2)?;
            at.broadcast_div(&at.sum_keepdim(2)?)?
        }
    }; // (B, t, t)
    let (b, c, t, f) = x.dims4()?;
    if at.dims() != [b, t, t] {
        candle_core::bail!(
            "affinity {:?} does not match the encoder feature {:?}",
            at.shape(),
            x.shape()
        );
    }
    // (B, t, t) × (B, t, c·f) after moving time first: one batched product.
    let xt = x.permute((0, 2, 1, 3))?.reshape((b, t, c * f))?;
    let y = at
        .matmul(&xt)?
        .reshape((b, t, c, f))?
        .permute((0, 2, 1, 3))?
        .contiguous()?;
    mask.zero(&y, 2)
}

/// Mixes decoder frame scores `z (B, t, c)` with the per-class affinity `a (B, c, t, t)`:
/// `z̃[i, k] = Σ_j A[k, i, j] z[j, k]`. With `detach`, no gradient flows into `a`.
/// `mask` describes the time axis (an `a` from [`Affinity::forward_masked`] is already
/// zero at padded `j`; padded rows of the output are zero).
pub fn mix_decoder(a: &Tensor, z: &Tensor, detach: bool, mask: &TimeMask) -> Result<Tensor> {
    let a = if detach { a.detach() } else { a.clone() };
    let (b, t, c) = z.dims3()?;
    if a.dims() != [b, c, t, t] {
        candle_core::bail!(
            "affinity {:?} does not match the decoder scores {:?}",
            a.shape(),
            z.shape()
        );
    }
    let zc = z.transpose(1, 2)?.contiguous()?.unsqueeze(3)?; // (B, c, t, 1)
    let y = a.matmul(&zc)?.squeeze(3)?.transpose(1, 2)?.contiguous()?;
    mask.zero(&y, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::D;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    const ALL_KINDS: [EncoderAffinity; 3] = [
        EncoderAffinity::Softmax,
        EncoderAffinity::Exp,
        EncoderAffinity::ExpNormalized,
    ];

    fn full(b: usize, t: usize) -> TimeMask {
        TimeMask::full(b, t, DType::F64, &Device::Cpu)
    }

    #[test]
    fn affinity_matches_its_definition() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let aff = Affinity::new(2, 3, 0.7, vb).unwrap();
        let x = gradcheck::rand_tensor(&[1, 2, 4, 3], 1);
        let a = aff.forward(&x).unwrap();
        assert_eq!(a.dims(), &[1, 3, 4, 4]);
        let w: Vec<Vec<f64>> = map.data().lock().unwrap()["proj.weight"]
            .as_tensor()
            .reshape((3, 2))
            .unwrap()
            .to_vec2()
            .unwrap();
        let xv: Vec<Vec<Vec<f64>>> = x.squeeze(0).unwrap().to_vec3().unwrap();
        let av: Vec<Vec<Vec<f64>>> = a.squeeze(0).unwrap().to_vec3().unwrap();
        let proj = |k: usize, t: usize, f: usize| w[k][0] * xv[0][t][f] + w[k][1] * xv[1][t][f];
        for (k, ak) in av.iter().enumerate() {
            for (i, row) in ak.iter().enumerate() {
                let logits: Vec<f64> = (0..4)
                    .map(|j| {
                        let d2: f64 = (0..3)
                            .map(|f| (proj(k, i, f) - proj(k, j, f)).powi(2))
                            .sum();
                        -d2 / (0.7 * 3f64.sqrt())
                    })
                    .collect();
                let z: f64 = logits.iter().map(|l| l.exp()).sum();
                for j in 0..4 {
                    assert!((row[j] - logits[j].exp() / z).abs() < 1e-12, "{k} {i} {j}");
                }
            }
        }
    }

    #[test]
    fn encoder_and_decoder_mixing_match_their_definitions() {
        let a =
            candle_nn::ops::softmax(&gradcheck::rand_tensor(&[1, 2, 3, 3], 4), D::Minus1).unwrap();
        let av: Vec<Vec<Vec<f64>>> = a.squeeze(0).unwrap().to_vec3().unwrap();
        let x = gradcheck::rand_tensor(&[1, 2, 3, 2], 5);
        let xv: Vec<Vec<Vec<f64>>> = x.squeeze(0).unwrap().to_vec3().unwrap();
        for kind in ALL_KINDS {
            let y: Vec<Vec<Vec<f64>>> = mix_encoder(&a, &x, kind, false, &full(1, 3))
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec3()
                .unwrap();
            for i in 0..3 {
                let g = |v: f64| {
                    if kind == EncoderAffinity::Softmax {
                        v
                    } else {
                        v.exp()
                    }
                };
                let at: Vec<f64> = (0..3)
                    .map(|j| (g(av[0][i][j]) + g(av[1][i][j])) / 2.0)
                    .collect();
                let s: f64 = if kind == EncoderAffinity::ExpNormalized {
                    at.iter().sum()
                } else {
                    1.0
                };
                for c in 0..2 {
                    for f in 0..2 {
                        let want: f64 = (0..3).map(|j| at[j] / s * xv[c][j][f]).sum();
                        assert!((y[c][i][f] - want).abs() < 1e-12);
                    }
                }
            }
        }
        let z = gradcheck::rand_tensor(&[1, 3, 2], 6);
        let zv: Vec<Vec<f64>> = z.squeeze(0).unwrap().to_vec2().unwrap();
        let y: Vec<Vec<f64>> = mix_decoder(&a, &z, false, &full(1, 3))
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        for i in 0..3 {
            for k in 0..2 {
                let want: f64 = (0..3).map(|j| av[k][i][j] * zv[j][k]).sum();
                assert!((y[i][k] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences_through_the_affinity() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 3, DType::F64, &Device::Cpu);
        let aff = Affinity::new(2, 2, 1.0, vb).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 4, 3], 1)).unwrap();
        let xe = Var::from_tensor(&gradcheck::rand_tensor(&[2, 3, 4, 2], 2)).unwrap();
        let z = Var::from_tensor(&gradcheck::rand_tensor(&[2, 4, 2], 3)).unwrap();
        for kind in ALL_KINDS {
            gradcheck::check(
                &map,
                &[("x", &x), ("xe", &xe), ("z", &z)],
                || {
                    let a = aff.forward(x.as_tensor())?;
                    let e = mix_encoder(&a, xe.as_tensor(), kind, false, &full(2, 4))?;
                    let d = mix_decoder(&a, z.as_tensor(), false, &full(2, 4))?;
                    Tensor::cat(&[e.flatten_all()?, d.flatten_all()?], 0)
                },
                1e-5,
            );
        }
    }

    #[test]
    fn detached_affinity_passes_no_gradient_to_the_projection() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 3, DType::F64, &Device::Cpu);
        let aff = Affinity::new(2, 2, 1.0, vb).unwrap();
        let x = gradcheck::rand_tensor(&[1, 2, 4, 3], 1);
        let z = Var::from_tensor(&gradcheck::rand_tensor(&[1, 4, 2], 3)).unwrap();
        let a = aff.forward(&x).unwrap();
        let loss = mix_decoder(&a, z.as_tensor(), true, &full(1, 4))
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let w = map.data().lock().unwrap()["proj.weight"]
            .as_tensor()
            .clone();
        assert!(grads.get(&w).is_none());
        assert!(grads.get(z.as_tensor()).is_some());
        let loss = mix_decoder(&a, z.as_tensor(), false, &full(1, 4))
            .unwrap()
            .sum_all()
            .unwrap();
        // Row sums of A are 1, so Σ z̃ depends on A only through z: use a weighted loss.
        let loss = (loss
            + (mix_decoder(&a, z.as_tensor(), false, &full(1, 4))
                .unwrap()
                .sqr()
                .unwrap())
            .sum_all()
            .unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        assert!(grads.get(&w).is_some());
    }

    #[test]
    fn masked_affinity_and_mixing_equal_each_sequence_alone_and_gradient_check() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 3, DType::F64, &Device::Cpu);
        let aff = Affinity::new(2, 2, 1.0, vb).unwrap();
        let lengths = [2, 4];
        let mask = TimeMask::new(&lengths, 4, DType::F64, &Device::Cpu).unwrap();
        let x = Var::from_tensor(
            &mask
                .zero(&gradcheck::rand_tensor(&[2, 2, 4, 3], 1), 2)
                .unwrap(),
        )
        .unwrap();
        let xe = gradcheck::rand_tensor(&[2, 3, 4, 2], 2);
        let z = gradcheck::rand_tensor(&[2, 4, 2], 3);
        for kind in ALL_KINDS {
            let a = aff.forward_masked(x.as_tensor(), &mask).unwrap();
            let e = mix_encoder(&a, &xe, kind, false, &mask).unwrap();
            let d = mix_decoder(&a, &z, false, &mask).unwrap();
            for (b, &l) in lengths.iter().enumerate() {
                let one = full(1, l);
                let ab = aff
                    .forward(&gradcheck::valid_row(x.as_tensor(), b, 2, l))
                    .unwrap();
                let we = mix_encoder(&ab, &gradcheck::valid_row(&xe, b, 2, l), kind, false, &one);
                let wd = mix_decoder(&ab, &gradcheck::valid_row(&z, b, 1, l), false, &one);
                let row = |t: &Tensor, dim| gradcheck::valid_row(t, b, dim, l);
                gradcheck::assert_close(&row(&e, 2), &we.unwrap(), 1e-12, "encoder mix");
                gradcheck::assert_close(&row(&d, 1), &wd.unwrap(), 1e-12, "decoder mix");
            }
            gradcheck::check_masked(
                &map,
                ("x", &x),
                2,
                &lengths,
                || {
                    let a = aff.forward_masked(x.as_tensor(), &mask)?;
                    let e = mix_encoder(&a, &xe, kind, false, &mask)?;
                    let d = mix_decoder(&a, &z, false, &mask)?;
                    Tensor::cat(&[e.flatten_all()?, d.flatten_all()?], 0)
                },
                1e-5,
            );
        }
    }
}
