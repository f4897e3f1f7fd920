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

use super::augment::pitch_shift;
use super::dataset::load_audio;
use super::{invalid, io_err, Result, TrainError};

/// Settings of a synthesis run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// Foreground sources by class, and background files.
/// Foreground files by class, and background files.
type Sources = (BTreeMap<String, Vec<PathBuf>>, Vec<PathBuf>);

fn sources(cfg: &SynthConfig) -> Result<Sources> {
    let mut fg: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
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
            let mut files = Vec::new();
            audio_files(&c, &mut files)?;
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
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 3 {
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
            if f[0] == "background" {
                bg.push(path);
            } else {
                fg.entry(map(f[0])).or_default().push(path);
            }
        }
    }
    if let Some(dir) = &cfg.background_dir {
        audio_files(dir, &mut bg)?;
    }
    if !cfg.classes.is_empty() {
        fg.retain(|c, _| cfg.classes.contains(c));
    }
    fg.retain(|_, v| !v.is_empty());
    if fg.is_empty() {
        return Err(TrainError::Empty {
            what: "foreground sources".into(),
            reason: "no audio files found in `foreground_dir` / `manifest` for the chosen classes"
                .into(),
        });
    }
    Ok((fg, bg))
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

/// Makes the soundscapes described by `cfg`; returns what was written.
pub fn synthesize(cfg: &SynthConfig) -> Result<SynthSummary> {
    cfg.validate()?;
    let (fg, bg) = sources(cfg)?;
    let sr = cfg.sample_rate;
    let n = (cfg.clip_seconds * f64::from(sr)).round() as usize;
    let audio_dir = cfg.output_dir.join("audio");
    std::fs::create_dir_all(&audio_dir).map_err(io_err(&audio_dir))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let mut cache: BTreeMap<PathBuf, std::rc::Rc<Vec<f32>>> = BTreeMap::new();
    let mut load = |p: &Path| -> Result<std::rc::Rc<Vec<f32>>> {
        if let Some(a) = cache.get(p) {
            return Ok(a.clone());
        }
        let a = std::rc::Rc::new(load_audio(p, sr)?);
        cache.insert(p.to_path_buf(), a.clone());
        Ok(a)
    };
    let classes: Vec<&String> = fg.keys().collect();
    let bg_level = 10f64.powf(cfg.background_db / 20.0);
    let mut events = Vec::new();
    let mut per_class: BTreeMap<String, usize> =
        classes.iter().map(|c| ((*c).clone(), 0)).collect();
    let width = cfg.n_clips.to_string().len().max(4);
    for k in 0..cfg.n_clips {
        let name = format!("soundscape_{k:0width$}.wav");
        let mut mix = vec![0.0f32; n];
        if !bg.is_empty() {
            let b = load(&bg[rng.random_range(0..bg.len())])?;
            if !b.is_empty() {
                let start = rng.random_range(0..b.len());
                for (i, m) in mix.iter_mut().enumerate() {
                    *m = b[(start + i) % b.len()];
                }
                let r = rms(&mix);
                if r > 0.0 {
                    let g = (bg_level / r) as f32;
                    mix.iter_mut().for_each(|v| *v *= g);
                }
            }
        }
        let n_events = rng.random_range(cfg.events.0..=cfg.events.1);
        let mut placed: Vec<(usize, usize)> = Vec::new();
        for _ in 0..n_events {
            let class = classes[rng.random_range(0..classes.len())];
            let files = &fg[class];
            let src_path = &files[rng.random_range(0..files.len())];
            let src = load(src_path)?;
            let mut ev: Vec<f32> = trim(&src).to_vec();
            let semis = range(&mut rng, cfg.pitch_semitones);
            if semis != 0.0 {
                ev = pitch_shift(&ev, semis);
            }
            let stretch = range(&mut rng, cfg.time_stretch);
            if (stretch - 1.0).abs() > 1e-9 {
                // Resampling by 1/stretch lengthens by `stretch` (and shifts pitch,
                // which the pitch shift above can compensate).
                ev = pitch_shift(&ev, -12.0 * stretch.log2());
            }
            let max_len = ((cfg.max_event_seconds * f64::from(sr)) as usize)
                .min(n)
                .max(1);
            if ev.len() > max_len {
                let s = rng.random_range(0..=ev.len() - max_len);
                ev = ev[s..s + max_len].to_vec();
            }
            if ev.is_empty() || rms(&ev) == 0.0 {
                continue;
            }
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
            *per_class.entry(class.clone()).or_default() += 1;
            events.push(SynthEvent {
                file: name.clone(),
                onset: o as f64 / f64::from(sr),
                offset: (o + ev.len()) as f64 / f64::from(sr),
                label: class.clone(),
                snr_db: snr,
                source: src_path.display().to_string(),
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
    };
    let p = cfg.output_dir.join("summary.json");
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    std::fs::write(&p, json).map_err(io_err(&p))?;
    tracing::info!(clips = cfg.n_clips, events = summary.events.len(), dir = %cfg.output_dir.display(), "synthesised soundscapes");
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
