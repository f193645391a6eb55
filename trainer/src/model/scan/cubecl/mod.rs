//! Fused selective scan in CubeCL: forward and backward kernels for every CubeCL backend of Burn
//! (`CubeBackend<R, F, I, BT>`: CUDA, wgpu on Vulkan/Metal/DX12, including Mesa's software
//! Vulkan driver lavapipe on a CPU-only machine).
//!
//! ```text
//! forward   h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t        (h_{-1} = 0)
//!           y_t = C_t · h_t + D u_t
//! backward  g_t = C_t dy_t + exp(Δ_{t+1} A) ⊙ g_{t+1}       (g = ∂loss/∂h_t)
//!           du_t = D dy_t + Δ_t Σ_n g_t B_t        dΔ_t = Σ_n g_t (A exp(Δ_t A) h_{t-1} + u_t B_t)
//!           dA  += g_t Δ_t exp(Δ_t A) h_{t-1}      dD  += dy_t u_t
//!           dB_t += g_t Δ_t u_t   dC_t += dy_t h_t  (summed over channels)
//! ```
//!
//! State, discretization and every accumulation are f32 whatever the input element type (the
//! backend's `F`: f32, bf16, f16); outputs are cast back to it.
//!
//! # Two kernel families, chosen by shape
//!
//! **Sequence-parallel** (`seq.rs`, the default): the layout of mamba_ssm's
//! `selective_scan_fwd/bwd` kernels. A cube holds `channels` channels of one batch element times
//! `units` units along the sequence; each unit scans `items` consecutive steps, so one round of
//! the cube covers a chunk of `units · items` steps, and the cube walks the chunks carrying the
//! state across them. Within a chunk the steps of a unit are joined with those before it through
//! (decay, state) pairs: unit `i` reduces its steps to `(ΣΔ_i, s_i)` (the state it produces from a
//! zero start; its total decay is `exp(A ΣΔ_i)`), and one unit per (channel, state `n`) folds the
//! pairs in order, `h ← exp(A ΣΔ_i) h + s_i`, handing every unit the state entering its steps.
//!
//! ```text
//!  cube (b, channel group g)          chunk k = steps [k·T·K, (k+1)·T·K)
//!  ┌─────────────────────────────┐   unit j of channel c scans steps k·T·K + j·K + [0, K)
//!  │ c=0: u0 u1 u2 … u(T-1)       │   1. every unit: (ΣΔ, s[N]) from a zero state → shared mem
//!  │ c=1: u0 u1 u2 … u(T-1)       │   2. unit (c, j=n): h ← carry[c,n]; for i in 0..T:
//!  │  …                           │        entry[c,i,n] = h; h = exp(A ΣΔ_i) h + s_i
//!  │ c=CH-1: …                    │      carry[c,n] = h (next chunk)
//!  └─────────────────────────────┘   3. every unit re-scans its K steps from entry → y
//!  grid: (D / CH cubes, B)            barriers only between phases, in loops of uniform count
//! ```
//!
//! The backward walks the chunks in reverse. A first launch of the forward kernel (no `y`) saves
//! the state entering every chunk (`[B, D, L / chunk, N]` f32). Per chunk, each unit computes its
//! forward pair and the adjoint's reverse pair `(ΣΔ_i, q_i)` with `q_i = Σ_k (Π_{j≤k} a_j) C_k dy_k`
//! (the adjoint it hands to the step before it, from a zero adjoint after it); the same in-order
//! folds give each unit its entry state and the adjoint entering from its right. Then, one state
//! `n` at a time, each unit re-runs its `K` steps forward (states in registers) and backward,
//! accumulating du, dΔ (per step) and dA, dD (per unit), and stages its per-step dB, dC
//! contributions in shared memory; the cube sums them over its channels in a fixed order and
//! writes one value per (batch, channel group, state, step). A last small kernel sums the channel
//! groups in order. Memory of the backward beyond its outputs: `2·B·⌈D/CH⌉·N·L` f32 (dB, dC per
//! channel group) plus the chunk-entry states `B·D·⌈L/chunk⌉·N` f32 — mamba-130m (D = 1536, N = 16)
//! at B = 8, L = 2048 with the default CH = 16, chunk = 128: 201 MB + 12.6 MB per layer, against
//! 3.2 GB + 50 MB of per-channel partials in the per-channel kernel.
//!
//! **Per channel** (`per_channel.rs`): one unit per (batch, channel) walks the whole sequence with
//! its `N` states in registers; the backward saves the state every 32 steps, recomputes each
//! 32-step block in a unit-local array and writes per-channel dB/dC partials `[B, D, N, L]`. It is
//! the reference for the sequence-parallel kernels in the tests and the path for short
//! sequences, `L ≤` [`PER_CHANNEL_MAX_LEN`], where a chunk would be mostly padding and the
//! partials are small.
//!
//! Both are deterministic: no float atomics; every cross-unit sum runs in a fixed order, so the
//! backward is bit-identical run to run.
//!
//! # Barriers and uniform control flow
//!
//! The sequence-parallel kernels synchronize the cube (`sync_cube`) only at the top level of loops
//! whose trip count is the same for every unit (comptime values, or the chunk count computed from
//! the tensor shape), never inside a branch and never after an early exit: units past the last
//! channel or step run the same loops on clamped indices with Δ = dy = 0 (an identity step) and
//! skip only their stores. A barrier in divergent control flow is undefined behavior on CUDA, and
//! the first shared-memory version of these kernels (#10: an early exit for units past the last
//! channel, barriers in loops bounded by tensor metadata) returned zeros on lavapipe; the parity
//! tests therefore also fail on all-zero outputs.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement,
    kernel::into_contiguous,
    ops::numeric::{empty_device_contiguous_dtype, zeros_client},
    tensor::CubeTensor,
};
use cubecl::prelude::ComputeClient;

use super::{ScanGrads, ScanInputs};

pub mod cuda_source;
mod per_channel;
mod reduce;
mod seq;

pub use seq::SeqConfig;

/// Largest supported state size `N`.
pub const MAX_STATE: usize = 64;
/// Sequences up to this length use the per-channel kernels ([`ScanKernel::Auto`]).
pub const PER_CHANNEL_MAX_LEN: usize = 32;
/// Shared memory the sequence-parallel kernels may use per cube (bytes), if the device allows it:
/// more only lowers the number of cubes an SM keeps resident.
pub const SHARED_BUDGET: usize = 48 * 1024;

static FUSED: AtomicBool = AtomicBool::new(true);
static KERNEL: Mutex<ScanKernel> = Mutex::new(ScanKernel::Auto);

/// Whether CubeCL backends run these kernels (default) or the tensor-op scan of
/// [`crate::model::scan::reference`]; the switch lets `bench_gpu` time both on the same backend.
pub fn fused_scan() -> bool {
    FUSED.load(Ordering::Relaxed)
}

/// Choose the fused kernels (`true`) or the tensor-op scan for every CubeCL backend.
pub fn set_fused_scan(fused: bool) {
    FUSED.store(fused, Ordering::Relaxed);
}

/// The kernels [`forward`] and [`backward`] (and so the model on a CubeCL backend) use:
/// [`ScanKernel::Auto`] unless changed, e.g. by `bench_gpu` to time the per-channel kernels.
pub fn scan_kernel() -> ScanKernel {
    *KERNEL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Set the kernels [`forward`] and [`backward`] use.
pub fn set_scan_kernel(kernel: ScanKernel) {
    *KERNEL.lock().unwrap_or_else(|e| e.into_inner()) = kernel;
}

/// Which kernels run the scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanKernel {
    /// Per channel for `L ≤` [`PER_CHANNEL_MAX_LEN`], else sequence-parallel with
    /// [`SeqConfig::FORWARD`] / [`SeqConfig::BACKWARD`] fitted to the device.
    Auto,
    /// One unit per (batch, channel) over the whole sequence.
    PerChannel,
    /// Sequence-parallel with this tile (the backward's chunk-entry pre-pass uses it too).
    Seq(SeqConfig),
}

/// The inputs as contiguous CubeCL tensors of one element type, with their sizes.
pub(crate) struct Inputs<R: CubeRuntime> {
    pub u: CubeTensor<R>,
    pub delta: CubeTensor<R>,
    pub a: CubeTensor<R>,
    pub b: CubeTensor<R>,
    pub c: CubeTensor<R>,
    pub d: CubeTensor<R>,
    pub bsz: usize,
    pub dim: usize,
    pub len: usize,
    pub n: usize,
    pub dtype: DType,
}

impl<R: CubeRuntime> Inputs<R> {
    fn client(&self) -> &ComputeClient<R> {
        &self.u.client
    }

    fn empty(&self, shape: Shape, dtype: DType) -> CubeTensor<R> {
        empty(&self.u.client, &self.u.device, shape, dtype)
    }

    /// With B, D or L zero no kernel runs: the outputs are zeros (h_{-1} = 0, empty sums).
    fn zeros<const K: usize>(&self, shape: [usize; K]) -> CubeTensor<R> {
        let shape = Shape::new(shape);
        zeros_client(
            self.client().clone(),
            self.u.device.clone(),
            shape,
            self.dtype,
        )
    }

    fn is_empty(&self) -> bool {
        self.bsz * self.dim * self.len == 0
    }

    /// The kernel family and tile for this shape and device.
    pub(crate) fn resolve(&self, kernel: ScanKernel, default: SeqConfig) -> ScanKernel {
        match kernel {
            ScanKernel::Auto if self.len <= PER_CHANNEL_MAX_LEN => ScanKernel::PerChannel,
            ScanKernel::Auto => {
                let hw = &self.client().properties().hardware;
                ScanKernel::Seq(default.fit(
                    self.n,
                    hw.max_shared_memory_size.min(SHARED_BUDGET),
                    hw.max_units_per_cube as usize,
                ))
            }
            other => other,
        }
    }
}

/// Gradients as CubeCL tensors: du, dΔ `[B, D, L]`, dA `[D, N]`, dB, dC `[B, N, L]`, dD `[D]`.
pub(crate) struct Grads<R: CubeRuntime> {
    pub du: CubeTensor<R>,
    pub ddelta: CubeTensor<R>,
    pub da: CubeTensor<R>,
    pub db: CubeTensor<R>,
    pub dc: CubeTensor<R>,
    pub dd: CubeTensor<R>,
}

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;
/// `(y, last state)` of the forward.
type Outputs<R, F, I, BT> = (Tensor<Cube<R, F, I, BT>, 3>, Tensor<Cube<R, F, I, BT>, 3>);

/// Fused selective-scan forward with the kernels of [`scan_kernel`]. Shapes as in
/// [`crate::model::scan`]; returns `y [B, D, L]` and the final state `[B, D, N]`, both in the element
/// type of `u`.
pub fn forward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: ScanInputs<Cube<R, F, I, BT>>,
) -> Outputs<R, F, I, BT> {
    forward_with(scan_kernel(), x)
}

/// [`forward`] with the kernels chosen by the caller.
pub fn forward_with<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    kernel: ScanKernel,
    x: ScanInputs<Cube<R, F, I, BT>>,
) -> Outputs<R, F, I, BT> {
    let x = inputs(x);
    if x.is_empty() {
        let y = x.zeros([x.bsz, x.dim, x.len]);
        let last = x.zeros([x.bsz, x.dim, x.n]);
        return (tensor(y), tensor(last));
    }
    let (y, last) = match x.resolve(kernel, SeqConfig::FORWARD) {
        ScanKernel::Seq(cfg) => seq::forward(&x, cfg),
        _ => per_channel::forward(&x),
    };
    (tensor(y), tensor(last))
}

/// Gradients of `sum(y ⊙ dy)` with respect to `(u, delta, a, b, c, d)`, same shapes and element
/// type as the inputs, with the kernels of [`scan_kernel`].
pub fn backward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: ScanInputs<Cube<R, F, I, BT>>,
    dy: Tensor<Cube<R, F, I, BT>, 3>,
) -> ScanGrads<Cube<R, F, I, BT>> {
    backward_with(scan_kernel(), x, dy)
}

/// [`backward`] with the kernels chosen by the caller.
pub fn backward_with<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    kernel: ScanKernel,
    x: ScanInputs<Cube<R, F, I, BT>>,
    dy: Tensor<Cube<R, F, I, BT>, 3>,
) -> ScanGrads<Cube<R, F, I, BT>> {
    let x = inputs(x);
    assert_eq!(
        dy.dims(),
        [x.bsz, x.dim, x.len],
        "selective scan: dy must be [B, D, L] like u"
    );
    let dy = prim(dy, x.dtype);
    let g = if x.is_empty() {
        let (bsz, dim, len, n) = (x.bsz, x.dim, x.len, x.n);
        Grads {
            du: x.zeros([bsz, dim, len]),
            ddelta: x.zeros([bsz, dim, len]),
            da: x.zeros([dim, n]),
            db: x.zeros([bsz, n, len]),
            dc: x.zeros([bsz, n, len]),
            dd: x.zeros([dim]),
        }
    } else {
        match x.resolve(kernel, SeqConfig::BACKWARD) {
            ScanKernel::Seq(cfg) => seq::backward(&x, dy, cfg),
            _ => per_channel::backward(&x, dy),
        }
    };
    ScanGrads {
        u: tensor(g.du),
        delta: tensor(g.ddelta),
        a: tensor(g.da),
        b: tensor(g.db),
        c: tensor(g.dc),
        d: tensor(g.dd),
    }
}

fn inputs<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: ScanInputs<Cube<R, F, I, BT>>,
) -> Inputs<R> {
    let ScanInputs {
        u,
        delta,
        a,
        b,
        c,
        d,
    } = x;
    let [bsz, dim, len] = u.dims();
    let [ad, n] = a.dims();
    assert_eq!(
        delta.dims(),
        [bsz, dim, len],
        "selective scan: delta must be [B, D, L] like u"
    );
    assert_eq!(ad, dim, "selective scan: a must be [D, N] with D = {dim}");
    assert_eq!(
        b.dims(),
        [bsz, n, len],
        "selective scan: b must be [B, N, L] = [{bsz}, {n}, {len}]"
    );
    assert_eq!(
        c.dims(),
        [bsz, n, len],
        "selective scan: c must be [B, N, L] = [{bsz}, {n}, {len}]"
    );
    assert_eq!(d.dims(), [dim], "selective scan: d must be [D] = [{dim}]");
    assert!(
        (1..=MAX_STATE).contains(&n),
        "selective scan kernel: state size {n} outside 1..={MAX_STATE}"
    );
    let dtype = u.dtype();
    Inputs {
        u: prim(u, dtype),
        delta: prim(delta, dtype),
        a: prim(a, dtype),
        b: prim(b, dtype),
        c: prim(c, dtype),
        d: prim(d, dtype),
        bsz,
        dim,
        len,
        n,
        dtype,
    }
}

/// The contiguous CubeCL tensor behind `t`, converted to `dtype` if it has another one.
fn prim<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    t: Tensor<Cube<R, F, I, BT>, D>,
    dtype: DType,
) -> CubeTensor<R> {
    let t = if t.dtype() == dtype { t } else { t.cast(dtype) };
    let t = into_contiguous(t.into_primitive().tensor());
    assert_contiguous(&t, "input");
    t
}

fn tensor<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    t: CubeTensor<R>,
) -> Tensor<Cube<R, F, I, BT>, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// A new tensor with packed row-major strides. The kernels index every buffer linearly, so they
/// must not get CUDA's default pitched rows (`empty_device_dtype` pads each last-dimension row to
/// an alignment, e.g. L = 2047 f32 rows to 2048).
fn empty<R: CubeRuntime>(
    client: &ComputeClient<R>,
    device: &R::Device,
    shape: Shape,
    dtype: DType,
) -> CubeTensor<R> {
    let t = empty_device_contiguous_dtype(client.clone(), device.clone(), shape, dtype);
    assert_contiguous(&t, "output");
    t
}

/// The kernels index with `(i * dim + j) * len + k`: a padded or permuted layout would be read
/// and written wrongly without any error, so it is checked on the host.
fn assert_contiguous<R: CubeRuntime>(t: &CubeTensor<R>, what: &str) {
    let (shape, strides) = (t.meta.shape(), t.meta.strides());
    let mut expected = 1;
    for (i, (&s, &st)) in shape.iter().zip(strides.iter()).enumerate().rev() {
        assert!(
            s <= 1 || st == expected,
            "selective scan: {what} tensor of shape {shape:?} has strides {strides:?} \
             (axis {i} must have stride {expected}); the kernels need packed row-major buffers"
        );
        expected *= s;
    }
}
