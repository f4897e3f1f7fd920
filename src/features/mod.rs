//! Log-mel front end: STFT (realfft) → mel filterbank → log, offline and streaming.
//!
//! One module computes features for training, offline detection and the daemon, so a
//! model always sees the features it was trained with. The settings live in
//! [`FeatureConfig`], which is stored in every model file.

use serde::{Deserialize, Serialize};

pub mod frontend;
pub mod mel;
pub mod stft;

pub use frontend::{logmel, logmel_into, logmel_parallel_into, n_frames, Frontend};

/// Errors of the feature front end.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// A field of [`FeatureConfig`] is out of range or inconsistent with another.
    #[error("invalid feature setting `{field}` = {value}: expected {expected}")]
    InvalidConfig {
        /// Name of the offending field.
        field: &'static str,
        /// The value found, formatted.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
}

/// Window function applied to each STFT frame (periodic, as librosa/scipy `get_window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Periodic Hann window.
    Hann,
    /// Periodic Hamming window.
    Hamming,
}

/// Frequency ↔ mel conversion, as librosa's `htk` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale (librosa default, `htk=False`).
    Slaney,
    /// HTK formula `2595 log10(1 + f/700)` (`htk=True`).
    Htk,
}

/// Filter normalisation, as librosa's `norm` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelNorm {
    /// Area normalisation (`norm="slaney"`, librosa default).
    Slaney,
    /// No normalisation (`norm=None`), peak 1.
    None,
}

/// Compression applied to mel energies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum LogScale {
    /// `ln(x + eps)`.
    Ln {
        /// Added before the logarithm; > 0.
        eps: f32,
    },
    /// `10 log10(max(x, amin))` (librosa `power_to_db` with `ref=1`, `top_db=None`;
    /// for power 1 the factor is still 10, as `power_to_db`). `top_db` is not
    /// offered because it depends on the whole signal and cannot stream.
    Db {
        /// Floor applied before the logarithm; > 0.
        amin: f32,
    },
}

/// Optional per-band standardisation after the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Normalization {
    /// Features are used as they are.
    None,
    /// `(x - mean[band]) / std[band]`, statistics fixed at training time.
    PerBand {
        /// One mean per mel band.
        mean: Vec<f32>,
        /// One standard deviation per mel band (> 0).
        std: Vec<f32>,
    },
}

/// Every setting of the front end. Stored in the model file (`features`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// Sample rate the model expects, Hz. Input at other rates is resampled.
    pub sample_rate: u32,
    /// FFT size in samples (≥ `win_length`).
    pub n_fft: usize,
    /// Window length in samples; the window is centred in the `n_fft` frame as librosa.
    pub win_length: usize,
    /// Hop between frames in samples.
    pub hop_length: usize,
    /// Window function.
    pub window: WindowKind,
    /// Pad `n_fft / 2` zeros on both sides so frame `i` is centred at `i * hop`
    /// (librosa `center=True, pad_mode="constant"`).
    pub center: bool,
    /// Number of mel bands.
    pub n_mels: usize,
    /// Lowest mel edge, Hz.
    pub fmin: f32,
    /// Highest mel edge, Hz (≤ sample_rate / 2).
    pub fmax: f32,
    /// Mel scale formula.
    pub mel_scale: MelScale,
    /// Filter normalisation.
    pub mel_norm: MelNorm,
    /// Exponent of the magnitude spectrum: 1 (magnitude) or 2 (power).
    pub power: f32,
    /// Log compression.
    pub log: LogScale,
    /// Standardisation after the log.
    pub normalization: Normalization,
}

impl Default for FeatureConfig {
    /// hark's own models: 16 kHz, 40 ms Hann window, 20 ms hop, n_fft 1024,
    /// 64 mels 50–8000 Hz, ln power.
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 1024,
            win_length: 640,
            hop_length: 320,
            window: WindowKind::Hann,
            center: true,
            n_mels: 64,
            fmin: 50.0,
            fmax: 8000.0,
            mel_scale: MelScale::Slaney,
            mel_norm: MelNorm::Slaney,
            power: 2.0,
            log: LogScale::Ln { eps: 1e-10 },
            normalization: Normalization::None,
        }
    }
}

impl FeatureConfig {
    /// Frames per second of audio (`sample_rate / hop_length`).
    pub fn frame_rate(&self) -> f64 {
        f64::from(self.sample_rate) / self.hop_length as f64
    }

    /// Seconds between consecutive frames.
    pub fn frame_period_s(&self) -> f64 {
        self.hop_length as f64 / f64::from(self.sample_rate)
    }

    /// Checks ranges and consistency; the error names the first bad field.
    pub fn validate(&self) -> Result<(), FeatureError> {
        fn bad(field: &'static str, value: impl ToString, expected: &str) -> FeatureError {
            FeatureError::InvalidConfig {
                field,
                value: value.to_string(),
                expected: expected.to_string(),
            }
        }
        if !(1000..=384_000).contains(&self.sample_rate) {
            return Err(bad("sample_rate", self.sample_rate, "1000..=384000 Hz"));
        }
        if !(16..=65_536).contains(&self.n_fft) {
            return Err(bad("n_fft", self.n_fft, "16..=65536"));
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return Err(bad("win_length", self.win_length, "1..=n_fft"));
        }
        if self.hop_length == 0 || self.hop_length > self.n_fft {
            return Err(bad("hop_length", self.hop_length, "1..=n_fft"));
        }
        if self.n_mels == 0 || self.n_mels > 1024 {
            return Err(bad("n_mels", self.n_mels, "1..=1024"));
        }
        let nyquist = self.sample_rate as f32 / 2.0;
        if !(self.fmin.is_finite() && self.fmin >= 0.0) {
            return Err(bad("fmin", self.fmin, "a finite frequency ≥ 0 Hz"));
        }
        if !(self.fmax.is_finite() && self.fmax > self.fmin && self.fmax <= nyquist) {
            return Err(bad(
                "fmax",
                self.fmax,
                &format!("fmin < fmax ≤ sample_rate/2 = {nyquist} Hz"),
            ));
        }
        if self.power != 1.0 && self.power != 2.0 {
            return Err(bad("power", self.power, "1 or 2"));
        }
        match self.log {
            LogScale::Ln { eps } if !(eps.is_finite() && eps > 0.0) => {
                return Err(bad("log.eps", eps, "a finite value > 0"))
            }
            LogScale::Db { amin } if !(amin.is_finite() && amin > 0.0) => {
                return Err(bad("log.amin", amin, "a finite value > 0"))
            }
            _ => {}
        }
        if let Normalization::PerBand { mean, std } = &self.normalization {
            if mean.len() != self.n_mels {
                return Err(bad(
                    "normalization.mean",
                    format!("{} values", mean.len()),
                    &format!("n_mels = {} values", self.n_mels),
                ));
            }
            if std.len() != self.n_mels {
                return Err(bad(
                    "normalization.std",
                    format!("{} values", std.len()),
                    &format!("n_mels = {} values", self.n_mels),
                ));
            }
            if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(bad("normalization.std", s, "finite values > 0"));
            }
            if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
                return Err(bad("normalization.mean", m, "finite values"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_50_fps() {
        let c = FeatureConfig::default();
        c.validate().unwrap();
        assert!((c.frame_rate() - 50.0).abs() < 1e-12);
    }

    #[test]
    fn fmax_above_nyquist_is_named() {
        let c = FeatureConfig {
            fmax: 9000.0,
            ..FeatureConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("fmax") && e.contains("8000"), "{e}");
    }

    #[test]
    fn json_round_trip() {
        let c = FeatureConfig::default();
        let j = serde_json::to_string(&c).unwrap();
        let back: FeatureConfig = serde_json::from_str(&j).unwrap();
        assert_eq!(c, back);
    }
}
