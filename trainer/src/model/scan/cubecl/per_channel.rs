//! Per-channel kernels: one unit per (batch `b`, channel `d`), `CHANNELS_PER_CUBE` channels of
//! one batch element per cube. A unit walks the whole sequence, keeping the `N` states `h[n]` in
//! registers. The backward first re-runs the forward recurrence, storing the state at every
//! `CHUNK`-step boundary in an f32 scratch `[B, D, L/CHUNK, N]`; it then walks the chunks in
//! reverse: recompute the chunk's `CHUNK × N` states from its boundary state into a unit-local
//! array, and run the reverse recurrence over them. `dB`, `dC` are shared by all channels: each
//! unit writes its own contributions to partial buffers `[B, D, N·L]` (no unit-to-unit
//! communication, so no barrier) that [`super::reduce::sum_groups`] sums over `D` in order; `dA`
//! and `dD` are written per (batch, channel) and summed over `B` the same way. The partials cost
//! `2·B·D·N·L·4` bytes per layer, which is why long sequences use [`super::seq`].

use burn::tensor::{DType, Shape};
use burn_cubecl::{CubeRuntime, tensor::CubeTensor};
use cubecl::prelude::{CubeCount, CubeDim};
pub(crate) use kernels::{scan_backward_kernel, scan_forward_kernel};

use super::{Grads, Inputs, reduce::sum_groups};

/// Channels per cube (units of one cube share the `B_t`, `C_t` reads).
pub const CHANNELS_PER_CUBE: usize = 32;
/// The cube of both per-channel kernels: one unit per channel.
pub(super) fn cube_dim() -> CubeDim {
    CubeDim::new_1d(CHANNELS_PER_CUBE as u32)
}

/// Steps between saved boundary states in the backward pass.
pub const CHUNK: usize = 32;

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
        let nchunks = len.div_ceil(chunk);
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

/// `y [B, D, L]` and the final state `[B, D, N]` in the input element type.
pub(super) fn forward<R: CubeRuntime>(x: &Inputs<R>) -> (CubeTensor<R>, CubeTensor<R>) {
    let y = x.empty(Shape::new([x.bsz, x.dim, x.len]), x.dtype);
    let last = x.empty(Shape::new([x.bsz, x.dim, x.n]), x.dtype);
    scan_forward_kernel::launch::<R>(
        x.client(),
        CubeCount::Static(x.dim.div_ceil(CHANNELS_PER_CUBE) as u32, x.bsz as u32, 1),
        cube_dim(),
        x.u.clone().into_tensor_arg(),
        x.delta.clone().into_tensor_arg(),
        x.a.clone().into_tensor_arg(),
        x.b.clone().into_tensor_arg(),
        x.c.clone().into_tensor_arg(),
        x.d.clone().into_tensor_arg(),
        y.clone().into_tensor_arg(),
        last.clone().into_tensor_arg(),
        x.n,
        x.dtype.into(),
    );
    (y, last)
}

/// Gradients of `sum(y ⊙ dy)`.
pub(super) fn backward<R: CubeRuntime>(x: &Inputs<R>, dy: CubeTensor<R>) -> Grads<R> {
    let (bsz, dim, len, n) = (x.bsz, x.dim, x.len, x.n);
    let du = x.empty(Shape::new([bsz, dim, len]), x.dtype);
    let ddelta = x.empty(Shape::new([bsz, dim, len]), x.dtype);
    // Partials laid out [P, G, Q] for the in-order sums: over B for dA, dD; over D for dB, dC.
    let da_part = x.empty(Shape::new([1, bsz, dim * n]), DType::F32);
    let dd_part = x.empty(Shape::new([1, bsz, dim]), DType::F32);
    let db_part = x.empty(Shape::new([bsz, dim, n * len]), DType::F32);
    let dc_part = x.empty(Shape::new([bsz, dim, n * len]), DType::F32);
    let bounds = x.empty(
        Shape::new([bsz, dim, len.div_ceil(CHUNK).max(1), n]),
        DType::F32,
    );
    scan_backward_kernel::launch::<R>(
        x.client(),
        CubeCount::Static(dim.div_ceil(CHANNELS_PER_CUBE) as u32, bsz as u32, 1),
        cube_dim(),
        x.u.clone().into_tensor_arg(),
        x.delta.clone().into_tensor_arg(),
        x.a.clone().into_tensor_arg(),
        x.b.clone().into_tensor_arg(),
        x.c.clone().into_tensor_arg(),
        x.d.clone().into_tensor_arg(),
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
        x.dtype.into(),
    );
    Grads {
        du,
        ddelta,
        da: sum_groups(da_part, Shape::new([dim, n]), x.dtype),
        db: sum_groups(db_part, Shape::new([bsz, n, len]), x.dtype),
        dc: sum_groups(dc_part, Shape::new([bsz, n, len]), x.dtype),
        dd: sum_groups(dd_part, Shape::new([dim]), x.dtype),
    }
}
