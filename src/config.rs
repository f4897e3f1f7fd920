//! Config (skeleton).
