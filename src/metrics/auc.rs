//! Clip-level threshold-free metrics of paper 003 (two-step attention AE): ROC AUC and
//! micro / macro (average) precision of clip scores, as scikit-learn's
//! `roc_auc_score` and `average_precision_score` compute them. A clip's score for a
//! class is the maximum of its frame scores; its truth is whether the reference has
//! an event of that class in the file.

use std::collections::BTreeMap;

use serde::Serialize;

use super::numeric::{np_mean, np_sum};
use super::report::ser_f64;
use super::scores::ScoredSet;
use super::{Event, Result, ScoreTable};

/// Clip-level scores.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClipReport {
    /// Mean of per-class ROC AUCs (NaN when a class is all positive or all negative).
    #[serde(serialize_with = "ser_f64")]
    pub roc_auc_macro: f64,
    /// ROC AUC of all (clip, class) pairs pooled.
    #[serde(serialize_with = "ser_f64")]
    pub roc_auc_micro: f64,
    /// Mean of per-class average precisions.
    #[serde(serialize_with = "ser_f64")]
    pub average_precision_macro: f64,
    /// Average precision of all (clip, class) pairs pooled.
    #[serde(serialize_with = "ser_f64")]
    pub average_precision_micro: f64,
}

/// (tps, fps) at each distinct score, descending (scikit-learn's `_binary_clf_curve`).
fn clf_curve(y: &[bool], s: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut idx: Vec<usize> = (0..s.len()).collect();
    idx.sort_by(|&a, &b| s[a].total_cmp(&s[b]));
    idx.reverse();
    let (mut tps, mut fps) = (Vec::new(), Vec::new());
    let mut tp = 0.0;
    for (k, &i) in idx.iter().enumerate() {
        tp += y[i] as u8 as f64;
        if k + 1 == idx.len() || s[idx[k + 1]] != s[i] {
            tps.push(tp);
            fps.push((k + 1) as f64 - tp);
        }
    }
    (tps, fps)
}

/// Binary ROC AUC (NaN when only one label value is present).
pub fn roc_auc(y: &[bool], s: &[f64]) -> f64 {
    let n_pos = y.iter().filter(|&&v| v).count();
    if n_pos == 0 || n_pos == y.len() {
        return f64::NAN;
    }
    let (mut tps, mut fps) = clf_curve(y, s);
    if fps.len() > 2 {
        let mut keep = vec![true];
        for k in 1..fps.len() - 1 {
            let d2f = fps[k + 1] - 2.0 * fps[k] + fps[k - 1];
            let d2t = tps[k + 1] - 2.0 * tps[k] + tps[k - 1];
            keep.push(d2f != 0.0 || d2t != 0.0);
        }
        keep.push(true);
        let mut k = 0;
        tps.retain(|_| {
            k += 1;
            keep[k - 1]
        });
        k = 0;
        fps.retain(|_| {
            k += 1;
            keep[k - 1]
        });
    }
    tps.insert(0, 0.0);
    fps.insert(0, 0.0);
    let (tl, fl) = (tps[tps.len() - 1], fps[fps.len() - 1]);
    let tpr: Vec<f64> = tps.iter().map(|t| t / tl).collect();
    let fpr: Vec<f64> = fps.iter().map(|f| f / fl).collect();
    let parts: Vec<f64> = (1..fpr.len())
        .map(|k| (fpr[k] - fpr[k - 1]) * (tpr[k] + tpr[k - 1]) / 2.0)
        .collect();
    np_sum(&parts)
}

/// Binary average precision (0 when there is no positive, as scikit-learn).
pub fn average_precision(y: &[bool], s: &[f64]) -> f64 {
    let (tps, fps) = clf_curve(y, s);
    let total = tps[tps.len() - 1];
    let precision: Vec<f64> = tps
        .iter()
        .zip(&fps)
        .map(|(t, f)| if t + f != 0.0 { t / (t + f) } else { 0.0 })
        .collect();
    let recall: Vec<f64> = tps
        .iter()
        .map(|t| if total == 0.0 { 1.0 } else { t / total })
        .collect();
    // reversed order with the (recall 0, precision 1) end point
    let mut r: Vec<f64> = recall.iter().rev().copied().collect();
    r.push(0.0);
    let mut p: Vec<f64> = precision.iter().rev().copied().collect();
    p.push(1.0);
    let parts: Vec<f64> = (0..r.len() - 1).map(|k| (r[k + 1] - r[k]) * p[k]).collect();
    let v = -np_sum(&parts);
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

/// Clip-level ROC AUC and average precision of score tables against reference events.
pub fn clip_metrics(
    tables: &BTreeMap<String, ScoreTable>,
    reference: &[Event],
) -> Result<ClipReport> {
    let set = ScoredSet::new(tables, reference, false)?;
    let nc = set.classes.len();
    let mut y = vec![Vec::new(); nc];
    let mut s = vec![Vec::new(); nc];
    for (f, t) in set.tables.iter().enumerate() {
        for c in 0..nc {
            y[c].push(!set.gt[f][c].is_empty());
            s[c].push(
                t.scores
                    .iter()
                    .map(|r| r[c])
                    .fold(f64::NEG_INFINITY, |a, b| if b > a { b } else { a }),
            );
        }
    }
    let aucs: Vec<f64> = (0..nc).map(|c| roc_auc(&y[c], &s[c])).collect();
    let aps: Vec<f64> = (0..nc).map(|c| average_precision(&y[c], &s[c])).collect();
    // micro: y_true.ravel() is row-major (clip, class)
    let (mut yf, mut sf) = (Vec::new(), Vec::new());
    for f in 0..set.tables.len() {
        for c in 0..nc {
            yf.push(y[c][f]);
            sf.push(s[c][f]);
        }
    }
    Ok(ClipReport {
        roc_auc_macro: np_mean(&aucs),
        roc_auc_micro: roc_auc(&yf, &sf),
        average_precision_macro: np_mean(&aps),
        average_precision_micro: average_precision(&yf, &sf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_and_reversed_ranking() {
        let y = [true, false, true, false];
        assert!((roc_auc(&y, &[0.9, 0.1, 0.8, 0.2]) - 1.0).abs() < 1e-12);
        assert!(roc_auc(&y, &[0.1, 0.9, 0.2, 0.8]).abs() < 1e-12);
        assert!(roc_auc(&[true, true], &[0.1, 0.2]).is_nan());
    }

    #[test]
    fn average_precision_matches_hand_computation() {
        // ranks: 0.9 (pos), 0.5 (neg), 0.3 (pos): AP = 0.5 * 1 + 0.5 * 2/3
        let ap = average_precision(&[true, false, true], &[0.9, 0.5, 0.3]);
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-12, "{ap}");
        assert!(average_precision(&[false, false], &[0.9, 0.5]).abs() < 1e-12);
    }
}
