//! Audio files (WAV, FLAC, Ogg/Vorbis, MP3) decoded with symphonia, packet by packet.
//!
//! [`FileSource`] yields mono `f32` (the mean of the channels) at the file's native
//! rate. Opening probes the container and decodes up to the first audio, so a file that
//! is missing, not audio, cut inside its header, or empty fails at open with an error
//! naming the file. Later problems do not stop the stream: a corrupt packet is logged
//! with its time, counted in [`SourceCounters::packets_skipped`] and skipped; a file
//! that ends before its header says is logged as truncated; non-finite samples are
//! zeroed and counted in [`SourceCounters::samples_nonfinite`].
//!
//! With `realtime`, reads are paced to the native rate (the reader sleeps until the
//! samples it returns would have been recorded), as the daemon's `--realtime` wants.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use symphonia::core::codecs::audio::well_known::CODEC_ID_VORBIS;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::{downmix_to_mono, AudioError, ReadOutcome, SourceCounters, SourceReader};

/// Longest gap in packet timestamps (seconds) that is filled with silence; a longer jump
/// is only logged.
const MAX_GAP_FILL_S: f64 = 60.0;

/// Consecutive undecodable packets after which the file is given up on.
const MAX_CONSECUTIVE_BAD_PACKETS: u32 = 1000;

/// What the formats this build decodes are, for error messages.
const EXPECTED: &str = "expected a WAV, FLAC, Ogg/Vorbis or MP3 file";

/// A file decoded packet by packet into mono `f32` at its native rate.
pub struct FileSource {
    /// The file, for messages.
    path: PathBuf,
    /// The demuxer.
    format: Box<dyn FormatReader>,
    /// The decoder of the chosen track.
    decoder: Box<dyn AudioDecoder>,
    /// The chosen (default audio) track.
    track_id: u32,
    /// Native rate, Hz (of the first decoded audio).
    rate: u32,
    /// Frames the container says the track holds, when it says.
    expected_frames: Option<u64>,
    /// Whether packet timestamps count frames (time base 1/rate), so gaps can be found.
    pts_in_frames: bool,
    /// Timestamp where the next packet should start (previous pts + duration).
    next_pts: Option<i64>,
    /// Scratch: one decoded packet, interleaved.
    interleaved: Vec<f32>,
    /// Mono samples decoded but not yet returned: `pending[pos..]`.
    pending: Vec<f32>,
    /// Read position in `pending`.
    pos: usize,
    /// Frames decoded so far (the time base of warnings).
    decoded_frames: u64,
    /// Frames returned so far (the time base of pacing).
    returned_frames: u64,
    /// The demuxer reported the end (or an unrecoverable error after some audio).
    ended: bool,
    /// Pacing clock, when reading in real time; started by the first read.
    pace: Option<Option<Instant>>,
    /// Whether non-finite samples were already warned about.
    warned_nonfinite: bool,
    /// Shared counters.
    counters: Arc<SourceCounters>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("rate", &self.rate)
            .field("decoded_frames", &self.decoded_frames)
            .finish()
    }
}

impl FileSource {
    /// Opens `path`, probes its format and decodes up to its first audio.
    ///
    /// Errors: [`AudioError::Io`] if it cannot be opened; [`AudioError::Decode`] if it is
    /// not a supported audio file, has no audio track, or nothing in it can be decoded
    /// (e.g. cut inside the header); [`AudioError::Empty`] if it decodes to no samples.
    pub fn open(path: &Path, realtime: bool) -> Result<Self, AudioError> {
        let file = File::open(path).map_err(|source| AudioError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let decode_err = |reason: String| AudioError::Decode {
            path: path.to_path_buf(),
            reason,
        };
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| decode_err(format!("not a readable audio file ({e}); {EXPECTED}")))?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(|| decode_err(format!("no audio track; {EXPECTED} with an audio track")))?;
        let track_id = track.id;
        let expected_frames = track.num_frames;
        let time_base = track.time_base;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| decode_err(format!("the track is not audio; {EXPECTED}")))?;
        let header_rate = params.sample_rate;
        // Vorbis packet timestamps overlap by design (lapped blocks): no gap check there.
        let pts_in_frames = params.codec != CODEC_ID_VORBIS
            && matches!((time_base, header_rate), (Some(tb), Some(rate))
                if tb.numer.get() == 1 && tb.denom.get() == rate);
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| decode_err(format!("unsupported codec ({e}); {EXPECTED}")))?;
        let mut source = Self {
            path: path.to_path_buf(),
            format,
            decoder,
            track_id,
            rate: header_rate.unwrap_or(0),
            expected_frames,
            pts_in_frames,
            next_pts: None,
            interleaved: Vec::new(),
            pending: Vec::new(),
            pos: 0,
            decoded_frames: 0,
            returned_frames: 0,
            ended: false,
            pace: realtime.then_some(None),
            warned_nonfinite: false,
            counters: SourceCounters::new(),
        };
        // Decode up to the first audio, so that a file with nothing usable fails here.
        if !source.decode_next()? {
            let skipped = SourceCounters::get(&source.counters.packets_skipped);
            return Err(if skipped > 0 {
                decode_err(format!(
                    "none of its {skipped} packets could be decoded (corrupt or truncated); {EXPECTED}"
                ))
            } else {
                AudioError::Empty {
                    what: path.display().to_string(),
                }
            });
        }
        if source.rate == 0 {
            return Err(decode_err("the stream does not say its sample rate".into()));
        }
        Ok(source)
    }

    /// Frames (samples per channel) the container declares, if it declares them.
    pub fn expected_frames(&self) -> Option<u64> {
        self.expected_frames
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seconds of audio decoded so far.
    fn decoded_seconds(&self) -> f64 {
        self.decoded_frames as f64 / f64::from(self.rate.max(1))
    }

    /// Decodes packets until one yields samples (appended to `pending`): `Ok(true)`, or
    /// the stream ends: `Ok(false)`.
    fn decode_next(&mut self) -> Result<bool, AudioError> {
        let mut bad_in_a_row = 0u32;
        while !self.ended {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.finish_stream();
                    break;
                }
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.finish_stream();
                    break;
                }
                Err(SymError::ResetRequired) => {
                    tracing::warn!(
                        file = %self.path.display(),
                        at_s = self.decoded_seconds(),
                        "the stream changes its tracks here (chained stream); stopping"
                    );
                    self.finish_stream();
                    break;
                }
                Err(SymError::DecodeError(msg)) if self.decoded_frames > 0 => {
                    // A damaged container block after some audio: count it and go on.
                    bad_in_a_row += 1;
                    self.skip_packet(msg, &mut bad_in_a_row)?;
                    continue;
                }
                Err(e) => {
                    if self.decoded_frames == 0 {
                        return Err(AudioError::Decode {
                            path: self.path.clone(),
                            reason: format!("cannot read the stream ({e}); {EXPECTED}"),
                        });
                    }
                    tracing::warn!(
                        file = %self.path.display(),
                        at_s = self.decoded_seconds(),
                        error = %e,
                        "unrecoverable read error; ending the stream here"
                    );
                    self.finish_stream();
                    break;
                }
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let gap = self.gap_before(packet.pts.get(), packet.dur.get());
            match self.decoder.decode(&packet) {
                Ok(buf) => {
                    bad_in_a_row = 0;
                    let frames = buf.frames();
                    if frames == 0 {
                        continue;
                    }
                    let spec_rate = buf.spec().rate();
                    let channels = buf.spec().channels().count().max(1);
                    buf.copy_to_vec_interleaved(&mut self.interleaved);
                    if self.rate == 0 {
                        self.rate = spec_rate;
                    } else if spec_rate != self.rate {
                        tracing::warn!(
                            file = %self.path.display(),
                            at_s = self.decoded_seconds(),
                            rate_hz = spec_rate,
                            expected_rate_hz = self.rate,
                            "the sample rate changes mid-stream; stopping"
                        );
                        self.finish_stream();
                        break;
                    }
                    // Drop consumed samples, append this packet's mono samples (after
                    // silence standing in for data the demuxer skipped).
                    self.pending.drain(..self.pos);
                    self.pos = 0;
                    if gap > 0 {
                        self.pending.resize(self.pending.len() + gap, 0.0);
                        self.decoded_frames += gap as u64;
                    }
                    let start = self.pending.len();
                    self.pending.resize(start + frames, 0.0);
                    let bad = downmix_to_mono(
                        &self.interleaved[..frames * channels],
                        channels,
                        |v| v,
                        &mut self.pending[start..],
                    );
                    if bad > 0 {
                        self.counters
                            .samples_nonfinite
                            .fetch_add(bad, Ordering::Relaxed);
                        if !self.warned_nonfinite {
                            self.warned_nonfinite = true;
                            tracing::warn!(
                                file = %self.path.display(),
                                at_s = self.decoded_seconds(),
                                "non-finite samples (NaN/Inf) replaced by 0 (counted in samples_nonfinite; expected finite audio)"
                            );
                        }
                    }
                    self.decoded_frames += frames as u64;
                    self.counters
                        .samples_in
                        .fetch_add(frames as u64, Ordering::Relaxed);
                    return Ok(true);
                }
                Err(SymError::DecodeError(msg)) => {
                    bad_in_a_row += 1;
                    self.skip_packet(msg, &mut bad_in_a_row)?;
                }
                Err(SymError::IoError(e)) => {
                    bad_in_a_row += 1;
                    let msg = e.to_string();
                    self.skip_packet(&msg, &mut bad_in_a_row)?;
                }
                Err(e) => {
                    return Err(AudioError::Decode {
                        path: self.path.clone(),
                        reason: format!("decoding failed at {:.3} s: {e}", self.decoded_seconds()),
                    });
                }
            }
        }
        Ok(false)
    }

    /// Checks a packet's timestamp against where the previous one ended. A jump forward
    /// means the demuxer skipped damaged data (FLAC resyncs silently): it is logged and
    /// counted as a skipped packet, and the returned number of frames of silence keeps
    /// the timeline of the file (0 if none, or if the jump is implausibly long).
    fn gap_before(&mut self, pts: i64, dur: u64) -> usize {
        if !self.pts_in_frames {
            return 0;
        }
        let expected = self
            .next_pts
            .replace(pts.saturating_add(i64::try_from(dur).unwrap_or(i64::MAX)));
        let Some(expected) = expected else {
            return 0;
        };
        let gap = pts.saturating_sub(expected);
        if gap <= 0 {
            return 0;
        }
        self.counters
            .packets_skipped
            .fetch_add(1, Ordering::Relaxed);
        let rate = f64::from(self.rate.max(1));
        let gap_s = gap as f64 / rate;
        let fill = gap_s <= MAX_GAP_FILL_S;
        tracing::warn!(
            file = %self.path.display(),
            at_s = self.decoded_seconds(),
            missing_s = gap_s,
            filled_with_silence = fill,
            "corrupt data skipped: the stream jumps ahead here"
        );
        if fill {
            usize::try_from(gap).unwrap_or(0)
        } else {
            0
        }
    }

    /// Logs and counts a corrupt packet; gives up after too many in a row.
    fn skip_packet(&mut self, msg: &str, bad_in_a_row: &mut u32) -> Result<(), AudioError> {
        self.counters
            .packets_skipped
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            file = %self.path.display(),
            at_s = self.decoded_seconds(),
            error = msg,
            "corrupt packet skipped"
        );
        if *bad_in_a_row >= MAX_CONSECUTIVE_BAD_PACKETS {
            return Err(AudioError::Decode {
                path: self.path.clone(),
                reason: format!(
                    "{bad_in_a_row} corrupt packets in a row at {:.3} s; giving up",
                    self.decoded_seconds()
                ),
            });
        }
        Ok(())
    }

    /// Marks the end and warns if the file held less than its header declared.
    fn finish_stream(&mut self) {
        self.ended = true;
        if let Some(expected) = self.expected_frames {
            // Streaming writers leave the maximum length in the header: not a truncation.
            let open_ended = expected >= u64::from(u32::MAX / 8);
            if self.decoded_frames < expected && !open_ended && self.decoded_frames > 0 {
                let rate = f64::from(self.rate.max(1));
                tracing::warn!(
                    file = %self.path.display(),
                    declared_s = expected as f64 / rate,
                    decoded_s = self.decoded_frames as f64 / rate,
                    "file is truncated: it holds less audio than its header declares; using what is there"
                );
            }
        }
    }

    /// Sleeps until `frames` returned frames would have been recorded in real time.
    fn pace_to(&mut self, frames: u64) {
        let Some(start) = self.pace.as_mut() else {
            return;
        };
        let t0 = *start.get_or_insert_with(Instant::now);
        let due = t0 + Duration::from_secs_f64(frames as f64 / f64::from(self.rate.max(1)));
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

impl SourceReader for FileSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn is_live(&self) -> bool {
        false
    }

    fn counters(&self) -> Arc<SourceCounters> {
        self.counters.clone()
    }

    fn read(&mut self, buf: &mut [f32]) -> Result<ReadOutcome, AudioError> {
        if buf.is_empty() {
            // Nothing can be returned into an empty buffer; not the end.
            return Ok(ReadOutcome::Idle);
        }
        while self.pos >= self.pending.len() {
            self.pending.clear();
            self.pos = 0;
            if !self.decode_next()? {
                return Ok(ReadOutcome::End);
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        self.returned_frames += n as u64;
        self.pace_to(self.returned_frames);
        Ok(ReadOutcome::Samples(n))
    }
}
