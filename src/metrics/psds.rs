//! Intersection-based metrics from score tables, as sed_scores_eval 0.0.4: the
//! detection tolerance (dtc), ground-truth intersection (gtc) and cross-trigger
//! (cttc) criteria per threshold, the intersection-based F1 at a threshold and the
//! polyphonic sound detection score (PSDS) computed exactly over all thresholds.

use std::collections::BTreeMap;

use super::collar_based::block_at_threshold;
use super::numeric::{np_sum, round6};
use super::report::F1Block;
use super::scores::{deltas_over_candidates, onset_deltas, Curve, ScoredSet, Span};
use super::{Event, MetricsError, Result, ScoreTable};

/// PSDS parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PsdsParams {
    /// Detection tolerance criterion.
    pub dtc: f64,
    /// Ground-truth intersection criterion.
    pub gtc: f64,
    /// Cross-trigger tolerance criterion (needed when `alpha_ct` > 0).
    pub cttc: Option<f64>,
    /// Weight of cross-triggers in the effective false-positive rate.
    pub alpha_ct: f64,
    /// Weight of the across-class standard deviation of the TP ratio.
    pub alpha_st: f64,
    /// Largest effective false positives per hour on the curve.
    pub max_efpr: f64,
}

impl PsdsParams {
    /// DCASE PSDS scenario 1 (dtc = gtc = 0.7, no cross-triggers, alpha_st = 1, 100/h).
    pub const PSDS1: PsdsParams = PsdsParams {
        dtc: 0.7,
        gtc: 0.7,
        cttc: None,
        alpha_ct: 0.0,
        alpha_st: 1.0,
        max_efpr: 100.0,
    };
    /// DCASE PSDS scenario 2 (dtc = gtc = 0.1, cttc = 0.3, alpha_ct = 0.5, alpha_st = 1, 100/h).
    pub const PSDS2: PsdsParams = PsdsParams {
        dtc: 0.1,
        gtc: 0.1,
        cttc: Some(0.3),
        alpha_ct: 0.5,
        alpha_st: 1.0,
        max_efpr: 100.0,
    };
}

fn intersections(dets: &[Span], gt: &[Span]) -> Vec<Vec<f64>> {
    dets.iter()
        .map(|&(don, doff)| {
            gt.iter()
                .map(|&(gon, goff)| {
                    let v = doff.min(goff) - don.max(gon);
                    if v > 0.0 {
                        v
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

/// [tps, fps, cts per other class...] of one file/class at one threshold.
fn stats(
    dets: &[Span],
    target: &[Span],
    others: &[&[Span]],
    dtc: f64,
    gtc: f64,
    cttc: Option<f64>,
) -> Vec<f64> {
    let inter = intersections(dets, target);
    let rel: Vec<bool> = dets
        .iter()
        .zip(&inter)
        .map(|(&(on, off), row)| off > on && round6(np_sum(row)) >= round6(dtc * (off - on)))
        .collect();
    let n_det = dets.iter().filter(|(on, off)| off > on).count();
    let fps = n_det - rel.iter().filter(|&&r| r).count();
    let mut tps = 0usize;
    for (g, &(gon, goff)) in target.iter().enumerate() {
        let col: Vec<f64> = inter
            .iter()
            .zip(&rel)
            .map(|(row, &r)| if r { row[g] } else { 0.0 })
            .collect();
        let total = if target.len() == 1 {
            np_sum(&col)
        } else {
            col.iter().fold(0.0, |a, b| a + b)
        };
        if round6(total) >= round6(gtc * (goff - gon)) {
            tps += 1;
        }
    }
    let mut out = vec![tps as f64, fps as f64];
    for other in others {
        let cts = match cttc {
            Some(cttc) if !other.is_empty() => {
                let oi = intersections(dets, other);
                dets.iter()
                    .zip(&oi)
                    .zip(&rel)
                    .filter(|((&(on, off), row), &r)| {
                        let w = if r { 0.0 } else { 1.0 };
                        let v: Vec<f64> = row.iter().map(|x| w * x).collect();
                        off > on && round6(np_sum(&v)) >= round6(cttc * (off - on))
                    })
                    .count()
            }
            _ => 0,
        };
        out.push(cts as f64);
    }
    out
}

/// Per-class curves of [tps, fps, cts...] over all thresholds.
fn curves(set: &ScoredSet<'_>, dtc: f64, gtc: f64, cttc: Option<f64>) -> Vec<Curve> {
    let nc = set.classes.len();
    let n_stats = 2 + if cttc.is_some() { nc - 1 } else { 0 };
    (0..nc)
        .map(|c| {
            let mut deltas = Vec::new();
            for (f, table) in set.tables.iter().enumerate() {
                let scores = table.column(c);
                let target = &set.gt[f][c];
                let others: Vec<&[Span]> = if cttc.is_some() {
                    (0..nc)
                        .filter(|&o| o != c)
                        .map(|o| set.gt[f][o].as_slice())
                        .collect()
                } else {
                    Vec::new()
                };
                if target.is_empty() && (cttc.is_none() || nc == 1) {
                    deltas.extend(onset_deltas(&scores, n_stats, 1));
                } else {
                    deltas.extend(deltas_over_candidates(&scores, &table.timestamps, |d| {
                        stats(d, target, &others, dtc, gtc, cttc)
                    }));
                }
            }
            Curve::accumulate(deltas, n_stats)
        })
        .collect()
}

/// Intersection-based F1 at `threshold` (scores > threshold are positive).
pub fn intersection_fscore(
    tables: &BTreeMap<String, ScoreTable>,
    reference: &[Event],
    threshold: f64,
    dtc: f64,
    gtc: f64,
) -> Result<F1Block> {
    let set = ScoredSet::new(tables, reference, true)?;
    let curves = curves(&set, dtc, gtc, None);
    let n_ref: Vec<f64> = (0..set.classes.len())
        .map(|c| set.count_and_duration(c).0)
        .collect();
    Ok(block_at_threshold(&set.classes, &curves, &n_ref, threshold))
}

/// sed_scores_eval's `_unique_cummax_sort`: the ROC's upper staircase.
fn unique_cummax_sort(tpr: &[f64], efpr: &[f64], max_efpr: f64) -> (Vec<f64>, Vec<f64>) {
    let mut idx: Vec<usize> = (0..tpr.len()).collect();
    idx.sort_by(|&a, &b| efpr[a].total_cmp(&efpr[b]).then(tpr[a].total_cmp(&tpr[b])));
    let t: Vec<f64> = idx.iter().map(|&i| tpr[i]).collect();
    let e: Vec<f64> = idx.iter().map(|&i| efpr[i]).collect();
    let mut keep = vec![0usize];
    let mut cm = t.first().copied().unwrap_or(0.0);
    for (i, &ti) in t.iter().enumerate().skip(1) {
        let next = if ti > cm { ti } else { cm };
        if next > cm {
            keep.push(i);
        }
        cm = next;
    }
    let t: Vec<f64> = keep.iter().map(|&i| t[i]).collect();
    let e: Vec<f64> = keep.iter().map(|&i| e[i]).collect();
    // unique efpr, keeping the last (largest tpr) of equal values
    let (mut ut, mut ue) = (Vec::new(), Vec::new());
    for i in 0..e.len() {
        if i + 1 < e.len() && e[i + 1] == e[i] {
            continue;
        }
        ut.push(t[i]);
        ue.push(e[i]);
    }
    let cut = ue.iter().position(|&x| x > max_efpr).unwrap_or(ue.len());
    ut.truncate(cut);
    ue.truncate(cut);
    (ut, ue)
}

/// `scipy.interpolate.interp1d(x, y, kind='previous', fill_value=(0, y[-1]))(xq)`.
fn interp_previous(x: &[f64], y: &[f64], xq: f64) -> f64 {
    if xq < x[0] {
        return 0.0;
    }
    if xq > x[x.len() - 1] {
        return y[y.len() - 1];
    }
    let k = x.iter().filter(|&&v| v <= xq).count();
    y[k.max(1) - 1]
}

/// PSDS of score tables against reference events, with `durations` (seconds per audio
/// id) for the false-positive rate per hour. Returns the PSDS value.
pub fn psds(
    tables: &BTreeMap<String, ScoreTable>,
    reference: &[Event],
    durations: &BTreeMap<String, f64>,
    params: &PsdsParams,
) -> Result<f64> {
    if (params.alpha_ct == 0.0) != params.cttc.is_none() {
        return Err(MetricsError::InvalidValue {
            what: "PSDS parameters".into(),
            message: "cttc must be given exactly when alpha_ct is not 0".into(),
        });
    }
    let set = ScoredSet::new(tables, reference, true)?;
    let mut dataset_duration = 0.0;
    for id in &set.ids {
        let Some(d) = durations.get(id) else {
            return Err(MetricsError::InvalidValue {
                what: "durations".into(),
                message: format!("no duration for audio `{id}`"),
            });
        };
        dataset_duration += d;
    }
    let cttc = if params.alpha_ct == 0.0 {
        None
    } else {
        params.cttc
    };
    let curves = curves(&set, params.dtc, params.gtc, cttc);
    let nc = set.classes.len();
    let counts: Vec<(f64, f64)> = (0..nc).map(|c| set.count_and_duration(c)).collect();
    let mut rocs = Vec::new();
    for (c, curve) in curves.iter().enumerate() {
        let n_ref = if counts[c].0 > 1.0 { counts[c].0 } else { 1.0 };
        let others: Vec<usize> = (0..nc).filter(|&o| o != c).collect();
        let mut tpr = Vec::new();
        let mut efpr = Vec::new();
        for st in &curve.stats {
            tpr.push(st[0] / n_ref);
            let fp_rate = st[1] / dataset_duration;
            let e = if params.alpha_ct == 0.0 {
                fp_rate
            } else {
                let mut sum = f64::NAN;
                for (k, &o) in others.iter().enumerate() {
                    let t_ref = if counts[o].1 > 1e-12 {
                        counts[o].1
                    } else {
                        1e-12
                    };
                    let v = st[2 + k] / t_ref;
                    sum = if k == 0 { v } else { sum + v };
                }
                fp_rate + params.alpha_ct * (sum / others.len() as f64)
            };
            efpr.push(e * 3600.0);
        }
        rocs.push(unique_cummax_sort(&tpr, &efpr, params.max_efpr));
    }
    let mut all: Vec<f64> = rocs.iter().flat_map(|(_, e)| e.iter().copied()).collect();
    all.sort_by(|a, b| a.total_cmp(b));
    all.dedup();
    let interp: Vec<Vec<f64>> = rocs
        .iter()
        .map(|(t, e)| {
            if t.is_empty() {
                return vec![f64::NAN; all.len()];
            }
            all.iter().map(|&x| interp_previous(e, t, x)).collect()
        })
        .collect();
    let n = nc as f64;
    let mut etpr = Vec::with_capacity(all.len() + 1);
    for j in 0..all.len() {
        let mut s = interp[0][j];
        for row in &interp[1..] {
            s += row[j];
        }
        let mu = s / n;
        let mut v = (interp[0][j] - mu) * (interp[0][j] - mu);
        for row in &interp[1..] {
            v += (row[j] - mu) * (row[j] - mu);
        }
        let sigma = (v / n).sqrt();
        let e = mu - params.alpha_st * sigma;
        etpr.push(if e > 0.0 { e } else { 0.0 });
    }
    let last = etpr.last().copied().unwrap_or(0.0);
    etpr.push(last);
    all.push(params.max_efpr);
    // staircase AUC up to max_efpr, normalised
    let mut idx: Vec<usize> = (0..all.len()).collect();
    idx.sort_by(|&a, &b| all[a].total_cmp(&all[b]));
    let x: Vec<f64> = idx.iter().map(|&i| all[i]).collect();
    let y: Vec<f64> = idx.iter().map(|&i| etpr[i]).collect();
    let cut = x
        .iter()
        .position(|&v| v > params.max_efpr)
        .unwrap_or(x.len());
    let mut xs = x[..cut].to_vec();
    xs.push(params.max_efpr);
    let mut auc = 0.0;
    for k in 0..cut {
        auc += y[k] * (xs[k + 1] - xs[k]);
    }
    Ok(auc / params.max_efpr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_file(scores: &[f64]) -> BTreeMap<String, ScoreTable> {
        let t = ScoreTable {
            timestamps: (0..=scores.len()).map(|i| i as f64).collect(),
            classes: vec!["x".into()],
            scores: scores.iter().map(|&v| vec![v]).collect(),
        };
        [("a".to_string(), t)].into()
    }

    #[test]
    fn perfect_scores_give_psds_one() {
        let tables = one_file(&[0.0, 0.9, 0.9, 0.0]);
        let r = vec![Event::new("a.wav", 1.0, 3.0, "x")];
        let d: BTreeMap<String, f64> = [("a".to_string(), 4.0)].into();
        let v = psds(&tables, &r, &d, &PsdsParams::PSDS1).unwrap();
        assert!((v - 1.0).abs() < 1e-12, "{v}");
    }

    #[test]
    fn missing_reference_class_is_refused() {
        let tables = one_file(&[0.0, 0.9]);
        let d: BTreeMap<String, f64> = [("a".to_string(), 2.0)].into();
        assert!(matches!(
            psds(&tables, &[], &d, &PsdsParams::PSDS1),
            Err(MetricsError::ScoresUndefined(_))
        ));
    }
}
