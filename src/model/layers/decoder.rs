//! The reconstruction decoder of 2APAE (paper 003, Table III): from the encoder's last
//! feature map back to one log-mel channel at the same time and mel sizes.
//!
//! ```text
//! (B, c, T, F) → VggBlock c→c₁ → … → VggBlock →c_n → Conv3×3→BN→ReLU (→1)
//!              → Conv3×3→BN→ReLU (1→1)   [final_relu, the paper's table]
//!              | Conv3×3 + bias (1→1)      [default: a linear output]
//! ```
//!
//! Deviation (switchable): the paper's last unit ends in a ReLU, which cannot produce
//! the negative values log-mels mostly are; by default the last unit is a plain 3×3
//! convolution with a bias.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::{Conv2d, Conv2dGeometry, ConvBnRelu};
use super::mask::TimeMask;
use super::vgg::VggStack;

/// The decoder's last unit.
#[derive(Debug, Clone)]
enum OutUnit {
    /// Conv→BN→ReLU, as the paper's table.
    Relu(ConvBnRelu),
    /// A plain convolution with a bias (linear output).
    Linear(Conv2d),
}

/// 2APAE's decoder. Tensors `blocks.{i}.units.{0,1}.…`, `out.0.{conv,bn}.*` and either
/// `out.1.{conv,bn}.*` (`final_relu`) or `out.1.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct ConvDecoder {
    /// VGG blocks with decreasing channels.
    blocks: VggStack,
    /// First output unit, to one channel.
    out0: ConvBnRelu,
    /// Second output unit.
    out1: OutUnit,
}

impl ConvDecoder {
    /// A decoder from `c_in` channels through `channels` to one channel.
    pub fn new(c_in: usize, channels: &[usize], final_relu: bool, vb: VarBuilder) -> Result<Self> {
        let blocks = VggStack::new(c_in, channels, vb.pp("blocks"))?;
        let c_last = channels.last().copied().unwrap_or(c_in);
        let vo = vb.pp("out");
        let out0 = ConvBnRelu::same3(c_last, 1, vo.pp(0))?;
        let out1 = if final_relu {
            OutUnit::Relu(ConvBnRelu::same3(1, 1, vo.pp(1))?)
        } else {
            OutUnit::Linear(Conv2d::new(1, 1, Conv2dGeometry::same(3), true, vo.pp(1))?)
        };
        Ok(Self { blocks, out0, out1 })
    }

    /// The reconstruction `(B, T, F)` of feature map `h (B, c_in, T, F)`.
    pub fn forward_t(&self, h: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t) = (h.dim(0)?, h.dim(2)?);
        self.forward_masked(h, &TimeMask::full(b, t, h.dtype(), h.device()), train)
    }

    /// [`ConvDecoder::forward_t`] of a zero-padded feature map (zero at padded frames,
    /// time on axis 2): every unit counts valid frames only, and the reconstruction is
    /// zero at padded frames.
    pub fn forward_masked(&self, h: &Tensor, mask: &TimeMask, train: bool) -> Result<Tensor> {
        let h = self.blocks.forward_masked(h, mask, train)?;
        let h = self.out0.forward_masked(&h, mask, train)?;
        let h = match &self.out1 {
            OutUnit::Relu(u) => u.forward_masked(&h, mask, train)?,
            OutUnit::Linear(c) => mask.zero(&c.forward(&h)?, 2)?,
        };
        h.squeeze(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::mask::TimeMask;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    #[test]
    fn decoder_shapes_and_gradient_match_finite_differences() {
        for final_relu in [false, true] {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
            let dec = ConvDecoder::new(3, &[2], final_relu, vb).unwrap();
            let n = map.all_vars().len();
            // blocks.0: 2 units × (conv + 4 bn); out.0: conv + 4 bn; out.1: 5 or 2.
            assert_eq!(n, 10 + 5 + if final_relu { 5 } else { 2 });
            let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 3, 3, 4], 4)).unwrap();
            assert_eq!(
                dec.forward_t(x.as_tensor(), false).unwrap().dims(),
                &[2, 3, 4]
            );
            gradcheck::check(
                &map,
                &[("x", &x)],
                || dec.forward_t(x.as_tensor(), true),
                1e-5,
            );
        }
    }

    #[test]
    fn masked_decoder_equals_each_sequence_alone_and_gradient_checks() {
        for final_relu in [false, true] {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 3, DType::F64, &Device::Cpu);
            let dec = ConvDecoder::new(2, &[2], final_relu, vb).unwrap();
            let lengths = [2, 4];
            let mask = TimeMask::new(&lengths, 4, DType::F64, &Device::Cpu).unwrap();
            let h = mask
                .zero(&gradcheck::rand_tensor(&[2, 2, 4, 3], 5), 2)
                .unwrap();
            let y = dec.forward_masked(&h, &mask, false).unwrap();
            for (b, &l) in lengths.iter().enumerate() {
                let want = dec
                    .forward_t(&gradcheck::valid_row(&h, b, 2, l), false)
                    .unwrap();
                gradcheck::assert_close(&gradcheck::valid_row(&y, b, 1, l), &want, 1e-12, "rec");
            }
            let h = Var::from_tensor(&h).unwrap();
            // Its first convolution reads the input's padding, which callers keep zero:
            // a plain check (the padding does get a gradient).
            gradcheck::check(
                &map,
                &[("h", &h)],
                || dec.forward_masked(h.as_tensor(), &mask, true),
                1e-5,
            );
        }
    }
}
