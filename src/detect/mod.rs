//! From frame scores to events: the streaming window runner (overlap-add), the
//! per-class post-processing state machines, and the event type.

pub mod event;
pub mod postprocess;
pub mod streaming;
