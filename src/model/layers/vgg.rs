//! VGG-style blocks of 2APAE (paper 003, Tables I and III):
//! `[Conv3×3 → BN → ReLU] × 2 → AvgPool 3×3 stride 1 padding 1`, which keeps the
//! time and mel sizes.
//!
//! candle's `avg_pool2d` backward errors when kernel ≠ stride, so the 3×3 stride-1
//! average pool is written as padded shifted sums ([`avg_pool3_same`]), whose backward
//! is exact (gradient-checked).

use candle_core::{Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};

use super::conv::ConvBnRelu;
use super::mask::TimeMask;

/// PyTorch `AvgPool2d(3, stride=1, padding=1)` (`count_include_pad=True`) of
/// `(B, C, T, F)`: the sum of each zero-padded 3×3 neighbourhood divided by 9, computed
/// separably (three shifted sums along time, then three along mel).
pub fn avg_pool3_same(x: &Tensor) -> Result<Tensor> {
    let (_, _, t, f) = x.dims4()?;
    if super::fast::eval_ready(x, &[]) {
        return super::fast::avg_pool3_same(x);
    }
    let xp = x.pad_with_zeros(2, 1, 1)?;
    let rows = (xp.narrow(2, 0, t)? + xp.narrow(2, 1, t)?)?.add(&xp.narrow(2, 2, t)?)?;
    let rp = rows.pad_with_zeros(3, 1, 1)?;
    let s = (rp.narrow(3, 0, f)? + rp.narrow(3, 1, f)?)?.add(&rp.narrow(3, 2, f)?)?;
    s / 9.0
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
