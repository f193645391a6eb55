//! Fused selective scan in CubeCL: the forward and backward passes as two kernels, for
//! every CubeCL backend of Burn (`CubeBackend<R, F, I, BT>`: CUDA, wgpu on Vulkan/Metal/DX12,
//! including Mesa's software Vulkan driver lavapipe on a CPU-only machine).
//!
//! Layout of the work: one unit per (batch `b`, channel `d`), `CH` channels of one batch
//! element per cube. A unit walks the sequence, keeping the `N` states `h[n]` in registers, so
//! nothing of size `[B, D, L, N]` ever reaches memory. State, discretization and every
//! accumulation are f32 whatever the input element type (f32, bf16, f16).
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
//! The backward first re-runs the forward recurrence, storing the state at every chunk boundary
//! (`CHUNK` steps) in an f32 scratch `[B, D, L/CHUNK, N]`; it then walks the chunks in reverse:
//! recompute the chunk's `CHUNK × N` states from its boundary state into a unit-local array, and
//! run the reverse recurrence over them. Only decays `exp(Δ A) ≤ 1` are multiplied, so nothing
//! can overflow. `dB`, `dC` are shared by all channels: each unit writes its own contributions
//! to partial buffers `[B, D, N, L]` (no shared memory and no barriers: WGSL's uniformity analysis
//! rejects `sync_cube` inside loops whose bounds come from tensor metadata, and the pipeline then
//! never runs); `dA` and `dD` are written per (batch, channel). The partials are summed over `D`
//! (and `B`) with tensor ops, so the result is deterministic (no float atomics). The per-channel
//! partials cost `2·B·D·N·L·4` bytes per layer in the backward.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{DType, Shape, Tensor, TensorPrimitive};
use burn_cubecl::{
    BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement, kernel::into_contiguous,
    ops::numeric::empty_device_dtype, tensor::CubeTensor,
};
use cubecl::prelude::{CubeCount, CubeDim};
use kernels::{scan_backward_kernel, scan_forward_kernel};

/// Channels per cube (units of one cube share the `B_t`, `C_t` reads).
pub const CHANNELS_PER_CUBE: usize = 32;
/// Steps between saved boundary states in the backward pass.
pub const CHUNK: usize = 32;
/// Largest supported state size `N` (the unit keeps `N` states in registers).
pub const MAX_STATE: usize = 64;

static FUSED: AtomicBool = AtomicBool::new(true);

/// Whether CubeCL backends run these kernels (default) or the tensor-op scan of
/// [`crate::model::scan::reference`]; the switch lets `bench_gpu` time both on the same backend.
pub fn fused_scan() -> bool {
    FUSED.load(Ordering::Relaxed)
}

/// Choose the fused kernels (`true`) or the tensor-op scan for every CubeCL backend.
pub fn set_fused_scan(fused: bool) {
    FUSED.store(fused, Ordering::Relaxed);
}

mod kernels {
    use cubecl::prelude::*;

    #[cube(launch)]
    pub fn scan_forward_kernel<F: Float>(
        u: &Tensor<F>,        // [B, D, L]
        delta: &Tensor<F>,    // [B, D, L]
        a: &Tensor<F>,        // [D, N]
        bm: &Tensor<F>,       // [B, N, L]
        cm: &Tensor<F>,       // [B, N, L]
        dskip: &Tensor<F>,    // [D]
        y: &mut Tensor<F>,    // [B, D, L]
        last: &mut Tensor<F>, // [B, D, N]
        #[comptime] n_state: usize,
        #[define(F)] _dtype: StorageType,
    ) {
        let dim = u.shape(1);
        let len = u.shape(2);
        let b = CUBE_POS_Y as usize;
        let d = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        if d >= dim {
            terminate!();
        }
        let row = (b * dim + d) * len; // offset of (b, d, 0) in u, delta, y
        let bc = b * n_state * len; // offset of (b, 0, 0) in B, C

        let mut av = Array::<f32>::new(n_state);
        let mut h = Array::<f32>::new(n_state);
        #[unroll]
        for n in 0..n_state {
            av[n] = f32::cast_from(a[d * n_state + n]);
            h[n] = 0.0f32;
        }
        let dd = f32::cast_from(dskip[d]);

        for t in 0..len {
            let dt = f32::cast_from(delta[row + t]);
            let ut = f32::cast_from(u[row + t]);
            let dtu = dt * ut;
            let mut acc = dd * ut;
            #[unroll]
            for n in 0..n_state {
                let hn = (dt * av[n]).exp() * h[n] + dtu * f32::cast_from(bm[bc + n * len + t]);
                h[n] = hn;
                acc += f32::cast_from(cm[bc + n * len + t]) * hn;
            }
            y[row + t] = F::cast_from(acc);
        }
        #[unroll]
        for n in 0..n_state {
            last[(b * dim + d) * n_state + n] = F::cast_from(h[n]);
        }
    }

    #[cube(launch)]
    #[allow(clippy::too_many_arguments)]
    pub fn scan_backward_kernel<F: Float>(
        u: &Tensor<F>,             // [B, D, L]
        delta: &Tensor<F>,         // [B, D, L]
        a: &Tensor<F>,             // [D, N]
        bm: &Tensor<F>,            // [B, N, L]
        cm: &Tensor<F>,            // [B, N, L]
        dskip: &Tensor<F>,         // [D]
        dy: &Tensor<F>,            // [B, D, L]
        du: &mut Tensor<F>,        // [B, D, L]
        ddelta: &mut Tensor<F>,    // [B, D, L]
        da_part: &mut Tensor<f32>, // [B, D, N]
        dd_part: &mut Tensor<f32>, // [B, D]
        db_part: &mut Tensor<f32>, // [B, D, N, L] per-channel dB contributions
        dc_part: &mut Tensor<f32>, // [B, D, N, L] per-channel dC contributions
        bounds: &mut Tensor<f32>,  // [B, D, ceil(L / CHUNK), N] scratch
        #[comptime] n_state: usize,
        #[comptime] chunk: usize,
        #[define(F)] _dtype: StorageType,
    ) {
        let dim = u.shape(1);
        let len = u.shape(2);
        let nchunks = (len + chunk - 1) / chunk;
        let b = CUBE_POS_Y as usize;
        let d = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
        // No unit-to-unit communication (no shared memory, no barriers), so units past the last
        // channel can simply stop.
        if d >= dim {
            terminate!();
        }

        let row = (b * dim + d) * len;
        let bc = b * n_state * len;
        let brow = (b * dim + d) * nchunks * n_state; // this unit's boundary states

        let mut av = Array::<f32>::new(n_state);
        let mut h = Array::<f32>::new(n_state);
        let mut gcarry = Array::<f32>::new(n_state); // exp(Δ_{t+1} A) ⊙ g_{t+1}
        let mut da_acc = Array::<f32>::new(n_state);
        #[unroll]
        for n in 0..n_state {
            av[n] = f32::cast_from(a[d * n_state + n]);
            h[n] = 0.0f32;
            gcarry[n] = 0.0f32;
            da_acc[n] = 0.0f32;
        }
        let dd = f32::cast_from(dskip[d]);
        let mut dd_acc = 0.0f32;

        // Pass 1: the forward recurrence, saving the state entering every chunk.
        for t in 0..len {
            if t % chunk == 0 {
                let k = t / chunk;
                #[unroll]
                for n in 0..n_state {
                    bounds[brow + k * n_state + n] = h[n];
                }
            }
            let dt = f32::cast_from(delta[row + t]);
            let dtu = dt * f32::cast_from(u[row + t]);
            #[unroll]
            for n in 0..n_state {
                h[n] = (dt * av[n]).exp() * h[n] + dtu * f32::cast_from(bm[bc + n * len + t]);
            }
        }

        // Pass 2: chunks in reverse. `hs[s * N + n]` = h_{t0 + s - 1} (the state entering step t0+s).
        let mut hs = Array::<f32>::new(chunk * n_state);
        for kr in 0..nchunks {
            let k = nchunks - 1 - kr;
            let t0 = k * chunk;
            let mut steps = len - t0;
            if steps > chunk {
                steps = chunk;
            }
            #[unroll]
            for n in 0..n_state {
                h[n] = bounds[brow + k * n_state + n];
            }
            for s in 0..steps {
                let t = t0 + s;
                let dt = f32::cast_from(delta[row + t]);
                let dtu = dt * f32::cast_from(u[row + t]);
                #[unroll]
                for n in 0..n_state {
                    hs[s * n_state + n] = h[n];
                    h[n] = (dt * av[n]).exp() * h[n] + dtu * f32::cast_from(bm[bc + n * len + t]);
                }
            }
            for sr in 0..steps {
                let s = steps - 1 - sr;
                let t = t0 + s;
                let dt = f32::cast_from(delta[row + t]);
                let ut = f32::cast_from(u[row + t]);
                let dyt = f32::cast_from(dy[row + t]);
                let dtu = dt * ut;
                let mut du_acc = dd * dyt;
                let mut ddt_acc = 0.0f32;
                dd_acc += dyt * ut;
                #[unroll]
                for n in 0..n_state {
                    let bn = f32::cast_from(bm[bc + n * len + t]);
                    let cn = f32::cast_from(cm[bc + n * len + t]);
                    let hp = hs[s * n_state + n];
                    let decay = (dt * av[n]).exp();
                    let ht = decay * hp + dtu * bn;
                    let gn = cn * dyt + gcarry[n];
                    du_acc += gn * dt * bn;
                    ddt_acc += gn * (av[n] * decay * hp + ut * bn);
                    da_acc[n] += gn * dt * decay * hp;
                    gcarry[n] = decay * gn;
                    let out = ((b * dim + d) * n_state + n) * len + t;
                    db_part[out] = gn * dtu; // this channel's dB contribution
                    dc_part[out] = dyt * ht; // this channel's dC contribution
                }
                du[row + t] = F::cast_from(du_acc);
                ddelta[row + t] = F::cast_from(ddt_acc);
            }
        }

        #[unroll]
        for n in 0..n_state {
            da_part[(b * dim + d) * n_state + n] = da_acc[n];
        }
        dd_part[b * dim + d] = dd_acc;
    }
}

/// Fused selective-scan forward on a CubeCL backend. Shapes as in [`crate::model::scan`]; returns
/// `y [B, D, L]` and the final state `[B, D, N]`, both in the element type of `u`.
pub fn forward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    u: Tensor<CubeBackend<R, F, I, BT>, 3>,
    delta: Tensor<CubeBackend<R, F, I, BT>, 3>,
    a: Tensor<CubeBackend<R, F, I, BT>, 2>,
    b: Tensor<CubeBackend<R, F, I, BT>, 3>,
    c: Tensor<CubeBackend<R, F, I, BT>, 3>,
    d: Tensor<CubeBackend<R, F, I, BT>, 1>,
) -> (
    Tensor<CubeBackend<R, F, I, BT>, 3>,
    Tensor<CubeBackend<R, F, I, BT>, 3>,
) {
    let [bsz, dim, len] = check_shapes(&u, &delta, &a, &b, &c, &d);
    let n = a.dims()[1];
    let dtype = u.dtype();
    let [u, delta, a, b, c, d] = [
        prim(u, dtype),
        prim(delta, dtype),
        prim(a, dtype),
        prim(b, dtype),
        prim(c, dtype),
        prim(d, dtype),
    ];
    let client = u.client.clone();
    let device = u.device.clone();
    let y = empty_device_dtype(
        client.clone(),
        device.clone(),
        Shape::new([bsz, dim, len]),
        dtype,
    );
    let last = empty_device_dtype(client.clone(), device, Shape::new([bsz, dim, n]), dtype);
    let groups = dim.div_ceil(CHANNELS_PER_CUBE);
    if bsz * dim * len > 0 {
        scan_forward_kernel::launch::<R>(
            &client,
            CubeCount::Static(groups as u32, bsz as u32, 1),
            CubeDim::new_1d(CHANNELS_PER_CUBE as u32),
            u.into_tensor_arg(),
            delta.into_tensor_arg(),
            a.into_tensor_arg(),
            b.into_tensor_arg(),
            c.into_tensor_arg(),
            d.into_tensor_arg(),
            y.clone().into_tensor_arg(),
            last.clone().into_tensor_arg(),
            n,
            dtype.into(),
        );
    }
    (tensor(y), tensor(last))
}

/// Gradients of `sum(y ⊙ dy)` with respect to `(u, delta, a, b, c, d)`, same shapes and element
/// type as the inputs.
#[allow(clippy::type_complexity)]
pub fn backward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    u: Tensor<CubeBackend<R, F, I, BT>, 3>,
    delta: Tensor<CubeBackend<R, F, I, BT>, 3>,
    a: Tensor<CubeBackend<R, F, I, BT>, 2>,
    b: Tensor<CubeBackend<R, F, I, BT>, 3>,
    c: Tensor<CubeBackend<R, F, I, BT>, 3>,
    d: Tensor<CubeBackend<R, F, I, BT>, 1>,
    dy: Tensor<CubeBackend<R, F, I, BT>, 3>,
) -> (
    Tensor<CubeBackend<R, F, I, BT>, 3>,
    Tensor<CubeBackend<R, F, I, BT>, 3>,
    Tensor<CubeBackend<R, F, I, BT>, 2>,
    Tensor<CubeBackend<R, F, I, BT>, 3>,
    Tensor<CubeBackend<R, F, I, BT>, 3>,
    Tensor<CubeBackend<R, F, I, BT>, 1>,
) {
    let [bsz, dim, len] = check_shapes(&u, &delta, &a, &b, &c, &d);
    assert_eq!(
        dy.dims(),
        [bsz, dim, len],
        "selective scan: dy must be [B, D, L]"
    );
    let n = a.dims()[1];
    let dtype = u.dtype();
    let [u, delta, a, b, c, d, dy] = [
        prim(u, dtype),
        prim(delta, dtype),
        prim(a, dtype),
        prim(b, dtype),
        prim(c, dtype),
        prim(d, dtype),
        prim(dy, dtype),
    ];
    let client = u.client.clone();
    let device = u.device.clone();
    let groups = dim.div_ceil(CHANNELS_PER_CUBE);
    let nchunks = len.div_ceil(CHUNK);
    let empty =
        |shape: Shape, dt: DType| empty_device_dtype(client.clone(), device.clone(), shape, dt);
    let du = empty(Shape::new([bsz, dim, len]), dtype);
    let ddelta = empty(Shape::new([bsz, dim, len]), dtype);
    let da_part = empty(Shape::new([bsz, dim, n]), DType::F32);
    let dd_part = empty(Shape::new([bsz, dim]), DType::F32);
    // Per-channel partials: 2·B·D·N·L·4 bytes. To be replaced by an in-cube reduction once its
    // barriers sit in uniform control flow (WGSL rejects `sync_cube` under data-dependent loops).
    let db_part = empty(Shape::new([bsz, dim, n, len]), DType::F32);
    let dc_part = empty(Shape::new([bsz, dim, n, len]), DType::F32);
    let bounds = empty(Shape::new([bsz, dim, nchunks.max(1), n]), DType::F32);
    if bsz * dim * len > 0 {
        scan_backward_kernel::launch::<R>(
            &client,
            CubeCount::Static(groups as u32, bsz as u32, 1),
            CubeDim::new_1d(CHANNELS_PER_CUBE as u32),
            u.into_tensor_arg(),
            delta.into_tensor_arg(),
            a.into_tensor_arg(),
            b.into_tensor_arg(),
            c.into_tensor_arg(),
            d.into_tensor_arg(),
            dy.into_tensor_arg(),
            du.clone().into_tensor_arg(),
            ddelta.clone().into_tensor_arg(),
            da_part.clone().into_tensor_arg(),
            dd_part.clone().into_tensor_arg(),
            db_part.clone().into_tensor_arg(),
            dc_part.clone().into_tensor_arg(),
            bounds.into_tensor_arg(),
            n,
            CHUNK,
            dtype.into(),
        );
    }
    let da_part: Tensor<CubeBackend<R, F, I, BT>, 3> = tensor(da_part);
    let dd_part: Tensor<CubeBackend<R, F, I, BT>, 2> = tensor(dd_part);
    let db_part: Tensor<CubeBackend<R, F, I, BT>, 4> = tensor(db_part);
    let dc_part: Tensor<CubeBackend<R, F, I, BT>, 4> = tensor(dc_part);
    let da = da_part.sum_dim(0).reshape([dim, n]).cast(dtype);
    let dd = dd_part.sum_dim(0).reshape([dim]).cast(dtype);
    let db = db_part.sum_dim(1).reshape([bsz, n, len]).cast(dtype);
    let dc = dc_part.sum_dim(1).reshape([bsz, n, len]).cast(dtype);
    (tensor(du), tensor(ddelta), da, db, dc, dd)
}

fn check_shapes<B: burn::tensor::backend::Backend>(
    u: &Tensor<B, 3>,
    delta: &Tensor<B, 3>,
    a: &Tensor<B, 2>,
    b: &Tensor<B, 3>,
    c: &Tensor<B, 3>,
    d: &Tensor<B, 1>,
) -> [usize; 3] {
    let [bsz, dim, len] = u.dims();
    let [ad, n] = a.dims();
    assert_eq!(
        delta.dims(),
        [bsz, dim, len],
        "selective scan: delta must be [B, D, L] like u"
    );
    assert_eq!(ad, dim, "selective scan: a must be [D, N]");
    assert_eq!(
        b.dims(),
        [bsz, n, len],
        "selective scan: b must be [B, N, L]"
    );
    assert_eq!(
        c.dims(),
        [bsz, n, len],
        "selective scan: c must be [B, N, L]"
    );
    assert_eq!(d.dims(), [dim], "selective scan: d must be [D]");
    assert!(
        (1..=MAX_STATE).contains(&n),
        "selective scan kernel: state size {n} outside 1..={MAX_STATE}"
    );
    [bsz, dim, len]
}

/// The contiguous CubeCL tensor behind `t`, converted to `dtype` if it has another one.
fn prim<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    t: Tensor<CubeBackend<R, F, I, BT>, D>,
    dtype: DType,
) -> CubeTensor<R> {
    let t = if t.dtype() == dtype { t } else { t.cast(dtype) };
    into_contiguous(t.into_primitive().tensor())
}

fn tensor<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    t: CubeTensor<R>,
) -> Tensor<CubeBackend<R, F, I, BT>, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}
