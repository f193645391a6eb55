//! `pipeline`: thin command-line front of the pipeline library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use pipeline::config::TokenizeConfig;
use pipeline::tokenize;
use pipeline::{Config, Ctx};

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "biomamba data pipeline: PubMed and BioASQ to Parquet and token shards"
)]
struct Cli {
    /// TOML config holding every knob (flags override it).
    #[arg(long, global = true, env = "BIOMAMBA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default: the config's data.dir, else `data`).
    #[arg(long, global = true, env = "BIOMAMBA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Re-run stages even when their outputs are cached.
    #[arg(long, global = true)]
    force: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// For each stage: cached / stale / missing, with counts.
    Status,
    /// Mirror PubMed baseline (and update) files, resumable and MD5-verified.
    Download(pipeline::download::Args),
    /// Fetch a Hugging Face model's config.json and model.safetensors.
    FetchModel(pipeline::download::hub::HubArgs),
    /// Fetch a Hugging Face tokenizer.json.
    FetchTokenizer(pipeline::download::hub::HubArgs),
    /// Fetch the raw files of every `[corpus.<name>]` (Wikipedia, C4, …) from the hub, verified.
    CorpusDownload(pipeline::corpus::download::Args),
    /// Parse the raw files of every `[corpus.<name>]` into Parquet parts of documents.
    Corpus(pipeline::corpus::Args),
    /// Parse PubMed XML into Parquet parts (then build the current view).
    Parse(pipeline::parse::Args),
    /// Build the current view: latest version of every PMID, deletions applied.
    Current(pipeline::current::Args),
    /// Summarize any of our tables (Parquet, Arrow, token shards), or query it with SQL.
    Inspect(pipeline::inspect::Args),
    /// BioASQ JSON (official or SQuAD) to SQuAD-style Arrow tables, joined with PubMed, leak-free.
    Bioasq(pipeline::bioasq::Args),
    /// PubMedQA (PQA-L) to Arrow tables: the official test set and the 10 cross-validation folds.
    Pubmedqa(pipeline::pubmedqa::Args),
    /// Tokenize the abstracts and pack them into train/val Arrow shards (with `--shard i/n`: tokenize
    /// one shard of the parts only; then `pipeline pack` after all shards).
    Tokenize(tokenize::TokenizeArgs),
    /// Pack the token files of all parts into train/val Arrow shards (after `tokenize --shard` runs).
    Pack(tokenize::Args),
    /// Train a byte-level BPE tokenizer (GPT-NeoX style) on the abstracts.
    TrainTokenizer(pipeline::train_tokenizer::Args),
}

fn run(cli: Cli) -> Result<()> {
    let config = Config::load_or_default(cli.config.as_deref())?;
    let ctx = Ctx::new(cli.data_dir, config, cli.force);
    match cli.command {
        Command::Status => pipeline::status::run(&ctx).map(|_| ()),
        Command::Download(args) => pipeline::download::run(&ctx, args),
        Command::FetchModel(args) => pipeline::download::hub::run_model(&ctx, args),
        Command::FetchTokenizer(args) => pipeline::download::hub::run_tokenizer(&ctx, args),
        Command::CorpusDownload(args) => pipeline::corpus::download::run(&ctx, &args).map(|_| ()),
        Command::Corpus(args) => pipeline::corpus::run(&ctx, &args).map(|_| ()),
        Command::Parse(args) => parse_then_current(&ctx, args),
        Command::Current(args) => pipeline::current::run(&ctx, args).map(|_| ()),
        Command::Inspect(args) => pipeline::inspect::run(&ctx, args),
        Command::Bioasq(args) => pipeline::bioasq::run(&ctx, args).map(|_| ()),
        Command::Pubmedqa(args) => pipeline::pubmedqa::run(&ctx, args).map(|_| ()),
        Command::Tokenize(args) => tokenize_then_pack(&ctx, &args),
        Command::Pack(args) => pack(&ctx, &args),
        Command::TrainTokenizer(args) => pipeline::train_tokenizer::run(&ctx, args),
    }
}

/// `pipeline parse`: the parse stage, then the current view from all parsed parts (unless sharded
/// or `--no-current`). The stages do not start each other; the command chains them.
fn parse_then_current(ctx: &Ctx, args: pipeline::parse::Args) -> Result<()> {
    let builds_current = args.builds_current();
    let sharded = args.shard.is_some();
    pipeline::parse::run(ctx, args)?;
    if builds_current {
        pipeline::current::run(ctx, pipeline::current::Args::default())?;
    } else if sharded {
        tracing::info!(
            "parse: sharded run; build the current view with `pipeline current` after all shards"
        );
    }
    Ok(())
}

/// `pipeline tokenize`: the tokenize stage (a token file per input part), then the pack stage
/// (train/val shards from the token files), under one resolved `[tokenize]` config, for PubMed
/// and then for each `[corpus.<name>]`. With `--shard i/n` only the tokenize stages run, over
/// that shard's parts of each domain; `pipeline pack` packs after all shards.
fn tokenize_then_pack(ctx: &Ctx, args: &tokenize::TokenizeArgs) -> Result<()> {
    let config = TokenizeConfig::resolve(ctx, &args.settings)?;
    let report = tokenize::run_shard(ctx, &config, args.shard)?;
    if args.shard.is_none() {
        tokenize::pack::run(ctx, &config, &report.token_files)?;
    }
    // Then every configured corpus, each into its own shards (`shards/<name>/{train,val}`).
    for domain in tokenize::Domain::corpora(ctx)? {
        let report = tokenize::run_domain(ctx, &config, &domain, args.shard)?;
        if args.shard.is_none() {
            tokenize::pack::run_domain(ctx, &config, &domain, &report.token_files)?;
        }
    }
    if let Some(shard) = args.shard {
        tracing::info!(
            "tokenize: shard {shard} done; pack the shards with `pipeline pack` after all {} shards",
            shard.count
        );
    }
    Ok(())
}

/// `pipeline pack`: the pack stage over the token files of every part (each must be tokenized
/// under the same settings, e.g. by all `pipeline tokenize --shard i/n` runs of a job array), for
/// PubMed, then every configured corpus.
fn pack(ctx: &Ctx, args: &tokenize::Args) -> Result<()> {
    let config = TokenizeConfig::resolve(ctx, args)?;
    let token_files = tokenize::token_files(ctx, &config)?;
    tokenize::pack::run(ctx, &config, &token_files)?;
    for domain in tokenize::Domain::corpora(ctx)? {
        let token_files = tokenize::token_files_of(ctx, &config, &domain)?;
        tokenize::pack::run_domain(ctx, &config, &domain, &token_files)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    schemas::logging::init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
