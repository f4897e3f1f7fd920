//! Live counters of the daemon, rendered as Prometheus text on `/metrics`.
//!
//! Every counter is a relaxed atomic that the pipeline threads bump or store as
//! they go (no lock, no allocation); only [`Metrics::render`], run per scrape,
//! formats text. Units are in the names (`_seconds`, `_total`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use crate::events::protocol::StreamState;

/// Upper bounds of the histogram buckets, seconds (`+Inf` is implicit).
pub const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// A fixed-bucket histogram of durations, lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS_S.len() + 1],
    /// Sum of all observations, nanoseconds.
    sum_ns: AtomicU64,
    /// Number of observations.
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS_S
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS_S.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cum = 0u64;
        for (i, b) in BUCKETS_S.iter().enumerate() {
            cum += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.buckets[BUCKETS_S.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 * 1e-9;
        let _ = writeln!(out, "{name}_sum {sum}");
        // The count is read after the buckets: a concurrent observation may show
        // in one and not yet the other; Prometheus tolerates that.
        let _ = writeln!(out, "{name}_count {cum}");
    }
}

/// The daemon's counters, shared (in an `Arc`) by the pipeline threads and the
/// HTTP server.
#[derive(Debug)]
pub struct Metrics {
    /// Class labels, in model order (the `label` of `events_total`).
    classes: Vec<String>,
    /// Log-mel frames whose final scores were computed.
    pub frames_processed: AtomicU64,
    /// Model windows run.
    pub windows: AtomicU64,
    /// Samples lost because the capture ring was full (stored from the source's
    /// counter by the model thread).
    pub samples_dropped: AtomicU64,
    /// Non-finite input samples replaced by zeros.
    pub samples_nonfinite: AtomicU64,
    /// Log-mel frames shed because the model thread was behind: the model windows
    /// over them were skipped.
    pub frames_shed: AtomicU64,
    /// Time of one model forward pass (`Scorer::score`), per window.
    pub inference: Histogram,
    /// Wall-clock delay from an event's time point in the audio to its publication
    /// (paced and live sources only).
    pub detection_latency: Histogram,
    /// `start` events per class, in model order.
    events: Vec<AtomicU64>,
    /// Web page (Server-Sent Events) clients connected now.
    pub http_clients: AtomicU64,
    /// Web page clients dropped because they did not keep up.
    pub http_slow_disconnects: AtomicU64,
    /// Unix-socket clients connected now (stored by the pipeline).
    pub socket_clients: AtomicU64,
    /// The stream state (see [`state_index`]).
    state: AtomicU8,
}

const STATES: [(StreamState, &str); 4] = [
    (StreamState::Running, "running"),
    (StreamState::Degraded, "degraded"),
    (StreamState::Reconnecting, "reconnecting"),
    (StreamState::Ended, "ended"),
];

/// Index of a state in the `hark_source_state` gauge family.
fn state_index(s: StreamState) -> u8 {
    STATES.iter().position(|(x, _)| *x == s).unwrap_or(0) as u8
}

impl Metrics {
    /// Counters for a model with these class labels, all zero, state `running`.
    pub fn new(classes: Vec<String>) -> Self {
        let events = classes.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            classes,
            frames_processed: AtomicU64::new(0),
            windows: AtomicU64::new(0),
            samples_dropped: AtomicU64::new(0),
            samples_nonfinite: AtomicU64::new(0),
            frames_shed: AtomicU64::new(0),
            inference: Histogram::default(),
            detection_latency: Histogram::default(),
            events,
            http_clients: AtomicU64::new(0),
            http_slow_disconnects: AtomicU64::new(0),
            socket_clients: AtomicU64::new(0),
            state: AtomicU8::new(0),
        }
    }

    /// Counts one `start` event of class index `class` (out-of-range is ignored).
    pub fn count_event(&self, class: usize) {
        if let Some(c) = self.events.get(class) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `start` events of class index `class` so far.
    pub fn events_of(&self, class: usize) -> u64 {
        self.events
            .get(class)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Sets the stream state.
    pub fn set_state(&self, s: StreamState) {
        self.state.store(state_index(s), Ordering::Relaxed);
    }

    /// The stream state.
    pub fn state(&self) -> StreamState {
        let i = usize::from(self.state.load(Ordering::Relaxed));
        STATES.get(i).map_or(StreamState::Running, |(s, _)| *s)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        counter(
            &mut out,
            "hark_frames_processed_total",
            "Log-mel frames whose final scores were computed.",
            &self.frames_processed,
        );
        counter(
            &mut out,
            "hark_windows_total",
            "Model windows run.",
            &self.windows,
        );
        counter(
            &mut out,
            "hark_samples_dropped_total",
            "Audio samples lost because the capture ring was full.",
            &self.samples_dropped,
        );
        counter(
            &mut out,
            "hark_samples_nonfinite_total",
            "Non-finite input samples replaced by zeros.",
            &self.samples_nonfinite,
        );
        counter(
            &mut out,
            "hark_frames_shed_total",
            "Log-mel frames shed under load (the model windows over them were skipped).",
            &self.frames_shed,
        );
        self.inference.render(
            &mut out,
            "hark_inference_seconds",
            "Time of one model forward pass over a window.",
        );
        self.detection_latency.render(
            &mut out,
            "hark_detection_latency_seconds",
            "Wall-clock delay from an event's time point in the audio to its publication.",
        );
        let _ = writeln!(
            out,
            "# HELP hark_events_total Events (starts) detected, per label."
        );
        let _ = writeln!(out, "# TYPE hark_events_total counter");
        for (label, c) in self.classes.iter().zip(&self.events) {
            let _ = writeln!(
                out,
                "hark_events_total{{label=\"{}\"}} {}",
                escape_label(label),
                c.load(Ordering::Relaxed)
            );
        }
        gauge(
            &mut out,
            "hark_http_clients",
            "Web page (Server-Sent Events) clients connected.",
            &self.http_clients,
        );
        counter(
            &mut out,
            "hark_http_slow_disconnects_total",
            "Web page clients dropped because they did not keep up.",
            &self.http_slow_disconnects,
        );
        gauge(
            &mut out,
            "hark_socket_clients",
            "Unix-socket clients connected.",
            &self.socket_clients,
        );
        let _ = writeln!(
            out,
            "# HELP hark_source_state The stream state (1 for the current one)."
        );
        let _ = writeln!(out, "# TYPE hark_source_state gauge");
        let now = self.state.load(Ordering::Relaxed);
        for (i, (_, name)) in STATES.iter().enumerate() {
            let _ = writeln!(
                out,
                "hark_source_state{{state=\"{name}\"}} {}",
                u8::from(i as u8 == now)
            );
        }
        out
    }
}

/// Escapes a Prometheus label value (backslash, double quote, newline).
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line `name` (with labels, exactly as written).
    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_in_seconds() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300)); // <= 0.0005
        h.observe(Duration::from_millis(3)); // <= 0.005
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60)); // +Inf
        let mut s = String::new();
        h.render(&mut s, "x_seconds", "help");
        assert_eq!(sample(&s, "x_seconds_bucket{le=\"0.0005\"}"), 1.0);
        assert_eq!(sample(&s, "x_seconds_bucket{le=\"0.002\"}"), 1.0);
        assert_eq!(sample(&s, "x_seconds_bucket{le=\"0.005\"}"), 3.0);
        assert_eq!(sample(&s, "x_seconds_bucket{le=\"10\"}"), 3.0);
        assert_eq!(sample(&s, "x_seconds_bucket{le=\"+Inf\"}"), 4.0);
        assert_eq!(sample(&s, "x_seconds_count"), 4.0);
        assert!((sample(&s, "x_seconds_sum") - 60.0063).abs() < 1e-9);
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn render_has_every_family_with_help_and_type() {
        let m = Metrics::new(vec!["dog \"bark\"".into(), "speech".into()]);
        m.frames_processed.fetch_add(250, Ordering::Relaxed);
        m.count_event(1);
        m.count_event(1);
        m.count_event(7); // out of range: ignored
        m.set_state(StreamState::Degraded);
        let t = m.render();
        assert_eq!(sample(&t, "hark_frames_processed_total"), 250.0);
        assert_eq!(sample(&t, "hark_events_total{label=\"speech\"}"), 2.0);
        assert_eq!(
            sample(&t, "hark_events_total{label=\"dog \\\"bark\\\"\"}"),
            0.0
        );
        assert_eq!(sample(&t, "hark_source_state{state=\"degraded\"}"), 1.0);
        assert_eq!(sample(&t, "hark_source_state{state=\"running\"}"), 0.0);
        assert_eq!(m.state(), StreamState::Degraded);
        for family in [
            "hark_frames_processed_total",
            "hark_windows_total",
            "hark_samples_dropped_total",
            "hark_frames_shed_total",
            "hark_inference_seconds",
            "hark_detection_latency_seconds",
            "hark_events_total",
            "hark_http_clients",
            "hark_socket_clients",
            "hark_source_state",
        ] {
            assert!(t.contains(&format!("# HELP {family} ")), "{family}");
            assert!(t.contains(&format!("# TYPE {family} ")), "{family}");
        }
        // Every non-comment line is `name{labels} value` with a numeric value.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
