//! `hark tune`: per-class post-processing chosen on a validation set. For each class on
//! its own, a grid of thresholds (on, with off = on − 0.2 floored at 0.05), median
//! windows and minimum durations is searched for the best class-wise event-based F1
//! (sed_eval, collar 0.2 s), and the winners are stored in the model file as per-class
//! overrides.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use super::trainer::{detect_events, predict_frames};
use super::Result;
use crate::detect::postprocess::{ClassOverride, ClassParams, PostprocessConfig};
use crate::metrics::event_based::{event_based, EventBasedOptions};
use crate::model::Model;

/// The search grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuneConfig {
    /// Candidate `on` thresholds.
    pub thresholds: Vec<f32>,
    /// Candidate median windows, frames (odd).
    pub median_frames: Vec<usize>,
    /// Candidate minimum durations, seconds.
    pub min_durations_s: Vec<f32>,
}

impl Default for TuneConfig {
    fn default() -> Self {
        Self {
            thresholds: vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
            median_frames: vec![1, 5, 9, 15, 25],
            min_durations_s: vec![0.0, 0.1, 0.25, 0.5],
        }
    }
}

/// The result of tuning one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassTuning {
    /// Chosen parameters.
    pub params: ClassParams,
    /// Class-wise event F1 before tuning (the model's current parameters).
    pub f1_before: f64,
    /// Class-wise event F1 with the chosen parameters.
    pub f1_after: f64,
}

/// What `tune` chose, per class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuneReport {
    /// By class label.
    pub classes: BTreeMap<String, ClassTuning>,
}

fn class_f1(data: &Dataset, preds: &[Vec<Vec<f32>>], c: usize, params: ClassParams) -> Result<f64> {
    let label = data.classes[c].clone();
    let pp = PostprocessConfig {
        default: params,
        per_class: BTreeMap::new(),
    };
    let labels = vec![label.clone()];
    let mut est = Vec::new();
    let mut files = Vec::new();
    for (clip, frames) in data.clips.iter().zip(preds) {
        if clip.strong.is_none() {
            continue;
        }
        files.push(clip.file.clone());
        let col: Vec<Vec<f32>> = frames.iter().map(|r| vec![r[c]]).collect();
        est.extend(detect_events(
            &clip.file,
            &col,
            &labels,
            &pp,
            data.features.frame_rate(),
        )?);
    }
    let reference: Vec<_> = data
        .reference_events()
        .into_iter()
        .filter(|e| e.label == label)
        .collect();
    let r = event_based(
        &reference,
        &est,
        &files,
        &labels,
        &EventBasedOptions::default(),
    )?;
    let f = r.micro.f_measure;
    Ok(if f.is_finite() { f } else { 0.0 })
}

/// Tunes `model`'s per-class post-processing on `data` (clips with strong labels) and
/// stores the result in the model's metadata.
pub fn tune(model: &mut Model, data: &Dataset, grid: &TuneConfig) -> Result<TuneReport> {
    if !data.clips.iter().any(|c| c.strong.is_some()) {
        return Err(super::TrainError::Empty {
            what: "tuning set".into(),
            reason: "no clip has strong labels (onset/offset), so event F1 cannot be computed"
                .into(),
        });
    }
    let preds: Vec<Vec<Vec<f32>>> = predict_frames(model.net(), data, 16)?
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    let mut meta = model.meta().clone();
    let current = meta
        .postprocess
        .resolve(&meta.classes)
        .map_err(|e| super::invalid("postprocess", e, "valid post-processing"))?;
    let mut report = TuneReport {
        classes: BTreeMap::new(),
    };
    for (c, &cur) in current.iter().enumerate() {
        let before = class_f1(data, &preds, c, cur)?;
        let mut best = (before, cur);
        for &on in &grid.thresholds {
            for &med in &grid.median_frames {
                for &dur in &grid.min_durations_s {
                    let p = ClassParams {
                        on,
                        off: (on - 0.2).max(0.05).min(on),
                        median_frames: med.max(1) | 1,
                        min_duration_s: dur,
                        ..cur
                    };
                    let f = class_f1(data, &preds, c, p)?;
                    if f > best.0 + 1e-12 {
                        best = (f, p);
                    }
                }
            }
        }
        let p = best.1;
        meta.postprocess.per_class.insert(
            data.classes[c].clone(),
            ClassOverride {
                enabled: Some(p.enabled),
                on: Some(p.on),
                off: Some(p.off),
                median_frames: Some(p.median_frames),
                min_duration_s: Some(p.min_duration_s),
                merge_gap_s: None,
                hangover_s: None,
            },
        );
        tracing::info!(class = %data.classes[c], f1_before = before, f1_after = best.0, on = p.on, median = p.median_frames, min_duration_s = p.min_duration_s, "tuned");
        report.classes.insert(
            data.classes[c].clone(),
            ClassTuning {
                params: p,
                f1_before: before,
                f1_after: best.0,
            },
        );
    }
    let tensors = model
        .tensors()
        .iter()
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    *model = Model::from_tensors(meta, tensors)?;
    Ok(report)
}
