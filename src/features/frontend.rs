//! Streaming log-mel frames: samples in (any chunk sizes), `n_mels`-value rows out.
//!
//! [`Frontend`] keeps a sliding buffer of at most `2 * n_fft` samples of the (centre-padded)
//! stream and emits frame `i` — the STFT frame centred at sample `i * hop` when
//! `center` is set, librosa's numbering — as soon as its last sample arrives. Feeding a
//! signal in one block or in chunks of any sizes gives the same frames, bit for bit,
//! because every frame is computed from the same `n_fft` samples by the same code.
//! [`logmel`] is the offline form (`new` + `push(all)` + `finish`).
//!
//! Per frame: window + real FFT ([`Stft`]) → `|X|^power` on the bins the filterbank uses
//! → sparse mel filterbank ([`MelFilterbank`]) → `ln(x + eps)` or `10 log10(max(x, amin))`
//! → optional per-band `(x - mean) / std`. Everything is allocated in [`Frontend::new`];
//! `push` allocates nothing once `out` has capacity.

use super::mel::MelFilterbank;
use super::stft::{SpectrumPower, Stft};
use super::{FeatureConfig, FeatureError, LogScale, Normalization};

/// Streaming log-mel front end. Build once per stream with [`Frontend::new`].
#[derive(Debug)]
pub struct Frontend {
    /// The validated settings.
    cfg: FeatureConfig,
    /// Window + FFT plan + FFT scratch.
    stft: Stft,
    /// Sparse mel filterbank.
    mel: MelFilterbank,
    /// `|X|` or `|X|²`.
    power: SpectrumPower,
    /// Recent samples of the padded stream; the next frame is `buf[start..start + n_fft]`
    /// once that many are there. Holds at most `cap` samples and never grows: when the
    /// next frame would not fit, the samples before `start` are dropped (one memmove per
    /// about `n_fft / hop` frames instead of one per frame).
    buf: Vec<f32>,
    /// Start in `buf` of the next frame.
    start: usize,
    /// Fixed size limit of `buf`, `2 * n_fft`.
    cap: usize,
    /// `|X|^power` of the bins in `mel.used_bins()` for the current frame, then zeros up
    /// to `mel.spectrum_len()` (the zero tail is never written after `new`).
    spec: Vec<f32>,
    /// Samples pushed since the last reset (without padding).
    samples_seen: u64,
    /// Frames emitted since the last reset.
    frames: u64,
}

impl Frontend {
    /// Validates cfg, builds FFT plan, window, mel matrix and scratch once.
    pub fn new(cfg: &FeatureConfig) -> Result<Self, FeatureError> {
        cfg.validate()?;
        let stft = Stft::new(cfg.n_fft, cfg.win_length, cfg.window)?;
        let mel = MelFilterbank::from_config(cfg)?;
        let power = SpectrumPower::from_exponent(cfg.power)?;
        let spec = vec![0.0; mel.spectrum_len()];
        let mut fe = Self {
            cfg: cfg.clone(),
            stft,
            mel,
            power,
            buf: Vec::with_capacity(2 * cfg.n_fft),
            start: 0,
            cap: 2 * cfg.n_fft,
            spec,
            samples_seen: 0,
            frames: 0,
        };
        fe.reset();
        Ok(fe)
    }

    /// The settings this front end computes.
    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    /// Values per frame.
    pub fn n_mels(&self) -> usize {
        self.cfg.n_mels
    }

    /// The filterbank in use (e.g. to inspect or export it).
    pub fn filterbank(&self) -> &MelFilterbank {
        &self.mel
    }

    /// Appends every frame completed by `samples` to `out` (n_mels f32 each, row-major);
    /// returns how many frames were appended. No allocation once `out` has capacity.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) -> usize {
        self.samples_seen += samples.len() as u64;
        self.feed(samples, 0, out)
    }

    /// End of stream: right padding (center) and the remaining frames; then resets for a new stream.
    ///
    /// Without `center` the samples after the last whole frame are dropped (librosa
    /// `center=False`). A stream with no samples gives no frame.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> usize {
        let emitted = if self.cfg.center && self.samples_seen > 0 {
            self.feed(&[], self.cfg.n_fft / 2, out)
        } else {
            0
        };
        self.reset();
        emitted
    }

    /// Forgets buffered samples and restarts frame counting (e.g. after a gap in the input).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        if self.cfg.center {
            self.buf.resize(self.cfg.n_fft / 2, 0.0);
        }
        self.samples_seen = 0;
        self.frames = 0;
    }

    /// Frames emitted since the last reset.
    pub fn frames_emitted(&self) -> u64 {
        self.frames
    }

    /// Samples pushed since the last reset.
    pub fn samples_pushed(&self) -> u64 {
        self.samples_seen
    }

    /// Appends `samples`, then `zeros` zero samples, to the stream and emits every frame
    /// they complete; returns how many.
    fn feed(&mut self, mut samples: &[f32], mut zeros: usize, out: &mut Vec<f32>) -> usize {
        let n_fft = self.cfg.n_fft;
        let mut emitted = 0;
        while !samples.is_empty() || zeros > 0 {
            if self.start + n_fft > self.cap {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            // Samples still missing for the next frame (≥ 1: a full frame is emitted at once).
            let need = self.start + n_fft - self.buf.len();
            if samples.is_empty() {
                let take = need.min(zeros);
                self.buf.resize(self.buf.len() + take, 0.0);
                zeros -= take;
            } else {
                let take = need.min(samples.len());
                self.buf.extend_from_slice(&samples[..take]);
                samples = &samples[take..];
            }
            if self.buf.len() == self.start + n_fft {
                self.emit(out);
                self.start += self.cfg.hop_length;
                emitted += 1;
            }
        }
        emitted
    }

    /// Computes the frame `buf[start..start + n_fft]` and appends its `n_mels` values to `out`.
    fn emit(&mut self, out: &mut Vec<f32>) {
        let n_mels = self.cfg.n_mels;
        let base = out.len();
        out.resize(base + n_mels, 0.0);
        let frame = &self.buf[self.start..self.start + self.cfg.n_fft];
        Self::compute_row(
            &self.cfg,
            &mut self.stft,
            &self.mel,
            self.power,
            &mut self.spec,
            frame,
            &mut out[base..],
        );
        self.frames += 1;
    }

    /// The log-mel row of one `n_fft`-sample frame: the only code that turns samples
    /// into features, shared by the streaming and the offline paths.
    fn compute_row(
        cfg: &FeatureConfig,
        stft: &mut Stft,
        mel: &MelFilterbank,
        power: SpectrumPower,
        spec: &mut [f32],
        frame: &[f32],
        row: &mut [f32],
    ) {
        let used = mel.used_bins();
        let n_used = used.len();
        stft.power_spectrum(frame, power, used, &mut spec[..n_used]);
        mel.apply(spec, row);
        match cfg.log {
            LogScale::Ln { eps } => row.iter_mut().for_each(|v| *v = (*v + eps).ln()),
            LogScale::Db { amin } => row.iter_mut().for_each(|v| *v = 10.0 * v.max(amin).log10()),
        }
        if let Normalization::PerBand { mean, std } = &cfg.normalization {
            for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
                *v = (*v - m) / s;
            }
        }
    }

    /// Offline frames `first, first + 1, …` of a whole signal `samples` into `out`
    /// (`n_mels` values per frame; as many frames as `out` holds): frame `i` is
    /// `padded[i·hop .. i·hop + n_fft]`, `padded` being `samples` with `n_fft / 2`
    /// zeros on both sides when `center` is set — the frames [`Frontend::push`] and
    /// [`Frontend::finish`] emit, bit for bit. Leaves the streaming state reset.
    fn frames_into(&mut self, samples: &[f32], first: usize, out: &mut [f32]) {
        let n_fft = self.cfg.n_fft;
        let hop = self.cfg.hop_length;
        let lead = if self.cfg.center { n_fft / 2 } else { 0 };
        self.buf.clear();
        self.buf.resize(n_fft, 0.0);
        for (k, row) in out.chunks_exact_mut(self.cfg.n_mels).enumerate() {
            let s0 = ((first + k) * hop) as isize - lead as isize;
            let frame: &[f32] = if s0 >= 0 && s0 as usize + n_fft <= samples.len() {
                &samples[s0 as usize..s0 as usize + n_fft]
            } else {
                // Partly in the zero padding: copy what exists.
                for (j, d) in self.buf.iter_mut().enumerate() {
                    let t = s0 + j as isize;
                    *d = if t >= 0 && (t as usize) < samples.len() {
                        samples[t as usize]
                    } else {
                        0.0
                    };
                }
                &self.buf
            };
            Self::compute_row(
                &self.cfg,
                &mut self.stft,
                &self.mel,
                self.power,
                &mut self.spec,
                frame,
                row,
            );
        }
        self.reset();
    }
}

/// Frames per thread below which [`logmel`] stays on the calling thread.
const PAR_FRAMES: usize = 256;

/// Offline log-mel of a whole signal = new + push(all) + finish. Row-major (frames, n_mels).
pub fn logmel(cfg: &FeatureConfig, samples: &[f32]) -> Result<Vec<f32>, FeatureError> {
    let mut out = Vec::new();
    logmel_into(cfg, samples, &mut out)?;
    Ok(out)
}

/// As [`logmel`], into `out` (cleared first; its capacity is reused).
pub fn logmel_into(
    cfg: &FeatureConfig,
    samples: &[f32],
    out: &mut Vec<f32>,
) -> Result<(), FeatureError> {
    let mut fe = Frontend::new(cfg)?;
    out.clear();
    out.reserve(n_frames(cfg, samples.len()) * cfg.n_mels);
    fe.push(samples, out);
    fe.finish(out);
    Ok(())
}

/// As [`logmel_into`], with long signals split into runs of frames computed on
/// rayon's threads (each run with its own FFT plan and buffers); the values are
/// those of [`logmel`], bit for bit. Faster only when the threads have free cores:
/// on an oversubscribed machine the join waits for the slowest thread.
pub fn logmel_parallel_into(
    cfg: &FeatureConfig,
    samples: &[f32],
    out: &mut Vec<f32>,
) -> Result<(), FeatureError> {
    cfg.validate()?;
    let n = n_frames(cfg, samples.len());
    let threads = rayon::current_num_threads().max(1);
    let per = n.div_ceil(threads).max(PAR_FRAMES);
    if per >= n {
        return logmel_into(cfg, samples, out);
    }
    out.clear();
    out.resize(n * cfg.n_mels, 0.0);
    frames_in_runs(cfg, samples, per, out)
}

/// Fills `out` (whole frames) with the offline frames of `samples`, `per` frames per
/// task; the runs after the first go to rayon's threads.
fn frames_in_runs(
    cfg: &FeatureConfig,
    samples: &[f32],
    per: usize,
    out: &mut [f32],
) -> Result<(), FeatureError> {
    use rayon::prelude::*;
    if per * cfg.n_mels >= out.len() {
        Frontend::new(cfg)?.frames_into(samples, 0, out);
        return Ok(());
    }
    out.par_chunks_mut(per * cfg.n_mels)
        .enumerate()
        .try_for_each(|(k, dst)| {
            Frontend::new(cfg)?.frames_into(samples, k * per, dst);
            Ok(())
        })
}

/// Number of frames `logmel` returns for `n_samples` samples (librosa: 1 + n/hop when centred;
/// 0 for an empty signal).
///
/// In general `1 + (padded - n_fft) / hop` with `padded = n + 2 (n_fft / 2)` when centred
/// and `n` otherwise, and 0 when `padded < n_fft`. `cfg` is assumed valid (`hop > 0`).
pub fn n_frames(cfg: &FeatureConfig, n_samples: usize) -> usize {
    if n_samples == 0 || cfg.hop_length == 0 {
        return 0;
    }
    let padded = if cfg.center {
        n_samples + 2 * (cfg.n_fft / 2)
    } else {
        n_samples
    };
    if padded < cfg.n_fft {
        0
    } else {
        1 + (padded - cfg.n_fft) / cfg.hop_length
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{MelNorm, MelScale, WindowKind};
    use proptest::prelude::*;

    /// A deterministic, non-trivial test signal: two tones, a chirp and a noise-like term.
    fn signal(n: usize, sr: f32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f32 / sr;
                0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                    + 0.2 * (2.0 * std::f32::consts::PI * (300.0 + 2000.0 * t) * t).sin()
                    + 0.05 * (((i * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
            })
            .collect()
    }

    fn small_cfg() -> FeatureConfig {
        FeatureConfig {
            n_fft: 256,
            win_length: 200,
            hop_length: 80,
            n_mels: 24,
            fmin: 0.0,
            ..FeatureConfig::default()
        }
    }

    #[test]
    fn frame_count_matches_librosa_formula() {
        let c = FeatureConfig::default();
        assert_eq!(n_frames(&c, 0), 0);
        assert_eq!(n_frames(&c, 1), 1);
        assert_eq!(n_frames(&c, 319), 1);
        assert_eq!(n_frames(&c, 320), 2);
        assert_eq!(n_frames(&c, 16_000), 51);
        let nc = FeatureConfig {
            center: false,
            ..c.clone()
        };
        assert_eq!(n_frames(&nc, 1023), 0);
        assert_eq!(n_frames(&nc, 1024), 1);
        assert_eq!(n_frames(&nc, 1024 + 319), 1);
        assert_eq!(n_frames(&nc, 1024 + 320), 2);
        for cfg in [c, nc, small_cfg()] {
            for n in [0usize, 1, 5, 79, 80, 81, 255, 256, 257, 1000, 4321] {
                let x = signal(n, 16_000.0);
                let f = logmel(&cfg, &x).unwrap();
                assert_eq!(f.len(), n_frames(&cfg, n) * cfg.n_mels, "n = {n}");
            }
        }
    }

    #[test]
    fn frame_is_centred_at_i_times_hop() {
        // An impulse at sample s only reaches frames whose window covers s; with
        // center the frame centred at s (s = i * hop) sees it at the window peak.
        let cfg = FeatureConfig {
            log: LogScale::Ln { eps: 1e-12 },
            ..small_cfg()
        };
        let mut x = vec![0.0f32; 2000];
        let s = 10 * cfg.hop_length;
        x[s] = 1.0;
        let f = logmel(&cfg, &x).unwrap();
        let energy: Vec<f32> = f
            .chunks(cfg.n_mels)
            .map(|r| r.iter().map(|v| v.exp()).sum())
            .collect();
        let best = energy
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(best, Some(10), "{energy:?}");
    }

    #[test]
    fn silence_gives_log_floor_and_db_floor() {
        let x = vec![0.0f32; 3000];
        let f = logmel(&FeatureConfig::default(), &x).unwrap();
        let floor = 1e-10f32.ln();
        assert!(f.iter().all(|&v| (v - floor).abs() < 1e-6));
        let db = FeatureConfig {
            log: LogScale::Db { amin: 1e-5 },
            ..FeatureConfig::default()
        };
        let f = logmel(&db, &x).unwrap();
        assert!(f.iter().all(|&v| (v + 50.0).abs() < 1e-4), "{:?}", &f[..4]);
    }

    #[test]
    fn per_band_normalisation_is_applied_after_the_log() {
        let base = small_cfg();
        let x = signal(4000, 16_000.0);
        let raw = logmel(&base, &x).unwrap();
        let mean: Vec<f32> = (0..base.n_mels).map(|m| -3.0 + m as f32 * 0.1).collect();
        let std: Vec<f32> = (0..base.n_mels).map(|m| 0.5 + m as f32 * 0.05).collect();
        let cfg = FeatureConfig {
            normalization: Normalization::PerBand {
                mean: mean.clone(),
                std: std.clone(),
            },
            ..base.clone()
        };
        let norm = logmel(&cfg, &x).unwrap();
        assert_eq!(raw.len(), norm.len());
        for (i, (r, n)) in raw.iter().zip(&norm).enumerate() {
            let m = i % base.n_mels;
            let want = (r - mean[m]) / std[m];
            assert!(
                (n - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{i}: {n} vs {want}"
            );
        }
    }

    #[test]
    fn frames_equal_manual_pad_frame_stft_mel_log() {
        // The wiring (padding, frame positions, |X| vs |X|², log kinds) against a direct
        // composition of the building blocks, in f64 after the FFT.
        for (power, log) in [
            (1.0, LogScale::Db { amin: 1e-10 }),
            (2.0, LogScale::Ln { eps: 1e-6 }),
        ] {
            let cfg = FeatureConfig {
                power,
                log,
                ..small_cfg()
            };
            let x = signal(1234, 16_000.0);
            let got = logmel(&cfg, &x).unwrap();
            let half = cfg.n_fft / 2;
            let mut padded = vec![0.0f32; half];
            padded.extend_from_slice(&x);
            padded.resize(padded.len() + half, 0.0);
            let mut stft = Stft::new(cfg.n_fft, cfg.win_length, cfg.window).unwrap();
            let fb = MelFilterbank::from_config(&cfg).unwrap();
            let n = n_frames(&cfg, x.len());
            assert_eq!(got.len(), n * cfg.n_mels);
            for i in 0..n {
                let frame = &padded[i * cfg.hop_length..i * cfg.hop_length + cfg.n_fft];
                let spec: Vec<f64> = stft
                    .spectrum(frame)
                    .iter()
                    .map(|c| {
                        let p = f64::from(c.re).powi(2) + f64::from(c.im).powi(2);
                        if power == 1.0 {
                            p.sqrt()
                        } else {
                            p
                        }
                    })
                    .collect();
                for m in 0..cfg.n_mels {
                    let (first, w) = fb.filter(m).unwrap();
                    let e: f64 = w
                        .iter()
                        .zip(&spec[first..])
                        .map(|(&w, s)| f64::from(w) * s)
                        .sum();
                    let want = match log {
                        LogScale::Ln { eps } => (e + f64::from(eps)).ln(),
                        LogScale::Db { amin } => 10.0 * e.max(f64::from(amin)).log10(),
                    };
                    let g = f64::from(got[i * cfg.n_mels + m]);
                    assert!(
                        (g - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "power {power}, frame {i}, band {m}: {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn reset_and_finish_start_a_new_stream() {
        let cfg = small_cfg();
        let x = signal(3000, 16_000.0);
        let once = logmel(&cfg, &x).unwrap();
        let mut fe = Frontend::new(&cfg).unwrap();
        let mut out = Vec::new();
        // Garbage first, then reset: must not leak into the next stream.
        fe.push(&signal(777, 8000.0), &mut out);
        fe.reset();
        assert_eq!(fe.frames_emitted(), 0);
        out.clear();
        fe.push(&x, &mut out);
        fe.finish(&mut out);
        assert_eq!(out, once);
        assert_eq!(fe.frames_emitted(), 0, "finish resets");
        // A second stream through the same frontend gives the same again.
        out.clear();
        let n = fe.push(&x, &mut out);
        assert_eq!(fe.frames_emitted(), n as u64);
        fe.finish(&mut out);
        assert_eq!(out, once);
    }

    #[test]
    fn push_does_not_allocate_once_out_has_capacity() {
        let cfg = FeatureConfig::default();
        let mut fe = Frontend::new(&cfg).unwrap();
        let x = signal(16_000, 16_000.0);
        let mut out = Vec::with_capacity(n_frames(&cfg, x.len()) * cfg.n_mels);
        let ptr = out.as_ptr();
        let buf_cap = fe.buf.capacity();
        for chunk in x.chunks(333) {
            fe.push(chunk, &mut out);
        }
        fe.finish(&mut out);
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!(fe.buf.capacity(), buf_cap);
        assert_eq!(out.len(), n_frames(&cfg, x.len()) * cfg.n_mels);
    }

    #[test]
    fn invalid_config_is_rejected_with_field_name() {
        let cfg = FeatureConfig {
            win_length: 2048,
            ..FeatureConfig::default()
        };
        let e = Frontend::new(&cfg).unwrap_err().to_string();
        assert!(e.contains("win_length") && e.contains("2048"), "{e}");
        let cfg = FeatureConfig {
            power: 3.0,
            ..FeatureConfig::default()
        };
        assert!(logmel(&cfg, &[0.0; 10]).is_err());
    }

    fn streaming_cfgs() -> Vec<FeatureConfig> {
        vec![
            FeatureConfig::default(),
            FeatureConfig {
                center: false,
                window: WindowKind::Hamming,
                ..small_cfg()
            },
            FeatureConfig {
                n_fft: 255,
                win_length: 255,
                hop_length: 255,
                mel_scale: MelScale::Htk,
                mel_norm: MelNorm::None,
                power: 1.0,
                log: LogScale::Db { amin: 1e-10 },
                ..small_cfg()
            },
        ]
    }

    #[test]
    fn frames_split_into_runs_equal_the_streaming_frames() {
        for cfg in streaming_cfgs() {
            let x = signal(7001, cfg.sample_rate as f32);
            let mut fe = Frontend::new(&cfg).unwrap();
            let mut stream = Vec::new();
            fe.push(&x, &mut stream);
            fe.finish(&mut stream);
            for per in [1usize, 7, 1000] {
                let mut runs = vec![f32::NAN; stream.len()];
                frames_in_runs(&cfg, &x, per, &mut runs).unwrap();
                assert!(
                    runs.iter()
                        .zip(&stream)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "per = {per}"
                );
            }
        }
        let mut reused = vec![1.0; 3];
        logmel_parallel_into(&FeatureConfig::default(), &[], &mut reused).unwrap();
        assert!(reused.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_chunking_gives_the_offline_frames(
            which in 0usize..3,
            len in 0usize..6000,
            cuts in proptest::collection::vec(0usize..1500, 0..40),
        ) {
            let cfg = streaming_cfgs().swap_remove(which);
            let x = signal(len, cfg.sample_rate as f32);
            let offline = logmel(&cfg, &x).unwrap();
            let mut fe = Frontend::new(&cfg).unwrap();
            let mut out = Vec::new();
            let mut rest = &x[..];
            let mut total = 0;
            for c in cuts {
                let c = c.min(rest.len());
                let n = fe.push(&rest[..c], &mut out);
                total += n;
                prop_assert_eq!(out.len(), total * cfg.n_mels);
                prop_assert_eq!(fe.frames_emitted(), total as u64);
                rest = &rest[c..];
            }
            total += fe.push(rest, &mut out);
            total += fe.finish(&mut out);
            prop_assert_eq!(total, n_frames(&cfg, len));
            // Bit for bit: every frame comes from the same samples through the same code.
            prop_assert_eq!(out.len(), offline.len());
            for (a, b) in out.iter().zip(&offline) {
                prop_assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }
}
