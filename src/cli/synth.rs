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
    /// Number of clips.
    #[arg(short, long, default_value_t = 100)]
    pub n: usize,
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
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `hark synth`.
pub fn run(a: &SynthArgs) -> Result<()> {
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
        n_clips: a.n,
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
        seed: a.seed,
    };
    let s = synthesize(&cfg)?;
    eprintln!(
        "wrote {} clips with {} events to {} ({:?})",
        s.n_clips,
        s.events.len(),
        a.output.display(),
        s.events_per_class
    );
    Ok(())
}
