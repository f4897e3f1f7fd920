//! Inference-only CPU kernels on plain `f32` slices, used by the layers when no
//! gradient can flow (inference from a model file): they compute exactly what the
//! differentiable candle path computes, in fewer passes over memory.
//!
//! - [`conv2d`]: im2col + one GEMM (the `gemm` crate candle itself uses), with a batch
//!   norm *before* the convolution fused into the im2col copy (applied to real samples
//!   only, so the zero padding stays zero, as in the unfused network), and a
//!   per-channel scale/shift (a folded batch norm *after* the convolution, or a bias)
//!   and the activation fused into one pass over the output.
//! - [`lp_pool`], [`max_pool`], [`avg_pool3_planes`]: one pass over the input each
//!   (the last is also the training path's forward and backward, see `vgg`).
//!
//! Inputs are read in place from the tensor's storage; each kernel allocates only
//! its output (and, for the convolution, the im2col matrix). Work is split across
//! the threads of the current rayon pool (the daemon's model pool of
//! `pipeline.model_threads`, else the global pool: `RAYON_NUM_THREADS` or every core)
//! where the arrays are large.

use candle_core::{DType, Result, Storage, Tensor};
use rayon::prelude::*;

/// Elements below which a kernel runs on the calling thread only.
const PAR_MIN: usize = 1 << 15;

/// Whether the fast kernels may replace the candle path for input `x` with
/// parameters `params`: everything f32 on the CPU and nothing tracks gradients.
pub(crate) fn eval_ready(x: &Tensor, params: &[&Tensor]) -> bool {
    std::iter::once(x)
        .chain(params.iter().copied())
        .all(|t| t.dtype() == DType::F32 && t.device().is_cpu() && !t.track_op())
}

/// Calls `f` with the contiguous f32 values of `t` (copied first if `t` is strided).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    with_slice(t, f)
}

/// Calls `f` with the contiguous values of `t`, read in place (copied first only if
/// `t` is strided); an error if `t` is not on the CPU or not of type `T`.
pub(crate) fn with_slice<T: candle_core::WithDType, R>(
    t: &Tensor,
    f: impl FnOnce(&[T]) -> Result<R>,
) -> Result<R> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.contiguous()?
    };
    let (storage, layout) = t.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("fast kernel: tensor {:?} is not contiguous", t.shape());
    };
    match &*storage {
        Storage::Cpu(cpu) => f(&cpu.as_slice::<T>()?[start..end]),
        _ => candle_core::bail!("fast kernel: tensor is not on the CPU"),
    }
}

/// The values of a custom operation's input `s` seen through `l`, in place; `what`
/// names the operation and input in the error when the layout is not contiguous.
pub(crate) fn storage_slice<'a, T: candle_core::WithDType>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    what: &str,
) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{what} {:?} is not contiguous", l.shape()),
    }
}

/// The contiguous f32 values of a small tensor (parameters), copied.
pub(crate) fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    with_f32(t, |s| Ok(s.to_vec()))
}

/// Activation applied in the convolution's output pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Act {
    /// None.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x ≥ 0`, `slope · x` otherwise.
    Leaky(f32),
}

impl Act {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        match self {
            Act::Identity => v,
            Act::Relu => v.max(0.0),
            Act::Leaky(s) => {
                if v >= 0.0 {
                    v
                } else {
                    s * v
                }
            }
        }
    }
}

/// Geometry and fused parts of one convolution call.
pub(crate) struct ConvSpec<'a> {
    /// `(c_out, c_in · kt · kf)`, PyTorch's weight flattened.
    pub weight: &'a [f32],
    /// Output channels.
    pub c_out: usize,
    /// Kernel `(kt, kf)`.
    pub kernel: (usize, usize),
    /// Stride `(st, sf)`.
    pub stride: (usize, usize),
    /// Zero padding `(pt, pf)`.
    pub padding: (usize, usize),
    /// Per-input-channel `(scale, shift)` applied to real input samples (a batch norm
    /// before the convolution).
    pub pre: Option<(&'a [f32], &'a [f32])>,
    /// Per-output-channel `(scale, shift)` applied to the products (a folded batch norm
    /// after the convolution, a bias as scale 1).
    pub post: Option<(&'a [f32], &'a [f32])>,
    /// Activation after `post`.
    pub act: Act,
}

/// Output length of an axis: `⌊(n + 2p − k) / s⌋ + 1`, `None` when the kernel does not fit.
fn out_len(n: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    (s > 0 && k > 0 && n + 2 * p >= k).then(|| (n + 2 * p - k) / s + 1)
}

/// Fills one im2col row: input channel plane `src (h, w)` seen through kernel offset
/// `(di, dj)`, output `(oh, ow)` positions, the affine `(a, b)` on real samples.
#[allow(clippy::too_many_arguments)]
fn im2col_row(
    src: &[f32],
    (h, w): (usize, usize),
    (di, dj): (usize, usize),
    (st, sf): (usize, usize),
    (pt, pf): (usize, usize),
    (oh, ow): (usize, usize),
    (a, b): (f32, f32),
    dst: &mut [f32],
) {
    for (oi, drow) in dst.chunks_exact_mut(ow).take(oh).enumerate() {
        let r = (oi * st + di) as isize - pt as isize;
        if r < 0 || r as usize >= h {
            drow.fill(0.0);
            continue;
        }
        let srow = &src[r as usize * w..(r as usize + 1) * w];
        if sf == 1 {
            // Output columns oj with 0 ≤ oj + dj − pf < w.
            let lo = pf.saturating_sub(dj).min(ow);
            let hi = (w + pf).saturating_sub(dj).clamp(lo, ow);
            drow[..lo].fill(0.0);
            drow[hi..].fill(0.0);
            if hi > lo {
                let s0 = lo + dj - pf;
                for (d, &x) in drow[lo..hi].iter_mut().zip(&srow[s0..s0 + hi - lo]) {
                    *d = a * x + b;
                }
            }
        } else {
            for (oj, d) in drow.iter_mut().enumerate() {
                let c = (oj * sf + dj) as isize - pf as isize;
                *d = if c < 0 || c as usize >= w {
                    0.0
                } else {
                    a * srow[c as usize] + b
                };
            }
        }
    }
}

/// `out[c, n] = act(scale[c] · out[c, n] + shift[c])` over rows of `n` values.
fn epilogue(out: &mut [f32], n: usize, post: Option<(&[f32], &[f32])>, act: Act) {
    if post.is_none() && act == Act::Identity {
        return;
    }
    let row = |(c, r): (usize, &mut [f32])| {
        let (a, b) = post.map_or((1.0, 0.0), |(s, t)| (s[c], t[c]));
        for v in r.iter_mut() {
            *v = act.apply(a * *v + b);
        }
    };
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(n).enumerate().for_each(row);
    } else {
        out.chunks_mut(n).enumerate().for_each(row);
    }
}

/// `dst (m, n) = lhs (m, k) · rhs (k, n)`, all row-major and contiguous.
fn matmul(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, n: usize, k: usize) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * k >= 1 << 16 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserted lengths cover every element the strides address: dst rows
    // of n (stride n), lhs rows of k (stride k), rhs rows of n (stride n).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Convolution of `x (B, C, H, W)` (PyTorch `conv2d` semantics) with the fused parts
/// of `spec`; returns `(B, c_out, OH, OW)`.
pub(crate) fn conv2d(x: &Tensor, spec: &ConvSpec) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (kt, kf) = spec.kernel;
    let kk = c * kt * kf;
    if spec.weight.len() != spec.c_out * kk {
        candle_core::bail!(
            "fast conv: weight of {} values for {} outputs × {kk}",
            spec.weight.len(),
            spec.c_out
        );
    }
    let (Some(oh), Some(ow)) = (
        out_len(h, kt, spec.stride.0, spec.padding.0),
        out_len(w, kf, spec.stride.1, spec.padding.1),
    ) else {
        candle_core::bail!(
            "convolution {kt}×{kf} (padding {:?}) does not fit input {:?}",
            spec.padding,
            x.shape()
        );
    };
    let n = oh * ow;
    // A 1×1, stride-1, unpadded convolution without a pre-affine multiplies x itself.
    let identity_cols =
        kt == 1 && kf == 1 && spec.stride == (1, 1) && spec.padding == (0, 0) && spec.pre.is_none();
    let mut out = vec![0f32; b * spec.c_out * n];
    with_f32(x, |xs| {
        let mut cols = if identity_cols {
            Vec::new()
        } else {
            vec![0f32; kk * n]
        };
        for bi in 0..b {
            let xb = &xs[bi * c * h * w..(bi + 1) * c * h * w];
            let rhs: &[f32] = if identity_cols {
                xb
            } else {
                let fill = |(r, dst): (usize, &mut [f32])| {
                    let ci = r / (kt * kf);
                    let (di, dj) = ((r % (kt * kf)) / kf, r % kf);
                    let ab = spec.pre.map_or((1.0, 0.0), |(s, t)| (s[ci], t[ci]));
                    im2col_row(
                        &xb[ci * h * w..(ci + 1) * h * w],
                        (h, w),
                        (di, dj),
                        spec.stride,
                        spec.padding,
                        (oh, ow),
                        ab,
                        dst,
                    );
                };
                if cols.len() >= PAR_MIN {
                    cols.par_chunks_mut(n).enumerate().for_each(fill);
                } else {
                    cols.chunks_mut(n).enumerate().for_each(fill);
                }
                &cols
            };
            let ob = &mut out[bi * spec.c_out * n..(bi + 1) * spec.c_out * n];
            matmul(ob, spec.weight, rhs, spec.c_out, n, kk);
            epilogue(ob, n, spec.post, spec.act);
        }
        Ok(())
    })?;
    Tensor::from_vec(out, (b, spec.c_out, oh, ow), x.device())
}

/// Pooling reduction over non-overlapping `(kt, kf)` windows (trailing rows/columns
/// that do not fill a window are dropped): `(B, C, T, F)` → `(B, C, T/kt, F/kf)`.
fn pool(
    x: &Tensor,
    (kt, kf): (usize, usize),
    init: f32,
    fold: impl Fn(f32, f32) -> f32 + Sync,
    finish: impl Fn(f32) -> f32 + Sync,
) -> Result<Tensor> {
    let (b, c, t, f) = x.dims4()?;
    let (to, fo) = (t / kt, f / kf);
    let mut out = vec![0f32; b * c * to * fo];
    if !out.is_empty() {
        with_f32(x, |xs| {
            let plane = |(p, dst): (usize, &mut [f32])| {
                let src = &xs[p * t * f..(p + 1) * t * f];
                for (i, drow) in dst.chunks_exact_mut(fo).enumerate() {
                    for (j, d) in drow.iter_mut().enumerate() {
                        let mut acc = init;
                        for r in 0..kt {
                            let row = &src[(i * kt + r) * f + j * kf..][..kf];
                            for &v in row {
                                acc = fold(acc, v);
                            }
                        }
                        *d = finish(acc);
                    }
                }
            };
            if xs.len() >= PAR_MIN {
                out.par_chunks_mut(to * fo).enumerate().for_each(plane);
            } else {
                out.chunks_mut(to * fo).enumerate().for_each(plane);
            }
            Ok(())
        })?;
    }
    Tensor::from_vec(out, (b, c, to, fo), x.device())
}

/// LP pooling `(Σ |x|^p)^(1/p)` over `(kt, kf)` windows (exact powers for p = 1, 2, 4).
pub(crate) fn lp_pool(x: &Tensor, p: f64, k: (usize, usize)) -> Result<Tensor> {
    let pf = p as f32;
    if p == 4.0 {
        pool(x, k, 0.0, |a, v| a + (v * v) * (v * v), |s| s.sqrt().sqrt())
    } else if p == 2.0 {
        pool(x, k, 0.0, |a, v| a + v * v, f32::sqrt)
    } else if p == 1.0 {
        pool(x, k, 0.0, |a, v| a + v.abs(), |s| s)
    } else {
        pool(x, k, 0.0, |a, v| a + v.abs().powf(pf), |s| s.powf(1.0 / pf))
    }
}

/// Max pooling over `(kt, kf)` windows.
pub(crate) fn max_pool(x: &Tensor, k: (usize, usize)) -> Result<Tensor> {
    pool(x, k, f32::NEG_INFINITY, f32::max, |m| m)
}

/// 3×3 average pooling, stride 1, zero padding 1, divisor 9 (PyTorch's
/// `avg_pool2d(x, 3, 1, 1)` with `count_include_pad`) of raw `(T, F)` planes: `xs` and
/// `out` hold the same number of planes of `t·f` values. The operation is its own adjoint (the kernel is symmetric
/// and the divisor fixed), so the same pass is the backward of the training path.
pub(crate) fn avg_pool3_planes<T: candle_core::WithDType>(
    xs: &[T],
    out: &mut [T],
    t: usize,
    f: usize,
) {
    if out.is_empty() || t * f == 0 {
        return;
    }
    let nine = T::from_f64(9.0);
    let plane = |(src, dst): (&[T], &mut [T])| {
        // Row sums of three columns, then three rows.
        let mut rows = vec![T::zero(); t * f];
        for (srow, rrow) in src.chunks_exact(f).zip(rows.chunks_exact_mut(f)) {
            for j in 0..f {
                let l = if j > 0 { srow[j - 1] } else { T::zero() };
                let r = if j + 1 < f { srow[j + 1] } else { T::zero() };
                rrow[j] = l + srow[j] + r;
            }
        }
        for i in 0..t {
            for j in 0..f {
                let u = if i > 0 {
                    rows[(i - 1) * f + j]
                } else {
                    T::zero()
                };
                let d = if i + 1 < t {
                    rows[(i + 1) * f + j]
                } else {
                    T::zero()
                };
                dst[i * f + j] = (u + rows[i * f + j] + d) / nine;
            }
        }
    };
    if xs.len() >= PAR_MIN {
        xs.par_chunks(t * f)
            .zip(out.par_chunks_mut(t * f))
            .for_each(plane);
    } else {
        xs.chunks(t * f).zip(out.chunks_mut(t * f)).for_each(plane);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::gradcheck;
    use candle_core::Device;

    fn rand32(dims: &[usize], seed: u64) -> Tensor {
        gradcheck::rand_tensor(dims, seed)
            .to_dtype(DType::F32)
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn conv_equals_candle_conv2d_for_strides_paddings_and_fused_parts() {
        for (i, &(k, s, p, c_in, c_out)) in [
            (3, 1, 1, 1, 4),
            (3, 1, 1, 3, 5),
            (3, 2, 1, 2, 3),
            (1, 1, 0, 4, 2),
            (5, 3, 2, 2, 2),
            (2, 2, 0, 3, 2),
        ]
        .iter()
        .enumerate()
        {
            let x = rand32(&[2, c_in, 9, 7], i as u64);
            let w = rand32(&[c_out, c_in, k, k], 10 + i as u64);
            let pre_s = rand32(&[c_in], 20 + i as u64);
            let pre_t = rand32(&[c_in], 30 + i as u64);
            let post_s = rand32(&[c_out], 40 + i as u64);
            let post_t = rand32(&[c_out], 50 + i as u64);
            let shape = |c| (1, c, 1, 1);
            // Reference: affine, then candle's conv2d, then affine and leaky ReLU.
            let xa = x
                .broadcast_mul(&pre_s.reshape(shape(c_in)).unwrap())
                .unwrap()
                .broadcast_add(&pre_t.reshape(shape(c_in)).unwrap())
                .unwrap();
            let y = xa.conv2d(&w, p, s, 1, 1).unwrap();
            let y = y
                .broadcast_mul(&post_s.reshape(shape(c_out)).unwrap())
                .unwrap()
                .broadcast_add(&post_t.reshape(shape(c_out)).unwrap())
                .unwrap();
            let want = y.maximum(&(&y * 0.1).unwrap()).unwrap();
            let (ps, pt, qs, qt) = (
                to_vec(&pre_s).unwrap(),
                to_vec(&pre_t).unwrap(),
                to_vec(&post_s).unwrap(),
                to_vec(&post_t).unwrap(),
            );
            let wv = to_vec(&w).unwrap();
            let spec = ConvSpec {
                weight: &wv,
                c_out,
                kernel: (k, k),
                stride: (s, s),
                padding: (p, p),
                pre: Some((&ps, &pt)),
                post: Some((&qs, &qt)),
                act: Act::Leaky(0.1),
            };
            let got = conv2d(&x, &spec).unwrap();
            assert!(max_diff(&got, &want) < 1e-5, "case {i}");
            // Without the fused parts.
            let plain = ConvSpec {
                pre: None,
                post: None,
                act: Act::Identity,
                ..spec
            };
            let got = conv2d(&x, &plain).unwrap();
            let want = x.conv2d(&w, p, s, 1, 1).unwrap();
            assert!(max_diff(&got, &want) < 1e-5, "plain case {i}");
        }
    }

    #[test]
    fn pools_equal_the_candle_definitions() {
        let x = rand32(&[2, 3, 9, 10], 7);
        let got = lp_pool(&x, 4.0, (2, 4)).unwrap();
        let xc = x.narrow(2, 0, 8).unwrap().narrow(3, 0, 8).unwrap();
        let want = (xc.sqr().unwrap().sqr().unwrap().avg_pool2d((2, 4)).unwrap() * 8.0)
            .unwrap()
            .sqrt()
            .unwrap()
            .sqrt()
            .unwrap();
        assert!(max_diff(&got, &want) < 1e-5);
        let got = lp_pool(&x, 3.0, (3, 1)).unwrap();
        let want = (x.narrow(3, 0, 8).unwrap().abs().unwrap().powf(3.0).unwrap())
            .avg_pool2d((3, 1))
            .unwrap();
        let want = (want * 3.0).unwrap().powf(1.0 / 3.0).unwrap();
        assert!(max_diff(&got.narrow(3, 0, 8).unwrap(), &want) < 1e-4);
        let got = max_pool(&x, (2, 3)).unwrap();
        let want = x
            .narrow(3, 0, 9)
            .unwrap()
            .contiguous()
            .unwrap()
            .max_pool2d((2, 3))
            .unwrap();
        assert!(max_diff(&got, &want) < 1e-7);
        let got = crate::model::layers::avg_pool3_same(&x).unwrap();
        let want = x
            .pad_with_zeros(2, 1, 1)
            .unwrap()
            .pad_with_zeros(3, 1, 1)
            .unwrap()
            .avg_pool2d_with_stride(3, 1)
            .unwrap();
        assert!(max_diff(&got, &want) < 1e-6);
    }

    #[test]
    fn eval_ready_only_without_gradients() {
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(eval_ready(&x, &[]));
        let v = candle_core::Var::from_tensor(&x).unwrap();
        assert!(!eval_ready(v.as_tensor(), &[]));
        assert!(!eval_ready(&x.to_dtype(DType::F64).unwrap(), &[]));
    }
}
