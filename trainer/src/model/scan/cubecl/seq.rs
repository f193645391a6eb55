//! Sequence-parallel kernels (the default path; design and diagram in [`super`]).
//!
//! Unit `(j, c)` of cube `(g, b)` (`j = UNIT_POS_X < units`, `c = UNIT_POS_Y < channels`) works on
//! channel `d = g·channels + c` of batch element `b`, steps `k·chunk + j·items + [0, items)` of
//! chunk `k` (`chunk = units·items`). Every index is computed by hand on packed row-major buffers
//! (asserted on the host). Shared memory per cube: a staging area of `channels·units` slots of
//! `width` f32 (odd, so the slots of consecutive units fall in different banks) and one carry per
//! (channel, state).

use burn::tensor::{DType, Shape};
use burn_cubecl::{CubeRuntime, tensor::CubeTensor};
use cubecl::prelude::*;

use super::{Grads, Inputs, reduce::sum_groups};

/// Tile of the sequence-parallel kernels: a cube is `channels × units` units, each scanning
/// `items` consecutive steps, so a cube advances `units · items` steps per round (one chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqConfig {
    /// Units along the sequence per channel (cube dim x).
    pub units: usize,
    /// Consecutive steps per unit and chunk (kept in registers).
    pub items: usize,
    /// Channels per cube (cube dim y); the backward sums dB, dC over them in shared memory.
    pub channels: usize,
}

impl SeqConfig {
    /// Forward default: chunks of 256 steps, 4 channels × 32 units (128 units per cube).
    pub const FORWARD: SeqConfig = SeqConfig {
        units: 32,
        items: 8,
        channels: 4,
    };
    /// Backward default: chunks of 128 steps, 16 channels × 16 units. 16 channels make the
    /// dB/dC partials `[B, D/16, N, L]`, i.e. `B·D·L` floats each for N = 16.
    pub const BACKWARD: SeqConfig = SeqConfig {
        units: 16,
        items: 8,
        channels: 16,
    };

    /// Small tiles the tests and the CUDA compile check run besides the defaults: chunks of 8 and
    /// 9 steps (hundreds of chunks at L = 4097), channel counts that do not divide 2·items
    /// (partial reduction rounds) and odd unit counts.
    #[doc(hidden)]
    pub const SMALL_TILES: [SeqConfig; 2] = [
        SeqConfig {
            units: 4,
            items: 2,
            channels: 3,
        },
        SeqConfig {
            units: 3,
            items: 3,
            channels: 5,
        },
    ];

    /// Steps per chunk.
    pub fn chunk(&self) -> usize {
        self.units * self.items
    }

    /// f32 slot width per unit in shared memory: room for `N + 1` (states and ΣΔ) and, in the
    /// backward, `2·items` (dB and dC of each step); odd against bank conflicts.
    fn width(&self, n: usize) -> usize {
        n.max(2 * self.items) + 1
    }

    /// Shared memory of the backward kernel in bytes (the forward uses less).
    pub fn shared_bytes(&self, n: usize) -> usize {
        4 * (self.channels * self.units * self.width(n) + self.channels * n)
    }

    /// This tile, with fewer channels (then fewer units) until the backward's shared memory fits
    /// `max_shared` bytes and the cube `max_units` units.
    pub fn fit(self, n: usize, max_shared: usize, max_units: usize) -> SeqConfig {
        let mut cfg = self;
        while cfg.shared_bytes(n) > max_shared || cfg.channels * cfg.units > max_units {
            if cfg.channels > 1 {
                cfg.channels /= 2;
            } else if cfg.units > 1 {
                cfg.units /= 2;
            } else {
                break;
            }
        }
        cfg
    }

    fn check(&self) {
        assert!(
            self.units >= 1 && self.items >= 1 && self.channels >= 1,
            "selective scan: empty tile {self:?}"
        );
    }
}

/// Forward over all chunks. With `write_y`: `y` and the final state `last`; with `save_bounds`:
/// the state entering every chunk in `bounds` (the backward's pre-pass, which skips phase 3).
#[cube(launch)]
// `if comptime!(..) { if valid { .. } }`: the outer test runs at expansion time, the inner on the GPU.
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
pub fn seq_forward_kernel<F: Float>(
    u: &Tensor<F>,            // [B, D, L]
    delta: &Tensor<F>,        // [B, D, L]
    a: &Tensor<F>,            // [D, N]
    bm: &Tensor<F>,           // [B, N, L]
    cm: &Tensor<F>,           // [B, N, L]
    dskip: &Tensor<F>,        // [D]
    y: &mut Tensor<F>,        // [B, D, L]
    last: &mut Tensor<F>,     // [B, D, N]
    bounds: &mut Tensor<f32>, // [B, D, chunks, N]
    #[comptime] n_state: usize,
    #[comptime] units: usize,
    #[comptime] items: usize,
    #[comptime] channels: usize,
    #[comptime] write_y: bool,
    #[comptime] save_bounds: bool,
    #[define(F)] _dtype: StorageType,
) {
    let dim = u.shape(1);
    let len = u.shape(2);
    let chunk = comptime!(units * items);
    let width = comptime!(n_state + 1);
    let nchunks = len.div_ceil(chunk);
    let b = CUBE_POS_Y as usize;
    let j = UNIT_POS_X as usize;
    let c = UNIT_POS_Y as usize;
    let d = CUBE_POS_X as usize * channels + c;
    let valid = d < dim;
    // Units past the last channel compute on the last channel (with Δ = 0) and store nothing.
    let dc = if valid { d } else { dim - 1 };
    let row = (b * dim + dc) * len;
    let bc = b * n_state * len;
    let slot = (c * units + j) * width;
    let mut xs = SharedMemory::<f32>::new(comptime!(channels * units * (n_state + 1)));
    let mut carry = SharedMemory::<f32>::new(comptime!(channels * n_state));
    let dd = f32::cast_from(dskip[dc]);

    // carry[c, n] is only ever touched by unit (c, n mod units): no barrier needed around it.
    let mut n0 = j;
    while n0 < n_state {
        carry[c * n_state + n0] = 0.0f32;
        n0 += units;
    }

    let mut dts = Array::<f32>::new(items);
    let mut us = Array::<f32>::new(items);
    for ck in 0..nchunks {
        let t0 = ck * chunk + j * items;
        // Phase 1: this unit's steps from a zero state; Δ = 0 past the end is an identity step.
        let mut sdt = 0.0f32;
        #[unroll]
        for k in 0..items {
            let t = t0 + k;
            let inb = valid && t < len;
            let tc = if t < len { t } else { len - 1 };
            let dt = f32::cast_from(delta[row + tc]);
            dts[k] = select(inb, dt, 0.0f32);
            us[k] = f32::cast_from(u[row + tc]);
            sdt += dts[k];
        }
        for n in 0..n_state {
            let an = f32::cast_from(a[dc * n_state + n]);
            let mut s = 0.0f32;
            #[unroll]
            for k in 0..items {
                let t = t0 + k;
                let tc = if t < len { t } else { len - 1 };
                let bn = f32::cast_from(bm[bc + n * len + tc]);
                s = (dts[k] * an).exp() * s + dts[k] * us[k] * bn;
            }
            xs[slot + n] = s;
        }
        xs[slot + n_state] = sdt;
        sync_cube();

        // Phase 2: unit (c, n) folds the units' pairs in order; each slot gets its entry state.
        let mut n1 = j;
        while n1 < n_state {
            let an = f32::cast_from(a[dc * n_state + n1]);
            let mut h = carry[c * n_state + n1];
            if comptime!(save_bounds) {
                if valid {
                    bounds[((b * dim + d) * nchunks + ck) * n_state + n1] = h;
                }
            }
            for i in 0..units {
                let si = (c * units + i) * width;
                let s = xs[si + n1];
                xs[si + n1] = h;
                h = (xs[si + n_state] * an).exp() * h + s;
            }
            carry[c * n_state + n1] = h;
            n1 += units;
        }
        sync_cube();

        // Phase 3: re-scan from the entry state, y_t = C_t · h_t + D u_t.
        if comptime!(write_y) {
            let mut ys = Array::<f32>::new(items);
            #[unroll]
            for k in 0..items {
                ys[k] = dd * us[k];
            }
            for n in 0..n_state {
                let an = f32::cast_from(a[dc * n_state + n]);
                let mut h = xs[slot + n];
                #[unroll]
                for k in 0..items {
                    let t = t0 + k;
                    let tc = if t < len { t } else { len - 1 };
                    let bn = f32::cast_from(bm[bc + n * len + tc]);
                    let cn = f32::cast_from(cm[bc + n * len + tc]);
                    h = (dts[k] * an).exp() * h + dts[k] * us[k] * bn;
                    ys[k] += cn * h;
                }
            }
            #[unroll]
            for k in 0..items {
                let t = t0 + k;
                if valid && t < len {
                    y[row + t] = F::cast_from(ys[k]);
                }
            }
            // The next chunk's phase 1 overwrites the entry states read above.
            sync_cube();
        }
    }

    if comptime!(write_y) {
        let mut n2 = j;
        while n2 < n_state {
            if valid {
                last[(b * dim + d) * n_state + n2] = F::cast_from(carry[c * n_state + n2]);
            }
            n2 += units;
        }
    }
}

/// Backward over the chunks in reverse: du, dΔ per step; dA, dD per (batch, channel); dB, dC
/// per (batch, channel group, state, step), summed over the cube's channels.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn seq_backward_kernel<F: Float>(
    u: &Tensor<F>,             // [B, D, L]
    delta: &Tensor<F>,         // [B, D, L]
    a: &Tensor<F>,             // [D, N]
    bm: &Tensor<F>,            // [B, N, L]
    cm: &Tensor<F>,            // [B, N, L]
    dskip: &Tensor<F>,         // [D]
    dy: &Tensor<F>,            // [B, D, L]
    bounds: &Tensor<f32>,      // [B, D, chunks, N] state entering each chunk
    du: &mut Tensor<F>,        // [B, D, L]
    ddelta: &mut Tensor<F>,    // [B, D, L]
    da_part: &mut Tensor<f32>, // [B, D, N]
    dd_part: &mut Tensor<f32>, // [B, D]
    db_part: &mut Tensor<f32>, // [B, G, N, L] dB per channel group
    dc_part: &mut Tensor<f32>, // [B, G, N, L] dC per channel group
    #[comptime] n_state: usize,
    #[comptime] units: usize,
    #[comptime] items: usize,
    #[comptime] channels: usize,
    #[define(F)] _dtype: StorageType,
) {
    let dim = u.shape(1);
    let len = u.shape(2);
    let chunk = comptime!(units * items);
    let width = comptime!(usize::max(n_state, 2 * items) + 1);
    let cube_units = comptime!(channels * units);
    // Rounds of the dB/dC reduction: 2·chunk outputs over channels·units units.
    let rounds = comptime!((2 * items).div_ceil(channels));
    let nchunks = len.div_ceil(chunk);
    let groups = dim.div_ceil(channels);
    let g = CUBE_POS_X as usize;
    let b = CUBE_POS_Y as usize;
    let j = UNIT_POS_X as usize;
    let c = UNIT_POS_Y as usize;
    let unit = c * units + j;
    let d = g * channels + c;
    let valid = d < dim;
    let dc = if valid { d } else { dim - 1 };
    let row = (b * dim + dc) * len;
    let bc = b * n_state * len;
    let slot = unit * width;
    let mut xs = SharedMemory::<f32>::new(comptime!(channels * units * width));
    let mut carry = SharedMemory::<f32>::new(comptime!(channels * n_state));
    let dd = f32::cast_from(dskip[dc]);

    let mut n0 = j;
    while n0 < n_state {
        carry[c * n_state + n0] = 0.0f32;
        n0 += units;
    }
    // Per-state values indexed by a runtime `n`, touched once per state and chunk.
    let mut hin = Array::<f32>::new(n_state);
    let mut qin = Array::<f32>::new(n_state);
    let mut da = Array::<f32>::new(n_state);
    for n in 0..n_state {
        da[n] = 0.0f32;
    }
    let mut dd_acc = 0.0f32;
    // Per-step values of this unit's `items` steps, in registers (unrolled loops).
    let mut dts = Array::<f32>::new(items);
    let mut us = Array::<f32>::new(items);
    let mut dys = Array::<f32>::new(items);
    let mut dus = Array::<f32>::new(items);
    let mut ddts = Array::<f32>::new(items);
    let mut hp = Array::<f32>::new(items);
    let mut decs = Array::<f32>::new(items);
    let mut bns = Array::<f32>::new(items);

    for r in 0..nchunks {
        let ck = nchunks - 1 - r;
        let t0 = ck * chunk + j * items;
        let mut sdt = 0.0f32;
        #[unroll]
        for k in 0..items {
            let t = t0 + k;
            let inb = valid && t < len;
            let tc = if t < len { t } else { len - 1 };
            let dt = f32::cast_from(delta[row + tc]);
            let dyt = f32::cast_from(dy[row + tc]);
            // Δ = dy = 0 past the end or the last channel: an identity step contributing nothing.
            dts[k] = select(inb, dt, 0.0f32);
            dys[k] = select(inb, dyt, 0.0f32);
            us[k] = f32::cast_from(u[row + tc]);
            sdt += dts[k];
            dd_acc += dys[k] * us[k];
        }

        // Phase 1: forward state from zero (s) and reverse adjoint from zero (q):
        // q = Σ_k (Π_{i≤k} a_i) C_k dy_k is what this unit hands to the step before it.
        for n in 0..n_state {
            let an = f32::cast_from(a[dc * n_state + n]);
            let mut s = 0.0f32;
            let mut p = 1.0f32;
            let mut q = 0.0f32;
            #[unroll]
            for k in 0..items {
                let t = t0 + k;
                let tc = if t < len { t } else { len - 1 };
                let bn = f32::cast_from(bm[bc + n * len + tc]);
                let cn = f32::cast_from(cm[bc + n * len + tc]);
                let dec = (dts[k] * an).exp();
                s = dec * s + dts[k] * us[k] * bn;
                p *= dec;
                q += p * cn * dys[k];
            }
            xs[slot + n] = s;
            qin[n] = q;
        }
        xs[slot + n_state] = sdt;
        sync_cube();

        // Phase 2a: entry states, folded left to right from the saved chunk entry state.
        let mut n1 = j;
        while n1 < n_state {
            let an = f32::cast_from(a[dc * n_state + n1]);
            let mut h = bounds[((b * dim + dc) * nchunks + ck) * n_state + n1];
            for i in 0..units {
                let si = (c * units + i) * width;
                let s = xs[si + n1];
                xs[si + n1] = h;
                h = (xs[si + n_state] * an).exp() * h + s;
            }
            n1 += units;
        }
        sync_cube();
        for n in 0..n_state {
            hin[n] = xs[slot + n];
        }
        sync_cube();
        for n in 0..n_state {
            xs[slot + n] = qin[n];
        }
        sync_cube();

        // Phase 2b: adjoints entering each unit from its right, folded right to left from the
        // adjoint the next chunk handed over (carry).
        let mut n2 = j;
        while n2 < n_state {
            let an = f32::cast_from(a[dc * n_state + n2]);
            let mut q = carry[c * n_state + n2];
            for ir in 0..units {
                let si = (c * units + (units - 1 - ir)) * width;
                let s = xs[si + n2];
                xs[si + n2] = q;
                q = (xs[si + n_state] * an).exp() * q + s;
            }
            carry[c * n_state + n2] = q;
            n2 += units;
        }
        sync_cube();
        for n in 0..n_state {
            qin[n] = xs[slot + n];
        }
        // The staging area is reused for dB/dC below.
        sync_cube();

        // Phase 3, one state at a time: states forward into registers, then the adjoint backward.
        #[unroll]
        for k in 0..items {
            dus[k] = dd * dys[k];
            ddts[k] = 0.0f32;
        }
        for n in 0..n_state {
            let an = f32::cast_from(a[dc * n_state + n]);
            let mut h = hin[n];
            #[unroll]
            for k in 0..items {
                let t = t0 + k;
                let tc = if t < len { t } else { len - 1 };
                bns[k] = f32::cast_from(bm[bc + n * len + tc]);
                hp[k] = h;
                decs[k] = (dts[k] * an).exp();
                h = decs[k] * h + dts[k] * us[k] * bns[k];
            }
            let mut qc = qin[n];
            let mut dan = 0.0f32;
            #[unroll]
            for kr in 0..items {
                let k = comptime!(items - 1 - kr);
                let t = t0 + k;
                let tc = if t < len { t } else { len - 1 };
                let bn = bns[k];
                let cn = f32::cast_from(cm[bc + n * len + tc]);
                let dec = decs[k];
                let ah = dec * hp[k]; // exp(Δ_t A) h_{t-1}
                let gn = cn * dys[k] + qc;
                dus[k] += dts[k] * gn * bn;
                ddts[k] += gn * (an * ah + us[k] * bn);
                dan += gn * dts[k] * ah;
                qc = dec * gn;
                xs[slot + k] = gn * dts[k] * us[k]; // this channel's dB_t[n]
                xs[slot + items + k] = dys[k] * (ah + dts[k] * us[k] * bn); // dC_t[n]
            }
            da[n] += dan;
            sync_cube();
            // Sum over the cube's channels in channel order: output o = (which, step of chunk).
            #[unroll]
            for m in 0..rounds {
                let o = unit + m * cube_units;
                if o < 2 * chunk {
                    let which = o / chunk;
                    let e = o % chunk;
                    let jj = e / items;
                    let kk = e % items;
                    let mut acc = 0.0f32;
                    for cc in 0..channels {
                        acc += xs[(cc * units + jj) * width + which * items + kk];
                    }
                    let t = ck * chunk + e;
                    let out = ((b * groups + g) * n_state + n) * len + t;
                    if t < len {
                        if which == 0 {
                            db_part[out] = acc;
                        } else {
                            dc_part[out] = acc;
                        }
                    }
                }
            }
            sync_cube();
        }
        #[unroll]
        for k in 0..items {
            let t = t0 + k;
            if valid && t < len {
                du[row + t] = F::cast_from(dus[k]);
                ddelta[row + t] = F::cast_from(ddts[k]);
            }
        }
    }

    // dA and dD of each channel: its units' sums, added in unit order.
    for n in 0..n_state {
        xs[slot + n] = da[n];
    }
    xs[slot + n_state] = dd_acc;
    sync_cube();
    let mut n3 = j;
    while n3 < n_state {
        let mut acc = 0.0f32;
        for i in 0..units {
            acc += xs[(c * units + i) * width + n3];
        }
        if valid {
            da_part[(b * dim + d) * n_state + n3] = acc;
        }
        n3 += units;
    }
    if j == 0 {
        let mut acc = 0.0f32;
        for i in 0..units {
            acc += xs[(c * units + i) * width + n_state];
        }
        if valid {
            dd_part[b * dim + d] = acc;
        }
    }
}

pub(super) fn cube_dim(cfg: SeqConfig) -> CubeDim {
    CubeDim::new_2d(cfg.units as u32, cfg.channels as u32)
}

fn cube_count(x_dim: usize, bsz: usize, cfg: SeqConfig) -> CubeCount {
    CubeCount::Static(x_dim.div_ceil(cfg.channels) as u32, bsz as u32, 1)
}

/// Launches the forward kernel; `y`/`last` and `bounds` as in [`seq_forward_kernel`] (a
/// one-element dummy where not written).
fn launch_forward<R: CubeRuntime>(
    x: &Inputs<R>,
    cfg: SeqConfig,
    y: CubeTensor<R>,
    last: CubeTensor<R>,
    bounds: CubeTensor<R>,
    write_y: bool,
) {
    cfg.check();
    seq_forward_kernel::launch::<R>(
        x.client(),
        cube_count(x.dim, x.bsz, cfg),
        cube_dim(cfg),
        x.u.clone().into_tensor_arg(),
        x.delta.clone().into_tensor_arg(),
        x.a.clone().into_tensor_arg(),
        x.b.clone().into_tensor_arg(),
        x.c.clone().into_tensor_arg(),
        x.d.clone().into_tensor_arg(),
        y.into_tensor_arg(),
        last.into_tensor_arg(),
        bounds.into_tensor_arg(),
        x.n,
        cfg.units,
        cfg.items,
        cfg.channels,
        write_y,
        !write_y,
        x.dtype.into(),
    );
}

/// `y [B, D, L]` and the final state `[B, D, N]` in the input element type.
pub(super) fn forward<R: CubeRuntime>(
    x: &Inputs<R>,
    cfg: SeqConfig,
) -> (CubeTensor<R>, CubeTensor<R>) {
    let y = x.empty(Shape::new([x.bsz, x.dim, x.len]), x.dtype);
    let last = x.empty(Shape::new([x.bsz, x.dim, x.n]), x.dtype);
    let unused = x.empty(Shape::new([1]), DType::F32);
    launch_forward(x, cfg, y.clone(), last.clone(), unused, true);
    (y, last)
}

/// Gradients of `sum(y ⊙ dy)`: the chunk-entry pre-pass, the backward kernel, then the in-order
/// sums over channel groups (dB, dC) and batch (dA, dD).
pub(super) fn backward<R: CubeRuntime>(
    x: &Inputs<R>,
    dy: CubeTensor<R>,
    cfg: SeqConfig,
) -> Grads<R> {
    let (bsz, dim, len, n) = (x.bsz, x.dim, x.len, x.n);
    let groups = dim.div_ceil(cfg.channels);
    let bounds = x.empty(
        Shape::new([bsz, dim, len.div_ceil(cfg.chunk()).max(1), n]),
        DType::F32,
    );
    let unused_y = x.empty(Shape::new([1]), x.dtype);
    let unused_last = x.empty(Shape::new([1]), x.dtype);
    launch_forward(x, cfg, unused_y, unused_last, bounds.clone(), false);

    let du = x.empty(Shape::new([bsz, dim, len]), x.dtype);
    let ddelta = x.empty(Shape::new([bsz, dim, len]), x.dtype);
    // Partials laid out [P, G, Q] for the in-order sums: over B for dA, dD; over the channel
    // groups for dB, dC.
    let da_part = x.empty(Shape::new([1, bsz, dim * n]), DType::F32);
    let dd_part = x.empty(Shape::new([1, bsz, dim]), DType::F32);
    let db_part = x.empty(Shape::new([bsz, groups, n * len]), DType::F32);
    let dc_part = x.empty(Shape::new([bsz, groups, n * len]), DType::F32);
    seq_backward_kernel::launch::<R>(
        x.client(),
        cube_count(dim, bsz, cfg),
        cube_dim(cfg),
        x.u.clone().into_tensor_arg(),
        x.delta.clone().into_tensor_arg(),
        x.a.clone().into_tensor_arg(),
        x.b.clone().into_tensor_arg(),
        x.c.clone().into_tensor_arg(),
        x.d.clone().into_tensor_arg(),
        dy.into_tensor_arg(),
        bounds.into_tensor_arg(),
        du.clone().into_tensor_arg(),
        ddelta.clone().into_tensor_arg(),
        da_part.clone().into_tensor_arg(),
        dd_part.clone().into_tensor_arg(),
        db_part.clone().into_tensor_arg(),
        dc_part.clone().into_tensor_arg(),
        n,
        cfg.units,
        cfg.items,
        cfg.channels,
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
