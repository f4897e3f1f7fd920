//! Time masks of zero-padded batches: which frames of each sequence are real.
//!
//! A batch of clips of different lengths is zero-padded to the longest, `(B, T, …)`.
//! A [`TimeMask`] carries each sequence's valid length at one time resolution and
//! follows the network down its time pools ([`TimeMask::pooled`]: `⌊len / k⌋`, the
//! frames an unpadded run of that clip would keep) so that every layer can keep the
//! padding out of what it computes:
//!
//! - masked layers return **zero at padded frames**, so that convolutions and
//!   averages near a clip's end read zeros there, exactly as the zero padding of the
//!   unpadded clip;
//! - batch-norm statistics, pools over time and softmaxes over time count only valid
//!   frames; recurrent layers run each sequence over its own length.
//!
//! A mask whose every length equals `T` holds no tensor ([`TimeMask::is_padded`] is
//! false) and masked layers then take their unmasked code path: unpadded inference
//! does no mask work.

use candle_core::{DType, Device, Result, Tensor};

/// Added to the logits of padded positions before a max or a softmax: far below any
/// logit, so a softmax gives them exactly zero weight (and a max never picks them),
/// yet finite in f32, so that no `inf − inf` can appear.
pub const PAD_LOGIT: f64 = -1e30;

/// Valid lengths of the sequences of a padded batch along one time axis.
#[derive(Debug, Clone)]
pub struct TimeMask {
    /// Valid frames of each sequence, each in `0..=t`.
    lengths: Vec<usize>,
    /// Frames of the padded time axis.
    t: usize,
    /// `(B, T)` of 1 (valid) and 0 (padding) in `dtype`; `None` when nothing is padded.
    mask: Option<Tensor>,
    /// Dtype of the mask tensors.
    dtype: DType,
    /// Device of the mask tensors.
    device: Device,
}

impl TimeMask {
    /// No padding: `b` sequences of all `t` frames (no tensor is made).
    pub fn full(b: usize, t: usize, dtype: DType, device: &Device) -> Self {
        Self {
            lengths: vec![t; b],
            t,
            mask: None,
            dtype,
            device: device.clone(),
        }
    }

    /// Sequences of `lengths` frames (each `1..=t`) padded to `t` frames.
    pub fn new(lengths: &[usize], t: usize, dtype: DType, device: &Device) -> Result<Self> {
        if let Some((i, &l)) = lengths.iter().enumerate().find(|(_, &l)| l == 0 || l > t) {
            candle_core::bail!(
                "sequence {i} has {l} valid frames; expected 1..={t} (the padded length)"
            );
        }
        Self::from_lengths(lengths.to_vec(), t, dtype, device)
    }

    /// The mask of input `x (B, T, …)` (time on axis 1) whose sequences have `lengths`.
    pub fn for_input(x: &Tensor, lengths: &[usize]) -> Result<Self> {
        let (b, t) = (x.dim(0)?, x.dim(1)?);
        if lengths.len() != b {
            candle_core::bail!(
                "{} sequence lengths for a batch of {b} (input {:?})",
                lengths.len(),
                x.shape()
            );
        }
        Self::new(lengths, t, x.dtype(), x.device())
    }

    /// Builds the mask tensor when some length is below `t` (lengths may be 0 here:
    /// a pool can leave a too-short sequence no frame; callers check `min_len`).
    fn from_lengths(lengths: Vec<usize>, t: usize, dtype: DType, device: &Device) -> Result<Self> {
        let mask = if lengths.iter().all(|&l| l >= t) {
            None
        } else {
            let mut m = vec![0f32; lengths.len() * t];
            for (row, &l) in m.chunks_exact_mut(t.max(1)).zip(&lengths) {
                row[..l.min(t)].fill(1.0);
            }
            Some(Tensor::from_vec(m, (lengths.len(), t), device)?.to_dtype(dtype)?)
        };
        Ok(Self {
            lengths,
            t,
            mask,
            dtype,
            device: device.clone(),
        })
    }

    /// Whether some sequence is shorter than the time axis (a mask tensor exists).
    pub fn is_padded(&self) -> bool {
        self.mask.is_some()
    }

    /// Valid frames of each sequence.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Frames of the padded time axis.
    pub fn frames(&self) -> usize {
        self.t
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.lengths.len()
    }

    /// The shortest valid length.
    pub fn min_len(&self) -> usize {
        self.lengths.iter().copied().min().unwrap_or(0)
    }

    /// The mask after a time pool of window (= stride) `k` that drops the frames of an
    /// incomplete last window: `⌊len / k⌋` of `⌊T / k⌋` frames.
    pub fn pooled(&self, k: usize) -> Result<Self> {
        if k <= 1 {
            return Ok(self.clone());
        }
        self.map(self.t / k, |l| l / k)
    }

    /// The mask of a time axis of `t_out` frames whose sequence lengths are `f(len)`
    /// (e.g. a strided convolution's output lengths), capped at `t_out`.
    pub fn map(&self, t_out: usize, f: impl Fn(usize) -> usize) -> Result<Self> {
        let lengths = self.lengths.iter().map(|&l| f(l).min(t_out)).collect();
        Self::from_lengths(lengths, t_out, self.dtype, &self.device)
    }

    /// The mask of a batch made of sequences of these `lengths` on a `t`-frame axis,
    /// with this mask's dtype and device (lengths may repeat or differ from `self`).
    pub fn with_lengths(&self, lengths: Vec<usize>, t: usize) -> Result<Self> {
        Self::from_lengths(lengths, t, self.dtype, &self.device)
    }

    /// The `(B, T)` mask shaped to broadcast against a tensor of `rank` axes with the
    /// batch on axis 0 and time on `time_dim` (1 on every other axis), in `dtype`;
    /// `None` when nothing is padded.
    pub fn shaped(&self, rank: usize, time_dim: usize, dtype: DType) -> Result<Option<Tensor>> {
        let Some(m) = &self.mask else {
            return Ok(None);
        };
        let shape: Vec<usize> = (0..rank)
            .map(|i| match i {
                0 => self.lengths.len(),
                i if i == time_dim => self.t,
                _ => 1,
            })
            .collect();
        let m = if m.dtype() == dtype {
            m.clone()
        } else {
            m.to_dtype(dtype)?
        };
        m.reshape(shape).map(Some)
    }

    /// `x` with its padded frames (time on `time_dim`) set to zero; `x` itself when
    /// nothing is padded.
    pub fn zero(&self, x: &Tensor, time_dim: usize) -> Result<Tensor> {
        match self.shaped(x.rank(), time_dim, x.dtype())? {
            Some(m) => x.broadcast_mul(&m),
            None => Ok(x.clone()),
        }
    }

    /// `x` with [`PAD_LOGIT`] added at padded frames (time on `time_dim`), for masked
    /// maxima and softmaxes; `x` itself when nothing is padded.
    pub fn mask_logits(&self, x: &Tensor, time_dim: usize) -> Result<Tensor> {
        match self.shaped(x.rank(), time_dim, x.dtype())? {
            Some(m) => x.broadcast_add(&m.affine(-PAD_LOGIT, PAD_LOGIT)?),
            None => Ok(x.clone()),
        }
    }

    /// Softmax of `x` over its time axis `time_dim` counting valid frames only:
    /// padded frames get weight exactly 0 and the valid weights are those of the
    /// unpadded sequence.
    pub fn softmax(&self, x: &Tensor, time_dim: usize) -> Result<Tensor> {
        candle_nn::ops::softmax(&self.mask_logits(x, time_dim)?, time_dim)
    }

    /// The valid lengths as a `(B, 1, …)` tensor of `rank` axes in `dtype`, to divide
    /// sums over time by.
    pub fn lengths_tensor(&self, rank: usize, dtype: DType) -> Result<Tensor> {
        let v: Vec<f32> = self.lengths.iter().map(|&l| l as f32).collect();
        let mut shape = vec![1usize; rank.max(1)];
        shape[0] = self.lengths.len();
        Tensor::from_vec(v, shape, &self.device)?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_masks_hold_no_tensor_and_change_nothing() {
        let m = TimeMask::full(2, 5, DType::F64, &Device::Cpu);
        assert!(!m.is_padded());
        let x = Tensor::ones((2, 5, 3), DType::F64, &Device::Cpu).unwrap();
        assert_eq!(
            m.zero(&x, 1)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            30.0
        );
        // Lengths equal to T are not padding either.
        assert!(!TimeMask::new(&[5, 5], 5, DType::F32, &Device::Cpu)
            .unwrap()
            .is_padded());
    }

    #[test]
    fn lengths_are_checked_and_pool_with_the_floor() {
        let dev = Device::Cpu;
        assert!(TimeMask::new(&[0, 3], 4, DType::F32, &dev).is_err());
        assert!(TimeMask::new(&[5, 3], 4, DType::F32, &dev).is_err());
        let x = Tensor::zeros((3, 4, 2), DType::F32, &dev).unwrap();
        assert!(TimeMask::for_input(&x, &[4, 4]).is_err());
        let m = TimeMask::new(&[9, 12, 5], 12, DType::F32, &dev).unwrap();
        let p = m.pooled(2).unwrap();
        assert_eq!((p.lengths(), p.frames()), (&[4usize, 6, 2][..], 6));
        let q = p.pooled(4).unwrap();
        assert_eq!((q.lengths(), q.frames()), (&[1usize, 1, 0][..], 1));
        // 13 frames of which 12 valid pool by 2 to 6 of 6: nothing padded any more.
        let m = TimeMask::new(&[12, 13], 13, DType::F32, &dev).unwrap();
        assert!(m.is_padded() && !m.pooled(2).unwrap().is_padded());
    }

    #[test]
    fn zero_softmax_and_mean_count_valid_frames_only() {
        let dev = Device::Cpu;
        let m = TimeMask::new(&[2, 3], 3, DType::F64, &dev).unwrap();
        let x = Tensor::new(&[[[1.0f64], [2.0], [3.0]], [[1.0], [2.0], [3.0]]], &dev).unwrap();
        let z: Vec<Vec<Vec<f64>>> = m.zero(&x, 1).unwrap().to_vec3().unwrap();
        assert_eq!(z[0], vec![vec![1.0], vec![2.0], vec![0.0]]);
        assert_eq!(z[1], vec![vec![1.0], vec![2.0], vec![3.0]]);
        let s: Vec<Vec<Vec<f64>>> = m.softmax(&x, 1).unwrap().to_vec3().unwrap();
        let e = 1.0 / (1.0 + 1f64.exp());
        assert!((s[0][0][0] - e).abs() < 1e-15 && s[0][2][0] == 0.0, "{s:?}");
        let l: Vec<f64> = m
            .lengths_tensor(2, DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(l, vec![2.0, 3.0]);
    }
}
