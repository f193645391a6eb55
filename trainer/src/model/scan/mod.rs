//! Selective scan (the S6 recurrence of Mamba-1) behind a backend trait.
//!
//! The recurrence per batch `b`, channel `d`, state `n`:
//!
//! ```text
//! h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t        (h_{-1} = 0)
//! y_t = C_t · h_t + D ⊙ u_t
//! ```
//!
//! [`ScanBackend`] (in `backend.rs`) is the swap point: its default methods are plain Burn tensor ops
//! ([`reference`]: a chunked parallel scan forward, the same scan run on the reversed
//! sequence backward), so any backend works. `NdArray<f32>` overrides them with fused CPU
//! loops ([`cpu`]), CUDA with CubeCL kernels, and `Autodiff<B>` ([`autodiff`]) registers one
//! custom backward node that calls `B::selective_scan_backward`, which recomputes the states
//! instead of keeping `[B, D, L, N]` activations on the tape.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

pub mod autodiff;
mod backend;
pub mod cpu;
#[cfg(feature = "cubecl-kernels")]
pub mod cubecl;
#[cfg(feature = "fusion")]
mod fusion;
pub mod reference;

pub use backend::ScanBackend;
pub use reference::{
    DEFAULT_CHUNK, selective_scan, selective_scan_chunked, selective_scan_sequential,
};

/// Inputs of the selective scan; shapes as in `mamba_ssm.selective_scan_fn`:
/// u `[B, D, L]`, delta `[B, D, L]` (already softplus'ed), a `[D, N]` (negative),
/// b `[B, N, L]`, c `[B, N, L]`, d `[D]`.
#[derive(Clone, Debug)]
pub struct ScanInputs<B: Backend> {
    pub u: Tensor<B, 3>,
    pub delta: Tensor<B, 3>,
    pub a: Tensor<B, 2>,
    pub b: Tensor<B, 3>,
    pub c: Tensor<B, 3>,
    pub d: Tensor<B, 1>,
}

/// Gradients of the scan inputs; same shapes as the fields of [`ScanInputs`].
#[derive(Clone, Debug)]
pub struct ScanGrads<B: Backend> {
    pub u: Tensor<B, 3>,
    pub delta: Tensor<B, 3>,
    pub a: Tensor<B, 2>,
    pub b: Tensor<B, 3>,
    pub c: Tensor<B, 3>,
    pub d: Tensor<B, 1>,
}

fn from_prim<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

impl<B: Backend> ScanInputs<B> {
    /// The primitives of (u, delta, a, b, c, d), for the custom ops of autodiff and fusion.
    pub(crate) fn into_primitives(self) -> [FloatTensor<B>; 6] {
        [
            self.u.into_primitive().tensor(),
            self.delta.into_primitive().tensor(),
            self.a.into_primitive().tensor(),
            self.b.into_primitive().tensor(),
            self.c.into_primitive().tensor(),
            self.d.into_primitive().tensor(),
        ]
    }

    pub(crate) fn from_primitives([u, delta, a, b, c, d]: [FloatTensor<B>; 6]) -> Self {
        ScanInputs {
            u: from_prim(u),
            delta: from_prim(delta),
            a: from_prim(a),
            b: from_prim(b),
            c: from_prim(c),
            d: from_prim(d),
        }
    }
}

impl<B: Backend> ScanGrads<B> {
    /// The primitives of (u, delta, a, b, c, d).
    pub(crate) fn into_primitives(self) -> [FloatTensor<B>; 6] {
        ScanInputs {
            u: self.u,
            delta: self.delta,
            a: self.a,
            b: self.b,
            c: self.c,
            d: self.d,
        }
        .into_primitives()
    }

    #[cfg(feature = "fusion")]
    pub(crate) fn from_primitives(t: [FloatTensor<B>; 6]) -> Self {
        let x = ScanInputs::from_primitives(t);
        ScanGrads {
            u: x.u,
            delta: x.delta,
            a: x.a,
            b: x.b,
            c: x.c,
            d: x.d,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
