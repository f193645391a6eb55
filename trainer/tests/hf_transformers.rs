//! A model initialized and exported by us loads in transformers' `MambaForCausalLM`
//! and gives the same logits. Needs a Python with torch + transformers:
//! set BIOMAMBA_PEER_PYTHON (otherwise SKIP).

use std::process::Command;

use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use trainer::MambaConfig;
use trainer::model::hf::safetensors::{self as st, OutTensor, StFile};
use trainer::model::hf::{HfConfig, save_pretrained};

const SCRIPT: &str = r#"
import sys, torch
from safetensors.torch import load_file, save_file
from transformers import MambaForCausalLM
d = sys.argv[1]
m = MambaForCausalLM.from_pretrained(d).float().eval()
ids = load_file(d + "/ids.safetensors")["input_ids"]
with torch.no_grad():
    out = m(input_ids=ids).logits
save_file({"logits": out.contiguous()}, d + "/hf_logits.safetensors")
"#;

#[test]
fn exported_model_loads_in_transformers() {
    let Some(py) = std::env::var_os("BIOMAMBA_PEER_PYTHON") else {
        println!("SKIP: BIOMAMBA_PEER_PYTHON not set");
        return;
    };
    let dev = Default::default();
    let cfg = MambaConfig::new(96, 32, 2)
        .with_state_size(8)
        .with_time_step_rank(Some(3));
    let model = cfg.init_seeded::<NdArray<f32>>(&dev, 42);
    let tmp = tempfile::tempdir().unwrap();
    save_pretrained(tmp.path(), &HfConfig::from_config(cfg.clone()), &model).unwrap();
    let ids: Vec<i64> = (0..2 * 19).map(|i| (i * 7 + 3) % 96).collect();
    st::save(
        &tmp.path().join("ids.safetensors"),
        &[OutTensor::i64("input_ids", vec![2, 19], &ids)],
    )
    .unwrap();
    let o = Command::new(py)
        .args(["-c", SCRIPT])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, hf) = StFile::open(&tmp.path().join("hf_logits.safetensors"))
        .unwrap()
        .f32("logits")
        .unwrap();
    let t: Tensor<NdArray<f32>, 2, Int> = Tensor::from_data(TensorData::new(ids, [2, 19]), &dev);
    let ours = model.forward(t).into_data().to_vec::<f32>().unwrap();
    let num: f64 = ours
        .iter()
        .zip(&hf)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = hf.iter().map(|b| (*b as f64).powi(2)).sum();
    let e = (num / den).sqrt();
    println!("ours vs transformers logits rel err {e:.3e}");
    assert!(e < 1e-4, "rel err {e}");
}
