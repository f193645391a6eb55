//! `trainer` command line; thin over the library.


use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "trainer", about = "biomamba: Mamba-1 in Burn")]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Continued pretraining on the token shards; resumes from RUN_DIR's cursor.
    Pretrain(trainer::pretrain::cli::PretrainArgs),
    /// Write the latest checkpoint of a run in the HF layout.
    Export(trainer::pretrain::cli::ExportArgs),
    /// Draw RUN_DIR/loss.png from RUN_DIR/metrics.jsonl.
    Plot(trainer::pretrain::cli::PlotArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Command::Pretrain(a) => trainer::pretrain::cli::pretrain(a).context("trainer pretrain")?,
        Command::Export(a) => trainer::pretrain::cli::export(a).context("trainer export")?,
        Command::Plot(a) => trainer::pretrain::cli::plot(a).context("trainer plot")?,
    }
    Ok(())
}
