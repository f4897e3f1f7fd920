//! 2-D max pooling with a correct gradient.
//!
//! candle 0.11's `max_pool2d` backward gives a quarter of the true gradient for 2×2
//! windows; this pool reshapes the input into its windows and takes `max` over the
//! window axes, whose backward (a mask of the maxima) is right.

use candle_core::{Module, Result, Tensor};

use super::mask::TimeMask;

/// Max pooling of `(B, C, T, F)` over non-overlapping `(kt, kf)` windows, as torch
/// `max_pool2d(x, (kt, kf))` (stride = kernel, trailing rows/columns that do not fill a
/// window are dropped). Output `(B, C, T/kt, F/kf)`. Ties share the gradient.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    /// Window (and stride) along time.
    kt: usize,
    /// Window (and stride) along mel bands.
    kf: usize,
}

impl MaxPool2d {
    /// Max pooling over `(kt, kf)` windows (both ≥ 1).
    pub fn new(kt: usize, kf: usize) -> Self {
        Self { kt, kf }
    }
}

impl MaxPool2d {
    /// Max pooling of a zero-padded batch `x (B, C, T, F)` whose time axis is described
    /// by `mask`: the output, zero at padded frames, and its mask (`⌊len / kt⌋` frames
    /// per sequence, the windows an unpadded run keeps). Unpadded, exactly
    /// [`Module::forward`].
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask) -> Result<(Tensor, TimeMask)> {
        let out_mask = mask.pooled(self.kt)?;
        let y = self.forward(x)?;
        if !mask.is_padded() {
            return Ok((y, out_mask));
        }
        Ok((out_mask.zero(&y, 2)?, out_mask))
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t, f) = x.dims4()?;
        let (kt, kf) = (self.kt, self.kf);
        if kt == 0 || kf == 0 || t / kt.max(1) == 0 || f / kf.max(1) == 0 {
            candle_core::bail!(
                "max pool ({kt}, {kf}) needs an input of at least that size, got {:?}",
                x.shape()
            );
        }
        if kt == 1 && kf == 1 {
            return Ok(x.clone());
        }
        if super::fast::eval_ready(x, &[]) {
            return super::fast::max_pool(x, (kt, kf));
        }
        let (to, fo) = (t / kt, f / kf);
        let x = if to * kt == t && fo * kf == f {
            x.contiguous()?
        } else {
            x.narrow(2, 0, to * kt)?
                .narrow(3, 0, fo * kf)?
                .contiguous()?
        };
        let mut y = x.reshape((b, c, to, kt, fo, kf))?;
        if kf > 1 {
            y = y.max(5)?;
        } else {
            y = y.squeeze(5)?;
        }
        if kt > 1 {
            y.max(3)
        } else {
            y.squeeze(3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::gradcheck;
    use crate::model::layers::mask::TimeMask;
    use candle_core::Var;
    use candle_nn::VarMap;

    #[test]
    fn equals_candle_forward_and_drops_the_remainder() {
        let x = gradcheck::rand_tensor(&[2, 3, 7, 9], 1);
        for (kt, kf) in [(1, 4), (2, 2), (3, 1), (2, 4)] {
            let got = MaxPool2d::new(kt, kf).forward(&x).unwrap();
            let want = x
                .narrow(2, 0, 7 / kt * kt)
                .unwrap()
                .narrow(3, 0, 9 / kf * kf)
                .unwrap()
                .max_pool2d((kt, kf))
                .unwrap();
            assert_eq!(got.dims(), want.dims());
            let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f64>().unwrap() < 1e-15, "({kt}, {kf})");
        }
        assert!(MaxPool2d::new(1, 4)
            .forward(&gradcheck::rand_tensor(&[1, 1, 2, 3], 2))
            .is_err());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (kt, kf) in [(1, 4), (2, 2), (2, 1)] {
            let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 5, 8], 3)).unwrap();
            let pool = MaxPool2d::new(kt, kf);
            gradcheck::check(
                &VarMap::new(),
                &[("x", &x)],
                || pool.forward(x.as_tensor()),
                1e-6,
            );
        }
    }

    #[test]
    fn masked_pool_equals_each_sequence_alone_and_gradient_checks() {
        let dev = candle_core::Device::Cpu;
        let lengths = [5, 8];
        let mask = TimeMask::new(&lengths, 8, candle_core::DType::F64, &dev).unwrap();
        let seqs: Vec<Tensor> = lengths
            .iter()
            .map(|&l| gradcheck::rand_tensor(&[1, 2, l, 4], l as u64))
            .collect();
        let x = Var::from_tensor(&gradcheck::pad_batch(&seqs, 2, 8)).unwrap();
        let pool = MaxPool2d::new(2, 2);
        let (y, m) = pool.forward_masked(x.as_tensor(), &mask).unwrap();
        assert_eq!(m.lengths(), &[2, 4]);
        for (b, s) in seqs.iter().enumerate() {
            let got = gradcheck::valid_row(&y, b, 2, m.lengths()[b]);
            gradcheck::assert_close(&got, &pool.forward(s).unwrap(), 0.0, "max");
        }
        gradcheck::check_masked(
            &VarMap::new(),
            ("x", &x),
            2,
            &lengths,
            || pool.forward_masked(x.as_tensor(), &mask).map(|o| o.0),
            1e-6,
        );
    }
}
