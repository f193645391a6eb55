//! Hugging Face interop: `config.json` + `model.safetensors` in the layout that
//! transformers' `MambaForCausalLM.save_pretrained` writes (tied head not stored).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use serde_json::{Map, Value, json};

use crate::model::{MambaBlock, MambaConfig, MambaLm, MambaMixer, Precision, RmsNorm};
pub mod safetensors;

use safetensors::{self as st, OutTensor, StFile};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// A config plus the keys of the original `config.json` we do not model, so that
/// round-tripping keeps them (e.g. `bos_token_id`, `initializer_range`).
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub config: MambaConfig,
    pub extra: Map<String, Value>,
}

fn get_usize(m: &Map<String, Value>, k: &str) -> Result<Option<usize>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(|x| Some(x as usize)).with_context(|| {
            format!("config key `{k}`: expected a non-negative integer, found {v}")
        }),
    }
}
fn get_f64(m: &Map<String, Value>, k: &str) -> Result<Option<f64>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .with_context(|| format!("config key `{k}`: expected a number, found {v}")),
    }
}
fn get_bool(m: &Map<String, Value>, k: &str) -> Result<Option<bool>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .with_context(|| format!("config key `{k}`: expected a boolean, found {v}")),
    }
}

const KNOWN: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "d_model",
    "num_hidden_layers",
    "n_layer",
    "state_size",
    "expand",
    "conv_kernel",
    "time_step_rank",
    "intermediate_size",
    "layer_norm_epsilon",
    "use_bias",
    "use_conv_bias",
    "residual_in_fp32",
    "tie_word_embeddings",
    "time_step_min",
    "time_step_max",
    "time_step_floor",
    "time_step_init_scheme",
    "time_step_scale",
    "rescale_prenorm_residual",
    "eos_token_id",
];

impl HfConfig {
    /// Parse an HF `config.json` value (also accepts the original mamba_ssm keys
    /// `d_model` / `n_layer`). `rescale_prenorm_residual` is ignored (see `to_json`).
    pub fn from_json(v: &Value) -> Result<Self> {
        let m = v.as_object().context("config.json is not a JSON object")?;
        let req = |a: &str, b: &str| -> Result<usize> {
            get_usize(m, a)?
                .or(get_usize(m, b)?)
                .with_context(|| format!("config.json lacks `{a}`"))
        };
        let mut c = MambaConfig::new(
            req("vocab_size", "vocab_size")?,
            req("hidden_size", "d_model")?,
            req("num_hidden_layers", "n_layer")?,
        );
        // mamba_ssm configs store d_state under ssm_cfg; HF uses state_size.
        if let Some(x) = get_usize(m, "state_size")? {
            c.state_size = x;
        }
        if let Some(x) = get_usize(m, "expand")? {
            c.expand = x;
        }
        if let Some(x) = get_usize(m, "conv_kernel")? {
            c.conv_kernel = x;
        }
        c.time_step_rank = match m.get("time_step_rank") {
            Some(Value::String(s)) if s == "auto" => None,
            _ => get_usize(m, "time_step_rank")?,
        };
        c.intermediate_size = get_usize(m, "intermediate_size")?;
        if let Some(x) = get_f64(m, "layer_norm_epsilon")? {
            c.layer_norm_epsilon = x;
        }
        for (k, dst) in [
            ("use_bias", &mut c.use_bias),
            ("use_conv_bias", &mut c.use_conv_bias),
            ("residual_in_fp32", &mut c.residual_in_fp32),
            ("tie_word_embeddings", &mut c.tie_word_embeddings),
        ] {
            if let Some(x) = get_bool(m, k)? {
                *dst = x;
            }
        }
        for (k, dst) in [
            ("time_step_min", &mut c.time_step_min),
            ("time_step_max", &mut c.time_step_max),
            ("time_step_floor", &mut c.time_step_floor),
            ("time_step_scale", &mut c.time_step_scale),
        ] {
            if let Some(x) = get_f64(m, k)? {
                *dst = x;
            }
        }
        if let Some(s) = m.get("time_step_init_scheme").and_then(|v| v.as_str()) {
            c.time_step_init_scheme = s.to_string();
        }
        if let Some(x) = get_usize(m, "eos_token_id")? {
            c.eos_token_id = x;
        }
        let extra = m
            .iter()
            .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(HfConfig { config: c, extra })
    }

    pub fn from_config(config: MambaConfig) -> Self {
        HfConfig {
            config,
            extra: Map::new(),
        }
    }

    /// The `config.json` transformers expects (our keys override kept extras).
    pub fn to_json(&self) -> Value {
        let c = &self.config;
        let mut m = self.extra.clone();
        let ours = json!({
            "architectures": ["MambaForCausalLM"],
            "model_type": "mamba",
            "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_hidden_layers,
            "state_size": c.state_size,
            "expand": c.expand,
            "conv_kernel": c.conv_kernel,
            "intermediate_size": c.d_inner(),
            "time_step_rank": c.dt_rank(),
            "layer_norm_epsilon": c.layer_norm_epsilon,
            "use_bias": c.use_bias,
            "use_conv_bias": c.use_conv_bias,
            "residual_in_fp32": c.residual_in_fp32,
            "tie_word_embeddings": c.tie_word_embeddings,
            "time_step_min": c.time_step_min,
            "time_step_max": c.time_step_max,
            "time_step_floor": c.time_step_floor,
            "time_step_init_scheme": c.time_step_init_scheme,
            "time_step_scale": c.time_step_scale,
            // Always false on disk: transformers (5.x) applies this rescale to *loaded*
            // out_proj weights too, which would corrupt an exported model. For us it is
            // only an init-time choice (mamba_ssm style), not part of the weights.
            "rescale_prenorm_residual": false,
            "eos_token_id": c.eos_token_id,
        });
        for (k, v) in ours.as_object().unwrap() {
            m.insert(k.clone(), v.clone());
        }
        for (k, v) in [
            ("hidden_act", json!("silu")),
            ("bos_token_id", json!(0)),
            ("pad_token_id", json!(0)),
            ("use_cache", json!(true)),
            ("dtype", json!("float32")),
        ] {
            m.entry(k).or_insert(v);
        }
        Value::Object(m)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let s =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Value =
            serde_json::from_str(&s).with_context(|| format!("parsing {}", path.display()))?;
        Self::from_json(&v).with_context(|| format!("in {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let s = serde_json::to_string_pretty(&self.to_json())? + "\n";
        schemas::atomic::write_atomic(path, s.as_bytes())
    }
}

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
            let m = &l.mixer;
            v.push((format!("{p}.norm.weight"), ParamRef::R1(&l.norm.weight)));
            v.push((format!("{p}.mixer.A_log"), ParamRef::R2(&m.a_log)));
            v.push((format!("{p}.mixer.D"), ParamRef::R1(&m.d)));
            v.push((
                format!("{p}.mixer.conv1d.weight"),
                ParamRef::R3(&m.conv1d_weight),
            ));
            if let Some(b) = &m.conv1d_bias {
                v.push((format!("{p}.mixer.conv1d.bias"), ParamRef::R1(b)));
            }
            v.push((
                format!("{p}.mixer.in_proj.weight"),
                ParamRef::R2(&m.in_proj),
            ));
            if let Some(b) = &m.in_proj_bias {
                v.push((format!("{p}.mixer.in_proj.bias"), ParamRef::R1(b)));
            }
            v.push((format!("{p}.mixer.x_proj.weight"), ParamRef::R2(&m.x_proj)));
            v.push((
                format!("{p}.mixer.dt_proj.weight"),
                ParamRef::R2(&m.dt_proj),
            ));
            v.push((
                format!("{p}.mixer.dt_proj.bias"),
                ParamRef::R1(&m.dt_proj_bias),
            ));
            v.push((
                format!("{p}.mixer.out_proj.weight"),
                ParamRef::R2(&m.out_proj),
            ));
            if let Some(b) = &m.out_proj_bias {
                v.push((format!("{p}.mixer.out_proj.bias"), ParamRef::R1(b)));
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

fn param<B: Backend, const D: usize>(
    f: &StFile,
    name: &str,
    shape: [usize; D],
    device: &B::Device,
) -> Result<Param<Tensor<B, D>>> {
    let v = f.f32_shaped(name, &shape)?;
    Ok(Param::from_data(TensorData::new(v, shape), device))
}

/// Build a model from a config and a safetensors file with HF names.
pub fn load_weights<B: Backend>(
    config: &MambaConfig,
    f: &StFile,
    device: &B::Device,
) -> Result<MambaLm<B>> {
    let (d, di, n, k, r, v) = (
        config.hidden_size,
        config.d_inner(),
        config.state_size,
        config.conv_kernel,
        config.dt_rank(),
        config.vocab_size,
    );
    // The original state-spaces checkpoints call it `embedding`.
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
    let embeddings = param(f, emb_name, [v, d], device)?;
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let p = format!("backbone.layers.{i}");
        let mx = |s: &str| format!("{p}.mixer.{s}");
        layers.push(MambaBlock {
            norm: RmsNorm {
                weight: param(f, &format!("{p}.norm.weight"), [d], device)?,
                eps: config.layer_norm_epsilon,
            },
            mixer: MambaMixer {
                in_proj: param(f, &mx("in_proj.weight"), [2 * di, d], device)?,
                in_proj_bias: if config.use_bias {
                    Some(param(f, &mx("in_proj.bias"), [2 * di], device)?)
                } else {
                    None
                },
                conv1d_weight: param(f, &mx("conv1d.weight"), [di, 1, k], device)?,
                conv1d_bias: if config.use_conv_bias {
                    Some(param(f, &mx("conv1d.bias"), [di], device)?)
                } else {
                    None
                },
                x_proj: param(f, &mx("x_proj.weight"), [r + 2 * n, di], device)?,
                dt_proj: param(f, &mx("dt_proj.weight"), [di, r], device)?,
                dt_proj_bias: param(f, &mx("dt_proj.bias"), [di], device)?,
                a_log: param(f, &mx("A_log"), [di, n], device)?,
                d: param(f, &mx("D"), [di], device)?,
                out_proj: param(f, &mx("out_proj.weight"), [d, di], device)?,
                out_proj_bias: if config.use_bias {
                    Some(param(f, &mx("out_proj.bias"), [d], device)?)
                } else {
                    None
                },
                d_inner: di,
                d_state: n,
                dt_rank: r,
                d_conv: k,
                precision: Precision::F32,
            },
        });
    }
    let norm_f = RmsNorm {
        weight: param(f, "backbone.norm_f.weight", [d], device)?,
        eps: config.layer_norm_epsilon,
    };
    let lm_head = if config.tie_word_embeddings {
        None
    } else {
        Some(param(f, "lm_head.weight", [v, d], device)?)
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

/// Load `DIR/config.json` + `DIR/model.safetensors` (f32, f16 or bf16 on disk).
pub fn load_pretrained<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(HfConfig, MambaLm<B>)> {
    let cfg = HfConfig::load(&dir.join(CONFIG_FILE))?;
    let f = StFile::open(&dir.join(WEIGHTS_FILE))?;
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
