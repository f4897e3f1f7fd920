//! Streaming, anti-aliased sample-rate conversion of mono `f32` to the model's rate.
//!
//! [`Resampler`] wraps a rubato resampler built once at start: the synchronous FFT
//! resampler when the two rates have a small common period (every usual device rate:
//! 8/11.025/16/22.05/32/44.1/48/96 kHz), otherwise the asynchronous sinc resampler. Both
//! low-pass below the lower Nyquist frequency, so content above it is removed rather
//! than aliased (never decimation by `step_by`).
//!
//! Input arrives in arbitrary pieces; it is buffered into the resampler's fixed chunk,
//! so the output does not depend on how the input was split. The resampler's delay is
//! trimmed from the start of the output: output sample `j` is the signal at input time
//! `j / to_hz` seconds (exactly for the FFT resampler; within one output sample for the
//! sinc fallback, whose delay is fractional). [`Resampler::finish`] flushes the tail so
//! that the total output holds exactly `round(n_in · to / from)` samples.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, Fft, FixedAsync, FixedSync, SincInterpolationParameters, WindowFunction};

use super::AudioError;

/// Target chunk size (input frames per resampler call).
const CHUNK: usize = 1024;
/// Largest reduced rate period (rate / gcd) the FFT resampler is used for; beyond it the
/// FFT block would be long (latency, memory) and the sinc resampler is used instead.
const MAX_FFT_PERIOD: u32 = 2048;
/// Sinc filter length of the asynchronous fallback.
const SINC_LEN: usize = 256;

/// Streaming mono resampler from `from_hz` to `to_hz` (passthrough when they are equal).
pub struct Resampler {
    /// Input rate, Hz.
    from: u32,
    /// Output rate, Hz.
    to: u32,
    /// The rubato resampler, mono; `None` for passthrough.
    inner: Option<Box<dyn rubato::Resampler<f32> + Send>>,
    /// Input frames per call to `inner` (fixed).
    chunk_in: usize,
    /// Input not yet processed, always shorter than `chunk_in`.
    pending: Vec<f32>,
    /// Output scratch for one call, `output_frames_max` long.
    scratch: Vec<f32>,
    /// The resampler's delay in output frames.
    delay: usize,
    /// Output frames still to drop from the start (the delay).
    to_trim: usize,
    /// Input samples taken so far.
    n_in: u64,
    /// Output samples appended so far.
    n_out: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("passthrough", &self.inner.is_none())
            .field("chunk_in", &self.chunk_in)
            .field("delay", &self.delay)
            .finish()
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Resampler {
    /// Builds a resampler from `from_hz` to `to_hz` (both > 0). All buffers and filter
    /// tables are allocated here.
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, AudioError> {
        let err = |reason: String| AudioError::Resample {
            from: from_hz,
            to: to_hz,
            reason,
        };
        if from_hz == 0 || to_hz == 0 {
            return Err(err("sample rates must be positive".into()));
        }
        if from_hz == to_hz {
            return Ok(Self {
                from: from_hz,
                to: to_hz,
                inner: None,
                chunk_in: 0,
                pending: Vec::new(),
                scratch: Vec::new(),
                delay: 0,
                to_trim: 0,
                n_in: 0,
                n_out: 0,
            });
        }
        let g = gcd(from_hz, to_hz);
        let inner: Box<dyn rubato::Resampler<f32> + Send> =
            if from_hz / g <= MAX_FFT_PERIOD && to_hz / g <= MAX_FFT_PERIOD {
                // An even number of minimal blocks makes both FFT sizes even, so the
                // delay (half the block) is a whole number of samples on both sides and
                // trimming it aligns the output exactly (odd sizes leave half an input
                // sample of lag).
                let period = (from_hz / g) as usize;
                let hint = CHUNK.div_ceil(2 * period) * 2 * period;
                Box::new(
                    Fft::<f32>::new(from_hz as usize, to_hz as usize, hint, 1, FixedSync::Both)
                        .map_err(|e| err(e.to_string()))?,
                )
            } else {
                let params =
                    SincInterpolationParameters::new(SINC_LEN, WindowFunction::BlackmanHarris2);
                Box::new(
                    Async::<f32>::new_sinc(
                        f64::from(to_hz) / f64::from(from_hz),
                        1.0,
                        &params,
                        CHUNK,
                        1,
                        FixedAsync::Input,
                    )
                    .map_err(|e| err(e.to_string()))?,
                )
            };
        let chunk_in = inner.input_frames_next();
        let scratch = vec![0.0; inner.output_frames_max()];
        let delay = inner.output_delay();
        Ok(Self {
            from: from_hz,
            to: to_hz,
            inner: Some(inner),
            chunk_in,
            pending: Vec::with_capacity(chunk_in),
            scratch,
            delay,
            to_trim: delay,
            n_in: 0,
            n_out: 0,
        })
    }

    /// Input rate, Hz.
    pub fn from_hz(&self) -> u32 {
        self.from
    }

    /// Output rate, Hz.
    pub fn to_hz(&self) -> u32 {
        self.to
    }

    /// Whether this is a passthrough (equal rates).
    pub fn is_passthrough(&self) -> bool {
        self.inner.is_none()
    }

    /// Appends resampled output to `out`. The output does not depend on how the input
    /// is split into calls.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        self.n_in += input.len() as u64;
        let (from, to) = (self.from, self.to);
        let err = move |reason| AudioError::Resample { from, to, reason };
        let Some(inner) = self.inner.as_deref_mut() else {
            out.extend_from_slice(input);
            self.n_out += input.len() as u64;
            return Ok(());
        };
        let mut input = input;
        let chunk = self.chunk_in;
        if !self.pending.is_empty() {
            let take = (chunk - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() < chunk {
                return Ok(());
            }
            run_chunk(
                inner,
                &self.pending,
                &mut self.scratch,
                &mut self.to_trim,
                out,
                &mut self.n_out,
            )
            .map_err(err)?;
            self.pending.clear();
        }
        while input.len() >= chunk {
            run_chunk(
                inner,
                &input[..chunk],
                &mut self.scratch,
                &mut self.to_trim,
                out,
                &mut self.n_out,
            )
            .map_err(err)?;
            input = &input[chunk..];
        }
        self.pending.extend_from_slice(input);
        Ok(())
    }

    /// End of stream: flushes the buffered input and the resampler's tail (fed with
    /// silence) so that the total output is `round(n_in · to / from)` samples. Call
    /// [`Resampler::reset`] before reusing the resampler for a new stream.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        let (from, to) = (self.from, self.to);
        let err = move |reason| AudioError::Resample { from, to, reason };
        let Some(inner) = self.inner.as_deref_mut() else {
            return Ok(());
        };
        let target = (self.n_in as u128 * u128::from(self.to) + u128::from(self.from) / 2)
            / u128::from(self.from);
        let target = target as u64;
        let start = out.len();
        let chunk = self.chunk_in;
        // The partial chunk, padded with silence, then silence until the target is reached.
        self.pending.resize(chunk, 0.0);
        while self.n_out < target {
            run_chunk(
                inner,
                &self.pending,
                &mut self.scratch,
                &mut self.to_trim,
                out,
                &mut self.n_out,
            )
            .map_err(err)?;
            self.pending.fill(0.0);
        }
        self.pending.clear();
        if self.n_out > target {
            let excess = (self.n_out - target) as usize;
            let keep = out.len().saturating_sub(excess).max(start);
            self.n_out -= (out.len() - keep) as u64;
            out.truncate(keep);
        }
        Ok(())
    }

    /// Forgets all state (buffered input, filter history, counts) for a new stream.
    pub fn reset(&mut self) {
        if let Some(inner) = self.inner.as_deref_mut() {
            inner.reset();
        }
        self.pending.clear();
        self.to_trim = self.delay;
        self.n_in = 0;
        self.n_out = 0;
    }
}

/// Runs one full chunk through `inner` and appends the output, minus the part of the
/// delay still to trim, to `out`.
fn run_chunk(
    inner: &mut (dyn rubato::Resampler<f32> + Send),
    chunk: &[f32],
    scratch: &mut [f32],
    to_trim: &mut usize,
    out: &mut Vec<f32>,
    n_out: &mut u64,
) -> Result<(), String> {
    let input = InterleavedSlice::new(chunk, 1, chunk.len()).map_err(|e| e.to_string())?;
    let frames = scratch.len();
    let mut output = InterleavedSlice::new_mut(scratch, 1, frames).map_err(|e| e.to_string())?;
    let (_, written) = inner
        .process_into_buffer(&input, &mut output, None)
        .map_err(|e| e.to_string())?;
    let skip = (*to_trim).min(written);
    *to_trim -= skip;
    out.extend_from_slice(&scratch[skip..written]);
    *n_out += (written - skip) as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    #[test]
    fn passthrough_copies_exactly() {
        let mut r = Resampler::new(16_000, 16_000).unwrap();
        assert!(r.is_passthrough());
        let x = sine(440.0, 16_000, 1000, 0.5);
        let mut out = Vec::new();
        r.process(&x, &mut out).unwrap();
        r.finish(&mut out).unwrap();
        assert_eq!(out.len(), x.len());
        assert!(out.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-9));
    }

    #[test]
    fn total_length_is_the_rounded_ratio() {
        for &(from, to, n) in &[
            (44_100u32, 16_000u32, 12_345usize),
            (48_000, 16_000, 100),
            (8_000, 16_000, 4_321),
            (22_050, 16_000, 1),
            (44_101, 16_000, 30_000),
        ] {
            let mut r = Resampler::new(from, to).unwrap();
            let mut out = Vec::new();
            r.process(&vec![0.1; n], &mut out).unwrap();
            r.finish(&mut out).unwrap();
            let want = ((n as f64) * f64::from(to) / f64::from(from)).round() as usize;
            assert_eq!(out.len(), want, "{from}->{to}, n={n}");
        }
    }

    #[test]
    fn zero_rate_is_an_error_naming_the_rates() {
        let e = Resampler::new(0, 16_000).unwrap_err();
        assert!(
            e.to_string().contains("0 Hz") && e.to_string().contains("positive"),
            "{e}"
        );
    }

    #[test]
    fn reset_gives_the_same_output_again() {
        let x = sine(1000.0, 48_000, 5000, 0.3);
        let mut r = Resampler::new(48_000, 16_000).unwrap();
        let mut a = Vec::new();
        r.process(&x, &mut a).unwrap();
        r.finish(&mut a).unwrap();
        r.reset();
        let mut b = Vec::new();
        r.process(&x, &mut b).unwrap();
        r.finish(&mut b).unwrap();
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-6));
    }
}
