//! Sliding-window inference with overlap-averaged, finalised frame scores.

use serde::{Deserialize, Serialize};

/// Window geometry for streaming inference, stored in the model file (`streaming`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingConfig {
    /// Frames per model call (W).
    pub window_frames: usize,
    /// Frames between the starts of consecutive windows (H ≤ W).
    pub hop_frames: usize,
    /// Bounded look-ahead (L): a frame's score is final as soon as a window has run
    /// with at least L frames after it, instead of once no later window covers it.
    /// Lower L means lower latency (a frame waits at most L + H frames plus the
    /// model's time) and fewer windows averaged per frame. Absent (the default), or
    /// L ≥ W − H: every window covering a frame is averaged (latency up to W).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookahead_frames: Option<usize>,
}

use std::collections::VecDeque;

use crate::model::{ModelError, Scorer};

/// The longest streaming window, frames (over 30 minutes at 50 frames/s). A model
/// file claiming more is refused rather than allocating its buffers (a corrupt
/// `window_frames` of 2^40 aborted the process; found by the bad-model tests).
pub const MAX_WINDOW_FRAMES: usize = 100_000;

impl StreamingConfig {
    /// A geometry with full overlap averaging (no `lookahead_frames`).
    pub fn new(window_frames: usize, hop_frames: usize) -> Self {
        Self {
            window_frames,
            hop_frames,
            lookahead_frames: None,
        }
    }

    /// Checks `0 < hop ≤ window ≤ MAX_WINDOW_FRAMES` and `lookahead < window`.
    pub fn validate(&self) -> Result<(), String> {
        if self.window_frames == 0 || self.window_frames > MAX_WINDOW_FRAMES {
            return Err(format!(
                "streaming.window_frames = {} must be in 1..={MAX_WINDOW_FRAMES}",
                self.window_frames
            ));
        }
        if self.hop_frames == 0 || self.hop_frames > self.window_frames {
            return Err(format!(
                "streaming.hop_frames = {} must be in 1..=window_frames ({})",
                self.hop_frames, self.window_frames
            ));
        }
        if let Some(l) = self.lookahead_frames {
            if l >= self.window_frames {
                return Err(format!(
                    "streaming.lookahead_frames = {l} must be in 0..window_frames ({})",
                    self.window_frames
                ));
            }
        }
        Ok(())
    }

    /// The latest a frame's score can become final, in frames after the frame itself
    /// arrived (before the model's compute time): `min(L, W − H) + H − 1`, or `W − 1`
    /// without a look-ahead.
    pub fn max_delay_frames(&self) -> usize {
        let full = self.window_frames - self.hop_frames;
        self.lookahead_frames.unwrap_or(full).min(full) + self.hop_frames - 1
    }
}

/// Runs a [`Scorer`] on a sliding window over a stream of log-mel frames and emits
/// each frame's score once it is final.
///
/// Window `k` covers frames `[k·H, k·H + W)`. A frame's score is the mean over the
/// windows that cover it and ran before it became final. Frames before the start of
/// the next window are final; with a look-ahead L (see
/// [`StreamingConfig::lookahead_frames`]) so are frames at least L frames before the
/// end of the window just run.
/// At the end of the stream one more window covers the last `W` frames (or all
/// frames, if fewer), so the tail is scored too. Feeding frames in any chunking
/// gives the same windows, hence the same scores, as feeding them all at once.
///
/// Memory is bounded: at most `W + chunk` frames and `W` accumulators are held.
pub struct StreamingRunner {
    scorer: Box<dyn Scorer>,
    window: usize,
    hop: usize,
    /// Frames of right context after which a frame is final (≤ W − H).
    lookahead: usize,
    n_mels: usize,
    n_classes: usize,
    /// Frames not yet dropped, row-major; `buf_start` is the index of the first.
    buf: VecDeque<f32>,
    buf_start: u64,
    /// Total frames received since the stream (re)started.
    received: u64,
    /// Start of the next window to run.
    next_window: u64,
    /// Frames finalised (emitted) so far; accumulators start at this index.
    finalised: u64,
    /// Score sums and window counts of the frames `finalised..`.
    sums: VecDeque<f32>,
    counts: VecDeque<u32>,
    /// Scratch: the window's frames, contiguous; the scorer's output.
    win_scratch: Vec<f32>,
    out_scratch: Vec<f32>,
    /// Windows scored since creation.
    windows_run: u64,
    /// Level (dBFS) of each buffered frame, parallel to `buf`.
    levels: VecDeque<f32>,
    /// Windows whose loudest frame is below this level are not scored: their frames
    /// get score 0 (silence), so open events still end on time.
    gate_dbfs: Option<f32>,
    /// Windows skipped by the gate.
    windows_gated: u64,
    /// Called with the duration of every `Scorer::score` call (metrics), if set.
    on_inference: Option<InferenceObserver>,
    /// Whether non-finite scores were already warned about.
    warned_nonfinite: bool,
}

/// Receives the duration of each model forward pass (e.g. a metrics histogram).
pub type InferenceObserver = Box<dyn Fn(std::time::Duration) + Send>;

impl StreamingRunner {
    /// A runner over `scorer` with the given window geometry.
    pub fn new(scorer: Box<dyn Scorer>, cfg: StreamingConfig) -> Result<Self, ModelError> {
        cfg.validate().map_err(ModelError::Input)?;
        let n_mels = scorer.n_mels();
        let n_classes = scorer.n_classes();
        let w = cfg.window_frames.max(scorer.min_frames());
        let hop = cfg.hop_frames.min(w);
        Ok(Self {
            scorer,
            window: w,
            hop,
            lookahead: cfg.lookahead_frames.unwrap_or(w).min(w - hop),
            n_mels,
            n_classes,
            buf: VecDeque::with_capacity(2 * w * n_mels),
            buf_start: 0,
            received: 0,
            next_window: 0,
            finalised: 0,
            sums: VecDeque::with_capacity(2 * w * n_classes),
            counts: VecDeque::with_capacity(2 * w),
            win_scratch: Vec::with_capacity(w * n_mels),
            out_scratch: Vec::with_capacity(w * n_classes),
            windows_run: 0,
            levels: VecDeque::with_capacity(2 * w),
            gate_dbfs: None,
            windows_gated: 0,
            on_inference: None,
            warned_nonfinite: false,
        })
    }

    /// Calls `f` with the duration of every model forward pass from now on.
    pub fn set_inference_observer(&mut self, f: InferenceObserver) {
        self.on_inference = Some(f);
    }

    /// Number of classes per output frame.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Number of mel bands per input frame.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Windows scored so far.
    pub fn windows_run(&self) -> u64 {
        self.windows_run
    }

    /// Windows skipped by the energy gate so far.
    pub fn windows_gated(&self) -> u64 {
        self.windows_gated
    }

    /// Sets the energy gate: windows whose loudest frame (per the levels given to
    /// [`StreamingRunner::push_with_levels`]) is below `dbfs` are not scored.
    pub fn set_energy_gate(&mut self, dbfs: Option<f32>) {
        self.gate_dbfs = dbfs;
    }

    /// Frames received since the stream (re)started.
    pub fn frames_received(&self) -> u64 {
        self.received
    }

    /// Frames finalised since the stream (re)started.
    pub fn frames_finalised(&self) -> u64 {
        self.finalised
    }

    /// Feeds `frames` (row-major, `n_mels` each) and appends the scores of every frame
    /// that became final to `out` (`n_classes` each). Returns the number of frames
    /// appended.
    pub fn push(&mut self, frames: &[f32], out: &mut Vec<f32>) -> Result<usize, ModelError> {
        self.push_with_levels(frames, &[], out)
    }

    /// As [`StreamingRunner::push`], with one level (dBFS) per frame for the energy
    /// gate; frames without a level (an empty `levels`) are never gated.
    pub fn push_with_levels(
        &mut self,
        frames: &[f32],
        levels: &[f32],
        out: &mut Vec<f32>,
    ) -> Result<usize, ModelError> {
        if frames.len() % self.n_mels != 0 {
            return Err(ModelError::Input(format!(
                "{} values is not a whole number of {}-band frames",
                frames.len(),
                self.n_mels
            )));
        }
        let n = frames.len() / self.n_mels;
        if !levels.is_empty() && levels.len() != n {
            return Err(ModelError::Input(format!(
                "{} levels for {n} frames",
                levels.len()
            )));
        }
        if levels.is_empty() {
            self.levels.extend(std::iter::repeat_n(f32::INFINITY, n));
        } else {
            self.levels.extend(levels.iter().copied());
        }
        self.buf.extend(frames.iter().copied());
        self.received += (frames.len() / self.n_mels) as u64;
        let mut emitted = 0;
        while self.next_window + self.window as u64 <= self.received {
            let start = self.next_window;
            self.run_window(start, self.window)?;
            self.next_window += self.hop as u64;
            // lookahead ≤ W − H, so this is never before the next window's start.
            let until = start + (self.window - self.lookahead) as u64;
            emitted += self.emit_until(until, out);
            self.trim();
        }
        Ok(emitted)
    }

    /// End of the stream: scores the tail, emits every remaining frame, and resets
    /// for a new stream. Returns the number of frames appended.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<usize, ModelError> {
        let n = self.received;
        if n > self.finalised {
            let last_end = if self.windows_run_in_stream() {
                self.next_window - self.hop as u64 + self.window as u64
            } else {
                0
            };
            if n > last_end {
                let len = (n as usize).min(self.window);
                self.run_window(n - len as u64, len)?;
            }
        }
        let emitted = self.emit_until(n, out);
        self.reset();
        Ok(emitted)
    }

    /// Forgets the stream (buffered frames and partial scores) without emitting.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.levels.clear();
        self.buf_start = 0;
        self.received = 0;
        self.next_window = 0;
        self.finalised = 0;
        self.sums.clear();
        self.counts.clear();
    }

    fn windows_run_in_stream(&self) -> bool {
        self.next_window > 0
    }

    /// Scores frames `[start, start+len)` and adds the scores to the accumulators of
    /// the frames not yet final. Inputs shorter than the scorer's minimum are padded
    /// by repeating the last frame.
    fn run_window(&mut self, start: u64, len: usize) -> Result<(), ModelError> {
        let nm = self.n_mels;
        let nc = self.n_classes;
        let off = (start - self.buf_start) as usize * nm;
        self.win_scratch.clear();
        self.win_scratch
            .extend(self.buf.range(off..off + len * nm).copied());
        let padded = len.max(self.scorer.min_frames());
        let lo = (start - self.buf_start) as usize;
        let gated = self
            .gate_dbfs
            .is_some_and(|g| self.levels.range(lo..lo + len).all(|l| *l < g));
        if gated {
            self.out_scratch.clear();
            self.out_scratch.resize(padded * nc, 0.0);
            self.windows_gated += 1;
        } else {
            for _ in len..padded {
                let last = self.win_scratch.len() - nm;
                self.win_scratch.extend_from_within(last..last + nm);
            }
            let t0 = self
                .on_inference
                .as_ref()
                .map(|_| std::time::Instant::now());
            self.scorer
                .score(&self.win_scratch, padded, &mut self.out_scratch)?;
            if let (Some(f), Some(t0)) = (&self.on_inference, t0) {
                f(t0.elapsed());
            }
            self.windows_run += 1;
            // A model file with finite but huge weights overflows to NaN (found by
            // fuzzing the loader): the detector and the protocol never see NaN.
            let mut bad = 0usize;
            for v in self.out_scratch.iter_mut() {
                if !v.is_finite() {
                    *v = 0.0;
                    bad += 1;
                }
            }
            if bad > 0 && !self.warned_nonfinite {
                self.warned_nonfinite = true;
                tracing::warn!(
                    scores = bad,
                    window_start = start,
                    "the model returned non-finite scores (its weights overflow); replaced by 0"
                );
            }
        }
        if self.out_scratch.len() != padded * nc {
            return Err(ModelError::Input(format!(
                "scorer returned {} values for {padded} frames × {nc} classes",
                self.out_scratch.len()
            )));
        }
        let end = start + len as u64;
        // Grow the accumulators to cover the window.
        let have = self.finalised + self.counts.len() as u64;
        for _ in have..end {
            self.counts.push_back(0);
            self.sums.extend(std::iter::repeat_n(0.0, nc));
        }
        for f in start.max(self.finalised)..end {
            let i = (f - self.finalised) as usize;
            let src = (f - start) as usize * nc;
            self.counts[i] += 1;
            for c in 0..nc {
                self.sums[i * nc + c] += self.out_scratch[src + c];
            }
        }
        Ok(())
    }

    /// Emits the averaged scores of frames `finalised..until` (all covered by at least
    /// one window). Returns how many.
    fn emit_until(&mut self, until: u64, out: &mut Vec<f32>) -> usize {
        let nc = self.n_classes;
        let mut n = 0;
        while self.finalised < until {
            let Some(count) = self.counts.pop_front() else {
                break;
            };
            let inv = 1.0 / count.max(1) as f32;
            for _ in 0..nc {
                let s = self.sums.pop_front().unwrap_or(0.0);
                out.push(s * inv);
            }
            self.finalised += 1;
            n += 1;
        }
        n
    }

    /// Drops buffered frames no future window (including the end-of-stream one) needs.
    fn trim(&mut self) {
        let keep_from = self
            .next_window
            .min(self.received.saturating_sub(self.window as u64));
        if keep_from > self.buf_start {
            let drop = ((keep_from - self.buf_start) as usize) * self.n_mels;
            self.buf.drain(..drop);
            self.levels.drain(..drop / self.n_mels);
            self.buf_start = keep_from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A scorer whose output for a frame depends on the whole window (through the
    /// window mean), so windows of different extent give different scores and any
    /// chunking-dependent windowing would show.
    struct WindowMeanScorer {
        n_mels: usize,
        n_classes: usize,
        min_frames: usize,
    }

    impl Scorer for WindowMeanScorer {
        fn n_classes(&self) -> usize {
            self.n_classes
        }
        fn n_mels(&self) -> usize {
            self.n_mels
        }
        fn min_frames(&self) -> usize {
            self.min_frames
        }
        fn score(
            &mut self,
            frames: &[f32],
            n_frames: usize,
            out: &mut Vec<f32>,
        ) -> Result<(), ModelError> {
            assert!(n_frames >= self.min_frames);
            let mean: f32 = frames.iter().sum::<f32>() / frames.len() as f32;
            out.clear();
            for t in 0..n_frames {
                let f = &frames[t * self.n_mels..(t + 1) * self.n_mels];
                for c in 0..self.n_classes {
                    let x = f[c % self.n_mels] + 0.1 * mean + c as f32 * 0.01;
                    out.push(1.0 / (1.0 + (-x).exp()));
                }
            }
            Ok(())
        }
    }

    fn runner(w: usize, h: usize, min_frames: usize) -> StreamingRunner {
        runner_l(w, h, None, min_frames)
    }

    fn runner_l(w: usize, h: usize, l: Option<usize>, min_frames: usize) -> StreamingRunner {
        StreamingRunner::new(
            Box::new(WindowMeanScorer {
                n_mels: 3,
                n_classes: 2,
                min_frames,
            }),
            StreamingConfig {
                window_frames: w,
                hop_frames: h,
                lookahead_frames: l,
            },
        )
        .unwrap()
    }

    fn frames(n: usize) -> Vec<f32> {
        (0..n * 3)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect()
    }

    fn offline(w: usize, h: usize, data: &[f32]) -> Vec<f32> {
        offline_l(w, h, None, data)
    }

    fn offline_l(w: usize, h: usize, l: Option<usize>, data: &[f32]) -> Vec<f32> {
        let mut r = runner_l(w, h, l, 4);
        let mut out = Vec::new();
        r.push(data, &mut out).unwrap();
        r.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn every_frame_is_emitted_exactly_once() {
        for n in [0usize, 1, 3, 9, 10, 11, 25, 40, 41] {
            let out = offline(10, 4, &frames(n));
            assert_eq!(out.len(), n * 2, "n = {n}");
            assert!(out.iter().all(|p| (0.0..=1.0).contains(p)));
        }
    }

    #[test]
    fn single_full_window_equals_one_scorer_call() {
        let data = frames(10);
        let out = offline(10, 10, &data);
        let mut s = WindowMeanScorer {
            n_mels: 3,
            n_classes: 2,
            min_frames: 4,
        };
        let mut direct = Vec::new();
        s.score(&data, 10, &mut direct).unwrap();
        assert_eq!(out, direct);
    }

    #[test]
    fn overlapping_windows_are_averaged() {
        // W=4, H=2, 6 frames: windows [0,4), [2,6); frames 2,3 are averaged.
        let data = frames(6);
        let out = offline(4, 2, &data);
        let mut s = WindowMeanScorer {
            n_mels: 3,
            n_classes: 2,
            min_frames: 4,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        s.score(&data[..12], 4, &mut a).unwrap();
        s.score(&data[6..], 4, &mut b).unwrap();
        let expect_f2_c0 = (a[2 * 2] + b[0]) / 2.0;
        assert!((out[2 * 2] - expect_f2_c0).abs() < 1e-7);
        assert!((out[0] - a[0]).abs() < 1e-7);
        assert!((out[5 * 2 + 1] - b[3 * 2 + 1]).abs() < 1e-7);
    }

    #[test]
    fn the_energy_gate_skips_quiet_windows_and_still_emits_their_frames() {
        let data = frames(40);
        let mut r = runner(10, 5, 4);
        r.set_energy_gate(Some(-60.0));
        let mut levels = vec![-90.0f32; 40];
        // One loud frame in [20, 25): only windows covering it are scored.
        levels[22] = -10.0;
        let mut out = Vec::new();
        r.push_with_levels(&data, &levels, &mut out).unwrap();
        r.finish(&mut out).unwrap();
        assert_eq!(out.len(), 40 * 2);
        // Windows start at 0,5,…,30: those covering frame 22 start at 15 and 20.
        assert_eq!(r.windows_run(), 2);
        assert_eq!(r.windows_gated(), 5);
        assert!(out[..10 * 2].iter().all(|p| *p == 0.0));
        assert!(out[22 * 2] > 0.0);
        let mut r = runner(10, 5, 4);
        assert!(r.push_with_levels(&data, &levels[..3], &mut out).is_err());
    }

    #[test]
    fn short_input_is_padded_to_the_scorer_minimum() {
        let out = offline(10, 5, &frames(2));
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn rejects_ragged_frames_and_bad_geometry() {
        let mut r = runner(10, 5, 4);
        assert!(r.push(&[0.0; 4], &mut Vec::new()).is_err());
        assert!(StreamingRunner::new(
            Box::new(WindowMeanScorer {
                n_mels: 3,
                n_classes: 2,
                min_frames: 1
            }),
            StreamingConfig::new(4, 5)
        )
        .is_err());
        let too_far = StreamingConfig {
            lookahead_frames: Some(4),
            ..StreamingConfig::new(4, 2)
        };
        let e = too_far.validate().unwrap_err();
        assert!(e.contains("lookahead_frames = 4"), "{e}");
        assert!(StreamingConfig {
            lookahead_frames: Some(3),
            ..StreamingConfig::new(4, 2)
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn a_lookahead_of_at_least_w_minus_h_is_full_averaging() {
        let data = frames(57);
        let full = offline(12, 3, &data);
        for l in [9, 10, 11] {
            assert_eq!(offline_l(12, 3, Some(l), &data), full, "L = {l}");
        }
        assert_ne!(offline_l(12, 3, Some(8), &data), full);
    }

    #[test]
    fn lookahead_zero_takes_each_frame_from_the_first_window_covering_it() {
        // W=4, H=2: windows [0,4), [2,6), [4,8); with L=0 frames 0–3 come from the
        // first, 4–5 from the second, 6–7 from the third (the end-of-stream window).
        let data = frames(8);
        let out = offline_l(4, 2, Some(0), &data);
        let mut s = WindowMeanScorer {
            n_mels: 3,
            n_classes: 2,
            min_frames: 4,
        };
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        s.score(&data[..12], 4, &mut a).unwrap();
        s.score(&data[6..18], 4, &mut b).unwrap();
        s.score(&data[12..], 4, &mut c).unwrap();
        let mut want = a.clone();
        want.extend_from_slice(&b[4..]);
        want.extend_from_slice(&c[4..]);
        assert_eq!(out, want);
    }

    #[test]
    fn every_frame_is_final_within_the_bounded_delay() {
        for (w, h, l) in [
            (10, 4, Some(0)),
            (10, 4, Some(3)),
            (10, 2, Some(1)),
            (10, 4, None),
        ] {
            let cfg = StreamingConfig {
                window_frames: w,
                hop_frames: h,
                lookahead_frames: l,
            };
            let delay = cfg.max_delay_frames();
            let data = frames(60);
            let mut r = runner_l(w, h, l, 4);
            let mut out = Vec::new();
            let mut worst = 0;
            // Frame by frame: a frame `f` that becomes final while frame `i` is being
            // pushed waited `i - f` frames. The first window needs W frames, so the
            // bound holds from frame W on (the start of a stream).
            for i in 0..60 {
                let before = out.len() / 2;
                r.push(&data[i * 3..(i + 1) * 3], &mut out).unwrap();
                for f in before.max(w)..out.len() / 2 {
                    worst = worst.max(i - f);
                }
            }
            assert!(
                worst <= delay,
                "W={w} H={h} L={l:?}: waited {worst} > {delay}"
            );
            // and the bound is tight once the stream is in steady state
            assert_eq!(worst, delay, "W={w} H={h} L={l:?}");
        }
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_offline_scores(
            n in 0usize..80,
            w in 4usize..16,
            h_frac in 1usize..=4,
            l in proptest::option::of(0usize..16),
            cuts in proptest::collection::vec(0usize..20, 0..30),
        ) {
            let h = (w * h_frac / 4).max(1);
            let l = l.map(|l| l % w);
            let data = frames(n);
            let want = offline_l(w, h, l, &data);
            let mut r = runner_l(w, h, l, 4);
            let mut got = Vec::new();
            let mut pos = 0;
            for c in cuts {
                let end = (pos + c).min(n);
                r.push(&data[pos * 3..end * 3], &mut got).unwrap();
                pos = end;
            }
            r.push(&data[pos * 3..], &mut got).unwrap();
            r.finish(&mut got).unwrap();
            prop_assert_eq!(got, want);
        }
    }
}
