//! The fused CubeCL selective-scan kernels (forward and backward) against the tensor-op scan,
//! on the wgpu backend (on a CPU-only machine: Mesa's lavapipe Vulkan driver; `.ci/run`
//! installs it). Run with `cargo test -p trainer --features wgpu --test scan_kernel`.
#![cfg(feature = "wgpu")]

mod common;

use burn::backend::wgpu::{Wgpu, WgpuDevice};
use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use common::rel_err;
use trainer::model::scan::selective_scan_chunked;
use trainer::model::scan::cubecl;

type Gpu = Wgpu<f32, i32, u32>;
type Cpu = NdArray<f32>;
type CpuAd = Autodiff<Cpu>;

/// Deterministic normal samples (SplitMix64 + Box–Muller), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let (a, b) = (self.next_f64().max(1e-12), self.next_f64());
                ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
            })
            .collect()
    }
}

/// Host copies of one random problem: u, delta, a, b, c, d, dy.
struct Problem {
    shape: [usize; 4], // B, D, L, N
    u: Vec<f32>,
    delta: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    d: Vec<f32>,
    dy: Vec<f32>,
}

impl Problem {
    fn new(shape: [usize; 4], seed: u64) -> Self {
        let [bs, dm, l, n] = shape;
        let mut r = Rng(seed);
        let softplus = |x: f32| (1.0 + x.exp()).ln();
        Problem {
            shape,
            u: r.normal(bs * dm * l),
            // Δ as in Mamba: softplus of a projection, here of N(-1, 1) (mostly 0.05..1.5).
            delta: r
                .normal(bs * dm * l)
                .into_iter()
                .map(|x| softplus(x - 1.0))
                .collect(),
            // A = -exp(A_log) with A_log around log(1..N), as in Mamba's init.
            a: r.normal(dm * n)
                .into_iter()
                .enumerate()
                .map(|(i, x)| -((1 + i % n) as f32) * (0.3 * x).exp())
                .collect(),
            b: r.normal(bs * n * l),
            c: r.normal(bs * n * l),
            d: r.normal(dm),
            dy: r.normal(bs * dm * l),
        }
    }

    #[allow(clippy::type_complexity)]
    fn tensors<B: Backend>(
        &self,
        dev: &B::Device,
    ) -> (
        Tensor<B, 3>,
        Tensor<B, 3>,
        Tensor<B, 2>,
        Tensor<B, 3>,
        Tensor<B, 3>,
        Tensor<B, 1>,
        Tensor<B, 3>,
    ) {
        let [bs, dm, l, n] = self.shape;
        let t3 =
            |v: &Vec<f32>, s: [usize; 3]| Tensor::from_data(TensorData::new(v.clone(), s), dev);
        (
            t3(&self.u, [bs, dm, l]),
            t3(&self.delta, [bs, dm, l]),
            Tensor::from_data(TensorData::new(self.a.clone(), [dm, n]), dev),
            t3(&self.b, [bs, n, l]),
            t3(&self.c, [bs, n, l]),
            Tensor::from_data(TensorData::new(self.d.clone(), [dm]), dev),
            t3(&self.dy, [bs, dm, l]),
        )
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn gpu_device() -> WgpuDevice {
    WgpuDevice::DefaultDevice
}

/// Reference: the tensor-op chunked scan on CPU (f32) — y, the last state, and the gradients
/// of sum(y ⊙ dy) by autodiff, named as [`NAMES`].
fn reference(p: &Problem) -> Vec<Vec<f32>> {
    let dev = Default::default();
    let (u, delta, a, b, c, d, dy) = p.tensors::<CpuAd>(&dev);
    let (u, delta, a, b, c, d) = (
        u.require_grad(),
        delta.require_grad(),
        a.require_grad(),
        b.require_grad(),
        c.require_grad(),
        d.require_grad(),
    );
    let (y, last) = selective_scan_chunked(
        u.clone(),
        delta.clone(),
        a.clone(),
        b.clone(),
        c.clone(),
        d.clone(),
        16,
    );
    let grads = (y.clone() * dy).sum().backward();
    vec![
        host(y),
        host(last),
        host(u.grad(&grads).unwrap()),
        host(delta.grad(&grads).unwrap()),
        // With L = 1 the decay never multiplies a state: A gets no gradient (zeros).
        host(
            a.grad(&grads)
                .unwrap_or_else(|| a.clone().inner().zeros_like()),
        ),
        host(b.grad(&grads).unwrap()),
        host(c.grad(&grads).unwrap()),
        host(d.grad(&grads).unwrap()),
    ]
}

const NAMES: [&str; 8] = ["y", "last state", "du", "ddelta", "dA", "dB", "dC", "dD"];

/// The fused kernels on the wgpu backend.
fn fused(p: &Problem) -> Vec<Vec<f32>> {
    let dev = gpu_device();
    let (u, delta, a, b, c, d, dy) = p.tensors::<Gpu>(&dev);
    let (y, last) = cubecl::forward(
        u.clone(),
        delta.clone(),
        a.clone(),
        b.clone(),
        c.clone(),
        d.clone(),
    );
    let (du, ddelta, da, db, dc, dd) = cubecl::backward(u, delta, a, b, c, d, dy);
    vec![
        host(y),
        host(last),
        host(du),
        host(ddelta),
        host(da),
        host(db),
        host(dc),
        host(dd),
    ]
}

/// Shapes [B, D, L, N]: odd L, L = 1, L not a multiple of the backward chunk (32), more than
/// one chunk, D not a multiple of the 32 channels of a cube, N = 16 (Mamba) and others.
const SHAPES: [[usize; 4]; 6] = [
    [1, 3, 1, 16],
    [2, 5, 7, 4],
    [2, 37, 33, 16],
    [1, 64, 96, 16],
    [3, 40, 131, 16],
    [1, 8, 300, 1],
];

fn check(outputs: std::ops::Range<usize>) {
    let mut worst = [0.0f64; 8];
    let mut failures = Vec::new();
    for (i, shape) in SHAPES.iter().enumerate() {
        let p = Problem::new(*shape, 1000 + i as u64);
        let want = reference(&p);
        let got = fused(&p);
        for k in outputs.clone() {
            let name = NAMES[k];
            let e = rel_err(&got[k], &want[k]);
            println!("{shape:?} {name}: rel err {e:.3e}");
            if !(e < 1e-4) {
                failures.push(format!("{shape:?} {name}: rel err {e:.3e} ≥ 1e-4"));
            }
            worst[k] = worst[k].max(e);
        }
    }
    for k in outputs {
        println!("max rel err {}: {:.3e}", NAMES[k], worst[k]);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Forward kernel: y and the final state.
#[test]
fn fused_scan_forward_matches_tensor_op_scan() {
    check(0..2);
}

/// Backward kernel: all six gradients.
#[test]
fn fused_scan_backward_matches_tensor_op_scan() {
    check(2..8);
}

/// Same inputs twice give bit-identical gradients (no atomics, fixed reduction order).
#[test]
fn fused_scan_backward_is_deterministic() {
    let p = Problem::new([2, 70, 65, 16], 7);
    let a = fused(&p);
    let b = fused(&p);
    for (k, name) in NAMES.iter().enumerate() {
        assert!(
            a[k].iter()
                .zip(&b[k])
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} differs between two identical runs"
        );
    }
}
