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
    let len = mask.dims()[1];
    let nll = next_token_nll(logits, ids);
    sum_all(nll * mask.narrow(1, 1, len - 1))
}

/// The sum of every element, in a fixed order on every backend. (`Tensor::sum` on CubeCL
/// backends adds with float atomics, so its last bits vary run to run; a reduction along one
/// dimension does not. On the CPU both are the same sum.)
pub fn sum_all<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, 1> {
    t.flatten::<1>(0, D - 1).sum_dim(0)
}

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
