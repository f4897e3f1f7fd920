//! The GRU recurrence as one candle operation with a hand-written backward pass.
//!
//! Built from candle's element-wise operations, a training step of the recurrence
//! costs a dozen small operations per time step, and the per-step slice of the input
//! projections (`narrow`) has a backward that allocates and adds a zero tensor the
//! size of the *whole* sequence: quadratic in the sequence length. For the CDur-size
//! CRNN (125 steps, batch 16) that was 2.8 s of a 6.5 s training step. Here the
//! forward pass is one small GEMM per step plus one fused gate pass, and the backward
//! pass is back-propagation through time in plain loops: two GEMMs per step and one
//! for the weight gradient at the end, over buffers allocated once per call.
//!
//! Inputs: `xp (B, T, 3H)`, the input projections plus `b_ih`; `w_hh (3H, H)`;
//! `b_hh (3H)`. Output: the hidden states `(B, T, H)` in input time order, zero at
//! padded steps. Each sequence `b` runs over its first `lengths[b]` steps (backwards
//! from step `lengths[b] − 1` with `reverse`) from a zero state. f32 and f64.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::fast::{storage_slice, with_slice};

/// A float type the recurrence runs in.
trait Real: Copy + Default + 'static + std::ops::AddAssign {
    fn of(x: f64) -> Self;
    fn sigmoid(self) -> Self;
    fn tanh(self) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            fn of(x: f64) -> Self {
                x as $t
            }
            fn sigmoid(self) -> Self {
                1.0 / (1.0 + (-self).exp())
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
        }
    };
}
real!(f32);
real!(f64);

/// `dst (m, n) = [dst +] lhs · rhs`, each matrix given by its pointer and (row, column)
/// strides in elements.
///
/// # Safety
/// Every element the sizes and strides address must lie inside its slice.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: isize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const T,
    rhs_rs: isize,
    rhs_cs: isize,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs,
        accumulate,
        lhs,
        lhs_cs,
        lhs_rs,
        rhs,
        rhs_cs,
        rhs_rs,
        T::of(1.0),
        T::of(1.0),
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// `gh (B, 3H) = b_hh + h_prev · w_hhᵀ`, with row `i` of `h_prev` at
/// `prev[i · prev_rs..][..H]` (the states of the previous step, or zeros).
fn recurrent_gates<T: Real>(
    gh: &mut [T],
    bias: &[T],
    prev: &[T],
    prev_rs: usize,
    w: &[T],
    b: usize,
    h: usize,
) {
    let h3 = 3 * h;
    assert!(gh.len() >= b * h3 && bias.len() == h3 && w.len() >= h3 * h);
    assert!(b == 0 || prev.len() >= (b - 1) * prev_rs + h);
    for row in gh.chunks_exact_mut(h3).take(b) {
        row.copy_from_slice(bias);
    }
    // SAFETY: the asserts above cover every element addressed: gh (B, 3H) row-major,
    // prev rows of H at stride prev_rs, w_hh (3H, H) row-major read transposed.
    unsafe {
        gemm(
            b,
            h3,
            h,
            gh.as_mut_ptr(),
            h3 as isize,
            true,
            prev.as_ptr(),
            prev_rs as isize,
            1,
            w.as_ptr(),
            1,
            h as isize,
        );
    }
}

/// The recurrence over one direction; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct GruRecurrence {
    /// Valid steps of each sequence.
    pub lengths: Vec<usize>,
    /// Runs from the last valid step to the first.
    pub reverse: bool,
}

impl GruRecurrence {
    /// Processing order: step `k` of sequence handling visits time index `s(k)`.
    fn step(&self, k: usize, t: usize) -> usize {
        if self.reverse {
            t - 1 - k
        } else {
            k
        }
    }

    /// Whether time index `s` of sequence `b` is a valid (unpadded) step.
    fn valid(&self, b: usize, s: usize) -> bool {
        s < self.lengths.get(b).copied().unwrap_or(0)
    }

    fn dims(&self, xp: &Layout, w: &Layout, bias: &Layout) -> Result<(usize, usize, usize)> {
        let (b, t, h3) = xp.shape().dims3()?;
        let (wr, h) = w.shape().dims2()?;
        if h3 != 3 * h || wr != h3 || bias.shape().elem_count() != h3 {
            candle_core::bail!(
                "GRU recurrence: input projections {:?}, w_hh {:?}, b_hh {:?} do not fit",
                xp.shape(),
                w.shape(),
                bias.shape()
            );
        }
        if self.lengths.len() != b || t == 0 {
            candle_core::bail!(
                "GRU recurrence: {} lengths for a batch of {b} × {t} steps",
                self.lengths.len()
            );
        }
        Ok((b, t, h))
    }

    /// Forward: the hidden states `(B, T, H)`.
    fn forward<T: Real>(
        &self,
        xp: &[T],
        w: &[T],
        bias: &[T],
        b: usize,
        t: usize,
        h: usize,
    ) -> Vec<T> {
        let h3 = 3 * h;
        let mut out = vec![T::default(); b * t * h];
        let mut gh = vec![T::default(); b * h3];
        let zero = vec![T::default(); b * h];
        let mut prev_s: Option<usize> = None;
        for k in 0..t {
            let s = self.step(k, t);
            // gh = b_hh + h_prev · w_hhᵀ, h_prev = the states of the previous step.
            match prev_s {
                Some(p) => recurrent_gates(&mut gh, bias, &out[p * h..], t * h, w, b, h),
                None => recurrent_gates(&mut gh, bias, &zero, h, w, b, h),
            }
            for bi in 0..b {
                let o = (bi * t + s) * h;
                if !self.valid(bi, s) {
                    out[o..o + h].fill(T::default());
                    continue;
                }
                let p = prev_s.map(|p| (bi * t + p) * h);
                let x = &xp[(bi * t + s) * h3..(bi * t + s + 1) * h3];
                let g = &gh[bi * h3..(bi + 1) * h3];
                for j in 0..h {
                    let r = x[j].add(g[j]).sigmoid();
                    let z = x[h + j].add(g[h + j]).sigmoid();
                    let n = x[2 * h + j].add(r.mul(g[2 * h + j])).tanh();
                    let hprev = p.map_or(T::default(), |p| out[p + j]);
                    out[o + j] = n.add(z.mul(hprev.sub(n)));
                }
            }
            prev_s = Some(s);
        }
        out
    }

    /// Backward: gradients of `xp`, `w_hh` and `b_hh` given the states `hs` and the
    /// gradient `go` of the output.
    #[allow(clippy::too_many_arguments)]
    fn backward<T: Real>(
        &self,
        xp: &[T],
        w: &[T],
        bias: &[T],
        hs: &[T],
        go: &[T],
        b: usize,
        t: usize,
        h: usize,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let h3 = 3 * h;
        let one = T::of(1.0);
        let mut dxp = vec![T::default(); b * t * h3];
        let mut dw = vec![T::default(); h3 * h];
        let mut db = vec![T::default(); h3];
        let mut gh = vec![T::default(); b * h3];
        // Carried gradient of the state entering the step being processed.
        let mut dh = vec![T::default(); b * h];
        let zero = vec![T::default(); b * h];
        for k in (0..t).rev() {
            let s = self.step(k, t);
            let prev_s = (k > 0).then(|| self.step(k - 1, t));
            let (hp, hp_rs) = match prev_s {
                Some(p) => (&hs[p * h..], t * h),
                None => (&zero[..], h),
            };
            recurrent_gates(&mut gh, bias, hp, hp_rs, w, b, h);
            // Gate gradients; gh is overwritten in place by d(gh).
            for bi in 0..b {
                let dst = &mut dh[bi * h..(bi + 1) * h];
                let dxs = &mut dxp[(bi * t + s) * h3..(bi * t + s + 1) * h3];
                let g = &mut gh[bi * h3..(bi + 1) * h3];
                if !self.valid(bi, s) {
                    // The state was reset to zero here: nothing flows back.
                    dst.fill(T::default());
                    g.fill(T::default());
                    continue;
                }
                let x = &xp[(bi * t + s) * h3..(bi * t + s + 1) * h3];
                let gout = &go[(bi * t + s) * h..(bi * t + s + 1) * h];
                for j in 0..h {
                    let hprev = prev_s.map_or(T::default(), |p| hs[(bi * t + p) * h + j]);
                    let r = x[j].add(g[j]).sigmoid();
                    let z = x[h + j].add(g[h + j]).sigmoid();
                    let ghn = g[2 * h + j];
                    let n = x[2 * h + j].add(r.mul(ghn)).tanh();
                    let d = dst[j].add(gout[j]);
                    let dn = d.mul(one.sub(z));
                    let dz = d.mul(hprev.sub(n));
                    let dan = dn.mul(one.sub(n.mul(n)));
                    let dr = dan.mul(ghn);
                    let dar = dr.mul(r.mul(one.sub(r)));
                    let daz = dz.mul(z.mul(one.sub(z)));
                    dxs[j] = dar;
                    dxs[h + j] = daz;
                    dxs[2 * h + j] = dan;
                    g[j] = dar;
                    g[h + j] = daz;
                    g[2 * h + j] = dan.mul(r);
                    // Direct path h' = … + z ⊙ h; the recurrent path is added below.
                    dst[j] = d.mul(z);
                }
            }
            for row in gh.chunks_exact(h3) {
                for (a, v) in db.iter_mut().zip(row) {
                    *a += *v;
                }
            }
            // SAFETY: d(gh) is (B, 3H) row-major; h_prev as in `recurrent_gates`; dw is
            // (3H, H); w_hh is (3H, H); dh is (B, H).
            unsafe {
                // dw += d(gh)ᵀ · h_prev
                gemm(
                    h3,
                    h,
                    b,
                    dw.as_mut_ptr(),
                    h as isize,
                    true,
                    gh.as_ptr(),
                    1,
                    h3 as isize,
                    hp.as_ptr(),
                    hp_rs as isize,
                    1,
                );
                // dh += d(gh) · w_hh
                gemm(
                    b,
                    h,
                    h3,
                    dh.as_mut_ptr(),
                    h as isize,
                    true,
                    gh.as_ptr(),
                    h3 as isize,
                    1,
                    w.as_ptr(),
                    h as isize,
                    1,
                );
            }
        }
        (dxp, dw, db)
    }
}

impl CustomOp3 for GruRecurrence {
    fn name(&self) -> &'static str {
        "gru-recurrence"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, t, h) = self.dims(l1, l2, l3)?;
        let shape = Shape::from((b, t, h));
        match s1.dtype() {
            DType::F32 => {
                let (x, w, c) = (
                    storage_slice::<f32>(s1, l1, "GRU recurrence: input")?,
                    storage_slice::<f32>(s2, l2, "GRU recurrence: w_hh")?,
                    storage_slice::<f32>(s3, l3, "GRU recurrence: b_hh")?,
                );
                Ok((CpuStorage::F32(self.forward(x, w, c, b, t, h)), shape))
            }
            DType::F64 => {
                let (x, w, c) = (
                    storage_slice::<f64>(s1, l1, "GRU recurrence: input")?,
                    storage_slice::<f64>(s2, l2, "GRU recurrence: w_hh")?,
                    storage_slice::<f64>(s3, l3, "GRU recurrence: b_hh")?,
                );
                Ok((CpuStorage::F64(self.forward(x, w, c, b, t, h)), shape))
            }
            d => candle_core::bail!("GRU recurrence: unsupported dtype {d:?}"),
        }
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, h3) = xp.dims3()?;
        let h = h3 / 3;
        fn run<T: Real + candle_core::WithDType>(
            op: &GruRecurrence,
            (xp, w, bias, res, grad): (&Tensor, &Tensor, &Tensor, &Tensor, &Tensor),
            (b, t, h): (usize, usize, usize),
        ) -> Result<(Tensor, Tensor, Tensor)> {
            let dev = xp.device();
            with_slice::<T, _>(xp, |x| {
                with_slice::<T, _>(w, |wv| {
                    with_slice::<T, _>(bias, |c| {
                        with_slice::<T, _>(res, |hs| {
                            with_slice::<T, _>(grad, |go| {
                                let (a, bb, cc) = op.backward(x, wv, c, hs, go, b, t, h);
                                Ok((
                                    Tensor::from_vec(a, (b, t, 3 * h), dev)?,
                                    Tensor::from_vec(bb, (3 * h, h), dev)?,
                                    Tensor::from_vec(cc, 3 * h, dev)?,
                                ))
                            })
                        })
                    })
                })
            })
        }
        let args = (xp, w, bias, res, grad);
        let (dxp, dw, db) = match xp.dtype() {
            DType::F32 => run::<f32>(self, args, (b, t, h))?,
            DType::F64 => run::<f64>(self, args, (b, t, h))?,
            d => candle_core::bail!("GRU recurrence: unsupported dtype {d:?}"),
        };
        Ok((Some(dxp), Some(dw), Some(db.reshape(bias.shape())?)))
    }
}
