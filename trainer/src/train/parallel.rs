//! Data parallel training over several devices of a process and several processes (nodes), on
//! Burn's collective engine (`burn-collective`).
//!
//! Every device keeps a replica of the model and of the optimizer for the whole run: device 0's
//! replica is the caller's (it runs on the calling thread), each other device's lives in its own
//! persistent worker thread. (A thread per step would give CubeCL a new stream, and cubecl-cuda
//! a new memory pool that is never returned, on every step.) Each step, every device computes
//! the gradients of its block of micro-batches, the gradients are all-reduced through
//! `burn-collective` (within the process, then across nodes through its global orchestrator),
//! and every replica applies the same AdamW update to the same summed gradient: no weights move
//! between devices after the start. The optimizer is replicated, not sharded: its state for
//! mamba-130m is 1 GB per device, and replicas keep checkpoints a single-device affair.
//!
//! The all-reduce is exact and ordered: each device contributes its block sum as row `rank` of
//! a `[world, n]` tensor that is zero elsewhere, so the collective sum adds each element to
//! zeros only (exactly, whatever order the collective's strategy adds in), and every device then
//! adds the rows in rank order, the order a single device accumulates the blocks in. The result
//! is bit-identical run to run for any number of devices and nodes (burn-collective's own sums
//! follow a hash-map order once more than two tensors meet), at `world` times the traffic of a
//! ring all-reduce: 0.5 GB × world per step for mamba-130m, small beside a step's compute.

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
use crate::train::optim::AdamW;
use crate::train::step::{BlockOutput, LossShare, block_gradients, contiguous_blocks};

/// Where this process sits among the nodes of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Processes (nodes) in the run, each with the same number of devices.
    pub nodes: usize,
    /// This process's place among them (0 writes the run directory).
    pub node_rank: usize,
    /// `HOST:PORT` of node 0's collective orchestrator (several nodes only). Node `r` serves
    /// its tensors on port `PORT + 1 + r`.
    pub coordinator: Option<String>,
    /// The host the other nodes reach this one at (default: the coordinator's host on node 0,
    /// this machine's host name elsewhere, 127.0.0.1 when the coordinator is on loopback).
    pub node_host: Option<String>,
    /// How long a node waits for the others in one exchange before it stops the run.
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
            node_host: None,
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
        if self.nodes > 1 && std::env::var_os(EXPERIMENTAL_NODES).is_none_or(|v| v != "1") {
            anyhow::bail!(
                "--nodes {}: training across nodes is not available yet: burn-collective 0.21's \
                 transfers between nodes deadlock (burn-communication's data service can miss \
                 the notice of a tensor exposed while a download waits; seen at the second \
                 exchange of two nodes on 127.0.0.1). Train on one node, with every GPU of it \
                 (--device cuda:0,1,…); {EXPERIMENTAL_NODES}=1 runs the multi-node path anyway",
                self.nodes
            );
        }
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

    /// The collective's settings for `local` devices on this node.
    fn collective(&self, local: usize) -> Result<CollectiveConfig> {
        let config = CollectiveConfig::default().with_num_devices(local);
        if self.nodes == 1 {
            return Ok(config);
        }
        let coordinator = self.coordinator.as_deref().context("no --coordinator")?;
        let (host, port) = coordinator_parts(coordinator)?;
        let data_port = port
            .checked_add(1 + self.node_rank as u16)
            .context("--coordinator port too high for the nodes' data ports")?;
        let node_host = match &self.node_host {
            Some(h) => h.clone(),
            None if is_loopback(&host) || self.node_rank == 0 => host.clone(),
            None => hostname()?,
        };
        let parse = |url: String| {
            url.parse::<burn_communication::Address>()
                .map_err(|e| anyhow!("address {url}: {e}"))
        };
        Ok(config
            .with_num_nodes(self.nodes as u32)
            .with_global_address(parse(format!("ws://{host}:{port}"))?)
            .with_node_address(parse(format!("ws://{node_host}:{data_port}"))?)
            .with_data_service_port(data_port))
    }
}

/// `--nodes`, `--node-rank`, `--coordinator`, `--node-host` of `trainer pretrain` and
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
    /// HOST:PORT where node 0 serves the collective's orchestrator; node R serves its tensors
    /// on PORT+1+R.
    #[arg(long, env = "BIOMAMBA_COORDINATOR")]
    pub coordinator: Option<String>,
    /// The host name the other nodes reach this one at (default: found).
    #[arg(long)]
    pub node_host: Option<String>,
    /// Seconds a node waits for the others in one exchange (a step's all-reduce) before it
    /// stops with an error: another node has died or hangs. The run resumes from its last
    /// checkpoint when all nodes are started again.
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
            node_host: None,
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
            node_host: self.node_host.clone(),
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

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

fn hostname() -> Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .context("finding this node's host name: pass --node-host")?;
    Ok(name.trim().to_string())
}

/// Set to `1` to run the multi-node path despite the deadlock [`Topology::validate`] names.
pub const EXPERIMENTAL_NODES: &str = "BIOMAMBA_EXPERIMENTAL_NODES";

/// One collective group per process at a time: burn-collective's local server is a process-wide
/// singleton per backend (tests that train data parallel take turns here).
static GROUP: Mutex<()> = Mutex::new(());

/// A device's replica: its model and optimizer, and its place in the collective.
pub(crate) struct Replica<B: AutodiffBackend> {
    model: Option<MambaLm<B>>,
    optimizer: AdamW<B>,
    device: B::Device,
    peer: PeerId,
    rank: usize,
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
    main_peer: PeerId,
    /// Global rank of device 0 of this node.
    rank0: usize,
    world: usize,
    /// Several nodes: when this node entered the exchange it is in (see [`Watchdog`]).
    watchdog: Option<Watchdog>,
    _orchestrator: Option<std::thread::JoinHandle<()>>,
    _group: MutexGuard<'static, ()>,
}

/// Stops the process when an exchange with the other nodes takes longer than the timeout: a
/// node that died (or hangs) would otherwise leave the others waiting forever.
struct Watchdog {
    /// Milliseconds since the Unix epoch when the current exchange began; 0 between them.
    since: Arc<std::sync::atomic::AtomicU64>,
    /// What the current exchange is, for the message.
    what: Arc<Mutex<String>>,
}

impl Watchdog {
    fn start(node_rank: usize, timeout: std::time::Duration) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        let since = Arc::new(AtomicU64::new(0));
        let what = Arc::new(Mutex::new(String::new()));
        let (s, w) = (since.clone(), what.clone());
        let spawned = std::thread::Builder::new()
            .name("node-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    let t = s.load(Ordering::Relaxed);
                    if t != 0 && now_ms().saturating_sub(t) > timeout.as_millis() as u64 {
                        let what = w.lock().map(|w| w.clone()).unwrap_or_default();
                        eprintln!(
                            "error: node {node_rank}: no answer from the other nodes for {} s \
                             during {what}: a node has stopped or hangs. Start every node \
                             again to resume from the run's last checkpoint (node 0 writes it).",
                            timeout.as_secs()
                        );
                        std::process::exit(3);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no node watchdog: {e}");
        }
        Self { since, what }
    }

    fn enter(&self, what: String) {
        if let Ok(mut w) = self.what.lock() {
            *w = what;
        }
        self.since
            .store(now_ms().max(1), std::sync::atomic::Ordering::Relaxed);
    }

    fn leave(&self) {
        self.since.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<B: AutodiffBackend> Pool<B> {
    /// Replicate `model` and `optimizer` (as they stand on `devices[0]`) onto the other devices,
    /// start their workers, and join the collective (and, with several nodes, the others).
    pub fn new(
        model: &MambaLm<B>,
        optimizer: &AdamW<B>,
        devices: &[B::Device],
        topology: &Topology,
    ) -> Result<Self> {
        ensure!(!devices.is_empty(), "no devices");
        topology.validate()?;
        let group = GROUP.lock().unwrap_or_else(|e| e.into_inner());
        burn_collective::reset_collective::<B::InnerBackend>();
        let local = devices.len();
        let world = local * topology.nodes;
        let rank0 = topology.node_rank * local;
        let config = topology.collective(local)?;
        let orchestrator = if topology.nodes > 1 && topology.node_rank == 0 {
            Some(start_orchestrator(topology)?)
        } else {
            None
        };
        let mut workers = Vec::with_capacity(local - 1);
        let mut started = Vec::with_capacity(local - 1);
        for (k, device) in devices.iter().enumerate().skip(1) {
            let rank = rank0 + k;
            let replica = Replica {
                model: Some(model.clone().fork(device)),
                optimizer: optimizer.fork(device),
                device: device.clone(),
                peer: PeerId(rank as u32),
                rank,
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
        let main_peer = PeerId(rank0 as u32);
        let watchdog =
            (topology.nodes > 1).then(|| Watchdog::start(topology.node_rank, topology.timeout));
        if let Some(w) = &watchdog {
            w.enter(format!(
                "the start (joining the {} nodes through {})",
                topology.nodes,
                topology.coordinator.as_deref().unwrap_or_default()
            ));
        }
        burn_collective::register::<B::InnerBackend>(main_peer, devices[0].clone(), config)
            .map_err(|e| anyhow!("joining the collective as device 0 ({main_peer}): {e:?}"))?;
        for (k, ready) in started.into_iter().enumerate() {
            ready
                .recv()
                .map_err(|_| anyhow!("device {} worker stopped while starting", k + 1))?
                .with_context(|| format!("device {} ({:?})", k + 1, devices[k + 1]))?;
        }
        if let Some(w) = &watchdog {
            w.leave();
        }
        Ok(Self {
            workers,
            main_peer,
            rank0,
            world,
            watchdog,
            _orchestrator: orchestrator,
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
            let world = self.world;
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
                let result = r.update(out, lr, world).map(|_| ());
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
        let what = format!("update {}'s all-reduce", optimizer.updates + 1);
        let mut main = self.main_replica(model, optimizer, device);
        let result = self.watched(what, || main.update(mine?, lr, self.world));
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
        let result = self.watched("the start (taking node 0's state)".into(), || {
            main.adopt(session)
        });
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
            peer: self.main_peer,
            rank: self.rank0,
        }
    }

    /// `f`, an exchange with the other nodes, under the watchdog (several nodes only).
    fn watched<T>(&self, what: String, f: impl FnOnce() -> T) -> T {
        let Some(w) = &self.watchdog else {
            return f();
        };
        w.enter(what);
        let out = f();
        w.leave();
        out
    }
}

impl<B: AutodiffBackend> Replica<B> {
    /// This replica's part in [`Pool::adopt_node0`]: returns node 0's session bytes.
    fn adopt(&mut self, session: Vec<u8>) -> Result<Vec<u8>> {
        let (peer, first) = (self.peer, self.rank == 0);
        let from_rank0 = |t: Tensor<B::InnerBackend, 1>| -> Result<Tensor<B::InnerBackend, 1>> {
            let t = if first { t } else { t.zeros_like() };
            sum_over_run(peer, t).map_err(|e| anyhow!("receiving node 0's state: {e:?}"))
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

    /// All-reduce this device's block output with the others' and apply the update; returns
    /// the step's loss and gradient norm on this device.
    fn update(
        &mut self,
        out: BlockOutput<B>,
        lr: f64,
        world: usize,
    ) -> Result<(Tensor<B::InnerBackend, 1>, Tensor<B::InnerBackend, 1>)> {
        let model = self.model.take().expect("replica present between steps");
        let grads = all_reduce_gradients(&model, out.grads, self.peer, world, self.rank)?;
        let shares = sum_over_run(self.peer, out.shares)
            .map_err(|e| anyhow!("all-reducing the losses: {e:?}"))?;
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

/// Node 0 serves the collective's global orchestrator on the coordinator's port.
fn start_orchestrator(topology: &Topology) -> Result<std::thread::JoinHandle<()>> {
    let (_, port) = coordinator_parts(topology.coordinator.as_deref().unwrap_or_default())?;
    // Fail here, not inside the orchestrator's thread, when the port is taken.
    std::net::TcpListener::bind(("0.0.0.0", port))
        .with_context(|| format!("--coordinator port {port} is not free on node 0"))?;
    std::thread::Builder::new()
        .name("collective-orchestrator".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => rt.block_on(burn_collective::start_global_orchestrator(port)),
                Err(e) => tracing::error!("collective orchestrator: {e}"),
            }
        })
        .context("starting the collective orchestrator")
}

/// The sum of `t` over every device of the run (burn-collective's all-reduce), sent flat and
/// at least [`MIN_SENT`] long: the global ring splits what it sends into one slice per node.
fn sum_over_run<B: burn::tensor::backend::Backend, const D: usize>(
    peer: PeerId,
    t: Tensor<B, D>,
) -> std::result::Result<Tensor<B, D>, burn_collective::CollectiveError> {
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
    )?;
    let summed = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(summed));
    let summed = if n < MIN_SENT {
        summed.slice([0..n])
    } else {
        summed
    };
    Ok(summed.reshape(dims))
}

/// The fewest elements [`sum_over_run`] sends: more than any number of nodes.
const MIN_SENT: usize = 1024;

/// Every float parameter replaced by global rank 0's (see [`Pool::adopt_node0`]).
struct FromRank0<B: AutodiffBackend> {
    peer: PeerId,
    first: bool,
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
        let value = match sum_over_run(self.peer, mine) {
            Ok(t) => t,
            Err(e) => {
                self.error = Some(anyhow!("receiving node 0's weights: {e:?}"));
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
    world: usize,
    rank: usize,
) -> Result<GradientsParams> {
    let mut v = Gather::<B> {
        input: grads,
        output: GradientsParams::new(),
        peer,
        world,
        rank,
        error: None,
        _b: std::marker::PhantomData,
    };
    model.visit(&mut v);
    if let Some(e) = v.error {
        return Err(e);
    }
    Ok(v.output)
}

struct Gather<B: AutodiffBackend> {
    input: GradientsParams,
    output: GradientsParams,
    peer: PeerId,
    world: usize,
    rank: usize,
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
        let rows = Tensor::<B::InnerBackend, 2>::zeros([self.world, n], &device)
            .slice_assign([self.rank..self.rank + 1, 0..n], grad.reshape([1, n]));
        let reduced = match sum_over_run(self.peer, rows) {
            Ok(t) => t,
            Err(e) => {
                self.error = Some(anyhow!(
                    "all-reducing the gradient of a [{}] parameter: {e:?}",
                    dims.map(|d| d.to_string()).join(", ")
                ));
                return;
            }
        };
        let mut sum = reduced.clone().slice([0..1, 0..n]);
        for k in 1..self.world {
            sum = sum + reduced.clone().slice([k..k + 1, 0..n]);
        }
        self.output
            .register::<B::InnerBackend, D>(param.id, sum.reshape(dims));
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
        if std::env::var_os(EXPERIMENTAL_NODES).is_none() {
            let e = t(2, 1, Some("10.0.0.1:29500"))
                .validate()
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("not available yet") && e.contains(EXPERIMENTAL_NODES),
                "{e}"
            );
            return;
        }
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

    /// The data ports of nodes on one host do not collide; loopback stays loopback.
    #[test]
    fn nodes_get_their_own_data_ports() {
        let cfg = |rank| {
            Topology {
                nodes: 2,
                node_rank: rank,
                coordinator: Some("127.0.0.1:29500".into()),
                ..Topology::single()
            }
            .collective(1)
            .unwrap()
            .to_string()
        };
        let (a, b) = (cfg(0), cfg(1));
        assert!(a.contains("ws://127.0.0.1:29501"), "{a}");
        assert!(b.contains("ws://127.0.0.1:29502"), "{b}");
        assert!(a.contains("ws://127.0.0.1:29500") && b.contains("ws://127.0.0.1:29500"));
    }
}
