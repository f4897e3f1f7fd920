//! Raw interleaved PCM from a byte stream (stdin), e.g. `arecord -f S16_LE -r 16000 |
//! hark run --input stdin:s16le:16000:1`.
//!
//! [`StdinSource`] is generic over the reader so tests can feed it any byte stream.
//! A `read()` of the underlying stream may end anywhere, even inside a sample or a
//! frame; the incomplete tail is kept and completed by the next read. Frames are
//! downmixed to mono by averaging; non-finite `f32le` values are zeroed and counted.
//! A stream that ends mid-frame drops the incomplete frame with a warning; a stream
//! that ends before any complete frame is [`AudioError::Empty`].

use std::io::{ErrorKind, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{downmix_to_mono, AudioError, PcmFormat, ReadOutcome, SourceCounters, SourceReader};

/// Bytes read from the stream per call at most (rounded down to whole frames).
const READ_BYTES: usize = 64 * 1024;

/// Raw PCM frames read from `R` and returned as mono `f32`.
pub struct StdinSource<R: Read + Send> {
    /// The byte stream.
    reader: R,
    /// Sample encoding.
    format: PcmFormat,
    /// Sample rate, Hz.
    rate: u32,
    /// Interleaved channels.
    channels: usize,
    /// Raw bytes: `bytes[..filled]` holds less than one frame between reads.
    bytes: Vec<u8>,
    /// Valid bytes in `bytes`.
    filled: usize,
    /// Scratch: decoded interleaved samples.
    samples: Vec<f32>,
    /// Frames returned so far.
    frames: u64,
    /// The stream has ended.
    ended: bool,
    /// Whether non-finite samples were already warned about.
    warned_nonfinite: bool,
    /// Shared counters.
    counters: Arc<SourceCounters>,
}

impl<R: Read + Send> StdinSource<R> {
    /// Reads `channels`-channel interleaved `format` PCM at `rate` Hz from `reader`.
    /// Errors if `rate` or `channels` is zero.
    pub fn new(reader: R, format: PcmFormat, rate: u32, channels: u16) -> Result<Self, AudioError> {
        if rate == 0 || channels == 0 {
            return Err(AudioError::BadSpec {
                spec: format!("stdin:{}:{rate}:{channels}", format_name(format)),
                reason: "expected a positive sample rate and channel count".into(),
            });
        }
        let channels = usize::from(channels);
        let frame_bytes = bytes_per_sample(format) * channels;
        let cap = (READ_BYTES / frame_bytes).max(1) * frame_bytes;
        Ok(Self {
            reader,
            format,
            rate,
            channels,
            bytes: vec![0; cap],
            filled: 0,
            samples: Vec::with_capacity(cap / bytes_per_sample(format)),
            frames: 0,
            ended: false,
            warned_nonfinite: false,
            counters: SourceCounters::new(),
        })
    }

    fn frame_bytes(&self) -> usize {
        bytes_per_sample(self.format) * self.channels
    }
}

fn bytes_per_sample(format: PcmFormat) -> usize {
    match format {
        PcmFormat::S16Le => 2,
        PcmFormat::F32Le => 4,
    }
}

fn format_name(format: PcmFormat) -> &'static str {
    match format {
        PcmFormat::S16Le => "s16le",
        PcmFormat::F32Le => "f32le",
    }
}

impl<R: Read + Send> SourceReader for StdinSource<R> {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn describe(&self) -> String {
        format!(
            "stdin:{}:{}:{}",
            format_name(self.format),
            self.rate,
            self.channels
        )
    }

    fn is_live(&self) -> bool {
        false
    }

    fn counters(&self) -> Arc<SourceCounters> {
        self.counters.clone()
    }

    /// Blocks until at least one whole frame has arrived (or the stream ends), then
    /// returns the whole frames read, at most `buf.len()`. An empty `buf` gives `Idle`.
    fn read(&mut self, buf: &mut [f32]) -> Result<ReadOutcome, AudioError> {
        if buf.is_empty() {
            return Ok(ReadOutcome::Idle);
        }
        if self.ended {
            return Ok(ReadOutcome::End);
        }
        let frame_bytes = self.frame_bytes();
        let limit = (buf.len() * frame_bytes).min(self.bytes.len());
        // Read until at least one whole frame is buffered (`limit` ≥ one frame, and less
        // than one frame is ever left over, so the slice is never empty).
        while self.filled < frame_bytes {
            match self.reader.read(&mut self.bytes[self.filled..limit]) {
                Ok(0) => {
                    self.ended = true;
                    if self.filled > 0 {
                        tracing::warn!(
                            source = %self.describe(),
                            dropped_bytes = self.filled,
                            frame_bytes,
                            "stream ended inside a frame; the incomplete frame is dropped"
                        );
                        self.filled = 0;
                    }
                    if self.frames == 0 {
                        return Err(AudioError::Empty {
                            what: self.describe(),
                        });
                    }
                    return Ok(ReadOutcome::End);
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(AudioError::Stdin(e)),
            }
        }
        let frames = (self.filled / frame_bytes).min(buf.len());
        let used = frames * frame_bytes;
        self.samples.clear();
        match self.format {
            PcmFormat::S16Le => self.samples.extend(
                self.bytes[..used]
                    .chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
            ),
            PcmFormat::F32Le => self.samples.extend(
                self.bytes[..used]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
        }
        let bad = downmix_to_mono(&self.samples, self.channels, |v| v, &mut buf[..frames]);
        if bad > 0 {
            self.counters
                .samples_nonfinite
                .fetch_add(bad, Ordering::Relaxed);
            if !self.warned_nonfinite {
                self.warned_nonfinite = true;
                tracing::warn!(
                    source = %self.describe(),
                    at_s = self.frames as f64 / f64::from(self.rate),
                    "non-finite samples (NaN/Inf) replaced by 0 (counted in samples_nonfinite; expected finite audio)"
                );
            }
        }
        // Keep the incomplete tail for the next read.
        self.bytes.copy_within(used..self.filled, 0);
        self.filled -= used;
        self.frames += frames as u64;
        self.counters
            .samples_in
            .fetch_add(frames as u64, Ordering::Relaxed);
        Ok(ReadOutcome::Samples(frames))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns at most `sizes[i]` bytes on its i-th call (cycling).
    struct Dribble {
        data: Vec<u8>,
        pos: usize,
        sizes: Vec<usize>,
        call: usize,
    }

    impl Read for Dribble {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let want = self.sizes[self.call % self.sizes.len()];
            self.call += 1;
            let n = want.min(out.len()).min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn read_all<R: Read + Send>(src: &mut StdinSource<R>, chunk: usize) -> Vec<f32> {
        let mut out = Vec::new();
        let mut buf = vec![0.0f32; chunk];
        loop {
            match src.read(&mut buf).unwrap() {
                ReadOutcome::Samples(n) => out.extend_from_slice(&buf[..n]),
                ReadOutcome::Idle => {}
                ReadOutcome::End => return out,
            }
        }
    }

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        // Stereo s16le: left = i, right = -2i.
        let frames: Vec<(i16, i16)> = (0..500).map(|i| (i as i16, -2 * i as i16)).collect();
        let data: Vec<u8> = frames
            .iter()
            .flat_map(|(l, r)| l.to_le_bytes().into_iter().chain(r.to_le_bytes()))
            .collect();
        for (sizes, chunk) in [
            (vec![1], 1),
            (vec![3], 37),
            (vec![1, 2, 5, 7], 1000),
            (vec![4096], 7),
        ] {
            let reader = Dribble {
                data: data.clone(),
                pos: 0,
                sizes: sizes.clone(),
                call: 0,
            };
            let mut src = StdinSource::new(reader, PcmFormat::S16Le, 16_000, 2).unwrap();
            let out = read_all(&mut src, chunk);
            assert_eq!(out.len(), 500, "sizes {sizes:?}");
            for (o, (l, r)) in out.iter().zip(&frames) {
                let want = (f32::from(*l) + f32::from(*r)) / 2.0 / 32768.0;
                assert!((o - want).abs() < 1e-7, "sizes {sizes:?}");
            }
            assert_eq!(SourceCounters::get(&src.counters().samples_in), 500);
        }
    }

    #[test]
    fn f32le_nonfinite_is_zeroed_and_counted() {
        let vals = [0.25f32, f32::NAN, -0.5, f32::INFINITY];
        let data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut src = StdinSource::new(&data[..], PcmFormat::F32Le, 8_000, 1).unwrap();
        let out = read_all(&mut src, 16);
        let want = [0.25f32, 0.0, -0.5, 0.0];
        assert_eq!(out.len(), 4);
        assert!(out.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-9));
        assert_eq!(SourceCounters::get(&src.counters().samples_nonfinite), 2);
    }

    #[test]
    fn trailing_partial_frame_is_dropped() {
        let data = [0u8, 64, 0, 192, 7]; // two s16 samples and a stray byte
        let mut src = StdinSource::new(&data[..], PcmFormat::S16Le, 16_000, 1).unwrap();
        let out = read_all(&mut src, 16);
        assert_eq!(out.len(), 2);
        assert!((out[0] - 0.5).abs() < 1e-7 && (out[1] + 0.5).abs() < 1e-7);
    }

    #[test]
    fn empty_stream_is_an_empty_error() {
        let mut src = StdinSource::new(&[][..], PcmFormat::S16Le, 16_000, 1).unwrap();
        let e = src.read(&mut [0.0; 8]).unwrap_err();
        assert!(matches!(e, AudioError::Empty { .. }));
        assert_eq!(
            e.to_string(),
            "stdin:s16le:16000:1: contains no audio samples"
        );
        // A stream shorter than one frame is empty too.
        let mut src = StdinSource::new(&[1u8, 2, 3][..], PcmFormat::F32Le, 16_000, 1).unwrap();
        assert!(matches!(
            src.read(&mut [0.0; 8]),
            Err(AudioError::Empty { .. })
        ));
    }

    #[test]
    fn read_errors_are_reported_as_stdin_errors() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(ErrorKind::BrokenPipe, "pipe closed"))
            }
        }
        let mut src = StdinSource::new(Broken, PcmFormat::S16Le, 16_000, 1).unwrap();
        let e = src.read(&mut [0.0; 8]).unwrap_err();
        assert!(e.to_string().starts_with("stdin: pipe closed"), "{e}");
    }
}
