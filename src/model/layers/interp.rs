//! Up-sampling along one axis (frame-rate restoration after time pooling): linear
//! interpolation and nearest-neighbour repetition, both as `index_select` gathers whose
//! backward is an exact scatter-add (candle's own nearest up-sampling overwrites instead
//! of accumulating when its input is used elsewhere).

use candle_core::{Result, Tensor};

use super::mask::TimeMask;

/// Source positions of linear interpolation from `n_in` to `n_out` samples, as torch
/// `F.interpolate(mode="linear", align_corners=False)` with an output size: output `i`
/// reads `src = max(0, (i + ½)·n_in/n_out − ½)`, between `i0 = ⌊src⌋` and
/// `i1 = min(i0 + 1, n_in − 1)` with weight `λ = src − i0` on `i1`.
pub fn linear_positions(n_in: usize, n_out: usize) -> (Vec<u32>, Vec<u32>, Vec<f64>) {
    let scale = n_in as f64 / n_out as f64;
    let mut i0 = Vec::with_capacity(n_out);
    let mut i1 = Vec::with_capacity(n_out);
    let mut lambda = Vec::with_capacity(n_out);
    for i in 0..n_out {
        let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
        let lo = (src.floor() as usize).min(n_in - 1);
        let hi = (lo + 1).min(n_in - 1);
        i0.push(lo as u32);
        i1.push(hi as u32);
        lambda.push(src - lo as f64);
    }
    (i0, i1, lambda)
}

/// Resamples `x` linearly along axis `dim` to `n_out` entries (see [`linear_positions`]).
/// An axis already of length `n_out` is returned unchanged.
pub fn interpolate_linear(x: &Tensor, dim: usize, n_out: usize) -> Result<Tensor> {
    let n_in = x.dim(dim)?;
    if n_in == 0 || n_out == 0 {
        candle_core::bail!("linear interpolation from {n_in} to {n_out} entries");
    }
    if n_in == n_out {
        return Ok(x.clone());
    }
    let dev = x.device();
    let (i0, i1, lambda) = linear_positions(n_in, n_out);
    let mut wshape = vec![1usize; x.rank()];
    wshape[dim] = n_out;
    let lambda = Tensor::from_vec(lambda, wshape.as_slice(), dev)?.to_dtype(x.dtype())?;
    let a = x.index_select(&Tensor::from_vec(i0, n_out, dev)?, dim)?;
    let b = x.index_select(&Tensor::from_vec(i1, n_out, dev)?, dim)?;
    // a + λ (b − a)
    a.add(&(b - &a)?.broadcast_mul(&lambda)?)
}

/// Source indices of nearest up/down-sampling from `n_in` to `n_out` samples, as torch
/// `F.interpolate(mode="nearest")` with an output size: output `i` reads
/// `min(⌊i · n_in / n_out⌋, n_in − 1)`.
pub fn nearest_positions(n_in: usize, n_out: usize) -> Vec<u32> {
    (0..n_out)
        .map(|i| ((i * n_in) / n_out).min(n_in.saturating_sub(1)) as u32)
        .collect()
}

/// Resamples `x` along axis `dim` to `n_out` entries by nearest neighbour (see
/// [`nearest_positions`]). An axis already of length `n_out` is returned unchanged.
pub fn interpolate_nearest(x: &Tensor, dim: usize, n_out: usize) -> Result<Tensor> {
    let n_in = x.dim(dim)?;
    if n_in == 0 || n_out == 0 {
        candle_core::bail!("nearest interpolation from {n_in} to {n_out} entries");
    }
    if n_in == n_out {
        return Ok(x.clone());
    }
    let idx = Tensor::from_vec(nearest_positions(n_in, n_out), n_out, x.device())?;
    x.contiguous()?.index_select(&idx, dim)
}

/// How a network restores the frame rate after time pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsample {
    /// Linear interpolation ([`interpolate_linear`]).
    #[default]
    Linear,
    /// Nearest-neighbour repetition ([`interpolate_nearest`]).
    Nearest,
}

impl Upsample {
    /// Resamples `x` along `dim` to `n_out` entries with this method.
    pub fn apply(self, x: &Tensor, dim: usize, n_out: usize) -> Result<Tensor> {
        match self {
            Upsample::Linear => interpolate_linear(x, dim, n_out),
            Upsample::Nearest => interpolate_nearest(x, dim, n_out),
        }
    }

    /// Resamples a padded batch `x (B, T_in, …)` along time (axis 1) from the mask
    /// `from` to the mask `to` (`to.frames()` outputs): each sequence from its own
    /// `from` length to its own `to` length, reading valid entries only, exactly as
    /// the unpadded sequence would be resampled; padded outputs are zero. With neither
    /// mask padded, exactly [`Upsample::apply`].
    pub fn apply_masked(self, x: &Tensor, from: &TimeMask, to: &TimeMask) -> Result<Tensor> {
        let n_out = to.frames();
        if !from.is_padded() && !to.is_padded() {
            return self.apply(x, 1, n_out);
        }
        let (b, n_in) = (x.dim(0)?, x.dim(1)?);
        if from.batch() != b || to.batch() != b || from.frames() != n_in {
            candle_core::bail!(
                "resampling masks {} × {} → {} × {} for input {:?}",
                from.batch(),
                from.frames(),
                to.batch(),
                n_out,
                x.shape()
            );
        }
        let mut i0 = Vec::with_capacity(b * n_out);
        let mut i1 = Vec::with_capacity(b * n_out);
        let mut lambda = Vec::with_capacity(b * n_out);
        for (k, (&li, &lo)) in from.lengths().iter().zip(to.lengths()).enumerate() {
            let base = (k * n_in) as u32;
            let lo = lo.min(n_out);
            let (a, c, l) = match (self, li.min(n_in), lo) {
                (_, 0, _) | (_, _, 0) => (vec![], vec![], vec![]),
                (Upsample::Linear, li, lo) => linear_positions(li, lo),
                (Upsample::Nearest, li, lo) => {
                    let p = nearest_positions(li, lo);
                    (p.clone(), p, vec![0.0; lo])
                }
            };
            for i in 0..n_out {
                match (a.get(i), c.get(i), l.get(i)) {
                    (Some(&a), Some(&c), Some(&l)) => {
                        i0.push(base + a);
                        i1.push(base + c);
                        lambda.push(l);
                    }
                    _ => {
                        i0.push(base);
                        i1.push(base);
                        lambda.push(0.0);
                    }
                }
            }
        }
        let dims = x.dims().to_vec();
        let rest: usize = dims[2..].iter().product();
        let dev = x.device();
        let flat = x.contiguous()?.reshape((b * n_in, rest))?;
        let a = flat.index_select(&Tensor::from_vec(i0, b * n_out, dev)?, 0)?;
        let y = match self {
            Upsample::Nearest => a,
            Upsample::Linear => {
                let c = flat.index_select(&Tensor::from_vec(i1, b * n_out, dev)?, 0)?;
                let lambda = Tensor::from_vec(lambda, (b * n_out, 1), dev)?.to_dtype(x.dtype())?;
                // a + λ (c − a), as `interpolate_linear`.
                a.add(&(c - &a)?.broadcast_mul(&lambda)?)?
            }
        };
        let mut shape = dims;
        shape[1] = n_out;
        to.zero(&y.reshape(shape)?, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::gradcheck;
    use crate::model::layers::mask::TimeMask;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    #[test]
    fn upsampling_by_four_matches_hand_computed_values() {
        // torch: F.interpolate(tensor([[[0., 4., 8.]]]), 12, mode="linear")
        // = [0, 0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8, 8]
        let x = Tensor::new(&[[0.0f64], [4.0], [8.0]], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let y: Vec<f64> = interpolate_linear(&x, 1, 12)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = [0.0, 0.0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.0, 8.0];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{y:?}");
        }
    }

    #[test]
    fn odd_ratio_matches_hand_computed_values() {
        // 2 → 5: scale 0.4; src = 0→0, 1→0.1, 2→0.5, 3→0.9, 4→1.3 (clamped to index 1).
        let x = Tensor::new(&[1.0f64, 3.0], &Device::Cpu).unwrap();
        let y: Vec<f64> = interpolate_linear(&x, 0, 5).unwrap().to_vec1().unwrap();
        let want = [1.0, 1.2, 2.0, 2.8, 3.0];
        for (g, w) in y.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{y:?}");
        }
    }

    #[test]
    fn same_length_is_identity_and_empty_is_an_error() {
        let x = gradcheck::rand_tensor(&[1, 4, 2], 1);
        let y = interpolate_linear(&x, 1, 4).unwrap();
        assert_eq!(y.to_vec3::<f64>().unwrap(), x.to_vec3::<f64>().unwrap());
        assert!(interpolate_linear(&x, 1, 0).is_err());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 3, 2], 7)).unwrap();
        for n_out in [1, 5, 7, 12] {
            gradcheck::check(
                &VarMap::new(),
                &[("x", &x)],
                || interpolate_linear(x.as_tensor(), 1, n_out),
                1e-6,
            );
        }
    }

    #[test]
    fn nearest_matches_hand_computed_values() {
        // torch: F.interpolate(tensor([[[1., 2., 3.]]]), 7, mode="nearest")
        // = [1, 1, 1, 2, 2, 3, 3]
        let x = Tensor::new(&[1.0f64, 2.0, 3.0], &Device::Cpu).unwrap();
        let y: Vec<f64> = interpolate_nearest(&x, 0, 7).unwrap().to_vec1().unwrap();
        assert_eq!(y.len(), 7);
        for (g, w) in y.iter().zip([1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]) {
            assert!((g - w).abs() < 1e-12, "{y:?}");
        }
        assert!(interpolate_nearest(&x, 0, 0).is_err());
    }

    #[test]
    fn nearest_gradient_accumulates_when_the_input_is_used_elsewhere() {
        // y = up(x) and x itself both reach the loss: candle's upsample_nearest1d
        // overwrote the gradient here.
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[2, 3, 2], 7)).unwrap();
        for n_out in [1, 4, 6, 7] {
            gradcheck::check(
                &VarMap::new(),
                &[("x", &x)],
                || {
                    let up = interpolate_nearest(x.as_tensor(), 1, n_out)?;
                    Tensor::cat(&[&up, &(x.as_tensor() * 2.0)?], 1)
                },
                1e-6,
            );
        }
    }

    #[test]
    fn masked_resampling_equals_each_sequence_alone_and_gradient_checks() {
        let dev = Device::Cpu;
        // 3 of 4 frames → 7 of 9, 4 of 4 → 9 of 9, 1 of 4 → 2 of 9.
        let from = TimeMask::new(&[3, 4, 1], 4, candle_core::DType::F64, &dev).unwrap();
        let to = TimeMask::new(&[7, 9, 2], 9, candle_core::DType::F64, &dev).unwrap();
        let x = Var::from_tensor(&gradcheck::rand_tensor(&[3, 4, 2], 5)).unwrap();
        for up in [Upsample::Linear, Upsample::Nearest] {
            let y = up.apply_masked(x.as_tensor(), &from, &to).unwrap();
            assert_eq!(y.dims(), &[3, 9, 2]);
            for (b, (&li, &lo)) in from.lengths().iter().zip(to.lengths()).enumerate() {
                let want = up
                    .apply(&gradcheck::valid_row(x.as_tensor(), b, 1, li), 1, lo)
                    .unwrap();
                let got = gradcheck::valid_row(&y, b, 1, lo);
                gradcheck::assert_close(&got, &want, 0.0, &format!("{up:?} row {b}"));
            }
            gradcheck::check_masked(
                &VarMap::new(),
                ("x", &x),
                1,
                from.lengths(),
                || up.apply_masked(x.as_tensor(), &from, &to),
                1e-6,
            );
        }
    }
}
