//! `hark tune`: chooses per-class thresholds, median windows and minimum durations on a
//! validation set by maximising event-F1, and stores them in the model file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hark::model::Model;
use hark::train::dataset::{DataConfig, Dataset, SplitConfig};
use hark::train::thresholds::{tune, TuneConfig};

/// Arguments of `hark tune`.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// The model file; rewritten in place unless --output is given.
    pub model: PathBuf,
    /// Folder of the validation audio.
    #[arg(long, value_name = "DIR")]
    pub audio: PathBuf,
    /// Strong labels of the validation audio (`filename onset offset event_label`).
    #[arg(long, value_name = "STRONG.tsv")]
    pub strong: PathBuf,
    /// Write the tuned model here instead.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Feature cache folder (default: `<audio>/.hark-cache`).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Print the choices as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hark tune`.
pub fn run(a: &TuneArgs) -> Result<()> {
    let mut model = Model::load(&a.model)?;
    let meta = model.meta().clone();
    let split = SplitConfig {
        audio_dir: a.audio.clone(),
        weak: None,
        strong: Some(a.strong.clone()),
        soft: None,
        scenes: None,
    };
    let data_cfg = DataConfig {
        classes: meta.classes.clone(),
        scene_classes: Vec::new(),
        train: split.clone(),
        validation: Some(split.clone()),
        validation_fraction: 0.2,
        cache_dir: a.cache.clone(),
    };
    let data = Dataset::load_split(
        &data_cfg,
        &split,
        std::path::Path::new("."),
        &meta.features,
        "validation",
    )
    .context("loading the validation set")?;
    let report = tune(&mut model, &data, &TuneConfig::default())?;
    let out = a.output.clone().unwrap_or_else(|| a.model.clone());
    model.save(&out)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (c, t) in &report.classes {
            println!(
                "{c}\tF1 {:.3} → {:.3}\ton {:.2} off {:.2} median {} min {:.2} s",
                t.f1_before,
                t.f1_after,
                t.params.on,
                t.params.off,
                t.params.median_frames,
                t.params.min_duration_s
            );
        }
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}
