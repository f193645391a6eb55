//! The fused CubeCL selective-scan kernels (sequence-parallel and per-channel, forward and
//! backward) against an f64 reference loop, and the embedding lookup's planned backward against
//! Burn's, on the wgpu backend (on a CPU-only machine: Mesa's
//! lavapipe Vulkan driver; `.ci/run` installs it). Run with
//! `cargo test -p trainer --test scan_kernel`.
#![cfg(feature = "wgpu")]

mod common;

use burn::backend::wgpu::{Wgpu, WgpuDevice};
use burn::backend::{Autodiff, NdArray};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use common::rel_err;
use trainer::model::scan::cubecl::{self as scan_cubecl, ScanKernel, SeqConfig};
use trainer::model::scan::{ScanInputs, selective_scan_sequential};

type Gpu = Wgpu<f32, i32, u32>;
type CpuAd = Autodiff<NdArray<f32>>;

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

    /// y, the last state and the gradients of sum(y ⊙ dy), named as [`NAMES`], by the
    /// recurrence and its adjoint in f64 (rounded to f32 at the end).
    fn reference(&self) -> Vec<Vec<f32>> {
        let [bs, dm, l, n] = self.shape;
        let f = |v: &[f32], i: usize| v[i] as f64;
        let mut out: Vec<Vec<f64>> = [
            bs * dm * l,
            bs * dm * n,
            bs * dm * l,
            bs * dm * l,
            dm * n,
            bs * n * l,
            bs * n * l,
            dm,
        ]
        .iter()
        .map(|&len| vec![0.0; len])
        .collect();
        let mut hs = vec![0.0f64; (l + 1) * n]; // hs[t + 1] = h_t, hs[0] = 0
        for b in 0..bs {
            for d in 0..dm {
                let row = (b * dm + d) * l;
                let bc = |k: usize, t: usize| (b * n + k) * l + t;
                for t in 0..l {
                    let (dt, ut) = (f(&self.delta, row + t), f(&self.u, row + t));
                    let mut y = f(&self.d, d) * ut;
                    for k in 0..n {
                        let h = (dt * f(&self.a, d * n + k)).exp() * hs[t * n + k]
                            + dt * ut * f(&self.b, bc(k, t));
                        hs[(t + 1) * n + k] = h;
                        y += f(&self.c, bc(k, t)) * h;
                    }
                    out[0][row + t] = y;
                }
                for k in 0..n {
                    out[1][(b * dm + d) * n + k] = hs[l * n + k];
                }
                let mut g_next = vec![0.0f64; n]; // exp(Δ_{t+1} A) g_{t+1}
                for t in (0..l).rev() {
                    let (dt, ut, dyt) = (
                        f(&self.delta, row + t),
                        f(&self.u, row + t),
                        f(&self.dy, row + t),
                    );
                    let (mut du, mut ddt) = (f(&self.d, d) * dyt, 0.0);
                    out[7][d] += dyt * ut;
                    for k in 0..n {
                        let an = f(&self.a, d * n + k);
                        let (bn, cn) = (f(&self.b, bc(k, t)), f(&self.c, bc(k, t)));
                        let dec = (dt * an).exp();
                        let hp = hs[t * n + k];
                        let g = cn * dyt + g_next[k];
                        du += g * dt * bn;
                        ddt += g * (an * dec * hp + ut * bn);
                        out[4][d * n + k] += g * dt * dec * hp;
                        out[5][bc(k, t)] += g * dt * ut;
                        out[6][bc(k, t)] += dyt * hs[(t + 1) * n + k];
                        g_next[k] = dec * g;
                    }
                    out[2][row + t] = du;
                    out[3][row + t] = ddt;
                }
            }
        }
        out.into_iter()
            .map(|v| v.into_iter().map(|x| x as f32).collect())
            .collect()
    }
}

const NAMES: [&str; 8] = ["y", "last state", "du", "ddelta", "dA", "dB", "dC", "dD"];

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// The fused kernels on the wgpu backend, outputs named as [`NAMES`].
fn fused(kernel: ScanKernel, p: &Problem) -> Vec<Vec<f32>> {
    let dev = WgpuDevice::DefaultDevice;
    let (u, delta, a, b, c, d, dy) = p.tensors::<Gpu>(&dev);
    let x = ScanInputs {
        u,
        delta,
        a,
        b,
        c,
        d,
    };
    let (y, last) = scan_cubecl::forward_with(kernel, x.clone());
    let g = scan_cubecl::backward_with(kernel, x, dy);
    vec![
        host(y),
        host(last),
        host(g.u),
        host(g.delta),
        host(g.a),
        host(g.b),
        host(g.c),
        host(g.d),
    ]
}

/// Shapes [B, D, L, N]: L = 1 and 7 (shorter than any chunk), 2047 / 2048 / 4097 (many chunks,
/// with and without a tail), N = 16 (Mamba) and 4, D not a multiple of any tile's channels, B = 1
/// and 3. Long sequences get few channels to keep lavapipe's time small.
const SHAPES: [[usize; 4]; 7] = [
    [1, 3, 1, 16],
    [3, 5, 7, 4],
    [1, 3, 2047, 16],
    [3, 2, 2048, 4],
    [1, 2, 4097, 16],
    [3, 37, 300, 16],
    [2, 20, 129, 16],
];

/// Rel. errors of every output of `kernel` against the f64 reference; a failure message for each
/// above 1e-4 or all zeros where the reference is not (a pipeline that never ran leaves zeros).
fn compare(kernel: ScanKernel, p: &Problem, failures: &mut Vec<String>) -> [f64; 8] {
    let want = p.reference();
    let got = fused(kernel, p);
    let shape = p.shape;
    let mut errs = [0.0f64; 8];
    for (k, name) in NAMES.iter().enumerate() {
        let e = rel_err(&got[k], &want[k]);
        let zeros = got[k].iter().all(|&x| x == 0.0) && want[k].iter().any(|&x| x != 0.0);
        println!("{kernel:?} {shape:?} {name}: rel err {e:.3e}");
        if e.is_nan() || e >= 1e-4 || zeros {
            failures.push(format!(
                "{kernel:?} {shape:?} {name}: rel err {e:.3e}{}",
                if zeros { " (all zeros)" } else { "" }
            ));
        }
        errs[k] = e;
    }
    errs
}

/// Every output of `kernel` within 1e-4 (relative L2) of the f64 reference on every shape.
fn check(kernel: ScanKernel) {
    let mut worst = [0.0f64; 8];
    let mut failures = Vec::new();
    for (i, shape) in SHAPES.iter().enumerate() {
        let errs = compare(
            kernel,
            &Problem::new(*shape, 1000 + i as u64),
            &mut failures,
        );
        for k in 0..8 {
            worst[k] = worst[k].max(errs[k]);
        }
    }
    for (k, name) in NAMES.iter().enumerate() {
        println!("{kernel:?} max rel err {name}: {:.3e}", worst[k]);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The default path: per channel for L ≤ 32, sequence-parallel with the device-fitted defaults.
#[test]
fn auto_kernels_match_reference() {
    check(ScanKernel::Auto);
}

/// The automatic choice at the largest state size, N = 64 (the backward tile shrinks to fit the
/// device's shared memory), and with an empty sequence (zeros: h_{-1} = 0, nothing to sum).
#[test]
fn auto_kernels_largest_state_and_empty_sequence() {
    let mut failures = Vec::new();
    for (i, shape) in [[2, 5, 100, 64], [2, 3, 0, 4]].into_iter().enumerate() {
        compare(
            ScanKernel::Auto,
            &Problem::new(shape, 300 + i as u64),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The sequence-parallel kernels with the default tiles on every length (also L = 1, 7).
#[test]
fn seq_kernels_default_tiles_match_reference() {
    check(ScanKernel::Seq(SeqConfig::FORWARD));
    check(ScanKernel::Seq(SeqConfig::BACKWARD));
}

/// The sequence-parallel kernels with small tiles: many chunks, ragged reduction rounds.
#[test]
fn seq_kernels_small_tiles_match_reference() {
    for tile in SeqConfig::SMALL_TILES {
        check(ScanKernel::Seq(tile));
    }
}

/// The per-channel kernels (the short-sequence path).
#[test]
fn per_channel_kernels_match_reference() {
    check(ScanKernel::PerChannel);
}

/// Same inputs twice give bit-identical outputs (no atomics, fixed reduction order).
#[test]
fn backward_is_deterministic() {
    let p = Problem::new([2, 70, 650, 16], 7);
    for kernel in [
        ScanKernel::Auto,
        ScanKernel::Seq(SeqConfig::SMALL_TILES[0]),
        ScanKernel::PerChannel,
    ] {
        let a = fused(kernel, &p);
        let b = fused(kernel, &p);
        for (k, name) in NAMES.iter().enumerate() {
            assert!(
                a[k].iter()
                    .zip(&b[k])
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{kernel:?}: {name} differs between two identical runs"
            );
        }
    }
}

/// The f64 reference agrees with the library's sequential tensor-op scan and Burn's autodiff
/// (so the kernels are checked against the definition, not against a shared mistake).
#[test]
fn reference_matches_sequential_scan_autodiff() {
    for (i, shape) in [[2, 5, 9, 4], [1, 3, 40, 16]].into_iter().enumerate() {
        let p = Problem::new(shape, 50 + i as u64);
        let want = p.reference();
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
        let y = selective_scan_sequential(
            u.clone(),
            delta.clone(),
            a.clone(),
            b.clone(),
            c.clone(),
            d.clone(),
        );
        let grads = (y.clone() * dy).sum().backward();
        let got = [
            (0, host(y)),
            (2, host(u.grad(&grads).unwrap())),
            (3, host(delta.grad(&grads).unwrap())),
            (4, host(a.grad(&grads).unwrap())),
            (5, host(b.grad(&grads).unwrap())),
            (6, host(c.grad(&grads).unwrap())),
            (7, host(d.grad(&grads).unwrap())),
        ];
        for (k, v) in got {
            let e = rel_err(&v, &want[k]);
            assert!(e < 1e-5, "{shape:?} {}: rel err {e:.3e}", NAMES[k]);
        }
    }
}

/// On wgpu the embedding lookup's planned backward (ids sorted on the host, summed in two
/// stages; `trainer::model::lookup`) gives the embedding the gradient Burn's `select` backward
/// gives, within f32 rounding, every other parameter the same gradient bit for bit, and the same
/// bits run to run. The ids repeat across chunk boundaries (id 0 fills a third of them, as
/// padding would) and leave most of the vocabulary unused; the head is tied, so the gradient is
/// the lookup's plus the head's.
#[test]
fn planned_lookup_backward_matches_burns() {
    use burn::tensor::Int;
    use trainer::model::{LookupPlan, MambaConfig, MambaLm};
    type GpuAd = Autodiff<Gpu>;
    let dev = WgpuDevice::DefaultDevice;
    let model: MambaLm<GpuAd> = MambaConfig::new(300, 16, 2)
        .with_state_size(4)
        .init_seeded(&dev, 3);
    let (rows, len) = (4, 64);
    let mut rng = Rng(11);
    let ids: Vec<u32> = (0..rows * len)
        .map(|i| {
            if i % 3 == 0 {
                0
            } else {
                (rng.next_f64() * 120.0) as u32
            }
        })
        .collect();
    let grads = |plan: Option<&LookupPlan>| -> Vec<(String, Vec<u8>)> {
        let t = Tensor::<GpuAd, 2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect(), [rows, len]),
            &dev,
        );
        let logits = model.forward_planned(t.clone(), plan);
        let g = trainer::causal_lm_loss(logits, t).backward();
        trainer::hf_grads(&model, &g)
            .unwrap()
            .into_iter()
            .map(|o| (o.name, o.bytes))
            .collect()
    };
    let plan = LookupPlan::new(&ids).expect("256 ids split into 16 chunks");
    let (plain, planned) = (grads(None), grads(Some(&plan)));
    assert_eq!(
        grads(Some(&plan)),
        planned,
        "planned backward differs run to run"
    );
    let floats = |b: &[u8]| -> Vec<f32> {
        b.chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    for ((name, a), (_, b)) in plain.iter().zip(&planned) {
        if name == "grad.backbone.embeddings.weight" {
            let (a, b) = (floats(a), floats(b));
            let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(scale > 0.0);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * scale,
                    "{name}[{i}]: {y} vs Burn's {x}"
                );
            }
        } else {
            assert_eq!(a, b, "{name}: only the embedding's gradient may change");
        }
    }
}
