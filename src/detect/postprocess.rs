//! Per-class post-processing: median filter, hysteresis, min duration, merge, hangover.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::event::Event;

/// Post-processing of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassParams {
    /// Whether events of this class are reported at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// An event starts when the (smoothed) score is ≥ `on`.
    pub on: f32,
    /// An active event ends when the score falls below `off` (≤ `on`).
    pub off: f32,
    /// Median filter length in frames (odd; 1 = off).
    pub median_frames: usize,
    /// Events shorter than this (seconds) are discarded.
    pub min_duration_s: f32,
    /// Gaps shorter than this (seconds) between two events are bridged.
    pub merge_gap_s: f32,
    /// Seconds an event is extended past the last frame above `off`.
    pub hangover_s: f32,
}

const fn default_true() -> bool {
    true
}

/// Partial override of [`ClassParams`] for one class (model file or user config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassOverride {
    /// See [`ClassParams::enabled`].
    pub enabled: Option<bool>,
    /// See [`ClassParams::on`].
    pub on: Option<f32>,
    /// See [`ClassParams::off`].
    pub off: Option<f32>,
    /// See [`ClassParams::median_frames`].
    pub median_frames: Option<usize>,
    /// See [`ClassParams::min_duration_s`].
    pub min_duration_s: Option<f32>,
    /// See [`ClassParams::merge_gap_s`].
    pub merge_gap_s: Option<f32>,
    /// See [`ClassParams::hangover_s`].
    pub hangover_s: Option<f32>,
}

/// Post-processing of every class: defaults plus per-class overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostprocessConfig {
    /// Parameters of classes without an override.
    pub default: ClassParams,
    /// Overrides by class label.
    #[serde(default)]
    pub per_class: BTreeMap<String, ClassOverride>,
}

impl Default for ClassParams {
    fn default() -> Self {
        Self {
            enabled: true,
            on: 0.5,
            off: 0.3,
            median_frames: 5,
            min_duration_s: 0.1,
            merge_gap_s: 0.2,
            hangover_s: 0.0,
        }
    }
}

/// Errors of post-processing settings.
#[derive(Debug, thiserror::Error)]
pub enum PostprocessError {
    /// A per-class override names a label the model does not have.
    #[error(
        "post-processing override for unknown label `{label}`; the model's labels are: {known}"
    )]
    UnknownLabel {
        /// The label given.
        label: String,
        /// The model's labels, comma-separated.
        known: String,
    },
    /// A parameter is out of range.
    #[error("post-processing of `{label}`: `{field}` = {value}: expected {expected}")]
    Invalid {
        /// The class (or `default`).
        label: String,
        /// The parameter.
        field: &'static str,
        /// The value found.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

impl ClassOverride {
    /// `base` with every field this override sets replaced.
    pub fn apply(&self, base: ClassParams) -> ClassParams {
        ClassParams {
            enabled: self.enabled.unwrap_or(base.enabled),
            on: self.on.unwrap_or(base.on),
            off: self.off.unwrap_or(base.off),
            median_frames: self.median_frames.unwrap_or(base.median_frames),
            min_duration_s: self.min_duration_s.unwrap_or(base.min_duration_s),
            merge_gap_s: self.merge_gap_s.unwrap_or(base.merge_gap_s),
            hangover_s: self.hangover_s.unwrap_or(base.hangover_s),
        }
    }

    /// Fills unset fields from `other` (this override wins where both are set).
    pub fn or(&self, other: &ClassOverride) -> ClassOverride {
        ClassOverride {
            enabled: self.enabled.or(other.enabled),
            on: self.on.or(other.on),
            off: self.off.or(other.off),
            median_frames: self.median_frames.or(other.median_frames),
            min_duration_s: self.min_duration_s.or(other.min_duration_s),
            merge_gap_s: self.merge_gap_s.or(other.merge_gap_s),
            hangover_s: self.hangover_s.or(other.hangover_s),
        }
    }
}

impl ClassParams {
    /// Checks ranges; `label` names the class in the error.
    pub fn validate(&self, label: &str) -> Result<(), PostprocessError> {
        let bad = |field: &'static str, value: String, expected: &'static str| {
            Err(PostprocessError::Invalid {
                label: label.to_string(),
                field,
                value,
                expected,
            })
        };
        if !(self.on.is_finite() && self.on > 0.0 && self.on <= 1.0) {
            return bad("on", self.on.to_string(), "a score in (0, 1]");
        }
        if !(self.off.is_finite() && self.off > 0.0 && self.off <= self.on) {
            return bad("off", self.off.to_string(), "a score in (0, on]");
        }
        if self.median_frames == 0 || self.median_frames % 2 == 0 || self.median_frames > 501 {
            return bad(
                "median_frames",
                self.median_frames.to_string(),
                "an odd number of frames 1..=501 (1 = no median filter)",
            );
        }
        for (field, v) in [
            ("min_duration_s", self.min_duration_s),
            ("merge_gap_s", self.merge_gap_s),
            ("hangover_s", self.hangover_s),
        ] {
            if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
                return bad(field, v.to_string(), "seconds in 0..=3600");
            }
        }
        Ok(())
    }
}

impl PostprocessConfig {
    /// Resolves the parameters of every class of `labels`, in order, validating each.
    /// An override for a label not in `labels` is an error that lists the labels.
    pub fn resolve(&self, labels: &[String]) -> Result<Vec<ClassParams>, PostprocessError> {
        self.default.validate("default")?;
        if let Some(unknown) = self.per_class.keys().find(|k| !labels.contains(k)) {
            return Err(PostprocessError::UnknownLabel {
                label: unknown.clone(),
                known: labels.join(", "),
            });
        }
        labels
            .iter()
            .map(|l| {
                let p = self
                    .per_class
                    .get(l)
                    .map_or(self.default, |o| o.apply(self.default));
                p.validate(l)?;
                Ok(p)
            })
            .collect()
    }
}

/// Per-class parameters converted to whole frames.
#[derive(Debug, Clone, Copy)]
struct FrameParams {
    enabled: bool,
    on: f32,
    off: f32,
    median: usize,
    min_frames: u64,
    gap_frames: u64,
    hang_frames: u64,
}

impl FrameParams {
    fn new(p: &ClassParams, frame_rate: f64) -> Self {
        let frames = |s: f32| (f64::from(s) * frame_rate).round() as u64;
        Self {
            enabled: p.enabled,
            on: p.on,
            off: p.off,
            median: p.median_frames,
            min_frames: frames(p.min_duration_s).max(1),
            gap_frames: frames(p.merge_gap_s),
            hang_frames: frames(p.hangover_s),
        }
    }
}

/// Where one class's event state machine is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No event.
    Idle,
    /// The smoothed score is ≥ `off` (after having reached `on`).
    Active,
    /// The score fell below `off` at frame `end`; the event ends at `end + hangover`
    /// unless it restarts before `end + hangover + merge_gap`.
    Ending { end: u64 },
}

/// The event a class is tracking.
#[derive(Debug, Clone)]
struct Track {
    phase: Phase,
    /// First frame of the event.
    onset: u64,
    /// Smoothed score at the onset frame.
    onset_score: f32,
    /// Whether `start` was emitted (the event is long enough).
    started: bool,
    /// Id given to the event when `start` was emitted.
    id: String,
    peak: f32,
    sum: f64,
    count: u64,
}

/// Streaming centred median filter with edge replication.
#[derive(Debug, Clone)]
struct Median {
    /// Filter length (odd).
    k: usize,
    /// The last `k` inputs, oldest first. Capacity `k`: never reallocates.
    window: std::collections::VecDeque<f32>,
    /// Scratch for selecting the median; capacity `k`.
    scratch: Vec<f32>,
    /// Last input seen (replicated at the end of the stream).
    last: f32,
    /// Whether any input was seen since the last reset.
    primed: bool,
}

impl Median {
    fn new(k: usize) -> Self {
        Self {
            k,
            window: std::collections::VecDeque::with_capacity(k),
            scratch: Vec::with_capacity(k),
            last: 0.0,
            primed: false,
        }
    }

    /// Pushes one input; returns the smoothed value of the frame `(k-1)/2` back, if any.
    fn push(&mut self, x: f32) -> Option<f32> {
        if self.k == 1 {
            return Some(x);
        }
        if !self.primed {
            self.primed = true;
            for _ in 0..self.k / 2 {
                self.window.push_back(x);
            }
        }
        self.last = x;
        self.window.push_back(x);
        if self.window.len() < self.k {
            return None;
        }
        self.scratch.clear();
        self.scratch.extend(self.window.iter().copied());
        let mid = self.k / 2;
        let (_, m, _) = self.scratch.select_nth_unstable_by(mid, f32::total_cmp);
        let m = *m;
        self.window.pop_front();
        Some(m)
    }

    /// Number of inputs whose smoothed values are still held back.
    fn pending(&self) -> usize {
        if self.k == 1 || !self.primed {
            0
        } else {
            self.window.len() - self.k / 2
        }
    }

    fn reset(&mut self) {
        self.window.clear();
        self.primed = false;
    }
}

/// Turns finalised frame scores of every class into `start`/`stop` events.
///
/// Per class: optional centred median filter (delay `(k-1)/2` frames), hysteresis
/// (start at ≥ `on`, end below `off`), hangover, merging of short gaps, and a minimum
/// duration. A `start` is emitted once the event is certain to last `min_duration`
/// (its `t` is still the true onset); a `stop` once no later frame can extend it.
/// Every emitted `start` gets exactly one `stop`, at the latest from [`Detector::finish`].
#[derive(Debug)]
pub struct Detector {
    labels: Vec<String>,
    params: Vec<FrameParams>,
    medians: Vec<Median>,
    tracks: Vec<Track>,
    frame_rate: f64,
    stream_id: String,
    next_seq: u64,
    /// Index of the next raw frame to be pushed.
    next_frame: u64,
    /// Index of the next smoothed frame to reach the state machines (per class the
    /// median delay differs, so each class counts its own).
    smoothed_next: Vec<u64>,
}

impl Detector {
    /// A detector for `labels` with resolved per-class `params`, at `frame_rate`
    /// frames per second. Event ids are `<stream_id>-<seq>`.
    pub fn new(
        labels: Vec<String>,
        params: Vec<ClassParams>,
        frame_rate: f64,
        stream_id: String,
    ) -> Self {
        let fp: Vec<FrameParams> = params
            .iter()
            .map(|p| FrameParams::new(p, frame_rate))
            .collect();
        let n = labels.len();
        Self {
            medians: fp.iter().map(|p| Median::new(p.median)).collect(),
            params: fp,
            tracks: (0..n)
                .map(|_| Track {
                    phase: Phase::Idle,
                    onset: 0,
                    onset_score: 0.0,
                    started: false,
                    id: String::new(),
                    peak: 0.0,
                    sum: 0.0,
                    count: 0,
                })
                .collect(),
            labels,
            frame_rate,
            stream_id,
            next_seq: 0,
            next_frame: 0,
            smoothed_next: vec![0; n],
        }
    }

    /// The class labels, in score order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Index of the next frame [`Detector::push_frame`] expects.
    pub fn next_frame(&self) -> u64 {
        self.next_frame
    }

    /// Number of events whose `start` was emitted and whose `stop` was not yet.
    pub fn open_events(&self) -> usize {
        self.tracks
            .iter()
            .filter(|t| t.started && !matches!(t.phase, Phase::Idle))
            .count()
    }

    /// Feeds the finalised scores of the next frame (one per class) and appends the
    /// events this frame completes to `out`.
    pub fn push_frame(&mut self, scores: &[f32], out: &mut Vec<Event>) {
        for c in 0..self.labels.len() {
            if !self.params[c].enabled {
                continue;
            }
            let s = scores.get(c).copied().unwrap_or(0.0);
            if let Some(m) = self.medians[c].push(s) {
                let j = self.smoothed_next[c];
                self.smoothed_next[c] += 1;
                self.step(c, j, m, out);
            }
        }
        self.next_frame += 1;
    }

    /// End of the stream (or of a continuous stretch of it): flushes the median
    /// filters and closes every open event at the last frame. Afterwards the
    /// detector continues at the same frame index with fresh state.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        let end = self.next_frame;
        for c in 0..self.labels.len() {
            if self.params[c].enabled {
                let last = self.medians[c].last;
                for _ in 0..self.medians[c].pending() {
                    if let Some(m) = self.medians[c].push(last) {
                        let j = self.smoothed_next[c];
                        self.smoothed_next[c] += 1;
                        self.step(c, j, m, out);
                    }
                }
            }
            self.medians[c].reset();
            self.smoothed_next[c] = end;
            self.close(c, end, out);
        }
    }

    /// Replaces the per-class parameters mid-stream (config reload) without losing
    /// frames: a class whose median length changes first flushes its filter through
    /// the state machine; a class that gets disabled closes its open event now; open
    /// events of other classes continue under the new thresholds.
    pub fn set_params(&mut self, params: &[ClassParams], out: &mut Vec<Event>) {
        for (c, p) in params.iter().enumerate().take(self.labels.len()) {
            let new = FrameParams::new(p, self.frame_rate);
            let old = self.params[c];
            if old.enabled && (!new.enabled || new.median != old.median) {
                if new.enabled {
                    // Flush the old filter so no frame is lost.
                    let last = self.medians[c].last;
                    for _ in 0..self.medians[c].pending() {
                        if let Some(m) = self.medians[c].push(last) {
                            let j = self.smoothed_next[c];
                            self.smoothed_next[c] += 1;
                            self.step(c, j, m, out);
                        }
                    }
                } else {
                    let end = self.smoothed_next[c];
                    self.close(c, end, out);
                }
            }
            if !old.enabled || !new.enabled || new.median != old.median {
                self.medians[c] = Median::new(new.median);
                self.smoothed_next[c] = self.next_frame;
            }
            if !new.enabled {
                self.tracks[c].phase = Phase::Idle;
                self.tracks[c].started = false;
            }
            self.params[c] = new;
        }
    }

    /// Starts audio time again at frame 0 (for the next file of an offline run).
    /// Call after [`Detector::finish`], when no event is open.
    pub fn reset_time(&mut self) {
        self.next_frame = 0;
        for s in &mut self.smoothed_next {
            *s = 0;
        }
    }

    /// Skips `n` frames that will never arrive (e.g. shed under load): closes open
    /// events at the current frame, then continues at `next_frame + n`.
    pub fn skip_frames(&mut self, n: u64, out: &mut Vec<Event>) {
        self.finish(out);
        self.next_frame += n;
        for s in &mut self.smoothed_next {
            *s = self.next_frame;
        }
    }

    fn t(&self, frame: u64) -> f64 {
        frame as f64 / self.frame_rate
    }

    /// Ends class `c`'s event (if any) at `stream_end` at the latest.
    fn close(&mut self, c: usize, stream_end: u64, out: &mut Vec<Event>) {
        let p = self.params[c];
        let end = match self.tracks[c].phase {
            Phase::Idle => return,
            Phase::Active => stream_end,
            Phase::Ending { end } => (end + p.hang_frames).min(stream_end),
        };
        self.emit_stop(c, end, out);
    }

    fn emit_stop(&mut self, c: usize, end: u64, out: &mut Vec<Event>) {
        let t_start = self.t(self.tracks[c].onset);
        let t_end = self.t(end);
        let tr = &mut self.tracks[c];
        tr.phase = Phase::Idle;
        if tr.started {
            tr.started = false;
            out.push(Event::Stop {
                id: std::mem::take(&mut tr.id),
                label: self.labels[c].clone(),
                class: c,
                t_start,
                t_end,
                peak: tr.peak,
                mean: if tr.count > 0 {
                    (tr.sum / tr.count as f64) as f32
                } else {
                    0.0
                },
            });
        }
    }

    /// Advances class `c`'s state machine by smoothed frame `j` with score `m`.
    fn step(&mut self, c: usize, j: u64, m: f32, out: &mut Vec<Event>) {
        let p = self.params[c];
        if let Phase::Ending { end } = self.tracks[c].phase {
            if j >= end + p.hang_frames + p.gap_frames {
                let stop_at = end + p.hang_frames;
                self.emit_stop(c, stop_at, out);
            }
        }
        let tr = &mut self.tracks[c];
        match tr.phase {
            Phase::Idle => {
                if m >= p.on {
                    *tr = Track {
                        phase: Phase::Active,
                        onset: j,
                        onset_score: m,
                        started: false,
                        id: String::new(),
                        peak: m,
                        sum: f64::from(m),
                        count: 1,
                    };
                }
            }
            Phase::Active => {
                if m >= p.off {
                    tr.peak = tr.peak.max(m);
                    tr.sum += f64::from(m);
                    tr.count += 1;
                } else {
                    tr.phase = Phase::Ending { end: j };
                }
            }
            Phase::Ending { .. } => {
                if m >= p.on {
                    tr.phase = Phase::Active;
                    tr.peak = tr.peak.max(m);
                    tr.sum += f64::from(m);
                    tr.count += 1;
                }
            }
        }
        let certain = match tr.phase {
            Phase::Idle => return,
            Phase::Active => j + 1 - tr.onset,
            Phase::Ending { end } => end + p.hang_frames - tr.onset,
        };
        if !tr.started && certain >= p.min_frames {
            tr.started = true;
            tr.id = format!("{}-{}", self.stream_id, self.next_seq);
            self.next_seq += 1;
            out.push(Event::Start {
                id: tr.id.clone(),
                label: self.labels[c].clone(),
                class: c,
                t: tr.onset as f64 / self.frame_rate,
                score: tr.onset_score,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPS: f64 = 50.0;

    fn params(
        on: f32,
        off: f32,
        median: usize,
        min_s: f32,
        gap_s: f32,
        hang_s: f32,
    ) -> ClassParams {
        ClassParams {
            enabled: true,
            on,
            off,
            median_frames: median,
            min_duration_s: min_s,
            merge_gap_s: gap_s,
            hangover_s: hang_s,
        }
    }

    /// Runs one class over `scores`, returns (events emitted per frame index, all events).
    fn run(p: ClassParams, scores: &[f32]) -> Vec<(usize, Event)> {
        let mut d = Detector::new(vec!["dog".into()], vec![p], FPS, "s".into());
        let mut got = Vec::new();
        let mut out = Vec::new();
        for (i, s) in scores.iter().enumerate() {
            d.push_frame(&[*s], &mut out);
            got.extend(out.drain(..).map(|e| (i, e)));
        }
        d.finish(&mut out);
        got.extend(out.drain(..).map(|e| (scores.len(), e)));
        assert_eq!(d.open_events(), 0);
        got
    }

    fn spans(events: &[(usize, Event)]) -> Vec<(f64, f64)> {
        events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Stop { t_start, t_end, .. } => Some((*t_start, *t_end)),
                _ => None,
            })
            .collect()
    }

    fn pattern(parts: &[(f32, usize)]) -> Vec<f32> {
        parts
            .iter()
            .flat_map(|&(v, n)| std::iter::repeat_n(v, n))
            .collect()
    }

    #[test]
    fn hysteresis_starts_at_on_and_stops_below_off() {
        let s = pattern(&[(0.1, 10), (0.6, 5), (0.4, 5), (0.2, 10)]);
        let ev = run(params(0.5, 0.3, 1, 0.0, 0.0, 0.0), &s);
        assert_eq!(spans(&ev), vec![(10.0 / FPS, 20.0 / FPS)]);
        // start is emitted at the onset frame itself when min duration is one frame
        assert_eq!(ev[0].0, 10);
        assert!(matches!(ev[0].1, Event::Start { t, .. } if (t - 0.2).abs() < 1e-12));
    }

    #[test]
    fn every_start_has_one_stop_with_the_same_id() {
        let s = pattern(&[(0.9, 3), (0.0, 30), (0.9, 40), (0.1, 2), (0.9, 7)]);
        let ev = run(params(0.5, 0.3, 3, 0.0, 0.0, 0.0), &s);
        let starts: Vec<_> = ev.iter().filter(|(_, e)| e.is_start()).collect();
        let stops: Vec<_> = ev.iter().filter(|(_, e)| !e.is_start()).collect();
        assert_eq!(starts.len(), stops.len());
        for (a, b) in starts.iter().zip(&stops) {
            assert_eq!(a.1.id(), b.1.id());
        }
        let mut ids: Vec<_> = starts.iter().map(|(_, e)| e.id().to_string()).collect();
        ids.dedup();
        assert_eq!(ids.len(), starts.len());
    }

    #[test]
    fn events_shorter_than_min_duration_are_dropped_and_start_is_delayed() {
        // 4 frames = 80 ms < 100 ms: dropped. 10 frames: kept, start emitted at frame 5+4.
        let s = pattern(&[(0.0, 5), (0.9, 4), (0.0, 20), (0.9, 10), (0.0, 10)]);
        let ev = run(params(0.5, 0.3, 1, 0.1, 0.0, 0.0), &s);
        assert_eq!(spans(&ev), vec![(29.0 / FPS, 39.0 / FPS)]);
        assert_eq!(
            ev[0].0,
            29 + 4,
            "start waits until the event is 5 frames long"
        );
        assert!(matches!(ev[0].1, Event::Start { t, .. } if (t - 29.0 / FPS).abs() < 1e-12));
    }

    #[test]
    fn short_gaps_are_merged() {
        let s = pattern(&[(0.9, 10), (0.0, 4), (0.9, 10), (0.0, 30)]);
        let merged = run(params(0.5, 0.3, 1, 0.0, 0.1, 0.0), &s);
        assert_eq!(spans(&merged), vec![(0.0, 24.0 / FPS)]);
        let split = run(params(0.5, 0.3, 1, 0.0, 0.06, 0.0), &s);
        assert_eq!(
            spans(&split),
            vec![(0.0, 10.0 / FPS), (14.0 / FPS, 24.0 / FPS)]
        );
    }

    #[test]
    fn hangover_extends_the_end() {
        let s = pattern(&[(0.9, 10), (0.0, 30)]);
        let ev = run(params(0.5, 0.3, 1, 0.0, 0.0, 0.2), &s);
        assert_eq!(spans(&ev), vec![(0.0, 20.0 / FPS)]);
        // the stop is emitted when the hangover has run out, not before
        let stop_frame = ev.iter().find(|(_, e)| !e.is_start()).unwrap().0;
        assert_eq!(stop_frame, 20);
    }

    #[test]
    fn median_filter_removes_single_frame_spikes_and_dropouts() {
        let s = pattern(&[
            (0.0, 10),
            (0.9, 1),
            (0.0, 10),
            (0.9, 10),
            (0.0, 1),
            (0.9, 10),
            (0.0, 10),
        ]);
        let ev = run(params(0.5, 0.3, 3, 0.0, 0.0, 0.0), &s);
        assert_eq!(spans(&ev), vec![(21.0 / FPS, 42.0 / FPS)]);
    }

    #[test]
    fn open_events_are_stopped_at_the_end_of_the_stream() {
        let s = pattern(&[(0.0, 5), (0.9, 20)]);
        let ev = run(params(0.5, 0.3, 5, 0.0, 0.5, 1.0), &s);
        assert_eq!(spans(&ev), vec![(5.0 / FPS, 25.0 / FPS)]);
        let stop = &ev.last().unwrap().1;
        assert!(
            matches!(stop, Event::Stop { peak, mean, .. } if (*peak - 0.9).abs() < 1e-6 && (*mean - 0.9).abs() < 1e-6)
        );
    }

    #[test]
    fn skipped_frames_close_events_and_keep_audio_time() {
        let mut d = Detector::new(
            vec!["a".into()],
            vec![params(0.5, 0.3, 1, 0.0, 0.0, 0.0)],
            FPS,
            "s".into(),
        );
        let mut out = Vec::new();
        for _ in 0..10 {
            d.push_frame(&[0.9], &mut out);
        }
        d.skip_frames(100, &mut out);
        assert_eq!(d.open_events(), 0);
        d.push_frame(&[0.9], &mut out);
        d.finish(&mut out);
        let s = spans(&out.iter().cloned().map(|e| (0, e)).collect::<Vec<_>>());
        assert_eq!(s, vec![(0.0, 10.0 / FPS), (110.0 / FPS, 111.0 / FPS)]);
    }

    #[test]
    fn set_params_mid_stream_keeps_every_frame_and_closes_disabled_classes() {
        let mut d = Detector::new(
            vec!["a".into(), "b".into()],
            vec![params(0.5, 0.3, 3, 0.0, 0.0, 0.0); 2],
            FPS,
            "s".into(),
        );
        let mut out = Vec::new();
        for _ in 0..20 {
            d.push_frame(&[0.9, 0.9], &mut out);
        }
        assert_eq!(d.open_events(), 2);
        // Disable `a`, change `b`'s median length and raise its thresholds.
        let mut a = params(0.5, 0.3, 3, 0.0, 0.0, 0.0);
        a.enabled = false;
        let b = params(0.95, 0.92, 5, 0.0, 0.0, 0.0);
        d.set_params(&[a, b], &mut out);
        let stops: Vec<_> = out.iter().filter(|e| !e.is_start()).collect();
        assert_eq!(stops.len(), 1, "{out:?}");
        assert_eq!(stops[0].label(), "a");
        assert_eq!(d.open_events(), 1);
        // `b` ends under its new `off` (0.9 < 0.92) and every frame was analysed.
        for _ in 0..10 {
            d.push_frame(&[0.9, 0.9], &mut out);
        }
        d.finish(&mut out);
        let b_stop = out
            .iter()
            .find_map(|e| match e {
                Event::Stop {
                    label,
                    t_start,
                    t_end,
                    ..
                } if label == "b" => Some((*t_start, *t_end)),
                _ => None,
            })
            .unwrap();
        assert_eq!(b_stop, (0.0, 20.0 / FPS));
        assert_eq!(d.open_events(), 0);
    }

    #[test]
    fn disabled_classes_emit_nothing() {
        let mut p = params(0.5, 0.3, 1, 0.0, 0.0, 0.0);
        p.enabled = false;
        assert!(run(p, &pattern(&[(0.9, 20)])).is_empty());
    }

    #[test]
    fn resolve_applies_overrides_and_names_unknown_labels() {
        let mut cfg = PostprocessConfig::default();
        cfg.per_class.insert(
            "b".into(),
            ClassOverride {
                on: Some(0.8),
                ..Default::default()
            },
        );
        let labels = vec!["a".to_string(), "b".to_string()];
        let r = cfg.resolve(&labels).unwrap();
        assert_eq!(r[0].on, 0.5);
        assert_eq!(r[1].on, 0.8);
        cfg.per_class
            .insert("zebra".into(), ClassOverride::default());
        let e = cfg.resolve(&labels).unwrap_err().to_string();
        assert!(e.contains("zebra") && e.contains("a, b"), "{e}");
    }

    #[test]
    fn invalid_parameters_are_named() {
        let e = params(0.5, 0.6, 1, 0.0, 0.0, 0.0)
            .validate("dog")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dog") && e.contains("off"), "{e}");
        let e = params(0.5, 0.3, 4, 0.0, 0.0, 0.0)
            .validate("dog")
            .unwrap_err()
            .to_string();
        assert!(e.contains("median_frames"), "{e}");
        let e = params(0.5, 0.3, 1, f32::NAN, 0.0, 0.0)
            .validate("x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_duration_s"), "{e}");
    }
}
