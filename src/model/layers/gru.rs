//! GRU and bidirectional GRU over `(B, T, I)` sequences, PyTorch-compatible.
//!
//! The input projections of all steps are computed in one matrix product before the
//! loop; each step then only multiplies the hidden state by the recurrent weights.
//! (candle's own `GRU::states_to_tensor` returns a wrongly shaped tensor; it is not
//! used.)
//!
//! The recurrence itself is one candle operation with a hand-written backward pass
//! ([`super::gru_op`]): one small GEMM and one fused gate pass per step, instead of a
//! dozen candle operations per step whose backward is quadratic in the length.

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::gru_op::GruRecurrence;
use super::mask::TimeMask;

/// One GRU layer, one direction, PyTorch equations and gate order (r, z, n):
///
/// ```text
/// r = σ(W_ir x + b_ir + W_hr h + b_hr)
/// z = σ(W_iz x + b_iz + W_hz h + b_hz)
/// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
/// h' = (1 − z) ⊙ n + z ⊙ h
/// ```
///
/// Tensors (PyTorch's names): `weight_ih_l0 (3H, I)`, `weight_hh_l0 (3H, H)`,
/// `bias_ih_l0 (3H)`, `bias_hh_l0 (3H)`, initialised `U(−1/√H, 1/√H)` as PyTorch.
#[derive(Debug, Clone)]
pub struct Gru {
    /// Input weights, `(3H, I)`.
    w_ih: Tensor,
    /// Recurrent weights, `(3H, H)`.
    w_hh: Tensor,
    /// Input bias, `(3H)`.
    b_ih: Tensor,
    /// Recurrent bias, `(3H)`.
    b_hh: Tensor,
    /// Hidden size H.
    hidden: usize,
}

impl Gru {
    /// A GRU from `input` features to `hidden` units.
    pub fn new(input: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        Ok(Self {
            w_ih: vb.get_with_hints((3 * hidden, input), "weight_ih_l0", init)?,
            w_hh: vb.get_with_hints((3 * hidden, hidden), "weight_hh_l0", init)?,
            b_ih: vb.get_with_hints(3 * hidden, "bias_ih_l0", init)?,
            b_hh: vb.get_with_hints(3 * hidden, "bias_hh_l0", init)?,
            hidden,
        })
    }

    /// Hidden size H.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Runs over `x (B, T, I)` from a zero state, forwards in time or (with `reverse`)
    /// backwards; returns the hidden states `(B, T, H)` in input time order.
    pub fn forward_dir(&self, x: &Tensor, reverse: bool) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        self.forward_dir_masked(x, reverse, &TimeMask::full(b, t, x.dtype(), x.device()))
    }

    /// [`Gru::forward_dir`] over a zero-padded batch whose time axis is described by
    /// `mask`: each sequence runs over its own valid frames only (backwards from its
    /// last valid frame, from a zero state); padded frames of the output are zero.
    pub fn forward_dir_masked(&self, x: &Tensor, reverse: bool, mask: &TimeMask) -> Result<Tensor> {
        let (b, t, i) = x.dims3()?;
        if mask.batch() != b || mask.frames() != t {
            candle_core::bail!(
                "GRU mask of {} sequences × {} frames for input {:?}",
                mask.batch(),
                mask.frames(),
                x.shape()
            );
        }
        let h = self.hidden;
        if t == 0 {
            candle_core::bail!("GRU over an empty sequence");
        }
        // All input projections at once: (B·T, I) × (I, 3H) + b_ih.
        let x2 = if x.is_contiguous() {
            x.reshape((b * t, i))?
        } else {
            x.contiguous()?.reshape((b * t, i))?
        };
        let xp = x2
            .matmul(&self.w_ih.t()?)?
            .broadcast_add(&self.b_ih)?
            .reshape((b, t, 3 * h))?;
        let tracked = [x, &self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh]
            .iter()
            .any(|t| t.track_op());
        // The recurrence is one operation with its own backward (see `gru_op`).
        let op = GruRecurrence {
            lengths: mask.lengths().to_vec(),
            reverse,
        };
        let (xp, w, bh) = (
            xp.contiguous()?,
            self.w_hh.contiguous()?,
            self.b_hh.contiguous()?,
        );
        if tracked {
            xp.apply_op3(&w, &bh, op)
        } else {
            xp.apply_op3_no_bwd(&w, &bh, &op)
        }
    }
}

/// Bidirectional single-layer GRU: a forward GRU under `fwd.` and a backward GRU under
/// `bwd.`; output `(B, T, 2H)` = forward states then backward states, as PyTorch.
#[derive(Debug, Clone)]
pub struct BiGru {
    /// Runs forwards in time.
    fwd: Gru,
    /// Runs backwards in time.
    bwd: Gru,
}

impl BiGru {
    /// A bidirectional GRU from `input` features to `hidden` units per direction.
    pub fn new(input: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fwd: Gru::new(input, hidden, vb.pp("fwd"))?,
            bwd: Gru::new(input, hidden, vb.pp("bwd"))?,
        })
    }

    /// Output features per step, 2H.
    pub fn out_dim(&self) -> usize {
        2 * self.fwd.hidden()
    }
}

impl BiGru {
    /// Runs over a zero-padded batch `x (B, T, I)` whose time axis is described by
    /// `mask`: each sequence over its own valid frames (the backward direction starts
    /// at its last valid frame); padded frames of the output are zero. Unpadded,
    /// exactly [`candle_core::Module::forward`].
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask) -> Result<Tensor> {
        if !mask.is_padded() {
            return candle_core::Module::forward(self, x);
        }
        let f = self.fwd.forward_dir_masked(x, false, mask)?;
        let b = self.bwd.forward_dir_masked(x, true, mask)?;
        Tensor::cat(&[f, b], D::Minus1)
    }
}

impl candle_core::Module for BiGru {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (f, b) = if super::fast::eval_ready(x, &[&self.fwd.w_hh, &self.bwd.w_hh]) {
            // Inference: the two directions' plain loops on two threads.
            let (f, b) = rayon::join(
                || self.fwd.forward_dir(x, false),
                || self.bwd.forward_dir(x, true),
            );
            (f?, b?)
        } else {
            (
                self.fwd.forward_dir(x, false)?,
                self.bwd.forward_dir(x, true)?,
            )
        };
        Tensor::cat(&[f, b], D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::mask::TimeMask;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::{DType, Device, Module, Var};
    use candle_nn::VarMap;

    /// The GRU equations written out with plain f64 loops.
    fn reference(gru: &Gru, x: &[Vec<f64>], reverse: bool) -> Vec<Vec<f64>> {
        let m = |t: &Tensor| t.to_vec2::<f64>().unwrap();
        let v = |t: &Tensor| t.to_vec1::<f64>().unwrap();
        let (wi, wh, bi, bh) = (m(&gru.w_ih), m(&gru.w_hh), v(&gru.b_ih), v(&gru.b_hh));
        let h = gru.hidden;
        let sig = |a: f64| 1.0 / (1.0 + (-a).exp());
        let mut state = vec![0.0; h];
        let mut out = vec![vec![]; x.len()];
        let order: Vec<usize> = if reverse {
            (0..x.len()).rev().collect()
        } else {
            (0..x.len()).collect()
        };
        for s in order {
            let gi: Vec<f64> = (0..3 * h)
                .map(|g| bi[g] + wi[g].iter().zip(&x[s]).map(|(a, b)| a * b).sum::<f64>())
                .collect();
            let gh: Vec<f64> = (0..3 * h)
                .map(|g| bh[g] + wh[g].iter().zip(&state).map(|(a, b)| a * b).sum::<f64>())
                .collect();
            let new: Vec<f64> = (0..h)
                .map(|j| {
                    let r = sig(gi[j] + gh[j]);
                    let z = sig(gi[h + j] + gh[h + j]);
                    let n = (gi[2 * h + j] + r * gh[2 * h + j]).tanh();
                    (1.0 - z) * n + z * state[j]
                })
                .collect();
            state = new;
            out[s] = state.clone();
        }
        out
    }

    #[test]
    fn bigru_matches_the_equations_and_names_tensors() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 11, DType::F64, &Device::Cpu);
        let bigru = BiGru::new(3, 4, vb.pp("gru")).unwrap();
        let mut names: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "gru.bwd.bias_hh_l0",
                "gru.bwd.bias_ih_l0",
                "gru.bwd.weight_hh_l0",
                "gru.bwd.weight_ih_l0",
                "gru.fwd.bias_hh_l0",
                "gru.fwd.bias_ih_l0",
                "gru.fwd.weight_hh_l0",
                "gru.fwd.weight_ih_l0",
            ]
        );
        let x = gradcheck::rand_tensor(&[2, 5, 3], 2);
        let y = bigru.forward(&x).unwrap();
        assert_eq!(y.dims(), &[2, 5, 8]);
        for bi in 0..2 {
            let xb = x.get(bi).unwrap().to_vec2::<f64>().unwrap();
            let yb = y.get(bi).unwrap().to_vec2::<f64>().unwrap();
            let f = reference(&bigru.fwd, &xb, false);
            let b = reference(&bigru.bwd, &xb, true);
            for t in 0..5 {
                let want: Vec<f64> = f[t].iter().chain(&b[t]).copied().collect();
                for (g, w) in yb[t].iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-12,
                        "batch {bi} step {t}: {:?} vs {want:?}",
                        yb[t]
                    );
                }
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 12, DType::F64, &Device::Cpu);
        let bigru = BiGru::new(3, 2, vb).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 4, 3], 3)).unwrap();
        gradcheck::check(&map, &[("x", &x)], || bigru.forward(x.as_tensor()), 1e-6);
    }

    #[test]
    fn inference_and_training_paths_agree() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 13, DType::F32, &Device::Cpu);
        let bigru = BiGru::new(5, 12, vb).unwrap();
        let x = gradcheck::rand_tensor(&[2, 9, 5], 4)
            .to_dtype(DType::F32)
            .unwrap();
        // The VarMap's weights are variables: the operation records its backward.
        let slow = bigru.forward(&x).unwrap();
        // Detached copies of the weights: inference, the directions on two threads.
        let detached = |g: &Gru| Gru {
            w_ih: g.w_ih.detach(),
            w_hh: g.w_hh.detach(),
            b_ih: g.b_ih.detach(),
            b_hh: g.b_hh.detach(),
            hidden: g.hidden,
        };
        let fast_gru = BiGru {
            fwd: detached(&bigru.fwd),
            bwd: detached(&bigru.bwd),
        };
        let fast = fast_gru.forward(&x).unwrap();
        assert!(!fast.track_op() && slow.track_op());
        let d = (slow - fast).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    }

    #[test]
    fn single_step_sequence_works() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 12, DType::F32, &Device::Cpu);
        let bigru = BiGru::new(3, 2, vb).unwrap();
        let x = Tensor::ones((1, 1, 3), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(bigru.forward(&x).unwrap().dims(), &[1, 1, 4]);
    }

    #[test]
    fn masked_bigru_runs_each_sequence_over_its_own_frames() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 14, DType::F64, &Device::Cpu);
        let bigru = BiGru::new(3, 4, vb).unwrap();
        let lengths = [2, 6, 4];
        let mask = TimeMask::new(&lengths, 6, DType::F64, &Device::Cpu).unwrap();
        let seqs: Vec<Tensor> = lengths
            .iter()
            .map(|&l| gradcheck::rand_tensor(&[1, l, 3], l as u64))
            .collect();
        let x = gradcheck::pad_batch(&seqs, 1, 6);
        let x = (x + mask
            .shaped(3, 1, DType::F64)
            .unwrap()
            .unwrap()
            .affine(-5.0, 5.0)
            .unwrap()
            .broadcast_as((3, 6, 3))
            .unwrap())
        .unwrap();
        let y = bigru.forward_masked(&x, &mask).unwrap();
        for (b, (s, &l)) in seqs.iter().zip(&lengths).enumerate() {
            let want = bigru.forward(s).unwrap();
            gradcheck::assert_close(&gradcheck::valid_row(&y, b, 1, l), &want, 1e-12, "bigru");
            let pad = y.narrow(0, b, 1).unwrap().narrow(1, l, 6 - l).unwrap();
            assert_eq!(
                pad.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
                0.0
            );
        }
        // In f32 without gradients (inference) the lengths are honoured the same way.
        let detached = |g: &Gru| Gru {
            w_ih: g.w_ih.detach().to_dtype(DType::F32).unwrap(),
            w_hh: g.w_hh.detach().to_dtype(DType::F32).unwrap(),
            b_ih: g.b_ih.detach().to_dtype(DType::F32).unwrap(),
            b_hh: g.b_hh.detach().to_dtype(DType::F32).unwrap(),
            hidden: g.hidden,
        };
        let fast = BiGru {
            fwd: detached(&bigru.fwd),
            bwd: detached(&bigru.bwd),
        };
        let mask32 = TimeMask::new(&lengths, 6, DType::F32, &Device::Cpu).unwrap();
        let y32 = fast
            .forward_masked(&x.to_dtype(DType::F32).unwrap(), &mask32)
            .unwrap();
        assert!(!y32.track_op());
        gradcheck::assert_close(
            &y32.to_dtype(DType::F64).unwrap(),
            &y,
            1e-6,
            "f32 inference",
        );
    }

    #[test]
    fn masked_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 15, DType::F64, &Device::Cpu);
        let bigru = BiGru::new(2, 2, vb).unwrap();
        let lengths = [2, 4];
        let mask = TimeMask::new(&lengths, 4, DType::F64, &Device::Cpu).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 4, 2], 16)).unwrap();
        gradcheck::check_masked(
            &map,
            ("x", &x),
            1,
            &lengths,
            || bigru.forward_masked(x.as_tensor(), &mask),
            1e-6,
        );
    }
}
