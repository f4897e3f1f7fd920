//! `hark synth`: Scaper-like soundscape synthesis. From foreground events (a folder per
//! class, or a manifest TSV) and backgrounds, makes N clips with a random number of
//! events at random onsets, per-event SNR relative to the background, optional pitch
//! shift, time stretch and gain, and a polyphony limit; seeded and reproducible.
//! Writes `audio/*.wav`, `strong.tsv`, `weak.tsv` and `summary.json`.
//!
//! Sources of any format, rate and channel count are decoded with
//! [`crate::audio::decode_file`] and resampled with
//! [`crate::audio::resample::Resampler`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::augment::{low_pass, pitch_shift};
use super::dataset::load_audio;
use super::{invalid, io_err, Result, TrainError};

/// Settings of a synthesis run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// Foreground folder with one sub-folder of audio files per class.
    #[serde(default)]
    pub foreground_dir: Option<PathBuf>,
    /// Manifest TSV (`class  pkg  relpath ...` with a header, as
    /// `train-manifest.tsv`); files are `manifest_root/pkg/relpath` (or
    /// `manifest_root/relpath`). Class `background` rows are backgrounds.
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    /// Root of the manifest's files.
    #[serde(default)]
    pub manifest_root: Option<PathBuf>,
    /// Class renames (`manifest name → model class`), e.g. `scream_pain → scream`.
    #[serde(default)]
    pub class_map: BTreeMap<String, String>,
    /// Keep only these classes (after mapping); all when empty.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Background folder (every audio file in it, recursively); silence when absent.
    #[serde(default)]
    pub background_dir: Option<PathBuf>,
    /// Output folder.
    pub output_dir: PathBuf,
    /// Number of clips.
    pub n_clips: usize,
    /// Clip length, seconds.
    pub clip_seconds: f64,
    /// Output sample rate, Hz.
    pub sample_rate: u32,
    /// Fewest and most events per clip.
    pub events: (usize, usize),
    /// Event SNR range relative to the background, dB.
    pub snr_db: (f64, f64),
    /// Most events sounding at once.
    pub polyphony: usize,
    /// Pitch shift range, semitones ((0, 0) = off).
    pub pitch_semitones: (f64, f64),
    /// Time-stretch factor range ((1, 1) = off).
    pub time_stretch: (f64, f64),
    /// Extra random gain range of the whole clip, dB.
    pub gain_db: (f64, f64),
    /// Longest event, seconds (longer sources are cropped at random).
    pub max_event_seconds: f64,
    /// Background level, dBFS RMS (the reference of the SNR).
    pub background_db: f64,
    /// Seed.
    pub seed: u64,
    /// Shortest crop of a source longer than `max_event_seconds`, seconds (default: crop
    /// to `max_event_seconds`). Long water or bird recordings become events of
    /// `min_crop_seconds..=max_event_seconds`.
    pub min_crop_seconds: Option<f64>,
    /// Classes whose events are sequences of short sources (footsteps as walking):
    /// class → steps per second and sequence length.
    pub sequences: BTreeMap<String, SequenceConfig>,
    /// Probability that a clip's background is synthetic room tone (pink or brown noise
    /// with mains hum) instead of a background recording (always when there is none and
    /// this is > 0).
    pub room_tone_prob: f64,
    /// Probability that an event is band-limited (low-passed) to a random cutoff in
    /// `band_limit_hz`, so bandwidth does not give the class away.
    pub band_limit_prob: f64,
    /// Cutoff range of the band-limiting, Hz.
    pub band_limit_hz: (f64, f64),
    /// Classes of the sources mixed in as unlabelled distractor events (e.g. sounds the
    /// model must not mistake for its classes); not written to the labels.
    pub distractors: Vec<String>,
    /// Probability that an event is a distractor (when `distractors` is not empty).
    pub distractor_prob: f64,
    /// Hold out a seeded fraction of the source files (foreground and background) and use
    /// either the rest or only the held-out part: disjoint sources for training and
    /// validation soundscapes.
    pub holdout: Option<Holdout>,
}

/// Events of one class built as a sequence of short sources (e.g. steps).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceConfig {
    /// Sources per second, range (walking: 1.5–2.5 steps/s).
    pub rate_hz: (f64, f64),
    /// Length of a sequence, seconds, range.
    pub seconds: (f64, f64),
}

/// Which part of the source split a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldoutPart {
    /// Every source except the held-out fraction.
    Train,
    /// Only the held-out fraction.
    Holdout,
}

/// A reproducible split of the source files by a hash of their name (the manifest's
/// `pkg/relpath`, or the path below the source folder) and a seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    /// Fraction of the sources held out (0..1).
    pub fraction: f64,
    /// The part this run uses.
    pub part: HoldoutPart,
    /// Seed of the split (independent of the synthesis seed).
    #[serde(default)]
    pub seed: u64,
}

impl Holdout {
    /// Whether the source named `key` is in the part this run uses.
    pub fn keeps(&self, key: &str) -> bool {
        // FNV-1a: stable across platforms and Rust versions.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        (u < self.fraction) == (self.part == HoldoutPart::Holdout)
    }
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            foreground_dir: None,
            manifest: None,
            manifest_root: None,
            class_map: BTreeMap::new(),
            classes: Vec::new(),
            background_dir: None,
            output_dir: PathBuf::from("synth"),
            n_clips: 100,
            clip_seconds: 10.0,
            sample_rate: 16_000,
            events: (1, 3),
            snr_db: (6.0, 30.0),
            polyphony: 2,
            pitch_semitones: (0.0, 0.0),
            time_stretch: (1.0, 1.0),
            gain_db: (0.0, 0.0),
            max_event_seconds: 5.0,
            background_db: -40.0,
            seed: 0,
            min_crop_seconds: None,
            sequences: BTreeMap::new(),
            room_tone_prob: 0.0,
            band_limit_prob: 0.0,
            band_limit_hz: (3500.0, 8000.0),
            holdout: None,
            distractors: Vec::new(),
            distractor_prob: 0.0,
        }
    }
}

/// One placed event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthEvent {
    /// Clip file name.
    pub file: String,
    /// Onset, seconds.
    pub onset: f64,
    /// Offset, seconds.
    pub offset: f64,
    /// Class.
    pub label: String,
    /// SNR used, dB.
    pub snr_db: f64,
    /// Source file.
    pub source: String,
}

/// What a run made (also written as `summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SynthSummary {
    /// The settings.
    pub config: SynthConfig,
    /// Clips written.
    pub n_clips: usize,
    /// Events placed per class.
    pub events_per_class: BTreeMap<String, usize>,
    /// Every event.
    pub events: Vec<SynthEvent>,
    /// Unlabelled distractor events placed per class.
    pub distractors_per_class: BTreeMap<String, usize>,
    /// Source files that could not be decoded and were skipped, with the reason.
    pub skipped_sources: Vec<String>,
}

const AUDIO_EXT: &[&str] = &["wav", "flac", "ogg", "oga", "mp3"];

fn audio_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            audio_files(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| AUDIO_EXT.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// One source file and its name for the hold-out split.
#[derive(Debug, Clone)]
struct Source {
    path: PathBuf,
    key: String,
}

/// Foreground files by class, background files, and distractor files by class.
type Sources = (
    BTreeMap<String, Vec<Source>>,
    Vec<Source>,
    BTreeMap<String, Vec<Source>>,
);

fn folder_sources(dir: &Path) -> Result<Vec<Source>> {
    let mut files = Vec::new();
    audio_files(dir, &mut files)?;
    Ok(files
        .into_iter()
        .map(|path| {
            let key = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            Source { path, key }
        })
        .collect())
}

fn sources(cfg: &SynthConfig) -> Result<Sources> {
    let mut fg: BTreeMap<String, Vec<Source>> = BTreeMap::new();
    let mut bg = Vec::new();
    let map = |c: &str| {
        cfg.class_map
            .get(c)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    };
    if let Some(dir) = &cfg.foreground_dir {
        let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        classes.sort();
        for c in classes {
            let name = map(&c.file_name().unwrap_or_default().to_string_lossy());
            let mut files = folder_sources(&c)?;
            for f in &mut files {
                f.key = format!("{name}/{}", f.key);
            }
            fg.entry(name).or_default().extend(files);
        }
    }
    if let Some(m) = &cfg.manifest {
        let root = cfg
            .manifest_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("."));
        let text = std::fs::read_to_string(m).map_err(io_err(m))?;
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 3 || f[0].is_empty() || f[2].is_empty() {
                return Err(TrainError::Metadata {
                    path: m.clone(),
                    line: i + 1,
                    reason: "expected `class  pkg  relpath` columns".into(),
                });
            }
            let with_pkg = root.join(f[1]).join(f[2]);
            let path = if with_pkg.exists() {
                with_pkg
            } else {
                root.join(f[2])
            };
            let src = Source {
                path,
                key: format!("{}/{}", f[1], f[2]),
            };
            if f[0] == "background" {
                bg.push(src);
            } else {
                fg.entry(map(f[0])).or_default().push(src);
            }
        }
    }
    if let Some(dir) = &cfg.background_dir {
        bg.extend(folder_sources(dir)?);
    }
    let mut distract: BTreeMap<String, Vec<Source>> = BTreeMap::new();
    for d in &cfg.distractors {
        if let Some(v) = fg.remove(d) {
            distract.insert(d.clone(), v);
        }
    }
    if !cfg.classes.is_empty() {
        fg.retain(|c, _| cfg.classes.contains(c));
    }
    if let Some(h) = &cfg.holdout {
        fg.values_mut().for_each(|v| v.retain(|s| h.keeps(&s.key)));
        distract
            .values_mut()
            .for_each(|v| v.retain(|s| h.keeps(&s.key)));
        bg.retain(|s| h.keeps(&s.key));
    }
    distract.retain(|_, v| !v.is_empty());
    fg.retain(|_, v| !v.is_empty());
    if fg.is_empty() {
        return Err(TrainError::Empty {
            what: "foreground sources".into(),
            reason: "no audio files found in `foreground_dir` / `manifest` for the chosen classes"
                .into(),
        });
    }
    Ok((fg, bg, distract))
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Trims leading and trailing parts quieter than −50 dB below the peak.
fn trim(x: &[f32]) -> &[f32] {
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let th = peak * 0.003;
    let s = x.iter().position(|v| v.abs() > th).unwrap_or(0);
    let e = x
        .iter()
        .rposition(|v| v.abs() > th)
        .map_or(x.len(), |e| e + 1);
    &x[s..e.max(s)]
}

fn range(rng: &mut impl Rng, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

impl SynthConfig {
    /// Checks ranges; the error names the setting.
    pub fn validate(&self) -> Result<()> {
        if self.n_clips == 0 {
            return Err(invalid("n_clips", 0, "at least 1"));
        }
        if !(self.clip_seconds > 0.0 && self.clip_seconds <= 3600.0) {
            return Err(invalid("clip_seconds", self.clip_seconds, "0 < s ≤ 3600"));
        }
        if !(1000..=384_000).contains(&self.sample_rate) {
            return Err(invalid("sample_rate", self.sample_rate, "1000..=384000 Hz"));
        }
        if self.events.0 > self.events.1 {
            return Err(invalid("events", format!("{:?}", self.events), "min ≤ max"));
        }
        if self.polyphony == 0 {
            return Err(invalid("polyphony", 0, "at least 1"));
        }
        for (name, (lo, hi)) in [
            ("snr_db", self.snr_db),
            ("pitch_semitones", self.pitch_semitones),
            ("time_stretch", self.time_stretch),
            ("gain_db", self.gain_db),
        ] {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(invalid(
                    name,
                    format!("({lo}, {hi})"),
                    "a finite range min ≤ max",
                ));
            }
        }
        if self.time_stretch.0 <= 0.0 {
            return Err(invalid("time_stretch", self.time_stretch.0, "factors > 0"));
        }
        if let Some(m) = self.min_crop_seconds {
            if !(m > 0.0 && m <= self.max_event_seconds) {
                return Err(invalid("min_crop_seconds", m, "0 < s ≤ max_event_seconds"));
            }
        }
        if self.max_event_seconds.is_nan() || self.max_event_seconds <= 0.0 {
            return Err(invalid("max_event_seconds", self.max_event_seconds, "> 0"));
        }
        for (name, p) in [
            ("room_tone_prob", self.room_tone_prob),
            ("band_limit_prob", self.band_limit_prob),
            ("distractor_prob", self.distractor_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid(name, p, "a probability in 0..=1"));
            }
        }
        let (lo, hi) = self.band_limit_hz;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return Err(invalid(
                "band_limit_hz",
                format!("({lo}, {hi})"),
                "0 < min ≤ max (Hz)",
            ));
        }
        for (class, s) in &self.sequences {
            let ok = |(a, b): (f64, f64)| a > 0.0 && a <= b && b.is_finite();
            if !ok(s.rate_hz) || !ok(s.seconds) {
                return Err(invalid(
                    &format!("sequences.{class}"),
                    format!("rate_hz {:?}, seconds {:?}", s.rate_hz, s.seconds),
                    "positive ranges min ≤ max",
                ));
            }
        }
        if let Some(h) = &self.holdout {
            if !(h.fraction > 0.0 && h.fraction < 1.0) {
                return Err(invalid("holdout.fraction", h.fraction, "0 < f < 1"));
            }
        }
        if self.foreground_dir.is_none() && self.manifest.is_none() {
            return Err(invalid(
                "foreground_dir",
                "none",
                "a foreground folder or a manifest",
            ));
        }
        Ok(())
    }
}

/// Decoded sources, each decoded once; files that fail to decode are remembered and
/// skipped (with a warning) rather than ending the run.
struct SourceCache {
    rate: u32,
    decoded: BTreeMap<PathBuf, std::rc::Rc<Vec<f32>>>,
    failed: BTreeMap<PathBuf, String>,
}

impl SourceCache {
    fn get(&mut self, p: &Path) -> Option<std::rc::Rc<Vec<f32>>> {
        if let Some(a) = self.decoded.get(p) {
            return Some(a.clone());
        }
        if self.failed.contains_key(p) {
            return None;
        }
        match load_audio(p, self.rate) {
            Ok(a) => {
                let a = std::rc::Rc::new(a);
                self.decoded.insert(p.to_path_buf(), a.clone());
                Some(a)
            }
            Err(e) => {
                tracing::warn!(file = %p.display(), error = %e, "skipping a source that cannot be decoded");
                self.failed.insert(p.to_path_buf(), e.to_string());
                None
            }
        }
    }
}

/// Synthetic indoor room tone: pink or brown noise plus mains hum (50 or 60 Hz with
/// harmonics), `n` samples at `sr`, unit RMS.
pub fn room_tone(n: usize, sr: u32, rng: &mut impl Rng) -> Vec<f32> {
    let brown = rng.random::<bool>();
    let mut out = Vec::with_capacity(n);
    // Pink noise by the Voss-McCartney-like filter bank of Paul Kellet (economy form).
    let (mut b0, mut b1, mut b2, mut acc) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for _ in 0..n {
        let w = rng.random::<f64>() * 2.0 - 1.0;
        let v = if brown {
            acc = 0.995 * acc + 0.1 * w;
            acc
        } else {
            b0 = 0.99765 * b0 + w * 0.099_046;
            b1 = 0.963 * b1 + w * 0.296_516_4;
            b2 = 0.57 * b2 + w * 1.052_691_3;
            b0 + b1 + b2 + w * 0.1848
        };
        out.push(v);
    }
    let noise_rms = (out.iter().map(|v| v * v).sum::<f64>() / n.max(1) as f64)
        .sqrt()
        .max(1e-12);
    let mains = if rng.random::<bool>() { 50.0 } else { 60.0 };
    let hum_db = rng.random_range(-30.0..-6.0f64); // hum level relative to the noise
    let hum = 10f64.powf(hum_db / 20.0);
    let phase: [f64; 3] = std::array::from_fn(|_| rng.random_range(0.0..std::f64::consts::TAU));
    let w = std::f64::consts::TAU * mains / f64::from(sr);
    let mut y: Vec<f32> = out
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let t = i as f64 * w;
            let h = (t + phase[0]).sin()
                + 0.5 * (2.0 * t + phase[1]).sin()
                + 0.25 * (3.0 * t + phase[2]).sin();
            (v / noise_rms + hum * h) as f32
        })
        .collect();
    let r = rms(&y);
    if r > 0.0 {
        let g = (1.0 / r) as f32;
        y.iter_mut().for_each(|v| *v *= g);
    }
    y
}

/// Draws one event of `class`: a cropped source, or a sequence of sources for the
/// classes in `cfg.sequences`. `None` when no source of the class decodes.
fn draw_event(
    cfg: &SynthConfig,
    class: &str,
    files: &[Source],
    cache: &mut SourceCache,
    rng: &mut impl Rng,
    n: usize,
) -> Option<(Vec<f32>, String)> {
    let sr = cfg.sample_rate;
    let mut pick = |rng: &mut dyn rand::RngCore| -> Option<(Vec<f32>, &Source)> {
        for _ in 0..8 {
            let src = &files[rng.random_range(0..files.len())];
            if let Some(a) = cache.get(&src.path) {
                let t = trim(&a);
                if !t.is_empty() && rms(t) > 0.0 {
                    return Some((t.to_vec(), src));
                }
            }
        }
        None
    };
    let (mut ev, name) = if let Some(seq) = cfg.sequences.get(class) {
        let rate = range(rng, seq.rate_hz).max(0.1);
        let len_s = range(rng, seq.seconds);
        let steps = ((rate * len_s).round() as usize).max(1);
        let period = f64::from(sr) / rate;
        let (first, src) = pick(rng)?;
        let name = src.source_name(steps);
        // Steps of one walker: the same source for the whole sequence half the time,
        // otherwise random steps of the class.
        let same = rng.random::<bool>();
        let mut out: Vec<f32> = Vec::new();
        for k in 0..steps {
            let step = if k == 0 || same {
                first.clone()
            } else {
                pick(rng).map_or_else(|| first.clone(), |(s, _)| s)
            };
            let jitter = rng.random_range(-0.1..0.1f64);
            let at = ((k as f64 + jitter).max(0.0) * period) as usize;
            let g = 10f64.powf(rng.random_range(-3.0..3.0f64) / 20.0) as f32;
            if out.len() < at + step.len() {
                out.resize(at + step.len(), 0.0);
            }
            for (o, v) in out[at..].iter_mut().zip(&step) {
                *o += g * v;
            }
        }
        (out, name)
    } else {
        let (ev, src) = pick(rng)?;
        (ev, src.path.display().to_string())
    };
    let semis = range(rng, cfg.pitch_semitones);
    if semis != 0.0 {
        ev = pitch_shift(&ev, semis);
    }
    let stretch = range(rng, cfg.time_stretch);
    if (stretch - 1.0).abs() > 1e-9 {
        // Resampling by 1/stretch lengthens by `stretch` (and shifts pitch, which the
        // pitch shift above can compensate).
        ev = pitch_shift(&ev, -12.0 * stretch.log2());
    }
    let max_len = ((cfg.max_event_seconds * f64::from(sr)) as usize)
        .min(n)
        .max(1);
    if ev.len() > max_len {
        let min_len = cfg.min_crop_seconds.map_or(max_len, |m| {
            ((m * f64::from(sr)) as usize).clamp(1, max_len)
        });
        let len = rng.random_range(min_len..=max_len);
        let s = rng.random_range(0..=ev.len() - len);
        ev = ev[s..s + len].to_vec();
    }
    if cfg.band_limit_prob > 0.0 && rng.random::<f64>() < cfg.band_limit_prob {
        let cutoff = range(rng, cfg.band_limit_hz);
        low_pass(&mut ev, sr, cutoff);
    }
    if ev.is_empty() || rms(&ev) == 0.0 {
        return None;
    }
    Some((ev, name))
}

impl Source {
    fn source_name(&self, steps: usize) -> String {
        format!("{} (sequence of {steps})", self.path.display())
    }
}

/// Makes the soundscapes described by `cfg`; returns what was written.
pub fn synthesize(cfg: &SynthConfig) -> Result<SynthSummary> {
    cfg.validate()?;
    let (fg, bg, distract) = sources(cfg)?;
    let distract_classes: Vec<&String> = distract.keys().collect();
    let sr = cfg.sample_rate;
    let n = (cfg.clip_seconds * f64::from(sr)).round() as usize;
    let audio_dir = cfg.output_dir.join("audio");
    std::fs::create_dir_all(&audio_dir).map_err(io_err(&audio_dir))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut cache = SourceCache {
        rate: sr,
        decoded: BTreeMap::new(),
        failed: BTreeMap::new(),
    };
    let classes: Vec<&String> = fg.keys().collect();
    let bg_level = 10f64.powf(cfg.background_db / 20.0);
    let mut events = Vec::new();
    let mut per_class: BTreeMap<String, usize> =
        classes.iter().map(|c| ((*c).clone(), 0)).collect();
    let mut distractors_placed: BTreeMap<String, usize> = BTreeMap::new();
    let width = cfg.n_clips.to_string().len().max(4);
    for k in 0..cfg.n_clips {
        let name = format!("soundscape_{k:0width$}.wav");
        let mut mix = vec![0.0f32; n];
        let synthetic =
            cfg.room_tone_prob > 0.0 && (bg.is_empty() || rng.random::<f64>() < cfg.room_tone_prob);
        if synthetic {
            mix = room_tone(n, sr, &mut rng);
        } else if !bg.is_empty() {
            if let Some(b) = cache.get(&bg[rng.random_range(0..bg.len())].path) {
                if !b.is_empty() {
                    let start = rng.random_range(0..b.len());
                    for (i, m) in mix.iter_mut().enumerate() {
                        *m = b[(start + i) % b.len()];
                    }
                }
            }
        }
        let r = rms(&mix);
        if r > 0.0 {
            let g = (bg_level / r) as f32;
            mix.iter_mut().for_each(|v| *v *= g);
        }
        let n_events = rng.random_range(cfg.events.0..=cfg.events.1);
        let mut placed: Vec<(usize, usize)> = Vec::new();
        for _ in 0..n_events {
            let distractor = !distract_classes.is_empty()
                && cfg.distractor_prob > 0.0
                && rng.random::<f64>() < cfg.distractor_prob;
            let (class, files) = if distractor {
                let c = distract_classes[rng.random_range(0..distract_classes.len())];
                (c, &distract[c])
            } else {
                let c = classes[rng.random_range(0..classes.len())];
                (c, &fg[c])
            };
            let Some((ev, source)) = draw_event(cfg, class, files, &mut cache, &mut rng, n) else {
                continue;
            };
            // Choose an onset that respects the polyphony limit (a few tries).
            let mut onset = None;
            for _ in 0..20 {
                let o = rng.random_range(0..=n - ev.len());
                let end = o + ev.len();
                let overlap_max = (o..end)
                    .step_by((sr / 100).max(1) as usize)
                    .map(|t| placed.iter().filter(|&&(a, b)| t >= a && t < b).count())
                    .max()
                    .unwrap_or(0);
                if overlap_max < cfg.polyphony {
                    onset = Some(o);
                    break;
                }
            }
            let Some(o) = onset else { continue };
            let snr = range(&mut rng, cfg.snr_db);
            let g = (bg_level * 10f64.powf(snr / 20.0) / rms(&ev)) as f32;
            for (i, v) in ev.iter().enumerate() {
                mix[o + i] += g * v;
            }
            placed.push((o, o + ev.len()));
            if distractor {
                *distractors_placed.entry(class.clone()).or_default() += 1;
                continue;
            }
            *per_class.entry(class.clone()).or_default() += 1;
            events.push(SynthEvent {
                file: name.clone(),
                onset: o as f64 / f64::from(sr),
                offset: (o + ev.len()) as f64 / f64::from(sr),
                label: class.clone(),
                snr_db: snr,
                source,
            });
        }
        let gain = 10f64.powf(range(&mut rng, cfg.gain_db) / 20.0) as f32;
        mix.iter_mut().for_each(|v| *v *= gain);
        let peak = mix.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if peak > 0.99 {
            let s = 0.99 / peak;
            mix.iter_mut().for_each(|v| *v *= s);
        }
        write_wav(&audio_dir.join(&name), &mix, sr)?;
    }
    write_labels(cfg, &events)?;
    let summary = SynthSummary {
        config: cfg.clone(),
        n_clips: cfg.n_clips,
        events_per_class: per_class,
        events,
        distractors_per_class: distractors_placed,
        skipped_sources: cache
            .failed
            .iter()
            .map(|(p, e)| format!("{}: {e}", p.display()))
            .collect(),
    };
    let p = cfg.output_dir.join("summary.json");
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(&p, json).map_err(io_err(&p))?;
    tracing::info!(clips = cfg.n_clips, events = summary.events.len(), skipped = summary.skipped_sources.len(), dir = %cfg.output_dir.display(), "synthesised soundscapes");
    Ok(summary)
}

/// Writes mono 16-bit PCM.
pub fn write_wav(path: &Path, x: &[f32], rate: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let err = |e: hound::Error| TrainError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &v in x {
        w.write_sample((v.clamp(-1.0, 1.0) * 32767.0).round() as i16)
            .map_err(err)?;
    }
    w.finalize().map_err(err)
}

fn write_labels(cfg: &SynthConfig, events: &[SynthEvent]) -> Result<()> {
    let mut strong = String::from("filename\tonset\toffset\tevent_label\n");
    let mut weak = String::from("filename\tevent_labels\n");
    let width = cfg.n_clips.to_string().len().max(4);
    for k in 0..cfg.n_clips {
        let name = format!("soundscape_{k:0width$}.wav");
        let mut labels: Vec<&str> = Vec::new();
        let mut any = false;
        for e in events.iter().filter(|e| e.file == name) {
            strong.push_str(&format!(
                "{}\t{:.4}\t{:.4}\t{}\n",
                e.file, e.onset, e.offset, e.label
            ));
            if !labels.contains(&e.label.as_str()) {
                labels.push(&e.label);
            }
            any = true;
        }
        if !any {
            // A strongly labelled clip without events: keep it in the strong list.
            strong.push_str(&format!("{name}\t0\t0\t\n"));
        }
        labels.sort_unstable();
        weak.push_str(&format!("{name}\t{}\n", labels.join(",")));
    }
    for (f, text) in [("strong.tsv", strong), ("weak.tsv", weak)] {
        let p = cfg.output_dir.join(f);
        std::fs::write(&p, text).map_err(io_err(&p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tone of `secs` seconds at `hz`, written as a WAV at `rate`.
    fn tone(path: &Path, hz: f64, secs: f64, rate: u32) {
        let n = (secs * f64::from(rate)) as usize;
        let x: Vec<f32> = (0..n)
            .map(|i| (0.5 * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin()) as f32)
            .collect();
        write_wav(path, &x, rate).unwrap();
    }

    fn band_energy(x: &[f32], rate: u32, lo: f64, hi: f64) -> f64 {
        // Goertzel-free: a plain DFT over a few bins is enough for a test.
        let n = x.len().min(4096);
        let mut e = 0.0;
        for k in 1..n / 2 {
            let f = k as f64 * f64::from(rate) / n as f64;
            if f < lo || f >= hi {
                continue;
            }
            let (mut re, mut im) = (0.0, 0.0);
            for (i, &v) in x[..n].iter().enumerate() {
                let a = std::f64::consts::TAU * (k * i) as f64 / n as f64;
                re += f64::from(v) * a.cos();
                im -= f64::from(v) * a.sin();
            }
            e += re * re + im * im;
        }
        e
    }

    #[test]
    fn holdout_splits_sources_into_complementary_parts() {
        let keys: Vec<String> = (0..2000)
            .map(|i| format!("pkg/sounds/file{i}.ogg"))
            .collect();
        let part = |p| Holdout {
            fraction: 0.15,
            part: p,
            seed: 3,
        };
        let train: Vec<bool> = keys
            .iter()
            .map(|k| part(HoldoutPart::Train).keeps(k))
            .collect();
        let held: Vec<bool> = keys
            .iter()
            .map(|k| part(HoldoutPart::Holdout).keeps(k))
            .collect();
        assert!(
            train.iter().zip(&held).all(|(a, b)| a != b),
            "parts must be disjoint and cover all"
        );
        let frac = held.iter().filter(|&&h| h).count() as f64 / keys.len() as f64;
        assert!((frac - 0.15).abs() < 0.03, "held-out fraction {frac}");
        // Another seed gives another split.
        let other = Holdout {
            seed: 4,
            ..part(HoldoutPart::Holdout)
        };
        assert!(keys.iter().zip(&held).any(|(k, &h)| other.keeps(k) != h));
    }

    #[test]
    fn room_tone_has_unit_rms_and_mains_hum() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let sr = 16_000;
        let x = room_tone(sr as usize * 2, sr, &mut rng);
        assert!((rms(&x) - 1.0).abs() < 1e-3);
        assert!(x.iter().all(|v| v.is_finite()));
        // Energy near 50/60 Hz stands out against a neighbouring band of the same width.
        let hum = band_energy(&x, sr, 45.0, 65.0);
        let near = band_energy(&x, sr, 400.0, 420.0);
        assert!(hum > near, "hum {hum} vs {near}");
    }

    #[test]
    fn low_pass_removes_what_is_above_the_cutoff() {
        let sr = 16_000;
        let mut x: Vec<f32> = (0..8000)
            .map(|i| {
                let t = i as f64 / f64::from(sr);
                ((std::f64::consts::TAU * 500.0 * t).sin()
                    + (std::f64::consts::TAU * 6000.0 * t).sin()) as f32
            })
            .collect();
        let before_hi = band_energy(&x, sr, 5800.0, 6200.0);
        let before_lo = band_energy(&x, sr, 400.0, 600.0);
        low_pass(&mut x, sr, 4000.0);
        assert!(band_energy(&x, sr, 5800.0, 6200.0) < before_hi * 1e-6);
        let lo = band_energy(&x, sr, 400.0, 600.0);
        assert!((lo / before_lo - 1.0).abs() < 1e-3);
    }

    #[test]
    fn sequences_distractors_and_undecodable_sources() {
        let dir = tempfile::tempdir().unwrap();
        let fg = dir.path().join("fg");
        for c in ["footsteps", "chime", "dog"] {
            std::fs::create_dir_all(fg.join(c)).unwrap();
        }
        tone(&fg.join("footsteps/step.wav"), 300.0, 0.15, 22_050);
        tone(&fg.join("chime/ding.wav"), 1200.0, 0.5, 44_100);
        tone(&fg.join("dog/woof.wav"), 700.0, 0.4, 16_000);
        std::fs::write(fg.join("chime/broken.wav"), b"RIFF not a wav").unwrap();
        let mut sequences = BTreeMap::new();
        sequences.insert(
            "footsteps".to_string(),
            SequenceConfig {
                rate_hz: (2.0, 2.0),
                seconds: (3.0, 3.0),
            },
        );
        let cfg = SynthConfig {
            foreground_dir: Some(fg),
            output_dir: dir.path().join("out"),
            n_clips: 12,
            clip_seconds: 6.0,
            events: (2, 3),
            sequences,
            distractors: vec!["dog".into()],
            distractor_prob: 0.3,
            room_tone_prob: 1.0,
            band_limit_prob: 0.5,
            seed: 9,
            ..SynthConfig::default()
        };
        let s = synthesize(&cfg).unwrap();
        assert_eq!(s.skipped_sources.len(), 1, "{:?}", s.skipped_sources);
        assert!(s.skipped_sources[0].contains("broken.wav"));
        assert!(
            s.events.iter().all(|e| e.label != "dog"),
            "distractors are not labelled"
        );
        assert!(s.distractors_per_class.get("dog").copied().unwrap_or(0) > 0);
        let steps: Vec<&SynthEvent> = s.events.iter().filter(|e| e.label == "footsteps").collect();
        assert!(!steps.is_empty());
        for e in steps {
            // 6 steps at 2/s: from the first onset to the end of the last step ≈ 2.65 s.
            let d = e.offset - e.onset;
            assert!((2.3..=3.0).contains(&d), "walking sequence of {d} s");
        }
        let strong = std::fs::read_to_string(dir.path().join("out/strong.tsv")).unwrap();
        assert!(!strong.contains("dog"));
        // Same seed → same output.
        let again = synthesize(&SynthConfig {
            output_dir: dir.path().join("again"),
            ..cfg.clone()
        })
        .unwrap();
        assert_eq!(again.events.len(), s.events.len());
        assert_eq!(
            std::fs::read(dir.path().join("out/audio/soundscape_0003.wav")).unwrap(),
            std::fs::read(dir.path().join("again/audio/soundscape_0003.wav")).unwrap()
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        let base = SynthConfig {
            foreground_dir: Some(PathBuf::from("x")),
            ..SynthConfig::default()
        };
        let cases = [
            SynthConfig {
                room_tone_prob: 1.5,
                ..base.clone()
            },
            SynthConfig {
                band_limit_hz: (5000.0, 100.0),
                ..base.clone()
            },
            SynthConfig {
                min_crop_seconds: Some(9.0),
                ..base.clone()
            },
            SynthConfig {
                holdout: Some(Holdout {
                    fraction: 1.0,
                    part: HoldoutPart::Train,
                    seed: 0,
                }),
                ..base.clone()
            },
        ];
        for (cfg, field) in cases.iter().zip([
            "room_tone_prob",
            "band_limit_hz",
            "min_crop_seconds",
            "holdout.fraction",
        ]) {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
