//! Command-line interface (clap). `anyhow` is used only here, at the binary's edge.

use clap::{Parser, Subcommand};

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
pub enum Command {}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let _cli = Cli::parse();
    0
}
