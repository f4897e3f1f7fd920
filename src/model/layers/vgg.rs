//! VGG-style blocks of 2APAE (paper 003, Tables I and III):
//! `[Conv3×3 → BN → ReLU] × 2 → AvgPool 3×3 stride 1 padding 1`, which keeps the
//! time and mel sizes.
//!
//! candle's `avg_pool2d` backward errors when kernel ≠ stride, so the 3×3 stride-1
//! average pool ([`avg_pool3_same`]) is its own candle operation: one separable pass
//! forward, and the same pass backward, since the pool is self-adjoint (a symmetric
//! kernel with a fixed divisor). Built from padded shifted sums instead, its backward
//! allocated a zero tensor the size of the padded input for each of the six shifted
//! views and two pads, on 2APAE's full-resolution feature maps.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use candle_nn::{ModuleT, VarBuilder};

use super::conv::ConvBnRelu;
use super::fast::{avg_pool3_planes, storage_slice};
use super::mask::TimeMask;

/// PyTorch `AvgPool2d(3, stride=1, padding=1)` (`count_include_pad=True`) of
/// `(B, C, T, F)`: the sum of each zero-padded 3×3 neighbourhood divided by 9, computed
/// separably (three shifted sums along mel, then three along time). Differentiable.
pub fn avg_pool3_same(x: &Tensor) -> Result<Tensor> {
    x.dims4()?;
    // One operation for inference and training: without gradients it records nothing.
    x.contiguous()?.apply_op1(AvgPool3Same)
}

/// The 3×3 stride-1 average pool as a candle operation (f32 and f64).
#[derive(Debug, Clone, Copy)]
struct AvgPool3Same;

impl AvgPool3Same {
    fn pooled<T: candle_core::WithDType>(xs: &[T], shape: &Shape) -> Result<Vec<T>> {
        let (_, _, t, f) = shape.dims4()?;
        let mut out = vec![T::zero(); xs.len()];
        avg_pool3_planes(xs, &mut out, t, f);
        Ok(out)
    }
}

impl CustomOp1 for AvgPool3Same {
    fn name(&self) -> &'static str {
        "avg_pool3_same"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let what = "avg_pool3_same: input";
        let out = match s.dtype() {
            DType::F32 => CpuStorage::F32(Self::pooled(storage_slice(s, l, what)?, l.shape())?),
            DType::F64 => CpuStorage::F64(Self::pooled(storage_slice(s, l, what)?, l.shape())?),
            d => candle_core::bail!("avg_pool3_same: unsupported dtype {d:?}"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // Self-adjoint: the input gradient is the pool of the output gradient.
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}

/// One VGG block: two [`ConvBnRelu`] units (3×3, stride 1, same padding, no conv bias;
/// tensors `units.{0,1}.{conv,bn}.*`) and the 3×3 stride-1 average pool.
#[derive(Debug, Clone)]
pub struct VggBlock {
    /// The two Conv→BN→ReLU units.
    units: [ConvBnRelu; 2],
}

impl VggBlock {
    /// A block from `c_in` to `c_out` channels.
    pub fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("units");
        Ok(Self {
            units: [
                ConvBnRelu::same3(c_in, c_out, vb.pp(0))?,
                ConvBnRelu::same3(c_out, c_out, vb.pp(1))?,
            ],
        })
    }
}

impl VggBlock {
    /// The block on a zero-padded batch (zero at padded frames, time on axis 2):
    /// statistics over valid frames, output zero at padded frames (the average pool
    /// reads zeros beyond each clip's end, as unpadded). Unpadded, exactly
    /// [`ModuleT::forward_t`].
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<Tensor> {
        if !mask.is_padded() {
            return self.forward_t(x, train);
        }
        let h = self.units[0].forward_masked(x, mask, train)?;
        let h = self.units[1].forward_masked(&h, mask, train)?;
        mask.zero(&avg_pool3_same(&h)?, 2)
    }
}

impl ModuleT for VggBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.units[0].forward_t(x, train)?;
        let h = self.units[1].forward_t(&h, train)?;
        avg_pool3_same(&h)
    }
}

/// A stack of [`VggBlock`]s (tensors `{i}.units.…`), e.g. 2APAE's encoder 1→32→64→128→256.
#[derive(Debug, Clone)]
pub struct VggStack {
    /// The blocks in order.
    blocks: Vec<VggBlock>,
}

impl VggStack {
    /// Blocks from `c_in` through each of `channels` in turn.
    pub fn new(c_in: usize, channels: &[usize], vb: VarBuilder) -> Result<Self> {
        let mut blocks = Vec::with_capacity(channels.len());
        let mut c = c_in;
        for (i, &c_out) in channels.iter().enumerate() {
            blocks.push(VggBlock::new(c, c_out, vb.pp(i))?);
            c = c_out;
        }
        Ok(Self { blocks })
    }
}

impl VggStack {
    /// The stack on a zero-padded batch (see [`VggBlock::forward_masked`]).
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for b in &self.blocks {
            h = b.forward_masked(&h, mask, train)?;
        }
        Ok(h)
    }
}

impl ModuleT for VggStack {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for b in &self.blocks {
            h = b.forward_t(&h, train)?;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    #[test]
    fn avg_pool_matches_a_direct_sum() {
        let x = gradcheck::rand_tensor(&[1, 2, 4, 3], 1);
        let y: Vec<Vec<Vec<f64>>> = avg_pool3_same(&x)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec3()
            .unwrap();
        let xv: Vec<Vec<Vec<f64>>> = x.squeeze(0).unwrap().to_vec3().unwrap();
        for c in 0..2 {
            for i in 0..4i64 {
                for j in 0..3i64 {
                    let mut s = 0.0;
                    for di in -1..=1 {
                        for dj in -1..=1 {
                            let (a, b) = (i + di, j + dj);
                            if (0..4).contains(&a) && (0..3).contains(&b) {
                                s += xv[c][a as usize][b as usize];
                            }
                        }
                    }
                    assert!((y[c][i as usize][j as usize] - s / 9.0).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn avg_pool_gradient_matches_finite_differences() {
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 3, 4], 3)).unwrap();
        gradcheck::check(
            &VarMap::new(),
            &[("x", &x)],
            || avg_pool3_same(x.as_tensor()),
            1e-6,
        );
    }

    #[test]
    fn training_and_inference_paths_agree_on_strided_and_thin_inputs() {
        for dims in [[2, 3, 5, 4], [1, 2, 1, 6], [1, 1, 7, 1]] {
            let x = gradcheck::rand_tensor(&dims, 7)
                .to_dtype(DType::F32)
                .unwrap();
            // A strided view: the same values through a double transpose.
            let xs = x.transpose(2, 3).unwrap().contiguous().unwrap();
            let xs = xs.transpose(2, 3).unwrap();
            assert!(dims[2] == 1 || dims[3] == 1 || !xs.is_contiguous());
            let eval = avg_pool3_same(&xs).unwrap();
            let v = Var::from_tensor(&xs).unwrap();
            let train = avg_pool3_same(v.as_tensor()).unwrap();
            assert!(
                train.track_op(),
                "{dims:?}: the training path must record the op"
            );
            gradcheck::assert_close(&eval, &train, 0.0, "avg pool paths");
            let grads = train.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(grads.get(v.as_tensor()).unwrap().dims(), &dims);
        }
    }

    #[test]
    fn vgg_block_keeps_sizes_and_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let block = VggBlock::new(1, 2, vb).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 1, 4, 3], 4)).unwrap();
        assert_eq!(
            block.forward_t(x.as_tensor(), false).unwrap().dims(),
            &[2, 2, 4, 3]
        );
        gradcheck::check(
            &map,
            &[("x", &x)],
            || block.forward_t(x.as_tensor(), true),
            1e-5,
        );
    }
}
