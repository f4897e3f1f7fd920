//! Detected events: what post-processing emits and every sink publishes.
//!
//! Times are seconds of audio since the stream started (`t`, `t_start`, `t_end`),
//! computed from frame indices, never from the wall clock.

use serde::Serialize;

/// A `start` or `stop` of one event of one class. Every `Start` is followed, sooner
/// or later, by exactly one `Stop` with the same `id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// An event began.
    Start {
        /// `<stream>-<seq>`, shared with the matching `Stop`.
        id: String,
        /// Class label.
        label: String,
        /// Index of the class in the model's output.
        #[serde(skip)]
        class: usize,
        /// Onset, seconds of audio since the stream started.
        t: f64,
        /// Smoothed score of the onset frame.
        score: f32,
    },
    /// An event ended.
    Stop {
        /// Same id as the `Start`.
        id: String,
        /// Class label.
        label: String,
        /// Index of the class in the model's output.
        #[serde(skip)]
        class: usize,
        /// Onset, seconds.
        t_start: f64,
        /// Offset, seconds.
        t_end: f64,
        /// Highest smoothed score during the event.
        peak: f32,
        /// Mean smoothed score over the event's active frames.
        mean: f32,
    },
}

impl Event {
    /// The event's id.
    pub fn id(&self) -> &str {
        match self {
            Event::Start { id, .. } | Event::Stop { id, .. } => id,
        }
    }

    /// The event's label.
    pub fn label(&self) -> &str {
        match self {
            Event::Start { label, .. } | Event::Stop { label, .. } => label,
        }
    }

    /// Whether this is a `Start`.
    pub fn is_start(&self) -> bool {
        matches!(self, Event::Start { .. })
    }
}

/// A finished event, as written to DCASE TSV (`onset offset event_label`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectedEvent {
    /// Onset, seconds.
    pub onset: f64,
    /// Offset, seconds.
    pub offset: f64,
    /// Class label.
    pub event_label: String,
    /// Highest smoothed score.
    pub peak: f32,
    /// Mean smoothed score.
    pub mean: f32,
}
