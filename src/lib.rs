//! hark — real-time sound event detection.
//!
//! The crate is laid out as the data flow of the daemon (see the README):
//!
//! ```text
//! audio (sources, ring, resample) → features (STFT → mel → log, streaming)
//!   → model (candle layers and architectures, model file)
//!   → detect (sliding windows, overlap-add, post-processing → events)
//!   → events (hub → socket / stdout sinks)
//! ```
//!
//! `pipeline` wires these stages into threads for the daemon and runs the very same
//! stage code synchronously for offline detection. `metrics` holds the SED metrics
//! used by `hark eval` and by training. `config` reads and validates the TOML config.

pub mod audio;
pub mod config;
pub mod detect;
pub mod events;
pub mod features;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod service;
pub mod train;
