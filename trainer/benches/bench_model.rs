//! Model benchmark (release build; `just bench-model`): forward+backward wall time on CPU
//! for tiny-b and the mamba-130m shape at B=1, L=512, next to transformers'
//! `MambaForCausalLM` (same thread count, via `benches/peer_mamba.py`), plus the peak RSS
//! of a 130m forward at L=2048. The peer's Python defaults to `~/.cache/biomamba-peer-venv`.
//!
//! Options: `--len N` (512), `--iters N` (3), `--layers N` (override the 130m depth, for
//! quick looks), `--checkpoint` (Burn's BalancedCheckpointing: recompute memory-bound
//! ops in backward), `--skip-peer`, `--skip-130m`, `--peer-timeout SECS` (1200),
//! `--python PATH` (or $BIOMAMBA_PEER_PYTHON), `--device D` (`cpu`; any `trainer --device` value
//! runs our side there, the peer stays on the CPU, and RSS is then host memory only).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use trainer::backend::{self, DeviceRequest, Job, TrainBackend};
use trainer::model::hf::HfConfig;
use trainer::model::{Mamba2Config, ModelConfig};
use trainer::{AutodiffCpu, Cpu, MambaConfig, causal_lm_loss};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}
fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Peak resident set size (VmHWM) in MiB.
fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
/// Reset the peak-RSS counter (Linux: write 5 to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn random_ids(v: usize, len: usize) -> Vec<i64> {
    let mut x: u64 = 0x9E3779B97F4A7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % v as u64) as i64
        })
        .collect()
}

/// Median forward+backward seconds and peak RSS (MiB) during it.
fn ours_fwd_bwd<B: AutodiffBackend + trainer::model::scan::ScanBackend>(
    cfg: &ModelConfig,
    len: usize,
    iters: usize,
    dev: B::Device,
) -> (f64, f64) {
    let model = cfg.init_seeded::<B>(&dev, 0);
    let ids = random_ids(cfg.vocab_size(), len);
    let mut times = Vec::new();
    reset_peak_rss();
    for i in 0..=iters {
        let t0 = Instant::now();
        let t: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(ids.clone(), [1, len]), &dev);
        let logits = model.forward(t.clone());
        let loss = causal_lm_loss(logits, t);
        let grads = loss.backward();
        // Materialize one gradient so nothing is deferred.
        let _ = model.embeddings.val().grad(&grads).map(|g| g.into_data());
        drop(grads);
        let dt = t0.elapsed().as_secs_f64();
        if i > 0 || iters == 0 {
            times.push(dt);
        }
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], peak_rss_mib())
}

/// transformers' median forward+backward seconds and the peer process's peak RSS (MiB).
fn peer_fwd_bwd(
    python: &str,
    cfg: &ModelConfig,
    threads: usize,
    len: usize,
    iters: usize,
) -> Result<(f64, f64)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer_mamba.py");
    let tmp = std::env::temp_dir().join(format!("bench_model_cfg_{}.json", std::process::id()));
    HfConfig::from_config(cfg.clone()).save(&tmp)?;
    let err_path = tmp.with_extension("stderr");
    let mut child = Command::new(python)
        .arg(&script)
        .arg("--config")
        .arg(&tmp)
        .args(["--threads", &threads.to_string(), "--len", &len.to_string()])
        .args(["--iters", &iters.to_string()])
        .env("OMP_NUM_THREADS", threads.to_string())
        .stdout(std::process::Stdio::piped())
        // A file, not a pipe: nobody reads stderr while we poll, and a full pipe would block the peer.
        .stderr(std::fs::File::create(&err_path).context("creating the peer's stderr file")?)
        .spawn()
        .with_context(|| format!("running {python}"))?;
    // The transformers CPU fallback can be very slow at 130m: give up after a limit.
    let limit = std::time::Duration::from_secs(
        arg("--peer-timeout")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1200),
    );
    let start = Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&err_path);
            anyhow::bail!("timed out after {} s", limit.as_secs());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = child.wait_with_output()?;
    let _ = std::fs::remove_file(&tmp);
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    if !out.status.success() {
        let last = err.lines().last().unwrap_or("").to_string();
        anyhow::bail!("{last}");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("peer output")?;
    let t = v["fwd_bwd_s"]
        .as_f64()
        .context("peer output lacks fwd_bwd_s")?;
    Ok((t, v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)))
}

fn main() -> Result<()> {
    let len: usize = arg("--len").map(|s| s.parse()).transpose()?.unwrap_or(512);
    let iters: usize = arg("--iters").map(|s| s.parse()).transpose()?.unwrap_or(3);
    let python = arg("--python")
        .or_else(|| std::env::var("BIOMAMBA_PEER_PYTHON").ok())
        .or_else(|| {
            // The project's peer venv, where the setup put torch + transformers.
            let home = std::env::var_os("HOME")?;
            let p = PathBuf::from(home).join(".cache/biomamba-peer-venv/bin/python");
            p.exists().then(|| p.display().to_string())
        })
        .unwrap_or_else(|| "python3".into());
    let threads = rayon::current_num_threads();
    let request: DeviceRequest = match arg("--device") {
        Some(d) => d.parse()?,
        None => DeviceRequest::Cpu,
    };
    let selection = backend::select(&request)?;
    println!(
        "bench_model: B=1, L={len}, f32 on {} [{}], {threads} threads, median of {iters}",
        selection.description, selection.backend
    );

    let golden = testkit::fixtures::golden_dir();
    let fixture =
        |arch: &str, name: &str| HfConfig::load(&golden.join(arch).join(name).join("config.json"));
    let tiny_b = fixture("mamba", "tiny-b")
        .map(|c| c.config)
        .unwrap_or_else(|_| {
            MambaConfig::new(256, 64, 3)
                .with_time_step_rank(Some(4))
                .into()
        });
    let tiny_m2_b = fixture("mamba2", "tiny-m2-b")
        .map(|c| c.config)
        .unwrap_or_else(|_| {
            Mamba2Config::new(160, 48, 3)
                .with_state_size(8)
                .with_head_dim(16)
                .with_n_groups(2)
                .with_chunk_size(16)
                .into()
        });
    let mut m130 = MambaConfig::mamba_130m();
    let mut m2_130 = Mamba2Config::mamba2_130m();
    if let Some(l) = arg("--layers") {
        m130.num_hidden_layers = l.parse()?;
        m2_130.num_hidden_layers = l.parse()?;
    }
    let only = arg("--arch");
    let mut cases: Vec<(&str, ModelConfig)> = Vec::new();
    if only.as_deref() != Some("mamba2") {
        cases.push(("tiny-b", tiny_b));
        if !flag("--skip-130m") {
            cases.push(("mamba-130m", m130.clone().into()));
        }
    }
    if only.as_deref() != Some("mamba") {
        cases.push(("tiny-m2-b", tiny_m2_b));
        if !flag("--skip-130m") {
            cases.push(("mamba2-130m", m2_130.into()));
        }
    }

    println!(
        "\n| model | layers | ours fwd+bwd (s) | ours peak RSS (MiB) | transformers fwd+bwd (s) | transformers peak RSS (MiB) | ours / transformers (time) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, cfg) in &cases {
        let (ours, rss) = if flag("--checkpoint") {
            ours_fwd_bwd::<burn::backend::Autodiff<Cpu, BalancedCheckpointing>>(
                cfg,
                len,
                iters,
                Default::default(),
            )
        } else {
            backend::run_on(&selection, FwdBwd { cfg, len, iters })?
        };
        let peer = if flag("--skip-peer") {
            Err(anyhow::anyhow!("skipped"))
        } else {
            // 130m: one warm-up and one timed run (the peer's reference scan is slow on CPU).
            let pi = if name.ends_with("-130m") {
                iters.min(1)
            } else {
                iters
            };
            peer_fwd_bwd(&python, cfg, threads, len, pi)
        };
        let (p, prss, ratio) = match &peer {
            Ok((p, prss)) => (
                format!("{p:.3}"),
                format!("{prss:.0}"),
                format!("{:.2}", ours / p),
            ),
            Err(e) => (format!("peer unavailable: {e}"), "-".into(), "-".into()),
        };
        println!(
            "| {name} | {} | {ours:.3} | {rss:.0} | {p} | {prss} | {ratio} |",
            cfg.num_hidden_layers()
        );
    }

    if !flag("--skip-130m") && only.as_deref() != Some("mamba2") {
        // Inference memory: one forward at L=2048 on the plain backend (no tape).
        let l2 = 2048;
        let dev = Default::default();
        let model = m130.init_seeded::<AutodiffCpu>(&dev, 0).valid();
        reset_peak_rss();
        let t0 = Instant::now();
        let t = Tensor::from_data(
            TensorData::new(random_ids(m130.vocab_size, l2), [1, l2]),
            &dev,
        );
        let logits = model.forward(t);
        let _ = logits.into_data();
        println!(
            "\nmamba-130m forward, B=1, L={l2}: {:.3} s, peak RSS {:.0} MiB",
            t0.elapsed().as_secs_f64(),
            peak_rss_mib()
        );
    }
    Ok(())
}

/// Our forward+backward on the backend of `--device`.
struct FwdBwd<'a> {
    cfg: &'a ModelConfig,
    len: usize,
    iters: usize,
}

impl Job for FwdBwd<'_> {
    type Output = (f64, f64);
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> Result<(f64, f64)> {
        let device = devices[0].clone();
        Ok(ours_fwd_bwd::<B>(self.cfg, self.len, self.iters, device))
    }
}
