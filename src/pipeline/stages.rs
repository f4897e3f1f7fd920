//! The two stages every mode runs: audio → log-mel ([`FeatureStage`]) and log-mel →
//! scores → events ([`DetectStage`]).

use crate::audio::resample::Resampler;
use crate::detect::event::Event;
use crate::detect::postprocess::{Detector, PostprocessConfig};
use crate::detect::streaming::{StreamingConfig, StreamingRunner};
use crate::features::{FeatureConfig, Frontend};
use crate::model::Model;

use super::*;

/// Audio at the source rate → log-mel frames at the model's settings, plus the
/// level of each frame's hop of audio in dBFS (for the energy gate and `loud`).
pub struct FeatureStage {
    resampler: Resampler,
    pub(super) frontend: Frontend,
    resampled: Vec<f32>,
    /// Samples per hop (one level per frame).
    hop: usize,
    /// Sum of squares and count of the current hop block.
    block_sumsq: f64,
    block_fill: usize,
    /// Levels of completed blocks not yet paired with a frame, dBFS.
    block_levels: std::collections::VecDeque<f32>,
}

/// Level of a mean square value in dBFS (0 dBFS = RMS 1.0), floored at −120.
fn level_dbfs(mean_square: f64) -> f32 {
    (10.0 * mean_square.max(1e-12).log10()) as f32
}

impl FeatureStage {
    /// A stage for a source at `source_rate` Hz and the model's feature settings.
    pub fn new(source_rate: u32, features: &FeatureConfig) -> Result<Self, PipelineError> {
        Ok(Self {
            resampler: Resampler::new(source_rate, features.sample_rate)?,
            frontend: Frontend::new(features)?,
            resampled: Vec::with_capacity(16_384),
            hop: features.hop_length,
            block_sumsq: 0.0,
            block_fill: 0,
            block_levels: std::collections::VecDeque::with_capacity(64),
        })
    }

    /// Appends the frames completed by `samples` to `frames`; returns how many.
    pub fn push(&mut self, samples: &[f32], frames: &mut Vec<f32>) -> Result<usize, PipelineError> {
        let mut levels = Vec::new();
        self.push_with_levels(samples, frames, &mut levels)
    }

    /// As [`FeatureStage::push`], also appending one level (dBFS of the frame's hop
    /// of audio, `[i·hop, (i+1)·hop)`) per frame to `levels`.
    pub fn push_with_levels(
        &mut self,
        samples: &[f32],
        frames: &mut Vec<f32>,
        levels: &mut Vec<f32>,
    ) -> Result<usize, PipelineError> {
        self.resampled.clear();
        self.resampler.process(samples, &mut self.resampled)?;
        self.measure();
        let n = self.frontend.push(&self.resampled, frames);
        self.pair_levels(n, levels);
        Ok(n)
    }

    /// End of input: flushes the resampler and the frontend.
    pub fn finish(&mut self, frames: &mut Vec<f32>) -> Result<usize, PipelineError> {
        let mut levels = Vec::new();
        self.finish_with_levels(frames, &mut levels)
    }

    /// As [`FeatureStage::finish`], with levels.
    pub fn finish_with_levels(
        &mut self,
        frames: &mut Vec<f32>,
        levels: &mut Vec<f32>,
    ) -> Result<usize, PipelineError> {
        self.resampled.clear();
        self.resampler.finish(&mut self.resampled)?;
        self.measure();
        if self.block_fill > 0 {
            let ms = self.block_sumsq / self.block_fill as f64;
            self.block_levels.push_back(level_dbfs(ms));
        }
        let n = self.frontend.push(&self.resampled, frames);
        let n = n + self.frontend.finish(frames);
        self.pair_levels(n, levels);
        self.block_levels.clear();
        self.block_sumsq = 0.0;
        self.block_fill = 0;
        Ok(n)
    }

    fn measure(&mut self) {
        for &x in &self.resampled {
            self.block_sumsq += f64::from(x) * f64::from(x);
            self.block_fill += 1;
            if self.block_fill == self.hop {
                let ms = self.block_sumsq / self.hop as f64;
                self.block_levels.push_back(level_dbfs(ms));
                self.block_sumsq = 0.0;
                self.block_fill = 0;
            }
        }
    }

    fn pair_levels(&mut self, n: usize, levels: &mut Vec<f32>) {
        for _ in 0..n {
            let l = self.block_levels.pop_front().unwrap_or_else(|| {
                if self.block_fill > 0 {
                    level_dbfs(self.block_sumsq / self.block_fill as f64)
                } else {
                    level_dbfs(0.0)
                }
            });
            levels.push(l);
        }
    }
}

/// What [`DetectStage`] produces.
#[derive(Debug)]
pub enum StageOutput<'a> {
    /// The final scores of frame `frame` (one per class).
    Scores {
        /// Frame index since the stream started.
        frame: u64,
        /// One probability per class.
        scores: &'a [f32],
    },
    /// A start or stop.
    Event(Event),
}

/// Log-mel frames → windowed model scores → per-class events.
pub struct DetectStage {
    pub(super) runner: StreamingRunner,
    pub(super) detector: Detector,
    scores: Vec<f32>,
    events: Vec<Event>,
    n_classes: usize,
    /// Index of the next frame whose final scores come out of the runner.
    pub(super) next_frame: u64,
    /// Level above which the `loud` pseudo-class is active, dBFS.
    loud_dbfs: Option<f32>,
    /// Levels of frames handed to the runner and not yet final (for `loud`).
    levels: std::collections::VecDeque<f32>,
    /// Scratch: one frame's scores plus the `loud` column.
    row: Vec<f32>,
}

/// Label of the pseudo-class "any sound above `loud_dbfs`".
pub const LOUD_LABEL: &str = "loud";

/// Options of a [`DetectStage`] beyond the model file.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageOptions {
    /// Window geometry instead of the model file's.
    pub streaming: Option<StreamingConfig>,
    /// Skip inference on windows quieter than this (dBFS); their frames score 0.
    pub energy_gate_dbfs: Option<f32>,
    /// Add a `loud` pseudo-class, active while the level is at least this (dBFS).
    pub loud_dbfs: Option<f32>,
}

impl DetectStage {
    /// A stage over `model` with post-processing `pp`; event ids start with `stream_id`.
    pub fn new(
        model: Model,
        pp: &PostprocessConfig,
        stream_id: String,
    ) -> Result<Self, PipelineError> {
        Self::with_options(model, pp, stream_id, &StageOptions::default())
    }

    /// A stage with the given [`StageOptions`].
    pub fn with_options(
        model: Model,
        pp: &PostprocessConfig,
        stream_id: String,
        opts: &StageOptions,
    ) -> Result<Self, PipelineError> {
        let meta = model.meta().clone();
        let streaming = opts.streaming.unwrap_or(meta.streaming);
        let mut labels = meta.classes.clone();
        if opts.loud_dbfs.is_some() {
            labels.push(LOUD_LABEL.to_string());
        }
        let params = pp.resolve(&labels)?;
        let n_classes = meta.classes.len();
        let mut runner = StreamingRunner::new(Box::new(model), streaming)?;
        runner.set_energy_gate(opts.energy_gate_dbfs);
        Ok(Self {
            runner,
            detector: Detector::new(labels, params, meta.features.frame_rate(), stream_id),
            scores: Vec::with_capacity(1024 * n_classes),
            events: Vec::with_capacity(16),
            n_classes,
            next_frame: 0,
            loud_dbfs: opts.loud_dbfs,
            levels: std::collections::VecDeque::with_capacity(1024),
            row: Vec::with_capacity(n_classes + 1),
        })
    }

    /// Labels of the events this stage emits (the model's, plus `loud` if enabled).
    pub fn labels(&self) -> &[String] {
        self.detector.labels()
    }

    /// Windows skipped by the energy gate so far.
    pub fn windows_gated(&self) -> u64 {
        self.runner.windows_gated()
    }

    /// Frames whose final scores were produced so far.
    pub fn frames_done(&self) -> u64 {
        self.next_frame
    }

    /// Calls `f` with the duration of every model forward pass (metrics).
    pub fn set_inference_observer(&mut self, f: crate::detect::streaming::InferenceObserver) {
        self.runner.set_inference_observer(f);
    }

    /// Model windows run so far.
    pub fn windows_run(&self) -> u64 {
        self.runner.windows_run()
    }

    /// Events open right now.
    pub fn open_events(&self) -> usize {
        self.detector.open_events()
    }

    /// Feeds frames (row-major); calls `on` for every final frame score and event.
    pub fn push(
        &mut self,
        frames: &[f32],
        on: &mut dyn FnMut(StageOutput<'_>),
    ) -> Result<(), PipelineError> {
        self.push_with_levels(frames, &[], on)
    }

    /// As [`DetectStage::push`], with one level (dBFS) per frame for the energy gate
    /// and the `loud` pseudo-class (empty: unknown, never gated, never loud).
    pub fn push_with_levels(
        &mut self,
        frames: &[f32],
        levels: &[f32],
        on: &mut dyn FnMut(StageOutput<'_>),
    ) -> Result<(), PipelineError> {
        self.scores.clear();
        self.runner
            .push_with_levels(frames, levels, &mut self.scores)?;
        if self.loud_dbfs.is_some() {
            if levels.is_empty() {
                let n = frames.len() / self.runner.n_mels().max(1);
                self.levels
                    .extend(std::iter::repeat_n(f32::NEG_INFINITY, n));
            } else {
                self.levels.extend(levels.iter().copied());
            }
        }
        self.drain(on);
        Ok(())
    }

    /// Replaces the per-class post-processing (config reload) without touching the
    /// stream; events this closes (disabled classes) go to `on`.
    pub fn set_postprocess(
        &mut self,
        pp: &PostprocessConfig,
        on: &mut dyn FnMut(StageOutput<'_>),
    ) -> Result<(), PipelineError> {
        let params = pp.resolve(self.detector.labels())?;
        self.detector.set_params(&params, &mut self.events);
        for e in self.events.drain(..) {
            on(StageOutput::Event(e));
        }
        Ok(())
    }

    /// End of a continuous stretch of input: scores the tail and closes every event.
    pub fn finish(&mut self, on: &mut dyn FnMut(StageOutput<'_>)) -> Result<(), PipelineError> {
        self.scores.clear();
        self.runner.finish(&mut self.scores)?;
        self.drain(on);
        self.levels.clear();
        self.detector.finish(&mut self.events);
        for e in self.events.drain(..) {
            on(StageOutput::Event(e));
        }
        Ok(())
    }

    /// `n` frames were lost: finishes the stretch before the gap, then continues
    /// `n` frames later (audio time keeps counting).
    pub fn skip_frames(
        &mut self,
        n: u64,
        on: &mut dyn FnMut(StageOutput<'_>),
    ) -> Result<(), PipelineError> {
        self.finish(on)?;
        self.detector.skip_frames(n, &mut self.events);
        for e in self.events.drain(..) {
            on(StageOutput::Event(e));
        }
        self.next_frame += n;
        Ok(())
    }

    fn drain(&mut self, on: &mut dyn FnMut(StageOutput<'_>)) {
        let nc = self.n_classes;
        for row in self.scores.chunks_exact(nc) {
            let row: &[f32] = match self.loud_dbfs {
                Some(g) => {
                    let level = self.levels.pop_front().unwrap_or(f32::NEG_INFINITY);
                    self.row.clear();
                    self.row.extend_from_slice(row);
                    self.row.push(if level >= g { 1.0 } else { 0.0 });
                    &self.row
                }
                None => row,
            };
            on(StageOutput::Scores {
                frame: self.next_frame,
                scores: row,
            });
            self.detector.push_frame(row, &mut self.events);
            self.next_frame += 1;
            for e in self.events.drain(..) {
                on(StageOutput::Event(e));
            }
        }
    }
}
