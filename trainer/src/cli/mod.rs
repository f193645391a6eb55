//! The `trainer` command line: clap arguments and the dispatch of each command to the library
//! (config loaded once, backend and devices chosen here). Nothing else lives here.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::backend::{AutodiffCpu, Cpu, pin_threads};
use crate::config::{Config, Section};
use crate::eval::perplexity::{self, PplSettings};
use crate::eval::report::{self, ReportOptions};
use crate::eval::{answer, parity, submission};
use crate::model::hf;
use crate::model::{GenerateConfig, beam_search, greedy};
use crate::train::checkpoint;
use crate::train::finetune::{self, FinetuneOptions};
use crate::train::pretrain::{self, PretrainOptions};
use crate::train::{export, plot};

#[derive(Parser)]
#[command(name = "trainer", about = "biomamba: Mamba-1 in Burn")]
pub struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Logits, mean next-token loss and optionally gradients for `input_ids`.
    Score(ScoreArgs),
    /// Greedy or beam-search continuation of a text prompt.
    Generate(GenerateArgs),
    /// Continued pretraining on the token shards; resumes from RUN_DIR's cursor.
    Pretrain(PretrainArgs),
    /// Write the latest checkpoint of a run in the HF layout.
    Export(ExportArgs),
    /// Draw RUN_DIR/loss.png from RUN_DIR/metrics.jsonl.
    Plot(PlotArgs),
    /// Fine-tune on a BioASQ factoid task, then answer its test questions.
    Finetune(FinetuneArgs),
    /// BioASQ factoid answering (`--task`), scoring a submission (`--task --submission`), or
    /// validation perplexity (`--ppl`).
    Eval(EvalArgs),
    /// Combine task results (results.json) of any number of systems into one Table 3.
    Report(ReportOptions),
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

#[derive(clap::Args)]
struct PretrainArgs {
    /// Config TOML with [model] and [pretrain] sections (configs/*.toml).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    opts: PretrainOptions,
    /// Devices for data parallelism (CUDA ordinals, e.g. `0,1`); see trainer/README.md.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<usize>,
}

#[derive(clap::Args)]
struct ExportArgs {
    run_dir: PathBuf,
    /// Output directory (config.json + model.safetensors).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct PlotArgs {
    run_dir: PathBuf,
}

#[derive(clap::Args)]
struct FinetuneArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    opts: FinetuneOptions,
    /// Train on these CUDA devices, data parallel (GPU build; as `trainer pretrain --devices`).
    #[arg(long, value_delimiter = ',')]
    devices: Vec<usize>,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Model: an HF directory, or a run directory with one in `model/` or `export/` (not with
    /// --submission).
    #[arg(long, required_unless_present = "submission")]
    model: Option<PathBuf>,
    /// Answer the test questions of this task (from the config's `[tasks.*]`), or with
    /// --submission score that file on the task's golden batches.
    #[arg(long, conflicts_with = "ppl")]
    task: Option<String>,
    /// Perplexity on the validation shards (`DATA/shards/val`).
    #[arg(long)]
    ppl: bool,
    /// Score this BioASQ submission (JSON, any system's) on the task's golden batches with
    /// the official measures, instead of answering with --model.
    #[arg(long, requires = "task", conflicts_with_all = ["ppl", "model", "tokenizer", "limit"])]
    submission: Option<PathBuf>,
    /// Column label of these results in Table 3 (`system` in results.json); default: the
    /// --model path, or the submission's file name.
    #[arg(long, conflicts_with = "ppl")]
    label: Option<String>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory; default: config `[data] dir`, else `data`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Output directory; default: `MODEL/eval/TASK` (task) or `MODEL/eval/ppl`, where MODEL
    /// is the `--model` argument; with --submission FILE: `DIR/STEM-TASK` next to FILE.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Task: answer only the first N factoid questions.
    #[arg(long)]
    limit: Option<usize>,
    /// Perplexity: evaluate at most N packed validation rows.
    #[arg(long)]
    max_rows: Option<usize>,
    /// Perplexity: rows per forward pass (also the batch of the paper protocol's mean).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Perplexity: document length of the one-document-per-row protocols.
    #[arg(long, default_value_t = 512)]
    doc_len: usize,
}

/// Run one command line.
pub fn run(cli: Cli) -> Result<()> {
    let device = Default::default();
    match cli.cmd {
        Command::Score(a) => {
            let r = parity::score_files::<AutodiffCpu>(&a.model, &a.input, &a.out, a.grads, &device)
                .context("trainer score")?;
            println!(
                "loss {:.6} over logits {:?}; wrote {}",
                r.loss,
                r.logits_shape,
                a.out.display()
            );
        }
        Command::Generate(a) => generate(a)?,
        Command::Pretrain(a) => {
            let config = Config::load(Some(&a.config), Section::PRETRAIN)?;
            pin_threads(config.pretrain.threads);
            let summary = if a.devices.is_empty() {
                pretrain::run::<AutodiffCpu>(&a.opts, &config, &[device])
            } else {
                gpu::pretrain(&a.opts, &config, &a.devices)
            }
            .context("trainer pretrain")?;
            let val = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
            println!(
                "steps {}..{} done; validation loss {} -> {}",
                summary.start_step,
                summary.end_step,
                val(summary.first_val_loss),
                val(summary.last_val_loss),
            );
        }
        Command::Export(a) => {
            let ckpt = export::export::<Cpu>(&a.run_dir, &a.out, &device).context("trainer export")?;
            println!("exported {} to {}", ckpt.display(), a.out.display());
        }
        Command::Plot(a) => {
            let p = plot::write_loss_png(&a.run_dir).context("trainer plot")?;
            println!("wrote {}", p.display());
        }
        Command::Finetune(a) => {
            if !a.devices.is_empty() {
                return gpu::finetune(a);
            }
            let config = Config::load(a.config.as_deref(), Section::FINETUNE)?;
            pin_threads(config.finetune.threads);
            finetune::run::<AutodiffCpu>(&a.opts, &config, &[device])?;
        }
        Command::Eval(a) => eval(a)?,
        Command::Report(a) => report::run(a)?,
    }
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<()> {
    let device = Default::default();
    let tok = tokenizers::Tokenizer::from_file(&a.tokenizer)
        .map_err(|e| anyhow::anyhow!("loading tokenizer {}: {e}", a.tokenizer.display()))?;
    let (_, model) = hf::load_pretrained::<Cpu>(&a.model, &device)?;
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
        bail!(
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
    let cfg = GenerateConfig {
        max_new_tokens: a.max_new_tokens,
        num_beams: a.beams.max(1),
        eos_token_id: Some(a.eos),
        stop_token_ids: stop,
    };
    let cands = if cfg.num_beams == 1 {
        vec![greedy(&model, &prompt, &cfg, &device)]
    } else {
        beam_search(&model, &prompt, &cfg, &device)
    };
    for (i, c) in cands.iter().enumerate() {
        let text = tok
            .decode(&c.tokens, true)
            .map_err(|e| anyhow::anyhow!("decoding: {e}"))?;
        println!("#{i} logprob {:.4}: {}{}", c.logprob, a.prompt, text);
    }
    Ok(())
}

/// `trainer eval`: answering one task, scoring a submission, or perplexity on the validation
/// shards.
fn eval(a: EvalArgs) -> Result<()> {
    if a.submission.is_some() {
        return score_submission(a);
    }
    let device = Default::default();
    let config = Config::load(a.config.as_deref(), Section::FINETUNE)?;
    let data_dir = config.data_dir(a.data_dir.as_deref());
    let model = a.model.clone().context("give --model")?;
    let model_dir = checkpoint::model_dir(&model)?;
    let tok_path = a.tokenizer.clone().or(config.finetune.tokenizer.clone());
    let tokenizer = hf::load_tokenizer(tok_path.as_deref(), &model_dir)?;
    if a.ppl {
        let out = a.out.unwrap_or_else(|| model.join("eval").join("ppl"));
        let s = PplSettings {
            batch_size: a.batch_size,
            doc_len: a.doc_len,
            eos: config.finetune.eos,
            max_rows: a.max_rows,
        };
        let val = schemas::Layout::new(&data_dir).shards(schemas::layout::VAL);
        perplexity::run::<Cpu>(&model_dir, &tokenizer, &val, &out, &s, &device)?;
        println!("wrote {}", out.display());
        return Ok(());
    }
    let Some(task) = a.task.as_deref() else {
        bail!("give --task NAME (BioASQ answering) or --ppl (perplexity)");
    };
    let r = config.resolve_task(task, None, None, a.limit, None)?;
    let out = a.out.unwrap_or_else(|| model.join("eval").join(task));
    let res = answer::answer_task_as::<Cpu>(
        &r,
        &model_dir,
        &data_dir,
        &tokenizer,
        &out,
        a.label.as_deref(),
        &device,
    )?;
    print!("{}", crate::eval::results::table3_markdown(&[res]));
    println!("wrote {}", out.display());
    Ok(())
}

/// `trainer eval --task TASK --submission FILE`: score a BioASQ submission.
fn score_submission(a: EvalArgs) -> Result<()> {
    let (Some(file), Some(task)) = (a.submission.as_deref(), a.task.as_deref()) else {
        bail!("--submission needs --task");
    };
    let config = Config::load(a.config.as_deref(), Section::FINETUNE)?;
    let data_dir = config.data_dir(a.data_dir.as_deref());
    let r = config.resolve_task(task, None, None, None, None)?;
    let out = a.out.unwrap_or_else(|| {
        let stem = file
            .file_stem()
            .unwrap_or(file.as_os_str())
            .to_string_lossy();
        file.with_file_name(format!("{stem}-{task}"))
    });
    let res = submission::score_task(&r, &data_dir, file, a.label.as_deref(), &out)
        .context("trainer eval --submission")?;
    print!("{}", crate::eval::results::table3_markdown(&[res]));
    println!("wrote {}", out.display());
    Ok(())
}

/// The training commands on CUDA devices (`--devices`), or the error a CPU-only build gives.
mod gpu {
    use super::*;
    use crate::train::pretrain::PretrainSummary;

    #[cfg(feature = "cuda")]
    pub fn pretrain(
        opts: &PretrainOptions,
        config: &Config,
        devices: &[usize],
    ) -> Result<PretrainSummary> {
        let devices = crate::backend::cuda_devices(devices);
        pretrain::run::<crate::backend::CudaTrain>(opts, config, &devices)
    }

    #[cfg(feature = "cuda")]
    pub fn finetune(a: FinetuneArgs) -> Result<()> {
        let config = Config::load(a.config.as_deref(), Section::FINETUNE)?;
        pin_threads(config.finetune.threads);
        let devices = crate::backend::cuda_devices(&a.devices);
        finetune::run::<crate::backend::CudaTrain>(&a.opts, &config, &devices)
    }

    #[cfg(not(feature = "cuda"))]
    pub fn pretrain(_: &PretrainOptions, _: &Config, devices: &[usize]) -> Result<PretrainSummary> {
        Err(crate::backend::needs_gpu_build(devices))
    }

    #[cfg(not(feature = "cuda"))]
    pub fn finetune(a: FinetuneArgs) -> Result<()> {
        Err(crate::backend::needs_gpu_build(&a.devices))
    }
}
