//! The `trainer` command line: clap arguments and the dispatch of each command to the library
//! (config loaded once, the device chosen here, each command run as a [`Job`] on the backend of
//! that device). Nothing else lives here.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::backend::{self, Cpu, DeviceRequest, Job, Selection, TrainBackend, pin_threads};
use crate::config::{Config, Section};
use crate::eval::parity::{self, ScoreRequest};
use crate::eval::perplexity::{self, PplSettings};
use crate::eval::report::{self, ReportOptions};
use crate::eval::results::table3_markdown;
use crate::eval::{answer, submission};
use crate::model::generate::complete_text;
use crate::model::{GenerateConfig, Precision, hf};
use crate::train::checkpoint;
use crate::train::finetune::{self, FinetuneOptions};
use crate::train::pretrain::{self, PretrainOptions, PretrainSummary};
use crate::train::{export, plot};

#[derive(Parser)]
#[command(name = "trainer", about = "biomamba: Mamba-1 in Burn")]
pub struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Logits, mean next-token loss and optionally gradients, hidden states and a greedy
    /// continuation for `input_ids` (parity with transformers).
    Score(ScoreArgs),
    /// Greedy or beam-search continuation of a text prompt.
    Generate(GenerateArgs),
    /// Continued pretraining on the token shards; resumes from RUN_DIR's cursor.
    Pretrain(PretrainArgs),
    /// Write the latest checkpoint of a run in the HF layout.
    Export(ExportArgs),
    /// Draw RUN_DIR/loss.png from RUN_DIR/metrics.jsonl.
    Plot(PlotArgs),
    /// Fine-tune on a task (BioASQ factoid, yes/no, list, or PubMedQA: its `kind`), then answer
    /// its test questions.
    Finetune(FinetuneArgs),
    /// Answering a task's test questions (`--task`), scoring any submission of it (`--task
    /// --submission`), or validation perplexity (`--ppl`).
    Eval(EvalArgs),
    /// Combine task results (results.json) of any number of systems, and published numbers, into
    /// one table (every measure and task).
    Report(ReportOptions),
    /// List the devices `--device` can name (CUDA devices, wgpu adapters) and what `auto` picks.
    Devices,
}

/// `--device`, on every command that runs the model.
#[derive(clap::Args, Clone, Debug, Default)]
struct DeviceArg {
    /// auto (CUDA if a driver and a device are found, else CPU), cpu, cuda, cuda:N,
    /// cuda:0,1,… (data parallel), wgpu, wgpu:N; default: [train] device of the config, else auto.
    #[arg(long)]
    device: Option<DeviceRequest>,
}

#[derive(clap::Args)]
struct ScoreArgs {
    /// Model directory (config.json + model.safetensors, HF layout).
    #[arg(long)]
    model: PathBuf,
    /// safetensors file with `input_ids` [B, L] (int64) (and `generate.prompt` [1, P] for --greedy).
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors: `logits`, `loss` (+ `grad.<name>`, `hidden_states.K`, `generate.output`).
    #[arg(long)]
    out: PathBuf,
    /// Also write d loss / d parameter for every parameter.
    #[arg(long)]
    grads: bool,
    /// Also write the hidden states (after each block, then the final norm's output).
    #[arg(long)]
    hidden: bool,
    /// Also decode `generate.prompt` greedily by N tokens with the recurrent cache.
    #[arg(long, value_name = "N")]
    greedy: Option<usize>,
    #[command(flatten)]
    device: DeviceArg,
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
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(clap::Args)]
struct PretrainArgs {
    /// Config TOML with [model] and [pretrain] sections (configs/*.toml).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    opts: PretrainOptions,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(clap::Args)]
struct ExportArgs {
    run_dir: PathBuf,
    /// Output directory (config.json + model.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Which weights: `final` (the last step's) or `ema` (the moving average, `[pretrain] ema`);
    /// default: `ema` when the run's recipe sets `export_ema`, else `final`.
    #[arg(long, value_enum)]
    weights: Option<export::ExportWeights>,
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
    #[command(flatten)]
    device: DeviceArg,
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
    /// Perplexity on the validation shards of every domain (`DATA/shards/val`, and each
    /// corpus's `DATA/shards/<name>/val`).
    #[arg(long)]
    ppl: bool,
    /// Perplexity: also evaluate this model (e.g. the initial one), beside --model in one table.
    #[arg(long, requires = "ppl")]
    baseline: Vec<PathBuf>,
    /// Perplexity: also evaluate the config's `[model] init` (the model pretraining started
    /// from), beside --model: the check for forgetting.
    #[arg(long, requires = "ppl")]
    with_init: bool,
    /// Score this submission (any system's; BioASQ Phase B JSON with every exact-answer type, or
    /// PubMedQA's `{"PMID": "label"}`) with the official measures, instead of answering with
    /// --model.
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
    /// Task: answer only the first N test questions of each type.
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
    #[command(flatten)]
    device: DeviceArg,
}

/// Choose the device (`--device`, else `[train] device`, else auto) and say so in the first log
/// line, before anything is computed or written.
fn choose(arg: &DeviceArg, config: &Config, precision: Option<Precision>) -> Result<Selection> {
    let request = arg
        .device
        .clone()
        .or_else(|| config.train.device.clone())
        .unwrap_or_default();
    let selection = backend::select(&request)?;
    // Inference, and training with no precision set, run the backend's own: on CUDA its f32
    // products are TF32.
    let precision = match (selection.backend, precision) {
        ("cuda", None) => "tf32 (f32 storage, TF32 matrix products)".to_string(),
        (_, None) => "f32".to_string(),
        (_, Some(p)) => p.to_string(),
    };
    tracing::info!(
        "device {} [{} backend], precision {}; chosen: {}",
        selection.description,
        selection.backend,
        precision,
        selection.reason
    );
    Ok(selection)
}

/// Run one command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Command::Score(a) => {
            let selection = choose(&a.device, &Config::default(), None)?;
            let r = backend::run_on(&selection, ScoreJob(&a)).context("trainer score")?;
            println!(
                "loss {:.6} over logits {:?}; wrote {}",
                r.loss,
                r.logits_shape,
                a.out.display()
            );
        }
        Command::Generate(a) => {
            let selection = choose(&a.device, &Config::default(), None)?;
            for (i, (logprob, text)) in backend::run_on(&selection, GenerateJob(&a))?
                .iter()
                .enumerate()
            {
                println!("#{i} logprob {logprob:.4}: {}{text}", a.prompt);
            }
        }
        Command::Pretrain(a) => {
            let config = Config::load(Some(&a.config), Section::PRETRAIN)?;
            pin_threads(config.pretrain.threads);
            let selection = choose(&a.device, &config, config.pretrain.precision)?;
            let summary = backend::run_on(
                &selection,
                PretrainJob {
                    opts: &a.opts,
                    config: &config,
                },
            )
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
            let ckpt = export::export::<Cpu>(&a.run_dir, &a.out, a.weights, &Default::default())
                .context("trainer export")?;
            println!("exported {} to {}", ckpt.display(), a.out.display());
        }
        Command::Plot(a) => {
            let p = plot::write_loss_png(&a.run_dir).context("trainer plot")?;
            println!("wrote {}", p.display());
        }
        Command::Finetune(a) => {
            let config = Config::load(a.config.as_deref(), Section::FINETUNE)?;
            pin_threads(config.finetune.threads);
            let selection = choose(&a.device, &config, config.finetune.precision)?;
            backend::run_on(
                &selection,
                FinetuneJob {
                    opts: &a.opts,
                    config: &config,
                },
            )?;
        }
        Command::Eval(a) => eval(a)?,
        Command::Report(a) => report::run(a)?,
        Command::Devices => devices()?,
    }
    Ok(())
}

/// `trainer devices`: what each kind of `--device` finds on this machine.
fn devices() -> Result<()> {
    for request in [
        DeviceRequest::Cpu,
        DeviceRequest::Cuda(vec![0]),
        DeviceRequest::Wgpu(None),
        DeviceRequest::Auto,
    ] {
        match backend::select(&request) {
            Ok(s) => println!(
                "{request:<6} {} [{}]: {}",
                s.description, s.backend, s.reason
            ),
            Err(e) => println!("{request:<6} unavailable: {e:#}"),
        }
    }
    Ok(())
}

/// `trainer eval`: answering one task, scoring a submission, or perplexity on the validation
/// shards.
fn eval(a: EvalArgs) -> Result<()> {
    if a.submission.is_some() {
        return score_submission(a);
    }
    // Perplexity may compare with the initial model of pretraining ([model] init).
    let sections: &[Section] = if a.ppl {
        &[Section::Model, Section::Finetune, Section::Tasks]
    } else {
        Section::FINETUNE
    };
    let config = Config::load(a.config.as_deref(), sections)?;
    let selection = choose(&a.device, &config, None)?;
    let model = a.model.clone().context("give --model")?;
    let out = backend::run_on(
        &selection,
        EvalJob {
            a: &a,
            config: &config,
            model: &model,
        },
    )?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `trainer eval --submission FILE --task NAME`: score any submission (no model involved).
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
    print!("{}", table3_markdown(&[res]));
    println!("wrote {}", out.display());
    Ok(())
}

// The commands as jobs, each run on the backend `--device` chose.

struct ScoreJob<'a>(&'a ScoreArgs);

impl Job for ScoreJob<'_> {
    type Output = parity::ScoreOutput;
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<Self::Output> {
        let a = self.0;
        let request = ScoreRequest {
            grads: a.grads,
            hidden: a.hidden,
            greedy: a.greedy,
        };
        parity::score_files::<B>(&a.model, &a.input, &a.out, request, &devices[0])
    }
}

struct GenerateJob<'a>(&'a GenerateArgs);

impl Job for GenerateJob<'_> {
    type Output = Vec<(f64, String)>;
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<Self::Output> {
        let a = self.0;
        let tok = tokenizers::Tokenizer::from_file(&a.tokenizer)
            .map_err(|e| anyhow::anyhow!("loading tokenizer {}: {e}", a.tokenizer.display()))?;
        let (_, model) = hf::load_pretrained::<B::InnerBackend>(&a.model, &devices[0])?;
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
        complete_text(&model, &tok, &a.prompt, &cfg, &devices[0])
            .with_context(|| format!("{} with {}", a.model.display(), a.tokenizer.display()))
    }
}

struct PretrainJob<'a> {
    opts: &'a PretrainOptions,
    config: &'a Config,
}

impl Job for PretrainJob<'_> {
    type Output = PretrainSummary;
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<Self::Output> {
        pretrain::run::<B>(self.opts, self.config, &devices)
    }
}

struct FinetuneJob<'a> {
    opts: &'a FinetuneOptions,
    config: &'a Config,
}

impl Job for FinetuneJob<'_> {
    type Output = ();
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<()> {
        finetune::run::<B>(self.opts, self.config, &devices)
    }
}

struct EvalJob<'a> {
    a: &'a EvalArgs,
    config: &'a Config,
    model: &'a Path,
}

impl Job for EvalJob<'_> {
    /// The output directory.
    type Output = PathBuf;
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<PathBuf> {
        let (a, config, model) = (self.a, self.config, self.model);
        let device = &devices[0];
        let data = schemas::Layout::new(config.data_dir(a.data_dir.as_deref()));
        let model_dir = checkpoint::model_dir(model)?;
        let tok_path = a.tokenizer.clone().or(config.finetune.tokenizer.clone());
        let tokenizer = hf::load_tokenizer(tok_path.as_deref(), &model_dir)?;
        if a.ppl {
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| model.join("eval").join("ppl"));
            let s = PplSettings {
                batch_size: a.batch_size,
                doc_len: a.doc_len,
                eos: perplexity::eos_of_shards(&data, config.finetune.eos)?,
                max_rows: a.max_rows,
            };
            let mut baselines = a
                .baseline
                .iter()
                .map(|b| checkpoint::model_dir(b))
                .collect::<Result<Vec<_>>>()?;
            if a.with_init {
                match &config.model.init {
                    Some(init) => baselines.push(
                        checkpoint::model_dir(init)
                            .with_context(|| format!("[model] init {}", init.display()))?,
                    ),
                    None => tracing::warn!(
                        "--with-init: the config has no [model] init (a from-scratch model), \
                         nothing to compare with"
                    ),
                }
            }
            let domains = perplexity::domains(&data)?;
            perplexity::run::<B::InnerBackend>(
                &model_dir, &baselines, &tokenizer, &domains, &out, &s, device,
            )?;
            return Ok(out);
        }
        let Some(task) = a.task.as_deref() else {
            bail!("give --task NAME (BioASQ answering) or --ppl (perplexity)");
        };
        let r = config.resolve_task(task, None, None, a.limit, None)?;
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| model.join("eval").join(task));
        let res = answer::answer_task::<B::InnerBackend>(
            &r,
            &model_dir,
            data.root(),
            &tokenizer,
            &out,
            a.label.as_deref(),
            device,
        )?;
        print!("{}", table3_markdown(&[res]));
        Ok(out)
    }
}
