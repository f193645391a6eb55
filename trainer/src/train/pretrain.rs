//! `trainer pretrain`: continued pretraining of Mamba on the packed shards, resumable exactly.
//!
//! One optimizer step = `micro_batch × grad_accum` sequences from the global order
//! ([`crate::train::data::Loader`]); each micro-batch's mean loss is scaled by `1/grad_accum` before
//! backward and the gradients are summed, then one AdamW update. The run directory, cursor,
//! checkpoints, metrics log and the step itself are [`crate::train::session`]'s, shared with
//! `trainer finetune`; exact resume is explained there.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::module::AutodiffModule;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use schemas::{Layout, layout};

use crate::config::Config;
use crate::model::hf::{self, HfConfig};
use crate::model::lookup::plan_for;
use crate::model::scan::ScanBackend;
use crate::model::{MambaLm, Precision};
use crate::train::data::{self, DomainCursor, MixState, MixedLoader, SequenceSource, Shards};
use crate::train::loss::{
    causal_lm_loss, length_mask, masked_loss_sum, masked_nll_sum, targets_of,
};
use crate::train::parallel::NodeArgs;
use crate::train::session::{METRICS_FILE, RunSpec, Session};
use crate::train::step::{Devices, scalar, train_step};

/// Options of one `trainer pretrain` run (its command-line flags; the recipe is the config's).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PretrainOptions {
    /// Run directory (created; an existing one is resumed from its cursor).
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Initialize from this HF directory instead of [model] init / from scratch.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Data directory holding shards/{train,val} (default: [data] dir of the config, or `data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Resume even though the shards changed since the run started.
    #[arg(long)]
    pub allow_data_change: bool,
    /// Stop after this many total steps (with a checkpoint); the schedule still spans [pretrain] steps.
    #[arg(long)]
    pub max_steps: Option<u64>,
    #[command(flatten)]
    pub nodes: NodeArgs,
}

/// The token ids of one micro-batch's sequences (host side: each device builds its tensor).
pub type MicroBatch = Vec<Vec<u32>>;

/// A micro-batch of rows that may end in padding: `lengths[b]` real tokens at the start of row `b`.
#[derive(Clone, Debug)]
pub struct PaddedBatch {
    pub ids: Vec<Vec<u32>>,
    pub lengths: Vec<usize>,
}

/// The share of one micro-batch in a step's loss, computed on a device: its mean next-token loss
/// / `grad_accum` (packed rows, every token real, no label smoothing).
pub fn lm_loss_share<B: AutodiffBackend + ScanBackend>(
    grad_accum: usize,
    vocab_size: usize,
) -> impl Fn(&MambaLm<B>, &MicroBatch, &B::Device) -> Result<Tensor<B, 1>> + Send + Sync + 'static {
    move |model, seqs, device| {
        let ids = data::batch_tensor::<B>(seqs, vocab_size, device)?;
        let plan = plan_for::<B, _>(&seqs.concat());
        let logits = model.forward_planned(ids.clone(), plan.as_ref());
        Ok(causal_lm_loss(logits, ids).mul_scalar(1.0 / grad_accum as f64))
    }
}

/// The share of one padded micro-batch in a step's loss: the (label-smoothed) loss summed over
/// its real targets (padding never is one), divided by `step_targets`, the real targets of the
/// whole step, so the shares add up to the step's mean loss per real target whatever the split.
pub fn masked_loss_share<B: AutodiffBackend + ScanBackend>(
    step_targets: usize,
    label_smoothing: f64,
    vocab_size: usize,
) -> impl Fn(&MambaLm<B>, &PaddedBatch, &B::Device) -> Result<Tensor<B, 1>> + Send + Sync + 'static
{
    move |model, batch, device| {
        let ids = data::batch_tensor::<B>(&batch.ids, vocab_size, device)?;
        let mask = length_mask::<B>(&batch.lengths, ids.dims()[1], device);
        let plan = plan_for::<B, _>(&batch.ids.concat());
        let logits = model.forward_planned(ids.clone(), plan.as_ref());
        Ok(masked_loss_sum(logits, ids, mask, label_smoothing)
            .div_scalar(step_targets.max(1) as f64))
    }
}

/// Mean next-token loss over the first `batches × micro_batch` validation sequences: per real
/// target when any of them ends in padding, else the mean of the batch means weighted by rows.
pub fn evaluate<B: ScanBackend>(
    model: &MambaLm<B>,
    val: &dyn SequenceSource,
    micro_batch: usize,
    batches: usize,
    vocab_size: usize,
    device: &B::Device,
) -> Result<f64> {
    let n = val.len().min(micro_batch * batches.max(1));
    ensure!(n > 0, "the validation data has no sequences");
    let lengths = (0..n).map(|i| val.length(i)).collect::<Result<Vec<_>>>()?;
    let padded = lengths.iter().any(|&l| l < val.seq_len());
    let (mut total, mut count) = (0.0, 0usize);
    for start in (0..n).step_by(micro_batch) {
        let rows = start..(start + micro_batch).min(n);
        let seqs = rows
            .clone()
            .map(|i| val.sequence(i))
            .collect::<Result<Vec<_>>>()?;
        let ids = data::batch_tensor::<B>(&seqs, vocab_size, device)?;
        if padded {
            let mask = length_mask::<B>(&lengths[rows.clone()], val.seq_len(), device);
            total += scalar(masked_nll_sum(model.forward(ids.clone()), ids, mask))?;
            count += lengths[rows].iter().map(|&l| targets_of(l)).sum::<usize>();
        } else {
            let loss = scalar(causal_lm_loss(model.forward(ids.clone()), ids))?;
            total += loss * seqs.len() as f64;
            count += seqs.len();
        }
    }
    ensure!(count > 0, "the validation rows hold no targets");
    Ok(total / count as f64)
}

/// Summary of a (possibly partial) run.
#[derive(Clone, Debug)]
pub struct PretrainSummary {
    pub start_step: u64,
    pub end_step: u64,
    pub first_val_loss: Option<f64>,
    pub last_val_loss: Option<f64>,
}

/// One domain's training and validation data, with its weight in the mixture.
pub struct DomainData<'a> {
    pub name: String,
    pub weight: f64,
    pub train: &'a dyn SequenceSource,
    pub val: &'a dyn SequenceSource,
}

/// Run (or resume) pretraining as configured, data parallel over `devices` (the first one holds
/// the model and the optimizer; see [`train_step`]): on PubMed's shards, or on every domain of
/// `[pretrain.mix]` (`schemas::Layout::domain_shards`).
pub fn run<B: AutodiffBackend + ScanBackend>(
    opts: &PretrainOptions,
    config: &Config,
    devices: &[B::Device],
) -> Result<PretrainSummary>
where
    B::InnerBackend: ScanBackend,
{
    let data = Layout::new(config.data_dir(opts.data_dir.as_deref()));
    let mut opened = Vec::new();
    for (name, weight) in config.pretrain.domains() {
        let open = |split: &str| {
            Shards::open_dir(&data.domain_shards(&name, split))
                .with_context(|| format!("the {name} domain's {split} shards"))
        };
        opened.push((
            name.clone(),
            weight,
            open(layout::TRAIN)?,
            open(layout::VAL)?,
        ));
    }
    let domains = opened
        .iter()
        .map(|(name, weight, train, val)| DomainData {
            name: name.clone(),
            weight: *weight,
            train,
            val,
        })
        .collect::<Vec<_>>();
    run_with_domains::<B>(opts, config, &domains, devices)
}

/// [`run`] on PubMed alone, with explicit data sources.
pub fn run_with_data<B: AutodiffBackend + ScanBackend>(
    opts: &PretrainOptions,
    file: &Config,
    train: &dyn SequenceSource,
    val: &dyn SequenceSource,
    devices: &[B::Device],
) -> Result<PretrainSummary>
where
    B::InnerBackend: ScanBackend,
{
    let domains = [DomainData {
        name: layout::PUBMED.into(),
        weight: 1.0,
        train,
        val,
    }];
    run_with_domains::<B>(opts, file, &domains, devices)
}

/// [`run`] with explicit data sources, one per domain (in `[pretrain.mix]` order).
pub fn run_with_domains<B: AutodiffBackend + ScanBackend>(
    opts: &PretrainOptions,
    file: &Config,
    domains: &[DomainData<'_>],
    devices: &[B::Device],
) -> Result<PretrainSummary>
where
    B::InnerBackend: ScanBackend,
{
    let device = devices.first().context("no device to train on")?;
    let cfg = &file.pretrain;
    cfg.validate()?;
    let precision = Precision::of::<B>(cfg.precision, device);
    precision.check::<B>(device, "[pretrain] precision")?;
    ensure!(!domains.is_empty(), "no training domains");
    let mixed = !cfg.mix.is_empty();
    for d in domains {
        for (what, src) in [("training", d.train), ("validation", d.val)] {
            ensure!(
                src.seq_len() == cfg.seq_len,
                "{} {what} shards hold sequences of {} tokens, but [pretrain] seq_len is {}",
                d.name,
                src.seq_len(),
                cfg.seq_len
            );
        }
    }
    let total_steps = match cfg.epochs {
        Some(e) => {
            let seqs: usize = domains.iter().map(|d| d.train.len()).sum();
            ((e * seqs as f64) / cfg.sequences_per_step() as f64)
                .ceil()
                .max(1.0) as u64
        }
        None => cfg.steps,
    };
    let schedule = cfg.schedule_over(total_steps);
    // The recipe must not change under a resumed run, or it would not be the same run.
    let mut model_section = file.model.clone();
    if let Some(init) = &opts.init {
        model_section.init = Some(init.clone());
    }
    let data_fingerprint = if mixed {
        domains
            .iter()
            .map(|d| {
                format!(
                    "{}={}+{}",
                    d.name,
                    d.train.fingerprint(),
                    d.val.fingerprint()
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    } else {
        format!(
            "{}+{}",
            domains[0].train.fingerprint(),
            domains[0].val.fingerprint()
        )
    };
    let spec = RunSpec {
        run_dir: &opts.run_dir,
        run_config: serde_json::json!({ "model": model_section, "pretrain": cfg }),
        what: "[model]/[pretrain]",
        data_fingerprint,
        data_what: "shards",
        seed: cfg.seed,
        adamw: cfg.adamw(),
        keep_checkpoints: cfg.keep_checkpoints,
        allow_data_change: opts.allow_data_change,
        ema: cfg.ema,
        writer: opts.nodes.topology().is_writer(),
    };
    let init = || match &model_section.init {
        Some(dir) => hf::load_pretrained::<B>(dir, device)
            .with_context(|| format!("loading the initial model from {}", dir.display())),
        None => {
            let c = model_section.scratch_config()?;
            let m = c.init_seeded::<B>(device, model_section.init_seed);
            Ok((HfConfig::from_config(c), m))
        }
    };
    let mut replicas = Devices::<B>::new(devices.to_vec(), opts.nodes.topology())?;
    let mut run = Session::<B>::open(spec, init, device)?;
    let shared = run.shared_state()?;
    let (model, node0) = replicas.start(run.model, &mut run.optimizer, shared)?;
    run.model = model.with_precision(precision);
    if let (Some(state), false) = (node0, run.is_writer()) {
        run.adopt_state(&state)?;
    }
    let writer = run.is_writer();
    run.note_devices(&B::name(device), replicas.world());
    let vocab = run.hf_config.config.vocab_size();
    let names: Vec<String> = domains.iter().map(|d| d.name.clone()).collect();
    let total_weight: f64 = domains.iter().map(|d| d.weight).sum();
    // Validation loss: each domain's, and their mixture-weighted mean (PubMed's alone unmixed).
    let validate = |m: &MambaLm<B>| -> Result<(f64, Vec<f64>)> {
        let m = m.valid();
        let per = domains
            .iter()
            .map(|d| {
                evaluate(&m, d.val, cfg.micro_batch, cfg.eval_batches, vocab, device)
                    .with_context(|| format!("validating on {}", d.name))
            })
            .collect::<Result<Vec<_>>>()?;
        let mean = domains
            .iter()
            .zip(&per)
            .map(|(d, v)| d.weight / total_weight * v)
            .sum();
        Ok((mean, per))
    };
    let with_val = |line: &mut serde_json::Value, (v, per): &(f64, Vec<f64>)| {
        (line["val_loss"], line["val_ppl"]) = ((*v).into(), v.exp().into());
        if mixed {
            line["val_loss_by_domain"] = names.iter().cloned().zip(per.iter().copied()).collect();
        }
    };

    let (mut first_val, mut last_val) = (None, None);
    if !run.resumed && writer {
        let v = validate(&run.model)?;
        tracing::info!(
            "step 0: validation loss {:.4} (perplexity {:.2})",
            v.0,
            v.0.exp()
        );
        let mut line = serde_json::json!({"step": 0});
        with_val(&mut line, &v);
        run.log(line)?;
        first_val = Some(v.0);
        // Step 0 is a checkpoint too, so every later resume has something to fall back to.
        run.checkpoint()?;
    }

    let end = opts.max_steps.unwrap_or(total_steps).min(total_steps);
    let start = run.state.step;
    let progress =
        schemas::progress::Progress::new("pretrain", end, schemas::progress::Unit::Count("steps"));
    progress.set_position(start);
    let mix_state = match (&run.state.mix, mixed) {
        (Some(m), true) => m.clone(),
        (_, true) => MixState::new(),
        (_, false) => [(
            names[0].clone(),
            DomainCursor {
                position: run.state.data,
                sequences: 0,
                tokens: 0,
            },
        )]
        .into(),
    };
    let mut loader = MixedLoader::new(
        domains
            .iter()
            .map(|d| (d.name.clone(), d.weight, d.train))
            .collect(),
        cfg.seed,
        &mix_state,
    )?;
    let t_run = Instant::now();
    while run.state.step < end {
        let t0 = Instant::now();
        let lr = schedule.lr_at(run.state.step);
        let drawn = (0..cfg.grad_accum)
            .map(|_| loader.next_sequences(cfg.micro_batch))
            .collect::<Result<Vec<_>>>()?;
        let padded = drawn.iter().flatten().any(|d| d.length < cfg.seq_len);
        let step = if !padded && cfg.label_smoothing == 0.0 {
            // Packed rows: the plain mean loss, as every run before padding existed computed it.
            let micro: Vec<MicroBatch> = drawn
                .into_iter()
                .map(|mb| mb.into_iter().map(|d| d.ids).collect())
                .collect();
            train_step(
                run.model,
                &mut run.optimizer,
                &mut replicas,
                &micro,
                lr,
                lm_loss_share(cfg.grad_accum, vocab),
            )
        } else {
            let targets = drawn.iter().flatten().map(|d| targets_of(d.length)).sum();
            let micro: Vec<PaddedBatch> = drawn
                .into_iter()
                .map(|mb| PaddedBatch {
                    lengths: mb.iter().map(|d| d.length).collect(),
                    ids: mb.into_iter().map(|d| d.ids).collect(),
                })
                .collect();
            train_step(
                run.model,
                &mut run.optimizer,
                &mut replicas,
                &micro,
                lr,
                masked_loss_share(targets, cfg.label_smoothing, vocab),
            )
        };
        let (model, loss, grad_norm) =
            step.with_context(|| format!("step {}", run.state.step + 1))?;
        run.model = model;
        if let Some(ema) = &mut run.ema {
            ema.update(&run.model)?;
        }
        run.state.step += 1;
        run.state.tokens_seen += cfg.tokens_per_step();
        if mixed {
            run.state.mix = Some(loader.state());
        } else {
            run.state.data = loader.position(0);
        }
        let tokens_per_s = cfg.tokens_per_step() as f64 / t0.elapsed().as_secs_f64();
        let step = run.state.step;
        let mut line = serde_json::json!({
            "step": step, "lr": lr, "loss": loss, "grad_norm": grad_norm,
            "tokens": run.state.tokens_seen, "tokens_per_s": tokens_per_s,
        });
        if mixed {
            line["domain_tokens"] = names
                .iter()
                .cloned()
                .zip(loader.tokens().iter().copied())
                .collect();
            line["domain_sequences"] = names
                .iter()
                .cloned()
                .zip(loader.sequences().iter().copied())
                .collect();
        }
        let validating = step == end
            || step == total_steps
            || (cfg.eval_every > 0 && step % cfg.eval_every == 0);
        if validating && writer {
            let v = validate(&run.model)?;
            with_val(&mut line, &v);
            last_val = Some(v.0);
        }
        run.log(line)?;
        let val_msg = last_val.map(|v| format!(" val {v:.4}")).unwrap_or_default();
        progress.set_message(format!("loss {loss:.4} {tokens_per_s:.0} tok/s{val_msg}"));
        progress.inc(1);
        if step % cfg.checkpoint_every == 0 || step == end {
            run.checkpoint()?;
        }
    }
    progress.finish();
    if run.state.step > start {
        tracing::info!(
            "trained steps {}..{} in {:.1}s; {} tokens seen",
            start + 1,
            run.state.step,
            t_run.elapsed().as_secs_f64(),
            run.state.tokens_seen
        );
    }
    if !writer {
        return Ok(PretrainSummary {
            start_step: start,
            end_step: run.state.step,
            first_val_loss: None,
            last_val_loss: None,
        });
    }
    if mixed {
        report_mixture(&opts.run_dir, &loader)?;
    }
    if let Err(e) = crate::train::plot::write_loss_png(&opts.run_dir) {
        tracing::warn!("loss plot not written: {e:#}");
    }
    if first_val.is_none() {
        first_val = crate::train::plot::read_metrics(&opts.run_dir.join(METRICS_FILE))
            .ok()
            .and_then(|m| m.iter().find_map(|r| r.val_loss));
    }
    Ok(PretrainSummary {
        start_step: start,
        end_step: run.state.step,
        first_val_loss: first_val,
        last_val_loss: last_val,
    })
}

/// The file of the realised mixture against the target (`trainer pretrain` with `[pretrain.mix]`).
pub const MIXTURE_FILE: &str = "mixture.json";

/// The realised mixture of the run so far against its target: printed as a table and written to
/// `RUN_DIR/mixture.json`.
fn report_mixture(run_dir: &std::path::Path, loader: &MixedLoader<'_>) -> Result<()> {
    let seqs: u64 = loader.sequences().iter().sum();
    let toks: u64 = loader.tokens().iter().sum();
    let mut rows = Vec::new();
    println!(
        "| domain | target share | realised share (sequences) | sequences | real tokens | token share |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (d, name) in loader.names().iter().enumerate() {
        let (s, t) = (loader.sequences()[d], loader.tokens()[d]);
        let share = s as f64 / seqs.max(1) as f64;
        let tshare = t as f64 / toks.max(1) as f64;
        println!(
            "| {name} | {:.4} | {share:.4} | {s} | {t} | {tshare:.4} |",
            loader.shares()[d]
        );
        rows.push(serde_json::json!({
            "domain": name, "target_share": loader.shares()[d], "sequence_share": share,
            "sequences": s, "tokens": t, "token_share": tshare,
        }));
    }
    let j = serde_json::to_vec_pretty(
        &serde_json::json!({ "sequences": seqs, "tokens": toks, "domains": rows }),
    )?;
    schemas::atomic::write_atomic(run_dir.join(MIXTURE_FILE), &j)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelSection, PretrainConfig};
    use crate::model::MambaConfig;
    use crate::train::checkpoint::latest_checkpoint;
    use crate::train::data::InMemorySource;
    use crate::train::optim::AdamW;
    use burn::backend::ndarray::NdArrayDevice;
    use burn::backend::{Autodiff, NdArray};
    type B = Autodiff<NdArray<f32>>;

    /// Two accumulated micro-batches of one sequence = one batch of both sequences.
    #[test]
    fn accumulation_equals_the_full_batch() {
        let dev = Default::default();
        let model = tiny_model(11);
        let (a, b) = (seq(20, 7, 0), seq(20, 3, 1));
        let p = PretrainConfig::default().adamw();
        let mut o1 = AdamW::<B>::new(p.clone());
        let micro = [vec![a.clone()], vec![b.clone()]];
        let (m1, l1, n1) = train_step(
            model.clone(),
            &mut o1,
            &mut Devices::local(&[dev]),
            &micro,
            1e-2,
            lm_loss_share(2, 32),
        )
        .unwrap();
        let mut o2 = AdamW::<B>::new(p);
        let (m2, l2, n2) = train_step(
            model,
            &mut o2,
            &mut Devices::local(&[dev]),
            &[vec![a, b]],
            1e-2,
            lm_loss_share(1, 32),
        )
        .unwrap();
        assert!((l1 - l2).abs() < 1e-5, "{l1} vs {l2}");
        assert!((n1 - n2).abs() < 1e-4 * n2, "{n1} vs {n2}");
        assert!(max_abs_diff(&m1, &m2) < 1e-5);
    }

    /// Data parallel over two (CPU) devices: with one micro-batch per device the step is the
    /// one-device step bit for bit; with two per device it differs at most in the last bits, is
    /// bit-identical run to run, and the loss (summed in micro-batch order) is unchanged.
    #[test]
    fn data_parallel_step_matches_one_device() {
        let dev = Default::default();
        let model = tiny_model(12);
        let p = PretrainConfig::default().adamw();
        let step = |devices: &[NdArrayDevice], micro: &[Vec<Vec<u32>>]| {
            let mut o = AdamW::<B>::new(p.clone());
            let n = micro.len();
            let (m, l, g) = train_step(
                model.clone(),
                &mut o,
                &mut Devices::local(devices),
                micro,
                1e-2,
                lm_loss_share(n, 32),
            )
            .unwrap();
            (weights(&m), l, g, m)
        };
        let two: Vec<Vec<Vec<u32>>> = (0..2).map(|k| vec![seq(20, 5, k)]).collect();
        let (w1, l1, g1, _) = step(&[dev], &two);
        let (w2, l2, g2, _) = step(&[dev, dev], &two);
        assert_eq!((l1, g1), (l2, g2));
        assert!(
            w1 == w2,
            "one micro-batch per device must equal one device bit for bit"
        );

        let four: Vec<Vec<Vec<u32>>> = (0..4).map(|k| vec![seq(20, 3, k + 5)]).collect();
        let (_, l1, g1, m1) = step(&[dev], &four);
        let (w2, l2, g2, m2) = step(&[dev, dev], &four);
        let (w3, l3, g3, _) = step(&[dev, dev], &four);
        assert_eq!(l1, l2, "the loss does not depend on the device count");
        assert!((g1 - g2).abs() < 1e-5 * g1, "{g1} vs {g2}");
        assert!(max_abs_diff(&m1, &m2) < 1e-6);
        assert!(
            w2 == w3 && l2 == l3 && g2 == g3,
            "two devices: bit-identical run to run"
        );
        // Three devices: burn-collective's own sum would add three tensors in a hash-map order;
        // the ordered exact gather still equals one device bit for bit, run after run.
        let three: Vec<Vec<Vec<u32>>> = (0..3).map(|k| vec![seq(20, 7, k + 9)]).collect();
        let (w1, l1, g1, _) = step(&[dev], &three);
        for _ in 0..2 {
            let (w3, l3, g3, _) = step(&[dev, dev, dev], &three);
            assert!(
                w1 == w3 && l1 == l3 && g1 == g3,
                "three devices = one device"
            );
        }
        let (w1, ..) = step(&[dev], &two);
        // More devices than micro-batches: the extra ones stay idle.
        let (w4, ..) = step(&[dev, dev, dev], &two);
        assert!(w4 == w1);
    }

    /// Each device's worker lives for the whole run: over 3 steps the loss shares of a
    /// two-device run are computed on the same two threads (a thread per step would give CubeCL
    /// a new stream and cubecl-cuda a new, never returned, memory pool every step), and a step
    /// reads the device once (its loss and gradient norm), however many micro-batches it has.
    #[test]
    fn device_workers_persist_and_a_step_reads_the_device_once() {
        use std::collections::BTreeSet;
        use std::sync::Mutex;
        let dev = Default::default();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let record = {
            let seen = seen.clone();
            let share = lm_loss_share::<B>(4, 32);
            move |m: &MambaLm<B>, mb: &MicroBatch, d: &NdArrayDevice| {
                seen.lock()
                    .unwrap()
                    .push(format!("{:?}", std::thread::current().id()));
                share(m, mb, d)
            }
        };
        let record = std::sync::Arc::new(record);
        for devices in [vec![dev], vec![dev, dev]] {
            seen.lock().unwrap().clear();
            let mut replicas = Devices::<B>::local(&devices);
            let mut model = tiny_model(3);
            let mut o = AdamW::<B>::new(PretrainConfig::default().adamw());
            let mut per_step = Vec::new();
            for step in 0..3 {
                let micro: Vec<MicroBatch> =
                    (0..4).map(|k| vec![seq(12, 3, step * 4 + k)]).collect();
                let before = crate::train::step::host_reads();
                let r = record.clone();
                let share = move |m: &MambaLm<B>, mb: &MicroBatch, d: &NdArrayDevice| r(m, mb, d);
                let (m, ..) =
                    train_step(model, &mut o, &mut replicas, &micro, 1e-2, share).unwrap();
                model = m;
                assert_eq!(
                    crate::train::step::host_reads() - before,
                    1,
                    "{} device(s): one host read per step",
                    devices.len()
                );
                let threads: BTreeSet<String> = seen.lock().unwrap().drain(..).collect();
                per_step.push(threads);
            }
            assert_eq!(per_step[0].len(), devices.len(), "{per_step:?}");
            assert!(
                per_step.iter().all(|t| *t == per_step[0]),
                "the same worker threads every step: {per_step:?}"
            );
            assert_eq!(replicas.worker_threads().len(), devices.len() - 1);
        }
    }

    /// A bad micro-batch on the second device is an error naming that device, not a panic, and
    /// the step is not applied.
    #[test]
    fn data_parallel_worker_error_names_its_device() {
        let dev = Default::default();
        let mut o = AdamW::<B>::new(PretrainConfig::default().adamw());
        let micro = vec![vec![seq(8, 1, 0)], vec![vec![3, 99, 4]]]; // 99 is outside vocab 32
        let Err(err) = train_step(
            tiny_model(1),
            &mut o,
            &mut Devices::local(&[dev, dev]),
            &micro,
            1e-2,
            lm_loss_share(2, 32),
        ) else {
            panic!("the bad micro-batch must fail the step");
        };
        let msg = format!("{err:#}");
        assert!(
            msg.contains("data-parallel device 1") && msg.contains("99"),
            "{msg}"
        );
        assert_eq!(o.updates, 0, "no update on error");
    }

    /// Padded document rows: the step's loss is the mean NLL over real targets, computed here by
    /// hand on each document alone (no padding anywhere); the ids of the padding change nothing
    /// (it is never a target, and a causal model never looks ahead at it), neither in the loss
    /// nor in the update; and how the rows are split into micro-batches does not matter.
    #[test]
    fn padded_rows_score_only_real_targets() {
        use crate::train::loss::{next_token_nll, sum_all};
        let dev = Default::default();
        let model = tiny_model(13);
        let docs = [seq(9, 5, 1), seq(20, 3, 2), seq(4, 7, 3)];
        let padded = |pad: u32, rows: std::ops::Range<usize>| PaddedBatch {
            ids: docs[rows.clone()]
                .iter()
                .map(|d| {
                    let mut r = d.clone();
                    r.resize(20, pad);
                    r
                })
                .collect(),
            lengths: docs[rows].iter().map(|d| d.len()).collect(),
        };
        let targets = 8 + 19 + 3;
        let share = masked_loss_share::<B>(targets, 0.0, 32);
        let loss = |b: &PaddedBatch| scalar(share(&model, b, &dev).unwrap()).unwrap();
        let mut by_hand = 0.0;
        for d in &docs {
            let ids = data::batch_tensor::<B>(std::slice::from_ref(d), 32, &dev).unwrap();
            by_hand += scalar(sum_all(next_token_nll(model.forward(ids.clone()), ids))).unwrap();
        }
        let want = by_hand / targets as f64;
        let (l0, l1) = (loss(&padded(0, 0..3)), loss(&padded(17, 0..3)));
        assert!((l0 - want).abs() < 1e-5 * want, "{l0} vs {want}");
        assert!((l1 - l0).abs() < 1e-6 * l0, "padding ids changed the loss");
        let split = loss(&padded(0, 0..1)) + loss(&padded(0, 1..3));
        assert!((split - l0).abs() < 1e-5 * l0);
        // The update does not depend on the padding's ids either.
        let p = PretrainConfig::default().adamw();
        let step = |pad: u32| {
            let mut o = AdamW::<B>::new(p.clone());
            let micro = [padded(pad, 0..1), padded(pad, 1..3)];
            let (m, l, _) = train_step(
                model.clone(),
                &mut o,
                &mut Devices::local(&[dev]),
                &micro,
                1e-2,
                share_fn(targets),
            )
            .unwrap();
            (m, l)
        };
        let ((m0, s0), (m1, s1)) = (step(0), step(29));
        assert!((s0 - l0).abs() < 1e-5 * l0 && (s1 - s0).abs() < 1e-6 * s0);
        assert!(max_abs_diff(&m0, &m1) < 1e-6);
    }

    fn share_fn(
        targets: usize,
    ) -> impl Fn(&MambaLm<B>, &PaddedBatch, &NdArrayDevice) -> Result<Tensor<B, 1>> + Send + Sync + 'static
    {
        masked_loss_share::<B>(targets, 0.0, 32)
    }

    #[test]
    fn micro_batches_split_into_contiguous_blocks() {
        let b = |n, parts| crate::train::step::contiguous_blocks(n, parts);
        assert_eq!(b(4, 3), vec![0..2, 2..3, 3..4]);
        assert_eq!(b(2, 4), vec![0..1, 1..2]);
        assert_eq!(b(5, 1), vec![0..5]);
        assert_eq!(b(61, 8).iter().map(|r| r.len()).sum::<usize>(), 61);
    }

    /// A two-device run stopped after 3 steps and resumed equals the uninterrupted two-device run:
    /// same exported weights, same loss log.
    #[test]
    fn data_parallel_run_resumes_exactly() {
        let dev = Default::default();
        let file = Config {
            model: ModelSection {
                vocab_size: 32,
                hidden_size: 16,
                num_hidden_layers: 2,
                state_size: 4,
                ..ModelSection::default()
            },
            pretrain: PretrainConfig {
                seq_len: 16,
                micro_batch: 1,
                grad_accum: 4,
                steps: 6,
                lr: 1e-2,
                eval_every: 0,
                eval_batches: 1,
                checkpoint_every: 2,
                ..PretrainConfig::default()
            },
            ..Config::default()
        };
        let train = InMemorySource::new((0..10).map(|k| seq(16, 3, k)).collect(), 16).unwrap();
        let val = InMemorySource::new((0..2).map(|k| seq(16, 5, 50 + k)).collect(), 16).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let go = |dir: &str, max_steps| {
            let opts = PretrainOptions {
                run_dir: tmp.path().join(dir),
                init: None,
                data_dir: None,
                allow_data_change: false,
                max_steps,
                nodes: NodeArgs::default(),
            };
            run_with_data::<B>(&opts, &file, &train, &val, &[dev, dev]).unwrap()
        };
        go("whole", None);
        assert_eq!(go("split", Some(3)).end_step, 3);
        assert_eq!(go("split", None).start_step, 3);
        let out = |dir: &str| {
            let ckpt = latest_checkpoint(&tmp.path().join(dir)).unwrap();
            std::fs::read(ckpt.join(hf::WEIGHTS_FILE)).unwrap()
        };
        let log = |dir: &str| -> Vec<serde_json::Value> {
            let text = std::fs::read_to_string(tmp.path().join(dir).join(METRICS_FILE)).unwrap();
            text.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let o = v.as_object_mut().unwrap();
                    o.remove("tokens_per_s");
                    if o["step"] == 3 {
                        // The stopped run validates where it stops.
                        o.remove("val_loss");
                        o.remove("val_ppl");
                    }
                    v
                })
                .collect()
        };
        assert!(out("whole") == out("split"), "exported weights differ");
        assert_eq!(log("whole"), log("split"));
        assert_eq!(log("whole").len(), 7);
    }

    fn tiny_model(seed: u64) -> MambaLm<B> {
        let mut cfg = MambaConfig::new(32, 16, 2);
        cfg.state_size = 4;
        cfg.init_seeded::<B>(&Default::default(), seed)
    }

    /// `len` tokens `(i * mul + salt) % 32`.
    fn seq(len: u32, mul: u32, salt: u32) -> Vec<u32> {
        (0..len).map(|i| (i * mul + salt) % 32).collect()
    }

    fn weights(m: &MambaLm<B>) -> Vec<Vec<u8>> {
        m.hf_tensors()
            .unwrap()
            .into_iter()
            .map(|t| t.bytes)
            .collect()
    }

    fn max_abs_diff(a: &MambaLm<B>, b: &MambaLm<B>) -> f32 {
        let f = |w: Vec<u8>| -> Vec<f32> {
            w.chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        weights(a)
            .into_iter()
            .zip(weights(b))
            .flat_map(|(x, y)| f(x).into_iter().zip(f(y)).map(|(u, v)| (u - v).abs()))
            .fold(0.0, f32::max)
    }
}
