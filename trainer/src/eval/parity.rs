//! `trainer score`: what transformers' `MambaForCausalLM` computes for given ids — logits, the
//! mean next-token loss, and on request every parameter gradient, the hidden states and a
//! greedy continuation — on any backend, for parity checks against the golden fixtures.

use std::path::Path;

use anyhow::{Result, bail};
use burn::module::AutodiffModule;
use burn::tensor::{Int, Tensor, TensorData};

use crate::backend::TrainBackend;
use crate::model::hf::safetensors::{self as st, OutTensor, StFile};
use crate::model::hf::{hf_grads, load_pretrained};
use crate::model::{GenerateConfig, greedy};
use crate::train::loss::causal_lm_loss;

/// What to compute besides logits and loss.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScoreRequest {
    /// d loss / d parameter for every parameter (`grad.<HF name>`).
    pub grads: bool,
    /// The residual stream after each block and the final norm's output (`hidden_states.K`).
    pub hidden: bool,
    /// Greedy continuation of `generate.prompt` by this many tokens (`generate.output`).
    pub greedy: Option<usize>,
}

/// Results of scoring a batch.
pub struct ScoreOutput {
    pub logits_shape: [usize; 3],
    pub loss: f32,
    /// Every tensor written: `logits`, `loss`, and what was requested.
    pub tensors: Vec<OutTensor>,
}

fn host<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading a tensor back: {e:?}"))
}

/// Score `input_ids` `[B, L]` (and greedy-decode `prompt`) with the model in `model_dir`.
pub fn score<B: TrainBackend>(
    model_dir: &Path,
    ids: &[i64],
    shape: [usize; 2],
    prompt: Option<&[u32]>,
    request: ScoreRequest,
    device: &B::Device,
) -> Result<ScoreOutput> {
    let [bsz, len] = shape;
    if bsz == 0 || len < 2 {
        bail!("input_ids must be [B, L] with B >= 1 and L >= 2, found {shape:?}");
    }
    let (cfg, model) = load_pretrained::<B>(model_dir, device)?;
    let v = cfg.config.vocab_size();
    if let Some(bad) = ids.iter().find(|&&t| t < 0 || t as usize >= v) {
        bail!("input_ids contains token {bad}, outside the vocabulary [0, {v})");
    }
    let t: Tensor<B, 2, Int> = Tensor::from_data(TensorData::new(ids.to_vec(), shape), device);
    let out = model.forward_full(t.clone(), request.hidden, false);
    let loss = causal_lm_loss(out.logits.clone(), t);
    let mut tensors = Vec::new();
    if request.grads {
        tensors = hf_grads(&model, &loss.backward())?;
    }
    let loss_value = host(loss)?[0];
    let mut front = vec![
        OutTensor::f32("logits", vec![bsz, len, v], &host(out.logits)?),
        OutTensor::f32("loss", vec![1], &[loss_value]),
    ];
    for (k, h) in out.hidden_states.into_iter().enumerate() {
        let dims = h.dims().to_vec();
        front.push(OutTensor::f32(
            format!("hidden_states.{k}"),
            dims,
            &host(h)?,
        ));
    }
    if let Some(n) = request.greedy {
        let Some(prompt) = prompt.filter(|p| !p.is_empty()) else {
            bail!("--greedy needs a non-empty `generate.prompt` [1, P] in the input");
        };
        let decoding = GenerateConfig {
            max_new_tokens: n,
            num_beams: 1,
            eos_token_id: None,
            stop_token_ids: Vec::new(),
        };
        let c = greedy(&model.valid(), prompt, &decoding, device);
        let all: Vec<i64> = prompt.iter().chain(&c.tokens).map(|&t| t as i64).collect();
        front.push(OutTensor::i64("generate.output", vec![1, all.len()], &all));
    }
    front.append(&mut tensors);
    Ok(ScoreOutput {
        logits_shape: [bsz, len, v],
        loss: loss_value,
        tensors: front,
    })
}

/// Read `input_ids` (and `generate.prompt` for `--greedy`) from `input`, score, write every
/// result tensor to `out`.
pub fn score_files<B: TrainBackend>(
    model_dir: &Path,
    input: &Path,
    out: &Path,
    request: ScoreRequest,
    device: &B::Device,
) -> Result<ScoreOutput> {
    let f = StFile::open(input)?;
    let (shape, ids) = f.i64("input_ids")?;
    if shape.len() != 2 {
        bail!(
            "tensor `input_ids` in {}: expected rank 2 [B, L], found shape {shape:?}",
            input.display()
        );
    }
    let prompt = match request.greedy {
        None => None,
        Some(_) => {
            let (_, p) = f.i64("generate.prompt")?;
            if let Some(bad) = p.iter().find(|&&t| t < 0) {
                bail!("generate.prompt in {} holds token {bad}", input.display());
            }
            Some(p.iter().map(|&t| t as u32).collect::<Vec<u32>>())
        }
    };
    let res = score::<B>(
        model_dir,
        &ids,
        [shape[0], shape[1]],
        prompt.as_deref(),
        request,
        device,
    )?;
    st::save(out, &res.tensors)?;
    Ok(res)
}
