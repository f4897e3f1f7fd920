//! Convolution blocks.

use candle_core::{Module, Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};

use super::activation::LeakyRelu;
use super::batch_norm::BatchNorm;

/// 2-D convolution without bias, odd `k × k` kernel, "same" zero padding, stride 1;
/// tensor `weight` of shape `(c_out, c_in, k, k)` (PyTorch's layout), Kaiming-normal
/// initialised. Input and output `(B, C, T, F)`.
///
/// Computed as im2col + one matrix product, built from candle operations whose
/// backward passes are matrix products and copies: on the CPU this is as fast as or
/// faster than candle's `conv2d` forward (7× for one input channel), and its input
/// gradient avoids candle's slow loop-based `conv2d` backward.
#[derive(Debug, Clone)]
pub struct Conv2dSame {
    /// `(c_out, c_in, k, k)`.
    weight: Tensor,
    /// Kernel size k (odd).
    kernel: usize,
}

impl Conv2dSame {
    /// A convolution from `c_in` to `c_out` channels with an odd `kernel`.
    pub fn new(c_in: usize, c_out: usize, kernel: usize, vb: VarBuilder) -> Result<Self> {
        if kernel % 2 == 0 {
            candle_core::bail!("same-padding convolution needs an odd kernel, got {kernel}");
        }
        let weight = vb.get_with_hints(
            (c_out, c_in, kernel, kernel),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        Ok(Self { weight, kernel })
    }

    /// The weight, `(c_out, c_in, k, k)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Conv2dSame {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (c_out, c_in, k, _) = self.weight.dims4()?;
        if c != c_in {
            candle_core::bail!(
                "convolution of {c_in} input channels got input {:?}",
                x.shape()
            );
        }
        debug_assert_eq!(k, self.kernel);
        let p = k / 2;
        let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
        let mut shifted = Vec::with_capacity(k * k);
        for di in 0..k {
            for dj in 0..k {
                shifted.push(xp.narrow(2, di, h)?.narrow(3, dj, w)?);
            }
        }
        // (B, C, k², T, F) → (B, C·k², T·F): rows ordered as the flattened weight.
        let cols = Tensor::stack(&shifted, 2)?.reshape((b, c * k * k, h * w))?;
        let wf = self.weight.reshape((c_out, c * k * k))?;
        let y = if b == 1 {
            wf.matmul(&cols.squeeze(0)?)?.unsqueeze(0)?
        } else {
            wf.broadcast_left(b)?.matmul(&cols)?
        };
        y.reshape((b, c_out, h, w))
    }
}

/// CDur's `Block2D`: BatchNorm2d(c_in) → Conv k×k (no bias, same padding) →
/// LeakyReLU. Input and output `(B, C, T, F)`; tensors under `bn.` and `conv.`.
#[derive(Debug, Clone)]
pub struct ConvBlock {
    /// Normalises the block's input.
    bn: BatchNorm,
    /// The convolution.
    conv: Conv2dSame,
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
            conv: Conv2dSame::new(c_in, c_out, kernel, vb.pp("conv"))?,
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
    fn im2col_convolution_equals_candle_conv2d() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 4, DType::F64, &Device::Cpu);
        for (b, c_in, c_out, k) in [(1, 1, 3, 3), (2, 3, 2, 3), (1, 2, 2, 5), (2, 2, 3, 1)] {
            let conv =
                Conv2dSame::new(c_in, c_out, k, vb.pp(format!("{b}{c_in}{c_out}{k}"))).unwrap();
            let x = gradcheck::rand_tensor(&[b, c_in, 6, 5], 9);
            let want = x.conv2d(conv.weight(), k / 2, 1, 1, 1).unwrap();
            let got = conv.forward(&x).unwrap();
            let d = (want - got).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f64>().unwrap() < 1e-12);
        }
    }

    #[test]
    fn conv_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 1, DType::F64, &Device::Cpu);
        let conv = Conv2dSame::new(2, 2, 3, vb).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 3, 4], 8)).unwrap();
        gradcheck::check(&map, &[("x", &x)], || conv.forward(x.as_tensor()), 1e-6);
    }

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
        gradcheck::check(
            &map,
            &[("x", &x)],
            || block.forward_t(x.as_tensor(), true),
            1e-5,
        );
    }
}
