//! Batch normalisation over the channel axis (dimension 1), as PyTorch `BatchNorm2d`.

use std::sync::{Arc, OnceLock};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, Var, WithDType};
use candle_nn::{Init, ModuleT, VarBuilder};
use rayon::prelude::*;

use super::fast::{storage_slice, with_slice};
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

    /// Training: normalises with the batch statistics of the valid positions (each
    /// sequence's first `lengths[b]` steps of axis 2, or all), applies γ and β, and
    /// updates the running statistics (no gradient), PyTorch's rule. One operation
    /// with its own backward ([`BatchNormTrain`]).
    fn train_forward(&self, x: &Tensor, lengths: Option<&[usize]>) -> Result<Tensor> {
        let stats = Arc::new(OnceLock::new());
        let x = if x.is_contiguous() {
            x.clone()
        } else {
            x.contiguous()?
        };
        let dtype = x.dtype();
        let (w, b) = (
            self.weight.to_dtype(dtype)?.contiguous()?,
            self.bias.to_dtype(dtype)?.contiguous()?,
        );
        let y = x.apply_op3(
            &w,
            &b,
            BatchNormTrain {
                lengths: lengths.map(<[usize]>::to_vec),
                eps: self.eps,
                stats: stats.clone(),
            },
        )?;
        let Some(st) = stats.get() else {
            candle_core::bail!("batch norm: the statistics were not computed");
        };
        let m = self.momentum;
        let unbiased = if st.n > 1 {
            st.n as f64 / (st.n as f64 - 1.0)
        } else {
            1.0
        };
        let c = st.mean.len();
        let dev = x.device();
        let mean = Tensor::from_slice(&st.mean, c, dev)?.to_dtype(self.running_mean.dtype())?;
        let var = (Tensor::from_slice(&st.var, c, dev)? * unbiased)?
            .to_dtype(self.running_var.dtype())?;
        let new_mean = ((self.running_mean.as_detached_tensor() * (1.0 - m))? + (mean * m)?)?;
        let new_var = ((self.running_var.as_detached_tensor() * (1.0 - m))? + (var * m)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        Ok(y)
    }

    /// Batch norm of a zero-padded batch `x (B, C, T, …)` whose time axis 2 is
    /// described by `mask`: in training the statistics (and the running-statistic
    /// update) count valid frames only, so padding never shifts them. Inference and an
    /// unpadded batch are exactly [`ModuleT::forward_t`]. Padded frames of the output
    /// are not zeroed (the caller zeroes what the next layer reads).
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<Tensor> {
        if !(train && mask.is_padded()) {
            return self.forward_t(x, train);
        }
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
        self.train_forward(x, Some(mask.lengths()))
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
            self.train_forward(x, None)
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

/// Batch statistics of one training call: per channel, the mean, the biased
/// variance and 1/√(var + eps) (f64), over `n` valid positions per channel.
#[derive(Debug)]
struct BnStats {
    mean: Vec<f64>,
    var: Vec<f64>,
    inv_std: Vec<f64>,
    n: usize,
}

/// Training batch norm `y = γ (x − μ) / √(σ² + eps) + β` over `x (B, C, S…)` as one
/// operation: two passes forward (statistics, output), two backward (sums, input
/// gradient), in parallel over channels and planes, instead of a dozen candle
/// operations whose broadcast backwards are strided reductions over the whole batch.
/// The statistics count each sequence's first `lengths[b]` steps of axis 2 (all
/// positions without lengths); the output covers every position.
struct BatchNormTrain {
    lengths: Option<Vec<usize>>,
    eps: f64,
    /// Set by the forward pass: read for the running statistics and by the backward.
    stats: Arc<OnceLock<BnStats>>,
}

/// `(B, C, S)` of a `(B, C, …)` shape and the valid prefix of each sequence's plane.
fn bn_dims(shape: &Shape, lengths: Option<&[usize]>) -> Result<(usize, usize, usize, Vec<usize>)> {
    let d = shape.dims();
    if d.len() < 2 {
        candle_core::bail!("batch norm needs (B, C, …), got {shape:?}");
    }
    let (b, c) = (d[0], d[1]);
    let s: usize = d[2..].iter().product();
    let valid = match lengths {
        None => vec![s; b],
        Some(l) => {
            if d.len() < 3 || l.len() != b {
                candle_core::bail!("masked batch norm: {} lengths for input {shape:?}", l.len());
            }
            let per_step: usize = d[3..].iter().product();
            l.iter().map(|&n| n.min(d[2]) * per_step).collect()
        }
    };
    Ok((b, c, s, valid))
}

impl BatchNormTrain {
    fn stats<T: WithDType>(
        &self,
        x: &[T],
        (b, c, s): (usize, usize, usize),
        valid: &[usize],
    ) -> BnStats {
        let n: usize = valid.iter().sum();
        let nf = n.max(1) as f64;
        let per_c: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let planes =
                    || (0..b).map(|bi| &x[(bi * c + ci) * s..(bi * c + ci) * s + valid[bi]]);
                let mean = planes().flatten().map(|v| v.to_f64()).sum::<f64>() / nf;
                let var = planes()
                    .flatten()
                    .map(|v| {
                        let d = v.to_f64() - mean;
                        d * d
                    })
                    .sum::<f64>()
                    / nf;
                (mean, var)
            })
            .collect();
        BnStats {
            mean: per_c.iter().map(|p| p.0).collect(),
            var: per_c.iter().map(|p| p.1).collect(),
            inv_std: per_c
                .iter()
                .map(|p| 1.0 / (p.1 + self.eps).sqrt())
                .collect(),
            n,
        }
    }

    fn forward<T: WithDType>(
        &self,
        x: &[T],
        g: &[T],
        beta: &[T],
        dims: (usize, usize, usize),
        valid: &[usize],
    ) -> Vec<T> {
        let (_, c, s) = dims;
        let st = self.stats.get_or_init(|| self.stats(x, dims, valid));
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(s.max(1))
            .zip(x.par_chunks(s.max(1)))
            .enumerate()
            .for_each(|(plane, (yo, xi))| {
                let ci = plane % c;
                let a = g[ci].to_f64() * st.inv_std[ci];
                let sh = beta[ci].to_f64() - st.mean[ci] * a;
                for (o, v) in yo.iter_mut().zip(xi) {
                    *o = T::from_f64(a * v.to_f64() + sh);
                }
            });
        y
    }

    /// `(dx, dγ, dβ)` for the output gradient `dy`.
    fn backward<T: WithDType>(
        &self,
        x: &[T],
        g: &[T],
        dy: &[T],
        (b, c, s): (usize, usize, usize),
        valid: &[usize],
    ) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
        let Some(st) = self.stats.get() else {
            candle_core::bail!("batch norm backward before its forward");
        };
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let (mut sdy, mut sdyx) = (0.0, 0.0);
                for bi in 0..b {
                    let o = (bi * c + ci) * s;
                    for (d, v) in dy[o..o + s].iter().zip(&x[o..o + s]) {
                        let d = d.to_f64();
                        sdy += d;
                        sdyx += d * (v.to_f64() - st.mean[ci]) * st.inv_std[ci];
                    }
                }
                (sdy, sdyx)
            })
            .collect();
        let nf = st.n.max(1) as f64;
        let mut dx = vec![T::zero(); x.len()];
        dx.par_chunks_mut(s.max(1))
            .enumerate()
            .for_each(|(plane, out)| {
                let (bi, ci) = (plane / c, plane % c);
                let o = plane * s;
                let k = g[ci].to_f64() * st.inv_std[ci];
                let (sdy, sdyx) = sums[ci];
                for (j, d) in out.iter_mut().enumerate() {
                    let dyv = dy[o + j].to_f64();
                    *d = T::from_f64(if j < valid[bi] {
                        let xh = (x[o + j].to_f64() - st.mean[ci]) * st.inv_std[ci];
                        k * (dyv - (sdy + xh * sdyx) / nf)
                    } else {
                        k * dyv
                    });
                }
            });
        let dg = sums.iter().map(|p| T::from_f64(p.1)).collect();
        let db = sums.iter().map(|p| T::from_f64(p.0)).collect();
        Ok((dx, dg, db))
    }
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, s, valid) = bn_dims(l1.shape(), self.lengths.as_deref())?;
        if l2.shape().elem_count() != c || l3.shape().elem_count() != c {
            candle_core::bail!(
                "batch norm of {:?} with γ {:?}, β {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let dims = (b, c, s);
        let out = match s1.dtype() {
            DType::F32 => CpuStorage::F32(self.forward(
                storage_slice::<f32>(s1, l1, "batch norm: input")?,
                storage_slice(s2, l2, "batch norm: γ")?,
                storage_slice(s3, l3, "batch norm: β")?,
                dims,
                &valid,
            )),
            DType::F64 => CpuStorage::F64(self.forward(
                storage_slice::<f64>(s1, l1, "batch norm: input")?,
                storage_slice(s2, l2, "batch norm: γ")?,
                storage_slice(s3, l3, "batch norm: β")?,
                dims,
                &valid,
            )),
            d => candle_core::bail!("batch norm: unsupported dtype {d:?}"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, c, s, valid) = bn_dims(x.shape(), self.lengths.as_deref())?;
        fn run<T: WithDType>(
            op: &BatchNormTrain,
            (x, g, grad): (&Tensor, &Tensor, &Tensor),
            dims: (usize, usize, usize),
            valid: &[usize],
        ) -> Result<(Tensor, Tensor, Tensor)> {
            let dev = x.device();
            let c = dims.1;
            with_slice::<T, _>(x, |xv| {
                with_slice::<T, _>(g, |gv| {
                    with_slice::<T, _>(grad, |dy| {
                        let (a, bb, cc) = op.backward(xv, gv, dy, dims, valid)?;
                        Ok((
                            Tensor::from_vec(a, x.shape(), dev)?,
                            Tensor::from_vec(bb, c, dev)?,
                            Tensor::from_vec(cc, c, dev)?,
                        ))
                    })
                })
            })
        }
        let (dx, dg, db) = match x.dtype() {
            DType::F32 => run::<f32>(self, (x, g, grad), (b, c, s), &valid)?,
            DType::F64 => run::<f64>(self, (x, g, grad), (b, c, s), &valid)?,
            d => candle_core::bail!("batch norm: unsupported dtype {d:?}"),
        };
        Ok((
            Some(dx),
            Some(dg.reshape(g.shape())?),
            Some(db.reshape(beta.shape())?),
        ))
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
