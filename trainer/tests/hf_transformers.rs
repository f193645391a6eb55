//! A model initialized and exported by us loads in transformers' `MambaForCausalLM` (Mamba-1) or
//! `Mamba2ForCausalLM` (Mamba-2, also one first loaded from mamba_ssm's layout) and gives the same
//! logits. Needs a Python with torch + transformers: set BIOMAMBA_PEER_PYTHON (otherwise SKIP).

use std::process::Command;

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use trainer::model::hf::safetensors::{self as st, OutTensor, StFile};
use trainer::model::hf::{HfConfig, save_pretrained};
use trainer::model::{Mamba2Config, MambaLm, ModelConfig};
use trainer::{MambaConfig, load_pretrained};

const SCRIPT: &str = r#"
import sys, torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
d = sys.argv[1]
m = AutoModelForCausalLM.from_pretrained(d).float().eval()
print(type(m).__name__)
ids = load_file(d + "/ids.safetensors")["input_ids"]
with torch.no_grad():
    out = m(input_ids=ids).logits
save_file({"logits": out.contiguous()}, d + "/hf_logits.safetensors")
"#;

type Be = NdArray<f32>;

/// Export `model` with `cfg`, run transformers on it, compare the logits.
fn check_in_transformers(cfg: HfConfig, model: &MambaLm<Be>, want_class: &str) {
    let tmp = tempfile::tempdir().unwrap();
    save_pretrained(tmp.path(), &cfg, model).unwrap();
    check_dir_in_transformers(tmp.path(), model, want_class);
}

/// Run transformers on the HF directory `dir` (written by us), compare its logits with `model`'s.
fn check_dir_in_transformers(dir: &std::path::Path, model: &MambaLm<Be>, want_class: &str) {
    let Some(py) = std::env::var_os("BIOMAMBA_PEER_PYTHON") else {
        println!("SKIP: BIOMAMBA_PEER_PYTHON not set");
        return;
    };
    let dev = Default::default();
    let cfg = HfConfig::load(&dir.join("config.json")).unwrap();
    let vocab = cfg.config.vocab_size();
    let tmp_path = dir.to_path_buf();
    let tmp = &tmp_path;
    let ids: Vec<i64> = (0..2 * 19).map(|i| (i * 7 + 3) % vocab as i64).collect();
    st::save(
        &tmp.join("ids.safetensors"),
        &[OutTensor::i64("input_ids", vec![2, 19], &ids)],
    )
    .unwrap();
    let o = Command::new(py)
        .args(["-c", SCRIPT])
        .arg(tmp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let class = String::from_utf8_lossy(&o.stdout);
    assert_eq!(class.trim(), want_class);
    let (_, hf) = StFile::open(&tmp.join("hf_logits.safetensors"))
        .unwrap()
        .f32("logits")
        .unwrap();
    let t: Tensor<Be, 2, Int> = Tensor::from_data(TensorData::new(ids, [2, 19]), &dev);
    let ours = model.forward(t).into_data().to_vec::<f32>().unwrap();
    let num: f64 = ours
        .iter()
        .zip(&hf)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = hf.iter().map(|b| (*b as f64).powi(2)).sum();
    let e = (num / den).sqrt();
    println!("{want_class}: ours vs transformers logits rel err {e:.3e}");
    assert!(e < 1e-5, "rel err {e}");
}

#[test]
fn exported_model_loads_in_transformers() {
    let cfg = MambaConfig::new(96, 32, 2)
        .with_state_size(8)
        .with_time_step_rank(Some(3));
    let model = cfg.init_seeded::<Be>(&Default::default(), 42);
    check_in_transformers(HfConfig::from_config(cfg), &model, "MambaForCausalLM");
}

/// A fresh Mamba-2 (2 groups, untied head, a chunk that does not divide the 19 tokens).
#[test]
fn exported_mamba2_loads_in_transformers() {
    let cfg = Mamba2Config::new(96, 32, 2)
        .with_state_size(8)
        .with_head_dim(8)
        .with_n_groups(2)
        .with_chunk_size(8)
        .with_tie_word_embeddings(false);
    let model = cfg.init_seeded::<Be>(&Default::default(), 42);
    check_in_transformers(HfConfig::from_config(cfg), &model, "Mamba2ForCausalLM");
}

/// Loaded from mamba_ssm's layout (`pytorch_model.bin`), exported in transformers'.
#[test]
fn mamba_ssm_checkpoint_exports_to_transformers() {
    let dir = testkit::fixtures::golden_dir().join("mamba2/tiny-m2-a-ssm");
    if !dir.join("pytorch_model.bin").exists() {
        println!("SKIP: {} not found", dir.display());
        return;
    }
    let (cfg, model) = load_pretrained::<Be>(&dir, &Default::default()).unwrap();
    assert!(matches!(cfg.config, ModelConfig::Mamba2(_)));
    check_in_transformers(cfg, &model, "Mamba2ForCausalLM");
}

/// The moving average a BioMamba-2-style run exports (`[pretrain] ema`, `export_ema`) is an
/// ordinary HF model: transformers loads it and gives our logits. (The run itself needs no peer.)
#[test]
fn exported_moving_average_loads_in_transformers() {
    use burn::backend::Autodiff;
    use trainer::config::{Config, ModelSection, PretrainConfig};
    use trainer::model::Arch;
    use trainer::train::data::InMemorySource;
    use trainer::train::pretrain::{PretrainOptions, run_with_data};
    let seq = |k: u32| -> Vec<u32> { (0..16).map(|i| (i * (k + 2) + k) % 40).collect() };
    let train = InMemorySource::new((0..12).map(seq).collect(), 16)
        .unwrap()
        .with_lengths((0..12).map(|k| 6 + k % 10).collect())
        .unwrap();
    let val = InMemorySource::new((20..22).map(seq).collect(), 16).unwrap();
    let file = Config {
        model: ModelSection {
            arch: Arch::Mamba2,
            vocab_size: 40,
            hidden_size: 32,
            num_hidden_layers: 2,
            state_size: 8,
            head_dim: Some(16),
            chunk_size: Some(8),
            ..ModelSection::default()
        },
        pretrain: PretrainConfig {
            seq_len: 16,
            micro_batch: 2,
            grad_accum: 2,
            steps: 4,
            lr: 1e-2,
            eval_every: 0,
            eval_batches: 1,
            checkpoint_every: 4,
            ema: Some(0.5),
            export_ema: true,
            label_smoothing: 0.1,
            ..PretrainConfig::default()
        },
        ..Config::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let opts = PretrainOptions {
        run_dir: tmp.path().join("run"),
        ..PretrainOptions::default()
    };
    let dev = Default::default();
    run_with_data::<Autodiff<Be>>(&opts, &file, &train, &val, &[dev]).unwrap();
    let out = tmp.path().join("export");
    trainer::train::export::export::<Be>(&opts.run_dir, &out, None, &dev).unwrap();
    let (_, ema) = load_pretrained::<Be>(&out, &dev).unwrap();
    let fin = tmp.path().join("final");
    let weights = Some(trainer::train::export::ExportWeights::Final);
    trainer::train::export::export::<Be>(&opts.run_dir, &fin, weights, &dev).unwrap();
    assert_ne!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        std::fs::read(fin.join("model.safetensors")).unwrap(),
        "the default export of an export_ema run is the average"
    );
    check_dir_in_transformers(&out, &ema, "Mamba2ForCausalLM");
}
