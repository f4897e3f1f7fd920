//! Audio sources: files (symphonia), raw PCM on stdin, microphones (cpal), the
//! lock-free ring between the capture callback and the frontend thread, and
//! resampling to the model's rate (rubato).
//!
//! Every source is read through [`SourceReader`]: mono `f32` samples at the source's
//! native rate, pulled by the frontend thread. A microphone's cpal callback only
//! converts and pushes into the SPSC ring ([`ring`]); its reader pops from the ring.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub mod capture;
pub mod file;
pub mod resample;
pub mod ring;
pub mod stdin;

/// Errors of audio input.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// `--input` could not be parsed.
    #[error("bad input `{spec}`: {reason}")]
    BadSpec {
        /// The text given.
        spec: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's format or codec is not supported, or the data is corrupt.
    #[error("{path}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What went wrong, e.g. "unsupported format" or "corrupt packet at 12.3 s".
        reason: String,
    },
    /// The input holds no audio samples at all.
    #[error("{what}: contains no audio samples")]
    Empty {
        /// The file or stream.
        what: String,
    },
    /// Reading stdin failed.
    #[error("stdin: {0}")]
    Stdin(std::io::Error),
    /// No input device matched the requested name.
    #[error("no input device matches `{name}`; available: {available}")]
    NoDevice {
        /// The name (substring) asked for.
        name: String,
        /// Names of the devices that exist (`none` if none).
        available: String,
    },
    /// The audio backend (cpal/ALSA) failed.
    #[error("audio device `{device}`: {reason}")]
    Device {
        /// The device name.
        device: String,
        /// What failed.
        reason: String,
    },
    /// The resampler could not be built or failed.
    #[error("resampling {from} Hz → {to} Hz: {reason}")]
    Resample {
        /// Source rate.
        from: u32,
        /// Target rate.
        to: u32,
        /// What failed.
        reason: String,
    },
}

/// Raw PCM sample formats accepted on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcmFormat {
    /// Signed 16-bit little endian.
    S16Le,
    /// 32-bit float little endian.
    F32Le,
}

/// Where audio comes from, as given to `--input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// `file:PATH` or a bare path.
    File(PathBuf),
    /// `stdin:FORMAT:RATE:CHANNELS`, e.g. `stdin:s16le:16000:1`.
    Stdin {
        /// Sample format.
        format: PcmFormat,
        /// Sample rate, Hz.
        rate: u32,
        /// Interleaved channels.
        channels: u16,
    },
    /// `mic` (default input device) or `mic:NAME` (first device whose name contains NAME).
    Mic(Option<String>),
}

/// Counters shared between a source and whoever reports on it. All monotonic.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Samples (per channel, at the native rate) delivered by the device or decoder.
    pub samples_in: AtomicU64,
    /// Samples lost because the ring was full (the frontend fell behind).
    pub samples_dropped: AtomicU64,
    /// Non-finite samples (NaN/±Inf) replaced by 0.
    pub samples_nonfinite: AtomicU64,
}

impl SourceCounters {
    /// A fresh, shareable set of counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Reads a counter (relaxed; counters are statistics, not synchronisation).
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a [`SourceReader::read`] call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// `n` samples were written to the start of the buffer (n ≥ 1).
    Samples(usize),
    /// Nothing arrived within the reader's poll timeout (live sources only); call again.
    Idle,
    /// The source has ended; no more samples will come.
    End,
}

/// A source of mono f32 samples at its native rate, pulled by the frontend thread.
pub trait SourceReader: Send {
    /// Native sample rate, Hz.
    fn sample_rate(&self) -> u32;
    /// Human description for `hello` and logs, e.g. `file:dog.wav` or `mic:USB Audio`.
    fn describe(&self) -> String;
    /// Whether the source is live (samples arrive in real time and are lost if not
    /// read in time) rather than a file or pipe that waits for the reader.
    fn is_live(&self) -> bool;
    /// Shared counters of this source.
    fn counters(&self) -> Arc<SourceCounters>;
    /// Fills the start of `buf` with the next samples. Non-finite samples are replaced
    /// by 0 and counted.
    fn read(&mut self, buf: &mut [f32]) -> Result<ReadOutcome, AudioError>;
}

impl FromStr for InputSpec {
    type Err = AudioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| AudioError::BadSpec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        if s == "mic" {
            return Ok(InputSpec::Mic(None));
        }
        if let Some(name) = s.strip_prefix("mic:") {
            if name.is_empty() {
                return Err(bad("expected `mic` or `mic:NAME` with a non-empty NAME"));
            }
            return Ok(InputSpec::Mic(Some(name.to_string())));
        }
        if let Some(rest) = s.strip_prefix("stdin:") {
            let parts: Vec<&str> = rest.split(':').collect();
            if parts.len() != 3 {
                return Err(bad(
                    "expected stdin:FORMAT:RATE:CHANNELS, e.g. stdin:s16le:16000:1",
                ));
            }
            let format = match parts[0] {
                "s16le" => PcmFormat::S16Le,
                "f32le" => PcmFormat::F32Le,
                other => {
                    return Err(bad(&format!(
                        "unknown PCM format `{other}`: expected s16le or f32le"
                    )))
                }
            };
            let rate: u32 = parts[1]
                .parse()
                .ok()
                .filter(|r| (1000..=384_000).contains(r))
                .ok_or_else(|| {
                    bad(&format!(
                        "sample rate `{}`: expected an integer 1000..=384000",
                        parts[1]
                    ))
                })?;
            let channels: u16 = parts[2]
                .parse()
                .ok()
                .filter(|c| (1..=64).contains(c))
                .ok_or_else(|| {
                    bad(&format!(
                        "channel count `{}`: expected an integer 1..=64",
                        parts[2]
                    ))
                })?;
            return Ok(InputSpec::Stdin {
                format,
                rate,
                channels,
            });
        }
        let path = s.strip_prefix("file:").unwrap_or(s);
        if path.is_empty() {
            return Err(bad("expected a file path"));
        }
        Ok(InputSpec::File(PathBuf::from(path)))
    }
}

impl fmt::Display for InputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputSpec::File(p) => write!(f, "file:{}", p.display()),
            InputSpec::Stdin {
                format,
                rate,
                channels,
            } => {
                let fmt_name = match format {
                    PcmFormat::S16Le => "s16le",
                    PcmFormat::F32Le => "f32le",
                };
                write!(f, "stdin:{fmt_name}:{rate}:{channels}")
            }
            InputSpec::Mic(None) => write!(f, "mic"),
            InputSpec::Mic(Some(n)) => write!(f, "mic:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            "a.wav".parse::<InputSpec>().unwrap(),
            InputSpec::File("a.wav".into())
        );
        assert_eq!(
            "file:/x/y.flac".parse::<InputSpec>().unwrap(),
            InputSpec::File("/x/y.flac".into())
        );
        assert_eq!(
            "stdin:s16le:16000:1".parse::<InputSpec>().unwrap(),
            InputSpec::Stdin {
                format: PcmFormat::S16Le,
                rate: 16000,
                channels: 1
            }
        );
        assert_eq!("mic".parse::<InputSpec>().unwrap(), InputSpec::Mic(None));
        assert_eq!(
            "mic:USB".parse::<InputSpec>().unwrap(),
            InputSpec::Mic(Some("USB".into()))
        );
    }

    #[test]
    fn rejects_bad_stdin_specs_naming_the_part() {
        let e = "stdin:s24le:16000:1".parse::<InputSpec>().unwrap_err();
        assert!(e.to_string().contains("s24le"), "{e}");
        let e = "stdin:s16le:abc:1".parse::<InputSpec>().unwrap_err();
        assert!(e.to_string().contains("abc"), "{e}");
        let e = "stdin:s16le:16000:0".parse::<InputSpec>().unwrap_err();
        assert!(e.to_string().contains("channel"), "{e}");
        assert!("stdin:s16le".parse::<InputSpec>().is_err());
        assert!("mic:".parse::<InputSpec>().is_err());
    }
}
