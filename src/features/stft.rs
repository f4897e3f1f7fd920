//! One STFT frame at a time: window, real FFT (realfft), magnitude or power spectrum.
//!
//! [`Stft`] owns its FFT plan, window and scratch buffers, all made once in
//! [`Stft::new`]; [`Stft::power_spectrum`] then transforms a frame without allocating.
//! The window is periodic (as `scipy.signal.get_window(..., fftbins=True)`, which librosa
//! uses) and, when shorter than `n_fft`, zero-padded and centred in the frame exactly as
//! `librosa.util.pad_center` does. Framing (hop, centre padding) is the caller's job:
//! see [`super::frontend`].

use std::ops::Range;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use super::{FeatureError, WindowKind};

/// Exponent applied to the magnitude spectrum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpectrumPower {
    /// `|X|` (librosa `power=1`).
    Magnitude,
    /// `|X|²` (librosa `power=2`).
    Power,
}

impl SpectrumPower {
    /// Maps `FeatureConfig::power` (1 or 2) to the enum; anything else is an error.
    pub fn from_exponent(power: f32) -> Result<Self, FeatureError> {
        if power == 1.0 {
            Ok(Self::Magnitude)
        } else if power == 2.0 {
            Ok(Self::Power)
        } else {
            Err(FeatureError::InvalidConfig {
                field: "power",
                value: power.to_string(),
                expected: "1 or 2".to_string(),
            })
        }
    }
}

/// The `win_length`-sample periodic window of `kind`, in f64 (as scipy computes it).
///
/// `w[n] = a - (1 - a) cos(2π n / win_length)` with `a = 0.5` (Hann) or `0.54` (Hamming).
pub fn periodic_window(kind: WindowKind, win_length: usize) -> Vec<f64> {
    let a = match kind {
        WindowKind::Hann => 0.5,
        WindowKind::Hamming => 0.54,
    };
    let m = win_length as f64;
    (0..win_length)
        .map(|n| a - (1.0 - a) * (2.0 * std::f64::consts::PI * n as f64 / m).cos())
        .collect()
}

/// The analysis window as librosa applies it: [`periodic_window`] of `win_length`
/// samples, centred in `n_fft` samples with zeros (`librosa.util.pad_center`: the left
/// pad is `(n_fft - win_length) / 2`, rounded down), rounded to f32.
pub fn padded_window(
    kind: WindowKind,
    win_length: usize,
    n_fft: usize,
) -> Result<Vec<f32>, FeatureError> {
    if win_length == 0 || win_length > n_fft {
        return Err(FeatureError::InvalidConfig {
            field: "win_length",
            value: win_length.to_string(),
            expected: format!("1..=n_fft = 1..={n_fft}"),
        });
    }
    let left = (n_fft - win_length) / 2;
    let mut w = vec![0.0f32; n_fft];
    for (dst, src) in w[left..left + win_length]
        .iter_mut()
        .zip(periodic_window(kind, win_length))
    {
        *dst = src as f32;
    }
    Ok(w)
}

/// A reusable single-frame STFT: window → real FFT → `|X|` or `|X|²`.
///
/// All buffers are allocated in [`Stft::new`]; [`Stft::power_spectrum`] does not allocate.
pub struct Stft {
    /// FFT size in samples (the frame length).
    n_fft: usize,
    /// Non-zero span of the window inside the frame (`pad_center` offsets).
    win_range: Range<usize>,
    /// Window values on `win_range` (the zero padding is not stored).
    window: Vec<f32>,
    /// Forward real FFT plan of length `n_fft`.
    fft: Arc<dyn RealToComplex<f32>>,
    /// FFT input; realfft uses it as scratch, so it is refilled for every frame.
    input: Vec<f32>,
    /// FFT output, `n_fft / 2 + 1` bins.
    spectrum: Vec<Complex<f32>>,
    /// Scratch for `process_with_scratch`.
    scratch: Vec<Complex<f32>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("n_fft", &self.n_fft)
            .field("win_range", &self.win_range)
            .finish_non_exhaustive()
    }
}

impl Stft {
    /// Plans an `n_fft`-point real FFT with a `win_length` window of `kind` centred in it.
    pub fn new(n_fft: usize, win_length: usize, kind: WindowKind) -> Result<Self, FeatureError> {
        if n_fft < 2 {
            return Err(FeatureError::InvalidConfig {
                field: "n_fft",
                value: n_fft.to_string(),
                expected: "at least 2".to_string(),
            });
        }
        let full = padded_window(kind, win_length, n_fft)?;
        let left = (n_fft - win_length) / 2;
        let win_range = left..left + win_length;
        let window = full[win_range.clone()].to_vec();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n_fft);
        let input = fft.make_input_vec();
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        Ok(Self {
            n_fft,
            win_range,
            window,
            fft,
            input,
            spectrum,
            scratch,
        })
    }

    /// FFT size (frame length) in samples.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Number of frequency bins, `n_fft / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Windows `frame` and returns its complex spectrum (`n_fft / 2 + 1` bins, unscaled,
    /// the sign convention of `numpy.fft.rfft`).
    ///
    /// A `frame` shorter than `n_fft` is treated as zero-padded on the right; samples
    /// beyond `n_fft` are ignored.
    pub fn spectrum(&mut self, frame: &[f32]) -> &[Complex<f32>] {
        let r = self.win_range.clone();
        // Frame samples that exist inside the window span; the rest is zero.
        let avail = frame.len().clamp(r.start, r.end);
        self.input[..r.start].fill(0.0);
        for ((d, &x), &w) in self.input[r.start..avail]
            .iter_mut()
            .zip(&frame[r.start..avail])
            .zip(&self.window)
        {
            *d = x * w;
        }
        self.input[avail..].fill(0.0);
        if self
            .fft
            .process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch)
            .is_err()
        {
            // Unreachable: every buffer was made by the plan itself. Never hand out stale
            // numbers if it ever happened.
            tracing::error!(n_fft = self.n_fft, "realfft rejected its own buffers");
            self.spectrum.fill(Complex::new(0.0, 0.0));
        }
        &self.spectrum
    }

    /// Windows `frame`, transforms it and writes `|X[k]|` or `|X[k]|²` for every bin
    /// `k` in `bins` to `out` (`out.len() == bins.len()`; `bins` within `0..n_bins()`).
    ///
    /// Only the requested bins are computed after the FFT. Panics never: a `bins` range
    /// past the spectrum or an `out` of another length is clamped to what fits.
    pub fn power_spectrum(
        &mut self,
        frame: &[f32],
        power: SpectrumPower,
        bins: Range<usize>,
        out: &mut [f32],
    ) {
        let spectrum = self.spectrum(frame);
        let end = bins.end.min(spectrum.len());
        let start = bins.start.min(end);
        let src = &spectrum[start..end];
        match power {
            SpectrumPower::Power => {
                for (o, c) in out.iter_mut().zip(src) {
                    *o = c.re * c.re + c.im * c.im;
                }
            }
            SpectrumPower::Magnitude => {
                for (o, c) in out.iter_mut().zip(src) {
                    *o = (c.re * c.re + c.im * c.im).sqrt();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct O(N²) DFT in f64, the definition `numpy.fft.rfft` implements.
    fn dft(x: &[f64]) -> Vec<(f64, f64)> {
        let n = x.len();
        (0..n / 2 + 1)
            .map(|k| {
                x.iter().enumerate().fold((0.0, 0.0), |(re, im), (t, &v)| {
                    let ph = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                    (re + v * ph.cos(), im + v * ph.sin())
                })
            })
            .collect()
    }

    #[test]
    fn hann_matches_scipy_periodic_values() {
        // scipy.signal.get_window("hann", 8) = [0, .14644661, .5, .85355339, 1, .85355339, .5, .14644661]
        let w = periodic_window(WindowKind::Hann, 8);
        let want = [
            0.0,
            0.146_446_61,
            0.5,
            0.853_553_39,
            1.0,
            0.853_553_39,
            0.5,
            0.146_446_61,
        ];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-8, "{w:?}");
        }
        // scipy.signal.get_window("hamming", 4) = [0.08, 0.54, 1.0, 0.54]
        let h = periodic_window(WindowKind::Hamming, 4);
        for (a, b) in h.iter().zip([0.08, 0.54, 1.0, 0.54]) {
            assert!((a - b).abs() < 1e-12, "{h:?}");
        }
    }

    #[test]
    fn window_is_centred_like_pad_center() {
        // librosa.util.pad_center(np.ones(3), size=8) puts the ones at 2..5.
        let w = padded_window(WindowKind::Hamming, 3, 8).unwrap();
        assert_eq!(w.len(), 8);
        assert!(w[..2].iter().chain(&w[5..]).all(|&v| v == 0.0), "{w:?}");
        assert!(w[2..5].iter().all(|&v| v > 0.0), "{w:?}");
        assert!(padded_window(WindowKind::Hann, 9, 8).is_err());
    }

    #[test]
    fn spectrum_matches_direct_dft_even_and_odd() {
        for &(n_fft, win) in &[(64usize, 48usize), (45, 45), (33, 20)] {
            let frame: Vec<f32> = (0..n_fft)
                .map(|i| ((i * 7919 % 113) as f32 / 56.0 - 1.0) * 0.7)
                .collect();
            let w = padded_window(WindowKind::Hann, win, n_fft).unwrap();
            let xw: Vec<f64> = frame
                .iter()
                .zip(&w)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .collect();
            let want = dft(&xw);
            let mut stft = Stft::new(n_fft, win, WindowKind::Hann).unwrap();
            let got = stft.spectrum(&frame).to_vec();
            assert_eq!(got.len(), n_fft / 2 + 1);
            for (g, (re, im)) in got.iter().zip(&want) {
                assert!((f64::from(g.re) - re).abs() < 1e-5, "{n_fft}: {g} vs {re}");
                assert!((f64::from(g.im) - im).abs() < 1e-5, "{n_fft}: {g} vs {im}");
            }
            let mut pw = vec![0.0; 5];
            stft.power_spectrum(&frame, SpectrumPower::Power, 2..7, &mut pw);
            let mut mag = vec![0.0; 5];
            stft.power_spectrum(&frame, SpectrumPower::Magnitude, 2..7, &mut mag);
            for k in 0..5 {
                let (re, im) = want[k + 2];
                let p = re * re + im * im;
                assert!((f64::from(pw[k]) - p).abs() <= 1e-5 * p.max(1.0));
                assert!((f64::from(mag[k]) - p.sqrt()).abs() <= 1e-5 * p.sqrt().max(1.0));
            }
        }
    }

    #[test]
    fn short_frame_is_zero_padded_and_buffers_are_reset() {
        let mut stft = Stft::new(16, 16, WindowKind::Hann).unwrap();
        let mut long = vec![1.0f32; 16];
        long[8] = 3.0;
        let _ = stft.spectrum(&long);
        let short = stft.spectrum(&[0.0; 4]).to_vec();
        assert!(short.iter().all(|c| c.norm() == 0.0), "{short:?}");
    }

    #[test]
    fn power_exponent_is_checked() {
        assert_eq!(
            SpectrumPower::from_exponent(2.0).unwrap(),
            SpectrumPower::Power
        );
        assert_eq!(
            SpectrumPower::from_exponent(1.0).unwrap(),
            SpectrumPower::Magnitude
        );
        let e = SpectrumPower::from_exponent(1.5).unwrap_err().to_string();
        assert!(e.contains("power") && e.contains("1.5"), "{e}");
    }
}
