//! Additive (Bahdanau) context attention, paper 002 eq. 3: queries from target
//! features attend over a sequence of context features.
//!
//! ```text
//! s(t, u) = v · tanh(W_q q_t + W_k k_u + b)          score of context step u for query t
//! α_t     = softmax_u s(t, ·)                          attention over the context
//! out_t   = Σ_u α_t(u) · v_u                           weighted sum of the context values
//! ```
//!
//! Tensors: `query.weight (A, Dq)`, `key.weight (A, Dk)`, `key.bias (A)` (the one
//! shared bias `b`), `score.weight (1, A)`.
//!
//! The softmax is `candle_nn::ops::softmax` (candle's `softmax_last_dim` has no
//! backward). The scores are formed as a `(B, Tq, Tk, A)` tensor: memory grows with
//! `Tq · Tk · A`, so callers keep `A` small.

use candle_core::{Result, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

use super::mask::TimeMask;

/// Output of [`AdditiveAttention::forward`].
#[derive(Debug, Clone)]
pub struct AttentionOutput {
    /// Attended context per query, `(B, Tq, Dv)`.
    pub context: Tensor,
    /// Attention weights, `(B, Tq, Tk)`; each row sums to 1.
    pub weights: Tensor,
}

/// Additive attention from `Dq`-dimensional queries over `Dk`-dimensional keys.
#[derive(Debug, Clone)]
pub struct AdditiveAttention {
    /// `W_q`, no bias.
    query: Linear,
    /// `W_k` and the shared bias `b`.
    key: Linear,
    /// `v`, no bias.
    score: Linear,
}

impl AdditiveAttention {
    /// Attention with queries of `q_dim`, keys of `k_dim` and `att_dim` hidden units.
    pub fn new(q_dim: usize, k_dim: usize, att_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: candle_nn::linear_no_bias(q_dim, att_dim, vb.pp("query"))?,
            key: candle_nn::linear(k_dim, att_dim, vb.pp("key"))?,
            score: candle_nn::linear_no_bias(att_dim, 1, vb.pp("score"))?,
        })
    }

    /// Attends from `q (B, Tq, Dq)` over keys `k (B, Tk, Dk)` and values `v (B, Tk, Dv)`.
    pub fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<AttentionOutput> {
        let (b, tk) = (k.dim(0)?, k.dim(1)?);
        self.forward_masked(q, k, v, &TimeMask::full(b, tk, k.dtype(), k.device()))
    }

    /// [`AdditiveAttention::forward`] over padded keys: `key_mask` describes the
    /// valid context steps of each sequence, and padded steps get attention weight 0.
    pub fn forward_masked(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        key_mask: &TimeMask,
    ) -> Result<AttentionOutput> {
        let (b, tq, _) = q.dims3()?;
        let (bk, tk, _) = k.dims3()?;
        let (bv, tv, _) = v.dims3()?;
        if bk != b || bv != b || tv != tk {
            candle_core::bail!(
                "attention needs queries (B, Tq, ·), keys and values (B, Tk, ·); got {:?}, {:?}, {:?}",
                q.shape(),
                k.shape(),
                v.shape()
            );
        }
        let qp = self.query.forward(q)?; // (B, Tq, A)
        let kp = self.key.forward(k)?; // (B, Tk, A)
        let a = qp.dim(2)?;
        let e = qp.unsqueeze(2)?.broadcast_add(&kp.unsqueeze(1)?)?.tanh()?; // (B, Tq, Tk, A)
        let s = self
            .score
            .forward(&e.reshape((b * tq * tk, a))?)?
            .reshape((b, tq, tk))?;
        let weights = key_mask.softmax(&s, 2)?;
        let context = weights.matmul(&v.contiguous()?)?;
        Ok(AttentionOutput { context, weights })
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
    fn matches_the_definition_element_by_element() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 2, DType::F64, &Device::Cpu);
        let att = AdditiveAttention::new(3, 2, 4, vb).unwrap();
        let q = gradcheck::rand_tensor(&[2, 3, 3], 1);
        let k = gradcheck::rand_tensor(&[2, 5, 2], 2);
        let v = gradcheck::rand_tensor(&[2, 5, 6], 3);
        let out = att.forward(&q, &k, &v).unwrap();
        let wq: Vec<Vec<f64>> = att.query.weight().to_vec2().unwrap();
        let wk: Vec<Vec<f64>> = att.key.weight().to_vec2().unwrap();
        let bk: Vec<f64> = att.key.bias().unwrap().to_vec1().unwrap();
        let sv: Vec<Vec<f64>> = att.score.weight().to_vec2().unwrap();
        type V3 = Vec<Vec<Vec<f64>>>;
        let (q, k, v): (V3, V3, V3) = (
            q.to_vec3().unwrap(),
            k.to_vec3().unwrap(),
            v.to_vec3().unwrap(),
        );
        let ctx: Vec<Vec<Vec<f64>>> = out.context.to_vec3().unwrap();
        for bi in 0..2 {
            for t in 0..3 {
                let scores: Vec<f64> = (0..5)
                    .map(|u| {
                        (0..4)
                            .map(|j| {
                                let pre = (0..3).map(|i| wq[j][i] * q[bi][t][i]).sum::<f64>()
                                    + (0..2).map(|i| wk[j][i] * k[bi][u][i]).sum::<f64>()
                                    + bk[j];
                                sv[0][j] * pre.tanh()
                            })
                            .sum()
                    })
                    .collect();
                let z: f64 = scores.iter().map(|s| s.exp()).sum();
                for d in 0..6 {
                    let want: f64 = (0..5).map(|u| scores[u].exp() / z * v[bi][u][d]).sum();
                    assert!((ctx[bi][t][d] - want).abs() < 1e-12);
                }
            }
        }
        let bad = gradcheck::rand_tensor(&[2, 4, 6], 3);
        assert!(att
            .forward(
                &gradcheck::rand_tensor(&[2, 3, 3], 1),
                &gradcheck::rand_tensor(&[2, 5, 2], 2),
                &bad
            )
            .is_err());
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 4, DType::F64, &Device::Cpu);
        let att = AdditiveAttention::new(2, 3, 2, vb).unwrap();
        let q = Var::from_tensor(&gradcheck::rand_tensor(&[2, 3, 2], 5)).unwrap();
        let k = Var::from_tensor(&gradcheck::rand_tensor(&[2, 4, 3], 6)).unwrap();
        let v = Var::from_tensor(&gradcheck::rand_tensor(&[2, 4, 2], 7)).unwrap();
        gradcheck::check(
            &map,
            &[("q", &q), ("k", &k), ("v", &v)],
            || {
                att.forward(q.as_tensor(), k.as_tensor(), v.as_tensor())
                    .map(|o| o.context)
            },
            1e-6,
        );
    }

    #[test]
    fn masked_keys_equal_unpadded_keys_and_gradient_checks() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 8, DType::F64, &Device::Cpu);
        let att = AdditiveAttention::new(2, 3, 2, vb).unwrap();
        let lengths = [2, 4];
        let mask = TimeMask::new(&lengths, 4, DType::F64, &Device::Cpu).unwrap();
        let q = gradcheck::rand_tensor(&[2, 3, 2], 9);
        let k = Var::from_tensor(&gradcheck::rand_tensor(&[2, 4, 3], 10)).unwrap();
        let out = att
            .forward_masked(&q, k.as_tensor(), k.as_tensor(), &mask)
            .unwrap();
        for (b, &l) in lengths.iter().enumerate() {
            let kb = gradcheck::valid_row(k.as_tensor(), b, 1, l);
            let want = att.forward(&q.narrow(0, b, 1).unwrap(), &kb, &kb).unwrap();
            let got = out.context.narrow(0, b, 1).unwrap();
            gradcheck::assert_close(&got, &want.context, 1e-12, "context");
        }
        gradcheck::check_masked(
            &map,
            ("k", &k),
            1,
            &lengths,
            || {
                att.forward_masked(&q, k.as_tensor(), k.as_tensor(), &mask)
                    .map(|o| o.context)
            },
            1e-6,
        );
    }
}
