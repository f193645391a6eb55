//! Shared helpers for the golden-fixture tests.
#![allow(dead_code)]

pub mod kill;

use std::path::{Path, PathBuf};
use std::process::Command;

use trainer::model::hf::safetensors::{self as st, OutTensor, StFile};

/// A golden model directory: `$BIOMAMBA_GOLDEN/{mamba,mamba2}/<name>` (default
/// `<workspace>/../shared/golden/...`); `None` (the test prints SKIP) when absent.
pub fn fixture(name: &str) -> Option<PathBuf> {
    let golden = testkit::fixtures::golden_dir();
    let arch = if name.starts_with("tiny-m2") {
        "mamba2"
    } else {
        "mamba"
    };
    let dir = golden.join(arch).join(name);
    if dir.join("config.json").exists() && golden_file(&dir).exists() {
        Some(dir)
    } else {
        println!("SKIP: golden fixture {} not found", dir.display());
        None
    }
}

/// The golden numbers of a fixture: its own `golden.safetensors`, or, for a copy of another
/// fixture's weights in another layout (`tiny-m2-a-ssm`), that fixture's.
pub fn golden_file(dir: &Path) -> PathBuf {
    let own = dir.join("golden.safetensors");
    if own.exists() {
        return own;
    }
    let name = dir.file_name().unwrap().to_string_lossy();
    dir.with_file_name(name.trim_end_matches("-ssm"))
        .join("golden.safetensors")
}

/// ‖a − b‖ / ‖b‖ (in f64).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        num += (*x as f64 - *y as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    (num / den.max(1e-300)).sqrt()
}

/// `trainer score --device DEVICE ARGS… --model DIR` on the golden input of fixture `dir`
/// (`input_ids`, and `generate.prompt` for `--greedy`); returns the golden file, the output file
/// and the command's stderr (it must succeed).
pub fn score_cli(dir: &Path, device: &str, args: &[&str]) -> (StFile, StFile, String) {
    let tmp = tempfile::tempdir().unwrap();
    let g = StFile::open(&golden_file(dir)).unwrap();
    let (shape, ids) = g.i64("input_ids").unwrap();
    let (pshape, prompt) = g.i64("generate.prompt").unwrap();
    let input = tmp.path().join("in.safetensors");
    st::save(
        &input,
        &[
            OutTensor::i64("input_ids", shape, &ids),
            OutTensor::i64("generate.prompt", pshape, &prompt),
        ],
    )
    .unwrap();
    let out = tmp.path().join("out.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["score", "--device", device])
        .args(args)
        .arg("--model")
        .arg(dir)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    // The memory map keeps the output readable after the temporary directory is removed.
    let r = StFile::open(&out).unwrap();
    (g, r, err)
}
