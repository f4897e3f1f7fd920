//! Event hub and sinks.
