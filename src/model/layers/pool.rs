//! Pooling: LP pooling over (time, mel) windows and clip-level pooling over time.

use candle_core::{Module, Result, Tensor};

use super::mask::TimeMask;

/// Raises `|x|` to the power `p`, exactly for p = 1, 2, 4 (the common cases).
fn abs_pow(x: &Tensor, p: f64) -> Result<Tensor> {
    if p == 2.0 {
        x.sqr()
    } else if p == 4.0 {
        x.sqr()?.sqr()
    } else if p == 1.0 {
        x.abs()
    } else {
        x.abs()?.powf(p)
    }
}

/// `x^(1/p)` for `x ≥ 0`.
fn root(x: &Tensor, p: f64) -> Result<Tensor> {
    if p == 2.0 {
        x.sqrt()
    } else if p == 4.0 {
        x.sqrt()?.sqrt()
    } else if p == 1.0 {
        Ok(x.clone())
    } else {
        x.powf(1.0 / p)
    }
}

/// LP pooling of `(B, C, T, F)` over non-overlapping `(kt, kf)` windows:
/// `(Σ |x|^p)^(1/p)`, as torch `lp_pool2d(x, p, (kt, kf))` (stride = kernel, trailing
/// rows/columns that do not fill a window are dropped). Output `(B, C, T/kt, F/kf)`.
///
/// For even `p` this equals torch exactly; torch has no defined result for negative
/// inputs with odd `p`, where this uses `|x|`.
#[derive(Debug, Clone, Copy)]
pub struct LpPool2d {
    /// The norm's exponent, ≥ 1.
    p: f64,
    /// Window (and stride) along time.
    kt: usize,
    /// Window (and stride) along mel bands.
    kf: usize,
}

impl LpPool2d {
    /// LP pooling with exponent `p` over `(kt, kf)` windows.
    pub fn new(p: f64, kt: usize, kf: usize) -> Self {
        Self { p, kt, kf }
    }

    /// Output length of an axis of length `n` pooled by `k`.
    pub fn out_len(n: usize, k: usize) -> usize {
        n / k
    }
}

impl LpPool2d {
    /// LP pooling of a zero-padded batch `x (B, C, T, F)` whose time axis is described
    /// by `mask`: the output and its mask (`⌊len / kt⌋` frames per sequence, the
    /// windows an unpadded run keeps), zero at padded frames. Unpadded, exactly
    /// [`Module::forward`].
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask) -> Result<(Tensor, TimeMask)> {
        let out_mask = mask.pooled(self.kt)?;
        let Some(m) = mask.shaped(4, 2, x.dtype())? else {
            return Ok((self.forward(x)?, out_mask));
        };
        // A window of zero padding sums to 0, where the root's gradient is infinite
        // (and 0 · ∞ = NaN even though the frame is then zeroed): pool the padding as
        // ones instead. Valid windows never see it; padded ones are zeroed.
        let y = self.forward(&x.broadcast_add(&m.affine(-1.0, 1.0)?)?)?;
        Ok((out_mask.zero(&y, 2)?, out_mask))
    }
}

impl Module for LpPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, t, f) = x.dims4()?;
        let (to, fo) = (t / self.kt, f / self.kf);
        if to == 0 || fo == 0 {
            candle_core::bail!(
                "LP pool ({}, {}) needs an input of at least that size, got {:?}",
                self.kt,
                self.kf,
                x.shape()
            );
        }
        if self.kt == 1 && self.kf == 1 {
            return Ok(x.clone());
        }
        if super::fast::eval_ready(x, &[]) {
            return super::fast::lp_pool(x, self.p, (self.kt, self.kf));
        }
        // Only whole windows: trailing rows/columns are cut before pooling, so the
        // backward of `avg_pool2d` (correct when the size is a multiple of the kernel
        // and stride = kernel) never sees a remainder.
        let x = x.narrow(2, 0, to * self.kt)?.narrow(3, 0, fo * self.kf)?;
        let s =
            (abs_pow(&x, self.p)?.avg_pool2d((self.kt, self.kf))? * (self.kt * self.kf) as f64)?;
        root(&s, self.p)
    }
}

/// Linear-softmax pooling over axis `dim`: `Σ p² / Σ p` (Wang et al. 2019), for
/// probabilities `p > 0`. The axis is removed.
pub fn linear_softmax_pool(p: &Tensor, dim: usize) -> Result<Tensor> {
    p.sqr()?.sum(dim)?.div(&p.sum(dim)?)
}

/// Linear-softmax pooling of `p (B, T, C)` over time counting valid frames only
/// (`Σ m·p² / Σ m·p`); unpadded, exactly [`linear_softmax_pool`] over axis 1.
pub fn linear_softmax_pool_masked(p: &Tensor, mask: &TimeMask) -> Result<Tensor> {
    match mask.shaped(p.rank(), 1, p.dtype())? {
        None => linear_softmax_pool(p, 1),
        Some(m) => {
            let pm = p.broadcast_mul(&m)?;
            (&pm * p)?.sum(1)?.div(&pm.sum(1)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::gradcheck;
    use crate::model::layers::mask::TimeMask;
    use candle_core::DType;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    #[test]
    fn lp_pool_matches_hand_computed_values_and_drops_the_remainder() {
        // (1, 1, 3, 2): pooled by (2, 2) → one window of rows 0–1; row 2 dropped.
        let x = Tensor::new(&[1.0f64, -2.0, 3.0, 0.5, 9.0, 9.0], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 3, 2))
            .unwrap();
        let y = LpPool2d::new(4.0, 2, 2).forward(&x).unwrap();
        assert_eq!(y.dims(), &[1, 1, 1, 1]);
        let want = (1.0f64 + 16.0 + 81.0 + 0.0625).powf(0.25);
        let got = y.flatten_all().unwrap().to_vec1::<f64>().unwrap()[0];
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        let y3 = LpPool2d::new(3.0, 1, 2).forward(&x).unwrap();
        let got: Vec<f64> = y3.flatten_all().unwrap().to_vec1().unwrap();
        let want = [9.0f64.cbrt(), (27.0f64 + 0.125).cbrt(), 1458.0f64.cbrt()];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn lp_pool_too_small_input_is_an_error() {
        let x = Tensor::zeros((1, 1, 1, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(LpPool2d::new(4.0, 2, 4).forward(&x).is_err());
    }

    #[test]
    fn lp_pool_gradient_matches_finite_differences() {
        for (p, kt, kf) in [(4.0, 2, 2), (3.0, 2, 1), (2.0, 1, 3)] {
            let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 5, 7], 4)).unwrap();
            let pool = LpPool2d::new(p, kt, kf);
            gradcheck::check(
                &VarMap::new(),
                &[("x", &x)],
                || pool.forward(x.as_tensor()),
                1e-6,
            );
        }
    }

    #[test]
    fn linear_softmax_matches_hand_computed_values() {
        // (1, 3, 2): class 0 probs 0.1, 0.5, 0.9; class 1 probs 0.2, 0.2, 0.2.
        let p = Tensor::new(&[[[0.1f64, 0.2], [0.5, 0.2], [0.9, 0.2]]], &Device::Cpu).unwrap();
        let c: Vec<f64> = linear_softmax_pool(&p, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((c[0] - (0.01 + 0.25 + 0.81) / 1.5).abs() < 1e-12, "{c:?}");
        assert!((c[1] - 0.2).abs() < 1e-12, "{c:?}");
    }

    #[test]
    fn linear_softmax_gradient_matches_finite_differences() {
        let p = gradcheck::rand_tensor(&[2, 4, 3], 5)
            .affine(0.4, 0.5)
            .unwrap();
        let p = Var::from_tensor(&p).unwrap();
        gradcheck::check(
            &VarMap::new(),
            &[("p", &p)],
            || linear_softmax_pool(p.as_tensor(), 1),
            1e-6,
        );
    }

    #[test]
    fn masked_lp_pool_and_linear_softmax_equal_each_sequence_alone() {
        let dev = Device::Cpu;
        // 7 and 4 valid frames of 8: pooling by 2 keeps 3 and 2 windows.
        let lengths = [7, 4];
        let mask = TimeMask::new(&lengths, 8, DType::F64, &dev).unwrap();
        let seqs: Vec<Tensor> = lengths
            .iter()
            .map(|&l| gradcheck::rand_tensor(&[1, 2, l, 4], l as u64))
            .collect();
        let x = gradcheck::pad_batch(&seqs, 2, 8);
        let pool = LpPool2d::new(4.0, 2, 2);
        let (y, m) = pool.forward_masked(&x, &mask).unwrap();
        assert_eq!((m.lengths(), m.frames()), (&[3usize, 2][..], 4));
        for (b, s) in seqs.iter().enumerate() {
            let want = pool.forward(s).unwrap();
            let got = gradcheck::valid_row(&y, b, 2, m.lengths()[b]);
            gradcheck::assert_close(&got, &want, 1e-12, "lp");
        }
        let p = gradcheck::rand_tensor(&[2, 8, 3], 3)
            .affine(0.4, 0.5)
            .unwrap();
        let got = linear_softmax_pool_masked(&p, &mask).unwrap();
        for (b, &l) in lengths.iter().enumerate() {
            let want = linear_softmax_pool(&gradcheck::valid_row(&p, b, 1, l), 1).unwrap();
            gradcheck::assert_close(&got.narrow(0, b, 1).unwrap(), &want, 1e-12, "lsp");
        }
    }

    #[test]
    fn masked_pools_gradients_are_finite_and_match_finite_differences() {
        let dev = Device::Cpu;
        let lengths = [3, 6];
        let mask = TimeMask::new(&lengths, 6, DType::F64, &dev).unwrap();
        // Zero padding, as masked layers give: LP windows of padding sum to exactly 0.
        let x = mask
            .zero(&gradcheck::rand_tensor(&[2, 2, 6, 4], 6), 2)
            .unwrap();
        let x = Var::from_tensor(&x).unwrap();
        for (p, kt, kf) in [(4.0, 2, 2), (3.0, 1, 2), (2.0, 3, 1)] {
            let pool = LpPool2d::new(p, kt, kf);
            gradcheck::check_masked(
                &VarMap::new(),
                ("x", &x),
                2,
                &lengths,
                || pool.forward_masked(x.as_tensor(), &mask).map(|o| o.0),
                1e-6,
            );
        }
        let p = Var::from_tensor(
            &gradcheck::rand_tensor(&[2, 6, 3], 7)
                .affine(0.4, 0.5)
                .unwrap(),
        )
        .unwrap();
        gradcheck::check_masked(
            &VarMap::new(),
            ("p", &p),
            1,
            &lengths,
            || linear_softmax_pool_masked(p.as_tensor(), &mask),
            1e-6,
        );
    }
}
