//! Hugging Face interop: `config.json` + `model.safetensors` in the layout that transformers'
//! `MambaForCausalLM` / `Mamba2ForCausalLM.save_pretrained` writes (tied head not stored); also
//! read: mamba_ssm's layout (`pytorch_model.bin`, `backbone.embedding.`, its config.json).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use crate::model::mamba2::GatedRmsNorm;
use crate::model::{
    Mamba2Config, Mamba2Mixer, MambaBlock, MambaConfig, MambaLm, MambaMixer, Mixer, ModelConfig,
    Precision, RmsNorm,
};
pub mod config;
pub mod safetensors;
pub mod torch;

pub use config::HfConfig;
use safetensors::{self as st, OutTensor, StFile};
use torch::TorchFile;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// mamba_ssm's (and older transformers') weights file: a `torch.save` state dict.
pub const TORCH_WEIGHTS_FILE: &str = "pytorch_model.bin";

/// A borrowed parameter of any rank (to walk the model under HF names).
pub enum ParamRef<'a, B: Backend> {
    R1(&'a Param<Tensor<B, 1>>),
    R2(&'a Param<Tensor<B, 2>>),
    R3(&'a Param<Tensor<B, 3>>),
}

impl<B: Backend> ParamRef<'_, B> {
    pub fn data(&self) -> TensorData {
        match self {
            ParamRef::R1(p) => p.val().into_data(),
            ParamRef::R2(p) => p.val().into_data(),
            ParamRef::R3(p) => p.val().into_data(),
        }
    }
    pub fn shape(&self) -> Vec<usize> {
        match self {
            ParamRef::R1(p) => p.dims().to_vec(),
            ParamRef::R2(p) => p.dims().to_vec(),
            ParamRef::R3(p) => p.dims().to_vec(),
        }
    }
}

impl<B: AutodiffBackend> ParamRef<'_, B> {
    /// Gradient of this parameter (None if it did not take part in the loss).
    pub fn grad(&self, grads: &B::Gradients) -> Option<TensorData> {
        match self {
            ParamRef::R1(p) => p.val().grad(grads).map(|g| g.into_data()),
            ParamRef::R2(p) => p.val().grad(grads).map(|g| g.into_data()),
            ParamRef::R3(p) => p.val().grad(grads).map(|g| g.into_data()),
        }
    }
}

/// A mixer's parameters under their names inside `mixer.` (transformers' names).
fn mixer_params<B: Backend>(mixer: &Mixer<B>) -> Vec<(&'static str, ParamRef<'_, B>)> {
    let mut v = Vec::new();
    match mixer {
        Mixer::Mamba(m) => {
            v.push(("A_log", ParamRef::R2(&m.a_log)));
            v.push(("D", ParamRef::R1(&m.d)));
            v.push(("conv1d.weight", ParamRef::R3(&m.conv1d_weight)));
            if let Some(b) = &m.conv1d_bias {
                v.push(("conv1d.bias", ParamRef::R1(b)));
            }
            v.push(("in_proj.weight", ParamRef::R2(&m.in_proj)));
            if let Some(b) = &m.in_proj_bias {
                v.push(("in_proj.bias", ParamRef::R1(b)));
            }
            v.push(("x_proj.weight", ParamRef::R2(&m.x_proj)));
            v.push(("dt_proj.weight", ParamRef::R2(&m.dt_proj)));
            v.push(("dt_proj.bias", ParamRef::R1(&m.dt_proj_bias)));
            v.push(("out_proj.weight", ParamRef::R2(&m.out_proj)));
            if let Some(b) = &m.out_proj_bias {
                v.push(("out_proj.bias", ParamRef::R1(b)));
            }
        }
        Mixer::Mamba2(m) => {
            v.push(("A_log", ParamRef::R1(&m.a_log)));
            v.push(("D", ParamRef::R1(&m.d)));
            v.push(("dt_bias", ParamRef::R1(&m.dt_bias)));
            v.push(("conv1d.weight", ParamRef::R3(&m.conv1d_weight)));
            if let Some(b) = &m.conv1d_bias {
                v.push(("conv1d.bias", ParamRef::R1(b)));
            }
            v.push(("in_proj.weight", ParamRef::R2(&m.in_proj)));
            if let Some(b) = &m.in_proj_bias {
                v.push(("in_proj.bias", ParamRef::R1(b)));
            }
            v.push(("norm.weight", ParamRef::R1(&m.norm.weight)));
            v.push(("out_proj.weight", ParamRef::R2(&m.out_proj)));
            if let Some(b) = &m.out_proj_bias {
                v.push(("out_proj.bias", ParamRef::R1(b)));
            }
        }
    }
    v
}

impl<B: Backend> MambaLm<B> {
    /// Every parameter under its transformers name (`backbone.embeddings.weight`, ...),
    /// in a stable order. The tied head is not listed (it *is* the embedding).
    pub fn hf_params(&self) -> Vec<(String, ParamRef<'_, B>)> {
        let mut v = vec![(
            "backbone.embeddings.weight".to_string(),
            ParamRef::R2(&self.embeddings),
        )];
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("backbone.layers.{i}");
            v.push((format!("{p}.norm.weight"), ParamRef::R1(&l.norm.weight)));
            for (name, r) in mixer_params(&l.mixer) {
                v.push((format!("{p}.mixer.{name}"), r));
            }
        }
        v.push((
            "backbone.norm_f.weight".to_string(),
            ParamRef::R1(&self.norm_f.weight),
        ));
        if let Some(h) = &self.lm_head {
            v.push(("lm_head.weight".to_string(), ParamRef::R2(h)));
        }
        v
    }

    /// All parameters as f32 safetensors entries under HF names.
    pub fn hf_tensors(&self) -> Result<Vec<OutTensor>> {
        self.hf_params()
            .into_iter()
            .map(|(name, p)| {
                let d = p.data().convert::<f32>();
                let v = d
                    .to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("reading `{name}`: {e:?}"))?;
                Ok(OutTensor::f32(name, p.shape(), &v))
            })
            .collect()
    }
}

/// Gradients of every parameter under `grad.<HF name>` (zeros if unused).
pub fn hf_grads<B: AutodiffBackend>(
    model: &MambaLm<B>,
    grads: &B::Gradients,
) -> Result<Vec<OutTensor>> {
    model
        .hf_params()
        .into_iter()
        .map(|(name, p)| {
            let shape = p.shape();
            let v = match p.grad(grads) {
                Some(d) => d
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("reading grad of `{name}`: {e:?}"))?,
                None => vec![0.0; shape.iter().product()],
            };
            Ok(OutTensor::f32(format!("grad.{name}"), shape, &v))
        })
        .collect()
}

/// Where a model's weights are read from: transformers' `model.safetensors` or a `torch.save`
/// state dict (mamba_ssm's `pytorch_model.bin`).
pub enum Weights {
    Safetensors(StFile),
    Torch(TorchFile),
}

impl Weights {
    pub fn open(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "safetensors") {
            Ok(Weights::Safetensors(StFile::open(path)?))
        } else {
            Ok(Weights::Torch(TorchFile::open(path)?))
        }
    }

    /// The weights file of a model directory: `model.safetensors`, else `pytorch_model.bin`.
    pub fn find(dir: &Path) -> Result<PathBuf> {
        for name in [WEIGHTS_FILE, TORCH_WEIGHTS_FILE] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        bail!(
            "{} holds no weights: expected {WEIGHTS_FILE} (transformers) or {TORCH_WEIGHTS_FILE} \
             (mamba_ssm)",
            dir.display()
        )
    }

    pub fn path(&self) -> &Path {
        match self {
            Weights::Safetensors(f) => f.path(),
            Weights::Torch(f) => f.path(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            Weights::Safetensors(f) => f.contains(name),
            Weights::Torch(f) => f.contains(name),
        }
    }

    /// Tensor `name` as f32, checking its shape.
    pub fn f32_shaped(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let (shape, v) = match self {
            Weights::Safetensors(f) => f.f32(name)?,
            Weights::Torch(f) => f.f32(name)?,
        };
        if shape != expected {
            bail!(
                "tensor `{name}` in {}: expected shape {expected:?}, found {shape:?}",
                self.path().display()
            );
        }
        Ok(v)
    }

    fn param<B: Backend, const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Param<Tensor<B, D>>> {
        let v = self.f32_shaped(name, &shape)?;
        Ok(Param::from_data(TensorData::new(v, shape), device))
    }

    /// `name` when `present`, else `None` (optional biases).
    fn optional<B: Backend, const D: usize>(
        &self,
        present: bool,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Option<Param<Tensor<B, D>>>> {
        present.then(|| self.param(name, shape, device)).transpose()
    }
}

/// Build a model from a config and its weights under HF (or mamba_ssm) names.
pub fn load_weights<B: Backend>(
    config: &ModelConfig,
    f: &Weights,
    device: &B::Device,
) -> Result<MambaLm<B>> {
    let (d, v) = (config.hidden_size(), config.vocab_size());
    let eps = config.layer_norm_epsilon();
    // The original state-spaces (mamba_ssm) checkpoints call it `embedding`.
    let emb_name = if f.contains("backbone.embeddings.weight") {
        "backbone.embeddings.weight"
    } else if f.contains("backbone.embedding.weight") {
        "backbone.embedding.weight"
    } else {
        bail!(
            "tensor `backbone.embeddings.weight` (or `backbone.embedding.weight`) not found in {}",
            f.path().display()
        );
    };
    let embeddings = f.param(emb_name, [v, d], device)?;
    let mut layers = Vec::with_capacity(config.num_hidden_layers());
    for i in 0..config.num_hidden_layers() {
        let p = format!("backbone.layers.{i}");
        let mx = |s: &str| format!("{p}.mixer.{s}");
        let mixer = match config {
            ModelConfig::Mamba(c) => Mixer::Mamba(mamba_mixer(c, f, &mx, device)?),
            ModelConfig::Mamba2(c) => Mixer::Mamba2(mamba2_mixer(c, f, &mx, device)?),
        };
        layers.push(MambaBlock {
            norm: RmsNorm {
                weight: f.param(&format!("{p}.norm.weight"), [d], device)?,
                eps,
            },
            mixer,
        });
    }
    let norm_f = RmsNorm {
        weight: f.param("backbone.norm_f.weight", [d], device)?,
        eps,
    };
    // A tied head is the embedding (mamba_ssm's state dict lists it under both names).
    let lm_head = if config.tie_word_embeddings() {
        None
    } else {
        Some(f.param("lm_head.weight", [v, d], device)?)
    };
    Ok(MambaLm {
        embeddings,
        layers,
        norm_f,
        lm_head,
        vocab_size: v,
        precision: Precision::F32,
    })
}

fn mamba_mixer<B: Backend>(
    c: &MambaConfig,
    f: &Weights,
    mx: &dyn Fn(&str) -> String,
    device: &B::Device,
) -> Result<MambaMixer<B>> {
    let (d, di, n, k, r) = (
        c.hidden_size,
        c.d_inner(),
        c.state_size,
        c.conv_kernel,
        c.dt_rank(),
    );
    Ok(MambaMixer {
        in_proj: f.param(&mx("in_proj.weight"), [2 * di, d], device)?,
        in_proj_bias: f.optional(c.use_bias, &mx("in_proj.bias"), [2 * di], device)?,
        conv1d_weight: f.param(&mx("conv1d.weight"), [di, 1, k], device)?,
        conv1d_bias: f.optional(c.use_conv_bias, &mx("conv1d.bias"), [di], device)?,
        x_proj: f.param(&mx("x_proj.weight"), [r + 2 * n, di], device)?,
        dt_proj: f.param(&mx("dt_proj.weight"), [di, r], device)?,
        dt_proj_bias: f.param(&mx("dt_proj.bias"), [di], device)?,
        a_log: f.param(&mx("A_log"), [di, n], device)?,
        d: f.param(&mx("D"), [di], device)?,
        out_proj: f.param(&mx("out_proj.weight"), [d, di], device)?,
        out_proj_bias: f.optional(c.use_bias, &mx("out_proj.bias"), [d], device)?,
        d_inner: di,
        d_state: n,
        dt_rank: r,
        d_conv: k,
        precision: Precision::F32,
    })
}

fn mamba2_mixer<B: Backend>(
    c: &Mamba2Config,
    f: &Weights,
    mx: &dyn Fn(&str) -> String,
    device: &B::Device,
) -> Result<Mamba2Mixer<B>> {
    let (d, di, h, k) = (c.hidden_size, c.d_inner(), c.heads(), c.conv_kernel);
    let (conv, inp) = (c.conv_dim(), c.in_proj_dim());
    Ok(Mamba2Mixer {
        in_proj: f.param(&mx("in_proj.weight"), [inp, d], device)?,
        in_proj_bias: f.optional(c.use_bias, &mx("in_proj.bias"), [inp], device)?,
        conv1d_weight: f.param(&mx("conv1d.weight"), [conv, 1, k], device)?,
        conv1d_bias: f.optional(c.use_conv_bias, &mx("conv1d.bias"), [conv], device)?,
        dt_bias: f.param(&mx("dt_bias"), [h], device)?,
        a_log: f.param(&mx("A_log"), [h], device)?,
        d: f.param(&mx("D"), [h], device)?,
        norm: GatedRmsNorm {
            weight: f.param(&mx("norm.weight"), [di], device)?,
            eps: c.layer_norm_epsilon,
            groups: c.n_groups,
        },
        out_proj: f.param(&mx("out_proj.weight"), [d, di], device)?,
        out_proj_bias: f.optional(c.use_bias, &mx("out_proj.bias"), [d], device)?,
        shape: c.mixer_shape(),
        precision: Precision::F32,
    })
}

/// Load `DIR/config.json` + the weights (`model.safetensors` in f32, f16 or bf16, or mamba_ssm's
/// `pytorch_model.bin`), either architecture.
pub fn load_pretrained<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(HfConfig, MambaLm<B>)> {
    let cfg = HfConfig::load(&dir.join(CONFIG_FILE))?;
    let f = Weights::open(&Weights::find(dir)?)?;
    let model = load_weights(&cfg.config, &f, device)?;
    Ok((cfg, model))
}

/// The tokenizer of a model: `explicit` when given, else `tokenizer.json` next to the model.
pub fn load_tokenizer(explicit: Option<&Path>, model_dir: &Path) -> Result<tokenizers::Tokenizer> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => model_dir.join("tokenizer.json"),
    };
    if !path.is_file() {
        anyhow::bail!(
            "tokenizer {} not found (give --tokenizer or [finetune] tokenizer)",
            path.display()
        );
    }
    tokenizers::Tokenizer::from_file(&path)
        .map_err(|e| anyhow::anyhow!("loading tokenizer {}: {e}", path.display()))
}

/// Write `DIR/config.json` + `DIR/model.safetensors` (f32) like `save_pretrained`,
/// each atomically. Creates `dir` if needed.
pub fn save_pretrained<B: Backend>(dir: &Path, cfg: &HfConfig, model: &MambaLm<B>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    st::save(&dir.join(WEIGHTS_FILE), &model.hf_tensors()?)?;
    cfg.save(&dir.join(CONFIG_FILE))
}
