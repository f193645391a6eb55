//! Selective scan (the S6 recurrence of Mamba-1) behind a backend trait.
//!
//! The recurrence per batch `b`, channel `d`, state `n`:
//!
//! ```text
//! h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t        (h_{-1} = 0)
//! y_t = C_t · h_t + D ⊙ u_t
//! ```
//!
//! [`ScanBackend`] is the swap point: its default methods are plain Burn tensor ops
//! ([`tensor_ops`]: a chunked parallel scan forward, the same scan run on the reversed
//! sequence backward), so any backend works. `NdArray<f32>` overrides them with fused CPU
//! loops ([`cpu`]), CUDA with CubeCL kernels, and `Autodiff<B>` ([`autodiff`]) registers one
//! custom backward node that calls `B::selective_scan_backward`, which recomputes the states
//! instead of keeping `[B, D, L, N]` activations on the tape.

use burn::tensor::{Tensor, backend::Backend};

pub mod autodiff;
pub mod cpu;
pub mod tensor_ops;

pub use tensor_ops::{
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

/// A backend that can run the selective scan. Default methods = the tensor-op chunked
/// scan (works on any backend); NdArray overrides with a fused CPU loop, CubeBackend
/// (CUDA/wgpu) with CubeCL kernels, `Autodiff<B>` with a custom backward that recomputes
/// states instead of keeping `[B, D, L, N]` activations.
pub trait ScanBackend: Backend {
    /// y `[B, D, L]` and the final state h_{L-1} `[B, D, N]`.
    ///
    /// Under autodiff only `y` is differentiable; the final state (used to seed recurrent
    /// generation after a parallel prefill) carries no gradient.
    fn selective_scan_forward(x: ScanInputs<Self>) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        tensor_ops::forward(x, DEFAULT_CHUNK)
    }

    /// Gradients of `sum(y ⊙ dy)` w.r.t. every input.
    fn selective_scan_backward(x: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self> {
        tensor_ops::backward(x, dy, DEFAULT_CHUNK)
    }
}

/// Every CubeCL backend (CUDA with `--features cuda`, wgpu with `--features wgpu`): the fused
/// CubeCL forward and backward kernels ([`crate::scan_cubecl`]), checked against the tensor-op
/// scan by `tests/scan_kernel.rs`.
#[cfg(feature = "cubecl-kernels")]
impl<R, F, I, BT> ScanBackend for burn_cubecl::CubeBackend<R, F, I, BT>
where
    R: burn_cubecl::CubeRuntime,
    F: burn_cubecl::FloatElement,
    I: burn_cubecl::IntElement,
    BT: burn_cubecl::BoolElement,
{
    fn selective_scan_forward(x: ScanInputs<Self>) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        if !crate::scan_cubecl::fused_scan() {
            return tensor_ops::forward(x, DEFAULT_CHUNK);
        }
        crate::scan_cubecl::forward(x.u, x.delta, x.a, x.b, x.c, x.d)
    }

    fn selective_scan_backward(x: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self> {
        if !crate::scan_cubecl::fused_scan() {
            return tensor_ops::backward(x, dy, DEFAULT_CHUNK);
        }
        let (u, delta, a, b, c, d) =
            crate::scan_cubecl::backward(x.u, x.delta, x.a, x.b, x.c, x.d, dy);
        ScanGrads {
            u,
            delta,
            a,
            b,
            c,
            d,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
