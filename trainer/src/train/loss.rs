//! The language-model losses: per-token next-token NLLs, their mean (pretraining, parity
//! scoring) and masked sums (fine-tuning on the answer tokens; perplexity with padding masked).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// NLL of each next token: logits `[B, L, V]`, ids `[B, L]` → `[B, L-1]`, where entry
/// `(b, t)` is `-log p(ids[b, t+1] | ids[b, ..=t])`.
pub fn next_token_nll<B: Backend>(logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [bsz, len, v] = logits.dims();
    let lp = log_softmax(
        logits.narrow(1, 0, len - 1).reshape([bsz * (len - 1), v]),
        1,
    );
    let tgt = ids.narrow(1, 1, len - 1).reshape([bsz * (len - 1), 1]);
    lp.gather(1, tgt).neg().reshape([bsz, len - 1])
}

/// Per-target training loss `[B, L-1]` with label smoothing `eps` (PyTorch's
/// `CrossEntropyLoss(label_smoothing=eps)`): `(1 - eps) · NLL + eps · mean_v(-log p_v)`, the
/// cross-entropy against a target that puts `1 - eps` on the next token and `eps` spread evenly
/// over the whole vocabulary. `eps = 0` is [`next_token_nll`].
pub fn next_token_loss<B: Backend>(
    logits: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
    eps: f64,
) -> Tensor<B, 2> {
    if eps == 0.0 {
        return next_token_nll(logits, ids);
    }
    let [bsz, len, v] = logits.dims();
    let lp = log_softmax(
        logits.narrow(1, 0, len - 1).reshape([bsz * (len - 1), v]),
        1,
    );
    let tgt = ids.narrow(1, 1, len - 1).reshape([bsz * (len - 1), 1]);
    let nll = lp.clone().gather(1, tgt).neg();
    let uniform = lp.sum_dim(1).neg().div_scalar(v as f64);
    (nll.mul_scalar(1.0 - eps) + uniform.mul_scalar(eps)).reshape([bsz, len - 1])
}

/// `[B, L]` mask of the real tokens of rows whose first `lengths[b]` tokens are real (the rest
/// padding): as a target mask for [`masked_nll_sum`], no padding token is ever a target.
pub fn length_mask<B: Backend>(lengths: &[usize], len: usize, device: &B::Device) -> Tensor<B, 2> {
    let flat: Vec<f32> = lengths
        .iter()
        .flat_map(|&n| (0..len).map(move |t| if t < n { 1.0 } else { 0.0 }))
        .collect();
    Tensor::from_data(
        burn::tensor::TensorData::new(flat, [lengths.len(), len]),
        device,
    )
}

/// Targets a row with `length` real tokens has: positions `1..length`.
pub fn targets_of(length: usize) -> usize {
    length.saturating_sub(1)
}

/// Mean next-token cross-entropy over all `B·(L−1)` targets (labels = ids, shifted).
pub fn causal_lm_loss<B: Backend>(logits: Tensor<B, 3>, ids: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    next_token_nll(logits, ids).mean()
}

/// Sum of the NLLs of the target positions `t` with `mask[b, t] = 1`, where `mask` is `[B, L]`
/// and marks target tokens in `ids` (position 0 is never predicted and is ignored).
pub fn masked_nll_sum<B: Backend>(
    logits: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    masked_loss_sum(logits, ids, mask, 0.0)
}

/// [`masked_nll_sum`] of the label-smoothed loss ([`next_token_loss`]).
pub fn masked_loss_sum<B: Backend>(
    logits: Tensor<B, 3>,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2>,
    eps: f64,
) -> Tensor<B, 1> {
    let len = mask.dims()[1];
    let loss = next_token_loss(logits, ids, eps);
    sum_all(loss * mask.narrow(1, 1, len - 1))
}

/// The sum of every element, in a fixed order on every backend. (`Tensor::sum` on CubeCL
/// backends adds with float atomics, so its last bits vary run to run; a reduction along one
/// dimension does not. On the CPU both are the same sum.)
///
/// In two stages above 16,384 elements (rows of √n summed, then the row sums), so that a GPU
/// backend reducing one output per thread (burn's fixed reduce strategy without autotune) does
/// not read 38.6M floats (mamba-130m's embedding gradient) in one thread; the order is fixed,
/// so the sum is as reproducible as a one-stage one. The padding is zeros: exact.
pub fn sum_all<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, 1> {
    let flat = t.flatten::<1>(0, D - 1);
    let n = flat.dims()[0];
    if n <= TWO_STAGE_ABOVE {
        return flat.sum_dim(0);
    }
    let rows = (n as f64).sqrt().ceil() as usize;
    let cols = n.div_ceil(rows);
    let flat = if rows * cols > n {
        let device = flat.device();
        Tensor::cat(vec![flat, Tensor::zeros([rows * cols - n], &device)], 0)
    } else {
        flat
    };
    flat.reshape([rows, cols])
        .sum_dim(1)
        .reshape([rows])
        .sum_dim(0)
}

/// Sizes [`sum_all`] reduces in one stage.
const TWO_STAGE_ABOVE: usize = 1 << 14;

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type Be = burn::backend::NdArray<f32>;

    #[test]
    fn masked_sum_scores_only_marked_targets() {
        let dev = Default::default();
        // Uniform logits over V=4: every NLL is ln 4.
        let logits = Tensor::<Be, 3>::zeros([2, 3, 4], &dev);
        let ids = Tensor::<Be, 2, Int>::from_data(
            TensorData::new(vec![1i64, 2, 3, 1, 0, 0], [2, 3]),
            &dev,
        );
        let mask = Tensor::<Be, 2>::from_data(
            TensorData::new(vec![0f32, 1., 1., 0., 1., 0.], [2, 3]),
            &dev,
        );
        let s: f32 = masked_nll_sum(logits, ids, mask).into_scalar();
        assert!((s - 3.0 * 4f32.ln()).abs() < 1e-5);
    }

    /// Label smoothing against the formula by hand: logits [0, ln 3] predicting id 1 with eps = 0.1
    /// give 0.9·ln(4/3) + 0.1·(ln 4 + ln(4/3))/2.
    #[test]
    fn label_smoothing_matches_hand_computed_value() {
        let dev = Default::default();
        let logits = Tensor::<Be, 3>::from_data(
            TensorData::new(vec![0f32, 3f32.ln(), 0., 0.], [1, 2, 2]),
            &dev,
        );
        let ids = Tensor::<Be, 2, Int>::from_data(TensorData::new(vec![0i64, 1], [1, 2]), &dev);
        let l: f32 = next_token_loss(logits.clone(), ids.clone(), 0.1)
            .sum()
            .into_scalar();
        let (p0, p1) = (0.25f64, 0.75f64);
        let want = 0.9 * -p1.ln() + 0.1 * (-(p0.ln()) - p1.ln()) / 2.0;
        assert!((l as f64 - want).abs() < 1e-6, "{l} vs {want}");
        let plain: f32 = next_token_loss(logits, ids, 0.0).sum().into_scalar();
        assert!((plain as f64 + p1.ln()).abs() < 1e-6);
    }

    /// The length mask leaves padding out: a row of 2 real tokens scores 1 target.
    #[test]
    fn length_mask_excludes_padding_targets() {
        let dev = Default::default();
        let m = length_mask::<Be>(&[2, 4], 4, &dev);
        assert_eq!(
            m.into_data().to_vec::<f32>().unwrap(),
            [1., 1., 0., 0., 1., 1., 1., 1.]
        );
        assert_eq!((targets_of(2), targets_of(4), targets_of(0)), (1, 3, 0));
    }

    #[test]
    fn nll_matches_hand_computed_softmax() {
        let dev = Default::default();
        // One position predicting id 1 from logits [0, ln 3]: p = 3/4.
        let logits = Tensor::<Be, 3>::from_data(
            TensorData::new(vec![0f32, 3f32.ln(), 0., 0.], [1, 2, 2]),
            &dev,
        );
        let ids = Tensor::<Be, 2, Int>::from_data(TensorData::new(vec![0i64, 1], [1, 2]), &dev);
        let nll: f32 = next_token_nll(logits, ids).sum().into_scalar();
        assert!((nll - (4f32 / 3.).ln()).abs() < 1e-6);
    }
}
