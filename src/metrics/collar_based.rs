//! Collar-based F1 from score tables, as sed_scores_eval 0.0.4's
//! `collar_based.fscore`: detections at every threshold, matched to reference events
//! of the same class when the onset is within `onset_collar` and the offset within
//! max(`offset_collar`, `offset_collar_rate` × reference length) (differences rounded
//! to 6 decimals), with sed_eval's bipartite matching where a detection or reference
//! has several candidates.

use std::collections::BTreeMap;

use super::matching::bipartite_match;
use super::numeric::round6;
use super::report::{F1Block, Prf};
use super::scores::{averages, deltas_over_candidates, onset_deltas, Curve, ScoredSet, Span};
use super::{Event, MetricsError, Result, ScoreTable};

/// Collars of the collar-based metric.
#[derive(Debug, Clone, Copy)]
pub struct Collars {
    /// Onset collar, seconds (DCASE: 0.2).
    pub onset_collar: f64,
    /// Minimum offset collar, seconds (DCASE: 0.2).
    pub offset_collar: f64,
    /// Offset collar as a fraction of the reference length (DCASE: 0.2).
    pub offset_collar_rate: f64,
}

impl Default for Collars {
    fn default() -> Self {
        Collars {
            onset_collar: 0.2,
            offset_collar: 0.2,
            offset_collar_rate: 0.2,
        }
    }
}

/// (tps, fps) of one file/class at one threshold.
fn stats(dets: &[Span], gt: &[Span], c: &Collars) -> Vec<f64> {
    let mut hit = vec![vec![false; gt.len()]; dets.len()];
    for (d, &(don, doff)) in dets.iter().enumerate() {
        for (g, &(gon, goff)) in gt.iter().enumerate() {
            let onset_ok = round6((don - gon).abs() - c.onset_collar) <= 0.0;
            let rate = c.offset_collar_rate * (goff - gon);
            let collar = if c.offset_collar >= rate {
                c.offset_collar
            } else {
                rate
            };
            let offset_ok = round6((doff - goff).abs() - collar) <= 0.0;
            hit[d][g] = doff > don && onset_ok && offset_ok;
        }
    }
    let row_multi = hit.iter().any(|r| r.iter().filter(|&&h| h).count() > 1);
    let col_multi = (0..gt.len()).any(|g| hit.iter().filter(|r| r[g]).count() > 1);
    let tps = if row_multi || col_multi {
        let graph: Vec<(usize, Vec<usize>)> = hit
            .iter()
            .enumerate()
            .filter_map(|(d, r)| {
                let l: Vec<usize> = r
                    .iter()
                    .enumerate()
                    .filter(|(_, &h)| h)
                    .map(|(g, _)| g)
                    .collect();
                (!l.is_empty()).then_some((d, l))
            })
            .collect();
        bipartite_match(&graph, gt.len()).len()
    } else {
        hit.iter().flatten().filter(|&&h| h).count()
    };
    let n_det = dets.iter().filter(|(on, off)| off > on).count();
    vec![tps as f64, (n_det - tps) as f64]
}

/// One curve per class of tps / fps over all thresholds, plus reference counts.
pub fn curves(set: &ScoredSet<'_>, collars: &Collars) -> (Vec<Curve>, Vec<f64>) {
    let mut curves = Vec::new();
    let mut n_ref = Vec::new();
    for c in 0..set.classes.len() {
        let mut deltas = Vec::new();
        for (f, table) in set.tables.iter().enumerate() {
            let scores = table.column(c);
            let gt = &set.gt[f][c];
            if gt.is_empty() {
                deltas.extend(onset_deltas(&scores, 2, 1));
            } else {
                deltas.extend(deltas_over_candidates(&scores, &table.timestamps, |d| {
                    stats(d, gt, collars)
                }));
            }
        }
        curves.push(Curve::accumulate(deltas, 2));
        n_ref.push(set.count_and_duration(c).0);
    }
    (curves, n_ref)
}

/// Collar-based F1 at `threshold` (scores > threshold are positive), micro, macro and
/// per class. Errors with [`MetricsError::ScoresUndefined`] where sed_scores_eval
/// refuses the input.
pub fn collar_fscore(
    tables: &BTreeMap<String, ScoreTable>,
    reference: &[Event],
    threshold: f64,
    collars: &Collars,
) -> Result<F1Block> {
    let set = ScoredSet::new(tables, reference, true)?;
    let (curves, n_ref) = curves(&set, collars);
    Ok(block_at_threshold(&set.classes, &curves, &n_ref, threshold))
}

/// F1 block of curves with (tps, fps) as their first two statistics at a fixed threshold.
pub fn block_at_threshold(
    classes: &[String],
    curves: &[Curve],
    n_ref: &[f64],
    threshold: f64,
) -> F1Block {
    let (mut tps, mut fps) = (Vec::new(), Vec::new());
    for c in curves {
        let j = c.index_for_threshold(threshold);
        tps.push(c.stats[j][0]);
        fps.push(c.stats[j][1]);
    }
    let (per, m, mi) = averages(&tps, &fps, n_ref);
    F1Block {
        micro: Prf {
            f_measure: mi.0,
            precision: mi.1,
            recall: mi.2,
        },
        macro_: Prf {
            f_measure: m.0,
            precision: m.1,
            recall: m.2,
        },
        class_wise: classes
            .iter()
            .cloned()
            .zip(per.iter().map(|x| Prf {
                f_measure: x.0,
                precision: x.1,
                recall: x.2,
            }))
            .collect(),
    }
}

/// Guards against a class whose reference events all fall outside the tables (recall undefined).
pub fn check_n_ref(classes: &[String], n_ref: &[f64]) -> Result<()> {
    match classes.iter().zip(n_ref).find(|(_, &n)| n == 0.0) {
        Some((c, _)) => Err(MetricsError::ScoresUndefined(format!(
            "recall undefined: no reference for class `{c}`"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_clean_detection_scores_one() {
        let t = ScoreTable {
            timestamps: (0..=10).map(|i| i as f64 * 0.5).collect(),
            classes: vec!["x".into()],
            scores: [0.0, 0.0, 0.9, 0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0]
                .iter()
                .map(|&v| vec![v])
                .collect(),
        };
        let tables: BTreeMap<String, ScoreTable> = [("a".to_string(), t)].into();
        let r = vec![Event::new("a.wav", 1.1, 2.0, "x")];
        let b = collar_fscore(&tables, &r, 0.5, &Collars::default()).unwrap();
        assert!((b.micro.f_measure - 1.0).abs() < 1e-12);
        let b = collar_fscore(&tables, &r, 0.95, &Collars::default()).unwrap();
        assert!(b.micro.f_measure.abs() < 1e-12);
    }
}
