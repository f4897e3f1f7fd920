//! `hark eval`: compare detected events (and optional frame scores) with a reference,
//! printing sed_eval / sed_scores_eval metrics as tables or one JSON object.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hark::metrics::event_based::EventBasedOptions;
use hark::metrics::tsv::{check_durations, read_durations, read_events, read_score_dir};
use hark::metrics::{evaluate, EvalInputs, EvalOptions};

/// Arguments of `hark eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Reference events, DCASE TSV (`filename onset offset event_label`).
    #[arg(long, value_name = "REF.tsv")]
    pub reference: PathBuf,
    /// Estimated events, DCASE TSV (as written by `hark detect`).
    #[arg(long, value_name = "EST.tsv")]
    pub estimate: PathBuf,
    /// File durations (`filename duration`); when given, exactly these files are
    /// evaluated and segment-based metrics use these lengths.
    #[arg(long, value_name = "DUR.tsv")]
    pub durations: Option<PathBuf>,
    /// Folder of score tables (`<audio stem>.tsv`, `onset offset <class>...`, as written
    /// by `hark detect --scores`) for PSDS, collar/intersection F1, FIMO and clip AUC.
    #[arg(long, value_name = "DIR")]
    pub scores: Option<PathBuf>,
    /// Event-based metrics match onsets only.
    #[arg(long)]
    pub onset_only: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Segment length of the segment-based metrics and FIMO, seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub segment_length: f64,
    /// Decision threshold of the collar- and intersection-based F1 on score tables.
    #[arg(long, value_name = "SCORE", default_value_t = 0.5)]
    pub threshold: f64,
}

/// Runs `hark eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    let reference = read_events(&args.reference)?;
    let estimate = read_events(&args.estimate)?;
    let durations = match &args.durations {
        Some(p) => {
            let d = read_durations(p)?;
            check_durations(&reference, &args.reference, &d, p)?;
            check_durations(&estimate, &args.estimate, &d, p)?;
            Some(d)
        }
        None => None,
    };
    let scores = match &args.scores {
        Some(dir) => Some(read_score_dir(dir)?),
        None => None,
    };
    let mut empty_files = reference.empty_files.clone();
    empty_files.extend(estimate.empty_files.iter().cloned());
    let inputs = EvalInputs {
        reference: reference.events,
        estimate: estimate.events,
        empty_files,
        durations,
        scores,
    };
    let opts = EvalOptions {
        event: EventBasedOptions {
            evaluate_offset: !args.onset_only,
            ..Default::default()
        },
        segment_length: args.segment_length,
        threshold: args.threshold,
    };
    let report = evaluate(&inputs, &opts)?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text(args.onset_only));
    }
    Ok(())
}
