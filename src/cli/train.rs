//! `hark train CONFIG.toml`: trains a model as the config describes (see
//! `docs/training.md`), with a progress bar on a terminal and a JSON summary of every
//! epoch beside the model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hark::train::trainer::{train, TrainConfig, TrainOptions};

/// Arguments of `hark train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The training config (TOML).
    pub config: PathBuf,
    /// Continue from the last checkpoint beside the output.
    #[arg(long)]
    pub resume: bool,
    /// Train at most this many epochs in this run (resume later with --resume).
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Only check the config (every setting, the architecture, and that the data files
    /// exist), print what would be trained, and exit.
    #[arg(long, conflicts_with_all = ["resume", "epochs"])]
    pub check: bool,
}

/// Runs `hark train`.
pub fn run(a: &TrainArgs) -> Result<()> {
    let cfg = TrainConfig::from_file(&a.config)
        .with_context(|| format!("reading training config {}", a.config.display()))?;
    if a.check {
        let d = &cfg.data;
        for split in std::iter::once(&d.train).chain(d.validation.as_ref()) {
            anyhow::ensure!(
                split.audio_dir.is_dir(),
                "{}: audio_dir {} is not a folder",
                a.config.display(),
                split.audio_dir.display()
            );
            for f in [&split.weak, &split.strong, &split.soft, &split.scenes]
                .into_iter()
                .flatten()
            {
                anyhow::ensure!(
                    f.is_file(),
                    "{}: label file {} does not exist",
                    a.config.display(),
                    f.display()
                );
            }
        }
        let arch = serde_json::to_string(&cfg.arch).unwrap_or_default();
        println!(
            "{}: OK — {} classes, {} epochs, architecture {arch}, output {}",
            a.config.display(),
            d.classes.len(),
            cfg.schedule.epochs,
            cfg.output.display()
        );
        return Ok(());
    }
    let report = train(
        &cfg,
        &TrainOptions {
            resume: a.resume,
            progress: !a.no_progress,
            max_epochs: a.epochs,
        },
    )?;
    let last = report.epochs.last();
    eprintln!(
        "trained {} epochs{}; best {:?} = {}; model: {}",
        report.epochs.len(),
        if report.early_stopped {
            " (early stop)"
        } else {
            ""
        },
        cfg.schedule.metric,
        report
            .best_metric
            .map_or("n/a".into(), |m| format!("{m:.4}")),
        report.output.display()
    );
    if let Some(e) = last {
        eprintln!(
            "last epoch: train loss {:.4}, val loss {:.4}, event F1 {:.4}, {:.2} steps/s, {:.1} s",
            e.train_loss, e.val_loss, e.val_event_f1, e.steps_per_s, e.time_s
        );
    }
    Ok(())
}
