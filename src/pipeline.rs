//! Pipeline (skeleton).
