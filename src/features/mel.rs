//! Mel filterbank compatible with `librosa.filters.mel`, stored sparsely.
//!
//! The triangular filters are computed in f64 with librosa's formulas (Slaney or HTK
//! scale, Slaney area normalisation or none) and rounded to f32 the way librosa does.
//! Each filter keeps only its first non-zero FFT bin and its contiguous weights, so
//! applying the bank costs one multiply-add per non-zero weight, and the STFT only
//! needs the bins in [`MelFilterbank::used_bins`].

use std::ops::Range;

use super::{FeatureConfig, FeatureError, MelNorm, MelScale};

/// Slaney scale: linear part's Hz per mel (`200 / 3`).
const SLANEY_F_SP: f64 = 200.0 / 3.0;
/// Slaney scale: start of the logarithmic part, Hz.
const SLANEY_MIN_LOG_HZ: f64 = 1000.0;
/// Slaney scale: start of the logarithmic part, mel.
const SLANEY_MIN_LOG_MEL: f64 = SLANEY_MIN_LOG_HZ / SLANEY_F_SP;

/// Slaney scale: log step per mel above 1 kHz, `ln(6.4) / 27`.
fn slaney_logstep() -> f64 {
    6.4f64.ln() / 27.0
}

/// Hz → mel, as `librosa.hz_to_mel(f, htk=...)`.
pub fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Slaney => {
            if hz >= SLANEY_MIN_LOG_HZ {
                SLANEY_MIN_LOG_MEL + (hz / SLANEY_MIN_LOG_HZ).ln() / slaney_logstep()
            } else {
                hz / SLANEY_F_SP
            }
        }
    }
}

/// Mel → Hz, as `librosa.mel_to_hz(m, htk=...)`.
pub fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney => {
            if mel >= SLANEY_MIN_LOG_MEL {
                SLANEY_MIN_LOG_HZ * (slaney_logstep() * (mel - SLANEY_MIN_LOG_MEL)).exp()
            } else {
                SLANEY_F_SP * mel
            }
        }
    }
}

/// `n` frequencies equally spaced on the mel scale from `fmin` to `fmax` inclusive, as
/// `librosa.mel_frequencies` (including `numpy.linspace`'s rounding: `i * step + start`,
/// the last point set to the end exactly).
pub fn mel_frequencies(n: usize, fmin: f64, fmax: f64, scale: MelScale) -> Vec<f64> {
    let lo = hz_to_mel(fmin, scale);
    let hi = hz_to_mel(fmax, scale);
    let step = if n > 1 {
        (hi - lo) / (n - 1) as f64
    } else {
        0.0
    };
    (0..n)
        .map(|i| {
            let m = if n > 1 && i == n - 1 {
                hi
            } else {
                i as f64 * step + lo
            };
            mel_to_hz(m, scale)
        })
        .collect()
}

/// Centre frequency of each of the `n_fft / 2 + 1` FFT bins, as `numpy.fft.rfftfreq`.
pub fn fft_frequencies(sample_rate: f64, n_fft: usize) -> Vec<f64> {
    let val = 1.0 / (n_fft as f64 * (1.0 / sample_rate));
    (0..n_fft / 2 + 1).map(|k| k as f64 * val).collect()
}

/// A mel filterbank (`n_mels` × `n_fft / 2 + 1`) stored as one contiguous run of
/// non-zero weights per filter.
#[derive(Debug, Clone, PartialEq)]
pub struct MelFilterbank {
    /// Number of filters (mel bands).
    n_mels: usize,
    /// Number of FFT bins the bank is defined on (`n_fft / 2 + 1`).
    n_bins: usize,
    /// Where each filter's weights are.
    filters: Vec<Filter>,
    /// All non-zero runs, filter after filter, each followed by zeros up to a multiple
    /// of [`LANES`] values.
    weights: Vec<f32>,
    /// Smallest range of bins covering every non-zero weight.
    used: Range<usize>,
    /// Length of the spectrum slice [`MelFilterbank::apply`] reads, padding included.
    span: usize,
}

/// Accumulators (and weight padding) of the filterbank's dot products.
const LANES: usize = 8;

/// One filter of a [`MelFilterbank`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Filter {
    /// First FFT bin with a non-zero weight (0 for an empty filter).
    first_bin: usize,
    /// Start of its weights in `MelFilterbank::weights`.
    offset: usize,
    /// Number of weights from the first to the last non-zero one.
    len: usize,
    /// `len` rounded up to a multiple of [`LANES`] (stored zeros after `len`).
    padded: usize,
}

impl MelFilterbank {
    /// Builds the bank of `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk, norm)`
    /// (float32 output). Filters that end up empty (too many mels for the FFT size) are
    /// kept and give 0, as in librosa.
    pub fn new(
        sample_rate: f64,
        n_fft: usize,
        n_mels: usize,
        fmin: f64,
        fmax: f64,
        scale: MelScale,
        norm: MelNorm,
    ) -> Result<Self, FeatureError> {
        let bad = |field: &'static str, value: String, expected: String| {
            Err(FeatureError::InvalidConfig {
                field,
                value,
                expected,
            })
        };
        if !(sample_rate.is_finite() && sample_rate > 0.0) {
            return bad("sample_rate", sample_rate.to_string(), "> 0 Hz".into());
        }
        if n_fft < 2 {
            return bad("n_fft", n_fft.to_string(), "at least 2".into());
        }
        if n_mels == 0 {
            return bad("n_mels", "0".into(), "at least 1".into());
        }
        if !(fmin.is_finite() && fmin >= 0.0) {
            return bad("fmin", fmin.to_string(), "a finite frequency ≥ 0 Hz".into());
        }
        if !(fmax.is_finite() && fmax > fmin) {
            return bad(
                "fmax",
                fmax.to_string(),
                format!("a finite frequency > fmin = {fmin} Hz"),
            );
        }
        let freqs = fft_frequencies(sample_rate, n_fft);
        let mel_f = mel_frequencies(n_mels + 2, fmin, fmax, scale);
        let n_bins = freqs.len();
        let mut filters = Vec::with_capacity(n_mels);
        let mut weights = Vec::new();
        let mut used_lo = n_bins;
        let mut used_hi = 0;
        let mut row = vec![0.0f32; n_bins];
        for i in 0..n_mels {
            let (f0, f1, f2) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
            let (d0, d1) = (f1 - f0, f2 - f1);
            // librosa: weights[i] = max(0, min(-ramps[i] / fdiff[i], ramps[i+2] / fdiff[i+1]))
            // stored as float32, then (Slaney) multiplied in f64 by 2 / (f2 - f0) and
            // rounded to float32 again.
            let enorm = 2.0 / (f2 - f0);
            for (w, &f) in row.iter_mut().zip(&freqs) {
                let lower = -(f0 - f) / d0;
                let upper = (f2 - f) / d1;
                let tri = 0f64.max(lower.min(upper)) as f32;
                *w = match norm {
                    MelNorm::Slaney => (f64::from(tri) * enorm) as f32,
                    MelNorm::None => tri,
                };
            }
            match (
                row.iter().position(|&w| w > 0.0),
                row.iter().rposition(|&w| w > 0.0),
            ) {
                (Some(lo), Some(hi)) => {
                    let len = hi + 1 - lo;
                    let padded = len.div_ceil(LANES) * LANES;
                    filters.push(Filter {
                        first_bin: lo,
                        offset: weights.len(),
                        len,
                        padded,
                    });
                    weights.extend_from_slice(&row[lo..=hi]);
                    weights.resize(weights.len() + padded - len, 0.0);
                    used_lo = used_lo.min(lo);
                    used_hi = used_hi.max(hi + 1);
                }
                _ => {
                    tracing::warn!(
                        band = i,
                        n_mels,
                        n_fft,
                        "empty mel filter: it will always be 0; use fewer mels or a larger n_fft"
                    );
                    filters.push(Filter {
                        first_bin: 0,
                        offset: weights.len(),
                        len: 0,
                        padded: 0,
                    });
                }
            }
        }
        let used = if used_lo < used_hi {
            used_lo..used_hi
        } else {
            0..0
        };
        let span = filters
            .iter()
            .map(|f| f.first_bin.saturating_sub(used.start) + f.padded)
            .max()
            .unwrap_or(0)
            .max(used.len());
        Ok(Self {
            n_mels,
            n_bins,
            filters,
            weights,
            used,
            span,
        })
    }

    /// The bank `cfg` asks for (`sample_rate`, `n_fft`, `n_mels`, `fmin`, `fmax`,
    /// `mel_scale`, `mel_norm`).
    pub fn from_config(cfg: &FeatureConfig) -> Result<Self, FeatureError> {
        Self::new(
            f64::from(cfg.sample_rate),
            cfg.n_fft,
            cfg.n_mels,
            f64::from(cfg.fmin),
            f64::from(cfg.fmax),
            cfg.mel_scale,
            cfg.mel_norm,
        )
    }

    /// Number of filters.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Number of FFT bins the bank is defined on (`n_fft / 2 + 1`).
    pub fn n_bins(&self) -> usize {
        self.n_bins
    }

    /// The FFT bins with a non-zero weight in some filter; the spectrum passed to
    /// [`MelFilterbank::apply`] covers exactly these.
    pub fn used_bins(&self) -> Range<usize> {
        self.used.clone()
    }

    /// Number of weights from each filter's first to last non-zero one, summed.
    pub fn n_weights(&self) -> usize {
        self.filters.iter().map(|f| f.len).sum()
    }

    /// Length of the spectrum buffer [`MelFilterbank::apply`] reads: the
    /// [`MelFilterbank::used_bins`] followed by zeros (padding that lets every filter run
    /// in whole blocks of 8).
    pub fn spectrum_len(&self) -> usize {
        self.span
    }

    /// Filter `m` as `(first bin, weights)`; `None` when `m >= n_mels`.
    pub fn filter(&self, m: usize) -> Option<(usize, &[f32])> {
        let f = self.filters.get(m)?;
        Some((f.first_bin, &self.weights[f.offset..f.offset + f.len]))
    }

    /// Mel energies of one frame: `out[m] = Σ_k W[m, k] · spectrum[k - used.start]`.
    ///
    /// `spectrum` holds the bins [`MelFilterbank::used_bins`] (its first element is bin
    /// `used_bins().start`), best followed by zeros up to [`MelFilterbank::spectrum_len`]
    /// (then every filter runs in whole blocks of 8); `out` has `n_mels` elements.
    /// Shorter slices are treated as zero-padded / truncated, never a panic.
    pub fn apply(&self, spectrum: &[f32], out: &mut [f32]) {
        let base = self.used.start;
        for (o, f) in out.iter_mut().zip(&self.filters) {
            let start = f.first_bin.saturating_sub(base);
            *o = match spectrum.get(start..start + f.padded) {
                Some(s) => dot_blocks(&self.weights[f.offset..f.offset + f.padded], s),
                None => {
                    let s = &spectrum[start.min(spectrum.len())..];
                    let w = &self.weights[f.offset..f.offset + f.len];
                    w.iter().zip(s).map(|(a, b)| a * b).sum()
                }
            };
        }
    }

    /// The dense matrix, row-major `(n_mels, n_bins)`, as `librosa.filters.mel` returns.
    pub fn to_dense(&self) -> Vec<f32> {
        let mut d = vec![0.0f32; self.n_mels * self.n_bins];
        for m in 0..self.n_mels {
            if let Some((first, w)) = self.filter(m) {
                let row = &mut d[m * self.n_bins..(m + 1) * self.n_bins];
                row[first..first + w.len()].copy_from_slice(w);
            }
        }
        d
    }
}

/// `Σ a[i]·b[i]` for slices whose length is a multiple of [`LANES`] (a ragged tail is
/// ignored), with [`LANES`] independent accumulators so the compiler can vectorise it (a
/// single f32 running sum cannot be reordered).
fn dot_blocks(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_trip_and_match_librosa_points() {
        for scale in [MelScale::Slaney, MelScale::Htk] {
            for hz in [0.0, 50.0, 440.0, 999.9, 1000.0, 4000.0, 11025.0] {
                let back = mel_to_hz(hz_to_mel(hz, scale), scale);
                assert!(
                    (back - hz).abs() < 1e-9 * hz.max(1.0),
                    "{scale:?} {hz} {back}"
                );
            }
        }
        // Printed by librosa 0.11: hz_to_mel(1000) = 15.0, hz_to_mel(440) = 6.6,
        // hz_to_mel(4000) = 35.163760314616646, hz_to_mel(1000, htk=True) =
        // 999.9855371396244, mel_to_hz(30) = 2804.6441307389214.
        assert!((hz_to_mel(1000.0, MelScale::Slaney) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(440.0, MelScale::Slaney) - 6.6).abs() < 1e-12);
        assert!((hz_to_mel(4000.0, MelScale::Slaney) - 35.163_760_314_616_646).abs() < 1e-9);
        assert!((hz_to_mel(1000.0, MelScale::Htk) - 999.985_537_139_624_4).abs() < 1e-9);
        assert!((mel_to_hz(30.0, MelScale::Slaney) - 2_804.644_130_738_921_4).abs() < 1e-8);
    }

    #[test]
    fn linspace_ends_are_exact() {
        let f = mel_frequencies(10, 50.0, 8000.0, MelScale::Slaney);
        assert_eq!(f.len(), 10);
        assert!((f[0] - 50.0).abs() < 1e-9 && (f[9] - 8000.0).abs() < 1e-9);
        assert!(f.windows(2).all(|p| p[1] > p[0]));
    }

    #[test]
    fn sparse_apply_equals_dense_product() {
        let cfg = FeatureConfig::default();
        let fb = MelFilterbank::from_config(&cfg).unwrap();
        let dense = fb.to_dense();
        let n_bins = fb.n_bins();
        assert_eq!(n_bins, cfg.n_fft / 2 + 1);
        let spec: Vec<f32> = (0..n_bins).map(|k| 1.0 + (k % 17) as f32 * 0.25).collect();
        let used = fb.used_bins();
        let mut got = vec![0.0; fb.n_mels()];
        fb.apply(&spec[used.clone()], &mut got);
        // With the zero padding the fast path gives the same within rounding.
        let mut padded = spec[used.clone()].to_vec();
        padded.resize(fb.spectrum_len(), 0.0);
        let mut fast = vec![0.0; fb.n_mels()];
        fb.apply(&padded, &mut fast);
        for (a, b) in got.iter().zip(&fast) {
            assert!((a - b).abs() <= 1e-5 * b.abs(), "{a} vs {b}");
        }
        for m in 0..fb.n_mels() {
            let want: f64 = (0..n_bins)
                .map(|k| f64::from(dense[m * n_bins + k]) * f64::from(spec[k]))
                .sum();
            assert!((f64::from(got[m]) - want).abs() <= 1e-5 * want, "{m}");
        }
        // Nothing outside `used` carries weight; used is tight.
        for m in 0..fb.n_mels() {
            for k in (0..used.start).chain(used.end..n_bins) {
                assert_eq!(dense[m * n_bins + k], 0.0);
            }
        }
        assert!(fb.n_weights() < dense.len() / 10, "{}", fb.n_weights());
    }

    #[test]
    fn slaney_norm_gives_unit_area_in_hz_and_none_peaks_below_one() {
        // Slaney: each triangle integrates to ~1 over Hz (2 / width × width / 2).
        let fb = MelFilterbank::new(
            16000.0,
            4096,
            32,
            0.0,
            8000.0,
            MelScale::Slaney,
            MelNorm::Slaney,
        )
        .unwrap();
        let df = 16000.0 / 4096.0;
        for m in 4..32 {
            let (_, w) = fb.filter(m).unwrap();
            let area: f64 = w.iter().map(|&v| f64::from(v) * df).sum();
            assert!((area - 1.0).abs() < 0.02, "band {m}: {area}");
        }
        let fb = MelFilterbank::new(16000.0, 512, 20, 0.0, 8000.0, MelScale::Htk, MelNorm::None)
            .unwrap();
        for m in 0..20 {
            let (_, w) = fb.filter(m).unwrap();
            assert!(w.iter().all(|&v| v > 0.0 && v <= 1.0));
        }
    }

    #[test]
    fn empty_filters_are_kept_as_zero() {
        // 128 mels from a 64-point FFT: many filters fall between bins.
        let fb = MelFilterbank::new(
            16000.0,
            64,
            128,
            0.0,
            8000.0,
            MelScale::Slaney,
            MelNorm::Slaney,
        )
        .unwrap();
        assert_eq!(fb.n_mels(), 128);
        let spec = vec![1.0f32; fb.used_bins().len()];
        let mut out = vec![f32::NAN; 128];
        fb.apply(&spec, &mut out);
        assert!(out.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert!(out.contains(&0.0));
    }

    #[test]
    fn bad_ranges_are_named() {
        let e = MelFilterbank::new(16000.0, 512, 40, 300.0, 200.0, MelScale::Htk, MelNorm::None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fmax") && e.contains("200"), "{e}");
    }
}
