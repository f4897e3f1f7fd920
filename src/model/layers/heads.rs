//! Clip-level pooling heads: how a network turns frame-level evidence into clip-level
//! probabilities.
//!
//! - Parameter-free pools of frame probabilities over time ([`ClipPooling`]): max,
//!   mean, linear-softmax `Σp²/Σp`, exponential-softmax `Σp·eᵖ/Σeᵖ`, and global
//!   weighted rank pooling GWRP(r) (Kong et al. 2019: sorted descending, weights `rʲ`).
//! - Attention pooling ([`AttentionPool`]): per-frame classifier `σ(W_c h + b_c)` and
//!   per-frame scores `W_a h + b_a` normalised with a softmax **over time** (not over
//!   classes); the clip is the attention-weighted sum of the frame probabilities.
//! - Two-step attention pooling of 2APAE ([`TwoStepAttentionPool`], paper 003
//!   eqs. 7–14): a frequency step over the mel axis of a class T-F map, then a time step.
//!
//! Deviation from paper 003: its time step is a dense layer over a fixed 311-frame
//! axis, which ties the network to one clip length and cannot stream. Here the time
//! step is length-agnostic: a per-frame linear map over the classes (`K → K`) for both
//! the attention scores (eq. 11, with its sigmoid) and the classifier (eq. 12), with
//! the softmax over time (eq. 13) and the weighted sum over time (eq. 14) unchanged.
//! Both steps put a sigmoid on the classifier branch (the paper's text: "by adding σ in
//! both step's intermediate classification output"), so the clip lies in (0, 1).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::mask::TimeMask;
use super::pool::{linear_softmax_pool, linear_softmax_pool_masked};

/// A parameter-free pooling of probabilities over time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClipPooling {
    /// Maximum over time.
    Max,
    /// Mean over time.
    Mean,
    /// Linear-softmax `Σ p² / Σ p` (probabilities `p > 0`).
    LinearSoftmax,
    /// Exponential-softmax `Σ p·eᵖ / Σ eᵖ`.
    ExpSoftmax,
    /// Global weighted rank pooling: the frames sorted by decreasing probability get
    /// weights `1, r, r², …`, normalised to sum 1 (`r = 0` is max, `r = 1` is mean).
    Gwrp {
        /// Decay `r` in `[0, 1]`.
        r: f64,
    },
}

impl ClipPooling {
    /// Pools `p` over axis `dim` (removed).
    pub fn pool(&self, p: &Tensor, dim: usize) -> Result<Tensor> {
        match *self {
            ClipPooling::Max => p.max(dim),
            ClipPooling::Mean => p.mean(dim),
            ClipPooling::LinearSoftmax => linear_softmax_pool(p, dim),
            ClipPooling::ExpSoftmax => {
                let e = p.exp()?;
                (p * &e)?.sum(dim)?.div(&e.sum(dim)?)
            }
            ClipPooling::Gwrp { r } => gwrp(p, dim, r),
        }
    }

    /// Pools `p (B, T, C)` over time counting the valid frames of `mask` only: the
    /// clip value of each sequence is that of its unpadded frames. Unpadded, exactly
    /// [`ClipPooling::pool`] over axis 1.
    pub fn pool_masked(&self, p: &Tensor, mask: &TimeMask) -> Result<Tensor> {
        let Some(m) = mask.shaped(p.rank(), 1, p.dtype())? else {
            return self.pool(p, 1);
        };
        match *self {
            ClipPooling::Max => mask.mask_logits(p, 1)?.max(1),
            ClipPooling::Mean => p
                .broadcast_mul(&m)?
                .sum(1)?
                .broadcast_div(&mask.lengths_tensor(p.rank() - 1, p.dtype())?),
            ClipPooling::LinearSoftmax => linear_softmax_pool_masked(p, mask),
            ClipPooling::ExpSoftmax => {
                let e = p.exp()?.broadcast_mul(&m)?;
                (p * &e)?.sum(1)?.div(&e.sum(1)?)
            }
            ClipPooling::Gwrp { r } => gwrp_masked(p, r, mask),
        }
    }

    /// `Ok` when the parameters are usable, else what is wrong.
    pub fn check(&self) -> std::result::Result<(), String> {
        match *self {
            ClipPooling::Gwrp { r } if !(r.is_finite() && (0.0..=1.0).contains(&r)) => {
                Err(format!("GWRP decay r = {r} is not in [0, 1]"))
            }
            _ => Ok(()),
        }
    }

    /// Short name for summaries, e.g. `gwrp(0.9)`.
    pub fn label(&self) -> String {
        match self {
            ClipPooling::Max => "max".into(),
            ClipPooling::Mean => "mean".into(),
            ClipPooling::LinearSoftmax => "linear-softmax".into(),
            ClipPooling::ExpSoftmax => "exp-softmax".into(),
            ClipPooling::Gwrp { r } => format!("gwrp({r})"),
        }
    }
}

/// GWRP of `p` over `dim`: sort descending (a `gather`, whose backward is an exact
/// scatter-add), weight by `rʲ / Σ rʲ`, sum.
fn gwrp(p: &Tensor, dim: usize, r: f64) -> Result<Tensor> {
    let last = p.rank() - 1;
    let pt = if dim == last {
        p.contiguous()?
    } else {
        p.transpose(dim, last)?.contiguous()?
    };
    let n = pt.dim(last)?;
    let idx = pt.arg_sort_last_dim(false)?;
    let sorted = pt.gather(&idx, last)?;
    let w: Vec<f64> = (0..n).map(|j| r.powi(j as i32)).collect();
    let total: f64 = w.iter().sum();
    let w: Vec<f64> = w.iter().map(|v| v / total).collect();
    let w = Tensor::from_vec(w, n, p.device())?.to_dtype(p.dtype())?;
    let pooled = sorted.broadcast_mul(&w)?.sum(last)?;
    // The pooled tensor has the remaining axes in `pt`'s order: undo the transpose.
    if dim == last || dim + 1 == last {
        Ok(pooled)
    } else {
        // Axis `dim` of `pt` holds what was the last axis; move it back to the end.
        let mut order: Vec<usize> = (0..last).collect();
        let moved = order.remove(dim);
        order.push(moved);
        pooled.permute(order)
    }
}

/// GWRP of `p (B, T, C)` over time with each sequence's valid frames only: padded
/// frames sort last (their value is pushed to [`super::mask::PAD_LOGIT`]) and get
/// weight 0; the valid ones get `rʲ / Σ_{j<len} rʲ`.
fn gwrp_masked(p: &Tensor, r: f64, mask: &TimeMask) -> Result<Tensor> {
    let (b, t, _) = p.dims3()?;
    let pt = mask.mask_logits(p, 1)?.transpose(1, 2)?.contiguous()?; // (B, C, T)
    let idx = pt.arg_sort_last_dim(false)?;
    let sorted = pt.gather(&idx, 2)?;
    let mut w = vec![0f64; b * t];
    for (row, &len) in w.chunks_exact_mut(t).zip(mask.lengths()) {
        let len = len.min(t);
        let total: f64 = (0..len).map(|j| r.powi(j as i32)).sum();
        for (j, v) in row.iter_mut().enumerate().take(len) {
            *v = r.powi(j as i32) / total;
        }
    }
    let w = Tensor::from_vec(w, (b, 1, t), p.device())?.to_dtype(p.dtype())?;
    sorted.broadcast_mul(&w)?.sum(2)
}

/// Attention pooling over time of per-frame features `h (B, T, D)`: classifier
/// `σ(W_c h + b_c)` (tensors `cla.{weight,bias}`) and scores `W_a h + b_a`
/// (`att.{weight,bias}`, optionally through a sigmoid as in paper 003 eq. 11), softmax
/// over time, clip = Σ_t frame · weight. Works for any `T ≥ 1`.
#[derive(Debug, Clone)]
pub struct AttentionPool {
    /// Per-frame classifier.
    cla: Linear,
    /// Per-frame attention scores.
    att: Linear,
    /// Whether the scores pass through a sigmoid before the softmax.
    sigmoid_scores: bool,
}

impl AttentionPool {
    /// Attention pooling from `d_in` features to `n_classes` classes.
    pub fn new(
        d_in: usize,
        n_classes: usize,
        sigmoid_scores: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            cla: candle_nn::linear(d_in, n_classes, vb.pp("cla"))?,
            att: candle_nn::linear(d_in, n_classes, vb.pp("att"))?,
            sigmoid_scores,
        })
    }

    /// Frame probabilities `(B, T, C)` and clip probabilities `(B, C)` of `h (B, T, D)`.
    pub fn forward(&self, h: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t, _) = h.dims3()?;
        self.forward_masked(h, &TimeMask::full(b, t, h.dtype(), h.device()))
    }

    /// [`AttentionPool::forward`] of a padded batch: the softmax over time gives padded
    /// frames weight 0, so each clip is pooled over its valid frames only (the frame
    /// probabilities at padded frames are left as computed).
    pub fn forward_masked(&self, h: &Tensor, mask: &TimeMask) -> Result<(Tensor, Tensor)> {
        let frame = candle_nn::ops::sigmoid(&self.cla.forward(h)?)?;
        let mut scores = self.att.forward(h)?;
        if self.sigmoid_scores {
            scores = candle_nn::ops::sigmoid(&scores)?;
        }
        let w = mask.softmax(&scores, 1)?;
        let clip = (&frame * w)?.sum(1)?;
        Ok((frame, clip))
    }
}

/// First step of two-step attention pooling (paper 003 eqs. 7–10): over the mel axis
/// of a class T-F map `z (B, K, T, F)`, scores `σ(z W_a1ᵀ + b_a1)` and classifier
/// `σ(z W_c1ᵀ + b_c1)` (each an `F → F` linear map, tensors `att.*`, `cla.*`), softmax
/// over `F`, weighted sum over `F`: `(B, K, T)`.
#[derive(Debug, Clone)]
pub struct FrequencyAttention {
    /// Classifier branch, `F → F`.
    cla: Linear,
    /// Attention branch, `F → F`.
    att: Linear,
}

impl FrequencyAttention {
    /// The frequency step for `n_mels` mel bands.
    pub fn new(n_mels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            cla: candle_nn::linear(n_mels, n_mels, vb.pp("cla"))?,
            att: candle_nn::linear(n_mels, n_mels, vb.pp("att"))?,
        })
    }

    /// `Z_p1 (B, K, T)` in (0, 1) from `z (B, K, T, F)`.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let c = candle_nn::ops::sigmoid(&self.cla.forward(z)?)?;
        let a = candle_nn::ops::sigmoid(&self.att.forward(z)?)?;
        let w = candle_nn::ops::softmax(&a, D::Minus1)?;
        (c * w)?.sum(D::Minus1)
    }
}

/// Two-step attention pooling (paper 003): [`FrequencyAttention`] (tensors `freq.*`)
/// then a length-agnostic time step, an [`AttentionPool`] over the `K` per-frame class
/// values with sigmoid scores (tensors `time.*`; see the module comment).
#[derive(Debug, Clone)]
pub struct TwoStepAttentionPool {
    /// Step 1, over mel bands.
    freq: FrequencyAttention,
    /// Step 2, over time.
    time: AttentionPool,
}

impl TwoStepAttentionPool {
    /// Two-step pooling of a `(B, K, T, n_mels)` class map with `K = n_classes`.
    pub fn new(n_mels: usize, n_classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            freq: FrequencyAttention::new(n_mels, vb.pp("freq"))?,
            time: AttentionPool::new(n_classes, n_classes, true, vb.pp("time"))?,
        })
    }

    /// Frame probabilities `(B, T, K)` (the time step's per-frame classifier) and clip
    /// probabilities `(B, K)` of the class map `z (B, K, T, F)`.
    pub fn forward(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let p1 = self.freq.forward(z)?.transpose(1, 2)?.contiguous()?; // (B, T, K)
        self.time.forward(&p1)
    }

    /// [`TwoStepAttentionPool::forward`] of a padded batch (time on axis 2 of `z`): the
    /// time step counts valid frames only.
    pub fn forward_masked(&self, z: &Tensor, mask: &TimeMask) -> Result<(Tensor, Tensor)> {
        let p1 = self.freq.forward(z)?.transpose(1, 2)?.contiguous()?; // (B, T, K)
        self.time.forward_masked(&p1, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::mask::TimeMask;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    fn probs() -> Tensor {
        // (1, 4, 2): class 0: 0.1, 0.9, 0.5, 0.3; class 1: 0.2, 0.2, 0.6, 0.4.
        Tensor::new(
            &[[[0.1f64, 0.2], [0.9, 0.2], [0.5, 0.6], [0.3, 0.4]]],
            &Device::Cpu,
        )
        .unwrap()
    }

    fn pooled(p: ClipPooling) -> Vec<f64> {
        p.pool(&probs(), 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn pools_match_hand_computed_values() {
        let close = |a: &[f64], b: [f64; 2]| {
            assert!(
                a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12),
                "{a:?} vs {b:?}"
            )
        };
        close(&pooled(ClipPooling::Max), [0.9, 0.6]);
        close(&pooled(ClipPooling::Mean), [0.45, 0.35]);
        close(
            &pooled(ClipPooling::LinearSoftmax),
            [
                (0.01 + 0.81 + 0.25 + 0.09) / 1.8,
                (0.04 + 0.04 + 0.36 + 0.16) / 1.4,
            ],
        );
        let es = |v: [f64; 4]| {
            v.iter().map(|p| p * p.exp()).sum::<f64>() / v.iter().map(|p| p.exp()).sum::<f64>()
        };
        close(
            &pooled(ClipPooling::ExpSoftmax),
            [es([0.1, 0.9, 0.5, 0.3]), es([0.2, 0.2, 0.6, 0.4])],
        );
        // GWRP r = 0.5: weights 1, .5, .25, .125 over 1.875 on the sorted values.
        let g = |s: [f64; 4]| (s[0] + 0.5 * s[1] + 0.25 * s[2] + 0.125 * s[3]) / 1.875;
        close(
            &pooled(ClipPooling::Gwrp { r: 0.5 }),
            [g([0.9, 0.5, 0.3, 0.1]), g([0.6, 0.4, 0.2, 0.2])],
        );
        close(&pooled(ClipPooling::Gwrp { r: 0.0 }), [0.9, 0.6]);
        close(&pooled(ClipPooling::Gwrp { r: 1.0 }), [0.45, 0.35]);
        assert!(ClipPooling::Gwrp { r: 1.5 }.check().is_err());
        assert!(ClipPooling::Gwrp { r: 0.5 }.check().is_ok());
    }

    #[test]
    fn gwrp_pools_any_axis() {
        let p = gradcheck::rand_tensor(&[2, 3, 4], 3);
        let g = ClipPooling::Gwrp { r: 0.7 };
        for dim in 0..3 {
            let got = g.pool(&p, dim).unwrap();
            // Same as pooling the axis moved last.
            let want = g.pool(&p.transpose(dim, 2).unwrap(), 2).unwrap();
            let want = if dim == 0 {
                want.transpose(0, 1).unwrap()
            } else {
                want
            };
            assert_eq!(got.dims(), want.dims(), "dim {dim}");
            let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f64>().unwrap() < 1e-12, "dim {dim}");
        }
    }

    #[test]
    fn pool_gradients_match_finite_differences() {
        // Distinct values so that max and the GWRP sort are differentiable.
        let p = Var::from_tensor(
            &gradcheck::rand_tensor(&[2, 5, 3], 5)
                .affine(0.4, 0.5)
                .unwrap(),
        )
        .unwrap();
        for pool in [
            ClipPooling::Max,
            ClipPooling::Mean,
            ClipPooling::LinearSoftmax,
            ClipPooling::ExpSoftmax,
            ClipPooling::Gwrp { r: 0.8 },
        ] {
            gradcheck::check(
                &VarMap::new(),
                &[("p", &p)],
                || pool.pool(p.as_tensor(), 1),
                1e-6,
            );
        }
    }

    #[test]
    fn attention_softmax_runs_over_time_and_clip_is_a_convex_combination() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 1, DType::F64, &Device::Cpu);
        let att = AttentionPool::new(3, 2, false, vb).unwrap();
        for t in [1, 6] {
            let h = gradcheck::rand_tensor(&[2, t, 3], 2);
            let (frame, clip) = att.forward(&h).unwrap();
            assert_eq!(frame.dims(), &[2, t, 2]);
            let f: Vec<Vec<Vec<f64>>> = frame.to_vec3().unwrap();
            let c: Vec<Vec<f64>> = clip.to_vec2().unwrap();
            for b in 0..2 {
                for k in 0..2 {
                    let lo = (0..t).map(|i| f[b][i][k]).fold(f64::INFINITY, f64::min);
                    let hi = (0..t).map(|i| f[b][i][k]).fold(f64::NEG_INFINITY, f64::max);
                    assert!(c[b][k] >= lo - 1e-12 && c[b][k] <= hi + 1e-12);
                }
            }
            if t == 1 {
                let d = (frame.squeeze(1).unwrap() - clip).unwrap().abs().unwrap();
                assert!(d.max_all().unwrap().to_scalar::<f64>().unwrap() < 1e-12);
            }
        }
    }

    #[test]
    fn attention_gradient_matches_finite_differences() {
        for sigmoid_scores in [false, true] {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 1, DType::F64, &Device::Cpu);
            let att = AttentionPool::new(3, 2, sigmoid_scores, vb).unwrap();
            let h = Var::from_tensor(&gradcheck::rand_tensor(&[2, 4, 3], 2)).unwrap();
            gradcheck::check(
                &map,
                &[("h", &h)],
                || {
                    let (f, c) = att.forward(h.as_tensor())?;
                    Tensor::cat(&[f.flatten_all()?, c.flatten_all()?], 0)
                },
                1e-6,
            );
        }
    }

    #[test]
    fn two_step_matches_its_equations_and_gradient_checks() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 4, DType::F64, &Device::Cpu);
        let head = TwoStepAttentionPool::new(3, 2, vb).unwrap();
        let z = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 4, 3], 6)).unwrap();
        let (frame, clip) = head.forward(z.as_tensor()).unwrap();
        assert_eq!(frame.dims(), &[2, 4, 2]);
        assert_eq!(clip.dims(), &[2, 2]);
        let c: Vec<f64> = clip.flatten_all().unwrap().to_vec1().unwrap();
        assert!(c.iter().all(|v| *v > 0.0 && *v < 1.0));
        // Step 1 by hand for one (b, k, t).
        let get = |n: &str| map.data().lock().unwrap()[n].as_tensor().clone();
        let (wc, bc, wa, ba) = (
            get("freq.cla.weight").to_vec2::<f64>().unwrap(),
            get("freq.cla.bias").to_vec1::<f64>().unwrap(),
            get("freq.att.weight").to_vec2::<f64>().unwrap(),
            get("freq.att.bias").to_vec1::<f64>().unwrap(),
        );
        let zv: Vec<f64> = z
            .as_tensor()
            .get(1)
            .unwrap()
            .get(0)
            .unwrap()
            .get(2)
            .unwrap()
            .to_vec1()
            .unwrap();
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let lin = |w: &Vec<Vec<f64>>, b: &Vec<f64>, i: usize| {
            b[i] + (0..3).map(|j| w[i][j] * zv[j]).sum::<f64>()
        };
        let a: Vec<f64> = (0..3).map(|i| sig(lin(&wa, &ba, i)).exp()).collect();
        let s: f64 = a.iter().sum();
        let want: f64 = (0..3).map(|i| sig(lin(&wc, &bc, i)) * a[i] / s).sum();
        let p1 = head.freq.forward(z.as_tensor()).unwrap();
        let got = p1
            .get(1)
            .unwrap()
            .get(0)
            .unwrap()
            .get(2)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        gradcheck::check(
            &map,
            &[("z", &z)],
            || {
                let (f, c) = head.forward(z.as_tensor())?;
                Tensor::cat(&[f.flatten_all()?, c.flatten_all()?], 0)
            },
            1e-6,
        );
    }

    #[test]
    fn masked_pools_and_attention_equal_each_sequence_alone() {
        let dev = Device::Cpu;
        let lengths = [3, 6, 1];
        let mask = TimeMask::new(&lengths, 6, DType::F64, &dev).unwrap();
        let p = gradcheck::rand_tensor(&[3, 6, 2], 8)
            .affine(0.4, 0.5)
            .unwrap();
        for pool in [
            ClipPooling::Max,
            ClipPooling::Mean,
            ClipPooling::LinearSoftmax,
            ClipPooling::ExpSoftmax,
            ClipPooling::Gwrp { r: 0.6 },
            ClipPooling::Gwrp { r: 0.0 },
        ] {
            let got = pool.pool_masked(&p, &mask).unwrap();
            for (b, &l) in lengths.iter().enumerate() {
                let want = pool.pool(&gradcheck::valid_row(&p, b, 1, l), 1).unwrap();
                let what = format!("{pool:?} row {b}");
                gradcheck::assert_close(&got.narrow(0, b, 1).unwrap(), &want, 1e-12, &what);
            }
        }
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &dev);
        let att = AttentionPool::new(3, 2, true, vb.pp("att")).unwrap();
        let two = TwoStepAttentionPool::new(4, 2, vb.pp("two")).unwrap();
        let h = gradcheck::rand_tensor(&[3, 6, 3], 9);
        let z = gradcheck::rand_tensor(&[3, 2, 6, 4], 10);
        let (fa, ca) = att.forward_masked(&h, &mask).unwrap();
        let (ft, ct) = two.forward_masked(&z, &mask).unwrap();
        for (b, &l) in lengths.iter().enumerate() {
            let (wf, wc) = att.forward(&gradcheck::valid_row(&h, b, 1, l)).unwrap();
            gradcheck::assert_close(&gradcheck::valid_row(&fa, b, 1, l), &wf, 1e-12, "frame");
            gradcheck::assert_close(&ca.narrow(0, b, 1).unwrap(), &wc, 1e-12, "clip");
            let (wf, wc) = two.forward(&gradcheck::valid_row(&z, b, 2, l)).unwrap();
            gradcheck::assert_close(&gradcheck::valid_row(&ft, b, 1, l), &wf, 1e-12, "2-step");
            gradcheck::assert_close(&ct.narrow(0, b, 1).unwrap(), &wc, 1e-12, "2-step clip");
        }
    }

    #[test]
    fn masked_gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let lengths = [2, 5];
        let mask = TimeMask::new(&lengths, 5, DType::F64, &dev).unwrap();
        let p = Var::from_tensor(
            &gradcheck::rand_tensor(&[2, 5, 3], 11)
                .affine(0.4, 0.5)
                .unwrap(),
        )
        .unwrap();
        for pool in [
            ClipPooling::Max,
            ClipPooling::Mean,
            ClipPooling::LinearSoftmax,
            ClipPooling::ExpSoftmax,
            ClipPooling::Gwrp { r: 0.8 },
        ] {
            gradcheck::check_masked(
                &VarMap::new(),
                ("p", &p),
                1,
                &lengths,
                || pool.pool_masked(p.as_tensor(), &mask),
                1e-6,
            );
        }
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 3, DType::F64, &dev);
        let att = AttentionPool::new(3, 2, false, vb.pp("att")).unwrap();
        let h = Var::from_tensor(&gradcheck::rand_tensor(&[2, 5, 3], 12)).unwrap();
        // The clip and the valid frames (padded frame outputs are not used).
        gradcheck::check_masked(
            &map,
            ("h", &h),
            1,
            &lengths,
            || {
                let (f, c) = att.forward_masked(h.as_tensor(), &mask)?;
                Tensor::cat(&[mask.zero(&f, 1)?.flatten_all()?, c.flatten_all()?], 0)
            },
            1e-6,
        );
    }
}
