//! Command-line interface (clap). `anyhow` is used only here, at the binary's edge.

use clap::{Parser, Subcommand};

mod eval;

/// hark — real-time sound event detection.
#[derive(Debug, Parser)]
#[command(name = "hark", version, about, long_about = None)]
pub struct Cli {
    /// Subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare detected events (and frame scores) with a reference: sed_eval event- and
    /// segment-based metrics, tagging, PSDS, FIMO, clip AUC.
    Eval(eval::EvalArgs),
}

/// Runs the CLI and returns the process exit code: 0 success, 1 runtime error or bad
/// input, 2 usage error (from clap).
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
