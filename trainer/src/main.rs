//! `trainer`: thin front of the trainer library ([`trainer::cli`]).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    schemas::logging::init();
    match trainer::cli::run(trainer::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
