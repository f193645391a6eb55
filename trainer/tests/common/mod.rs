//! Shared helpers for the golden-fixture tests.
#![allow(dead_code)]

pub mod kill;

use std::path::PathBuf;

/// `$BIOMAMBA_GOLDEN/mamba/<name>`, or `<workspace>/../shared/golden/mamba/<name>`;
/// `None` (the test prints SKIP) when absent.
pub fn fixture(name: &str) -> Option<PathBuf> {
    let dir = testkit::fixtures::golden_dir().join("mamba").join(name);
    if dir.join("golden.safetensors").exists() && dir.join("model.safetensors").exists() {
        Some(dir)
    } else {
        println!("SKIP: golden fixture {} not found", dir.display());
        None
    }
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
