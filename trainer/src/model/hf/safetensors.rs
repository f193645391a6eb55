//! Small safetensors helpers: typed reads with good errors, atomic f32 writes.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// A memory-mapped safetensors file.
pub struct StFile {
    path: std::path::PathBuf,
    mmap: memmap2::Mmap,
}

impl StFile {
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: the file is only read; concurrent truncation by another process is the
        // usual mmap caveat and would be a misuse of a model directory.
        let mmap = unsafe { memmap2::Mmap::map(&f) }
            .with_context(|| format!("mapping {}", path.display()))?;
        SafeTensors::deserialize(&mmap)
            .with_context(|| format!("parsing safetensors header of {}", path.display()))?;
        Ok(StFile {
            path: path.to_path_buf(),
            mmap,
        })
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.mmap).expect("validated in open")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn names(&self) -> Vec<String> {
        self.st().names().into_iter().map(String::from).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.st().tensor(name).is_ok()
    }

    /// Tensor `name` as f32 (from f32/f16/bf16/f64) with its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let st = self.st();
        let t = st
            .tensor(name)
            .map_err(|_| anyhow::anyhow!("tensor `{name}` not found in {}", self.path.display()))?;
        let v =
            to_f32(&t).with_context(|| format!("tensor `{name}` in {}", self.path.display()))?;
        Ok((t.shape().to_vec(), v))
    }

    /// Tensor `name` as f32, checking its shape.
    pub fn f32_shaped(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (shape, v) = self.f32(name)?;
        if shape != expected {
            bail!(
                "tensor `{name}` in {}: expected shape {expected:?}, found {shape:?}",
                self.path.display()
            );
        }
        Ok(v)
    }

    /// Integer tensor `name` (i64/i32/u32) as i64.
    pub fn i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let st = self.st();
        let t = st
            .tensor(name)
            .map_err(|_| anyhow::anyhow!("tensor `{name}` not found in {}", self.path.display()))?;
        let d = t.data();
        let v: Vec<i64> = match t.dtype() {
            Dtype::I64 => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::I32 => d
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            Dtype::U32 => d
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            other => bail!(
                "tensor `{name}` in {}: expected an integer dtype, found {other:?}",
                self.path.display()
            ),
        };
        Ok((t.shape().to_vec(), v))
    }
}

fn to_f32(t: &TensorView<'_>) -> Result<Vec<f32>> {
    let d = t.data();
    Ok(match t.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes(c.try_into().unwrap()).to_f32())
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes(c.try_into().unwrap()).to_f32())
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        other => bail!("unsupported dtype {other:?} (expected f32, f16, bf16 or f64)"),
    })
}

/// A tensor to write: name, shape, little-endian bytes, dtype.
pub struct OutTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub bytes: Vec<u8>,
}

impl OutTensor {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, v: &[f32]) -> Self {
        OutTensor {
            name: name.into(),
            shape,
            dtype: Dtype::F32,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    pub fn i64(name: impl Into<String>, shape: Vec<usize>, v: &[i64]) -> Self {
        OutTensor {
            name: name.into(),
            shape,
            dtype: Dtype::I64,
            bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// Serialize tensors (with `{"format": "pt"}` metadata, which transformers expects).
pub fn serialize(tensors: &[OutTensor]) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|v| (t.name.clone(), v))
                .with_context(|| format!("tensor `{}`", t.name))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    Ok(safetensors::serialize(views, Some(meta))?)
}

/// Serialize and write atomically.
pub fn save(path: &Path, tensors: &[OutTensor]) -> Result<()> {
    schemas::atomic::write_atomic(path, &serialize(tensors)?)
}
