//! Result types shared by the metrics: sed_eval-style micro / macro / class-wise
//! blocks and F1/precision/recall triples. NaN means undefined (written as `null`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::numeric::{f_measure, np_nanmean, precision, rate, recall};

/// Serialises an f64, writing NaN and infinities as `null`.
pub fn ser_f64<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

/// Overall (micro-averaged) sed_eval metrics.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MicroMetrics {
    /// F1 (NaN when precision or recall is undefined).
    #[serde(serialize_with = "ser_f64")]
    pub f_measure: f64,
    /// Precision (NaN when nothing was output).
    #[serde(serialize_with = "ser_f64")]
    pub precision: f64,
    /// Recall (NaN when there is no reference).
    #[serde(serialize_with = "ser_f64")]
    pub recall: f64,
    /// (S + D + I) / N.
    #[serde(serialize_with = "ser_f64")]
    pub error_rate: f64,
    /// S / N.
    #[serde(serialize_with = "ser_f64")]
    pub substitution_rate: f64,
    /// D / N.
    #[serde(serialize_with = "ser_f64")]
    pub deletion_rate: f64,
    /// I / N.
    #[serde(serialize_with = "ser_f64")]
    pub insertion_rate: f64,
}

/// Class-wise averaged (macro) sed_eval metrics: NaN-ignoring means over classes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MacroMetrics {
    /// Mean class F1.
    #[serde(serialize_with = "ser_f64")]
    pub f_measure: f64,
    /// Mean class precision.
    #[serde(serialize_with = "ser_f64")]
    pub precision: f64,
    /// Mean class recall.
    #[serde(serialize_with = "ser_f64")]
    pub recall: f64,
    /// Mean class error rate.
    #[serde(serialize_with = "ser_f64")]
    pub error_rate: f64,
    /// Mean class deletion rate.
    #[serde(serialize_with = "ser_f64")]
    pub deletion_rate: f64,
    /// Mean class insertion rate.
    #[serde(serialize_with = "ser_f64")]
    pub insertion_rate: f64,
}

/// sed_eval metrics of one class (ER = (D + I) / N).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClassMetrics {
    /// F1.
    #[serde(serialize_with = "ser_f64")]
    pub f_measure: f64,
    /// Precision.
    #[serde(serialize_with = "ser_f64")]
    pub precision: f64,
    /// Recall.
    #[serde(serialize_with = "ser_f64")]
    pub recall: f64,
    /// (D + I) / N.
    #[serde(serialize_with = "ser_f64")]
    pub error_rate: f64,
    /// D / N.
    #[serde(serialize_with = "ser_f64")]
    pub deletion_rate: f64,
    /// I / N.
    #[serde(serialize_with = "ser_f64")]
    pub insertion_rate: f64,
    /// Reference events (event-based) or active reference segments (segment-based).
    #[serde(serialize_with = "ser_f64")]
    pub n_ref: f64,
    /// System events or active system segments.
    #[serde(serialize_with = "ser_f64")]
    pub n_sys: f64,
}

/// Micro, macro and class-wise results of sed_eval's event- or segment-based metrics.
#[derive(Debug, Clone, Serialize)]
pub struct SedEvalReport {
    /// Overall metrics.
    pub micro: MicroMetrics,
    /// Class-wise averages.
    #[serde(rename = "macro")]
    pub macro_: MacroMetrics,
    /// Per class, sorted by label.
    pub class_wise: BTreeMap<String, ClassMetrics>,
}

/// Raw counts of one class, as sed_eval accumulates them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClassCounts {
    /// Reference events / segments.
    pub n_ref: f64,
    /// System events / segments.
    pub n_sys: f64,
    /// True positives.
    pub n_tp: f64,
    /// False positives.
    pub n_fp: f64,
    /// False negatives.
    pub n_fn: f64,
}

/// Raw overall counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OverallCounts {
    /// Reference events / segments.
    pub n_ref: f64,
    /// System events / segments.
    pub n_sys: f64,
    /// True positives.
    pub n_tp: f64,
    /// Substitutions.
    pub s: f64,
    /// Deletions.
    pub d: f64,
    /// Insertions.
    pub i: f64,
}

impl SedEvalReport {
    /// Builds the report from accumulated counts (`labels` and `classes` in the same order).
    pub fn from_counts(
        overall: &OverallCounts,
        labels: &[String],
        classes: &[ClassCounts],
    ) -> Self {
        let p = precision(overall.n_tp, overall.n_sys);
        let r = recall(overall.n_tp, overall.n_ref);
        let sr = rate(overall.s, overall.n_ref);
        let dr = rate(overall.d, overall.n_ref);
        let ir = rate(overall.i, overall.n_ref);
        let micro = MicroMetrics {
            f_measure: f_measure(p, r),
            precision: p,
            recall: r,
            error_rate: sr + dr + ir,
            substitution_rate: sr,
            deletion_rate: dr,
            insertion_rate: ir,
        };
        let mut class_wise = BTreeMap::new();
        let mut cols: [Vec<f64>; 6] = Default::default();
        for (label, c) in labels.iter().zip(classes) {
            let p = precision(c.n_tp, c.n_sys);
            let r = recall(c.n_tp, c.n_ref);
            let dr = rate(c.n_fn, c.n_ref);
            let ir = rate(c.n_fp, c.n_ref);
            let m = ClassMetrics {
                f_measure: f_measure(p, r),
                precision: p,
                recall: r,
                error_rate: 0.0 + dr + ir,
                deletion_rate: dr,
                insertion_rate: ir,
                n_ref: c.n_ref,
                n_sys: c.n_sys,
            };
            for (col, v) in
                cols.iter_mut()
                    .zip([m.f_measure, m.precision, m.recall, m.error_rate, dr, ir])
            {
                col.push(v);
            }
            class_wise.insert(label.clone(), m);
        }
        let macro_ = MacroMetrics {
            f_measure: np_nanmean(&cols[0]),
            precision: np_nanmean(&cols[1]),
            recall: np_nanmean(&cols[2]),
            error_rate: np_nanmean(&cols[3]),
            deletion_rate: np_nanmean(&cols[4]),
            insertion_rate: np_nanmean(&cols[5]),
        };
        SedEvalReport {
            micro,
            macro_,
            class_wise,
        }
    }
}

/// F1, precision and recall.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Prf {
    /// F1.
    #[serde(serialize_with = "ser_f64")]
    pub f_measure: f64,
    /// Precision.
    #[serde(serialize_with = "ser_f64")]
    pub precision: f64,
    /// Recall.
    #[serde(serialize_with = "ser_f64")]
    pub recall: f64,
}

/// Micro, macro and class-wise F1/P/R (tagging, collar- and intersection-based F1).
#[derive(Debug, Clone, Serialize)]
pub struct F1Block {
    /// Pooled over classes.
    pub micro: Prf,
    /// Mean over classes.
    #[serde(rename = "macro")]
    pub macro_: Prf,
    /// Per class, sorted by label.
    pub class_wise: BTreeMap<String, Prf>,
}
