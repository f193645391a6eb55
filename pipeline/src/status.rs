//! `pipeline status`: for each stage, how many units are cached, stale or missing.

use anyhow::Result;

use crate::Ctx;
use crate::stage::StageStatus;

/// A stage's status function; every stage module registers one in [`STAGES`].
pub type StatusFn = fn(&Ctx) -> Result<StageStatus>;

/// All stages in pipeline order.
pub const STAGES: &[StatusFn] = &[
    crate::download::status,
    crate::parse::status,
    crate::current::status,
    crate::corpus::download::status,
    crate::corpus::status,
    crate::train_tokenizer::status,
    crate::tokenize::status,
    crate::tokenize::pack::status,
    crate::bioasq::status,
    crate::pubmedqa::status,
];

pub fn run(ctx: &Ctx) -> Result<Vec<StageStatus>> {
    let mut rows = STAGES.iter().map(|f| f(ctx)).collect::<Result<Vec<_>>>()?;
    // Per corpus: its tokenize-<name> and pack-<name> rows.
    rows.extend(crate::tokenize::corpus_statuses(ctx)?);
    println!("data directory: {}", ctx.layout.root().display());
    match &ctx.config.source {
        Some(file) => println!("judged against: config {}", file.display()),
        None => println!(
            "judged against: the settings each stage last ran with (recorded in its manifest; --config to judge against a config)"
        ),
    }
    let width = rows
        .iter()
        .map(|s| s.stage.len())
        .max()
        .unwrap_or(0)
        .max(16);
    println!(
        "{:<width$} {:<10} {:>7} {:>7} {:>7}  note",
        "stage", "state", "cached", "stale", "missing"
    );
    for s in &rows {
        println!(
            "{:<width$} {:<10} {:>7} {:>7} {:>7}  {}",
            s.stage,
            s.state(),
            s.cached,
            s.stale,
            s.missing,
            s.note
        );
    }
    Ok(rows)
}
