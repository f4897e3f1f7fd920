//! Segment-based F1 with the optimum threshold per class (FIMO, the DCASE 2023 task 4b
//! metric) = sed_scores_eval 0.0.4's `segment_based.best_fscore`: each file is cut
//! into segments of `segment_length` seconds (boundaries rounded to 6 decimals), a
//! segment's score is the maximum of the frames it touches, and it is positive for a
//! class when a reference event of that class overlaps it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::numeric::round6;
use super::report::{ser_f64, Prf};
use super::scores::{averages, Curve, ScoredSet};
use super::{Event, MetricsError, Result, ScoreTable};

/// Best F1 of one class.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BestF1 {
    /// Best F1 over all thresholds.
    #[serde(serialize_with = "ser_f64")]
    pub f_measure: f64,
    /// Precision at that threshold.
    #[serde(serialize_with = "ser_f64")]
    pub precision: f64,
    /// Recall at that threshold.
    #[serde(serialize_with = "ser_f64")]
    pub recall: f64,
    /// The threshold (midway between neighbouring change points; -inf when every
    /// segment is positive, written as null).
    #[serde(serialize_with = "ser_f64")]
    pub threshold: f64,
}

/// FIMO result: per-class best F1 and its macro (FIMO) and micro averages.
#[derive(Debug, Clone, Serialize)]
pub struct FimoReport {
    /// Counts pooled over classes at each class's best threshold.
    pub micro: Prf,
    /// Mean over classes: FIMO is `macro.f_measure`.
    #[serde(rename = "macro")]
    pub macro_: Prf,
    /// Per class, sorted by label.
    pub class_wise: BTreeMap<String, BestF1>,
}

fn first_index_where(values: &[f64], pred: impl Fn(f64) -> bool) -> usize {
    values.iter().position(|&v| pred(v)).unwrap_or(values.len())
}

/// Per-class curves of (tps, fps) over all segment-score thresholds.
fn curves(
    set: &ScoredSet<'_>,
    durations: Option<&BTreeMap<String, f64>>,
    segment_length: f64,
) -> Result<Vec<Curve>> {
    let nc = set.classes.len();
    let mut deltas: Vec<Vec<(f64, Vec<f64>)>> = vec![Vec::new(); nc];
    for (f, table) in set.tables.iter().enumerate() {
        let ts: Vec<f64> = table.timestamps.iter().map(|&t| round6(t)).collect();
        let duration = match durations {
            Some(d) => *d
                .get(&set.ids[f])
                .ok_or_else(|| MetricsError::InvalidValue {
                    what: "durations".into(),
                    message: format!("no duration for audio `{}`", set.ids[f]),
                })?,
            None => {
                let mut m = ts[ts.len() - 1];
                for spans in &set.gt[f] {
                    for &(_, off) in spans {
                        if off > m {
                            m = off;
                        }
                    }
                }
                m
            }
        };
        let n_seg = (duration / segment_length).ceil() as usize;
        let bounds: Vec<f64> = (0..=n_seg)
            .map(|i| round6(i as f64 * segment_length))
            .collect();
        for i in 0..n_seg {
            let (son, soff) = (bounds[i], bounds[i + 1]);
            let idx_on = first_index_where(&ts, |t| t > son).saturating_sub(1);
            let idx_off = first_index_where(&ts, |t| t >= soff).min(ts.len() - 1);
            for (c, d) in deltas.iter_mut().enumerate() {
                let score = if idx_off <= idx_on {
                    0.0
                } else {
                    table.scores[idx_on..idx_off]
                        .iter()
                        .map(|r| r[c])
                        .fold(f64::NEG_INFINITY, |a, b| if b > a { b } else { a })
                };
                let tp = set.gt[f][c]
                    .iter()
                    .any(|&(on, off)| son < off && soff > on && soff > son);
                d.push((score, vec![tp as u8 as f64, 1.0 - tp as u8 as f64]));
            }
        }
    }
    Ok(deltas
        .into_iter()
        .map(|d| Curve::accumulate(d, 2))
        .collect())
}

/// FIMO over score tables. `durations` (seconds per audio id) sets each file's
/// evaluated length; without it, sed_scores_eval's default (last frame offset or last
/// reference offset, whichever is later).
pub fn fimo(
    tables: &BTreeMap<String, ScoreTable>,
    reference: &[Event],
    durations: Option<&BTreeMap<String, f64>>,
    segment_length: f64,
) -> Result<FimoReport> {
    if !(segment_length > 0.0 && segment_length.is_finite()) {
        return Err(MetricsError::InvalidValue {
            what: "segment length".into(),
            message: format!("{segment_length} (expected > 0 s)"),
        });
    }
    let set = ScoredSet::new(tables, reference, true)?;
    let curves = curves(&set, durations, segment_length)?;
    let mut class_wise = BTreeMap::new();
    let (mut tps, mut fps, mut n_refs) = (Vec::new(), Vec::new(), Vec::new());
    for (c, curve) in curves.iter().enumerate() {
        let n_ref = curve.stats[0][0];
        if n_ref == 0.0 {
            return Err(MetricsError::ScoresUndefined(format!(
                "no positive segment for class `{}`",
                set.classes[c]
            )));
        }
        let mut best = 0usize;
        let mut best_f = f64::NEG_INFINITY;
        let mut best_pr = (0.0, 0.0);
        for (j, st) in curve.stats.iter().enumerate() {
            let (_, p, r) = averages(&[st[0]], &[st[1]], &[n_ref]).0[0];
            let f = super::scores::fscore(p, r);
            if f >= best_f {
                best_f = f;
                best = j;
                best_pr = (p, r);
            }
        }
        let threshold = if best > 0 {
            (curve.scores[best] + curve.scores[best - 1]) / 2.0
        } else {
            f64::NEG_INFINITY
        };
        class_wise.insert(
            set.classes[c].clone(),
            BestF1 {
                f_measure: best_f,
                precision: best_pr.0,
                recall: best_pr.1,
                threshold,
            },
        );
        tps.push(curve.stats[best][0]);
        fps.push(curve.stats[best][1]);
        n_refs.push(n_ref);
    }
    let (_, m, mi) = averages(&tps, &fps, &n_refs);
    Ok(FimoReport {
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
        class_wise,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_threshold_separates_positive_segments() {
        let t = ScoreTable {
            timestamps: (0..=4).map(|i| i as f64).collect(),
            classes: vec!["x".into()],
            scores: [0.2, 0.8, 0.7, 0.1].iter().map(|&v| vec![v]).collect(),
        };
        let tables: BTreeMap<String, ScoreTable> = [("a".to_string(), t)].into();
        let r = vec![Event::new("a.wav", 1.0, 3.0, "x")];
        let rep = fimo(&tables, &r, None, 1.0).unwrap();
        let b = rep.class_wise["x"];
        assert!((b.f_measure - 1.0).abs() < 1e-12);
        assert!((b.threshold - 0.45).abs() < 1e-12, "{}", b.threshold);
    }
}
