//! `trainer finetune`: fine-tuning on a task — BioASQ factoid, yes/no, list (or several of them
//! together), or PubMedQA, as the task's `kind` says — with the masked next-token loss on the
//! answer tokens only, resumable, then answering the task's test questions (`answer`).
//!
//! Config: `[finetune]` (shared settings) and `[tasks.NAME]` (kind, tables and per-task
//! overrides) of the one TOML; other sections are ignored here. Without a config the three
//! paper tasks `bioasq-4b`, `bioasq-5b`, `bioasq-6b` (factoid) are defined with the default
//! paths. The training items and their prompts: [`crate::eval::items`], [`crate::eval::qa`].
//!
//! Training runs on [`crate::train::session`], the machinery of `trainer pretrain`: the same run
//! directory layout (sled cursor `state.sled`, atomic checkpoints `checkpoints/step-NNNNNNNN/`
//! with weights, AdamW moments, position and metrics log; `run-config.json`, `metrics.jsonl`),
//! the same AdamW (decay groups, global-norm clipping), warmup + cosine schedule, and the same
//! global data order ([`crate::train::data::IndexOrder`] over the encoded examples, crossing epochs).
//! A killed run resumes from its newest complete checkpoint and ends bit-identical to an
//! uninterrupted one. After training: `model/` (final HF weights + tokenizer), `eval/NAME/`.
//!
//! One optimizer step = `batch_size` examples in micro-batches of `micro_batch` (right-padded);
//! each micro-batch's loss share is its summed answer-token NLL divided by the step's answer
//! tokens, so the accumulated gradient is that of the mean over all answer tokens of the step.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use schemas::Layout;

use crate::config::{Config, FinetuneConfig, Resolved};
use crate::eval::answer;
use crate::eval::items;
use crate::eval::qa::{self, Encoded, PaddedBatch, QaEncoder, QaItem};
use crate::model::hf::{self, load_pretrained, save_pretrained};
use crate::model::lookup::plan_for;
use crate::model::scan::ScanBackend;
use crate::model::{MambaLm, Precision};
use crate::train::checkpoint;
use crate::train::data::IndexOrder;
use crate::train::loss::masked_nll_sum;
use crate::train::optim::lr_at;
use crate::train::parallel::{NodeArgs, Topology};
use crate::train::session::{RunSpec, Session};
use crate::train::step::{Devices, train_step};

/// Options of one `trainer finetune` run (its command-line flags; the recipe is the config's).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FinetuneOptions {
    /// Initial model: an HF directory (config.json + model.safetensors), a run directory
    /// holding one in `model/` or `export/`, or a `trainer pretrain` run directory (its
    /// newest valid checkpoint).
    #[arg(long)]
    pub init: PathBuf,
    /// Task name from the config's `[tasks.*]` (default tasks: bioasq-4b, bioasq-5b, bioasq-6b);
    /// its `kind` says what is trained and answered.
    #[arg(long)]
    pub task: String,
    /// Default: `DATA/runs/finetune-TASK`.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Data directory (tables are relative to it); default: config `[data] dir`, else `data`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// The schedule's length in optimizer steps (overrides `[finetune] max_steps`).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Overrides `[finetune] train_limit`.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Overrides `[finetune] limit` (test questions answered).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Overrides `[finetune] max_len`.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Train only; do not answer the test questions.
    #[arg(long)]
    pub no_eval: bool,
    /// Stop (with a checkpoint) after this many total steps, as `trainer pretrain --max-steps`
    /// does: the schedule is unchanged and running again resumes.
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[command(flatten)]
    pub nodes: NodeArgs,
}

/// Training examples, encoded once.
pub struct FinetuneData {
    pub examples: Vec<Encoded>,
    pub skipped: usize,
    pub context_cut: usize,
}

impl FinetuneData {
    /// Encode training items (prompt + `" " + answer + EOS`, at most `max_len`).
    pub fn encode(items: &[QaItem], enc: &QaEncoder<'_>, max_len: usize) -> Result<Self> {
        let mut data = FinetuneData {
            examples: Vec::new(),
            skipped: 0,
            context_cut: 0,
        };
        for item in items {
            match enc
                .item(item, max_len)
                .with_context(|| format!("training example {}", item.id))?
            {
                Some(e) => {
                    data.context_cut += usize::from(e.context_cut > 0);
                    data.examples.push(e);
                }
                None => data.skipped += 1,
            }
        }
        Ok(data)
    }
}

/// The share of one padded micro-batch in a step's loss: its summed answer-token NLL divided by
/// the answer tokens of the whole step (`targets`).
pub fn answer_loss_share<B: AutodiffBackend + ScanBackend>(
    targets: usize,
) -> impl Fn(&MambaLm<B>, &PaddedBatch, &B::Device) -> Result<Tensor<B, 1>> + Send + Sync + 'static
{
    move |model, pb, device| {
        let ids: Tensor<B, 2, Int> =
            Tensor::from_data(TensorData::new(pb.ids.clone(), [pb.rows, pb.len]), device);
        let mask: Tensor<B, 2> =
            Tensor::from_data(TensorData::new(pb.mask.clone(), [pb.rows, pb.len]), device);
        let plan = plan_for::<B, _>(&pb.ids);
        let logits = model.forward_planned(ids.clone(), plan.as_ref());
        Ok(masked_nll_sum(logits, ids, mask).div_scalar(targets as f64))
    }
}

/// The settings that shape the trained weights (answering settings may change between runs).
fn training_settings(r: &Resolved) -> Resolved {
    let mut t = r.clone();
    let d = FinetuneConfig::default();
    t.cfg.limit = None;
    t.cfg.max_contexts = None;
    (t.cfg.beams, t.cfg.max_new_tokens) = (d.beams, d.max_new_tokens);
    t.cfg.list_answers = d.list_answers;
    (t.tables.max_new_tokens, t.tables.list_answers) = (None, None);
    (t.cfg.checkpoint_every, t.cfg.keep_checkpoints) = (d.checkpoint_every, d.keep_checkpoints);
    (t.cfg.tokenizer, t.cfg.threads) = (None, d.threads);
    (t.tables.test, t.tables.golden, t.tables.batches) = (PathBuf::new(), PathBuf::new(), vec![]);
    t.tables.label = String::new();
    t
}

/// Fine-tune on the task's training table (or resume the run in `run_dir`); returns the final HF
/// model directory, or `None` when stopped early by `max_steps` (steps done in total, with a
/// checkpoint; the schedule is unchanged).
pub fn train<B: AutodiffBackend + ScanBackend>(
    r: &Resolved,
    init_dir: &Path,
    data_dir: &Path,
    tokenizer: &tokenizers::Tokenizer,
    run_dir: &Path,
    max_steps: Option<usize>,
    devices: &[B::Device],
    topology: &Topology,
) -> Result<Option<PathBuf>> {
    let device = devices.first().context("no device to train on")?;
    let cfg = &r.cfg;
    cfg.validate()?;
    let precision = Precision::of::<B>(cfg.precision, device);
    precision.check::<B>(device, "[finetune] precision")?;
    let (rows, train_path) = items::training_items(r, data_dir)?;
    let enc = QaEncoder {
        tokenizer,
        eos: cfg.eos,
    };
    let data = FinetuneData::encode(&rows, &enc, cfg.max_len)?;
    let n = data.examples.len();
    ensure!(
        n > 0,
        "{}: no usable training example (of {})",
        train_path.display(),
        rows.len()
    );
    let total = cfg.total_steps(n);
    let warmup = (total as f64 * cfg.warmup_ratio).round() as u64;
    tracing::info!(
        "finetune {}: {n} examples ({} skipped, {} contexts cut), {total} steps",
        r.task,
        data.skipped,
        data.context_cut
    );
    let init_hash = schemas::manifest::hash_file(&hf::Weights::find(init_dir)?)?;
    // The tokenizer shapes the training ids as much as the weights do.
    let tok_json = tokenizer
        .to_string(false)
        .map_err(|e| anyhow::anyhow!("serializing tokenizer: {e}"))?;
    let tok_hash = schemas::manifest::hash_bytes(tok_json.as_bytes());
    let spec = RunSpec {
        run_dir,
        run_config: serde_json::json!({
            "init": init_hash, "tokenizer": tok_hash, "run": training_settings(r),
        }),
        what: "initial model, tokenizer or [finetune]/[tasks]",
        data_fingerprint: format!("table:{}", schemas::manifest::hash_file(&train_path)?),
        data_what: "training table",
        seed: cfg.seed,
        adamw: cfg.adamw(),
        ema: None,
        keep_checkpoints: cfg.keep_checkpoints,
        allow_data_change: false,
        writer: topology.is_writer(),
    };
    let mut replicas = Devices::<B>::new(devices.to_vec(), topology.clone())?;
    let mut run = Session::<B>::open(spec, || load_pretrained::<B>(init_dir, device), device)?;
    let shared = run.shared_state()?;
    let (model, node0) = replicas.start(run.model, &mut run.optimizer, shared)?;
    run.model = model.with_precision(precision);
    if let (Some(state), false) = (node0, run.is_writer()) {
        run.adopt_state(&state)?;
    }
    run.note_devices(&B::name(device), replicas.world());
    let end = max_steps.map_or(total, |s| (s as u64).min(total));
    let bar = schemas::progress::Progress::new(
        &format!("finetune {}", r.task),
        end,
        schemas::progress::Unit::Count("steps"),
    );
    bar.set_position(run.state.step);
    let mut order = IndexOrder::new(n, cfg.seed, run.state.data)?;
    while run.state.step < end {
        let t0 = Instant::now();
        let (epoch, lr) = (
            order.pos.epoch,
            lr_at(run.state.step, total, warmup, cfg.lr, cfg.min_lr),
        );
        let batch: Vec<&Encoded> = order
            .next_indices(cfg.batch_size)
            .into_iter()
            .map(|i| &data.examples[i])
            .collect();
        let targets: usize = batch.iter().map(|e| e.ids.len() - e.prompt_len).sum();
        let micro: Vec<PaddedBatch> = batch
            .chunks(cfg.micro_batch)
            .map(|c| qa::pad_batch(c, cfg.eos))
            .collect();
        let share = answer_loss_share::<B>(targets);
        let (model, loss, grad_norm) = train_step(
            run.model,
            &mut run.optimizer,
            &mut replicas,
            &micro,
            lr,
            share,
        )
        .with_context(|| format!("finetune {} step {}", r.task, run.state.step + 1))?;
        run.model = model;
        run.state.step += 1;
        run.state.data = order.pos;
        run.state.tokens_seen += batch.iter().map(|e| e.ids.len() as u64).sum::<u64>();
        run.log(serde_json::json!({
            "step": run.state.step, "epoch": epoch, "lr": lr, "loss": loss, "grad_norm": grad_norm,
            "examples": batch.len(), "target_tokens": targets, "secs": t0.elapsed().as_secs_f64(),
        }))?;
        bar.inc(1);
        bar.set_message(format!("loss {loss:.4}"));
        if run.state.step % cfg.checkpoint_every as u64 == 0 || run.state.step == end {
            run.checkpoint()?;
        }
    }
    bar.finish();
    if !run.is_writer() {
        tracing::info!(
            "node {}: trained with node 0, which writes the run",
            topology.node_rank
        );
        return Ok(None);
    }
    if let Err(e) = crate::train::plot::write_loss_png(run_dir) {
        tracing::warn!("loss plot not written: {e:#}");
    }
    if end < total {
        tracing::info!("stopped after step {end} of {total} (--max-steps); run again to resume");
        return Ok(None);
    }

    // Final HF model (+ tokenizer, so `trainer eval --model` needs nothing else).
    let out = run_dir.join("model");
    let tmp = schemas::atomic::temp_path_for(&out);
    save_pretrained(&tmp, &run.hf_config, &run.model.valid())?;
    schemas::atomic::write_atomic(tmp.join("tokenizer.json"), tok_json.as_bytes())?;
    schemas::atomic::commit_dir(&tmp, &out)?;
    Ok(Some(out))
}

/// `trainer finetune` on `devices` (the first one also answers the test questions).
pub fn run<B: AutodiffBackend + ScanBackend>(
    opts: &FinetuneOptions,
    config: &Config,
    devices: &[B::Device],
) -> Result<()>
where
    B::InnerBackend: ScanBackend,
{
    let device = devices.first().context("no device to train on")?;
    let r = config.resolve_task(
        &opts.task,
        opts.steps,
        opts.train_limit,
        opts.limit,
        opts.max_len,
    )?;
    let data_dir = config.data_dir(opts.data_dir.as_deref());
    let run_dir = opts
        .run_dir
        .clone()
        .unwrap_or_else(|| Layout::new(&data_dir).finetune_run(&opts.task));
    let init = checkpoint::model_dir(&opts.init)?;
    let tok_path = opts.tokenizer.clone().or(r.cfg.tokenizer.clone());
    let tokenizer = hf::load_tokenizer(tok_path.as_deref(), &init)?;
    let Some(model_dir) = train::<B>(
        &r,
        &init,
        &data_dir,
        &tokenizer,
        &run_dir,
        opts.max_steps,
        devices,
        &opts.nodes.topology(),
    )?
    else {
        return Ok(());
    };
    println!("finetuned model: {}", model_dir.display());
    if !opts.no_eval {
        let out = run_dir.join("eval").join(&opts.task);
        let res = answer::answer_task::<B::InnerBackend>(
            &r, &model_dir, &data_dir, &tokenizer, &out, None, device,
        )?;
        print!("{}", crate::eval::results::table3_markdown(&[res]));
        println!("wrote {}", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step over two micro-batches (one example each, different lengths) = one micro-batch
    /// of both (padded): the loss scaling makes accumulation exact, padding scores nothing.
    #[test]
    fn accumulated_answer_loss_equals_the_full_batch() {
        use crate::train::optim::AdamW;
        type B = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
        let dev = Default::default();
        let mut c = crate::MambaConfig::new(32, 16, 2);
        c.state_size = 4;
        let model = c.init_seeded::<B>(&dev, 5);
        let a = Encoded {
            ids: (0..14).map(|i| (i * 7) % 31 + 1).collect(),
            prompt_len: 10,
            context_cut: 0,
        };
        let b = Encoded {
            ids: (0..9).map(|i| (i * 3) % 31 + 1).collect(),
            prompt_len: 6,
            context_cut: 0,
        };
        let targets = 4 + 3;
        let p = FinetuneConfig::default().adamw();
        let (mut o1, mut o2) = (AdamW::<B>::new(p.clone()), AdamW::<B>::new(p));
        let micro = [qa::pad_batch(&[&a], 0), qa::pad_batch(&[&b], 0)];
        let (m1, l1, n1) = train_step(
            model.clone(),
            &mut o1,
            &mut Devices::local(&[dev]),
            &micro,
            1e-2,
            answer_loss_share::<B>(targets),
        )
        .unwrap();
        let full = [qa::pad_batch(&[&a, &b], 0)];
        let (m2, l2, n2) = train_step(
            model,
            &mut o2,
            &mut Devices::local(&[dev]),
            &full,
            1e-2,
            answer_loss_share::<B>(targets),
        )
        .unwrap();
        assert!((l1 - l2).abs() < 1e-5 * l2, "{l1} vs {l2}");
        assert!((n1 - n2).abs() < 1e-4 * n2, "{n1} vs {n2}");
        // The loss is the mean answer-token NLL: near ln(32) for a fresh model.
        assert!((l1 - 32f64.ln()).abs() < 0.5, "{l1}");
        let (t1, t2) = (m1.hf_tensors().unwrap(), m2.hf_tensors().unwrap());
        for (x, y) in t1.iter().zip(&t2) {
            for (u, v) in x.bytes.chunks(4).zip(y.bytes.chunks(4)) {
                let u = f32::from_le_bytes(u.try_into().unwrap());
                let v = f32::from_le_bytes(v.try_into().unwrap());
                assert!((u - v).abs() < 1e-5, "{}: {u} vs {v}", x.name);
            }
        }
    }
}
