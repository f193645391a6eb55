//! `trainer export RUN_DIR --out DIR`: the latest checkpoint's model in the HF layout.

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::tensor::backend::Backend;

use crate::model::hf;
use crate::train::checkpoint::latest_checkpoint;

/// Write the newest valid checkpoint of `run_dir` to `out` (config.json + model.safetensors);
/// returns the checkpoint directory used.
pub fn export<B: Backend>(run_dir: &Path, out: &Path, device: &B::Device) -> Result<PathBuf> {
    let ckpt = latest_checkpoint(run_dir)?;
    let (cfg, model) = hf::load_pretrained::<B>(&ckpt, device)?;
    hf::save_pretrained(out, &cfg, &model)?;
    Ok(ckpt)
}
