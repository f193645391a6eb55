//! Training-step benchmark (release build; `just bench-train`): tokens/s of one full pretraining
//! step (forward + backward + gradient accumulation + clipping + AdamW) for the sample config's
//! tiny model and for the mamba-130m shape at B=1, L=2048, on the CPU backend. The peer, measured
//! in the same run, is a bare forward + backward of the same batch, so the table shows what the
//! optimizer and accumulation cost on top.
//!
//! Options: `--iters N` (3), `--len N` (2048, 130m only), `--layers N` (override the 130m depth
//! for a quick look), `--skip-130m`, `--threads N` (all cores), `--micro-batch B` sequences per
//! 130m step (1), `--device D` (`cpu`; any `trainer --device` value): on a device with bf16 (CUDA)
//! the 130m row is also measured in bf16 autocast (`[pretrain] precision`). Timings synchronize
//! the device before reading the clock. Host reads per step are counted (`step::host_reads`).
//! `--precision P` measures the 130m row in P only; `--vocab N` overrides its vocabulary. `--warmup K` untimed steps first (0; the first step on a GPU compiles every kernel), then
//! `--iters` timed ones, medians reported.
//! `--plain-lookup` trains with Burn's embedding backward instead of the planned one
//! (`model::lookup`; CubeCL backends only: the CPU always uses Burn's).
//! `--kernel-log FILE` also counts kernel launches per step on a CubeCL backend: FILE must be the
//! `[profiling.logger] file` of a `cubecl.toml` in the working directory with `level =
//! "minimal"` (one "Executing" line per launch).

use std::time::Instant;

use anyhow::Result;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};
use trainer::backend::{self, DeviceRequest, Job, TrainBackend};
use trainer::train::data::batch_tensor;
use trainer::train::optim::{AdamW, AdamWParams};
use trainer::train::pretrain::lm_loss_share;
use trainer::train::step::{Devices, host_reads, train_step};
use trainer::{MambaConfig, Precision, causal_lm_loss};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}
fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn ids(v: usize, bsz: usize, len: usize, salt: u64) -> Vec<Vec<u32>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ salt;
    (0..bsz)
        .map(|_| {
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % v as u64) as u32
                })
                .collect()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Row {
    name: String,
    tokens: usize,
    step_s: f64,
    fwd_bwd_s: f64,
    /// Values read back to the host in one training step (each waits for the device).
    host_reads: u64,
    /// Kernel launches of one training step (the last one timed), `-` without `--kernel-log`.
    kernels_per_step: String,
    /// Kernel launches of one micro-batch's forward + backward (the peer's, the last one).
    kernels_per_micro_batch: String,
}

#[allow(clippy::too_many_arguments)]
fn bench<B: AutodiffBackend + trainer::model::scan::ScanBackend>(
    name: &str,
    device: &B::Device,
    precision: Precision,
    cfg: &MambaConfig,
    micro_batch: usize,
    grad_accum: usize,
    len: usize,
    iters: usize,
) -> Result<Row> {
    let device = device.clone();
    let sync = || B::sync(&device).map_err(|e| anyhow::anyhow!("device sync: {e:?}"));
    let mut model = cfg.init_seeded::<B>(&device, 0).with_precision(precision);
    let mut opt = AdamW::<B>::new(AdamWParams {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        clip: 1.0,
        ..AdamWParams::default()
    });
    let micro: Vec<Vec<Vec<u32>>> = (0..grad_accum)
        .map(|k| ids(cfg.vocab_size, micro_batch, len, k as u64))
        .collect();
    let mut step_times = Vec::new();
    let mut fb_times = Vec::new();
    let mut reads = Vec::new();
    let mut launches = Vec::new();
    let kernel_log = arg("--kernel-log").map(std::path::PathBuf::from);
    // Launches logged so far (the logger writes asynchronously: let it catch up after a sync).
    let logged = || -> Option<usize> {
        let path = kernel_log.as_ref()?;
        std::thread::sleep(std::time::Duration::from_millis(300));
        let text = std::fs::read_to_string(path).ok()?;
        Some(text.lines().filter(|l| l.contains("Executing")).count())
    };
    let mut devices = Devices::<B>::local(std::slice::from_ref(&device));
    let mut peer_launches = Vec::new();
    let warmup: usize = arg("--warmup").and_then(|s| s.parse().ok()).unwrap_or(0);
    for i in 0..warmup + iters {
        let timed = i >= warmup;
        // The peer: the same tensors built and run forward + backward, nothing else.
        let before_peer = logged();
        let t = Instant::now();
        for seqs in &micro {
            let ids: Tensor<B, 2, Int> = batch_tensor::<B>(seqs, cfg.vocab_size, &device)?;
            let loss = causal_lm_loss(model.forward(ids.clone()), ids);
            let _ = loss.backward();
        }
        sync()?;
        let fb_s = t.elapsed().as_secs_f64();
        let after_peer = logged();
        if let (Some(a), Some(b)) = (before_peer, after_peer) {
            peer_launches.push((b - a) / micro.len());
        }
        let t = Instant::now();
        let share = lm_loss_share(micro.len(), cfg.vocab_size);
        let read0 = host_reads();
        let (m, loss, _) = train_step(model, &mut opt, &mut devices, &micro, 1e-4, share)?;
        let read = host_reads() - read0;
        model = m;
        sync()?;
        let step_s = t.elapsed().as_secs_f64();
        if timed {
            fb_times.push(fb_s);
            step_times.push(step_s);
            reads.push(read);
        }
        if let (Some(a), Some(b)) = (after_peer, logged()) {
            launches.push(b - a);
        }
        // Exact (shortest round-trip) so that two runs can be compared bit for bit.
        eprintln!("{name}: step {i} loss {loss:?}");
    }
    Ok(Row {
        name: name.to_string(),
        tokens: micro_batch * grad_accum * len,
        step_s: median(step_times),
        fwd_bwd_s: median(fb_times),
        host_reads: reads.into_iter().max().unwrap_or(0),
        kernels_per_step: launches
            .last()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "-".into()),
        kernels_per_micro_batch: peer_launches
            .last()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "-".into()),
    })
}

fn main() -> Result<()> {
    let threads: usize = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(0);
    if threads > 0 {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
    let iters: usize = arg("--iters")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    if flag("--plain-lookup") {
        trainer::model::lookup::set_plans(false);
    }
    let request: DeviceRequest = match arg("--device") {
        Some(d) => d.parse()?,
        None => DeviceRequest::Cpu,
    };
    let selection = backend::select(&request)?;
    let rows = backend::run_on(&selection, Rows { iters })?;
    println!(
        "\n| config | tokens/step | train step s | tokens/s | host reads/step | kernels/step | kernels/micro-batch fwd+bwd | peer: fwd+bwd s | peer tokens/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.3} | {:.0} | {} | {} | {} | {:.3} | {:.0} |",
            r.name,
            r.tokens,
            r.step_s,
            r.tokens as f64 / r.step_s,
            r.host_reads,
            r.kernels_per_step,
            r.kernels_per_micro_batch,
            r.fwd_bwd_s,
            r.tokens as f64 / r.fwd_bwd_s
        );
    }
    println!(
        "\ndevice {} [{}]; threads: {}; release build",
        selection.description,
        selection.backend,
        rayon::current_num_threads()
    );
    Ok(())
}

/// The rows, measured on the backend of `--device`.
struct Rows {
    iters: usize,
}

impl Job for Rows {
    type Output = Vec<Row>;
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<Vec<Row>> {
        let (device, iters) = (&devices[0], self.iters);
        let mut rows = Vec::new();
        // configs/sample.toml: d_model 64, 2 layers, d_state 16, vocab 4096, 8 × 2 × 128 tokens.
        let mut tiny = MambaConfig::new(4096, 64, 2);
        tiny.state_size = 16;
        let name = "tiny (sample.toml) 8x2x128";
        rows.push(bench::<B>(
            name,
            device,
            Precision::F32,
            &tiny,
            8,
            2,
            128,
            iters,
        )?);
        if flag("--skip-130m") {
            return Ok(rows);
        }
        let len: usize = arg("--len").and_then(|s| s.parse().ok()).unwrap_or(2048);
        let mb: usize = arg("--micro-batch")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let mut c = MambaConfig::mamba_130m();
        if let Some(l) = arg("--layers").and_then(|s| s.parse().ok()) {
            c.num_hidden_layers = l;
        }
        // A smaller vocabulary keeps the embedding under wgpu's default 128 MiB binding limit.
        if let Some(v) = arg("--vocab").and_then(|s| s.parse().ok()) {
            c.vocab_size = v;
        }
        // Each precision the device takes: f32 on the CPU and wgpu, tf32 and bf16 on CUDA.
        let only = arg("--precision");
        for p in [Precision::F32, Precision::Tf32, Precision::Bf16] {
            if p.check::<B>(device, "precision").is_err()
                || only.as_ref().is_some_and(|o| *o != p.to_string())
            {
                continue;
            }
            let name = format!(
                "mamba-130m ({} layers) {mb}x1x{len} {p}",
                c.num_hidden_layers
            );
            rows.push(bench::<B>(&name, device, p, &c, mb, 1, len, iters)?);
        }
        Ok(rows)
    }
}
