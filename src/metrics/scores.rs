//! The threshold machinery of sed_scores_eval 0.0.4, shared by the collar-based,
//! intersection-based (PSDS) and segment-based (FIMO) metrics.
//!
//! For each file and class, detections are computed at every distinct score of that
//! file (a frame is active when its score >= the candidate), statistics are computed
//! per candidate, and only their changes ("deltas") are kept. Deltas of all files are
//! then summed into one curve per class: `stats[j]` holds the statistics for the
//! decision "score >= `scores[j]`", with a final `+inf` point where nothing is
//! detected. A fixed threshold `t` uses the first point with score > `t`, so scores
//! strictly greater than the threshold are positive.

use std::collections::BTreeMap;

use super::numeric::np_mean;
use super::{Event, MetricsError, Result, ScoreTable};

/// (onset, offset) of one event, seconds.
pub type Span = (f64, f64);

/// Score tables and ground truth of the score-based metrics, aligned by file.
#[derive(Debug, Clone)]
pub struct ScoredSet<'a> {
    /// Audio ids (file names without extension), sorted.
    pub ids: Vec<String>,
    /// Score table of each id.
    pub tables: Vec<&'a ScoreTable>,
    /// Class names (score columns).
    pub classes: Vec<String>,
    /// `gt[file][class]`: reference events of that class in that file, in file order.
    pub gt: Vec<Vec<Vec<Span>>>,
}

/// The audio id sed_scores_eval derives from a file name: the name without its extension.
pub fn audio_id(file: &str) -> &str {
    file.rsplit_once('.').map(|(a, _)| a).unwrap_or(file)
}

impl<'a> ScoredSet<'a> {
    /// Aligns score tables (keyed by audio id) with reference events. With `strict`,
    /// refuses what sed_scores_eval's event metrics refuse: connected or overlapping
    /// reference events of one class, and classes without reference events.
    pub fn new(
        tables: &'a BTreeMap<String, ScoreTable>,
        reference: &[Event],
        strict: bool,
    ) -> Result<Self> {
        let Some(first) = tables.values().next() else {
            return Err(MetricsError::InvalidValue {
                what: "score tables".into(),
                message: "none given".into(),
            });
        };
        let classes = first.classes.clone();
        for (id, t) in tables {
            t.validate().map_err(|e| MetricsError::InvalidValue {
                what: format!("score table `{id}`"),
                message: e.to_string(),
            })?;
            if t.classes != classes {
                return Err(MetricsError::InvalidValue {
                    what: format!("score table `{id}`"),
                    message: format!("classes {:?} differ from {:?}", t.classes, classes),
                });
            }
        }
        let ids: Vec<String> = tables.keys().cloned().collect();
        let mut gt = vec![vec![Vec::new(); classes.len()]; ids.len()];
        for e in reference {
            let id = audio_id(&e.file);
            let Ok(f) = ids.binary_search_by(|k| k.as_str().cmp(id)) else {
                return Err(MetricsError::ScoresUndefined(format!(
                    "reference file `{}` has no score table `{id}.tsv`",
                    e.file
                )));
            };
            let Some(c) = classes.iter().position(|c| *c == e.label) else {
                return Err(MetricsError::ScoresUndefined(format!(
                    "reference label `{}` is not a score column {:?}",
                    e.label, classes
                )));
            };
            gt[f][c].push((e.onset, e.offset));
        }
        if strict {
            for (f, per_class) in gt.iter().enumerate() {
                for (c, spans) in per_class.iter().enumerate() {
                    let mut s = spans.clone();
                    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
                    let mut current = -1e6;
                    for (on, off) in s {
                        if on <= current {
                            return Err(MetricsError::ScoresUndefined(format!(
                                "connected or overlapping `{}` reference events in `{}` (sed_scores_eval refuses them)",
                                classes[c], ids[f]
                            )));
                        }
                        current = off;
                    }
                }
            }
            for (c, name) in classes.iter().enumerate() {
                if gt.iter().all(|g| g[c].is_empty()) {
                    return Err(MetricsError::ScoresUndefined(format!(
                        "no reference events for class `{name}`"
                    )));
                }
            }
        }
        Ok(ScoredSet {
            ids,
            tables: tables.values().collect(),
            classes,
            gt,
        })
    }

    /// Reference event count and total duration of class `c` (sed_scores_eval's order).
    pub fn count_and_duration(&self, c: usize) -> (f64, f64) {
        let mut n = 0.0;
        let mut d = 0.0;
        for g in &self.gt {
            for (on, off) in &g[c] {
                n += 1.0;
                d += off - on;
            }
        }
        (n, d)
    }
}

/// Detections of one class at decision "score >= `threshold`" (sed_scores_eval's
/// `onset_offset_curves` for one candidate).
pub fn detections(scores: &[f64], timestamps: &[f64], threshold: f64) -> Vec<Span> {
    let mut out = Vec::new();
    let mut on: Option<f64> = None;
    for (t, &s) in scores.iter().enumerate() {
        match on {
            Some(o) => {
                if s < threshold || s == f64::NEG_INFINITY {
                    out.push((o, timestamps[t]));
                    on = None;
                }
            }
            None => {
                if s >= threshold && s > f64::NEG_INFINITY {
                    on = Some(timestamps[t]);
                }
            }
        }
    }
    if let Some(o) = on {
        out.push((o, timestamps[scores.len()]));
    }
    out
}

/// Sorted distinct values.
pub fn unique_sorted(values: &[f64]) -> Vec<f64> {
    let mut u = values.to_vec();
    u.sort_by(|a, b| a.total_cmp(b));
    u.dedup_by(|a, b| a == b);
    u
}

/// Per-candidate statistics -> deltas at the candidates where any statistic changes.
pub fn deltas_over_candidates(
    scores: &[f64],
    timestamps: &[f64],
    stat: impl Fn(&[Span]) -> Vec<f64>,
) -> Vec<(f64, Vec<f64>)> {
    let cands = unique_sorted(scores);
    let stats: Vec<Vec<f64>> = cands
        .iter()
        .map(|&c| stat(&detections(scores, timestamps, c)))
        .collect();
    let mut out = Vec::new();
    for k in 0..cands.len() {
        let d: Vec<f64> = match stats.get(k + 1) {
            Some(next) => stats[k].iter().zip(next).map(|(a, b)| a - b).collect(),
            None => stats[k].clone(),
        };
        if d.iter().map(|x| x.abs()).sum::<f64>() > 0.0 {
            out.push((cands[k], d));
        }
    }
    out
}

/// sed_scores_eval's shortcut for a file without relevant reference events: the number
/// of detections changes by +1 / -1 at local score maxima / minima. `fps_index` is the
/// position of the false-positive count among `n_stats` statistics.
pub fn onset_deltas(scores: &[f64], n_stats: usize, fps_index: usize) -> Vec<(f64, Vec<f64>)> {
    let n = scores.len();
    let mut out = Vec::new();
    for i in 0..n {
        let s = scores[i];
        let prev = if i == 0 {
            f64::NEG_INFINITY
        } else {
            scores[i - 1]
        };
        let next = if i + 1 == n {
            f64::NEG_INFINITY
        } else {
            scores[i + 1]
        };
        let d = ((s > prev) as i32 - (next > s) as i32) * (s > f64::NEG_INFINITY) as i32;
        if d.abs() > 0 {
            let mut v = vec![0.0; n_stats];
            v[fps_index] = d as f64;
            out.push((s, v));
        }
    }
    out
}

/// (F1, precision, recall).
pub type Fpr = (f64, f64, f64);

/// Statistics of one class as a function of the decision threshold.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Change-point scores, ascending, ending with `+inf`.
    pub scores: Vec<f64>,
    /// `stats[j][k]`: statistic `k` for the decision "score >= `scores[j]`".
    pub stats: Vec<Vec<f64>>,
}

impl Curve {
    /// Sums the deltas of all files into one curve.
    pub fn accumulate(mut deltas: Vec<(f64, Vec<f64>)>, n_stats: usize) -> Curve {
        deltas.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut scores: Vec<f64> = Vec::new();
        let mut sums: Vec<Vec<f64>> = Vec::new();
        for (s, d) in deltas {
            if scores.last() != Some(&s) {
                scores.push(s);
                sums.push(vec![0.0; n_stats]);
            }
            let last = sums.last_mut().expect("pushed above");
            for (a, b) in last.iter_mut().zip(&d) {
                *a += b;
            }
        }
        let n = scores.len();
        let mut stats = vec![vec![0.0; n_stats]; n + 1];
        for j in (0..n).rev() {
            for k in 0..n_stats {
                stats[j][k] = stats[j + 1][k] + sums[j][k];
            }
        }
        scores.push(f64::INFINITY);
        Curve { scores, stats }
    }

    /// Index of the point used for a fixed threshold: the first score > `threshold`.
    pub fn index_for_threshold(&self, threshold: f64) -> usize {
        self.scores
            .iter()
            .position(|&s| s > threshold)
            .unwrap_or(self.scores.len() - 1)
    }
}

/// sed_scores_eval's F-score: `2pr / max(p + r, 1e-15)`.
pub fn fscore(p: f64, r: f64) -> f64 {
    2.0 * p * r / (p + r).max(1e-15)
}

/// Precision and recall at point `j` from tps / fps (precision 1 where nothing is detected).
pub fn precision_recall(tps: f64, fps: f64, n_ref: f64) -> (f64, f64) {
    let p = if tps + fps == 0.0 {
        1.0
    } else {
        tps / (tps + fps).max(1.0)
    };
    (p, tps / n_ref)
}

/// F1 / precision / recall of each class at a chosen point, plus micro and macro
/// averages as sed_scores_eval computes them. `tps`, `fps`, `n_ref` are per class.
pub fn averages(tps: &[f64], fps: &[f64], n_ref: &[f64]) -> (Vec<Fpr>, Fpr, Fpr) {
    let per: Vec<(f64, f64, f64)> = tps
        .iter()
        .zip(fps)
        .zip(n_ref)
        .map(|((&t, &f), &n)| {
            let (p, r) = precision_recall(t, f, n);
            (fscore(p, r), p, r)
        })
        .collect();
    let col = |i: usize| -> Vec<f64> { per.iter().map(|x| [x.0, x.1, x.2][i]).collect() };
    let macro_ = (np_mean(&col(0)), np_mean(&col(1)), np_mean(&col(2)));
    let t: f64 = tps.iter().sum();
    let f: f64 = fps.iter().sum();
    let n: f64 = n_ref.iter().sum();
    let p = t / (t + f).max(1.0);
    let r = t / n.max(1.0);
    (per, macro_, (fscore(p, r), p, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detections_follow_the_reference_doc_example() {
        // sed_scores_eval's onset_offset_curves doctest
        let y = [0.4, 1.0, 0.6, 0.6, 1.0, 1.0, 0.4];
        let ts: Vec<f64> = (0..=7).map(|i| i as f64 * 0.2).collect();
        assert_eq!(detections(&y, &ts, 0.4).len(), 1);
        let d = detections(&y, &ts, 1.0);
        assert_eq!(d.len(), 2);
        assert!((d[0].0 - 0.2).abs() < 1e-12 && (d[0].1 - 0.4).abs() < 1e-12);
        assert!((d[1].0 - 0.8).abs() < 1e-12 && (d[1].1 - 1.2).abs() < 1e-12);
    }

    #[test]
    fn accumulated_curve_counts_from_the_top() {
        let c = Curve::accumulate(
            vec![(0.5, vec![1.0]), (0.2, vec![2.0]), (0.5, vec![1.0])],
            1,
        );
        assert_eq!(c.scores, vec![0.2, 0.5, f64::INFINITY]);
        assert_eq!(c.stats, vec![vec![4.0], vec![2.0], vec![0.0]]);
        assert_eq!(c.index_for_threshold(0.5), 2);
        assert_eq!(c.index_for_threshold(0.3), 1);
    }
}
