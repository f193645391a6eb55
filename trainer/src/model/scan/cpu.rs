//! `NdArray<f32>`: the selective scan as fused loops over the raw f32 buffers.
//!
//! Forward: one pass per (batch, channel) row, parallel over rows with rayon; the state
//! `h` (N floats) lives in a small per-thread buffer, so nothing of size `[B, D, L, N]` is
//! ever allocated. Backward: per row, recompute the states (and decays) into a per-thread
//! `L × N` scratch, then run the adjoint recurrence `g_t = C_t dy_t + exp(Δ_{t+1}A) g_{t+1}`
//! backwards and emit every input gradient on the way.
//!
//! `dB`/`dC` (`[B, N, L]`) and `dA`/`dD` are shared over channels (resp. batches): each
//! work item — a fixed block of [`CHANNEL_BLOCK`] channels of one batch row, independent of
//! the thread count — accumulates its own partial sums, and the partials are then added in
//! item order. Results are therefore bit-identical from run to run whatever the thread
//! count or scheduling. Only decays `exp(ΔA) ≤ 1` are formed; `exp` is a vectorizable
//! Cody–Waite + minimax polynomial (cephes `expf`, ~1 ulp).

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::{ScanBackend, ScanGrads, ScanInputs};

/// SIMD-friendly lane width: the state dimension is padded to a multiple of it.
const W: usize = 8;
/// Channels per backward work item (fixed, so the reduction order never changes).
pub const CHANNEL_BLOCK: usize = 32;

impl ScanBackend for NdArray<f32> {
    fn selective_scan_forward(x: ScanInputs<Self>) -> (Tensor<Self, 3>, Tensor<Self, 3>) {
        let device = x.u.device();
        let [bs, d, l] = x.u.dims();
        let n = x.a.dims()[1];
        let h = Host::from_inputs(x);
        let (y, last) = forward(&h);
        (
            Tensor::from_data(TensorData::new(y, [bs, d, l]), &device),
            Tensor::from_data(TensorData::new(last, [bs, d, n]), &device),
        )
    }

    fn selective_scan_backward(x: ScanInputs<Self>, dy: Tensor<Self, 3>) -> ScanGrads<Self> {
        let device = x.u.device();
        let [bs, d, l] = x.u.dims();
        let n = x.a.dims()[1];
        let h = Host::from_inputs(x);
        let dy = host_vec(dy);
        let g = backward(&h, &dy);
        ScanGrads {
            u: Tensor::from_data(TensorData::new(g.u, [bs, d, l]), &device),
            delta: Tensor::from_data(TensorData::new(g.delta, [bs, d, l]), &device),
            a: Tensor::from_data(TensorData::new(g.a, [d, n]), &device),
            b: Tensor::from_data(TensorData::new(g.b, [bs, n, l]), &device),
            c: Tensor::from_data(TensorData::new(g.c, [bs, n, l]), &device),
            d: Tensor::from_data(TensorData::new(g.d, [d]), &device),
        }
    }
}

fn host_vec<const D: usize>(t: Tensor<NdArray<f32>, D>) -> Vec<f32> {
    t.into_data()
        .into_vec::<f32>()
        .expect("NdArray<f32> tensors hold f32")
}

/// Scan inputs on the host, row-major as in [`ScanInputs`]: `u`, `delta` `[B, D, L]`,
/// `a` `[D, N]`, `b`, `c` `[B, N, L]`, `d` `[D]`.
#[derive(Clone, Debug)]
pub struct Host {
    pub bs: usize,
    pub dim: usize,
    pub n: usize,
    pub len: usize,
    pub u: Vec<f32>,
    pub delta: Vec<f32>,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub c: Vec<f32>,
    pub d: Vec<f32>,
}

impl Host {
    pub fn from_inputs(x: ScanInputs<NdArray<f32>>) -> Self {
        let [bs, dim, len] = x.u.dims();
        let n = x.a.dims()[1];
        Host {
            bs,
            dim,
            n,
            len,
            u: host_vec(x.u),
            delta: host_vec(x.delta),
            a: host_vec(x.a),
            b: host_vec(x.b),
            c: host_vec(x.c),
            d: host_vec(x.d),
        }
    }
}

/// Gradients on the host, same layouts as [`Host`]'s inputs.
#[derive(Clone, Debug)]
pub struct ScanGradsHost {
    pub u: Vec<f32>,
    pub delta: Vec<f32>,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub c: Vec<f32>,
    pub d: Vec<f32>,
}

/// `exp(x)`, branch-free so loops over it vectorize: Cody–Waite reduction by ln 2 and the
/// cephes `expf` polynomial (relative error ~1e-7). The input is clamped to [-86, 88]
/// (exp(-86) ≈ 4e-38 stands in for smaller decays; keeps results normal, never inf).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // max/min, not clamp: a NaN input becomes exp(-86) as it always has (clamp would keep it).
    #[allow(clippy::manual_clamp)]
    let x = x.max(-86.0).min(88.0);
    let t = x * LOG2E + MAGIC;
    let k = t - MAGIC;
    let r = x - k * LN2_HI - k * LN2_LO;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * z + r + 1.0;
    // t's bits are 0x4B40_0000 + k; the float 2^k has bits (k + 127) << 23.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    p * scale
}

/// `[B, N, L]` → `[B, L, NP]` (state dimension padded with zeros to `np`).
fn to_time_major(x: &[f32], bs: usize, n: usize, len: usize, np: usize) -> Vec<f32> {
    let mut out = vec![0.0; bs * len * np];
    for b in 0..bs {
        for j in 0..n {
            let src = &x[(b * n + j) * len..][..len];
            for (t, v) in src.iter().enumerate() {
                out[(b * len + t) * np + j] = *v;
            }
        }
    }
    out
}

/// Padded layouts shared by forward and backward.
struct Prepared {
    np: usize,
    /// `[D, NP]`, padding 0 (decay exp(0) = 1 on lanes whose inputs are all 0).
    a: Vec<f32>,
    /// `[B, L, NP]`
    b: Vec<f32>,
    /// `[B, L, NP]`
    c: Vec<f32>,
}

fn prepare(h: &Host) -> Prepared {
    let np = h.n.div_ceil(W).max(1) * W;
    let mut a = vec![0.0; h.dim * np];
    for d in 0..h.dim {
        a[d * np..d * np + h.n].copy_from_slice(&h.a[d * h.n..(d + 1) * h.n]);
    }
    Prepared {
        np,
        a,
        b: to_time_major(&h.b, h.bs, h.n, h.len, np),
        c: to_time_major(&h.c, h.bs, h.n, h.len, np),
    }
}

/// Forward scan of one row; writes `y` (len L) and optionally all states `[L, NP]` and
/// decays `[L, NP]`; leaves the final state in `state`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan_row(
    u: &[f32],
    delta: &[f32],
    a: &[f32],
    bt: &[f32],
    ct: &[f32],
    dskip: f32,
    y: Option<&mut [f32]>,
    state: &mut [f32],
    mut keep: Option<(&mut [f32], &mut [f32])>,
) {
    let np = a.len();
    state.fill(0.0);
    let mut y = y;
    for t in 0..u.len() {
        let (dt, ut) = (delta[t], u[t]);
        let dtu = dt * ut;
        let brow = &bt[t * np..][..np];
        let crow = &ct[t * np..][..np];
        let mut acc = [0f32; W];
        for k in (0..np).step_by(W) {
            let hs: &mut [f32; W] = (&mut state[k..k + W]).try_into().unwrap();
            let aa: &[f32; W] = a[k..k + W].try_into().unwrap();
            let bb: &[f32; W] = brow[k..k + W].try_into().unwrap();
            let cc: &[f32; W] = crow[k..k + W].try_into().unwrap();
            let mut da = [0f32; W];
            for j in 0..W {
                da[j] = exp_f32(dt * aa[j]);
                hs[j] = da[j] * hs[j] + dtu * bb[j];
                acc[j] += cc[j] * hs[j];
            }
            if let Some((hk, dk)) = keep.as_mut() {
                hk[t * np + k..][..W].copy_from_slice(hs);
                dk[t * np + k..][..W].copy_from_slice(&da);
            }
        }
        if let Some(y) = y.as_mut() {
            y[t] = hsum(&acc) + dskip * ut;
        }
    }
}

/// Sum of the lanes in a fixed order (pairwise).
#[inline(always)]
fn hsum(v: &[f32; W]) -> f32 {
    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

/// Fused forward: `(y [B, D, L], h_{L-1} [B, D, N])`.
pub fn forward(h: &Host) -> (Vec<f32>, Vec<f32>) {
    let (bs, dim, n, len) = (h.bs, h.dim, h.n, h.len);
    let mut y = vec![0.0; bs * dim * len];
    let mut last = vec![0.0; bs * dim * n];
    if len == 0 {
        return (y, last);
    }
    let p = prepare(h);
    let np = p.np;
    y.par_chunks_mut(len)
        .zip(last.par_chunks_mut(n))
        .enumerate()
        .for_each_init(
            || vec![0f32; np],
            |state, (row, (yr, lr))| {
                let (b, d) = (row / dim, row % dim);
                let o = row * len;
                scan_row(
                    &h.u[o..o + len],
                    &h.delta[o..o + len],
                    &p.a[d * np..(d + 1) * np],
                    &p.b[b * len * np..(b + 1) * len * np],
                    &p.c[b * len * np..(b + 1) * len * np],
                    h.d[d],
                    Some(yr),
                    state,
                    None,
                );
                lr.copy_from_slice(&state[..n]);
            },
        );
    (y, last)
}

/// Per-item partial sums of the shared gradients.
struct Partial {
    /// `[L, NP]` for the item's batch row.
    db: Vec<f32>,
    dc: Vec<f32>,
    /// `[channels, NP]`
    da: Vec<f32>,
    /// `[channels]`
    dd: Vec<f32>,
}

/// Per-thread scratch: states and decays of one row, `[L, NP]` each, and the adjoint.
struct Scratch {
    hs: Vec<f32>,
    das: Vec<f32>,
    state: Vec<f32>,
    g: Vec<f32>,
}

/// Fused backward: gradients of `sum(y ⊙ dy)` w.r.t. every input.
pub fn backward(h: &Host, dy: &[f32]) -> ScanGradsHost {
    let (bs, dim, n, len) = (h.bs, h.dim, h.n, h.len);
    assert_eq!(dy.len(), bs * dim * len, "dy must be [B, D, L]");
    let mut du = vec![0.0; bs * dim * len];
    let mut ddelta = vec![0.0; bs * dim * len];
    if len == 0 {
        return ScanGradsHost {
            u: du,
            delta: ddelta,
            a: vec![0.0; dim * n],
            b: vec![0.0; bs * n * len],
            c: vec![0.0; bs * n * len],
            d: vec![0.0; dim],
        };
    }
    let p = prepare(h);
    let np = p.np;
    let nblk = dim.div_ceil(CHANNEL_BLOCK);

    // Work items: (batch, channel block), each owning its rows of du / ddelta.
    let items: Vec<(usize, usize, &mut [f32], &mut [f32])> = du
        .chunks_mut(dim * len)
        .zip(ddelta.chunks_mut(dim * len))
        .enumerate()
        .flat_map(|(b, (dub, ddb))| {
            dub.chunks_mut(CHANNEL_BLOCK * len)
                .zip(ddb.chunks_mut(CHANNEL_BLOCK * len))
                .enumerate()
                .map(move |(k, (x, y))| (b, k, x, y))
        })
        .collect();

    let partials: Vec<Partial> = items
        .into_par_iter()
        .map_init(
            || Scratch {
                hs: vec![0.0; len * np],
                das: vec![0.0; len * np],
                state: vec![0.0; np],
                g: vec![0.0; np],
            },
            |s, (b, k, du_blk, dd_blk)| {
                let d0 = k * CHANNEL_BLOCK;
                let nch = du_blk.len() / len;
                let mut part = Partial {
                    db: vec![0.0; len * np],
                    dc: vec![0.0; len * np],
                    da: vec![0.0; nch * np],
                    dd: vec![0.0; nch],
                };
                let bt = &p.b[b * len * np..(b + 1) * len * np];
                let ct = &p.c[b * len * np..(b + 1) * len * np];
                for i in 0..nch {
                    let d = d0 + i;
                    let o = (b * dim + d) * len;
                    let a = &p.a[d * np..(d + 1) * np];
                    let (u, delta, dyr) = (&h.u[o..o + len], &h.delta[o..o + len], &dy[o..o + len]);
                    scan_row(
                        u,
                        delta,
                        a,
                        bt,
                        ct,
                        0.0,
                        None,
                        &mut s.state,
                        Some((&mut s.hs, &mut s.das)),
                    );
                    row_backward(
                        u,
                        delta,
                        dyr,
                        a,
                        bt,
                        ct,
                        h.d[d],
                        &s.hs,
                        &s.das,
                        &mut s.g,
                        &mut du_blk[i * len..(i + 1) * len],
                        &mut dd_blk[i * len..(i + 1) * len],
                        &mut part.db,
                        &mut part.dc,
                        &mut part.da[i * np..(i + 1) * np],
                        &mut part.dd[i],
                    );
                }
                part
            },
        )
        .collect();

    // Deterministic reductions, in item order.
    let mut db_t = vec![0f32; bs * len * np];
    let mut dc_t = vec![0f32; bs * len * np];
    db_t.par_chunks_mut(len * np)
        .zip(dc_t.par_chunks_mut(len * np))
        .enumerate()
        .for_each(|(b, (dbb, dcb))| {
            for part in &partials[b * nblk..(b + 1) * nblk] {
                for (x, v) in dbb.iter_mut().zip(&part.db) {
                    *x += v;
                }
                for (x, v) in dcb.iter_mut().zip(&part.dc) {
                    *x += v;
                }
            }
        });
    let mut da = vec![0f32; dim * n];
    let mut dd = vec![0f32; dim];
    for b in 0..bs {
        for k in 0..nblk {
            let part = &partials[b * nblk + k];
            for (i, ddv) in part.dd.iter().enumerate() {
                let d = k * CHANNEL_BLOCK + i;
                dd[d] += ddv;
                for j in 0..n {
                    da[d * n + j] += part.da[i * np + j];
                }
            }
        }
    }
    // [B, L, NP] → [B, N, L]
    let from_time_major = |x: &[f32]| {
        let mut out = vec![0f32; bs * n * len];
        for b in 0..bs {
            for t in 0..len {
                for j in 0..n {
                    out[(b * n + j) * len + t] = x[(b * len + t) * np + j];
                }
            }
        }
        out
    };
    ScanGradsHost {
        u: du,
        delta: ddelta,
        a: da,
        b: from_time_major(&db_t),
        c: from_time_major(&dc_t),
        d: dd,
    }
}

/// Adjoint recurrence of one row, from the stored states `hs` and decays `das` (`[L, NP]`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_backward(
    u: &[f32],
    delta: &[f32],
    dy: &[f32],
    a: &[f32],
    bt: &[f32],
    ct: &[f32],
    dskip: f32,
    hs: &[f32],
    das: &[f32],
    g: &mut [f32],
    du: &mut [f32],
    ddelta: &mut [f32],
    db: &mut [f32],
    dc: &mut [f32],
    da_acc: &mut [f32],
    dd_acc: &mut f32,
) {
    let np = a.len();
    let len = u.len();
    g.fill(0.0);
    let mut dd_sum = 0f32;
    for t in (0..len).rev() {
        let (dt, ut, dyt) = (delta[t], u[t], dy[t]);
        let dtu = dt * ut;
        let mut acc_exp = [0f32; W]; // Σ_n g h_{t-1} e^{ΔA} A
        let mut acc_gb = [0f32; W]; // Σ_n g B
        for k in (0..np).step_by(W) {
            let gk: &mut [f32; W] = (&mut g[k..k + W]).try_into().unwrap();
            let aa: &[f32; W] = a[k..k + W].try_into().unwrap();
            let bb: &[f32; W] = bt[t * np + k..][..W].try_into().unwrap();
            let cc: &[f32; W] = ct[t * np + k..][..W].try_into().unwrap();
            let hcur: &[f32; W] = hs[t * np + k..][..W].try_into().unwrap();
            let dcur: &[f32; W] = das[t * np + k..][..W].try_into().unwrap();
            let dak: &mut [f32; W] = (&mut da_acc[k..k + W]).try_into().unwrap();
            let dbk: &mut [f32; W] = (&mut db[t * np + k..][..W]).try_into().unwrap();
            let dck: &mut [f32; W] = (&mut dc[t * np + k..][..W]).try_into().unwrap();
            // g_t = C_t dy_t + e^{Δ_{t+1}A} g_{t+1}
            if t + 1 < len {
                let dnext: &[f32; W] = das[(t + 1) * np + k..][..W].try_into().unwrap();
                for j in 0..W {
                    gk[j] = dnext[j] * gk[j] + cc[j] * dyt;
                }
            } else {
                for j in 0..W {
                    gk[j] = cc[j] * dyt;
                }
            }
            let hprev: [f32; W] = if t > 0 {
                hs[(t - 1) * np + k..][..W].try_into().unwrap()
            } else {
                [0.0; W]
            };
            for j in 0..W {
                let dexp = gk[j] * hprev[j] * dcur[j];
                acc_exp[j] += dexp * aa[j];
                dak[j] += dexp * dt;
                acc_gb[j] += gk[j] * bb[j];
                dbk[j] += gk[j] * dtu;
                dck[j] += dyt * hcur[j];
            }
        }
        let gb = hsum(&acc_gb);
        ddelta[t] = hsum(&acc_exp) + gb * ut;
        du[t] = gb * dt + dyt * dskip;
        dd_sum += dyt * ut;
    }
    *dd_acc += dd_sum;
}

#[cfg(test)]
mod tests {
    use super::super::reference;
    use super::super::tests::{NAMES, grads_vec, inputs, rel, to_vec};
    use super::*;

    type Be = NdArray<f32>;

    #[test]
    fn exp_f32_is_accurate_on_the_decay_range() {
        let mut worst = 0f64;
        let mut x = -86.0f32;
        while x <= 5.0 {
            let e = exp_f32(x) as f64;
            let r = (x as f64).exp();
            worst = worst.max(((e - r) / r).abs());
            x += 0.001_37;
        }
        assert!(worst < 3e-7, "max rel err {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        // Far below the clamp: a tiny positive decay, never NaN or inf.
        let tiny = exp_f32(-1e6);
        assert!(tiny > 0.0 && tiny < 1e-37 && tiny.is_normal());
    }

    #[test]
    fn fused_strong_decay_stays_finite() {
        // Δ A = -1e4 per step: each step forgets the past, h_t = Δ B u = 100, y = 3 · 100.
        let (bs, d, n, len) = (1, 2, 3, 50);
        let host = Host {
            bs,
            dim: d,
            n,
            len,
            u: vec![1.0; bs * d * len],
            delta: vec![100.0; bs * d * len],
            a: vec![-100.0; d * n],
            b: vec![1.0; bs * n * len],
            c: vec![1.0; bs * n * len],
            d: vec![0.0; d],
        };
        let (y, _) = forward(&host);
        assert!(y.iter().all(|v| (v - 300.0).abs() < 1e-3), "{:?}", &y[..5]);
        let g = backward(&host, &vec![1.0; bs * d * len]);
        for v in [&g.u, &g.delta, &g.a, &g.b, &g.c, &g.d] {
            assert!(v.iter().all(|x| x.is_finite()));
        }
    }

    /// Shapes: odd L, L = 1, state sizes straddling the 8-lane padding, channels not a
    /// multiple of CHANNEL_BLOCK.
    const SHAPES: [(usize, usize, usize, usize); 6] = [
        (1, 3, 4, 1),
        (2, 5, 3, 7),
        (2, 37, 5, 33),
        (1, 4, 16, 19),
        (3, 2, 17, 10),
        (1, 70, 9, 64),
    ];

    #[test]
    fn fused_forward_and_backward_match_tensor_ops() {
        let dev = Default::default();
        for (i, &(bs, d, n, len)) in SHAPES.iter().enumerate() {
            let x = inputs::<Be>(bs, d, n, len, 100 + i as u64, &dev);
            let dy = inputs::<Be>(bs, d, n, len, 200 + i as u64, &dev).u;
            let (y, last) = Be::selective_scan_forward(x.clone());
            let (y0, last0) = reference::forward(x.clone(), 4);
            let ry = rel(&to_vec(y), &to_vec(y0));
            let rl = rel(&to_vec(last), &to_vec(last0));
            assert!(
                ry < 2e-6 && rl < 2e-6,
                "{bs}x{d}x{n}x{len}: y {ry}, last {rl}"
            );
            let ours = grads_vec(Be::selective_scan_backward(x.clone(), dy.clone()));
            let reference = grads_vec(reference::backward(x, dy, 4));
            for k in 0..6 {
                let r = rel(&ours[k], &reference[k]);
                assert!(r < 1e-5, "{bs}x{d}x{n}x{len} d{}: rel {r}", NAMES[k]);
            }
        }
    }

    fn field_of(k: usize) -> fn(&mut Host) -> &mut Vec<f32> {
        match k {
            0 => |h: &mut Host| &mut h.u,
            1 => |h: &mut Host| &mut h.delta,
            2 => |h: &mut Host| &mut h.a,
            3 => |h: &mut Host| &mut h.b,
            4 => |h: &mut Host| &mut h.c,
            _ => |h: &mut Host| &mut h.d,
        }
    }

    /// Literal f64 recurrence: sum(y ⊙ dy).
    fn objective_f64(h: &Host, dy: &[f32]) -> f64 {
        let (bs, dim, n, len) = (h.bs, h.dim, h.n, h.len);
        let mut total = 0f64;
        for b in 0..bs {
            for d in 0..dim {
                let mut st = vec![0f64; n];
                for t in 0..len {
                    let o = (b * dim + d) * len + t;
                    let (dt, ut) = (h.delta[o] as f64, h.u[o] as f64);
                    let mut y = h.d[d] as f64 * ut;
                    for (j, s) in st.iter_mut().enumerate() {
                        let bn = h.b[(b * n + j) * len + t] as f64;
                        let cn = h.c[(b * n + j) * len + t] as f64;
                        *s = (dt * h.a[d * n + j] as f64).exp() * *s + dt * bn * ut;
                        y += cn * *s;
                    }
                    total += y * dy[o] as f64;
                }
            }
        }
        total
    }

    #[test]
    fn fused_backward_matches_finite_differences() {
        let dev = Default::default();
        for (i, &(bs, d, n, len)) in [(2, 3, 5, 9), (1, 2, 3, 1), (1, 3, 9, 6)]
            .iter()
            .enumerate()
        {
            let host = Host::from_inputs(inputs::<Be>(bs, d, n, len, 300 + i as u64, &dev));
            let dy = to_vec(inputs::<Be>(bs, d, n, len, 400 + i as u64, &dev).u);
            let g = backward(&host, &dy);
            let grads = [&g.u, &g.delta, &g.a, &g.b, &g.c, &g.d];
            for (k, grad) in grads.iter().enumerate() {
                // Central differences of the f64 recurrence; the perturbed input stays f32-exact
                // by perturbing a copy in f64 space through a scaled step.
                let mut fd = vec![0f32; grad.len()];
                for (idx, out) in fd.iter_mut().enumerate() {
                    let eps = 1e-3f32;
                    let mut plus = host.clone();
                    let mut minus = host.clone();
                    let field = field_of(k);
                    let v = field(&mut plus)[idx];
                    field(&mut plus)[idx] = v + eps;
                    field(&mut minus)[idx] = v - eps;
                    let step = (field(&mut plus)[idx] as f64) - (field(&mut minus)[idx] as f64);
                    *out = ((objective_f64(&plus, &dy) - objective_f64(&minus, &dy)) / step) as f32;
                }
                let r = rel(grad, &fd);
                assert!(r < 1e-4, "{bs}x{d}x{n}x{len} d{}: rel to FD {r}", NAMES[k]);
            }
        }
    }

    #[test]
    fn fused_scan_is_bit_identical_across_runs_and_thread_counts() {
        let dev = Default::default();
        let (bs, d, n, len) = (2, 75, 16, 41);
        let host = Host::from_inputs(inputs::<Be>(bs, d, n, len, 7, &dev));
        let dy = to_vec(inputs::<Be>(bs, d, n, len, 8, &dev).u);
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let (y, last) = forward(&host);
                    let g = backward(&host, &dy);
                    [y, last, g.u, g.delta, g.a, g.b, g.c, g.d]
                })
        };
        let first = run(1);
        for threads in [1, 2, 3, 8] {
            let again = run(threads);
            for (a, b) in first.iter().zip(&again) {
                assert!(
                    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{threads} threads differ"
                );
            }
        }
    }
}
