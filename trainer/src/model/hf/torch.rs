//! PyTorch `pytorch_model.bin` (a `torch.save` state dict: zip + pickle, or the legacy tar and
//! pickle formats), read with burn-store's PyTorch reader. mamba_ssm publishes its checkpoints
//! (state-spaces/mamba2-*) only in this form.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn_store::TensorSnapshot;
use burn_store::pytorch::PytorchReader;

/// The tensors of one `torch.save` file, read lazily by name.
pub struct TorchFile {
    path: PathBuf,
    tensors: HashMap<String, TensorSnapshot>,
}

impl TorchFile {
    pub fn open(path: &Path) -> Result<Self> {
        let reader = PytorchReader::new(path)
            .map_err(|e| anyhow!("reading PyTorch file {}: {e}", path.display()))?;
        Ok(TorchFile {
            path: path.to_path_buf(),
            tensors: reader.into_tensors(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Tensor `name` as f32 (from any float dtype torch stores), with its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self
            .tensors
            .get(name)
            .with_context(|| format!("tensor `{name}` not found in {}", self.path.display()))?;
        let shape = t.shape.to_vec();
        let data = t
            .to_data()
            .map_err(|e| anyhow!("tensor `{name}` in {}: {e}", self.path.display()))?;
        if !data.dtype.is_float() {
            bail!(
                "tensor `{name}` in {}: expected a float dtype, found {:?}",
                self.path.display(),
                data.dtype
            );
        }
        let v = data
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| anyhow!("tensor `{name}` in {}: {e:?}", self.path.display()))?;
        Ok((shape, v))
    }
}
