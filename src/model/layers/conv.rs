//! Convolutions and convolution blocks: the "same" 3×3-style [`Conv2dSame`], the
//! general [`Conv2d`] (any kernel, stride, padding, optional bias), CDur's
//! [`ConvBlock`] (BN→Conv→LeakyReLU) and the generic [`ConvBnRelu`] (Conv→BN→ReLU).

use candle_core::{Module, Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};

use super::activation::LeakyRelu;
use super::batch_norm::BatchNorm;
use super::fast::{self, Act, ConvSpec};
use super::im2col::Im2Col;
use super::mask::TimeMask;

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

    /// Inference only ([`fast::conv2d`]): the convolution of `pre`-scaled input (a
    /// batch norm before it, applied to real samples only) followed by `act`.
    fn forward_fused(&self, x: &Tensor, pre: Option<(&[f32], &[f32])>, act: Act) -> Result<Tensor> {
        let (c_out, _, k, _) = self.weight.dims4()?;
        let w = fast::to_vec(&self.weight)?;
        fast::conv2d(
            x,
            &ConvSpec {
                weight: &w,
                c_out,
                kernel: (k, k),
                stride: (1, 1),
                padding: (k / 2, k / 2),
                pre,
                post: None,
                act,
            },
        )
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
        if fast::eval_ready(x, &[&self.weight]) {
            return self.forward_fused(x, None, Act::Identity);
        }
        // (B, C·k², T·F): rows ordered as the flattened weight; one pass each way.
        let x = if x.is_contiguous() {
            x.clone()
        } else {
            x.contiguous()?
        };
        let cols = x.apply_op1(Im2Col::same(k))?;
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
        if !train && fast::eval_ready(x, &[self.conv.weight(), self.bn.weight()]) {
            // One pass: batch norm inside the im2col copy, LeakyReLU on the products.
            let (scale, shift) = self.bn.eval_affine()?;
            let act = Act::Leaky(self.act.slope() as f32);
            return self.conv.forward_fused(x, Some((&scale, &shift)), act);
        }
        let x = self.bn.forward_t(x, train)?;
        let x = self.conv.forward(&x)?;
        self.act.forward_t(&x, train)
    }
}

impl ConvBlock {
    /// The block on a zero-padded batch `x (B, C, T, F)` whose time axis is described
    /// by `mask`: batch-norm statistics over valid frames, the normalised padding set
    /// back to zero before the convolution (so a clip's last frames see zeros beyond
    /// it, as unpadded), and the output zero at padded frames. Unpadded, exactly
    /// [`ModuleT::forward_t`].
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<Tensor> {
        if !mask.is_padded() {
            return self.forward_t(x, train);
        }
        let x = mask.zero(&self.bn.forward_masked(x, mask, train)?, 2)?;
        let x = self.act.forward_t(&self.conv.forward(&x)?, train)?;
        mask.zero(&x, 2)
    }
}

/// Geometry of a [`Conv2d`]: kernel, stride and zero padding along (time, mel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Kernel size `(kt, kf)`, each ≥ 1.
    pub kernel: (usize, usize),
    /// Stride `(st, sf)`, each ≥ 1.
    pub stride: (usize, usize),
    /// Zero padding on both sides `(pt, pf)`.
    pub padding: (usize, usize),
}

impl Conv2dGeometry {
    /// A square `k × k` kernel, stride 1, "same" padding `k / 2` (odd `k` keeps the size).
    pub fn same(k: usize) -> Self {
        Self {
            kernel: (k, k),
            stride: (1, 1),
            padding: (k / 2, k / 2),
        }
    }

    /// Output length of an axis of input length `n` (kernel `k`, stride `s`, padding
    /// `p`), as PyTorch: `⌊(n + 2p − k) / s⌋ + 1`; `None` when the kernel does not fit.
    pub fn out_len(n: usize, k: usize, s: usize, p: usize) -> Option<usize> {
        let padded = n + 2 * p;
        if s == 0 || k == 0 || padded < k {
            None
        } else {
            Some((padded - k) / s + 1)
        }
    }
}

/// General 2-D convolution, PyTorch `Conv2d(c_in, c_out, kernel, stride, padding,
/// bias)`: tensors `weight (c_out, c_in, kt, kf)` (Kaiming-normal) and, with a bias,
/// `bias (c_out)` (zeros). Input and output `(B, C, T, F)`.
///
/// Computed as im2col (one gather, whose backward is one scatter-add; see
/// `super::im2col`) + one matrix product like [`Conv2dSame`], so forward and both
/// gradients are matrix products and single passes.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `(c_out, c_in, kt, kf)`.
    weight: Tensor,
    /// `(c_out)` when the convolution has a bias.
    bias: Option<Tensor>,
    /// Kernel, stride, padding.
    geom: Conv2dGeometry,
}

impl Conv2d {
    /// A convolution from `c_in` to `c_out` channels with geometry `geom`, with a bias
    /// when `bias` is true.
    pub fn new(
        c_in: usize,
        c_out: usize,
        geom: Conv2dGeometry,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (kt, kf) = geom.kernel;
        if kt == 0 || kf == 0 || geom.stride.0 == 0 || geom.stride.1 == 0 {
            candle_core::bail!("convolution needs kernel and stride ≥ 1, got {geom:?}");
        }
        let weight = vb.get_with_hints(
            (c_out, c_in, kt, kf),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bias = if bias {
            Some(vb.get_with_hints(c_out, "bias", candle_nn::Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self { weight, bias, geom })
    }

    /// The weight, `(c_out, c_in, kt, kf)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The geometry.
    pub fn geometry(&self) -> Conv2dGeometry {
        self.geom
    }

    /// Inference only ([`fast::conv2d`]): `act(scale · (conv(x) + bias) + shift)` with
    /// an optional per-channel `(scale, shift)` (a batch norm after the convolution).
    fn forward_fused(
        &self,
        x: &Tensor,
        bn: Option<(Vec<f32>, Vec<f32>)>,
        act: Act,
    ) -> Result<Tensor> {
        let c_out = self.weight.dim(0)?;
        let w = fast::to_vec(&self.weight)?;
        let bias = match &self.bias {
            Some(b) => fast::to_vec(b)?,
            None => vec![0.0; c_out],
        };
        let fused = self.bias.is_some() || bn.is_some();
        let (scale, shift) = match bn {
            Some((s, t)) => {
                let shift = s.iter().zip(&t).zip(&bias).map(|((s, t), b)| s * b + t);
                let shift = shift.collect();
                (s, shift)
            }
            None => (vec![1.0; c_out], bias),
        };
        let post = fused.then_some((scale.as_slice(), shift.as_slice()));
        fast::conv2d(
            x,
            &ConvSpec {
                weight: &w,
                c_out,
                kernel: self.geom.kernel,
                stride: self.geom.stride,
                padding: self.geom.padding,
                pre: None,
                post,
                act,
            },
        )
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (c_out, c_in, kt, kf) = self.weight.dims4()?;
        let Conv2dGeometry {
            stride: (st, sf),
            padding: (pt, pf),
            ..
        } = self.geom;
        if c != c_in {
            candle_core::bail!(
                "convolution of {c_in} input channels got input {:?}",
                x.shape()
            );
        }
        let (Some(oh), Some(ow)) = (
            Conv2dGeometry::out_len(h, kt, st, pt),
            Conv2dGeometry::out_len(w, kf, sf, pf),
        ) else {
            candle_core::bail!(
                "convolution {kt}×{kf} (padding {pt},{pf}) does not fit input {:?}",
                x.shape()
            );
        };
        let params: Vec<&Tensor> = std::iter::once(&self.weight).chain(&self.bias).collect();
        if fast::eval_ready(x, &params) {
            return self.forward_fused(x, None, Act::Identity);
        }
        // (B, C·kt·kf, OT·OF): rows ordered as the flattened weight; one pass each way.
        let x = if x.is_contiguous() {
            x.clone()
        } else {
            x.contiguous()?
        };
        let cols = x.apply_op1(Im2Col {
            kernel: (kt, kf),
            stride: (st, sf),
            padding: (pt, pf),
        })?;
        let wf = self.weight.reshape((c_out, c * kt * kf))?;
        let mut y = if b == 1 {
            wf.matmul(&cols.squeeze(0)?)?.unsqueeze(0)?
        } else {
            wf.broadcast_left(b)?.matmul(&cols)?
        };
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(&bias.reshape((1, c_out, 1))?)?;
        }
        y.reshape((b, c_out, oh, ow))
    }
}

/// Conv → BatchNorm2d → ReLU, the block of the ATP/IFD encoder and of 2APAE's VGG
/// encoder (PyTorch `nn.Sequential(Conv2d, BatchNorm2d, ReLU)`). Input and output
/// `(B, C, T, F)`; tensors under `conv.` (`weight`, optional `bias`) and `bn.`.
#[derive(Debug, Clone)]
pub struct ConvBnRelu {
    /// The convolution.
    conv: Conv2d,
    /// Normalises the convolution's output.
    bn: BatchNorm,
}

impl ConvBnRelu {
    /// A block from `c_in` to `c_out` channels with geometry `geom`; the convolution
    /// has a bias when `bias` is true (redundant before batch norm, but PyTorch's
    /// default).
    pub fn new(
        c_in: usize,
        c_out: usize,
        geom: Conv2dGeometry,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(c_in, c_out, geom, bias, vb.pp("conv"))?,
            bn: BatchNorm::new(c_out, vb.pp("bn"))?,
        })
    }

    /// A 3×3 stride-1 "same" block without a convolution bias.
    pub fn same3(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        Self::new(c_in, c_out, Conv2dGeometry::same(3), false, vb)
    }
}

impl ModuleT for ConvBnRelu {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let params: Vec<&Tensor> = [self.conv.weight(), self.bn.weight()]
            .into_iter()
            .chain(&self.conv.bias)
            .collect();
        if !train && fast::eval_ready(x, &params) {
            // The batch norm folded into a per-channel scale and shift of the products.
            return self
                .conv
                .forward_fused(x, Some(self.bn.eval_affine()?), Act::Relu);
        }
        let x = self.conv.forward(x)?;
        self.bn.forward_t(&x, train)?.relu()
    }
}

impl ConvBnRelu {
    /// The mask of the block's output for an input `mask`: the same for stride 1 and
    /// "same" padding along time, else each length through the convolution's
    /// output-length formula.
    pub fn out_mask(&self, mask: &TimeMask) -> Result<TimeMask> {
        let g = self.conv.geometry();
        let (k, s, p) = (g.kernel.0, g.stride.0, g.padding.0);
        if s == 1 && 2 * p + 1 == k {
            return Ok(mask.clone());
        }
        let out = |n: usize| Conv2dGeometry::out_len(n, k, s, p).unwrap_or(0);
        mask.map(out(mask.frames()), out)
    }

    /// The block on a zero-padded batch `x (B, C, T, F)` (zero at padded frames) whose
    /// time axis is described by `mask`: batch-norm statistics over valid output
    /// frames and the output zero at padded frames (its mask is
    /// [`ConvBnRelu::out_mask`]). Unpadded, exactly [`ModuleT::forward_t`].
    pub fn forward_masked(&self, x: &Tensor, mask: &TimeMask, train: bool) -> Result<Tensor> {
        if !mask.is_padded() {
            return self.forward_t(x, train);
        }
        let out = self.out_mask(mask)?;
        let y = self.conv.forward(x)?;
        let y = self.bn.forward_masked(&y, &out, train)?.relu()?;
        out.zero(&y, 2)
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

    #[test]
    fn general_convolution_equals_candle_conv2d() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 4, DType::F64, &Device::Cpu);
        // (kernel, stride, padding) with equal values per axis (candle's conv2d limit).
        for (i, (k, s, p)) in [(3, 1, 1), (3, 2, 1), (2, 2, 0), (1, 1, 0), (5, 3, 2)]
            .into_iter()
            .enumerate()
        {
            let geom = Conv2dGeometry {
                kernel: (k, k),
                stride: (s, s),
                padding: (p, p),
            };
            let conv = Conv2d::new(3, 2, geom, false, vb.pp(i)).unwrap();
            let x = gradcheck::rand_tensor(&[2, 3, 7, 6], 9);
            let want = x.conv2d(conv.weight(), p, s, 1, 1).unwrap();
            let got = conv.forward(&x).unwrap();
            assert_eq!(got.dims(), want.dims(), "{geom:?}");
            let d = (want - got).unwrap().abs().unwrap().max_all().unwrap();
            assert!(d.to_scalar::<f64>().unwrap() < 1e-12, "{geom:?}");
        }
    }

    #[test]
    fn general_convolution_with_rectangular_kernel_and_bias_by_hand() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 4, DType::F64, &Device::Cpu);
        let geom = Conv2dGeometry {
            kernel: (1, 2),
            stride: (1, 2),
            padding: (0, 0),
        };
        let conv = Conv2d::new(1, 1, geom, true, vb).unwrap();
        map.data()
            .lock()
            .unwrap()
            .get("weight")
            .unwrap()
            .set(&Tensor::new(&[[[[1.0f64, 10.0]]]], &Device::Cpu).unwrap())
            .unwrap();
        map.data()
            .lock()
            .unwrap()
            .get("bias")
            .unwrap()
            .set(&Tensor::new(&[0.5f64], &Device::Cpu).unwrap())
            .unwrap();
        // (1, 1, 1, 5): windows [1,2] and [3,4]; the 5th column is dropped.
        let x = Tensor::new(&[1.0f64, 2.0, 3.0, 4.0, 5.0], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 5))
            .unwrap();
        let y: Vec<f64> = conv
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y.len(), 2);
        assert!(
            (y[0] - 21.5).abs() < 1e-12 && (y[1] - 43.5).abs() < 1e-12,
            "{y:?}"
        );
        let too_small = Tensor::zeros((1, 1, 1, 1), DType::F64, &Device::Cpu).unwrap();
        assert!(conv.forward(&too_small).is_err());
    }

    #[test]
    fn general_convolution_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 1, DType::F64, &Device::Cpu);
        let geom = Conv2dGeometry {
            kernel: (3, 2),
            stride: (2, 1),
            padding: (1, 0),
        };
        let conv = Conv2d::new(2, 2, geom, true, vb).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 5, 4], 8)).unwrap();
        gradcheck::check(&map, &[("x", &x)], || conv.forward(x.as_tensor()), 1e-6);
    }

    #[test]
    fn conv_bn_relu_gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 3, DType::F64, &Device::Cpu);
        let block = ConvBnRelu::new(2, 3, Conv2dGeometry::same(3), true, vb).unwrap();
        for (name, seed) in [("bn.weight", 5), ("bn.bias", 6)] {
            let v = map.data().lock().unwrap().get(name).unwrap().clone();
            v.set(&gradcheck::rand_tensor(&[3], seed)).unwrap();
        }
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 2, 4, 3], 3)).unwrap();
        gradcheck::check(
            &map,
            &[("x", &x)],
            || block.forward_t(x.as_tensor(), true),
            1e-5,
        );
        let y = block.forward_t(x.as_tensor(), false).unwrap();
        assert_eq!(y.dims(), &[2, 3, 4, 3]);
        let v: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|&a| a >= 0.0));
    }

    /// `(1, C, T_b, F)` sequences of `lengths` frames and their padded batch of `t`.
    fn sequences(c: usize, lengths: &[usize], t: usize, f: usize) -> (Vec<Tensor>, Tensor) {
        let seqs: Vec<Tensor> = lengths
            .iter()
            .enumerate()
            .map(|(i, &l)| gradcheck::rand_tensor(&[1, c, l, f], 20 + i as u64))
            .collect();
        let x = gradcheck::pad_batch(&seqs, 2, t);
        (seqs, x)
    }

    #[test]
    fn masked_blocks_equal_each_sequence_alone() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 3, DType::F64, &dev);
        let block = ConvBlock::new(2, 3, 3, 0.1, vb.pp("a")).unwrap();
        let cbr = ConvBnRelu::new(2, 3, Conv2dGeometry::same(3), true, vb.pp("b")).unwrap();
        let lengths = [3, 6, 5];
        let mask = TimeMask::new(&lengths, 6, DType::F64, &dev).unwrap();
        let (seqs, x) = sequences(2, &lengths, 6, 4);
        // Garbage in the padding: the block norm re-zeroes it before its convolution.
        let garbage = mask
            .shaped(4, 2, DType::F64)
            .unwrap()
            .unwrap()
            .affine(-3.0, 3.0);
        let xg = x.broadcast_add(&garbage.unwrap()).unwrap();
        let y1 = block.forward_masked(&xg, &mask, false).unwrap();
        let y2 = cbr.forward_masked(&x, &mask, false).unwrap();
        for (b, (s, &l)) in seqs.iter().zip(&lengths).enumerate() {
            let w1 = block.forward_t(s, false).unwrap();
            let w2 = cbr.forward_t(s, false).unwrap();
            gradcheck::assert_close(&gradcheck::valid_row(&y1, b, 2, l), &w1, 1e-12, "block");
            gradcheck::assert_close(&gradcheck::valid_row(&y2, b, 2, l), &w2, 1e-12, "cbr");
            for y in [&y1, &y2] {
                let pad = y.narrow(0, b, 1).unwrap().narrow(2, l, 6 - l).unwrap();
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
        }
        // A strided block's output mask follows the output-length formula.
        let geom = Conv2dGeometry {
            kernel: (3, 3),
            stride: (2, 1),
            padding: (1, 1),
        };
        let strided = ConvBnRelu::new(2, 2, geom, false, vb.pp("c")).unwrap();
        let m = strided.out_mask(&mask).unwrap();
        assert_eq!((m.lengths(), m.frames()), (&[2usize, 3, 3][..], 3));
        let y = strided.forward_masked(&x, &mask, false).unwrap();
        for (b, (s, &l)) in seqs.iter().zip(m.lengths()).enumerate() {
            let w = strided.forward_t(s, false).unwrap();
            gradcheck::assert_close(&gradcheck::valid_row(&y, b, 2, l), &w, 1e-12, "strided");
        }
    }

    #[test]
    fn masked_blocks_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 4, DType::F64, &dev);
        let block = ConvBlock::new(1, 2, 3, 0.1, vb.pp("a")).unwrap();
        let cbr = ConvBnRelu::new(2, 2, Conv2dGeometry::same(3), false, vb.pp("b")).unwrap();
        let lengths = [2, 4];
        let mask = TimeMask::new(&lengths, 4, DType::F64, &dev).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 1, 4, 3], 5)).unwrap();
        gradcheck::check_masked(
            &map,
            ("x", &x),
            2,
            &lengths,
            || {
                let h = block.forward_masked(x.as_tensor(), &mask, true)?;
                cbr.forward_masked(&h, &mask, true)
            },
            1e-5,
        );
    }
}
