//! Training losses, written from candle primitives with a backward pass that works in
//! candle 0.11 (its `binary_cross_entropy_with_logit` overflows to `inf` for large
//! logits, and it has no BCE on probabilities or focal loss).
//!
//! Every loss takes an optional `mask` broadcastable to the loss's element shape
//! (1 = counts, 0 = padding) and returns the mean over the counted elements, so zero
//! padding never changes a loss. Each is checked against PyTorch in
//! `tests/train_losses.rs` (golden values from `scripts/golden_losses.py`).
//! [`per_clip_mean`] averages element losses per clip first, so that a padded batch's
//! loss is the mean of its clips' losses whatever their lengths.

use candle_core::{DType, Result, Tensor, D};

/// PyTorch's `BCELoss` clamps each log term at −100; so does [`bce`].
const LOG_FLOOR: f64 = -100.0;

/// Mean of `l` over the elements where `mask` is 1 (all elements without a mask).
/// An all-zero mask gives 0 (nothing counted), not NaN.
pub fn masked_mean(l: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => l.mean_all(),
        Some(m) => {
            let m = m.to_dtype(l.dtype())?.broadcast_as(l.shape())?;
            let num = (l * &m)?.sum_all()?;
            let den = m.sum_all()?.to_scalar_f64()?.max(1.0);
            num.affine(1.0 / den, 0.0)
        }
    }
}

/// Mean over clips of each clip's mean of `l (B, …)` over its counted elements
/// (`mask`, broadcastable to `l`, 1 = counts): every clip weighs the same whatever its
/// length, so the loss of a padded batch is the mean of its clips' losses. Clips with
/// nothing counted are left out; with none counted at all the result is 0.
pub fn per_clip_mean(l: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let b = l.dim(0)?;
    let m = mask.to_dtype(l.dtype())?.broadcast_as(l.shape())?;
    let num = (l * &m)?.reshape((b, ()))?.sum(1)?; // (B,)
    let den: Vec<f64> = m
        .reshape((b, ()))?
        .sum(1)?
        .to_dtype(DType::F64)?
        .to_vec1()?;
    let counted = den.iter().filter(|&&d| d > 0.0).count();
    if counted == 0 {
        return Tensor::zeros((), l.dtype(), l.device());
    }
    let w: Vec<f64> = den
        .iter()
        .map(|&d| {
            if d > 0.0 {
                1.0 / (d * counted as f64)
            } else {
                0.0
            }
        })
        .collect();
    let w = Tensor::from_vec(w, b, l.device())?.to_dtype(l.dtype())?;
    (num * w)?.sum_all()
}

trait ToScalarF64 {
    fn to_scalar_f64(&self) -> Result<f64>;
}

impl ToScalarF64 for Tensor {
    fn to_scalar_f64(&self) -> Result<f64> {
        self.to_dtype(DType::F64)?.to_scalar::<f64>()
    }
}

/// Element-wise binary cross-entropy on probabilities `p` against (soft) targets `y`,
/// `−[y·max(ln p, −100) + (1−y)·max(ln(1−p), −100)]` as PyTorch's `BCELoss`.
pub fn bce_elementwise(p: &Tensor, y: &Tensor) -> Result<Tensor> {
    let lp = floored_log(p)?;
    let lq = floored_log(&p.affine(-1.0, 1.0)?)?;
    let pos = (y * lp)?;
    let neg = (y.affine(-1.0, 1.0)? * lq)?;
    (pos + neg)?.neg()
}

/// `max(ln x, −100)` for `x ∈ [0, 1]` with a finite gradient everywhere: at `x = 0`
/// (e.g. a frame probability zeroed in the padding, or `1 − p` at `p = 1`) the log is
/// taken of 1 and −100 added, so its backward never computes `0 / 0`.
fn floored_log(x: &Tensor) -> Result<Tensor> {
    let zero = x.le(0.0)?.to_dtype(x.dtype())?; // a constant: no gradient
    (x + &zero)?
        .log()?
        .maximum(LOG_FLOOR)?
        .add(&zero.affine(LOG_FLOOR, 0.0)?)
}

/// Binary cross-entropy on probabilities (`torch.nn.BCELoss`, mean over masked elements).
pub fn bce(p: &Tensor, y: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    masked_mean(&bce_elementwise(p, y)?, mask)
}

/// Numerically stable binary cross-entropy on logits `x`
/// (`torch.nn.BCEWithLogitsLoss`): `max(x, 0) − x·y + ln(1 + e^{−|x|})`, finite for any
/// finite logit.
pub fn bce_with_logits(x: &Tensor, y: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let soft = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    let l = ((x.relu()? - (x * y)?)? + soft)?;
    masked_mean(&l, mask)
}

/// Focal loss on probabilities with soft targets (Lin et al.; the form of
/// `torchvision.ops.sigmoid_focal_loss`, taking probabilities): with
/// `p_t = p·y + (1−p)(1−y)`, `l = BCE(p, y)·(1 − p_t)^γ`, times
/// `α·y + (1−α)(1−y)` when `alpha` is given.
pub fn focal(
    p: &Tensor,
    y: &Tensor,
    gamma: f64,
    alpha: Option<f64>,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    masked_mean(&focal_elementwise(p, y, gamma, alpha)?, mask)
}

/// Element-wise focal loss (see [`focal`]).
pub fn focal_elementwise(p: &Tensor, y: &Tensor, gamma: f64, alpha: Option<f64>) -> Result<Tensor> {
    let ce = bce_elementwise(p, y)?;
    let one_m_p = p.affine(-1.0, 1.0)?;
    let one_m_y = y.affine(-1.0, 1.0)?;
    let p_t = ((p * y)? + (&one_m_p * &one_m_y)?)?;
    // (1 − p_t) ≥ 0; clamp away exact zero so the power's gradient stays finite.
    let w = p_t.affine(-1.0, 1.0)?.clamp(1e-12, 1.0)?.powf(gamma)?;
    let mut l = (ce * w)?;
    if let Some(a) = alpha {
        let aw = (y.affine(a, 0.0)? + one_m_y.affine(1.0 - a, 0.0)?)?;
        l = (l * aw)?;
    }
    Ok(l)
}

/// Mean squared error (`torch.nn.MSELoss`), over masked elements.
pub fn mse(a: &Tensor, b: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    masked_mean(&(a - b)?.sqr()?, mask)
}

/// Scene cross-entropy (`torch.nn.CrossEntropyLoss`): `logits (B, S)`, `targets` the
/// class index of each clip (`u32`, `(B,)`), mean over the clips.
pub fn scene_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?;
    picked.mean_all()?.neg()
}

/// Frame pairs of the inter-frame distance (IFD) loss of Wang et al. (paper 001 §2.2):
/// `(clip a, clip b, frame t)` at equal time indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfdPairs {
    /// Frames that should be close: both clips have exactly the same clip labels and
    /// the two frames the same, non-empty frame labels.
    pub positive: Vec<(usize, usize, usize)>,
    /// Frames that should be far apart: the clips' label sets are disjoint and both
    /// frames have a non-empty frame label.
    pub negative: Vec<(usize, usize, usize)>,
    /// Every counted frame `(clip, t)` (for the norm term, eq. 2).
    pub frames: Vec<(usize, usize)>,
}

/// Samples the IFD pairs (paper 001 §2.2.1) from binary clip labels `clip[b][c]`,
/// binary frame labels `frame[b][t][c]` at the embedding rate, and per-clip valid
/// frame counts `valid[b]` (padding is never sampled). Pairs of clips whose labels
/// overlap without being equal are skipped, as in the paper. At most `max_pairs` of
/// each kind are kept (evenly spaced, deterministic).
pub fn ifd_pairs(
    clip: &[Vec<bool>],
    frame: &[Vec<Vec<bool>>],
    valid: &[usize],
    max_pairs: usize,
) -> IfdPairs {
    let n = clip.len();
    let mut out = IfdPairs::default();
    let nonempty = |v: &[bool]| v.iter().any(|&x| x);
    for a in 0..n {
        for b in (a + 1)..n {
            let same = clip[a] == clip[b] && nonempty(&clip[a]);
            let disjoint = !clip[a].iter().zip(&clip[b]).any(|(&x, &y)| x && y)
                && nonempty(&clip[a])
                && nonempty(&clip[b]);
            if !same && !disjoint {
                continue;
            }
            let t_max = valid[a]
                .min(valid[b])
                .min(frame[a].len())
                .min(frame[b].len());
            for (t, (fa, fb)) in frame[a].iter().zip(&frame[b]).enumerate().take(t_max) {
                if !nonempty(fa) || !nonempty(fb) {
                    continue;
                }
                if same && fa == fb {
                    out.positive.push((a, b, t));
                } else if disjoint {
                    out.negative.push((a, b, t));
                }
            }
        }
    }
    let thin = |v: &mut Vec<(usize, usize, usize)>| {
        if v.len() > max_pairs && max_pairs > 0 {
            let step = v.len() as f64 / max_pairs as f64;
            *v = (0..max_pairs)
                .map(|i| v[(i as f64 * step) as usize])
                .collect();
        }
    };
    thin(&mut out.positive);
    thin(&mut out.negative);
    let mut frames: Vec<(usize, usize)> = out
        .positive
        .iter()
        .chain(&out.negative)
        .flat_map(|&(a, b, t)| [(a, t), (b, t)])
        .collect();
    frames.sort_unstable();
    frames.dedup();
    out.frames = frames;
    out
}

/// Rows `(clip, t)` of `emb (B, T, D)` gathered into `(N, D)`.
fn gather_frames(emb: &Tensor, idx: &[(usize, usize)]) -> Result<Tensor> {
    let (_, t, d) = emb.dims3()?;
    let flat = emb.reshape(((), d))?;
    let ids: Vec<u32> = idx.iter().map(|&(b, i)| (b * t + i) as u32).collect();
    let ids = Tensor::from_vec(ids, idx.len(), emb.device())?;
    flat.index_select(&ids, 0)
}

/// Similarities `dis = v_a·v_b / D` (eq. 1) of the pairs' frames, `(N,)`.
fn similarities(emb: &Tensor, pairs: &[(usize, usize, usize)]) -> Result<Tensor> {
    let d = emb.dim(2)?;
    let a: Vec<(usize, usize)> = pairs.iter().map(|&(a, _, t)| (a, t)).collect();
    let b: Vec<(usize, usize)> = pairs.iter().map(|&(_, b, t)| (b, t)).collect();
    let va = gather_frames(emb, &a)?;
    let vb = gather_frames(emb, &b)?;
    (va * vb)?.sum(1)?.affine(1.0 / d as f64, 0.0)
}

/// The IFD loss (paper 001 eqs. 1–3) of embeddings `emb (B, T, D)` for sampled `pairs`:
/// mean over every (negative, positive) pair combination of
/// `[dis_neg − dis_pos + margin]₊` plus the mean over the pairs' frames of the norm
/// term `|dis_ii − 1|`. Means instead of the paper's sums keep the scale independent of
/// the batch. With no positive or no negative pair the hinge term is 0; with no pairs
/// at all the loss is 0.
pub fn ifd(emb: &Tensor, pairs: &IfdPairs, margin: f64) -> Result<Tensor> {
    let zero = Tensor::zeros((), emb.dtype(), emb.device())?;
    if pairs.frames.is_empty() {
        return Ok(zero);
    }
    let d = emb.dim(2)?;
    let v = gather_frames(emb, &pairs.frames)?;
    let norm = v
        .sqr()?
        .sum(1)?
        .affine(1.0 / d as f64, -1.0)?
        .abs()?
        .mean_all()?;
    let hinge = if pairs.positive.is_empty() || pairs.negative.is_empty() {
        zero
    } else {
        let pos = similarities(emb, &pairs.positive)?; // (P,)
        let neg = similarities(emb, &pairs.negative)?; // (N,)
        let diff = neg
            .unsqueeze(1)?
            .broadcast_sub(&pos.unsqueeze(0)?)?
            .affine(1.0, margin)?;
        diff.relu()?.mean_all()?
    };
    hinge + norm
}

/// Pseudo strong labels (paper 001 §2.2.2) for a weakly labelled clip: frame `t` of
/// class `c` is active when the model's frame probability `frame[t][c] > threshold`
/// and the clip is tagged with `c`.
pub fn pseudo_strong_labels(frame: &[Vec<f32>], clip: &[bool], threshold: f32) -> Vec<Vec<bool>> {
    frame
        .iter()
        .map(|row| {
            row.iter()
                .zip(clip)
                .map(|(&p, &tag)| tag && p > threshold)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    fn scalar(x: &Tensor) -> f32 {
        x.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn bce_with_logits_is_finite_for_huge_logits() {
        let x = t(&[50.0, -50.0, 1000.0, -1000.0], &[4]);
        let y = t(&[0.0, 1.0, 1.0, 0.0], &[4]);
        let l = scalar(&bce_with_logits(&x, &y, None).unwrap());
        assert!((l - 25.0).abs() < 1e-4, "{l}");
    }

    #[test]
    fn bce_on_probabilities_floors_the_log_at_minus_100() {
        let p = t(&[0.0, 1.0], &[2]);
        let y = t(&[1.0, 0.0], &[2]);
        let l = scalar(&bce(&p, &y, None).unwrap());
        assert!((l - 100.0).abs() < 1e-4, "{l}");
    }

    #[test]
    fn mask_removes_padding_from_the_mean() {
        let p = t(&[0.2, 0.7, 0.9, 0.5], &[1, 4]);
        let y = t(&[0.0, 1.0, 1.0, 1.0], &[1, 4]);
        let m = t(&[1.0, 1.0, 0.0, 0.0], &[1, 4]);
        let masked = scalar(&bce(&p, &y, Some(&m)).unwrap());
        let short = scalar(&bce(&t(&[0.2, 0.7], &[1, 2]), &t(&[0.0, 1.0], &[1, 2]), None).unwrap());
        assert!((masked - short).abs() < 1e-6);
    }

    #[test]
    fn ifd_pairs_follow_the_three_cases() {
        // clips 0 and 1: same labels {0}; clip 2: {1} (disjoint from both); clip 3: {0,1}.
        let clip = vec![
            vec![true, false],
            vec![true, false],
            vec![false, true],
            vec![true, true],
        ];
        let on0 = vec![true, false];
        let on1 = vec![false, true];
        let off = vec![false, false];
        let frame = vec![
            vec![on0.clone(), off.clone(), on0.clone()],
            vec![on0.clone(), on0.clone(), on0.clone()],
            vec![on1.clone(), on1.clone(), off.clone()],
            vec![on0.clone(), on1.clone(), on0.clone()],
        ];
        let p = ifd_pairs(&clip, &frame, &[3, 3, 3, 3], 100);
        assert_eq!(p.positive, vec![(0, 1, 0), (0, 1, 2)]);
        assert_eq!(p.negative, vec![(0, 2, 0), (1, 2, 0), (1, 2, 1)]);
        // Padding is not sampled.
        let p = ifd_pairs(&clip, &frame, &[1, 3, 3, 3], 100);
        assert_eq!(p.positive, vec![(0, 1, 0)]);
    }

    #[test]
    fn bce_gradients_stay_finite_at_probabilities_zero_and_one() {
        // Frames zeroed in the padding (p = 0) and saturated ones (p = 1), masked or not.
        let p = Var::from_slice(&[0.0f32, 1.0, 0.0, 1.0, 0.5], (1, 5), &Device::Cpu).unwrap();
        let y = t(&[0.0, 1.0, 1.0, 0.0, 1.0], &[1, 5]);
        let m = t(&[0.0, 0.0, 1.0, 1.0, 1.0], &[1, 5]);
        let l = bce(p.as_tensor(), &y, Some(&m)).unwrap();
        assert!((scalar(&l) - (100.0 + 100.0 + 2f32.ln()) / 3.0).abs() < 1e-4);
        let masked = per_clip_mean(&bce_elementwise(p.as_tensor(), &y).unwrap(), &m).unwrap();
        assert!((scalar(&masked) - scalar(&l)).abs() < 1e-5);
        for loss in [l, masked] {
            let g = loss.backward().unwrap();
            let g: Vec<f32> = g
                .get(p.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
            assert_eq!(&g[..2], &[0.0, 0.0], "masked elements get no gradient");
        }
    }

    #[test]
    fn per_clip_mean_weighs_clips_equally() {
        // Clip 0: 2 counted elements (mean 2), clip 1: 1 (mean 6), clip 2: none.
        let l = t(&[1.0, 3.0, 9.0, 6.0, 5.0, 5.0], &[3, 2]);
        let m = t(&[1.0, 1.0, 0.0, 1.0, 0.0, 0.0], &[3, 2]);
        assert!((scalar(&per_clip_mean(&l, &m).unwrap()) - 4.0).abs() < 1e-6);
        let none = t(&[0.0; 6], &[3, 2]);
        assert_eq!(scalar(&per_clip_mean(&l, &none).unwrap()), 0.0);
    }

    #[test]
    fn focal_with_gamma_zero_is_bce_and_has_gradients() {
        let p = Var::from_slice(&[0.3f32, 0.8, 0.6], 3, &Device::Cpu).unwrap();
        let y = t(&[0.2, 1.0, 0.0], &[3]);
        let f = focal(p.as_tensor(), &y, 0.0, None, None).unwrap();
        let b = bce(p.as_tensor(), &y, None).unwrap();
        assert!((scalar(&f) - scalar(&b)).abs() < 1e-6);
        let g = focal(p.as_tensor(), &y, 2.0, Some(0.25), None)
            .unwrap()
            .backward()
            .unwrap();
        let gp: Vec<f32> = g.get(p.as_tensor()).unwrap().to_vec1().unwrap();
        assert!(gp.iter().all(|x| x.is_finite() && x.abs() > 0.0), "{gp:?}");
    }
}
