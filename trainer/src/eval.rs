//! `trainer eval`: BioASQ factoid answering (`--task`) or perplexity (`--ppl`).

use crate::scan::ScanBackend;
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::finetune::{self, resolve_model_dir, resolve_tokenizer};
use crate::ppl::{self, PplSettings};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Model: an HF directory, or a run directory with one in `model/` or `export/`.
    #[arg(long)]
    pub model: PathBuf,
    /// Answer the test questions of this task (from the config's `[tasks.*]`).
    #[arg(long, conflicts_with = "ppl")]
    pub task: Option<String>,
    /// Perplexity on the validation shards (`DATA/shards/val`).
    #[arg(long)]
    pub ppl: bool,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory; default: config `[data] dir`, else `data`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Output directory; default: `MODEL/eval/TASK` (task) or `MODEL/eval/ppl`, where MODEL
    /// is the `--model` argument.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Task: answer only the first N factoid questions.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Perplexity: evaluate at most N packed validation rows.
    #[arg(long)]
    pub max_rows: Option<usize>,
    /// Perplexity: rows per forward pass (also the batch of the paper protocol's mean).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Perplexity: document length of the one-document-per-row protocols.
    #[arg(long, default_value_t = 512)]
    pub doc_len: usize,
}

pub fn run<B: ScanBackend>(args: Args, device: &B::Device) -> Result<()> {
    let loaded = finetune::load_config(args.config.as_deref())?;
    let data_dir = args
        .data_dir
        .clone()
        .or(loaded.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("data"));
    let model_dir = resolve_model_dir(&args.model)?;
    let tok_path = args.tokenizer.clone().or(loaded.finetune.tokenizer.clone());
    let tokenizer = resolve_tokenizer(tok_path.as_deref(), &model_dir)?;
    if args.ppl {
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| args.model.join("eval").join("ppl"));
        let s = PplSettings {
            batch_size: args.batch_size,
            doc_len: args.doc_len,
            eos: loaded.finetune.eos,
            max_rows: args.max_rows,
        };
        ppl::run::<B>(
            &model_dir,
            &tokenizer,
            &data_dir.join("shards/val"),
            &out,
            &s,
            device,
        )?;
        println!("wrote {}", out.display());
        return Ok(());
    }
    let Some(task) = args.task.as_deref() else {
        bail!("give --task NAME (BioASQ answering) or --ppl (perplexity)");
    };
    let r = finetune::resolve(&loaded, task, None, None, args.limit, None)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.model.join("eval").join(task));
    let res = finetune::evaluate::<B>(&r, &model_dir, &data_dir, &tokenizer, &out, device)?;
    print!("{}", crate::report::table3_markdown(&[res]));
    println!("wrote {}", out.display());
    Ok(())
}
