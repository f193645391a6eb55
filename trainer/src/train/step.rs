//! One optimizer step: gradient accumulation over micro-batches, data parallel over devices,
//! global-norm clipping and the AdamW update ([`crate::train::optim`]). Shared by pretraining and
//! fine-tuning; each gives its own loss share per micro-batch.

use anyhow::{Context, Result, ensure};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::model::MambaLm;
use crate::train::optim::AdamW;

/// One optimizer update with gradient accumulation, data parallel over `devices`. For each
/// micro-batch, `loss_share` gives its share of the step's loss on a device (scaled so the shares
/// sum to the step's mean loss, e.g. its mean loss / number of micro-batches), which is
/// backpropagated. The micro-batches are split into contiguous blocks, one per device; each
/// device sums its block's gradients in its own thread on a replica of the model (one device:
/// no thread, no copy). The block sums are moved to `devices[0]`, where the model and the
/// optimizer live, and added in device order; then the sum is clipped to the global norm and
/// applied by AdamW. Returns the new model, the step's loss (the shares summed in micro-batch
/// order, so it does not depend on the device count) and the gradient norm before clipping.
///
/// Determinism: for a fixed device count the result is bit-identical run to run; with one
/// micro-batch per device the additions happen in the same order as on one device, so the
/// result equals the one-device step bit for bit (other splits differ in the last bits).
pub fn train_step<B: AutodiffBackend, M: Sync>(
    model: MambaLm<B>,
    optimizer: &mut AdamW<B>,
    devices: &[B::Device],
    micro_batches: &[M],
    lr: f64,
    loss_share: impl Fn(&MambaLm<B>, &M, &B::Device) -> Result<Tensor<B, 1>> + Sync,
) -> Result<(MambaLm<B>, f64, f64)> {
    ensure!(!micro_batches.is_empty(), "no micro-batches");
    ensure!(!devices.is_empty(), "no devices");
    let blocks = contiguous_blocks(micro_batches.len(), devices.len());
    let sums: Vec<(GradientsParams, Vec<f64>)> = if blocks.len() == 1 {
        vec![block_gradients(
            &model,
            &devices[0],
            micro_batches,
            &loss_share,
        )?]
    } else {
        let share = &loss_share;
        std::thread::scope(|scope| {
            let workers: Vec<_> = blocks
                .iter()
                .zip(devices)
                .enumerate()
                .map(|(k, (range, device))| {
                    let replica = if k == 0 {
                        model.clone()
                    } else {
                        model.clone().fork(device)
                    };
                    let block = &micro_batches[range.clone()];
                    scope.spawn(move || block_gradients(&replica, device, block, share))
                })
                .collect();
            workers
                .into_iter()
                .enumerate()
                .map(|(k, worker)| {
                    worker
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the worker thread panicked")))
                        .with_context(|| format!("data-parallel device {k} ({:?})", devices[k]))
                })
                .collect::<Result<Vec<_>>>()
        })?
    };
    let mut acc = GradientsAccumulator::<MambaLm<B>>::new();
    let mut loss = 0.0f64;
    for (grads, losses) in sums {
        for l in losses {
            loss += l;
        }
        acc.accumulate(&model, grads.to_device(&devices[0], &model));
    }
    ensure!(loss.is_finite(), "training loss is {loss}");
    let (model, stats) = optimizer.step(lr, model, acc.grads())?;
    Ok((model, loss, stats.grad_norm))
}

/// `n` items in at most `parts` contiguous, non-empty ranges whose sizes differ by at most one
/// (the first ones larger).
pub(crate) fn contiguous_blocks(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|k| {
            let len = base + usize::from(k < extra);
            start += len;
            start - len..start
        })
        .collect()
}

/// The summed gradients of a block of micro-batches on one device, and each one's loss share.
fn block_gradients<B: AutodiffBackend, M>(
    model: &MambaLm<B>,
    device: &B::Device,
    micro_batches: &[M],
    loss_share: &impl Fn(&MambaLm<B>, &M, &B::Device) -> Result<Tensor<B, 1>>,
) -> Result<(GradientsParams, Vec<f64>)> {
    let mut acc = GradientsAccumulator::<MambaLm<B>>::new();
    let mut losses = Vec::with_capacity(micro_batches.len());
    for mb in micro_batches {
        let share = loss_share(model, mb, device)?;
        losses.push(scalar(share.clone())?);
        acc.accumulate(model, GradientsParams::from_grads(share.backward(), model));
    }
    Ok((acc.grads(), losses))
}

/// The value of a one-element tensor.
pub fn scalar<B: Backend>(t: Tensor<B, 1>) -> Result<f64> {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| anyhow::anyhow!("reading a scalar: {e:?}"))?
        .first()
        .copied()
        .context("empty scalar tensor")
}
