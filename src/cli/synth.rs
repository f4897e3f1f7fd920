//! `hark synth`: makes strongly labelled soundscapes from folders (or a manifest) of
//! foreground events and backgrounds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use hark::train::synth::{synthesize, SynthConfig};

/// Parses `MIN:MAX` (or one number) into a range.
fn range(s: &str) -> Result<(f64, f64), String> {
    let parse = |v: &str| v.trim().parse::<f64>().map_err(|e| format!("`{v}`: {e}"));
    match s.split_once(':') {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => parse(s).map(|v| (v, v)),
    }
}

/// Arguments of `hark synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (gets audio/, strong.tsv, weak.tsv, summary.json).
    pub output: PathBuf,
    /// A synthesis config (TOML; every field of the flags below and more: crop range,
    /// sequences such as walking footsteps, room tone, band-limiting, a source hold-out).
    /// Relative paths are resolved against its folder. Only `-n` and `--seed` may be
    /// given beside it.
    #[arg(long, value_name = "TOML", conflicts_with_all = [
        "foreground", "manifest", "manifest_root", "map", "classes", "background",
        "seconds", "rate", "events", "snr", "polyphony", "pitch", "stretch", "gain",
        "max_event"])]
    pub config: Option<PathBuf>,
    /// Foreground folder: one sub-folder of audio files per class.
    #[arg(long, value_name = "DIR")]
    pub foreground: Option<PathBuf>,
    /// Manifest TSV (`class pkg relpath ...`), class `background` = backgrounds.
    #[arg(long, value_name = "TSV")]
    pub manifest: Option<PathBuf>,
    /// Root folder of the manifest's files.
    #[arg(long, value_name = "DIR")]
    pub manifest_root: Option<PathBuf>,
    /// Class renames, `from=to`, comma-separated (e.g. `scream_pain=scream`).
    #[arg(long, value_delimiter = ',')]
    pub map: Vec<String>,
    /// Only these classes (after renaming), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Background folder (all audio files inside).
    #[arg(long, value_name = "DIR")]
    pub background: Option<PathBuf>,
    /// Number of clips [default: 100, or the config's `n_clips`].
    #[arg(short, long)]
    pub n: Option<usize>,
    /// Clip length, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Output sample rate, Hz.
    #[arg(long, default_value_t = 16_000)]
    pub rate: u32,
    /// Events per clip, `MIN:MAX`.
    #[arg(long, default_value = "1:3", value_parser = range)]
    pub events: (f64, f64),
    /// Event SNR over the background, dB, `MIN:MAX`.
    #[arg(long, default_value = "6:30", value_parser = range)]
    pub snr: (f64, f64),
    /// Most simultaneous events.
    #[arg(long, default_value_t = 2)]
    pub polyphony: usize,
    /// Pitch shift, semitones, `MIN:MAX`.
    #[arg(long, default_value = "0", value_parser = range)]
    pub pitch: (f64, f64),
    /// Time stretch factor, `MIN:MAX`.
    #[arg(long, default_value = "1", value_parser = range)]
    pub stretch: (f64, f64),
    /// Clip gain, dB, `MIN:MAX`.
    #[arg(long, default_value = "0", value_parser = range)]
    pub gain: (f64, f64),
    /// Longest event, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub max_event: f64,
    /// Seed [default: 0, or the config's `seed`].
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Reads a synthesis config; relative paths are resolved against its folder.
fn from_file(path: &std::path::Path) -> Result<SynthConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read synth config {}: {e}", path.display()))?;
    let mut cfg: SynthConfig = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("synth config {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    for p in [
        &mut cfg.foreground_dir,
        &mut cfg.manifest,
        &mut cfg.manifest_root,
        &mut cfg.background_dir,
    ]
    .into_iter()
    .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(cfg)
}

/// Runs `hark synth`.
pub fn run(a: &SynthArgs) -> Result<()> {
    let cfg = if let Some(path) = &a.config {
        let mut cfg = from_file(path)?;
        cfg.output_dir = a.output.clone();
        if let Some(n) = a.n {
            cfg.n_clips = n;
        }
        if let Some(seed) = a.seed {
            cfg.seed = seed;
        }
        cfg
    } else {
        flags_config(a)?
    };
    let s = synthesize(&cfg)?;
    eprintln!(
        "wrote {} clips with {} events to {} ({:?}){}",
        s.n_clips,
        s.events.len(),
        a.output.display(),
        s.events_per_class,
        if s.skipped_sources.is_empty() {
            String::new()
        } else {
            format!(
                "; skipped {} sources that cannot be decoded (listed in summary.json)",
                s.skipped_sources.len()
            )
        }
    );
    Ok(())
}

fn flags_config(a: &SynthArgs) -> Result<SynthConfig> {
    let mut class_map = BTreeMap::new();
    for m in &a.map {
        let Some((from, to)) = m.split_once('=') else {
            bail!("--map `{m}`: expected FROM=TO");
        };
        class_map.insert(from.trim().to_string(), to.trim().to_string());
    }
    if a.events.0 < 0.0 || a.events.0.fract() != 0.0 || a.events.1.fract() != 0.0 {
        bail!("--events {:?}: expected whole numbers MIN:MAX", a.events);
    }
    let cfg = SynthConfig {
        foreground_dir: a.foreground.clone(),
        manifest: a.manifest.clone(),
        manifest_root: a.manifest_root.clone(),
        class_map,
        classes: a.classes.clone(),
        background_dir: a.background.clone(),
        output_dir: a.output.clone(),
        n_clips: a.n.unwrap_or(100),
        clip_seconds: a.seconds,
        sample_rate: a.rate,
        events: (a.events.0 as usize, a.events.1 as usize),
        snr_db: a.snr,
        polyphony: a.polyphony,
        pitch_semitones: a.pitch,
        time_stretch: a.stretch,
        gain_db: a.gain,
        max_event_seconds: a.max_event,
        background_db: -40.0,
        seed: a.seed.unwrap_or(0),
        ..SynthConfig::default()
    };
    Ok(cfg)
}
