//! Golden parity on the wgpu backend, through the binary users get: `trainer score --device wgpu`
//! reproduces transformers' logits, loss, hidden states, every parameter gradient and the greedy
//! continuation of the `tiny-a` and `tiny-b` fixtures within 1e-4 relative. On a machine without
//! a GPU this runs on Mesa's lavapipe (`.ci/run` installs it); without any wgpu adapter it prints
//! SKIP, except under `CI=true`, where that is a failure.
#![cfg(feature = "wgpu")]

mod common;

use std::path::Path;

use common::{fixture, rel_err, score_cli};
use trainer::model::hf::safetensors::StFile;

fn score_on_wgpu(dir: &Path) -> Vec<(String, f64)> {
    let golden = StFile::open(&dir.join("golden.safetensors")).unwrap();
    let (_, prompt) = golden.i64("generate.prompt").unwrap();
    let (_, expect) = golden.i64("generate.output").unwrap();
    let new_tokens = (expect.len() - prompt.len()).to_string();
    let (g, r, err) = score_cli(
        dir,
        "wgpu",
        &["--grads", "--hidden", "--greedy", &new_tokens],
    );
    assert!(err.contains("[wgpu backend]"), "not on wgpu:\n{err}");

    let (_, got) = r.i64("generate.output").unwrap();
    assert_eq!(got, expect, "greedy continuation");
    let mut errors = Vec::new();
    for name in g.names() {
        if name == "input_ids" || name.starts_with("generate.") {
            continue;
        }
        let (gs, want) = g.f32(&name).unwrap();
        let (rs, have) = r
            .f32(&name)
            .unwrap_or_else(|e| panic!("{name} missing from the output: {e}"));
        assert_eq!(rs, gs, "{name} shape");
        errors.push((name, rel_err(&have, &want)));
    }
    let grads = errors
        .iter()
        .filter(|(n, _)| n.starts_with("grad."))
        .count();
    let hidden = errors
        .iter()
        .filter(|(n, _)| n.starts_with("hidden_states."))
        .count();
    assert!(
        grads > 10 && hidden >= 2,
        "{grads} gradients, {hidden} hidden states"
    );
    errors
}

fn check(name: &str) {
    if !testkit::wgpu_available(Path::new(env!("CARGO_BIN_EXE_trainer"))) {
        return;
    }
    let Some(dir) = fixture(name) else { return };
    let errors = score_on_wgpu(&dir);
    let worst = errors
        .iter()
        .cloned()
        .fold((String::new(), 0.0), |a, b| if b.1 > a.1 { b } else { a });
    println!(
        "{name} on wgpu: {} tensors, max rel err {:.2e} ({})",
        errors.len(),
        worst.1,
        worst.0
    );
    for (tensor, e) in &errors {
        assert!(*e < 1e-4, "{name}: {tensor} rel err {e:.3e}");
    }
}

#[test]
fn golden_tiny_a_on_wgpu() {
    check("tiny-a");
}

#[test]
fn golden_tiny_b_on_wgpu() {
    check("tiny-b");
}
