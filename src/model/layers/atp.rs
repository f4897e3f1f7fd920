//! Class-wise embedding-level attention pooling (ATP; Lin et al., "Specialized decision
//! surface and disentangled feature for weakly-supervised polyphonic SED", used as the
//! main branch of paper 001), with optional disentangled-feature (DF) dimensions.
//!
//! For frame embeddings `h_t ∈ R^D` (t = 1…T) and each class `c`:
//!
//! ```text
//! a_c(t) = w_c · (m_c ⊙ h_t) + b_c                 attention logit
//! α_c    = softmax_t(a_c)                           attention over time
//! e_c    = Σ_t α_c(t) · (m_c ⊙ h_t)                 class-specific clip embedding
//! clip_c = σ(u_c · e_c + d_c)                       clip probability
//! frame_c(t) = σ(u_c · (m_c ⊙ h_t) + d_c)           frame probability (same classifier)
//! ```
//!
//! `m_c` is the DF mask: class `c` sees only the first `dims[c]` embedding dimensions
//! (all `D` without DF). The mask is applied to the weights (`w_c ⊙ m_c`, `u_c ⊙ m_c`),
//! which gives the same values with one matrix product per head.
//!
//! Tensors: `att.weight (C, D)`, `att.bias (C)`, `cla.weight (C, D)`, `cla.bias (C)`.

use candle_core::{DType, Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

use super::mask::TimeMask;

/// Output of [`AtpHead::forward`].
#[derive(Debug, Clone)]
pub struct AtpOutput {
    /// Clip probabilities, `(B, C)`.
    pub clip: Tensor,
    /// Frame probabilities at the embedding frame rate, `(B, T, C)`.
    pub frame: Tensor,
    /// Attention weights over time, `(B, T, C)` (each class sums to 1 over `T`).
    pub attention: Tensor,
}

/// Class-wise embedding-level attention pooling head (see the module docs).
#[derive(Debug, Clone)]
pub struct AtpHead {
    /// Attention projection `D → C`.
    att: Linear,
    /// Classifier `D → C` shared by the clip embedding and the frame embeddings.
    cla: Linear,
    /// DF mask `(C, D)` of 0/1 (none: every class sees all dimensions).
    mask: Option<Tensor>,
}

impl AtpHead {
    /// An ATP head from `dim`-dimensional embeddings to `classes` classes. `df_dims`,
    /// when given, holds per class how many leading embedding dimensions it uses
    /// (each in `1..=dim`, one per class).
    pub fn new(
        dim: usize,
        classes: usize,
        df_dims: Option<&[usize]>,
        vb: VarBuilder,
    ) -> Result<Self> {
        let att = candle_nn::linear(dim, classes, vb.pp("att"))?;
        let cla = candle_nn::linear(dim, classes, vb.pp("cla"))?;
        let mask = match df_dims {
            None => None,
            Some(dims) => {
                if dims.len() != classes {
                    candle_core::bail!(
                        "ATP disentangled-feature dims name {} classes, the head has {classes}",
                        dims.len()
                    );
                }
                let mut m = vec![0f32; classes * dim];
                for (c, &d) in dims.iter().enumerate() {
                    if d == 0 || d > dim {
                        candle_core::bail!(
                            "ATP disentangled-feature dims[{c}] = {d}: expected 1..={dim}"
                        );
                    }
                    m[c * dim..c * dim + d].fill(1.0);
                }
                let t = Tensor::from_vec(m, (classes, dim), vb.device())?;
                Some(t.to_dtype(vb.dtype())?)
            }
        };
        Ok(Self { att, cla, mask })
    }

    /// The weight of `lin`, masked by the DF mask when there is one, in `dtype`.
    fn masked_weight(&self, lin: &Linear, dtype: DType) -> Result<Tensor> {
        let w = lin.weight();
        let w = match &self.mask {
            Some(m) => (w * m.to_dtype(w.dtype())?)?,
            None => w.clone(),
        };
        if w.dtype() == dtype {
            Ok(w)
        } else {
            w.to_dtype(dtype)
        }
    }

    /// Pools embeddings `h (B, T, D)` into clip and frame probabilities.
    pub fn forward(&self, h: &Tensor) -> Result<AtpOutput> {
        let (b, t, _) = h.dims3()?;
        self.forward_masked(h, &TimeMask::full(b, t, h.dtype(), h.device()))
    }

    /// [`AtpHead::forward`] of a padded batch: the attention over time gives padded
    /// frames weight 0, so each clip is pooled over its valid frames only (frame
    /// probabilities at padded frames are left as computed).
    pub fn forward_masked(&self, h: &Tensor, mask: &TimeMask) -> Result<AtpOutput> {
        let (b, t, d) = h.dims3()?;
        let dtype = h.dtype();
        let bias = |lin: &Linear| -> Result<Tensor> {
            match lin.bias() {
                Some(bias) => bias.to_dtype(dtype),
                None => candle_core::bail!("ATP linear layer without bias"),
            }
        };
        let w_att = self.masked_weight(&self.att, dtype)?; // (C, D)
        let w_cla = self.masked_weight(&self.cla, dtype)?;
        let c = w_att.dim(0)?;
        if w_att.dim(1)? != d {
            candle_core::bail!(
                "ATP head of {} dims got embeddings {:?}",
                w_att.dim(1)?,
                h.shape()
            );
        }
        let h2 = h.contiguous()?.reshape((b * t, d))?;
        // (B, T, C) attention logits and frame logits.
        let a = h2
            .matmul(&w_att.t()?)?
            .broadcast_add(&bias(&self.att)?)?
            .reshape((b, t, c))?;
        let frame_logits = h2
            .matmul(&w_cla.t()?)?
            .broadcast_add(&bias(&self.cla)?)?
            .reshape((b, t, c))?;
        let alpha = mask.softmax(&a, 1)?; // over time
                                          // Clip logit: u_c · Σ_t α_c(t) (m_c ⊙ h_t) = Σ_t α_c(t) (u_c ⊙ m_c) · h_t
                                          //           = Σ_t α_c(t) · frame_logit_c(t) − d_c Σ_t α_c(t) + d_c, and Σ_t α = 1,
                                          // so the clip logit is the attention-weighted mean of the frame logits.
        let clip_logits = (&alpha * &frame_logits)?.sum(1)?;
        Ok(AtpOutput {
            clip: candle_nn::ops::sigmoid(&clip_logits)?,
            frame: candle_nn::ops::sigmoid(&frame_logits)?,
            attention: alpha,
        })
    }

    /// The class-specific clip embeddings `e_c = Σ_t α_c(t) (m_c ⊙ h_t)`, `(B, C, D)`,
    /// for `h (B, T, D)` and attention `alpha (B, T, C)` from [`AtpHead::forward`].
    pub fn clip_embeddings(&self, h: &Tensor, alpha: &Tensor) -> Result<Tensor> {
        let e = alpha
            .transpose(1, 2)?
            .contiguous()?
            .matmul(&h.contiguous()?)?;
        match &self.mask {
            Some(m) => e.broadcast_mul(&m.to_dtype(e.dtype())?.unsqueeze(0)?),
            None => Ok(e),
        }
    }
}

impl Module for AtpHead {
    /// Clip probabilities `(B, C)` of embeddings `(B, T, D)`.
    fn forward(&self, h: &Tensor) -> Result<Tensor> {
        AtpHead::forward(self, h).map(|o| o.clip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::mask::TimeMask;
    use crate::model::layers::{gradcheck, init::seeded_var_builder};
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    fn vec2(t: &Tensor) -> Vec<Vec<f64>> {
        t.to_vec2().unwrap()
    }

    #[test]
    fn clip_equals_classifier_of_the_attended_embedding() {
        // The closed form (attention-weighted frame logits) against the definition
        // (classifier of the class-specific clip embedding), with and without DF.
        for df in [None, Some(vec![3usize, 1, 4])] {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 3, DType::F64, &Device::Cpu);
            let head = AtpHead::new(4, 3, df.as_deref(), vb).unwrap();
            let h = gradcheck::rand_tensor(&[2, 5, 4], 1);
            let out = head.forward(&h).unwrap();
            let e = head.clip_embeddings(&h, &out.attention).unwrap(); // (B, C, D)
            let u = vec2(head.cla.weight());
            let d: Vec<f64> = head.cla.bias().unwrap().to_vec1().unwrap();
            let e: Vec<Vec<Vec<f64>>> = e.to_vec3().unwrap();
            let clip = vec2(&out.clip);
            let dims = df.clone().unwrap_or(vec![4; 3]);
            for bi in 0..2 {
                for c in 0..3 {
                    let logit: f64 =
                        (0..dims[c]).map(|k| u[c][k] * e[bi][c][k]).sum::<f64>() + d[c];
                    // Masked dimensions of the embedding are zero.
                    assert!(e[bi][c][dims[c]..].iter().all(|v| v.abs() < 1e-15));
                    let want = 1.0 / (1.0 + (-logit).exp());
                    assert!((clip[bi][c] - want).abs() < 1e-12, "{df:?} b{bi} c{c}");
                }
            }
            // Attention sums to one over time.
            let s: Vec<Vec<f64>> = out.attention.sum(1).unwrap().to_vec2().unwrap();
            assert!(s.iter().flatten().all(|v| (v - 1.0).abs() < 1e-12));
            assert_eq!(out.frame.dims(), &[2, 5, 3]);
        }
    }

    #[test]
    fn df_dims_hide_the_trailing_dimensions_from_a_class() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 3, DType::F64, &Device::Cpu);
        let head = AtpHead::new(4, 2, Some(&[2, 4]), vb).unwrap();
        let h = gradcheck::rand_tensor(&[1, 3, 4], 2);
        // Changing dimensions 2..4 changes class 1 but not class 0.
        let h2 = h
            .slice_assign(&[0..1, 0..3, 2..4], &gradcheck::rand_tensor(&[1, 3, 2], 7))
            .unwrap();
        let (a, b) = (head.forward(&h).unwrap(), head.forward(&h2).unwrap());
        let fa: Vec<Vec<Vec<f64>>> = a.frame.to_vec3().unwrap();
        let fb: Vec<Vec<Vec<f64>>> = b.frame.to_vec3().unwrap();
        for t in 0..3 {
            assert!((fa[0][t][0] - fb[0][t][0]).abs() < 1e-15);
            assert!((fa[0][t][1] - fb[0][t][1]).abs() > 1e-9);
        }
        assert!(AtpHead::new(
            4,
            2,
            Some(&[2]),
            seeded_var_builder(&map, 1, DType::F64, &Device::Cpu).pp("x")
        )
        .is_err());
        assert!(AtpHead::new(
            4,
            2,
            Some(&[0, 4]),
            seeded_var_builder(&map, 1, DType::F64, &Device::Cpu).pp("y")
        )
        .is_err());
        assert!(AtpHead::new(
            4,
            2,
            Some(&[2, 5]),
            seeded_var_builder(&map, 1, DType::F64, &Device::Cpu).pp("z")
        )
        .is_err());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for df in [None, Some(vec![2usize, 3])] {
            let map = VarMap::new();
            let vb = seeded_var_builder(&map, 5, DType::F64, &Device::Cpu);
            let head = AtpHead::new(3, 2, df.as_deref(), vb).unwrap();
            let h = Var::from_tensor(&gradcheck::rand_tensor(&[2, 4, 3], 6)).unwrap();
            gradcheck::check(
                &map,
                &[("h", &h)],
                || head.forward(h.as_tensor()).map(|o| o.clip),
                1e-6,
            );
            gradcheck::check(
                &map,
                &[("h", &h)],
                || head.forward(h.as_tensor()).map(|o| o.frame),
                1e-6,
            );
        }
    }

    #[test]
    fn masked_head_equals_each_sequence_alone_and_gradient_checks() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 6, DType::F64, &Device::Cpu);
        let head = AtpHead::new(3, 2, Some(&[2, 3]), vb).unwrap();
        let lengths = [4, 2];
        let mask = TimeMask::new(&lengths, 4, DType::F64, &Device::Cpu).unwrap();
        let h = Var::from_tensor(&gradcheck::rand_tensor(&[2, 4, 3], 7)).unwrap();
        let out = head.forward_masked(h.as_tensor(), &mask).unwrap();
        for (b, &l) in lengths.iter().enumerate() {
            let want = head
                .forward(&gradcheck::valid_row(h.as_tensor(), b, 1, l))
                .unwrap();
            let row = |t: &Tensor| gradcheck::valid_row(t, b, 1, l);
            gradcheck::assert_close(
                &out.clip.narrow(0, b, 1).unwrap(),
                &want.clip,
                1e-12,
                "clip",
            );
            gradcheck::assert_close(&row(&out.frame), &want.frame, 1e-12, "frame");
            gradcheck::assert_close(&row(&out.attention), &want.attention, 1e-12, "attention");
        }
        gradcheck::check_masked(
            &map,
            ("h", &h),
            1,
            &lengths,
            || head.forward_masked(h.as_tensor(), &mask).map(|o| o.clip),
            1e-6,
        );
    }
}
