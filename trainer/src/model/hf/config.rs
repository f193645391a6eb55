//! `config.json` of a model directory, for either architecture and either layout:
//! transformers' `MambaConfig` / `Mamba2Config` (`model_type` "mamba" / "mamba2") and the config
//! mamba_ssm's `MambaLMHeadModel.save_pretrained` writes (`d_model`, `n_layer`, `ssm_cfg` with
//! `layer = "Mamba2"` for Mamba-2, mamba_ssm's defaults for absent keys). We always write
//! transformers' form.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Map, Value, json};

use crate::model::{Arch, Mamba2Config, MambaConfig, ModelConfig};

/// A config plus the keys of the original `config.json` we do not model, so that
/// round-tripping keeps them (e.g. `bos_token_id`, `initializer_range`).
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub config: ModelConfig,
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

/// A number, or transformers 5's `{"__float__": "Infinity"}` for the values JSON lacks.
fn float_value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Object(o) => match o.get("__float__")?.as_str()? {
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            "NaN" | "nan" => Some(f64::NAN),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

fn get_f64(m: &Map<String, Value>, k: &str) -> Result<Option<f64>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => float_value(v)
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

/// A `[low, high]` pair of numbers (`time_step_limit`, `dt_limit`, `A_init_range`).
fn get_range(m: &Map<String, Value>, k: &str) -> Result<Option<(f64, f64)>> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let pair = v
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((float_value(&a[0])?, float_value(&a[1])?)));
            pair.map(Some).with_context(|| {
                format!("config key `{k}`: expected [low, high] (numbers), found {v}")
            })
        }
    }
}

/// The JSON of a config file, accepting the bare `Infinity`, `-Infinity` and `NaN` that
/// Python's `json` writes (older transformers write `time_step_limit` as `[0.0, Infinity]`):
/// outside strings they become transformers 5's `{"__float__": ...}` objects.
pub fn parse_json_text(text: &str) -> serde_json::Result<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            let mut out = String::with_capacity(text.len() + 32);
            let (mut in_string, mut escaped) = (false, false);
            let mut rest = text;
            while let Some(c) = rest.chars().next() {
                if in_string {
                    out.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        in_string = false;
                    }
                    rest = &rest[c.len_utf8()..];
                    continue;
                }
                if c == '"' {
                    in_string = true;
                }
                let word = ["-Infinity", "Infinity", "NaN"]
                    .into_iter()
                    .find(|w| rest.starts_with(w));
                if let Some(w) = word {
                    out.push_str(&format!("{{\"__float__\": \"{w}\"}}"));
                    rest = &rest[w.len()..];
                } else {
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
            serde_json::from_str(&out).map_err(|_| first)
        }
    }
}

/// Keys of transformers' `MambaConfig` we model (the rest is kept as `extra`).
const MAMBA_KEYS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
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
    "model_type",
    "architectures",
];

/// Keys of transformers' `Mamba2Config` we model.
const MAMBA2_KEYS: &[&str] = &[
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "state_size",
    "head_dim",
    "num_heads",
    "n_groups",
    "expand",
    "conv_kernel",
    "chunk_size",
    "time_step_limit",
    "time_step_min",
    "time_step_max",
    "time_step_floor",
    "time_step_rank",
    "layer_norm_epsilon",
    "use_bias",
    "use_conv_bias",
    "residual_in_fp32",
    "rms_norm",
    "tie_word_embeddings",
    "rescale_prenorm_residual",
    "eos_token_id",
    "model_type",
    "architectures",
];

impl HfConfig {
    /// Parse a `config.json` value of either architecture, in transformers' or mamba_ssm's form.
    pub fn from_json(v: &Value) -> Result<Self> {
        let m = v.as_object().context("config.json is not a JSON object")?;
        if m.contains_key("ssm_cfg") || (m.contains_key("d_model") && m.contains_key("n_layer")) {
            return Ok(HfConfig {
                config: from_mamba_ssm(m)?,
                extra: Map::new(),
            });
        }
        let (config, known) = match m.get("model_type").and_then(Value::as_str) {
            Some("mamba2") => (ModelConfig::Mamba2(mamba2_from_hf(m)?), MAMBA2_KEYS),
            None | Some("mamba") => (ModelConfig::Mamba(mamba_from_hf(m)?), MAMBA_KEYS),
            Some(other) => bail!(
                "config.json: model_type {other:?} is neither \"mamba\" (Mamba-1) nor \"mamba2\""
            ),
        };
        let extra = m
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(HfConfig { config, extra })
    }

    pub fn from_config(config: impl Into<ModelConfig>) -> Self {
        HfConfig {
            config: config.into(),
            extra: Map::new(),
        }
    }

    pub fn arch(&self) -> Arch {
        self.config.arch()
    }

    /// The `config.json` transformers expects (our keys override kept extras).
    pub fn to_json(&self) -> Value {
        let mut m = self.extra.clone();
        let ours = match &self.config {
            ModelConfig::Mamba(c) => mamba_to_hf(c),
            ModelConfig::Mamba2(c) => mamba2_to_hf(c),
        };
        for (k, v) in ours.as_object().expect("an object") {
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
        let v = parse_json_text(&s).with_context(|| format!("parsing {}", path.display()))?;
        Self::from_json(&v).with_context(|| format!("in {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let s = serde_json::to_string_pretty(&self.to_json())? + "\n";
        schemas::atomic::write_atomic(path, s.as_bytes())
    }
}

fn required(m: &Map<String, Value>, keys: &[&str]) -> Result<usize> {
    for k in keys {
        if let Some(v) = get_usize(m, k)? {
            return Ok(v);
        }
    }
    bail!("config.json lacks `{}`", keys[0])
}

fn mamba_from_hf(m: &Map<String, Value>) -> Result<MambaConfig> {
    let mut c = MambaConfig::new(
        required(m, &["vocab_size"])?,
        required(m, &["hidden_size", "d_model"])?,
        required(m, &["num_hidden_layers", "n_layer"])?,
    );
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
    Ok(c)
}

fn mamba_to_hf(c: &MambaConfig) -> Value {
    json!({
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
    })
}

fn mamba2_from_hf(m: &Map<String, Value>) -> Result<Mamba2Config> {
    let mut c = Mamba2Config::new(
        required(m, &["vocab_size"])?,
        required(m, &["hidden_size"])?,
        required(m, &["num_hidden_layers"])?,
    );
    for (k, dst) in [
        ("state_size", &mut c.state_size),
        ("head_dim", &mut c.head_dim),
        ("n_groups", &mut c.n_groups),
        ("expand", &mut c.expand),
        ("conv_kernel", &mut c.conv_kernel),
        ("chunk_size", &mut c.chunk_size),
        ("eos_token_id", &mut c.eos_token_id),
    ] {
        if let Some(x) = get_usize(m, k)? {
            *dst = x;
        }
    }
    if let Some(h) = get_usize(m, "num_heads")? {
        ensure!(
            h * c.head_dim == c.d_inner(),
            "config.json: num_heads {h} x head_dim {} must equal expand x hidden_size = {}",
            c.head_dim,
            c.d_inner()
        );
    }
    if let Some((lo, hi)) = get_range(m, "time_step_limit")? {
        (c.time_step_limit_min, c.time_step_limit_max) = (lo, hi);
    }
    for (k, dst) in [
        ("time_step_min", &mut c.time_step_min),
        ("time_step_max", &mut c.time_step_max),
        ("time_step_floor", &mut c.time_step_floor),
        ("layer_norm_epsilon", &mut c.layer_norm_epsilon),
    ] {
        if let Some(x) = get_f64(m, k)? {
            *dst = x;
        }
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
    if get_bool(m, "rms_norm")? == Some(false) {
        bail!(
            "config.json: rms_norm = false (LayerNorm blocks) is not supported; Mamba-2 here uses RMSNorm"
        );
    }
    if let Some(act) = m.get("hidden_act").and_then(Value::as_str) {
        ensure!(
            act == "silu" || act == "swish",
            "config.json: hidden_act {act:?} is not supported (Mamba-2 uses silu)"
        );
    }
    c.validate()?;
    Ok(c)
}

/// transformers 5 writes ∞ as `{"__float__": "Infinity"}`; finite values as numbers.
fn float_json(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else if x.is_nan() {
        json!({"__float__": "NaN"})
    } else if x > 0.0 {
        json!({"__float__": "Infinity"})
    } else {
        json!({"__float__": "-Infinity"})
    }
}

fn mamba2_to_hf(c: &Mamba2Config) -> Value {
    json!({
        "architectures": ["Mamba2ForCausalLM"],
        "model_type": "mamba2",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "state_size": c.state_size,
        "num_heads": c.heads(),
        "head_dim": c.head_dim,
        "n_groups": c.n_groups,
        "expand": c.expand,
        "conv_kernel": c.conv_kernel,
        "chunk_size": c.chunk_size,
        "time_step_limit": [float_json(c.time_step_limit_min), float_json(c.time_step_limit_max)],
        "time_step_min": c.time_step_min,
        "time_step_max": c.time_step_max,
        "time_step_floor": c.time_step_floor,
        "time_step_rank": c.hidden_size.div_ceil(16),
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "use_bias": c.use_bias,
        "use_conv_bias": c.use_conv_bias,
        "residual_in_fp32": c.residual_in_fp32,
        "rms_norm": true,
        "tie_word_embeddings": c.tie_word_embeddings,
        // As for Mamba-1: an init-time choice, never applied to loaded weights.
        "rescale_prenorm_residual": false,
        "eos_token_id": c.eos_token_id,
    })
}

/// mamba_ssm's `MambaConfig` (config.json of `MambaLMHeadModel.save_pretrained`), with its
/// defaults for absent keys: `ssm_cfg.layer` "Mamba1" (or "Mamba2"), `pad_vocab_size_multiple`
/// 8, `tie_embeddings`, `rms_norm` and `residual_in_fp32` true, norm eps 1e-5. Layouts we do
/// not model (MLP or attention layers, LayerNorm, D per channel, norm before gate) are errors.
fn from_mamba_ssm(m: &Map<String, Value>) -> Result<ModelConfig> {
    let d_model = required(m, &["d_model", "hidden_size"])?;
    let n_layer = required(m, &["n_layer", "num_hidden_layers"])?;
    let raw_vocab = required(m, &["vocab_size"])?;
    let multiple = get_usize(m, "pad_vocab_size_multiple")?.unwrap_or(8).max(1);
    let vocab = raw_vocab.div_ceil(multiple) * multiple;
    let tie = get_bool(m, "tie_embeddings")?.unwrap_or(true);
    let residual_in_fp32 = get_bool(m, "residual_in_fp32")?.unwrap_or(true);
    ensure!(
        get_bool(m, "rms_norm")?.unwrap_or(true),
        "config.json: rms_norm = false (LayerNorm blocks) is not supported"
    );
    ensure!(
        get_usize(m, "d_intermediate")?.unwrap_or(0) == 0,
        "config.json: d_intermediate > 0 (an MLP after each mixer) is not supported"
    );
    let attn_layers = m
        .get("attn_layer_idx")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    ensure!(
        attn_layers == 0,
        "config.json: attention layers (attn_layer_idx) are not supported"
    );
    let empty = Map::new();
    let ssm = match m.get("ssm_cfg") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(v) => bail!("config.json: ssm_cfg is not an object: {v}"),
    };
    let layer = ssm.get("layer").and_then(Value::as_str).unwrap_or("Mamba1");
    match layer {
        "Mamba1" => {
            let mut c = MambaConfig::new(vocab, d_model, n_layer);
            c.tie_word_embeddings = tie;
            c.residual_in_fp32 = residual_in_fp32;
            for (k, dst) in [
                ("d_state", &mut c.state_size),
                ("d_conv", &mut c.conv_kernel),
                ("expand", &mut c.expand),
            ] {
                if let Some(x) = get_usize(ssm, k)? {
                    *dst = x;
                }
            }
            c.time_step_rank = match ssm.get("dt_rank") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s == "auto" => None,
                _ => get_usize(ssm, "dt_rank")?,
            };
            for (k, dst) in [
                ("dt_min", &mut c.time_step_min),
                ("dt_max", &mut c.time_step_max),
                ("dt_init_floor", &mut c.time_step_floor),
                ("dt_scale", &mut c.time_step_scale),
            ] {
                if let Some(x) = get_f64(ssm, k)? {
                    *dst = x;
                }
            }
            if let Some(s) = ssm.get("dt_init").and_then(Value::as_str) {
                c.time_step_init_scheme = s.to_string();
            }
            for (k, dst) in [
                ("bias", &mut c.use_bias),
                ("conv_bias", &mut c.use_conv_bias),
            ] {
                if let Some(x) = get_bool(ssm, k)? {
                    *dst = x;
                }
            }
            Ok(ModelConfig::Mamba(c))
        }
        "Mamba2" => {
            let mut c = Mamba2Config::new(vocab, d_model, n_layer);
            c.tie_word_embeddings = tie;
            c.residual_in_fp32 = residual_in_fp32;
            for (k, dst) in [
                ("d_state", &mut c.state_size),
                ("d_conv", &mut c.conv_kernel),
                ("expand", &mut c.expand),
                ("headdim", &mut c.head_dim),
                ("ngroups", &mut c.n_groups),
                ("chunk_size", &mut c.chunk_size),
            ] {
                if let Some(x) = get_usize(ssm, k)? {
                    *dst = x;
                }
            }
            for (k, dst) in [
                ("dt_min", &mut c.time_step_min),
                ("dt_max", &mut c.time_step_max),
                ("dt_init_floor", &mut c.time_step_floor),
            ] {
                if let Some(x) = get_f64(ssm, k)? {
                    *dst = x;
                }
            }
            if let Some((lo, hi)) = get_range(ssm, "dt_limit")? {
                (c.time_step_limit_min, c.time_step_limit_max) = (lo, hi);
            }
            if let Some((lo, hi)) = get_range(ssm, "A_init_range")? {
                (c.a_init_min, c.a_init_max) = (lo, hi);
            }
            for (k, dst) in [
                ("bias", &mut c.use_bias),
                ("conv_bias", &mut c.use_conv_bias),
            ] {
                if let Some(x) = get_bool(ssm, k)? {
                    *dst = x;
                }
            }
            if let Some(d_ssm) = get_usize(ssm, "d_ssm")? {
                ensure!(
                    d_ssm == c.d_inner(),
                    "config.json: ssm_cfg.d_ssm {d_ssm} < expand x d_model = {} (a gated MLP beside \
                     the SSM) is not supported",
                    c.d_inner()
                );
            }
            for (k, bad) in [
                ("D_has_hdim", true),
                ("rmsnorm", false),
                ("norm_before_gate", true),
            ] {
                ensure!(
                    get_bool(ssm, k)? != Some(bad),
                    "config.json: ssm_cfg.{k} = {bad} is not supported (transformers' Mamba2 has \
                     D per head, the gated RMSNorm, gate before norm)"
                );
            }
            c.validate()?;
            Ok(ModelConfig::Mamba2(c))
        }
        other => bail!("config.json: ssm_cfg.layer {other:?} is neither \"Mamba1\" nor \"Mamba2\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_step_limit_in_every_spelling() {
        for text in [
            r#"{"model_type": "mamba2", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
                "head_dim": 4, "time_step_limit": [0.0, {"__float__": "Infinity"}]}"#,
            r#"{"model_type": "mamba2", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
                "head_dim": 4, "time_step_limit": [0.0, Infinity]}"#,
            r#"{"model_type": "mamba2", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
                "head_dim": 4, "note": "Infinity, NaN", "time_step_limit": [0, Infinity]}"#,
        ] {
            let v = parse_json_text(text).unwrap();
            let c = HfConfig::from_json(&v).unwrap();
            let ModelConfig::Mamba2(m) = &c.config else {
                panic!("not Mamba-2")
            };
            assert_eq!(
                (m.time_step_limit_min, m.time_step_limit_max),
                (0.0, f64::INFINITY)
            );
            assert_eq!(m.heads(), 4);
            // Strings are left alone.
            if let Some(n) = c.extra.get("note") {
                assert_eq!(n, "Infinity, NaN");
            }
            // Written back the transformers 5 way, and read again the same.
            let out = c.to_json();
            assert_eq!(
                out["time_step_limit"],
                json!([0.0, {"__float__": "Infinity"}])
            );
            assert_eq!(HfConfig::from_json(&out).unwrap().config, c.config);
        }
        let finite = parse_json_text(
            r#"{"model_type": "mamba2", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
                "head_dim": 4, "time_step_limit": [0.001, 0.1]}"#,
        )
        .unwrap();
        let ModelConfig::Mamba2(m) = HfConfig::from_json(&finite).unwrap().config else {
            panic!()
        };
        assert_eq!((m.time_step_limit_min, m.time_step_limit_max), (0.001, 0.1));
        let bad = parse_json_text(
            r#"{"model_type": "mamba2", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
                "time_step_limit": [0.0]}"#,
        )
        .unwrap();
        let err = format!("{:#}", HfConfig::from_json(&bad).unwrap_err());
        assert!(err.contains("time_step_limit"), "{err}");
    }

    #[test]
    fn mamba_ssm_configs_with_its_defaults() {
        // state-spaces/mamba2-130m's config.json.
        let v = json!({"d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277,
            "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [], "attn_cfg": {},
            "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
            "pad_vocab_size_multiple": 16, "tie_embeddings": true});
        let c = HfConfig::from_json(&v).unwrap();
        assert!(
            c.extra.is_empty(),
            "mamba_ssm keys are not carried into the HF config"
        );
        let ModelConfig::Mamba2(m) = &c.config else {
            panic!("not Mamba-2")
        };
        assert_eq!(m, &Mamba2Config::mamba2_130m());
        assert_eq!(
            (m.heads(), m.n_groups, m.state_size, m.chunk_size),
            (24, 1, 128, 256)
        );
        assert_eq!(m.num_params(), 128_989_632);
        // The same with mamba_ssm's Mamba-1 layer (its default when `layer` is absent).
        let v1 = json!({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {},
            "pad_vocab_size_multiple": 8});
        let ModelConfig::Mamba(m1) = HfConfig::from_json(&v1).unwrap().config else {
            panic!("not Mamba-1")
        };
        assert_eq!(m1, MambaConfig::mamba_130m());
        for (cfg, what) in [
            (
                json!({"d_model": 8, "n_layer": 1, "vocab_size": 8, "d_intermediate": 32}),
                "d_intermediate",
            ),
            (
                json!({"d_model": 8, "n_layer": 1, "vocab_size": 8, "attn_layer_idx": [0]}),
                "attn_layer_idx",
            ),
            (
                json!({"d_model": 8, "n_layer": 1, "vocab_size": 8, "ssm_cfg": {"layer": "Mamba3"}}),
                "Mamba3",
            ),
            (
                json!({"d_model": 8, "n_layer": 1, "vocab_size": 8,
                    "ssm_cfg": {"layer": "Mamba2", "headdim": 4, "norm_before_gate": true}}),
                "norm_before_gate",
            ),
            (
                json!({"d_model": 8, "n_layer": 1, "vocab_size": 8,
                    "ssm_cfg": {"layer": "Mamba2", "headdim": 4, "d_ssm": 8}}),
                "d_ssm",
            ),
            (
                json!({"d_model": 8, "n_layer": 1, "vocab_size": 8,
                    "ssm_cfg": {"layer": "Mamba2", "headdim": 5}}),
                "head_dim",
            ),
        ] {
            let err = format!("{:#}", HfConfig::from_json(&cfg).unwrap_err());
            assert!(err.contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn unknown_model_type_is_an_error() {
        let v = json!({"model_type": "llama", "vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1});
        let err = format!("{:#}", HfConfig::from_json(&v).unwrap_err());
        assert!(err.contains("llama"), "{err}");
    }
}
