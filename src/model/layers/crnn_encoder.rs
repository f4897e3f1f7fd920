//! The convolutional-recurrent encoder shared by the CRNN and the context-attention
//! architecture: `[BatchNorm2d → Conv k×k → LeakyReLU → LP-pool?] × blocks → BiGRU`.
//! `(B, T, F)` log-mels in, `(B, T', 2H)` features out (T' = T / product of the time
//! pools). Tensors: `blocks.{i}.{bn,conv}.*` and `gru.{fwd,bwd}.*` under its prefix.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{BiGru, ConvBlock, LpPool2d, TimeMask};

/// Shape of one conv block: output channels and the optional (time, mel) LP pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderBlock {
    /// Output channels.
    pub channels: usize,
    /// LP pool after the block, `(time, mel)`.
    pub pool: Option<(usize, usize)>,
}

/// Settings of a [`CrnnEncoder`] (validated by the architecture that owns it).
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSpec {
    /// The conv blocks in order.
    pub blocks: Vec<EncoderBlock>,
    /// Convolution kernel size (odd, "same" padding).
    pub kernel: usize,
    /// LeakyReLU negative slope.
    pub leaky_slope: f64,
    /// Exponent of the LP pools.
    pub lp_p: f64,
    /// BiGRU hidden size per direction.
    pub gru_hidden: usize,
}

impl EncoderSpec {
    /// Mel bands left after the pools.
    pub fn mels_out(&self, n_mels: usize) -> usize {
        self.blocks
            .iter()
            .filter_map(|b| b.pool.map(|p| p.1))
            .fold(n_mels, |m, k| m.checked_div(k).unwrap_or(m))
    }
}

/// Conv blocks with LP pools, then a BiGRU.
#[derive(Debug, Clone)]
pub struct CrnnEncoder {
    /// Conv blocks, each with its optional LP pool.
    blocks: Vec<(ConvBlock, Option<LpPool2d>)>,
    /// Recurrent part.
    gru: BiGru,
}

impl CrnnEncoder {
    /// Builds the encoder for `n_mels` input bands.
    pub fn new(spec: &EncoderSpec, n_mels: usize, vb: VarBuilder) -> Result<Self> {
        let vbb = vb.pp("blocks");
        let mut blocks = Vec::with_capacity(spec.blocks.len());
        let mut c_in = 1;
        for (i, b) in spec.blocks.iter().enumerate() {
            let block = ConvBlock::new(c_in, b.channels, spec.kernel, spec.leaky_slope, vbb.pp(i))?;
            let pool = b.pool.map(|(t, m)| LpPool2d::new(spec.lp_p, t, m));
            blocks.push((block, pool));
            c_in = b.channels;
        }
        let gru = BiGru::new(c_in * spec.mels_out(n_mels), spec.gru_hidden, vb.pp("gru"))?;
        Ok(Self { blocks, gru })
    }

    /// Features per output frame (`2 × gru_hidden`).
    pub fn out_dim(&self) -> usize {
        self.gru.out_dim()
    }

    /// `(B, T, F)` → `(B, T', 2H)`; `train` selects batch-norm behaviour.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let full = TimeMask::full(b, t, x.dtype(), x.device());
        Ok(self.forward_masked(x, &full, train)?.0)
    }

    /// The encoder on a zero-padded batch `x (B, T, F)` whose valid frames `mask`
    /// describes: `(B, T', 2H)` features, zero at padded frames, and their mask (each
    /// length through the time pools). The padding of `x` is never read.
    pub fn forward_masked(
        &self,
        x: &Tensor,
        mask: &TimeMask,
        train: bool,
    ) -> Result<(Tensor, TimeMask)> {
        let b = x.dim(0)?;
        let mut h = x.unsqueeze(1)?; // (B, 1, T, F)
        let mut m = mask.clone();
        for (block, pool) in &self.blocks {
            // Each block starts with a batch norm whose masked output is re-zeroed, so
            // the input's padding is never read.
            h = block.forward_masked(&h, &m, train)?;
            if let Some(pool) = pool {
                (h, m) = pool.forward_masked(&h, &m)?;
            }
        }
        let (_, c, tp, fp) = h.dims4()?;
        let h = h.transpose(1, 2)?.contiguous()?.reshape((b, tp, c * fp))?;
        Ok((self.gru.forward_masked(&h, &m)?, m))
    }
}
