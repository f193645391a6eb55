//! `trainer` command line; thin over the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "trainer", about = "biomamba: Mamba-1 in Burn")]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

/// Subcommands; `pretrain`, `finetune`, `eval`, `export`, `plot` are added here later.
#[derive(Subcommand)]
enum Command {
    /// Logits, mean next-token loss and optionally gradients for `input_ids`.
    Score(ScoreArgs),
    /// Greedy or beam-search continuation of a text prompt.
    Generate(GenerateArgs),
    /// Continued pretraining on the token shards; resumes from RUN_DIR's cursor.
    Pretrain(trainer::pretrain::cli::PretrainArgs),
    /// Write the latest checkpoint of a run in the HF layout.
    Export(trainer::pretrain::cli::ExportArgs),
    /// Draw RUN_DIR/loss.png from RUN_DIR/metrics.jsonl.
    Plot(trainer::pretrain::cli::PlotArgs),
    /// Fine-tune on a BioASQ factoid task, then answer its test questions.
    Finetune(trainer::finetune::Args),
    /// BioASQ factoid answering (`--task`) or validation perplexity (`--ppl`).
    Eval(trainer::eval::Args),
    /// Combine task results (results.json) into one Table 3.
    Report(trainer::report::Args),
}

#[derive(clap::Args)]
struct ScoreArgs {
    /// Model directory (config.json + model.safetensors, HF layout).
    #[arg(long)]
    model: PathBuf,
    /// safetensors file with `input_ids` [B, L] (int64).
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors: `logits`, `loss` (+ `grad.<name>` with --grads).
    #[arg(long)]
    out: PathBuf,
    /// Also write d loss / d parameter for every parameter.
    #[arg(long)]
    grads: bool,
}

#[derive(clap::Args)]
struct GenerateArgs {
    #[arg(long)]
    model: PathBuf,
    /// tokenizer.json
    #[arg(long)]
    tokenizer: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Number of beams (1 = greedy).
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// Also stop at a newline token.
    #[arg(long)]
    stop_at_newline: bool,
    /// End-of-sequence token id (GPT-NeoX tokenizer: 0).
    #[arg(long, default_value_t = 0)]
    eos: u32,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let device = Default::default();
    match cli.cmd {
        Command::Score(a) => {
            let r = trainer::score::score_files::<trainer::AutodiffCpu>(
                &a.model, &a.input, &a.out, a.grads, &device,
            )
            .context("trainer score")?;
            println!(
                "loss {:.6} over logits {:?}; wrote {}",
                r.loss,
                r.logits_shape,
                a.out.display()
            );
        }
        Command::Generate(a) => {
            let tok = tokenizers::Tokenizer::from_file(&a.tokenizer)
                .map_err(|e| anyhow::anyhow!("loading tokenizer {}: {e}", a.tokenizer.display()))?;
            let (_, model) = trainer::load_pretrained::<trainer::Cpu>(&a.model, &device)?;
            let vocab = model.vocab_size;
            let enc = tok
                .encode(a.prompt.as_str(), false)
                .map_err(|e| anyhow::anyhow!("tokenizing prompt: {e}"))?;
            let prompt = enc.get_ids().to_vec();
            anyhow::ensure!(!prompt.is_empty(), "the prompt tokenizes to nothing");
            if let Some((pos, id)) = prompt
                .iter()
                .enumerate()
                .find(|(_, id)| **id as usize >= vocab)
            {
                anyhow::bail!(
                    "prompt token {pos} has id {id}, outside the model's vocabulary of {vocab} \
                     ({} and {} do not match)",
                    a.tokenizer.display(),
                    a.model.display()
                );
            }
            let mut stop = Vec::new();
            if a.stop_at_newline {
                let nl = tok
                    .encode("\n", false)
                    .map_err(|e| anyhow::anyhow!("tokenizing newline: {e}"))?;
                stop.extend(nl.get_ids().iter().copied().take(1));
            }
            let cfg = trainer::GenerateConfig {
                max_new_tokens: a.max_new_tokens,
                num_beams: a.beams.max(1),
                eos_token_id: Some(a.eos),
                stop_token_ids: stop,
            };
            let cands = if cfg.num_beams == 1 {
                vec![trainer::greedy(&model, &prompt, &cfg, &device)]
            } else {
                trainer::beam_search(&model, &prompt, &cfg, &device)
            };
            for (i, c) in cands.iter().enumerate() {
                let text = tok
                    .decode(&c.tokens, true)
                    .map_err(|e| anyhow::anyhow!("decoding: {e}"))?;
                println!("#{i} logprob {:.4}: {}{}", c.logprob, a.prompt, text);
            }
        }
        Command::Pretrain(a) => trainer::pretrain::cli::pretrain(a).context("trainer pretrain")?,
        Command::Export(a) => trainer::pretrain::cli::export(a).context("trainer export")?,
        Command::Plot(a) => trainer::pretrain::cli::plot(a).context("trainer plot")?,
        Command::Finetune(a) => trainer::finetune::run_cli(a)?,
        Command::Eval(a) => trainer::eval::run::<trainer::Cpu>(a, &device)?,
        Command::Report(a) => trainer::report::run(a)?,
    }
    Ok(())
}
