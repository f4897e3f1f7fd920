//! The `hark` binary: parse the command line, set up logging, run, map errors to
//! exit codes. Everything else lives in the `hark` library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
