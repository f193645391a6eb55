//! Data parallel training over several devices of a process and several processes (nodes):
//! within a node on Burn's collective engine (`burn-collective`), across nodes through
//! [`crate::train::nodes`].
//!
//! Every device keeps a replica of the model and of the optimizer for the whole run: device 0's
//! replica is the caller's (it runs on the calling thread), each other device's lives in its own
//! persistent worker thread. (A thread per step would give CubeCL a new stream, and cubecl-cuda
//! a new memory pool that is never returned, on every step.) Each step, every device computes
//! the gradients of its block of micro-batches, the gradients are summed over the run, and every
//! replica applies the same AdamW update to the same summed gradient: no weights move between
//! devices after the start. The optimizer is replicated, not sharded: its state for mamba-130m
//! is 1 GB per device, and replicas keep checkpoints a single-device affair.
//!
//! The sums are exact and ordered. Within a node, each device contributes its block sum as row
//! `local rank` of a `[local devices, n]` tensor that is zero elsewhere, so the collective sum
//! adds each element to zeros only (exactly, whatever order the collective's strategy adds in),
//! and every device then adds the rows in rank order, the order a single device accumulates the
//! blocks in: this node's partial sum (burn-collective's own sums follow a hash-map order once
//! more than two tensors meet). Across nodes, device 0 of each node sends the partial sums of all
//! parameters as one vector, node 0 adds them in node order and sends the total back, and device
//! 0 hands it to its node's other devices through the collective (their contribution zeros: exact
//! again). The result is bit-identical run to run for a fixed layout of nodes and devices; one
//! device per node adds in the order of one node with all devices. Cost within a node: `local`
//! times the traffic of a ring all-reduce (0.5 GB × devices per step for mamba-130m).

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use anyhow::{Context, Result, anyhow, ensure};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_collective::{CollectiveConfig, PeerId, ReduceOperation};

use crate::model::MambaLm;
use crate::train::nodes::NodeLink;
use crate::train::optim::AdamW;
use crate::train::step::{BlockOutput, LossShare, block_gradients, contiguous_blocks};

/// Where this process sits among the nodes of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Processes (nodes) in the run, each with the same number of devices.
    pub nodes: usize,
    /// This process's place among them (0 writes the run directory).
    pub node_rank: usize,
    /// `HOST:PORT` where node 0 listens for the others (several nodes only).
    pub coordinator: Option<String>,
    /// How long a node waits for the others (to join, or in one exchange) before it stops.
    pub timeout: std::time::Duration,
}

impl Default for Topology {
    fn default() -> Self {
        Self::single()
    }
}

impl Topology {
    /// One process.
    pub fn single() -> Self {
        Self {
            nodes: 1,
            node_rank: 0,
            coordinator: None,
            timeout: std::time::Duration::from_secs(DEFAULT_NODE_TIMEOUT_S),
        }
    }

    /// Whether this process writes the run directory (checkpoints, metrics, exports).
    pub fn is_writer(&self) -> bool {
        self.node_rank == 0
    }

    /// Check the flags against each other.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.nodes >= 1, "--nodes must be at least 1");
        ensure!(
            self.node_rank < self.nodes,
            "--node-rank {} is not below --nodes {}",
            self.node_rank,
            self.nodes
        );
        if self.nodes > 1 {
            let c = self.coordinator.as_deref().with_context(|| {
                format!(
                    "--nodes {} needs --coordinator HOST:PORT (node 0's address)",
                    self.nodes
                )
            })?;
            coordinator_parts(c)?;
        }
        Ok(())
    }
}

/// `--nodes`, `--node-rank`, `--coordinator`, `--node-timeout` of `trainer pretrain` and
/// `trainer finetune`: one process per node; under Slurm the first two default to
/// `$SLURM_NNODES` and `$SLURM_NODEID`.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct NodeArgs {
    /// Processes (nodes) in the run, one per node, each with the same devices.
    #[arg(long, env = "SLURM_NNODES", default_value_t = 1)]
    pub nodes: usize,
    /// This node's place among them (node 0 writes the run directory).
    #[arg(long, env = "SLURM_NODEID", default_value_t = 0)]
    pub node_rank: usize,
    /// HOST:PORT of node 0, where it listens for the other nodes.
    #[arg(long, env = "BIOMAMBA_COORDINATOR")]
    pub coordinator: Option<String>,
    /// Seconds a node waits for the others (to join, or in one step's exchange) before it
    /// stops with an error: another node hangs. (A node that dies fails the others at once.)
    /// The run resumes from its last checkpoint when all nodes are started again.
    #[arg(long, default_value_t = DEFAULT_NODE_TIMEOUT_S)]
    pub node_timeout: u64,
}

/// [`NodeArgs::node_timeout`]'s default: longer than node 0's validation or checkpoint, during
/// which the others wait.
pub const DEFAULT_NODE_TIMEOUT_S: u64 = 900;

impl Default for NodeArgs {
    fn default() -> Self {
        Self {
            nodes: 1,
            node_rank: 0,
            coordinator: None,
            node_timeout: DEFAULT_NODE_TIMEOUT_S,
        }
    }
}

impl NodeArgs {
    pub fn topology(&self) -> Topology {
        Topology {
            nodes: self.nodes,
            node_rank: self.node_rank,
            coordinator: self.coordinator.clone(),
            timeout: std::time::Duration::from_secs(self.node_timeout),
        }
    }
}

/// `HOST:PORT` split, with a clear error.
fn coordinator_parts(c: &str) -> Result<(String, u16)> {
    let (host, port) = c
        .rsplit_once(':')
        .with_context(|| format!("--coordinator {c:?}: expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("--coordinator {c:?}: {port:?} is not a port number"))?;
    ensure!(!host.is_empty(), "--coordinator {c:?}: no host");
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// One collective group per process at a time: burn-collective's local server is a process-wide
/// singleton per backend (tests that train data parallel take turns here).
static GROUP: Mutex<()> = Mutex::new(());

/// A device's replica: its model and optimizer, and its place in the run.
pub(crate) struct Replica<B: AutodiffBackend> {
    model: Option<MambaLm<B>>,
    optimizer: AdamW<B>,
    device: B::Device,
    /// Its place in this node's collective (its local rank).
    peer: PeerId,
    /// Its place among the run's devices.
    rank: usize,
    across: Across,
}

/// How a replica's sums reach the rest of the run.
#[derive(Clone)]
struct Across {
    /// Devices on this node.
    local: usize,
    nodes: usize,
    /// Device 0 of each node holds the link to the other nodes; its other devices get the sums
    /// from it.
    link: Option<Arc<Mutex<NodeLink>>>,
}

type Job<B> = Box<dyn FnOnce(&mut Replica<B>) + Send>;

struct Worker<B: AutodiffBackend> {
    jobs: Option<Sender<Job<B>>>,
    thread: ThreadId,
    handle: Option<std::thread::JoinHandle<()>>,
    device: B::Device,
}

/// The persistent workers of a data-parallel run (see the module docs).
pub struct Pool<B: AutodiffBackend> {
    workers: Vec<Worker<B>>,
    /// Global rank of device 0 of this node.
    rank0: usize,
    world: usize,
    /// Device 0's view of the run (with the link to the other nodes, if any).
    across: Across,
    _group: MutexGuard<'static, ()>,
}

impl<B: AutodiffBackend> Pool<B> {
    /// Join the other nodes (if any), replicate `model` and `optimizer` (as they stand on
    /// `devices[0]`) onto the other devices, start their workers, and join this node's
    /// collective.
    pub fn new(
        model: &MambaLm<B>,
        optimizer: &AdamW<B>,
        devices: &[B::Device],
        topology: &Topology,
    ) -> Result<Self> {
        ensure!(!devices.is_empty(), "no devices");
        let local = devices.len();
        let world = local * topology.nodes;
        let rank0 = topology.node_rank * local;
        let link = if topology.nodes > 1 {
            let coordinator = topology
                .coordinator
                .as_deref()
                .context("no --coordinator")?;
            let link = NodeLink::connect(
                topology.nodes,
                topology.node_rank,
                coordinator,
                local,
                topology.timeout,
            )?;
            Some(Arc::new(Mutex::new(link)))
        } else {
            None
        };
        let across = Across {
            local,
            nodes: topology.nodes,
            link,
        };
        let group = GROUP.lock().unwrap_or_else(|e| e.into_inner());
        burn_collective::reset_collective::<B::InnerBackend>();
        let config = CollectiveConfig::default().with_num_devices(local);
        let mut workers = Vec::with_capacity(local - 1);
        let mut started = Vec::with_capacity(local - 1);
        for (k, device) in devices.iter().enumerate().skip(1) {
            let replica = Replica {
                model: Some(model.clone().fork(device)),
                optimizer: optimizer.fork(device),
                device: device.clone(),
                peer: PeerId(k as u32),
                rank: rank0 + k,
                across: Across {
                    link: None,
                    ..across.clone()
                },
            };
            let (jobs, inbox) = channel::<Job<B>>();
            let (ready_tx, ready) = channel::<Result<()>>();
            let config = config.clone();
            let handle = std::thread::Builder::new()
                .name(format!("device-{k}"))
                .spawn(move || worker_loop(replica, config, inbox, ready_tx))
                .context("starting a device worker thread")?;
            workers.push(Worker {
                jobs: Some(jobs),
                thread: handle.thread().id(),
                handle: Some(handle),
                device: device.clone(),
            });
            started.push(ready);
        }
        if local > 1 {
            burn_collective::register::<B::InnerBackend>(PeerId(0), devices[0].clone(), config)
                .map_err(|e| anyhow!("joining the collective as device 0: {e:?}"))?;
        }
        for (k, ready) in started.into_iter().enumerate() {
            ready
                .recv()
                .map_err(|_| anyhow!("device {} worker stopped while starting", k + 1))?
                .with_context(|| format!("device {} ({:?})", k + 1, devices[k + 1]))?;
        }
        Ok(Self {
            workers,
            rank0,
            world,
            across,
            _group: group,
        })
    }

    /// The thread each worker (device 1, 2, …) runs on.
    pub fn worker_threads(&self) -> Vec<ThreadId> {
        self.workers.iter().map(|w| w.thread).collect()
    }

    /// Devices in the run, over all nodes.
    pub fn world(&self) -> usize {
        self.world
    }

    /// One data-parallel optimizer step (see [`crate::train::step::train_step`]): returns the
    /// updated model of device 0, and the step's loss and gradient norm on device 0.
    pub fn step<M, F>(
        &mut self,
        model: MambaLm<B>,
        optimizer: &mut AdamW<B>,
        device: &B::Device,
        micro_batches: &[M],
        lr: f64,
        share: &Arc<F>,
    ) -> Result<(
        MambaLm<B>,
        Tensor<B::InnerBackend, 1>,
        Tensor<B::InnerBackend, 1>,
    )>
    where
        M: Clone + Send + 'static,
        F: LossShare<B, M>,
    {
        let n = micro_batches.len();
        let blocks = contiguous_blocks(n, self.world);
        let block_of = |rank: usize| blocks.get(rank).cloned().unwrap_or(n..n);
        // Phase 1 on every device: the gradients of its block; then, only if all succeeded,
        // phase 2: all-reduce and update.
        let mut pending = Vec::with_capacity(self.workers.len());
        for (k, w) in self.workers.iter().enumerate() {
            let rank = self.rank0 + k + 1;
            let range = block_of(rank);
            let offset = range.start;
            let block: Vec<M> = micro_batches[range].to_vec();
            let share = Arc::clone(share);
            let (status_tx, status) = channel::<Result<()>>();
            let (go, go_rx) = channel::<bool>();
            let (done_tx, done) = channel::<Result<()>>();
            let job: Job<B> = Box::new(move |r: &mut Replica<B>| {
                let model = r.model.as_ref().expect("replica present between steps");
                let out = match block_gradients(model, &r.device, &block, offset, n, &*share) {
                    Ok(out) => {
                        let _ = status_tx.send(Ok(()));
                        out
                    }
                    Err(e) => {
                        let _ = status_tx.send(Err(e));
                        return;
                    }
                };
                if !go_rx.recv().unwrap_or(false) {
                    return;
                }
                let result = r.update(out, lr).map(|_| ());
                let _ = done_tx.send(result);
            });
            w.jobs
                .as_ref()
                .context("worker stopped")?
                .send(job)
                .map_err(|_| anyhow!("the worker of device {} has stopped", k + 1))?;
            pending.push((status, go, done));
        }
        let range = block_of(self.rank0);
        let mine = block_gradients(
            &model,
            device,
            &micro_batches[range.clone()],
            range.start,
            n,
            &**share,
        )
        .with_context(|| format!("data-parallel device 0 ({device:?})"));
        let mut failure = mine.as_ref().err().map(|e| anyhow!("{e:#}"));
        for (k, (status, ..)) in pending.iter().enumerate() {
            let s = status
                .recv()
                .map_err(|_| anyhow!("the worker thread panicked"))
                .and_then(|r| r);
            if let (Err(e), None) = (s, &failure) {
                failure = Some(e.context(format!(
                    "data-parallel device {} ({:?})",
                    k + 1,
                    self.workers[k].device
                )));
            }
        }
        if let Some(e) = failure {
            for (_, go, _) in &pending {
                let _ = go.send(false);
            }
            return Err(e);
        }
        for (_, go, _) in &pending {
            let _ = go.send(true);
        }
        let mut main = self.main_replica(model, optimizer, device);
        let result = main.update(mine?, lr);
        *optimizer = main.optimizer;
        for (k, (_, _, done)) in pending.into_iter().enumerate() {
            done.recv()
                .map_err(|_| anyhow!("the worker thread panicked"))
                .and_then(|r| r)
                .with_context(|| {
                    format!(
                        "data-parallel device {} ({:?})",
                        k + 1,
                        self.workers[k].device
                    )
                })?;
        }
        let (loss, norm) = result.context("data-parallel device 0")?;
        Ok((main.model.expect("updated model"), loss, norm))
    }
}

impl<B: AutodiffBackend> Pool<B> {
    /// Make every replica of the run (on every node) node 0's: its weights, optimizer moments
    /// and `session` (bytes only node 0's device 0 gives; the others get them back). Sent as
    /// exact sums of one contribution and zeros, so every node ends with node 0's state bit
    /// for bit, whatever each read from its own disk.
    pub fn adopt_node0(
        &mut self,
        model: MambaLm<B>,
        optimizer: &mut AdamW<B>,
        device: &B::Device,
        session: Vec<u8>,
    ) -> Result<(MambaLm<B>, Vec<u8>)> {
        let mut pending = Vec::with_capacity(self.workers.len());
        for (k, w) in self.workers.iter().enumerate() {
            let (done_tx, done) = channel::<Result<()>>();
            let job: Job<B> = Box::new(move |r: &mut Replica<B>| {
                let _ = done_tx.send(r.adopt(Vec::new()).map(|_| ()));
            });
            w.jobs
                .as_ref()
                .context("worker stopped")?
                .send(job)
                .map_err(|_| anyhow!("the worker of device {} has stopped", k + 1))?;
            pending.push(done);
        }
        let mut main = self.main_replica(model, optimizer, device);
        let result = main.adopt(session);
        *optimizer = main.optimizer;
        for (k, done) in pending.into_iter().enumerate() {
            done.recv()
                .map_err(|_| anyhow!("the worker thread panicked"))
                .and_then(|r| r)
                .with_context(|| format!("device {} taking node 0's state", k + 1))?;
        }
        let session = result.context("taking node 0's state")?;
        Ok((main.model.expect("adopted model"), session))
    }
}

impl<B: AutodiffBackend> Pool<B> {
    /// Device 0's replica for one exchange: the caller's model and optimizer, taken for it (the
    /// caller puts the optimizer back).
    fn main_replica(
        &self,
        model: MambaLm<B>,
        optimizer: &mut AdamW<B>,
        device: &B::Device,
    ) -> Replica<B> {
        Replica {
            model: Some(model),
            optimizer: std::mem::replace(optimizer, AdamW::new(optimizer.params.clone())),
            device: device.clone(),
            peer: PeerId(0),
            rank: self.rank0,
            across: self.across.clone(),
        }
    }
}

impl<B: AutodiffBackend> Replica<B> {
    /// This replica's part in [`Pool::adopt_node0`]: returns node 0's session bytes.
    fn adopt(&mut self, session: Vec<u8>) -> Result<Vec<u8>> {
        let (peer, first) = (self.peer, self.rank == 0);
        let across = self.across.clone();
        let what = "the start (taking node 0's state)";
        let from_rank0 = |t: Tensor<B::InnerBackend, 1>| -> Result<Tensor<B::InnerBackend, 1>> {
            let t = if first { t } else { t.zeros_like() };
            sum_over_run(peer, t, &across, what).context("receiving node 0's state")
        };
        // 1. What node 0 holds, as bytes (each an f32 of 0..=255: exact), after their count.
        let header = if first {
            serde_json::to_vec(&serde_json::json!({
                "session": String::from_utf8(session).context("session state is not UTF-8")?,
                "updates": self.optimizer.updates,
                "moments": self.optimizer.moment_layout(),
            }))?
        } else {
            Vec::new()
        };
        ensure!(
            header.len() < 1 << 24,
            "node 0's state is too large to send"
        );
        let len = from_rank0(Tensor::from_floats([header.len() as f32], &self.device))?;
        let len = crate::train::step::read_values(len)?[0] as usize;
        let bytes: Vec<f32> = if first {
            header.iter().map(|&b| f32::from(b)).collect()
        } else {
            vec![0.0; len]
        };
        let bytes = from_rank0(Tensor::from_floats(bytes.as_slice(), &self.device))?;
        let bytes: Vec<u8> = crate::train::step::read_values(bytes)?
            .into_iter()
            .map(|b| b as u8)
            .collect();
        #[derive(serde::Deserialize)]
        struct Header {
            session: String,
            updates: u64,
            moments: Vec<(String, Vec<usize>)>,
        }
        let header: Header =
            serde_json::from_slice(&bytes).context("reading node 0's state header")?;
        // 2. The weights, 3. the moments, in the same order everywhere.
        let model = self.model.take().expect("replica present");
        let mut mapper = FromRank0::<B> {
            peer,
            first,
            across: self.across.clone(),
            error: None,
            _b: std::marker::PhantomData,
        };
        let model = model.map(&mut mapper);
        self.model = Some(model);
        if let Some(e) = mapper.error {
            return Err(e);
        }
        let device = self.device.clone();
        self.optimizer
            .remap_moments(&header.moments, &device, from_rank0)?;
        self.optimizer.updates = header.updates;
        Ok(header.session.into_bytes())
    }

    /// Sum this device's block output with the others' over the run and apply the update;
    /// returns the step's loss and gradient norm on this device.
    fn update(
        &mut self,
        out: BlockOutput<B>,
        lr: f64,
    ) -> Result<(Tensor<B::InnerBackend, 1>, Tensor<B::InnerBackend, 1>)> {
        let model = self.model.take().expect("replica present between steps");
        let what = format!("update {}'s all-reduce", self.optimizer.updates + 1);
        let grads = all_reduce_gradients(&model, out.grads, self.peer, &self.across, &what);
        let shares = sum_over_run(self.peer, out.shares, &self.across, &what)
            .context("all-reducing the losses");
        let (grads, shares) = (grads?, shares?);
        let (model, norm) = self.optimizer.step_on_device(lr, model, grads)?;
        self.model = Some(model);
        Ok((crate::train::loss::sum_all(shares), norm))
    }
}

fn worker_loop<B: AutodiffBackend>(
    mut replica: Replica<B>,
    config: CollectiveConfig,
    inbox: Receiver<Job<B>>,
    ready: Sender<Result<()>>,
) {
    let joined =
        burn_collective::register::<B::InnerBackend>(replica.peer, replica.device.clone(), config)
            .map_err(|e| anyhow!("joining the collective as {}: {e:?}", replica.peer));
    let ok = joined.is_ok();
    let _ = ready.send(joined);
    if !ok {
        return;
    }
    while let Ok(job) = inbox.recv() {
        job(&mut replica);
    }
}

impl<B: AutodiffBackend> Drop for Pool<B> {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.jobs.take();
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
        burn_collective::reset_collective::<B::InnerBackend>();
    }
}

/// The sum of `t` over this node's devices (burn-collective's all-reduce), sent flat and at
/// least [`MIN_SENT`] long (its ring strategy splits what it sends into one slice per device).
fn local_sum<B: burn::tensor::backend::Backend, const D: usize>(
    peer: PeerId,
    t: Tensor<B, D>,
    local: usize,
) -> Result<Tensor<B, D>> {
    if local == 1 {
        return Ok(t);
    }
    let dims = t.dims();
    let n: usize = dims.iter().product();
    let device = t.device();
    let flat = t.reshape([n]);
    let sent = if n < MIN_SENT {
        Tensor::cat(vec![flat, Tensor::zeros([MIN_SENT - n], &device)], 0)
    } else {
        flat
    };
    let summed = burn_collective::all_reduce::<B>(
        peer,
        sent.into_primitive().tensor(),
        ReduceOperation::Sum,
    )
    .map_err(|e| anyhow!("the all-reduce among this node's devices: {e:?}"))?;
    let summed = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(summed));
    let summed = if n < MIN_SENT {
        summed.slice([0..n])
    } else {
        summed
    };
    Ok(summed.reshape(dims))
}

/// The fewest elements [`local_sum`] sends: more than any number of devices.
const MIN_SENT: usize = 1024;

/// `t`, the same on every device of this node, summed over the nodes in node order (see the
/// module docs): device 0 exchanges it with the other nodes and hands the total to the others.
fn across_nodes<B: burn::tensor::backend::Backend, const D: usize>(
    peer: PeerId,
    t: Tensor<B, D>,
    across: &Across,
    what: &str,
) -> Result<Tensor<B, D>> {
    if across.nodes == 1 {
        return Ok(t);
    }
    let (dims, device) = (t.dims(), t.device());
    let n: usize = dims.iter().product();
    let Some(link) = &across.link else {
        // Not device 0: the total comes from it, through the collective.
        return local_sum(peer, t.zeros_like(), across.local);
    };
    let total = crate::train::step::read_f32(t.reshape([n])).and_then(|mine| {
        link.lock()
            .map_err(|_| anyhow!("the link to the other nodes was poisoned"))?
            .sum(&mine, what)
    });
    match total {
        Ok(v) => {
            let total = Tensor::<B, 1>::from_floats(v.as_slice(), &device).reshape(dims);
            local_sum(peer, total, across.local)
        }
        Err(e) if across.local > 1 => {
            // This node's other devices wait inside the collective for device 0's share of
            // this exchange, and of every one after it: nothing can release them but the end
            // of the process.
            eprintln!("error: {e:#}");
            std::process::exit(3);
        }
        Err(e) => Err(e),
    }
}

/// The sum of `t` over every device of the run: over this node's, then over the nodes.
fn sum_over_run<B: burn::tensor::backend::Backend, const D: usize>(
    peer: PeerId,
    t: Tensor<B, D>,
    across: &Across,
    what: &str,
) -> Result<Tensor<B, D>> {
    let t = local_sum(peer, t, across.local)?;
    across_nodes(peer, t, across, what)
}

/// Every float parameter replaced by global rank 0's (see [`Pool::adopt_node0`]).
struct FromRank0<B: AutodiffBackend> {
    peer: PeerId,
    first: bool,
    across: Across,
    error: Option<anyhow::Error>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> burn::module::ModuleMapper<B> for FromRank0<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        if self.error.is_some() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let require_grad = tensor.is_require_grad();
        let inner = tensor.inner();
        let mine = if self.first {
            inner.clone()
        } else {
            inner.zeros_like()
        };
        let what = "the start (taking node 0's weights)";
        let value = match sum_over_run(self.peer, mine, &self.across, what) {
            Ok(t) => t,
            Err(e) => {
                self.error = Some(e.context("receiving node 0's weights"));
                inner
            }
        };
        let mut t = Tensor::from_inner(value);
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Sum `grads` over all devices of the run, exactly and in rank order (see the module docs),
/// parameter by parameter in the model's (structural, process-independent) order.
fn all_reduce_gradients<B: AutodiffBackend>(
    model: &MambaLm<B>,
    grads: GradientsParams,
    peer: PeerId,
    across: &Across,
    what: &str,
) -> Result<GradientsParams> {
    let mut v = Gather::<B> {
        input: grads,
        output: GradientsParams::new(),
        peer,
        local: across.local,
        partials: (across.nodes > 1).then(Vec::new),
        error: None,
        _b: std::marker::PhantomData,
    };
    model.visit(&mut v);
    if let Some(e) = v.error {
        return Err(e);
    }
    let Some(partials) = v.partials else {
        return Ok(v.output);
    };
    // Several nodes: all of this node's partial sums in one exchange.
    let total = across_nodes(peer, Tensor::cat(partials, 0), across, what)?;
    let mut scatter = Scatter::<B> {
        total,
        offset: 0,
        output: GradientsParams::new(),
        _b: std::marker::PhantomData,
    };
    model.visit(&mut scatter);
    Ok(scatter.output)
}

/// Each parameter's gradient summed over this node's devices: registered, or with several
/// nodes kept flat for the exchange.
struct Gather<B: AutodiffBackend> {
    input: GradientsParams,
    output: GradientsParams,
    peer: PeerId,
    local: usize,
    partials: Option<Vec<Tensor<B::InnerBackend, 1>>>,
    error: Option<anyhow::Error>,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.error.is_some() {
            return;
        }
        let value = param.val();
        let (dims, device) = (value.dims(), value.device());
        let n: usize = dims.iter().product();
        // A device with no micro-batch (more devices than micro-batches) adds zeros.
        let grad = self
            .input
            .remove::<B::InnerBackend, D>(param.id)
            .unwrap_or_else(|| Tensor::zeros(dims, &device));
        let sum = if self.local == 1 {
            grad.reshape([1, n])
        } else {
            let rank = self.peer.0 as usize;
            let rows = Tensor::<B::InnerBackend, 2>::zeros([self.local, n], &device)
                .slice_assign([rank..rank + 1, 0..n], grad.reshape([1, n]));
            let reduced = match local_sum(self.peer, rows, self.local) {
                Ok(t) => t,
                Err(e) => {
                    self.error = Some(e.context(format!(
                        "all-reducing the gradient of a [{}] parameter",
                        dims.map(|d| d.to_string()).join(", ")
                    )));
                    return;
                }
            };
            let mut sum = reduced.clone().slice([0..1, 0..n]);
            for k in 1..self.local {
                sum = sum + reduced.clone().slice([k..k + 1, 0..n]);
            }
            sum
        };
        match &mut self.partials {
            Some(p) => p.push(sum.reshape([n])),
            None => self
                .output
                .register::<B::InnerBackend, D>(param.id, sum.reshape(dims)),
        }
    }
}

/// The gradients of every parameter cut out of the run's total, in [`Gather`]'s order.
struct Scatter<B: AutodiffBackend> {
    total: Tensor<B::InnerBackend, 1>,
    offset: usize,
    output: GradientsParams,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scatter<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let dims = param.val().dims();
        let n: usize = dims.iter().product();
        let grad = self.total.clone().slice([self.offset..self.offset + n]);
        self.offset += n;
        self.output
            .register::<B::InnerBackend, D>(param.id, grad.reshape(dims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_flags_are_checked() {
        let t = |nodes, rank, c: Option<&str>| Topology {
            nodes,
            node_rank: rank,
            coordinator: c.map(str::to_string),
            ..Topology::single()
        };
        assert!(t(1, 0, None).validate().is_ok());
        assert!(t(2, 1, Some("10.0.0.1:29500")).validate().is_ok());
        let e = t(2, 0, None).validate().unwrap_err().to_string();
        assert!(e.contains("--coordinator"), "{e}");
        let e = t(2, 2, Some("h:1")).validate().unwrap_err().to_string();
        assert!(e.contains("--node-rank 2"), "{e}");
        let e = t(2, 0, Some("host")).validate().unwrap_err().to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
        let e = t(2, 0, Some("host:x")).validate().unwrap_err().to_string();
        assert!(e.contains("not a port"), "{e}");
    }
}
