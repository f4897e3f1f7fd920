//! im2col for convolutions as one candle operation with its own backward.
//!
//! The training path of the convolutions ([`super::conv::Conv2dSame`],
//! [`super::conv::Conv2d`]) is im2col followed by one matrix product. Built from candle operations, im2col was two pads, k² narrowed views and a
//! stack; the backward of each narrowed view allocates zero tensors the size of the
//! whole padded input and adds them up, so a 3×3 convolution's input gradient took 18
//! full-size temporaries and as many passes (and most of the page clearing of a
//! training step). Here the forward is one gather pass into one output and the
//! backward (col2im) one scatter-add pass, in parallel over the `(batch, channel)`
//! planes. Any kernel, stride and zero padding; f32 and f64.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::fast::{storage_slice, with_slice};

/// `x (B, C, T, F)` → `(B, C·kt·kf, OT·OF)`: row `c·kt·kf + di·kf + dj` holds, at
/// output position `(ot, of)`, input `(ot·st + di − pt, of·sf + dj − pf)` of channel
/// `c`, zero outside (PyTorch's weight order).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Im2Col {
    /// Kernel `(kt, kf)`.
    pub kernel: (usize, usize),
    /// Stride `(st, sf)`.
    pub stride: (usize, usize),
    /// Zero padding `(pt, pf)` on both sides.
    pub padding: (usize, usize),
}

/// Output positions `lo..hi` of an axis (`o` outputs, stride `s`, padding `p`) whose
/// source `o·s + d − p` lies inside `0..n`, for kernel offset `d`.
fn span(d: usize, s: usize, p: usize, n: usize, o: usize) -> (usize, usize) {
    // o·s + d ≥ p  ⇔  o ≥ ⌈(p − d) / s⌉;  o·s + d − p < n  ⇔  o < ⌈(n + p − d) / s⌉.
    let lo = p.saturating_sub(d).div_ceil(s).min(o);
    let hi = (n + p).saturating_sub(d).div_ceil(s).clamp(lo, o);
    (lo, hi)
}

impl Im2Col {
    /// The "same" geometry of an odd `k × k` kernel: stride 1, padding `k / 2`.
    pub fn same(k: usize) -> Self {
        Self {
            kernel: (k, k),
            stride: (1, 1),
            padding: (k / 2, k / 2),
        }
    }

    /// Output size `(OT, OF)` for an input plane `(t, f)`, if the kernel fits.
    fn out_dims(&self, t: usize, f: usize) -> Option<(usize, usize)> {
        let len = |n: usize, k: usize, s: usize, p: usize| {
            (s > 0 && k > 0 && n + 2 * p >= k).then(|| (n + 2 * p - k) / s + 1)
        };
        Some((
            len(t, self.kernel.0, self.stride.0, self.padding.0)?,
            len(f, self.kernel.1, self.stride.1, self.padding.1)?,
        ))
    }

    /// Calls `f(row, ot, src_t, of_lo, of_hi, src_f0)` for every run of output
    /// positions that reads real input: kernel row `row = di·kf + dj`, output time `ot`
    /// from input time `src_t`, output columns `of_lo..of_hi` from input columns
    /// `src_f0, src_f0 + sf, …`.
    fn runs(
        &self,
        (t, f): (usize, usize),
        (ot, of): (usize, usize),
        mut visit: impl FnMut(usize, usize, usize, usize, usize, usize),
    ) {
        let ((kt, kf), (st, sf), (pt, pf)) = (self.kernel, self.stride, self.padding);
        for di in 0..kt {
            let (tlo, thi) = span(di, st, pt, t, ot);
            for dj in 0..kf {
                let (flo, fhi) = span(dj, sf, pf, f, of);
                if flo == fhi {
                    continue;
                }
                for o in tlo..thi {
                    visit(
                        di * kf + dj,
                        o,
                        o * st + di - pt,
                        flo,
                        fhi,
                        flo * sf + dj - pf,
                    );
                }
            }
        }
    }

    /// Fills the kt·kf rows of one input plane `src (t, f)`.
    fn gather<T: WithDType + Default>(
        &self,
        src: &[T],
        tf: (usize, usize),
        o: (usize, usize),
        dst: &mut [T],
    ) {
        let (f, (_, of)) = (tf.1, o);
        let sf = self.stride.1;
        let plane = o.0 * o.1;
        dst.fill(T::default());
        self.runs(tf, o, |row, ot, s, lo, hi, s0| {
            let d = &mut dst[row * plane + ot * of + lo..row * plane + ot * of + hi];
            let srow = &src[s * f..(s + 1) * f];
            if sf == 1 {
                d.copy_from_slice(&srow[s0..s0 + hi - lo]);
            } else {
                for (k, v) in d.iter_mut().enumerate() {
                    *v = srow[s0 + k * sf];
                }
            }
        });
    }

    /// Adds the kt·kf rows of one plane's column gradient back into `dst (t, f)`.
    fn scatter<T: WithDType + Default + std::ops::AddAssign>(
        &self,
        cols: &[T],
        tf: (usize, usize),
        o: (usize, usize),
        dst: &mut [T],
    ) {
        let (f, (_, of)) = (tf.1, o);
        let sf = self.stride.1;
        let plane = o.0 * o.1;
        dst.fill(T::default());
        self.runs(tf, o, |row, ot, s, lo, hi, s0| {
            let g = &cols[row * plane + ot * of + lo..row * plane + ot * of + hi];
            let drow = &mut dst[s * f..(s + 1) * f];
            for (k, &v) in g.iter().enumerate() {
                drow[s0 + k * sf] += v;
            }
        });
    }

    fn forward<T: WithDType + Default>(
        &self,
        x: &[T],
        (b, c, t, f): (usize, usize, usize, usize),
        o: (usize, usize),
    ) -> Vec<T> {
        let kk = self.kernel.0 * self.kernel.1;
        let plane = o.0 * o.1;
        let mut out = vec![T::default(); b * c * kk * plane];
        if t * f == 0 || plane == 0 {
            return out;
        }
        out.par_chunks_mut(kk * plane)
            .zip(x.par_chunks(t * f))
            .for_each(|(dst, src)| self.gather(src, (t, f), o, dst));
        out
    }

    fn backward<T: WithDType + Default + std::ops::AddAssign>(
        &self,
        g: &[T],
        (b, c, t, f): (usize, usize, usize, usize),
        o: (usize, usize),
    ) -> Vec<T> {
        let kk = self.kernel.0 * self.kernel.1;
        let plane = o.0 * o.1;
        let mut dx = vec![T::default(); b * c * t * f];
        if t * f == 0 || plane == 0 {
            return dx;
        }
        dx.par_chunks_mut(t * f)
            .zip(g.par_chunks(kk * plane))
            .for_each(|(dst, cols)| self.scatter(cols, (t, f), o, dst));
        dx
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.shape().dims4()?;
        let (b, c, t, f) = dims;
        let Some(o) = self.out_dims(t, f) else {
            candle_core::bail!("im2col {self:?} does not fit input {:?}", l.shape());
        };
        let shape = Shape::from((b, c * self.kernel.0 * self.kernel.1, o.0 * o.1));
        match s.dtype() {
            DType::F32 => Ok((
                CpuStorage::F32(self.forward(
                    storage_slice::<f32>(s, l, "im2col: input")?,
                    dims,
                    o,
                )),
                shape,
            )),
            DType::F64 => Ok((
                CpuStorage::F64(self.forward(
                    storage_slice::<f64>(s, l, "im2col: input")?,
                    dims,
                    o,
                )),
                shape,
            )),
            d => candle_core::bail!("im2col: unsupported dtype {d:?}"),
        }
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dims = arg.dims4()?;
        let Some(o) = self.out_dims(dims.2, dims.3) else {
            candle_core::bail!("im2col {self:?} does not fit input {:?}", arg.shape());
        };
        let dx = match arg.dtype() {
            DType::F32 => with_slice::<f32, _>(grad, |g| {
                Tensor::from_vec(self.backward(g, dims, o), arg.shape(), arg.device())
            })?,
            DType::F64 => with_slice::<f64, _>(grad, |g| {
                Tensor::from_vec(self.backward(g, dims, o), arg.shape(), arg.device())
            })?,
            d => candle_core::bail!("im2col: unsupported dtype {d:?}"),
        };
        Ok(Some(dx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::gradcheck;
    use candle_core::Var;

    /// The definition: pad, strided shifted views (index_select), stack.
    fn reference(x: &Tensor, op: Im2Col) -> Tensor {
        let (b, c, _, _) = x.dims4().unwrap();
        let ((kt, kf), (st, sf), (pt, pf)) = (op.kernel, op.stride, op.padding);
        let (t, f) = (x.dim(2).unwrap(), x.dim(3).unwrap());
        let (ot, of) = op.out_dims(t, f).unwrap();
        let xp = x
            .pad_with_zeros(2, pt, pt)
            .unwrap()
            .pad_with_zeros(3, pf, pf)
            .unwrap();
        let take = |x: &Tensor, dim, start: usize, s: usize, n: usize| {
            let idx: Vec<u32> = (0..n).map(|i| (start + i * s) as u32).collect();
            x.index_select(&Tensor::new(idx.as_slice(), x.device()).unwrap(), dim)
                .unwrap()
        };
        let mut v = Vec::new();
        for di in 0..kt {
            for dj in 0..kf {
                v.push(take(&take(&xp, 2, di, st, ot), 3, dj, sf, of));
            }
        }
        Tensor::stack(&v, 2)
            .unwrap()
            .reshape((b, c * kt * kf, ot * of))
            .unwrap()
    }

    fn geometries() -> Vec<([usize; 4], Im2Col)> {
        let g = |kernel, stride, padding| Im2Col {
            kernel,
            stride,
            padding,
        };
        vec![
            ([2, 3, 5, 4], Im2Col::same(3)),
            ([1, 2, 2, 7], Im2Col::same(5)),
            ([1, 1, 1, 1], Im2Col::same(3)),
            ([2, 1, 4, 3], Im2Col::same(1)),
            ([1, 2, 7, 9], g((3, 3), (2, 2), (1, 1))),
            ([2, 1, 6, 5], g((2, 3), (2, 1), (0, 1))),
            ([1, 2, 5, 8], g((1, 4), (1, 3), (0, 2))),
            ([1, 1, 3, 3], g((3, 3), (1, 1), (0, 0))),
        ]
    }

    #[test]
    fn equals_pad_strided_shift_and_stack() {
        for (dims, op) in geometries() {
            let x = gradcheck::rand_tensor(&dims, 7);
            let got = x.apply_op1(op).unwrap();
            gradcheck::assert_close(&got, &reference(&x, op), 0.0, &format!("{op:?}"));
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (dims, op) in geometries() {
            let x = Var::from_tensor(&gradcheck::rand_tensor(&dims, 8)).unwrap();
            let map = candle_nn::VarMap::new();
            gradcheck::check(&map, &[("x", &x)], || x.as_tensor().apply_op1(op), 1e-6);
        }
    }

    #[test]
    fn a_kernel_that_does_not_fit_is_an_error() {
        let x = gradcheck::rand_tensor(&[1, 1, 2, 2], 1);
        let op = Im2Col {
            kernel: (3, 3),
            stride: (1, 1),
            padding: (0, 0),
        };
        assert!(x.apply_op1(op).is_err());
    }
}
