//! The [`ScanBackend`] trait, and its implementation for every CubeCL backend.

use burn::tensor::Tensor;

use super::reference::{self, DEFAULT_CHUNK};
use super::{ScanGrads, ScanInputs};

/// A backend that can run the selective scan. Default methods = the tensor-op chunked
/// scan (works on any backend); NdArray overrides with a fused CPU loop, CubeBackend
/// (CUDA/wgpu) with CubeCL kernels, `Autodiff<B>` with a custom backward that recomputes
/// states instead of keeping `[B, D, L, N]` activations.
pub trait ScanBackend: crate::model::LookupBackend {
    /// y `[B, D, L]` and the final state h_{L-1} `[B, D, N]`.
    ///
    /// Under autodiff only `y` is differentiable; the final state (used to seed recurrent
    /// generation after a parallel prefill) carries no gradient.
    fn selective_scan_forward(x: ScanInputs<Self>) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        reference::forward(x, DEFAULT_CHUNK)
    }

    /// Gradients of `sum(y ⊙ dy)` w.r.t. every input.
    fn selective_scan_backward(x: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self> {
        reference::backward(x, dy, DEFAULT_CHUNK)
    }
}

/// Every CubeCL backend (CUDA, wgpu; both in the default build): the fused
/// CubeCL forward and backward kernels ([`crate::model::scan::cubecl`]), checked against the tensor-op
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
        if !super::cubecl::fused_scan() {
            return reference::forward(x, DEFAULT_CHUNK);
        }
        super::cubecl::forward(x)
    }

    fn selective_scan_backward(x: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self> {
        if !super::cubecl::fused_scan() {
            return reference::backward(x, dy, DEFAULT_CHUNK);
        }
        super::cubecl::backward(x, dy)
    }
}
