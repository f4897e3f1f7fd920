//! Sound event detection metrics, computed exactly as the reference tools do, so that
//! hark's numbers can be compared with published results:
//!
//! - [`event_based`] and [`segment_based`]: sed_eval 0.2.1 (micro/macro/class-wise
//!   F1, precision, recall, error rate with S/D/I);
//! - [`tagging`]: sed_eval's clip-level tagging F1/P/R;
//! - [`collar_based`], [`psds`] (intersection-based F1 and PSDS) and [`fimo`]
//!   (segment-based F1 with optimum per-class thresholds): sed_scores_eval 0.0.4 on
//!   score tables, computed over all thresholds;
//! - [`auc`]: clip-level ROC AUC and average precision (scikit-learn).
//!
//! Everything works on in-memory [`Event`] lists and [`ScoreTable`]s (the trainer uses
//! it for validation and threshold tuning); [`tsv`] reads the files `hark eval` takes
//! and [`eval`] runs the whole set and builds the JSON report.

pub mod auc;
pub mod collar_based;
pub mod error;
pub mod eval;
pub mod event_based;
pub mod fimo;
pub mod matching;
pub mod numeric;
pub mod psds;
pub mod report;
pub mod scores;
pub mod segment_based;
pub mod tagging;
pub mod tsv;

pub use error::{MetricsError, Result};
pub use eval::{evaluate, EvalInputs, EvalOptions, EvalReport};
pub use report::{ClassMetrics, F1Block, MacroMetrics, MicroMetrics, Prf, SedEvalReport};

/// One annotated or detected event of one audio file (a DCASE TSV row).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Audio file name as written in the TSV (e.g. `clip_01.wav`).
    pub file: String,
    /// Onset, seconds from the start of the file.
    pub onset: f64,
    /// Offset, seconds from the start of the file (>= onset).
    pub offset: f64,
    /// Class label.
    pub label: String,
}

impl Event {
    /// A new event.
    pub fn new(file: impl Into<String>, onset: f64, offset: f64, label: impl Into<String>) -> Self {
        Event {
            file: file.into(),
            onset,
            offset,
            label: label.into(),
        }
    }
}

/// Frame-level class scores of one audio file (sed_scores_eval's score table).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreTable {
    /// Frame boundaries in seconds: frame `i` spans `timestamps[i]..timestamps[i + 1]`
    /// (one more entry than frames, strictly increasing).
    pub timestamps: Vec<f64>,
    /// Class names, one per score column.
    pub classes: Vec<String>,
    /// `scores[frame][class]`.
    pub scores: Vec<Vec<f64>>,
}

impl ScoreTable {
    /// Checks the shape: `timestamps` strictly increasing with one more entry than
    /// frames, every row as long as `classes`, no NaN.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| {
            Err(MetricsError::InvalidValue {
                what: "score table".into(),
                message: m,
            })
        };
        if self.scores.is_empty() || self.timestamps.len() != self.scores.len() + 1 {
            return bad(format!(
                "{} frames need {} timestamps, got {}",
                self.scores.len(),
                self.scores.len() + 1,
                self.timestamps.len()
            ));
        }
        if self.timestamps.windows(2).any(|w| w[1] <= w[0]) {
            return bad("timestamps must be strictly increasing".into());
        }
        for (i, row) in self.scores.iter().enumerate() {
            if row.len() != self.classes.len() {
                return bad(format!(
                    "frame {i} has {} scores for {} classes",
                    row.len(),
                    self.classes.len()
                ));
            }
            if row.iter().any(|v| v.is_nan()) {
                return bad(format!("frame {i} has a NaN score"));
            }
        }
        Ok(())
    }

    /// Scores of one class over all frames.
    pub fn column(&self, c: usize) -> Vec<f64> {
        self.scores.iter().map(|r| r[c]).collect()
    }
}

/// The sorted union of the labels of two event lists (sed_eval's `unique_event_labels`).
pub fn unique_labels(reference: &[Event], estimate: &[Event]) -> Vec<String> {
    let mut l: Vec<String> = reference
        .iter()
        .chain(estimate)
        .map(|e| e.label.clone())
        .collect();
    l.sort();
    l.dedup();
    l
}
