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

use burn::tensor::{Tensor, backend::Backend};

pub mod autodiff;
mod backend;
pub mod cpu;
#[cfg(feature = "cubecl-kernels")]
pub mod cubecl;
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

#[cfg(test)]
pub(crate) mod tests;
