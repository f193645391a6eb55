//! Tests of the scan backends against each other, Burn's own autodiff and finite differences.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};

use super::{ScanBackend, ScanGrads, ScanInputs, reference};

type Be = NdArray<f32>;
type Ad = Autodiff<Be>;

/// Deterministic random inputs (host-side xorshift, so every backend gets the same data).
pub(crate) fn inputs<B: Backend>(
    bs: usize,
    d: usize,
    n: usize,
    len: usize,
    seed: u64,
    dev: &B::Device,
) -> ScanInputs<B> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut vals = |k: usize, lo: f64, hi: f64| -> Vec<f32> {
        (0..k).map(|_| (lo + (hi - lo) * next()) as f32).collect()
    };
    let t3 = |v: Vec<f32>, s: [usize; 3]| Tensor::<B, 3>::from_data(TensorData::new(v, s), dev);
    ScanInputs {
        u: t3(vals(bs * d * len, -1.5, 1.5), [bs, d, len]),
        delta: t3(vals(bs * d * len, 0.01, 1.2), [bs, d, len]),
        a: Tensor::from_data(TensorData::new(vals(d * n, -2.5, -0.2), [d, n]), dev),
        b: t3(vals(bs * n * len, -1.5, 1.5), [bs, n, len]),
        c: t3(vals(bs * n * len, -1.5, 1.5), [bs, n, len]),
        d: Tensor::from_data(TensorData::new(vals(d, -1.0, 1.0), [d]), dev),
    }
}

pub(crate) fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

pub(crate) fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

pub(crate) fn grads_vec<B: Backend>(g: ScanGrads<B>) -> [Vec<f32>; 6] {
    [
        to_vec(g.u),
        to_vec(g.delta),
        to_vec(g.a),
        to_vec(g.b),
        to_vec(g.c),
        to_vec(g.d),
    ]
}

pub(crate) const NAMES: [&str; 6] = ["u", "delta", "a", "b", "c", "d"];

/// Burn's gradient of `t` (zeros where the graph does not reach it).
fn grad_or_zeros<const D: usize>(
    t: Tensor<Ad, D>,
    g: &<Ad as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> Vec<f32> {
    match t.grad(g) {
        Some(x) => to_vec(x),
        None => vec![0.0; t.shape().num_elements()],
    }
}

/// Gradients of sum(y ⊙ dy) by Burn's autodiff through `forward`.
fn autodiff_grads(
    x: &ScanInputs<Be>,
    dy: &Tensor<Be, 3>,
    forward: impl Fn(ScanInputs<Ad>) -> Tensor<Ad, 3>,
) -> [Vec<f32>; 6] {
    let u = Tensor::<Ad, 3>::from_inner(x.u.clone()).require_grad();
    let delta = Tensor::<Ad, 3>::from_inner(x.delta.clone()).require_grad();
    let a = Tensor::<Ad, 2>::from_inner(x.a.clone()).require_grad();
    let b = Tensor::<Ad, 3>::from_inner(x.b.clone()).require_grad();
    let c = Tensor::<Ad, 3>::from_inner(x.c.clone()).require_grad();
    let d = Tensor::<Ad, 1>::from_inner(x.d.clone()).require_grad();
    let y = forward(ScanInputs {
        u: u.clone(),
        delta: delta.clone(),
        a: a.clone(),
        b: b.clone(),
        c: c.clone(),
        d: d.clone(),
    });
    let g = (y * Tensor::from_inner(dy.clone())).sum().backward();
    [
        grad_or_zeros(u.clone(), &g),
        grad_or_zeros(delta.clone(), &g),
        grad_or_zeros(a.clone(), &g),
        grad_or_zeros(b.clone(), &g),
        grad_or_zeros(c.clone(), &g),
        grad_or_zeros(d.clone(), &g),
    ]
}

#[test]
fn tensor_op_backward_matches_burn_autodiff() {
    let dev = Default::default();
    for &(bs, d, n, len) in &[(2, 3, 4, 1), (1, 5, 3, 7), (2, 4, 5, 37), (1, 3, 16, 18)] {
        let x = inputs::<Be>(bs, d, n, len, len as u64 + 11, &dev);
        let dy = Tensor::<Be, 3>::random([bs, d, len], Distribution::Normal(0.0, 1.0), &dev);
        let ours = grads_vec(reference::backward(x.clone(), dy.clone(), 4));
        let burn = autodiff_grads(&x, &dy, |x| reference::forward(x, 4).0);
        for k in 0..6 {
            let r = rel(&ours[k], &burn[k]);
            assert!(r < 1e-5, "{bs}x{d}x{n}x{len} d{}: rel {r}", NAMES[k]);
        }
    }
}

#[test]
fn autodiff_custom_node_matches_inner_backward() {
    // The custom node must route B::selective_scan_backward's grads to the right parents.
    let dev = Default::default();
    let (bs, d, n, len) = (2, 5, 4, 13);
    let x = inputs::<Be>(bs, d, n, len, 5, &dev);
    let dy = Tensor::<Be, 3>::random([bs, d, len], Distribution::Normal(0.0, 1.0), &dev);
    let inner = grads_vec(Be::selective_scan_backward(x.clone(), dy.clone()));
    let tape = autodiff_grads(&x, &dy, |x| Ad::selective_scan_forward(x).0);
    for k in 0..6 {
        assert_eq!(inner[k], tape[k], "d{}", NAMES[k]);
    }
    // Forward values and final state agree with the inner backend.
    let (y, last) = Ad::selective_scan_forward(ScanInputs {
        u: Tensor::from_inner(x.u.clone()),
        delta: Tensor::from_inner(x.delta.clone()),
        a: Tensor::from_inner(x.a.clone()),
        b: Tensor::from_inner(x.b.clone()),
        c: Tensor::from_inner(x.c.clone()),
        d: Tensor::from_inner(x.d.clone()),
    });
    let (y0, last0) = Be::selective_scan_forward(x);
    assert_eq!(to_vec(y.inner()), to_vec(y0));
    assert_eq!(to_vec(last.inner()), to_vec(last0));
}
