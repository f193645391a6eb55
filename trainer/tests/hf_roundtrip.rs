//! HF import → export → import keeps every tensor and byte; dtype and error handling.

mod common;

use burn::backend::NdArray;
use common::fixture;
use trainer::model::ModelConfig;
use trainer::model::hf::safetensors::{self as st, OutTensor, StFile};
use trainer::model::hf::{HfConfig, load_pretrained, save_pretrained};

type Be = NdArray<f32>;

#[test]
fn import_export_import_is_identical() {
    for name in ["tiny-b", "tiny-m2-b"] {
        if let Some(dir) = fixture(name) {
            round_trip(&dir);
        }
    }
}

fn round_trip(dir: &std::path::Path) {
    let dev = Default::default();
    let (cfg, m1) = load_pretrained::<Be>(dir, &dev).unwrap();
    let t1 = tempfile::tempdir().unwrap();
    save_pretrained(t1.path(), &cfg, &m1).unwrap();
    let (cfg2, m2) = load_pretrained::<Be>(t1.path(), &dev).unwrap();
    assert_eq!(cfg.config, cfg2.config);
    // Keys we do not model survive.
    if cfg.arch().is_mamba() {
        assert_eq!(
            cfg2.extra.get("use_mambapy"),
            Some(&serde_json::json!(false))
        );
    }
    assert_eq!(
        cfg2.extra.get("initializer_range"),
        Some(&serde_json::json!(0.1))
    );

    // Same tensors as the original HF file, bit for bit (it is f32 on disk).
    let orig = StFile::open(&dir.join("model.safetensors")).unwrap();
    let ours = StFile::open(&t1.path().join("model.safetensors")).unwrap();
    let mut a = orig.names();
    let mut b = ours.names();
    a.sort();
    b.sort();
    assert_eq!(a, b, "tensor names (tied lm_head not stored)");
    for n in &a {
        assert_eq!(orig.f32(n).unwrap(), ours.f32(n).unwrap(), "{n}");
    }
    // Export again: identical bytes.
    let t2 = tempfile::tempdir().unwrap();
    save_pretrained(t2.path(), &cfg2, &m2).unwrap();
    for f in ["model.safetensors", "config.json"] {
        assert_eq!(
            std::fs::read(t1.path().join(f)).unwrap(),
            std::fs::read(t2.path().join(f)).unwrap(),
            "{f}"
        );
    }
    // No temp files left behind.
    assert_eq!(std::fs::read_dir(t1.path()).unwrap().count(), 2);
}

#[test]
fn loads_bf16_and_f16_and_old_embedding_name() {
    let Some(dir) = fixture("tiny-a") else { return };
    let dev = Default::default();
    let orig = StFile::open(&dir.join("model.safetensors")).unwrap();
    for dtype in [safetensors::Dtype::BF16, safetensors::Dtype::F16] {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
        let tensors: Vec<OutTensor> = orig
            .names()
            .into_iter()
            .map(|n| {
                let (shape, v) = orig.f32(&n).unwrap();
                let bytes = match dtype {
                    safetensors::Dtype::BF16 => v
                        .iter()
                        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                        .collect(),
                    _ => v
                        .iter()
                        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                        .collect(),
                };
                // The original state-spaces checkpoints say `embedding`.
                let name = n.replace("backbone.embeddings.", "backbone.embedding.");
                OutTensor {
                    name,
                    shape,
                    dtype,
                    bytes,
                }
            })
            .collect();
        st::save(&tmp.path().join("model.safetensors"), &tensors).unwrap();
        let (_, m) = load_pretrained::<Be>(tmp.path(), &dev).unwrap();
        let got = m.embeddings.val().into_data().to_vec::<f32>().unwrap();
        let (_, want) = orig.f32("backbone.embeddings.weight").unwrap();
        let tol = if dtype == safetensors::Dtype::BF16 {
            1e-2
        } else {
            1e-3
        };
        let e = common::rel_err(&got, &want);
        assert!(e < tol && e > 0.0, "{dtype:?}: rel err {e}");
    }
}

#[test]
fn errors_name_the_tensor_and_shapes() {
    let Some(dir) = fixture("tiny-a") else { return };
    let dev = Default::default();
    let orig = StFile::open(&dir.join("model.safetensors")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
    let mut tensors: Vec<OutTensor> = orig
        .names()
        .into_iter()
        .filter(|n| n != "backbone.layers.1.mixer.D")
        .map(|n| {
            let (shape, v) = orig.f32(&n).unwrap();
            OutTensor::f32(n, shape, &v)
        })
        .collect();
    st::save(&tmp.path().join("model.safetensors"), &tensors).unwrap();
    let err = format!("{:#}", load_pretrained::<Be>(tmp.path(), &dev).unwrap_err());
    assert!(
        err.contains("backbone.layers.1.mixer.D") && err.contains("not found"),
        "{err}"
    );
    assert!(err.contains("model.safetensors"), "{err}");

    tensors.push(OutTensor::f32(
        "backbone.layers.1.mixer.D",
        vec![3],
        &[1.0; 3],
    ));
    st::save(&tmp.path().join("model.safetensors"), &tensors).unwrap();
    let err = format!("{:#}", load_pretrained::<Be>(tmp.path(), &dev).unwrap_err());
    assert!(
        err.contains("expected shape [64]") && err.contains("found [3]"),
        "{err}"
    );
}

#[test]
fn config_time_step_rank_auto_and_round_trip() {
    let v = serde_json::json!({
        "vocab_size": 50280, "hidden_size": 768, "num_hidden_layers": 24,
        "time_step_rank": "auto", "state_size": 16, "custom_key": [1, 2]
    });
    let c = HfConfig::from_json(&v).unwrap();
    let ModelConfig::Mamba(m) = &c.config else {
        panic!("no model_type means Mamba-1")
    };
    assert_eq!(m.dt_rank(), 48);
    assert_eq!(m.d_inner(), 1536);
    let back = c.to_json();
    assert_eq!(back["time_step_rank"], 48);
    assert_eq!(back["custom_key"], serde_json::json!([1, 2]));
    assert_eq!(HfConfig::from_json(&back).unwrap().config, {
        let mut x = m.clone();
        x.time_step_rank = Some(48);
        x.intermediate_size = Some(1536);
        ModelConfig::Mamba(x)
    });
    assert!(HfConfig::from_json(&serde_json::json!({"hidden_size": 4})).is_err());
}

/// mamba_ssm's layout (pytorch_model.bin, `backbone.embedding.`, its config.json) exports to
/// transformers' layout with the same tensors as transformers' own save of those weights.
#[test]
fn mamba_ssm_layout_exports_as_transformers_saves_it() {
    let (Some(ssm), Some(hf)) = (fixture("tiny-m2-a-ssm"), fixture("tiny-m2-a")) else {
        return;
    };
    let dev = Default::default();
    let (cfg, m) = load_pretrained::<Be>(&ssm, &dev).unwrap();
    let (hf_cfg, _) = load_pretrained::<Be>(&hf, &dev).unwrap();
    assert_eq!(
        cfg.config, hf_cfg.config,
        "mamba_ssm config = transformers config"
    );
    let out = tempfile::tempdir().unwrap();
    save_pretrained(out.path(), &cfg, &m).unwrap();
    let ours = StFile::open(&out.path().join("model.safetensors")).unwrap();
    let theirs = StFile::open(&hf.join("model.safetensors")).unwrap();
    let (mut a, mut b) = (ours.names(), theirs.names());
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "tensor names (transformers' layout, tied head not stored)"
    );
    for n in &a {
        assert_eq!(ours.f32(n).unwrap(), theirs.f32(n).unwrap(), "{n}");
    }
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(written["model_type"], "mamba2");
    assert_eq!(written["architectures"][0], "Mamba2ForCausalLM");
    assert!(written.get("ssm_cfg").is_none() && written.get("d_model").is_none());
}
