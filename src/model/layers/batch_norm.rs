//! Batch normalisation over the channel axis (dimension 1), as PyTorch `BatchNorm2d`.

use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, ModuleT, VarBuilder};

use super::mask::TimeMask;

/// Batch normalisation of `(B, C, …)` tensors over every axis but the channel axis.
///
/// Training normalises with the batch statistics (biased variance) and updates the
/// running statistics with `momentum` (unbiased variance), as PyTorch. Inference uses
/// the running statistics folded into one scale and one shift per channel.
/// Tensors: `weight`, `bias`, `running_mean`, `running_var` (PyTorch's names; its
/// `num_batches_tracked` is not used).
#[derive(Debug, Clone)]
pub struct BatchNorm {
    /// Per-channel scale γ, `(C)`.
    weight: Tensor,
    /// Per-channel shift β, `(C)`.
    bias: Tensor,
    /// Running mean, updated in training, `(C)`.
    running_mean: Var,
    /// Running (unbiased) variance, updated in training, `(C)`.
    running_var: Var,
    /// Added to the variance before the square root.
    eps: f64,
    /// Weight of the newest batch in the running statistics.
    momentum: f64,
}

impl BatchNorm {
    /// A batch norm of `channels` channels with PyTorch's defaults (eps 1e-5, momentum 0.1).
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_params(channels, 1e-5, 0.1, vb)
    }

    /// A batch norm with explicit `eps` and `momentum`.
    pub fn with_params(channels: usize, eps: f64, momentum: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps,
            momentum,
        })
    }

    /// The running mean.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running variance.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// The per-channel weight γ, `(C)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// Inference as one affine map per channel, `y = scale · x + shift` with
    /// `scale = γ / √(running_var + eps)` and `shift = β − running_mean · scale`
    /// (f32, the values the inference path computes), for fused kernels.
    pub(crate) fn eval_affine(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let v = |t: &Tensor| t.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>();
        let (w, b) = (v(&self.weight)?, v(&self.bias)?);
        let (rm, rv) = (v(self.running_mean())?, v(self.running_var())?);
        let eps = self.eps as f32;
        let scale: Vec<f32> = w
            .iter()
            .zip(&rv)
            .map(|(w, r)| w / (r + eps).sqrt())
            .collect();
        let shift = b
            .iter()
            .zip(&rm)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok((scale, shift))
    }

    /// Shape `(1, C, 1, …)` that broadcasts a per-channel vector against `x`.
    fn channel_shape(x: &Tensor, c: usize) -> Vec<usize> {
        (0..x.rank()).map(|i| if i == 1 { c } else { 1 }).collect()
    }

    /// Training output from the batch statistics (`mean`, biased `var`, keepdim, over
    /// `n` positions per channel): normalises `centred = x − mean`, applies γ and β,
    /// and updates the running statistics (no gradient), PyTorch's rule.
    fn train_output(
        &self,
        centred: &Tensor,
        mean: &Tensor,
        var: &Tensor,
        n: usize,
        shape: &[usize],
    ) -> Result<Tensor> {
        let inv_std = (var + self.eps)?.sqrt()?.recip()?;
        let y = centred.broadcast_mul(&inv_std)?;
        let m = self.momentum;
        let mean_d = mean
            .detach()
            .flatten_all()?
            .to_dtype(self.running_mean.dtype())?;
        let unbiased = if n > 1 {
            n as f64 / (n as f64 - 1.0)
        } else {
            1.0
        };
        let var_d = (var.detach().flatten_all()? * unbiased)?.to_dtype(self.running_var.dtype())?;
        let new_mean = ((self.running_mean.as_detached_tensor() * (1.0 - m))? + (mean_d * m)?)?;
        let new_var = ((self.running_var.as_detached_tensor() * (1.0 - m))? + (var_d * m)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        y.broadcast_mul(&self.weight.reshape(shape)?)?
            .broadcast_add(&self.bias.reshape(shape)?)
    }

    /// Batch norm of a zero-padded batch `x (B, C, T, …)` whose time axis 2 is
    /// described by `mask`: in training the statistics (and the running-statistic
    /// update) count valid frames only, so padding never shifts them. Inference and an
    /// unpadded batch are exactly [`ModuleT::forward_t`]. Padded frames of the output
    /// are not zeroed (the caller zeroes what the next layer reads).
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<Tensor> {
        let m = match (train, mask.shaped(x.rank(), 2, x.dtype())?) {
            (true, Some(m)) => m,
            _ => return self.forward_t(x, train),
        };
        let c = self.weight.dim(0)?;
        if x.rank() < 3 || x.dim(1)? != c || x.dim(0)? != mask.batch() || x.dim(2)? != mask.frames()
        {
            candle_core::bail!(
                "masked batch norm of {c} channels got input {:?} for a mask of {} × {} frames",
                x.shape(),
                mask.batch(),
                mask.frames()
            );
        }
        let shape = Self::channel_shape(x, c);
        let axes: Vec<usize> = (0..x.rank()).filter(|&i| i != 1).collect();
        let per_frame: usize = x.dims()[3..].iter().product();
        let n = (mask.lengths().iter().sum::<usize>() * per_frame).max(1);
        let mean = (x.broadcast_mul(&m)?.sum_keepdim(axes.as_slice())? / n as f64)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = (centred
            .sqr()?
            .broadcast_mul(&m)?
            .sum_keepdim(axes.as_slice())?
            / n as f64)?;
        self.train_output(&centred, &mean, &var, n, &shape)
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        if x.rank() < 2 || x.dim(1)? != c {
            candle_core::bail!(
                "batch norm of {c} channels got input of shape {:?}",
                x.shape()
            );
        }
        let shape = Self::channel_shape(x, c);
        if train {
            let axes: Vec<usize> = (0..x.rank()).filter(|&i| i != 1).collect();
            let n = x.elem_count() / c;
            let mean = (x.sum_keepdim(axes.as_slice())? / n as f64)?;
            let centred = x.broadcast_sub(&mean)?;
            let var = (centred.sqr()?.sum_keepdim(axes.as_slice())? / n as f64)?;
            self.train_output(&centred, &mean, &var, n, &shape)
        } else {
            let rv = self.running_var.as_detached_tensor();
            let rm = self.running_mean.as_detached_tensor();
            let scale = (&self.weight / (rv + self.eps)?.sqrt()?)?;
            let shift = (&self.bias - (rm * &scale)?)?;
            let dtype = x.dtype();
            let (scale, shift) = if scale.dtype() == dtype {
                (scale, shift)
            } else {
                (scale.to_dtype(dtype)?, shift.to_dtype(dtype)?)
            };
            x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
                .broadcast_add(&shift.reshape(shape.as_slice())?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::mask::TimeMask;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::Var;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn train_normalises_and_updates_running_stats_like_pytorch() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F64, &dev);
        let bn = BatchNorm::new(2, vb).unwrap();
        // Channel 0: 1, 2, 3, 4; channel 1: 10, 10, 10, 14. Shape (2, 2, 1, 2).
        let x = Tensor::new(&[1.0f64, 2.0, 10.0, 10.0, 3.0, 4.0, 10.0, 14.0], &dev)
            .unwrap()
            .reshape((2, 2, 1, 2))
            .unwrap();
        let y = bn.forward_t(&x, true).unwrap();
        let y: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
        // Channel 0: mean 2.5, biased var 1.25.
        let s0 = (1.25f64 + 1e-5).sqrt();
        assert!((y[0] - (1.0 - 2.5) / s0).abs() < 1e-12);
        assert!((y[5] - (4.0 - 2.5) / s0).abs() < 1e-12);
        // Channel 1: mean 11, biased var 3, unbiased 4.
        let rm: Vec<f64> = bn.running_mean().to_vec1().unwrap();
        let rv: Vec<f64> = bn.running_var().to_vec1().unwrap();
        assert!(
            (rm[0] - 0.25).abs() < 1e-12 && (rm[1] - 1.1).abs() < 1e-12,
            "{rm:?}"
        );
        let want_rv0 = 0.9 + 0.1 * (1.25 * 4.0 / 3.0);
        assert!(
            (rv[0] - want_rv0).abs() < 1e-12 && (rv[1] - (0.9 + 0.4)).abs() < 1e-12,
            "{rv:?}"
        );
        // Inference uses the running statistics.
        let e: Vec<f64> = bn
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((e[0] - (1.0 - 0.25) / (want_rv0 + 1e-5).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F64, &dev);
        let bn = BatchNorm::new(3, vb).unwrap();
        // Non-trivial affine parameters.
        for (name, seed) in [("weight", 5), ("bias", 6)] {
            let v = map.data().lock().unwrap().get(name).unwrap().clone();
            v.set(&gradcheck::rand_tensor(&[3], seed)).unwrap();
        }
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 3, 2, 3], 2)).unwrap();
        gradcheck::check(
            &map,
            &[("x", &x)],
            || bn.forward_t(x.as_tensor(), true),
            1e-6,
        );
    }

    #[test]
    fn masked_training_statistics_count_valid_frames_only() {
        let dev = Device::Cpu;
        let (map_p, map_r) = (VarMap::new(), VarMap::new());
        let bn_p = BatchNorm::new(3, seeded_var_builder(&map_p, 0, DType::F64, &dev)).unwrap();
        let bn_r = BatchNorm::new(3, seeded_var_builder(&map_r, 0, DType::F64, &dev)).unwrap();
        // Sequences of 3 and 5 frames padded to 6, with garbage in the padding.
        let a = gradcheck::rand_tensor(&[1, 3, 3, 2], 1);
        let b = gradcheck::rand_tensor(&[1, 3, 5, 2], 2);
        let mask = TimeMask::new(&[3, 5], 6, DType::F64, &dev).unwrap();
        let garbage = mask
            .shaped(4, 2, DType::F64)
            .unwrap()
            .unwrap()
            .affine(-9.0, 9.0);
        let x = gradcheck::pad_batch(&[a.clone(), b.clone()], 2, 6)
            .broadcast_add(&garbage.unwrap())
            .unwrap();
        let y = bn_p.forward_masked(&x, &mask, true).unwrap();
        // Reference: the same valid frames, unpadded, in one sequence.
        let want = bn_r
            .forward_t(&Tensor::cat(&[&a, &b], 2).unwrap(), true)
            .unwrap();
        let row = |b, len| gradcheck::valid_row(&y, b, 2, len);
        gradcheck::assert_close(&row(0, 3), &want.narrow(2, 0, 3).unwrap(), 1e-12, "clip 0");
        gradcheck::assert_close(&row(1, 5), &want.narrow(2, 3, 5).unwrap(), 1e-12, "clip 1");
        gradcheck::assert_close(bn_p.running_mean(), bn_r.running_mean(), 1e-14, "mean");
        gradcheck::assert_close(bn_p.running_var(), bn_r.running_var(), 1e-14, "var");
        // Inference and unpadded batches take the unmasked path.
        let e = bn_p.forward_masked(&x, &mask, false).unwrap();
        gradcheck::assert_close(&e, &bn_p.forward_t(&x, false).unwrap(), 0.0, "eval");
    }

    #[test]
    fn masked_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let bn = BatchNorm::new(2, seeded_var_builder(&map, 0, DType::F64, &dev)).unwrap();
        for (name, seed) in [("weight", 5), ("bias", 6)] {
            let v = map.data().lock().unwrap().get(name).unwrap().clone();
            v.set(&gradcheck::rand_tensor(&[2], seed)).unwrap();
        }
        let mask = TimeMask::new(&[2, 4], 4, DType::F64, &dev).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 4, 3], 2)).unwrap();
        gradcheck::check_masked(
            &map,
            ("x", &x),
            2,
            &[2, 4],
            || mask.zero(&bn.forward_masked(x.as_tensor(), &mask, true)?, 2),
            1e-6,
        );
    }
}
