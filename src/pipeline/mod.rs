//! Wires the stages together: offline (`hark detect`, one thread, as fast as
//! possible) and live (`hark run`, one thread per stage, paced by the source).
//!
//! Both modes drive the same two stage objects, [`FeatureStage`] (audio → log-mel)
//! and [`DetectStage`] (log-mel → scores → events), so feeding a file in one block
//! or in chunks of any size gives the same frames, scores and events.
//!
//! Live threads and their bounded queues:
//!
//! ```text
//! source (cpal callback → ring, or file/stdin reader)
//!   └─ frontend thread: read → resample → log-mel ─[frames queue, queue_seconds]─▶
//!      model thread: windows → scores → detector ─[hub queue]─▶ hub ─▶ sinks
//! ```
//! For live sources the frontend never waits on the model thread: when the frames
//! queue is full the chunk is dropped and counted (`dropped_frames`), the detector
//! closes open events at the gap and resumes on fresh audio. File and pipe input
//! wait instead (nothing is lost).

mod live;
mod offline;
mod sinks;
mod stages;

pub use live::{run, run_with_source, Reloaded, Reloader, Reopen, RunOptions, RunSummary};
pub use offline::{FileDetection, OfflineDetector};
pub use sinks::SinkSpec;
pub use stages::{DetectStage, FeatureStage, StageOptions, StageOutput, LOUD_LABEL};

use crate::audio::AudioError;
use crate::detect::postprocess::PostprocessError;
use crate::events::EventsError;
use crate::features::FeatureError;
use crate::model::ModelError;

/// Errors of running the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Audio input failed.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// Feature settings are invalid.
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Post-processing settings are invalid.
    #[error(transparent)]
    Postprocess(#[from] PostprocessError),
    /// A sink could not start.
    #[error(transparent)]
    Events(#[from] EventsError),
    /// A pipeline thread could not start or died.
    #[error("pipeline thread `{0}` failed")]
    Thread(String),
}
