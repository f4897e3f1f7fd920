//! The whole `hark eval` computation: every metric over one reference / estimate pair
//! (and optional durations and score tables), gathered into one report that renders
//! as JSON (NaN as `null`) or as human-readable tables.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::auc::{clip_metrics, ClipReport};
use super::collar_based::{collar_fscore, Collars};
use super::event_based::{event_based, EventBasedOptions};
use super::fimo::{fimo, FimoReport};
use super::psds::{intersection_fscore, psds, PsdsParams};
use super::report::{ser_f64, F1Block, SedEvalReport};
use super::segment_based::segment_based;
use super::tagging::{tagging, TaggingReport};
use super::{unique_labels, Event, MetricsError, Result, ScoreTable};

/// What to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EvalInputs {
    /// Reference events.
    pub reference: Vec<Event>,
    /// Estimated events.
    pub estimate: Vec<Event>,
    /// Files listed without events (in the reference or estimate).
    pub empty_files: Vec<String>,
    /// File durations, seconds, keyed by file name as in the TSVs. When given, exactly
    /// these files are evaluated.
    pub durations: Option<BTreeMap<String, f64>>,
    /// Score tables keyed by audio id (file name without extension).
    pub scores: Option<BTreeMap<String, ScoreTable>>,
}

/// How to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Event-based matching parameters (onset-only via `evaluate_offset = false`).
    pub event: EventBasedOptions,
    /// Segment length of the segment-based metrics and FIMO, seconds.
    pub segment_length: f64,
    /// Decision threshold of the collar- and intersection-based F1 on score tables.
    pub threshold: f64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            event: EventBasedOptions::default(),
            segment_length: 1.0,
            threshold: 0.5,
        }
    }
}

/// Collar- or intersection-based F1 at a fixed threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdF1 {
    /// The decision threshold (scores above it are positive).
    pub threshold: f64,
    /// The scores.
    #[serde(flatten)]
    pub block: F1Block,
}

/// Every metric of `hark eval`. Score-based entries are `None` without score tables or
/// where the reference tool refuses the input (see `warnings`).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// sed_eval event-based metrics.
    pub event_based: SedEvalReport,
    /// sed_eval segment-based metrics.
    pub segment_based: SedEvalReport,
    /// sed_eval clip tagging metrics.
    pub tagging: TaggingReport,
    /// PSDS scenario 1.
    #[serde(serialize_with = "ser_opt")]
    pub psds1: Option<f64>,
    /// PSDS scenario 2.
    #[serde(serialize_with = "ser_opt")]
    pub psds2: Option<f64>,
    /// Collar-based F1 (collars 0.2 s, offset 0.2 × length) at the threshold.
    pub collar_based: Option<ThresholdF1>,
    /// Intersection-based F1 (dtc = gtc = 0.5) at the threshold.
    pub intersection_based: Option<ThresholdF1>,
    /// Segment-based F1 with optimum per-class thresholds (FIMO = macro F1).
    pub fimo: Option<FimoReport>,
    /// Clip-level ROC AUC and average precision.
    pub clip: Option<ClipReport>,
    /// Why score-based metrics are missing, if they are.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

fn ser_opt<S: serde::Serializer>(v: &Option<f64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(x) => ser_f64(x, s),
        None => s.serialize_none(),
    }
}

/// The files evaluated: those of `durations` when given, else every file named in the
/// reference, the estimate or the empty-file lists (sorted). Errors when an event's
/// file is missing from `durations`.
pub fn evaluated_files(inputs: &EvalInputs) -> Result<Vec<String>> {
    match &inputs.durations {
        Some(d) => {
            for e in inputs.reference.iter().chain(&inputs.estimate) {
                if !d.contains_key(&e.file) {
                    return Err(MetricsError::InvalidValue {
                        what: "durations".into(),
                        message: format!("file `{}` has events but no duration", e.file),
                    });
                }
            }
            Ok(d.keys().cloned().collect())
        }
        None => {
            let mut f: Vec<String> = inputs
                .reference
                .iter()
                .chain(&inputs.estimate)
                .map(|e| e.file.clone())
                .chain(inputs.empty_files.iter().cloned())
                .collect();
            f.sort();
            f.dedup();
            Ok(f)
        }
    }
}

/// Computes every metric. Score-based failures of the kind the reference tool refuses
/// become `None` plus a warning; other errors are returned.
pub fn evaluate(inputs: &EvalInputs, opts: &EvalOptions) -> Result<EvalReport> {
    let files = evaluated_files(inputs)?;
    let labels = unique_labels(&inputs.reference, &inputs.estimate);
    let (r, e) = (&inputs.reference, &inputs.estimate);
    let mut report = EvalReport {
        event_based: event_based(r, e, &files, &labels, &opts.event)?,
        segment_based: segment_based(
            r,
            e,
            &files,
            &labels,
            opts.segment_length,
            inputs.durations.as_ref(),
        )?,
        tagging: tagging(r, e, &files, &labels),
        psds1: None,
        psds2: None,
        collar_based: None,
        intersection_based: None,
        fimo: None,
        clip: None,
        warnings: Vec::new(),
    };
    let Some(tables) = &inputs.scores else {
        return Ok(report);
    };
    let durations: BTreeMap<String, f64> = match &inputs.durations {
        Some(d) => d
            .iter()
            .map(|(k, v)| (super::scores::audio_id(k).to_string(), *v))
            .collect(),
        None => tables
            .iter()
            .map(|(k, t)| (k.clone(), t.timestamps[t.timestamps.len() - 1]))
            .collect(),
    };
    let seg_durations = inputs.durations.as_ref().map(|_| &durations);
    let warn = |r: &mut EvalReport, e: MetricsError| -> Result<()> {
        match e {
            MetricsError::ScoresUndefined(m) => {
                if !r.warnings.contains(&m) {
                    r.warnings.push(m);
                }
                Ok(())
            }
            other => Err(other),
        }
    };
    match psds(tables, r, &durations, &PsdsParams::PSDS1) {
        Ok(v) => report.psds1 = Some(v),
        Err(x) => warn(&mut report, x)?,
    }
    match psds(tables, r, &durations, &PsdsParams::PSDS2) {
        Ok(v) => report.psds2 = Some(v),
        Err(x) => warn(&mut report, x)?,
    }
    match collar_fscore(tables, r, opts.threshold, &Collars::default()) {
        Ok(b) => {
            report.collar_based = Some(ThresholdF1 {
                threshold: opts.threshold,
                block: b,
            })
        }
        Err(x) => warn(&mut report, x)?,
    }
    match intersection_fscore(tables, r, opts.threshold, 0.5, 0.5) {
        Ok(b) => {
            report.intersection_based = Some(ThresholdF1 {
                threshold: opts.threshold,
                block: b,
            })
        }
        Err(x) => warn(&mut report, x)?,
    }
    match fimo(tables, r, seg_durations, opts.segment_length) {
        Ok(b) => report.fimo = Some(b),
        Err(x) => warn(&mut report, x)?,
    }
    match clip_metrics(tables, r) {
        Ok(b) => report.clip = Some(b),
        Err(x) => warn(&mut report, x)?,
    }
    Ok(report)
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:6.2} %", v * 100.0)
    } else {
        "     - ".into()
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:7.4}")
    } else {
        "      -".into()
    }
}

fn sed_table(out: &mut String, title: &str, r: &SedEvalReport) {
    let m = &r.micro;
    let _ = writeln!(out, "{title}");
    let _ = writeln!(
        out,
        "  micro  F1 {}  P {}  R {}  ER {}  (S {}  D {}  I {})",
        pct(m.f_measure),
        pct(m.precision),
        pct(m.recall),
        num(m.error_rate),
        num(m.substitution_rate),
        num(m.deletion_rate),
        num(m.insertion_rate)
    );
    let a = &r.macro_;
    let _ = writeln!(
        out,
        "  macro  F1 {}  P {}  R {}  ER {}  (D {}  I {})",
        pct(a.f_measure),
        pct(a.precision),
        pct(a.recall),
        num(a.error_rate),
        num(a.deletion_rate),
        num(a.insertion_rate)
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>6} {:>6} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}",
        "class", "Nref", "Nsys", "F1", "P", "R", "ER", "D", "I"
    );
    for (label, c) in &r.class_wise {
        let _ = writeln!(
            out,
            "  {:<16} {:>6} {:>6} {:>9} {:>9} {:>9} {} {} {}",
            label,
            c.n_ref,
            c.n_sys,
            pct(c.f_measure),
            pct(c.precision),
            pct(c.recall),
            num(c.error_rate),
            num(c.deletion_rate),
            num(c.insertion_rate)
        );
    }
    out.push('\n');
}

impl EvalReport {
    /// One JSON object (NaN written as `null`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Human-readable tables.
    pub fn to_text(&self, onset_only: bool) -> String {
        let mut out = String::new();
        let title = if onset_only {
            "Event-based (onset only, collar 0.2 s)"
        } else {
            "Event-based (collar 0.2 s, offset max(0.2 s, 0.2 x length))"
        };
        sed_table(&mut out, title, &self.event_based);
        sed_table(&mut out, "Segment-based", &self.segment_based);
        let t = &self.tagging;
        let _ = writeln!(out, "Tagging");
        let _ = writeln!(
            out,
            "  micro  F1 {}  P {}  R {}",
            pct(t.micro.f_measure),
            pct(t.micro.precision),
            pct(t.micro.recall)
        );
        let _ = writeln!(
            out,
            "  macro  F1 {}  P {}  R {}\n",
            pct(t.macro_.f_measure),
            pct(t.macro_.precision),
            pct(t.macro_.recall)
        );
        let opt = |v: Option<f64>| v.map(num).unwrap_or_else(|| "      -".into());
        if self.psds1.is_some()
            || self.psds2.is_some()
            || self.fimo.is_some()
            || self.clip.is_some()
            || !self.warnings.is_empty()
        {
            let _ = writeln!(out, "Score-based");
            let _ = writeln!(
                out,
                "  PSDS1 {}   PSDS2 {}",
                opt(self.psds1),
                opt(self.psds2)
            );
            if let Some(c) = &self.collar_based {
                let _ = writeln!(
                    out,
                    "  collar-based F1 @ {}: micro {}  macro {}",
                    c.threshold,
                    pct(c.block.micro.f_measure),
                    pct(c.block.macro_.f_measure)
                );
            }
            if let Some(c) = &self.intersection_based {
                let _ = writeln!(
                    out,
                    "  intersection F1 @ {}: micro {}  macro {}",
                    c.threshold,
                    pct(c.block.micro.f_measure),
                    pct(c.block.macro_.f_measure)
                );
            }
            if let Some(f) = &self.fimo {
                let _ = writeln!(
                    out,
                    "  FIMO (segment F1, best per-class threshold): {}",
                    pct(f.macro_.f_measure)
                );
            }
            if let Some(c) = &self.clip {
                let _ = writeln!(
                    out,
                    "  clip ROC AUC macro {}  micro {}   average precision macro {}  micro {}",
                    num(c.roc_auc_macro),
                    num(c.roc_auc_micro),
                    num(c.average_precision_macro),
                    num(c.average_precision_micro)
                );
            }
            for w in &self.warnings {
                let _ = writeln!(out, "  note: {w}");
            }
        }
        out
    }
}
