//! Audio sources: files (symphonia), raw PCM on stdin, microphones (cpal), the
//! lock-free ring between the capture callback and the frontend thread, and
//! resampling to the model's rate (rubato).
//!
//! Every source is read through [`SourceReader`]: mono `f32` samples at the source's
//! native rate, pulled by the frontend thread. A microphone's cpal callback only
//! converts and pushes into the SPSC ring ([`ring`]); its reader pops from the ring.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    /// Non-finite samples (NaN/±Inf) replaced by 0, counted per channel value before the
    /// mono downmix.
    pub samples_nonfinite: AtomicU64,
    /// Corrupt packets of a compressed file that could not be decoded and were skipped
    /// (each logged with its time in the stream).
    pub packets_skipped: AtomicU64,
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

/// How [`open`] opens a source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenOptions {
    /// Files only: pace the output to the file's native rate (sleeping), as if it were
    /// being recorded now. Otherwise a file is read as fast as the reader pulls.
    pub realtime: bool,
    /// Microphones only: capacity of the SPSC ring between the capture callback and the
    /// reader, in seconds of audio at the device rate. When it is full, new samples are
    /// dropped and counted in [`SourceCounters::samples_dropped`].
    pub ring_seconds: f32,
    /// Microphones only: the longest a [`SourceReader::read`] call waits for samples
    /// before it returns [`ReadOutcome::Idle`].
    pub poll_timeout: Duration,
}

impl Default for OpenOptions {
    /// As fast as possible, a 2 s ring, 100 ms poll timeout.
    fn default() -> Self {
        Self {
            realtime: false,
            ring_seconds: 2.0,
            poll_timeout: Duration::from_millis(100),
        }
    }
}

/// Opens any [`InputSpec`] as a [`SourceReader`]: a file as a [`file::FileSource`],
/// stdin as a [`stdin::StdinSource`] over [`std::io::stdin`], a microphone as a
/// [`capture::MicSource`] (capture starts before this returns).
pub fn open(spec: &InputSpec, opts: &OpenOptions) -> Result<Box<dyn SourceReader>, AudioError> {
    Ok(match spec {
        InputSpec::File(path) => Box::new(file::FileSource::open(path, opts.realtime)?),
        InputSpec::Stdin {
            format,
            rate,
            channels,
        } => Box::new(stdin::StdinSource::new(
            std::io::stdin(),
            *format,
            *rate,
            *channels,
        )?),
        InputSpec::Mic(name) => Box::new(capture::MicSource::open(
            name.as_deref(),
            &capture::MicOptions {
                ring_seconds: opts.ring_seconds,
                poll_timeout: opts.poll_timeout,
                ..capture::MicOptions::default()
            },
        )?),
    })
}

/// Decodes a whole file to mono `f32` at its native rate (for training and tests).
/// Returns the samples and the rate in Hz. Errors as [`file::FileSource::open`]; an
/// empty file is [`AudioError::Empty`].
pub fn decode_file(path: &Path) -> Result<(Vec<f32>, u32), AudioError> {
    let mut source = file::FileSource::open(path, false)?;
    let rate = source.sample_rate();
    let mut out = Vec::with_capacity(source.expected_frames().unwrap_or(0).min(1 << 28) as usize);
    let mut buf = vec![0.0f32; 16_384];
    loop {
        match source.read(&mut buf)? {
            ReadOutcome::Samples(n) => out.extend_from_slice(&buf[..n]),
            ReadOutcome::Idle => {}
            ReadOutcome::End => break,
        }
    }
    Ok((out, rate))
}

/// The largest sample magnitude passed on (80 dB above full scale). Float audio may
/// exceed ±1, but a corrupt float file can hold values near `f32::MAX`, whose power
/// overflows to infinity in the spectrum and makes every score NaN; such samples are
/// clamped to ±`SAMPLE_LIMIT` (found by the bad-input tests).
pub const SAMPLE_LIMIT: f32 = 1.0e4;

/// Downmixes interleaved frames to mono by averaging the channels, writing one sample
/// per frame to `out` (which must hold `interleaved.len() / channels` samples; a partial
/// trailing frame is ignored). Non-finite values are replaced by 0 before averaging;
/// returns how many were replaced. Finite values are clamped to ±[`SAMPLE_LIMIT`].
/// Allocation-free (safe in a capture callback).
pub fn downmix_to_mono<T: Copy>(
    interleaved: &[T],
    channels: usize,
    to_f32: impl Fn(T) -> f32,
    out: &mut [f32],
) -> u64 {
    let channels = channels.max(1);
    let mut nonfinite = 0u64;
    if channels == 1 {
        for (o, &s) in out.iter_mut().zip(interleaved) {
            let v = to_f32(s);
            *o = if v.is_finite() {
                v.clamp(-SAMPLE_LIMIT, SAMPLE_LIMIT)
            } else {
                nonfinite += 1;
                0.0
            };
        }
        return nonfinite;
    }
    let scale = 1.0 / channels as f32;
    for (o, frame) in out.iter_mut().zip(interleaved.chunks_exact(channels)) {
        let mut sum = 0.0f32;
        for &s in frame {
            let v = to_f32(s);
            if v.is_finite() {
                sum += v.clamp(-SAMPLE_LIMIT, SAMPLE_LIMIT);
            } else {
                nonfinite += 1;
            }
        }
        *o = sum * scale;
    }
    nonfinite
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
    fn downmix_averages_channels_and_zeroes_nonfinite() {
        let x = [1.0f32, 0.0, 0.5, 0.25, f32::NAN, 1.0, 2.0];
        let mut out = [9.0f32; 3];
        let bad = downmix_to_mono(&x, 2, |v| v, &mut out);
        assert_eq!(bad, 1);
        let want = [0.5f32, 0.375, 0.5];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-7, "{out:?}");
        }
        let mut mono = [9.0f32; 3];
        let bad = downmix_to_mono(&[0.1f32, f32::INFINITY, -0.2], 1, |v| v, &mut mono);
        assert_eq!(bad, 1);
        assert!(mono
            .iter()
            .zip([0.1f32, 0.0, -0.2])
            .all(|(a, b)| (a - b).abs() < 1e-9));
        let mut from_i16 = [0.0f32; 2];
        downmix_to_mono(
            &[16384i16, -16384, 32767, 32767],
            2,
            |v| f32::from(v) / 32768.0,
            &mut from_i16,
        );
        assert!(from_i16[0].abs() < 1e-7 && (from_i16[1] - 32767.0 / 32768.0).abs() < 1e-7);
        // Corrupt float data near f32::MAX is clamped, in mono and when averaging.
        let mut huge = [0.0f32; 2];
        assert_eq!(
            downmix_to_mono(&[3.8e34f32, -f32::MAX], 1, |v| v, &mut huge),
            0
        );
        assert_eq!(huge, [SAMPLE_LIMIT, -SAMPLE_LIMIT]);
        let mut avg = [0.0f32; 1];
        downmix_to_mono(&[f32::MAX, f32::MAX], 2, |v| v, &mut avg);
        assert!((avg[0] - SAMPLE_LIMIT).abs() < 1e-3, "{avg:?}");
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
