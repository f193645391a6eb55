//! `trainer score`: logits, loss and (optionally) parameter gradients for given ids.

use crate::model::scan::ScanBackend;
use std::path::Path;

use anyhow::{Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::hf::{hf_grads, load_pretrained};
use crate::train::loss::causal_lm_loss;
use crate::model::hf::safetensors::{self as st, OutTensor, StFile};

/// Results of scoring a batch.
pub struct ScoreOutput {
    /// `[B, L, V]` row-major.
    pub logits: Vec<f32>,
    pub logits_shape: [usize; 3],
    pub loss: f32,
    /// `grad.<HF name>` entries when requested.
    pub grads: Vec<OutTensor>,
}

/// Score `input_ids` `[B, L]` with the model in `model_dir`.
pub fn score<B: AutodiffBackend + ScanBackend>(
    model_dir: &Path,
    ids: &[i64],
    shape: [usize; 2],
    with_grads: bool,
    device: &B::Device,
) -> Result<ScoreOutput>
where
    B::InnerBackend: ScanBackend,
{
    let [bsz, len] = shape;
    if bsz == 0 || len < 2 {
        bail!("input_ids must be [B, L] with B >= 1 and L >= 2, found {shape:?}");
    }
    let (cfg, model) = load_pretrained::<B>(model_dir, device)?;
    let v = cfg.config.vocab_size;
    if let Some(bad) = ids.iter().find(|&&t| t < 0 || t as usize >= v) {
        bail!("input_ids contains token {bad}, outside the vocabulary [0, {v})");
    }
    let data = TensorData::new(ids.to_vec(), shape);
    let to_vec = |d: TensorData| -> Result<Vec<f32>> {
        d.convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    };
    if with_grads {
        let t: Tensor<B, 2, Int> = Tensor::from_data(data, device);
        let logits = model.forward(t.clone());
        let loss = causal_lm_loss(logits.clone(), t);
        let grads_store = loss.backward();
        let grads = hf_grads(&model, &grads_store)?;
        Ok(ScoreOutput {
            logits: to_vec(logits.into_data())?,
            logits_shape: [bsz, len, v],
            loss: to_vec(loss.into_data())?[0],
            grads,
        })
    } else {
        // No tape needed: run on the inner backend.
        let model = model.valid();
        let t = Tensor::from_data(data, device);
        let logits = model.forward(t.clone());
        let loss = causal_lm_loss(logits.clone(), t);
        Ok(ScoreOutput {
            logits: to_vec(logits.into_data())?,
            logits_shape: [bsz, len, v],
            loss: to_vec(loss.into_data())?[0],
            grads: Vec::new(),
        })
    }
}

/// Read `input_ids` from `input`, score, write `logits`, `loss` (+ `grad.*`) to `out`.
pub fn score_files<B: AutodiffBackend + ScanBackend>(
    model_dir: &Path,
    input: &Path,
    out: &Path,
    with_grads: bool,
    device: &B::Device,
) -> Result<ScoreOutput>
where
    B::InnerBackend: ScanBackend,
{
    let f = StFile::open(input)?;
    let (shape, ids) = f.i64("input_ids")?;
    if shape.len() != 2 {
        bail!(
            "tensor `input_ids` in {}: expected rank 2 [B, L], found shape {shape:?}",
            input.display()
        );
    }
    let mut res = score::<B>(model_dir, &ids, [shape[0], shape[1]], with_grads, device)?;
    let mut tensors = vec![
        OutTensor::f32("logits", res.logits_shape.to_vec(), &res.logits),
        OutTensor::f32("loss", vec![1], &[res.loss]),
    ];
    tensors.append(&mut res.grads);
    st::save(out, &tensors)?;
    Ok(res)
}
