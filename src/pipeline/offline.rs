//! Offline detection of whole files (`hark detect`), on the same stages as the daemon.

use std::path::Path;

use crate::audio::{self, InputSpec, OpenOptions, ReadOutcome, SourceCounters};
use crate::detect::event::{DetectedEvent, Event};
use crate::detect::postprocess::PostprocessConfig;
use crate::features::FeatureConfig;
use crate::model::Model;

use super::*;

/// Result of detecting one file offline.
#[derive(Debug, Clone)]
pub struct FileDetection {
    /// Events, ordered by onset.
    pub events: Vec<DetectedEvent>,
    /// Frame scores, row-major `(n_frames, n_classes)`, when asked for.
    pub scores: Vec<f32>,
    /// Number of frames.
    pub n_frames: usize,
    /// Seconds between frames.
    pub frame_period_s: f64,
    /// Non-finite samples replaced by zeros.
    pub nonfinite_samples: u64,
}

/// Offline detection of whole files (`hark detect`), reusing one model.
pub struct OfflineDetector {
    features: FeatureConfig,
    stage: DetectStage,
}

impl OfflineDetector {
    /// A detector over `model` with post-processing `pp`.
    pub fn new(model: Model, pp: &PostprocessConfig) -> Result<Self, PipelineError> {
        Self::with_options(model, pp, &StageOptions::default())
    }

    /// A detector with the given stage options (e.g. the streaming geometry of a
    /// config, so that `hark detect` gives the scores `hark run` would).
    pub fn with_options(
        model: Model,
        pp: &PostprocessConfig,
        opts: &StageOptions,
    ) -> Result<Self, PipelineError> {
        let features = model.meta().features.clone();
        Ok(Self {
            stage: DetectStage::with_options(model, pp, "offline".into(), opts)?,
            features,
        })
    }

    /// Runs the file at `path` through the pipeline. With `keep_scores`, the frame
    /// scores are returned too.
    pub fn detect_file(
        &mut self,
        path: &Path,
        keep_scores: bool,
    ) -> Result<FileDetection, PipelineError> {
        let mut source = audio::open(
            &InputSpec::File(path.to_path_buf()),
            &OpenOptions {
                realtime: false,
                ..OpenOptions::default()
            },
        )?;
        let mut fe = FeatureStage::new(source.sample_rate(), &self.features)?;
        let mut buf = vec![0.0f32; 16_384];
        let mut frames = Vec::with_capacity(1 << 16);
        let mut scores = Vec::new();
        let mut events = Vec::new();
        let mut collect = |o: StageOutput<'_>| match o {
            StageOutput::Scores { scores: s, .. } => {
                if keep_scores {
                    scores.extend_from_slice(s);
                }
            }
            StageOutput::Event(Event::Start { .. }) => {}
            StageOutput::Event(Event::Stop {
                label,
                t_start,
                t_end,
                peak,
                mean,
                ..
            }) => {
                events.push(DetectedEvent {
                    onset: t_start,
                    offset: t_end,
                    event_label: label,
                    peak,
                    mean,
                });
            }
        };
        let first_frame = self.stage.frames_done();
        loop {
            match source.read(&mut buf)? {
                ReadOutcome::Samples(n) => {
                    frames.clear();
                    fe.push(&buf[..n], &mut frames)?;
                    self.stage.push(&frames, &mut collect)?;
                }
                ReadOutcome::Idle => {}
                ReadOutcome::End => break,
            }
        }
        frames.clear();
        fe.finish(&mut frames)?;
        self.stage.push(&frames, &mut collect)?;
        self.stage.finish(&mut collect)?;
        let n_frames = (self.stage.frames_done() - first_frame) as usize;
        // The next file starts at frame 0 again.
        self.stage.next_frame = 0;
        self.stage.detector.reset_time();
        events.sort_by(|a, b| {
            a.onset
                .total_cmp(&b.onset)
                .then(a.event_label.cmp(&b.event_label))
        });
        Ok(FileDetection {
            events,
            scores,
            n_frames,
            frame_period_s: self.features.frame_period_s(),
            nonfinite_samples: SourceCounters::get(&source.counters().samples_nonfinite),
        })
    }
}
