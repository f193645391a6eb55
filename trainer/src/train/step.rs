//! One optimizer step: gradient accumulation over micro-batches, data parallel over devices and
//! nodes ([`crate::train::parallel`]), global-norm clipping and the AdamW update
//! ([`crate::train::optim`]). Shared by pretraining and fine-tuning; each gives its own loss
//! share per micro-batch.

use std::cell::Cell;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::model::MambaLm;
use crate::train::optim::AdamW;
use crate::train::parallel::{Pool, Topology};

/// A micro-batch's share of the step's loss on a device, scaled so that the shares sum to the
/// step's mean loss (e.g. its mean loss / number of micro-batches); it is backpropagated.
pub trait LossShare<B: AutodiffBackend, M>:
    Fn(&MambaLm<B>, &M, &B::Device) -> Result<Tensor<B, 1>> + Send + Sync + 'static
{
}
impl<B: AutodiffBackend, M, F> LossShare<B, M> for F where
    F: Fn(&MambaLm<B>, &M, &B::Device) -> Result<Tensor<B, 1>> + Send + Sync + 'static
{
}

/// The devices a run trains on, and (with more than one in the run) their persistent workers,
/// started at the first step from the model and optimizer it is given.
pub struct Devices<B: AutodiffBackend> {
    list: Vec<B::Device>,
    topology: Topology,
    pool: Option<Pool<B>>,
}

impl<B: AutodiffBackend> Devices<B> {
    /// `list` on this process (the first holds the model the caller sees), in `topology`.
    pub fn new(list: Vec<B::Device>, topology: Topology) -> Result<Self> {
        ensure!(!list.is_empty(), "no device to train on");
        topology.validate()?;
        Ok(Self {
            list,
            topology,
            pool: None,
        })
    }

    /// The devices of this process, with no other node.
    pub fn local(list: &[B::Device]) -> Self {
        Self::new(list.to_vec(), Topology::single()).expect("at least one device")
    }

    /// The device the caller's model lives on.
    pub fn first(&self) -> &B::Device {
        &self.list[0]
    }

    /// Devices on this process.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Devices in the whole run (all nodes).
    pub fn world(&self) -> usize {
        self.list.len() * self.topology.nodes
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Start the workers of a run with more than one device (see [`train_step`]), from the
    /// caller's `model` and `optimizer`. With several nodes, every node then takes node 0's
    /// weights, moments and `session` state ([`Pool::adopt_node0`]): returned, on every node,
    /// as `Some(node 0's session bytes)`.
    pub fn start(
        &mut self,
        model: MambaLm<B>,
        optimizer: &mut AdamW<B>,
        session: Vec<u8>,
    ) -> Result<(MambaLm<B>, Option<Vec<u8>>)> {
        if self.world() == 1 {
            return Ok((model, None));
        }
        if self.pool.is_none() {
            self.pool = Some(Pool::new(&model, optimizer, &self.list, &self.topology)?);
        }
        if self.topology.nodes == 1 {
            return Ok((model, None));
        }
        let device = self.list[0].clone();
        let pool = self.pool.as_mut().expect("pool just started");
        let (model, session) = pool.adopt_node0(model, optimizer, &device, session)?;
        Ok((model, Some(session)))
    }

    /// The worker threads of devices 1, 2, … (empty before the first data-parallel step).
    pub fn worker_threads(&self) -> Vec<std::thread::ThreadId> {
        self.pool
            .as_ref()
            .map(Pool::worker_threads)
            .unwrap_or_default()
    }
}

/// One optimizer update with gradient accumulation over `micro_batches`, data parallel over
/// `devices`. The micro-batches are split into contiguous blocks, one per device of the run
/// (sizes differing by at most one, the first ones larger: 61 over 8 devices is 8,8,8,8,8,7,7,7;
/// a device with none adds zeros), so the global batch is the one a single device sees. Each
/// device sums its block's gradients; the block sums are added in device order on every device
/// ([`crate::train::parallel`]), clipped to the global norm and applied by AdamW on every
/// replica. Returns device 0's new model, the step's loss (the shares, gathered and summed in
/// micro-batch order on the device, so it does not depend on the device count) and the
/// gradient norm before clipping, both read from the device in one read.
///
/// Determinism: bit-identical run to run for a fixed device count; with one micro-batch per
/// device the additions happen in the order of one device, so the result equals the one-device
/// step bit for bit (other splits differ in the last bits).
///
/// With more than one device in the run, the model passed must be the one the previous step
/// returned: the other devices keep their replicas between steps.
pub fn train_step<B, M, F>(
    model: MambaLm<B>,
    optimizer: &mut AdamW<B>,
    devices: &mut Devices<B>,
    micro_batches: &[M],
    lr: f64,
    loss_share: F,
) -> Result<(MambaLm<B>, f64, f64)>
where
    B: AutodiffBackend,
    M: Clone + Send + 'static,
    F: LossShare<B, M>,
{
    ensure!(!micro_batches.is_empty(), "no micro-batches");
    let device = devices.list[0].clone();
    let (model, loss, norm) = if devices.world() == 1 {
        let out = block_gradients(
            &model,
            &device,
            micro_batches,
            0,
            micro_batches.len(),
            &loss_share,
        )?;
        let loss = crate::train::loss::sum_all(out.shares);
        let (model, norm) = optimizer.step_on_device(lr, model, out.grads)?;
        (model, loss, norm)
    } else {
        if devices.pool.is_none() {
            devices.pool = Some(Pool::new(
                &model,
                optimizer,
                &devices.list,
                &devices.topology,
            )?);
        }
        let pool = devices.pool.as_mut().expect("pool just started");
        pool.step(
            model,
            optimizer,
            &device,
            micro_batches,
            lr,
            &Arc::new(loss_share),
        )?
    };
    let read = read_values(Tensor::cat(vec![loss, norm], 0))?;
    let (loss, grad_norm) = (read[0], read[1]);
    ensure!(loss.is_finite(), "training loss is {loss}");
    ensure!(
        grad_norm.is_finite(),
        "gradient norm is {grad_norm} at update {} — the loss diverged",
        optimizer.updates
    );
    Ok((model, loss, grad_norm))
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

/// A device's block of micro-batches: its summed gradients, and every micro-batch's loss share
/// in a vector over the whole step (zero outside the block), still on the device.
pub(crate) struct BlockOutput<B: AutodiffBackend> {
    pub grads: GradientsParams,
    pub shares: Tensor<B::InnerBackend, 1>,
}

/// The summed gradients of `micro_batches` (items `offset..` of a step of `total`) on one
/// device, and their loss shares (see [`BlockOutput`]). Nothing is read back to the host.
pub(crate) fn block_gradients<B: AutodiffBackend, M>(
    model: &MambaLm<B>,
    device: &B::Device,
    micro_batches: &[M],
    offset: usize,
    total: usize,
    loss_share: &impl Fn(&MambaLm<B>, &M, &B::Device) -> Result<Tensor<B, 1>>,
) -> Result<BlockOutput<B>> {
    let mut acc = GradientsAccumulator::<MambaLm<B>>::new();
    let mut shares = Vec::with_capacity(micro_batches.len());
    for mb in micro_batches {
        let share = loss_share(model, mb, device)?;
        shares.push(share.clone().inner());
        acc.accumulate(model, GradientsParams::from_grads(share.backward(), model));
    }
    let mine = (!shares.is_empty()).then(|| Tensor::cat(shares, 0));
    let shares = match mine {
        Some(s) if offset == 0 && s.dims()[0] == total => s,
        Some(s) => {
            let len = s.dims()[0];
            Tensor::zeros([total], device).slice_assign([offset..offset + len], s)
        }
        None => Tensor::zeros([total], device),
    };
    Ok(BlockOutput {
        grads: acc.grads(),
        shares,
    })
}

thread_local! {
    /// Reads of tensor values back to the host by this thread, counted (each one waits for the
    /// device): a training step makes exactly one.
    static HOST_READS: Cell<u64> = const { Cell::new(0) };
}

/// How many times this thread has read tensor values back from a device.
pub fn host_reads() -> u64 {
    HOST_READS.with(Cell::get)
}

/// The values of a vector, read back to the host in one read.
pub fn read_values<B: Backend>(t: Tensor<B, 1>) -> Result<Vec<f64>> {
    HOST_READS.with(|n| n.set(n.get() + 1));
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| anyhow::anyhow!("reading back a tensor: {e:?}"))
}

/// The values of a float vector as f32 (exact for an f32 backend), read back in one read.
pub fn read_f32<B: Backend>(t: Tensor<B, 1>) -> Result<Vec<f32>> {
    HOST_READS.with(|n| n.set(n.get() + 1));
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading back a tensor: {e:?}"))
}

/// The value of a one-element tensor.
pub fn scalar<B: Backend>(t: Tensor<B, 1>) -> Result<f64> {
    read_values(t)?
        .first()
        .copied()
        .context("empty scalar tensor")
}
