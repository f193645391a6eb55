//! GPU benchmark (`just bench-gpu`; `--device cuda` by default, `--device wgpu` for a smoke run on
//! lavapipe): forward + backward tokens/s of the Mamba model at `--batch` × `--len`
//! (8 × 2048) with the selective scan run by (a) the fused sequence-parallel CubeCL kernels (the
//! default, `ScanKernel::Auto`), (b) the fused per-channel CubeCL kernels (one unit per channel
//! over the whole sequence, the previous default) and (c) the tensor-op scan, all on the same
//! backend, in f32 and in bf16 autocast where the device has bf16. The peer (transformers'
//! `MambaForCausalLM` on the same GPU) is `benches/peer_mamba_gpu.py`, run beside it by
//! `benches/gpu/device.sh`, which also runs each (scan, precision) row in its own process to read
//! its peak GPU memory.
//!
//! Timing: `--warmup` untimed iterations (kernel compilation, autotune, allocator), then
//! `--iters` timed ones, each ending with a device sync; the median is reported.
//! MFU counts the matrix products only: per token 2 × (in/x/dt/out_proj weights per layer + head)
//! FLOPs forward, ×3 for forward + backward, over the dense bf16 peak `--peak-tflops` (989, H100
//! SXM); the scan's O(D·N) per token is left out (under 2% at 130m).
//!
//! Options: `--layers N` (24), `--hidden N` (768), `--vocab N` (50280), `--batch B` (8), `--len L`
//! (2048), `--iters K` (5), `--warmup K` (2), `--peak-tflops X` (989), `--only seq|per-channel|
//! tensor-ops` (one scan; `fused` = `seq`), `--precision f32|bf16` (one precision), `--device D`
//! (`cuda`; any `trainer --device` value).

use std::time::Instant;

use anyhow::{Result, anyhow};
use burn::tensor::{DType, Int, Tensor, TensorData};
use trainer::backend::{self, DeviceRequest, Job, TrainBackend};
use trainer::model::Mamba2Config;
use trainer::model::scan::cubecl::{ScanKernel, SeqConfig, set_fused_scan, set_scan_kernel};
use trainer::{MambaConfig, MambaLm, Precision, causal_lm_loss};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Matrix-product FLOPs per token of one forward pass (weights of the projections and the head).
fn matmul_flops_per_token(c: &MambaConfig) -> f64 {
    let (d, di, n, r) = (c.hidden_size, c.d_inner(), c.state_size, c.dt_rank());
    let per_layer = d * 2 * di + di * (r + 2 * n) + r * di + di * d;
    2.0 * (c.num_hidden_layers * per_layer + d * c.vocab_size) as f64
}

/// Matmul FLOPs per token of Mamba-2's projections and head (forward).
fn mamba2_matmul_flops_per_token(c: &Mamba2Config) -> f64 {
    let per_layer = c.hidden_size * c.in_proj_dim() + c.d_inner() * c.hidden_size;
    2.0 * (c.num_hidden_layers * per_layer + c.hidden_size * c.vocab_size) as f64
}

/// Median forward+backward seconds over `iters` after `warmup` runs, and the first loss.
fn time_fwd_bwd<B: TrainBackend>(
    model: &MambaLm<B>,
    ids: &Tensor<B, 2, Int>,
    warmup: usize,
    iters: usize,
    sync: &dyn Fn() -> Result<()>,
) -> Result<(f64, f32)> {
    let mut times = Vec::new();
    let mut loss_value = f32::NAN;
    for i in 0..warmup + iters {
        let t = Instant::now();
        let loss = causal_lm_loss(model.forward(ids.clone()), ids.clone());
        let _grads = loss.backward();
        sync()?;
        let dt = t.elapsed().as_secs_f64();
        if i >= warmup {
            times.push(dt);
        }
        if i == 0 {
            loss_value = loss
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| anyhow!("{e:?}"))?[0];
            anyhow::ensure!(loss_value.is_finite(), "loss {loss_value}");
        }
    }
    times.sort_by(f64::total_cmp);
    eprintln!("loss {loss_value:.4}, times {times:?}");
    Ok((times[times.len() / 2], loss_value))
}

fn main() -> Result<()> {
    let request: DeviceRequest = arg("--device", DeviceRequest::Cuda(vec![0]));
    let selection = backend::select(&request)?;
    println!(
        "device {} [{} backend]",
        selection.description, selection.backend
    );
    backend::run_on(&selection, Bench)
}

/// The benchmark on the backend of `--device`.
struct Bench;

impl Job for Bench {
    type Output = ();
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<()> {
        bench::<B>(devices[0].clone())
    }
}

fn bench<B: TrainBackend>(device: B::Device) -> Result<()> {
    let mut cfg = MambaConfig::mamba_130m();
    cfg.num_hidden_layers = arg("--layers", cfg.num_hidden_layers);
    cfg.hidden_size = arg("--hidden", cfg.hidden_size);
    cfg.vocab_size = arg("--vocab", cfg.vocab_size);
    let (bsz, len) = (arg("--batch", 8usize), arg("--len", 2048usize));
    let (iters, warmup) = (arg("--iters", 5usize).max(1), arg("--warmup", 2usize));
    let peak = arg("--peak-tflops", 989.0f64) * 1e12;
    let only: String = arg("--only", String::new());
    let only = if only == "fused" {
        "seq".to_string()
    } else {
        only
    };
    let only_precision: String = arg("--precision", String::new());
    let sync = || B::sync(&device).map_err(|e| anyhow!("device sync: {e:?}"));
    println!(
        "bench_gpu: {} ({} layers, d {}, vocab {}, {:.2}M params), B={bsz} L={len}, {} on {:?}",
        if cfg.num_hidden_layers == 24 && cfg.hidden_size == 768 {
            "mamba-130m"
        } else {
            "mamba"
        },
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.vocab_size,
        cfg.num_params() as f64 / 1e6,
        B::name(&device),
        device
    );

    // Token ids: a fixed xorshift stream (never zeros, see the device docs).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let ids: Vec<i64> = (0..bsz * len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % cfg.vocab_size as u64) as i64
        })
        .collect();
    let ids: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(ids, [bsz, len]), &device);
    let flops = 3.0 * matmul_flops_per_token(&cfg) * (bsz * len) as f64;

    // Rows are printed as they are measured: an out-of-memory abort keeps the rows before it.
    println!(
        "scan kernels: sequence-parallel tiles forward {:?}, backward {:?} (fitted to the \
         device's shared memory), per-channel for L <= {}",
        SeqConfig::FORWARD,
        SeqConfig::BACKWARD,
        trainer::model::scan::cubecl::PER_CHANNEL_MAX_LEN
    );
    println!(
        "\n| scan | precision | fwd+bwd ms (median) | tokens/s | MFU % (bf16 peak) | first loss |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let scans = [
        (
            "seq",
            "fused CubeCL, sequence-parallel",
            Some(ScanKernel::Auto),
        ),
        (
            "per-channel",
            "fused CubeCL, per-channel",
            Some(ScanKernel::PerChannel),
        ),
        ("tensor-ops", "tensor-op", None),
    ];
    anyhow::ensure!(
        only.is_empty() || scans.iter().any(|s| s.0 == only),
        "--only {only}: expected seq, per-channel or tensor-ops"
    );
    for (key, scan, kernel) in scans {
        if !only.is_empty() && only != key {
            continue;
        }
        for precision in [Precision::F32, Precision::Bf16] {
            if !only_precision.is_empty()
                && !format!("{precision:?}").eq_ignore_ascii_case(&only_precision)
            {
                continue;
            }
            if let Some(dt) = precision.matmul_dtype()
                && !B::supports_dtype(&device, DType::from(dt))
            {
                println!("| {scan} | {precision:?} | not supported by this device | | | |");
                continue;
            }
            set_fused_scan(kernel.is_some());
            set_scan_kernel(kernel.unwrap_or(ScanKernel::Auto));
            let model = cfg.init_seeded::<B>(&device, 0).with_precision(precision);
            let (med, loss_value) = time_fwd_bwd(&model, &ids, warmup, iters, &sync)
                .map_err(|e| anyhow!("{scan} {precision:?}: {e:#}"))?;
            println!(
                "| {scan} | {precision:?} | {:.1} | {:.0} | {:.1} | {:.4} |",
                med * 1e3,
                (bsz * len) as f64 / med,
                100.0 * flops / med / peak,
                loss_value
            );
        }
    }
    // Mamba-2 at the same width, depth and vocabulary (mamba2-130m's by default): SSD as tensor
    // ops, no kernel of ours. MFU counts its projections and head only.
    let mut m2 = Mamba2Config::mamba2_130m();
    (m2.num_hidden_layers, m2.hidden_size, m2.vocab_size) =
        (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size);
    let m2_flops = 3.0 * mamba2_matmul_flops_per_token(&m2) * (bsz * len) as f64;
    for precision in [Precision::F32, Precision::Bf16] {
        if !only_precision.is_empty()
            && !format!("{precision:?}").eq_ignore_ascii_case(&only_precision)
        {
            continue;
        }
        if let Some(dt) = precision.matmul_dtype()
            && !B::supports_dtype(&device, DType::from(dt))
        {
            println!(
                "| Mamba-2 SSD, tensor-op | {precision:?} | not supported by this device | | | |"
            );
            continue;
        }
        let model = m2.init_seeded::<B>(&device, 0).with_precision(precision);
        let (med, loss_value) = time_fwd_bwd(&model, &ids, warmup, iters, &sync)
            .map_err(|e| anyhow!("Mamba-2 {precision:?}: {e:#}"))?;
        println!(
            "| Mamba-2 SSD, tensor-op ({:.1}M params) | {precision:?} | {:.1} | {:.0} | {:.1} | {:.4} |",
            m2.num_params() as f64 / 1e6,
            med * 1e3,
            (bsz * len) as f64 / med,
            100.0 * m2_flops / med / peak,
            loss_value
        );
    }
    set_fused_scan(true);
    set_scan_kernel(ScanKernel::Auto);
    println!(
        "\nwarm-up {warmup}, timed {iters}; MFU = 3 x {:.2} GFLOP/token (matmuls) / peak {:.0} TFLOP/s",
        matmul_flops_per_token(&cfg) / 1e9,
        peak / 1e12
    );
    Ok(())
}
