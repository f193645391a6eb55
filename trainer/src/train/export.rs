//! `trainer export RUN_DIR --out DIR`: the latest checkpoint's model in the HF layout: its last
//! weights, or the moving average of the weights (`--weights ema`, or by default when the run's
//! recipe sets `[pretrain] export_ema`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use burn::tensor::backend::Backend;

use crate::model::hf::{self, HfConfig, Weights};
use crate::train::checkpoint::latest_checkpoint;
use crate::train::ema::EMA_FILE;
use crate::train::session::RUN_CONFIG_FILE;

/// Which weights of a checkpoint to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportWeights {
    /// The weights after the checkpoint's last step.
    Final,
    /// The exponential moving average of the weights (`[pretrain] ema`).
    Ema,
}

/// Whether the run's recorded recipe asks for the moving average to be exported.
fn recipe_exports_ema(run_dir: &Path) -> Result<bool> {
    let path = run_dir.join(RUN_CONFIG_FILE);
    let Ok(text) = std::fs::read(&path) else {
        return Ok(false);
    };
    let v: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(v["pretrain"]["export_ema"].as_bool().unwrap_or(false))
}

/// Write the newest valid checkpoint of `run_dir` to `out` (config.json + model.safetensors);
/// returns the checkpoint directory used.
pub fn export<B: Backend>(
    run_dir: &Path,
    out: &Path,
    weights: Option<ExportWeights>,
    device: &B::Device,
) -> Result<PathBuf> {
    let ckpt = latest_checkpoint(run_dir)?;
    let weights = match weights {
        Some(w) => w,
        None if recipe_exports_ema(run_dir)? => ExportWeights::Ema,
        None => ExportWeights::Final,
    };
    let (cfg, model) = match weights {
        ExportWeights::Final => hf::load_pretrained::<B>(&ckpt, device)?,
        ExportWeights::Ema => {
            let path = ckpt.join(EMA_FILE);
            ensure!(
                path.is_file(),
                "{} holds no moving average ({EMA_FILE}): the run was made without [pretrain] ema",
                ckpt.display()
            );
            let cfg = HfConfig::load(&ckpt.join(hf::CONFIG_FILE))?;
            let model = hf::load_weights::<B>(&cfg.config, &Weights::open(&path)?, device)
                .with_context(|| format!("loading the moving average {}", path.display()))?;
            (cfg, model)
        }
    };
    hf::save_pretrained(out, &cfg, &model)?;
    Ok(ckpt)
}
