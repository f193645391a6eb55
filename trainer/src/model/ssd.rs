//! Mamba-2's state-space duality (SSD) as tensor ops: transformers' chunked `torch_forward`
//! (= mamba_ssm's `ssd_minimal_discrete`), written so that the heavy parts are batched matrix
//! products. Burn's autodiff gives the backward; every backend runs it as it is.
//!
//! Per chunk of `chunk` steps (the sequence zero-padded to a multiple of it, which leaves the
//! final state exact because padded steps have Δ·A = 0 and Δ·x = 0):
//! - intra-chunk ("diagonal blocks"): `Y_diag = (C Bᵀ ∘ L) (Δ x)` with
//!   `L[i, j] = exp(Σ_{k=j+1..i} Δ_k A)` for `i ≥ j`, built by the stable masked cumsum;
//! - each chunk's end state `S_c = Σ_t B_t exp(Acum_last − Acum_t) Δ_t x_t`;
//! - the inter-chunk recurrence as one product with the chunk-level decay matrix;
//! - `Y_off = exp(Acum) (C S_{c−1})`; then `y = Y_diag + Y_off + D x`.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// Inputs of the SSD for a batch: `x` `[B, L, H, P]`, `dt` (Δ after softplus and clamp)
/// `[B, L, H]`, `a` (= −exp(A_log)) `[H]`, `b`/`c` `[B, L, G, N]`, `d` `[H]`. Head `h` reads
/// group `h / (H / G)` (transformers' `repeat_interleave`).
pub struct SsdInputs<B: Backend> {
    pub x: Tensor<B, 4>,
    pub dt: Tensor<B, 3>,
    pub a: Tensor<B, 1>,
    pub b: Tensor<B, 4>,
    pub c: Tensor<B, 4>,
    pub d: Tensor<B, 1>,
}

/// `[1, 1, 1, n, n]` 0/1 mask of `i - j >= offset` (rows i, columns j).
fn lower_mask<B: Backend>(n: usize, offset: usize, device: &B::Device) -> Tensor<B, 5> {
    let v: Vec<f32> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            if i >= j + offset { 1.0 } else { 0.0 }
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [1, 1, 1, n, n]), device)
}

/// `exp(segment_sum(a))` over the last axis of `a` `[B, H, C, T]` → `[B, H, C, T, T]`:
/// entry `(i, j)` is `exp(a_{j+1} + … + a_i)` for `i ≥ j` and 0 above the diagonal. The sums are
/// cumulative sums of masked copies (never differences of a running sum), as transformers'
/// `segment_sum`, so long chunks lose no precision.
pub fn exp_segment_sum<B: Backend>(a: Tensor<B, 4>) -> Tensor<B, 5> {
    let [bsz, h, c, t] = a.dims();
    let device = a.device();
    let strict = lower_mask::<B>(t, 1, &device);
    let with_diag = lower_mask::<B>(t, 0, &device);
    // (i, j) = a_i where i > j, else 0; cumsum over i gives Σ_{k=j+1..i} a_k.
    let spread = a.reshape([bsz, h, c, t, 1]).expand([bsz, h, c, t, t]) * strict;
    spread.cumsum(3).exp() * with_diag
}

/// Run the SSD from a zero state: `y` `[B, L, H, P]` and the final state `[B, H, P, N]`.
pub fn ssd_chunked<B: Backend>(input: SsdInputs<B>, chunk: usize) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let SsdInputs { x, dt, a, b, c, d } = input;
    let [bsz, len, h, p] = x.dims();
    let [_, _, g, n] = b.dims();
    let hg = h / g;
    let device = x.device();
    let chunks = len.div_ceil(chunk).max(1);
    let padded = chunks * chunk;

    let d_res = x.clone() * d.reshape([1, 1, h, 1]);
    let xdt = x * dt.clone().reshape([bsz, len, h, 1]);
    let adt = dt * a.reshape([1, 1, h]);
    let pad = padded - len;
    let (xdt, adt, b, c) = if pad == 0 {
        (xdt, adt, b, c)
    } else {
        (
            Tensor::cat(vec![xdt, Tensor::zeros([bsz, pad, h, p], &device)], 1),
            Tensor::cat(vec![adt, Tensor::zeros([bsz, pad, h], &device)], 1),
            Tensor::cat(vec![b, Tensor::zeros([bsz, pad, g, n], &device)], 1),
            Tensor::cat(vec![c, Tensor::zeros([bsz, pad, g, n], &device)], 1),
        )
    };
    // Chunked, heads (groups) in front: x [B, H, C, T, P], a [B, H, C, T], B/C [B, G, C, T, N].
    let xdt = xdt
        .reshape([bsz, chunks, chunk, h, p])
        .permute([0, 3, 1, 2, 4]);
    let adt = adt.reshape([bsz, chunks, chunk, h]).permute([0, 3, 1, 2]);
    let b = b
        .reshape([bsz, chunks, chunk, g, n])
        .permute([0, 3, 1, 2, 4]);
    let c = c
        .reshape([bsz, chunks, chunk, g, n])
        .permute([0, 3, 1, 2, 4]);
    let a_cum = adt.clone().cumsum(3); // [B, H, C, T]
    let rows = bsz * h * chunks;
    let x_rows = xdt.reshape([rows, chunk, p]);

    // 1. Intra-chunk: (C Bᵀ per group) ∘ L per head, times Δx.
    let cb = c
        .clone()
        .reshape([bsz * g * chunks, chunk, n])
        .matmul(
            b.clone()
                .reshape([bsz * g * chunks, chunk, n])
                .swap_dims(1, 2),
        )
        .reshape([bsz, g, 1, chunks * chunk * chunk]);
    let decay_in = exp_segment_sum(adt).reshape([bsz, g, hg, chunks * chunk * chunk]);
    let y_diag = (cb * decay_in)
        .reshape([rows, chunk, chunk])
        .matmul(x_rows.clone());

    // 2. Each chunk's end state: (B ∘ exp(Acum_last − Acum))ᵀ (Δx) → [B, H, C, N, P].
    let last = a_cum.clone().narrow(3, chunk - 1, 1);
    let decay_out = (last.clone() - a_cum.clone()).exp();
    let b_heads = b
        .reshape([bsz, g, 1, chunks, chunk, n])
        .expand([bsz, g, hg, chunks, chunk, n]);
    let states = (b_heads * decay_out.reshape([bsz, g, hg, chunks, chunk, 1]))
        .reshape([rows, chunk, n])
        .swap_dims(1, 2)
        .matmul(x_rows)
        .reshape([bsz * h, chunks, n * p]);

    // 3. Inter-chunk recurrence: state entering chunk z = Σ_{c<z} exp(A_{c+1..z-1} sums) S_c.
    let chunk_a = Tensor::cat(
        vec![
            Tensor::zeros([bsz, h, 1, 1], &device),
            last.reshape([bsz, h, 1, chunks]),
        ],
        3,
    ); // [B, H, 1, C+1]
    let decay_chunk = exp_segment_sum(chunk_a).reshape([bsz * h, chunks + 1, chunks + 1]);
    let states = Tensor::cat(vec![Tensor::zeros([bsz * h, 1, n * p], &device), states], 1);
    let entering = decay_chunk.matmul(states); // [B·H, C+1, N·P]
    let final_state = entering
        .clone()
        .narrow(1, chunks, 1)
        .reshape([bsz, h, n, p])
        .swap_dims(2, 3);
    let entering = entering.narrow(1, 0, chunks).reshape([rows, n, p]);

    // 4. State → output per chunk: exp(Acum) ∘ (C S_entering).
    let c_heads = c
        .reshape([bsz, g, 1, chunks, chunk, n])
        .expand([bsz, g, hg, chunks, chunk, n]);
    let y_off =
        c_heads.reshape([rows, chunk, n]).matmul(entering) * a_cum.exp().reshape([rows, chunk, 1]);

    let y = (y_diag + y_off)
        .reshape([bsz, h, chunks, chunk, p])
        .permute([0, 2, 3, 1, 4])
        .reshape([bsz, padded, h, p]);
    let y = if pad == 0 { y } else { y.narrow(1, 0, len) };
    (y + d_res, final_state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    type Be = NdArray<f32>;

    fn rand_tensor<const D: usize>(
        rng: &mut StdRng,
        shape: [usize; D],
        lo: f32,
        hi: f32,
    ) -> Tensor<Be, D> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| lo + (hi - lo) * rng.random::<f32>())
            .collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    /// The recurrence step by step, in f64 on the host: h ← exp(Δ A) h + Δ B x, y = C h + D x.
    fn sequential(inp: &SsdInputs<Be>) -> (Vec<f64>, Vec<f64>) {
        let v = |t: Tensor<Be, 4>| -> Vec<f64> {
            t.into_data()
                .to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let [bsz, len, h, p] = inp.x.dims();
        let [_, _, g, n] = inp.b.dims();
        let (x, b, c) = (v(inp.x.clone()), v(inp.b.clone()), v(inp.c.clone()));
        let dt: Vec<f64> = inp
            .dt
            .clone()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let a: Vec<f64> = inp
            .a
            .clone()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let d: Vec<f64> = inp
            .d
            .clone()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let mut y = vec![0.0; bsz * len * h * p];
        let mut state = vec![0.0; bsz * h * p * n];
        for bi in 0..bsz {
            for t in 0..len {
                for hi in 0..h {
                    let gi = hi / (h / g);
                    let delta = dt[(bi * len + t) * h + hi];
                    let decay = (delta * a[hi]).exp();
                    for pi in 0..p {
                        let xv = x[((bi * len + t) * h + hi) * p + pi];
                        let mut out = d[hi] * xv;
                        for ni in 0..n {
                            let s = &mut state[((bi * h + hi) * p + pi) * n + ni];
                            let bv = b[((bi * len + t) * g + gi) * n + ni];
                            *s = decay * *s + delta * bv * xv;
                            out += c[((bi * len + t) * g + gi) * n + ni] * *s;
                        }
                        y[((bi * len + t) * h + hi) * p + pi] = out;
                    }
                }
            }
        }
        (y, state)
    }

    fn max_rel(got: &[f32], want: &[f64]) -> f64 {
        let scale = want.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-30);
        got.iter()
            .zip(want)
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .fold(0f64, f64::max)
            / scale
    }

    #[test]
    fn chunked_ssd_equals_the_recurrence() {
        let mut rng = StdRng::seed_from_u64(5);
        // (batch, len, heads, head_dim, groups, state, chunk): a partial last chunk, an exact
        // multiple, one step, a chunk longer than the sequence, several groups.
        for (bsz, len, h, p, g, n, chunk) in [
            (2, 37, 4, 3, 1, 5, 8),
            (1, 32, 6, 2, 2, 4, 16),
            (1, 1, 2, 2, 1, 3, 4),
            (2, 5, 4, 2, 2, 3, 16),
            (1, 20, 6, 2, 3, 2, 4),
        ] {
            let inp = SsdInputs {
                x: rand_tensor(&mut rng, [bsz, len, h, p], -1.0, 1.0),
                dt: rand_tensor(&mut rng, [bsz, len, h], 0.01, 0.5),
                a: rand_tensor(&mut rng, [h], -3.0, -0.1),
                b: rand_tensor(&mut rng, [bsz, len, g, n], -1.0, 1.0),
                c: rand_tensor(&mut rng, [bsz, len, g, n], -1.0, 1.0),
                d: rand_tensor(&mut rng, [h], 0.5, 1.5),
            };
            let (want_y, want_state) = sequential(&inp);
            let (y, state) = ssd_chunked(inp, chunk);
            assert_eq!(y.dims(), [bsz, len, h, p]);
            assert_eq!(state.dims(), [bsz, h, p, n]);
            let ey = max_rel(&y.into_data().to_vec::<f32>().unwrap(), &want_y);
            let es = max_rel(&state.into_data().to_vec::<f32>().unwrap(), &want_state);
            assert!(
                ey < 1e-5 && es < 1e-5,
                "len {len} chunk {chunk}: y {ey:e}, state {es:e}"
            );
        }
    }

    #[test]
    fn segment_sum_is_zero_above_the_diagonal_and_one_on_it() {
        let a = Tensor::<Be, 4>::from_data(
            TensorData::new(vec![-0.5f32, -1.0, -2.0], [1, 1, 1, 3]),
            &Default::default(),
        );
        let l = exp_segment_sum(a).into_data().to_vec::<f32>().unwrap();
        let e = |x: f32| x.exp();
        let want = [1.0, 0.0, 0.0, e(-1.0), 1.0, 0.0, e(-3.0), e(-2.0), 1.0];
        for (g, w) in l.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{l:?}");
        }
    }
}
