//! Convolution blocks.

use candle_core::{Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Module, ModuleT, VarBuilder};

use super::activation::LeakyRelu;
use super::batch_norm::BatchNorm;

/// 2-D convolution without bias, "same" zero padding, stride 1; tensor `weight` of
/// shape `(c_out, c_in, k, k)` (PyTorch's layout), Kaiming-normal initialised.
pub fn conv2d_same(c_in: usize, c_out: usize, kernel: usize, vb: VarBuilder) -> Result<Conv2d> {
    let weight = vb.get_with_hints(
        (c_out, c_in, kernel, kernel),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    let cfg = Conv2dConfig {
        padding: kernel / 2,
        ..Conv2dConfig::default()
    };
    Ok(Conv2d::new(weight, None, cfg))
}

/// CDur's `Block2D`: BatchNorm2d(c_in) → Conv k×k (no bias, same padding) →
/// LeakyReLU. Input and output `(B, C, T, F)`; tensors under `bn.` and `conv.`.
#[derive(Debug, Clone)]
pub struct ConvBlock {
    /// Normalises the block's input.
    bn: BatchNorm,
    /// The convolution.
    conv: Conv2d,
    /// The activation.
    act: LeakyRelu,
}

impl ConvBlock {
    /// A block from `c_in` to `c_out` channels with an odd `kernel` and LeakyReLU `slope`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        slope: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        if kernel % 2 == 0 {
            candle_core::bail!("conv block kernel must be odd for same padding, got {kernel}");
        }
        Ok(Self {
            bn: BatchNorm::new(c_in, vb.pp("bn"))?,
            conv: conv2d_same(c_in, c_out, kernel, vb.pp("conv"))?,
            act: LeakyRelu::new(slope),
        })
    }
}

impl ModuleT for ConvBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.bn.forward_t(x, train)?;
        let x = self.conv.forward(&x)?;
        self.act.forward_t(&x, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    #[test]
    fn keeps_time_and_mel_sizes() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 1, DType::F32, &Device::Cpu);
        let block = ConvBlock::new(1, 4, 3, 0.1, vb).unwrap();
        let x = Tensor::zeros((2, 1, 7, 5), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(block.forward_t(&x, false).unwrap().dims(), &[2, 4, 7, 5]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 1, DType::F64, &Device::Cpu);
        let block = ConvBlock::new(2, 3, 3, 0.1, vb).unwrap();
        for (name, seed) in [("bn.weight", 5), ("bn.bias", 6)] {
            let v = map.data().lock().unwrap().get(name).unwrap().clone();
            v.set(&gradcheck::rand_tensor(&[2], seed)).unwrap();
        }
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 4, 3], 3)).unwrap();
        gradcheck::check(&map, &[("x", &x)], || block.forward_t(x.as_tensor(), true), 1e-5);
    }
}
