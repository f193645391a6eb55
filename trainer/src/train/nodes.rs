//! The link between the nodes (processes) of a run: a star over TCP through node 0.
//!
//! Node 0 listens on the coordinator's port; every other node connects to it and says who it
//! is. An exchange ([`NodeLink::sum`]) is a vector of f32 from every node: node 0 reads them in
//! node order, adds them in that order, and sends the sum back to each; so every node ends with
//! the same bits, and the sum does not depend on timing. Within a node, devices exchange through
//! burn-collective ([`crate::train::parallel`]); only device 0 of each node talks here.
//!
//! Why not burn-collective's own global all-reduce: in 0.21, burn-communication's data service
//! can miss the notice of a tensor exposed while a download waits for it (it checks its map,
//! unlocks, then awaits `Notify::notified()`, and `notify_waiters` wakes only waiters already
//! there), so two nodes deadlock at their second exchange (seen on 127.0.0.1); 0.22 replaces
//! that service, but its CUDA backend downloads LLVM at build time.
//!
//! A node that dies closes its connection: the others fail at once, naming it, and the run
//! resumes from node 0's last checkpoint when every node is started again. A node that hangs
//! fails the others after the timeout.

use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

/// What a node says first: who it is, in a run of how many nodes with how many devices each.
const HELLO: &[u8; 8] = b"bmnodes1";

/// How long node 0 waits for a new connection's hello.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A node's connections to the others of its run.
pub struct NodeLink {
    nodes: usize,
    rank: usize,
    /// Node 0: the connections of nodes 1.. in order; any other node: its connection to node 0.
    peers: Vec<Peer>,
    /// Exchanges made so far (each frame carries its number, so that nodes out of step fail).
    exchanges: u64,
    timeout: Duration,
    /// Set by the first failed exchange: the link is not usable after it.
    failed: Option<String>,
}

struct Peer {
    rank: usize,
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl NodeLink {
    /// Join the run's nodes: node 0 waits for the others on `coordinator`'s port, the others
    /// connect to it (retrying while node 0 is not up yet), each for at most `timeout`.
    /// `devices` (this node's) must be the same on every node.
    pub fn connect(
        nodes: usize,
        rank: usize,
        coordinator: &str,
        devices: usize,
        timeout: Duration,
    ) -> Result<Self> {
        ensure!(nodes >= 2 && rank < nodes, "node {rank} of {nodes}");
        let peers = if rank == 0 {
            accept_nodes(nodes, coordinator, devices, timeout)?
        } else {
            vec![join_node0(nodes, rank, coordinator, devices, timeout)?]
        };
        Ok(Self {
            nodes,
            rank,
            peers,
            exchanges: 0,
            timeout,
            failed: None,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The elementwise sum of `values` over the nodes, added in node order (node 0's first).
    /// `what` names the exchange in errors. Every node must call it with as many values.
    pub fn sum(&mut self, values: &[f32], what: &str) -> Result<Vec<f32>> {
        if let Some(f) = &self.failed {
            bail!(
                "node {}: the link to the other nodes failed earlier ({f})",
                self.rank
            );
        }
        let seq = self.exchanges;
        self.exchanges += 1;
        let result = self.exchange(seq, values, what);
        if let Err(e) = &result {
            self.failed = Some(format!("{e:#}"));
        }
        result
    }

    fn exchange(&mut self, seq: u64, values: &[f32], what: &str) -> Result<Vec<f32>> {
        let (rank, timeout) = (self.rank, self.timeout);
        let fail = |peer: usize, e: std::io::Error| io_failure(rank, peer, what, timeout, e);
        if rank != 0 {
            let p = &mut self.peers[0];
            write_frame(&mut p.writer, seq, values).map_err(|e| fail(0, e))?;
            let sum = read_frame(&mut p.reader, seq, values.len(), 0, what, rank)
                .map_err(|e| e.unwrap_or_else(|e| fail(0, e)))?;
            return Ok(sum);
        }
        let mut sum = values.to_vec();
        for p in &mut self.peers {
            let theirs = read_frame(&mut p.reader, seq, values.len(), p.rank, what, rank)
                .map_err(|e| e.unwrap_or_else(|e| fail(p.rank, e)))?;
            for (s, t) in sum.iter_mut().zip(&theirs) {
                *s += *t;
            }
        }
        for p in &mut self.peers {
            write_frame(&mut p.writer, seq, &sum).map_err(|e| fail(p.rank, e))?;
        }
        Ok(sum)
    }
}

/// The error of a failed read or write with `peer`, saying what most likely happened.
fn io_failure(
    rank: usize,
    peer: usize,
    what: &str,
    timeout: Duration,
    e: std::io::Error,
) -> anyhow::Error {
    let why = match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
            "no answer from node {peer} for {} s: it hangs, or is still busy (--node-timeout)",
            timeout.as_secs()
        ),
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => format!("node {peer} has stopped (its connection closed)"),
        _ => format!("the connection to node {peer} failed: {e}"),
    };
    anyhow!(
        "node {rank}: {why} during {what}. Start every node again to resume from the run's \
         last checkpoint (node 0 writes it)"
    )
}

/// A frame: the exchange's number, the count of values, the values (little-endian f32).
fn write_frame(w: &mut BufWriter<TcpStream>, seq: u64, values: &[f32]) -> std::io::Result<()> {
    w.write_all(&seq.to_le_bytes())?;
    w.write_all(&(values.len() as u64).to_le_bytes())?;
    let mut chunk = Vec::with_capacity(1 << 16);
    for part in values.chunks(1 << 14) {
        chunk.clear();
        chunk.extend(part.iter().flat_map(|v| v.to_le_bytes()));
        w.write_all(&chunk)?;
    }
    w.flush()
}

/// Read a frame that must be exchange `seq` with `len` values; `Err(Ok(e))` when it is another
/// (the nodes are out of step), `Err(Err(io))` when reading failed.
fn read_frame(
    r: &mut BufReader<TcpStream>,
    seq: u64,
    len: usize,
    peer: usize,
    what: &str,
    rank: usize,
) -> std::result::Result<Vec<f32>, std::result::Result<anyhow::Error, std::io::Error>> {
    let mut head = [0u8; 16];
    r.read_exact(&mut head).map_err(Err)?;
    let their_seq = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    let their_len = u64::from_le_bytes(head[8..].try_into().expect("8 bytes"));
    if their_seq != seq || their_len != len as u64 {
        return Err(Ok(anyhow!(
            "node {rank}: node {peer} is out of step during {what}: it sent exchange {their_seq} \
             of {their_len} values, this node expected exchange {seq} of {len} (are both nodes \
             running the same binary, config and data?)"
        )));
    }
    let mut values = Vec::with_capacity(len);
    let mut chunk = vec![0u8; 1 << 16];
    let mut left = len * 4;
    while left > 0 {
        let n = left.min(chunk.len());
        r.read_exact(&mut chunk[..n]).map_err(Err)?;
        values.extend(
            chunk[..n]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
        );
        left -= n;
    }
    Ok(values)
}

fn configure(stream: &TcpStream, timeout: Duration) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(())
}

fn peer(rank: usize, stream: TcpStream) -> Result<Peer> {
    Ok(Peer {
        rank,
        reader: BufReader::with_capacity(1 << 20, stream.try_clone()?),
        writer: BufWriter::with_capacity(1 << 20, stream),
    })
}

fn hello(nodes: usize, rank: usize, devices: usize) -> Vec<u8> {
    let mut b = HELLO.to_vec();
    for v in [nodes, rank, devices] {
        b.extend((v as u32).to_le_bytes());
    }
    b
}

fn port_of(coordinator: &str) -> Result<u16> {
    let (_, port) = coordinator
        .rsplit_once(':')
        .with_context(|| format!("--coordinator {coordinator:?}: expected HOST:PORT"))?;
    port.parse()
        .map_err(|_| anyhow!("--coordinator {coordinator:?}: {port:?} is not a port number"))
}

/// Node 0: wait for nodes 1.. to connect and check that each is in the same run.
fn accept_nodes(
    nodes: usize,
    coordinator: &str,
    devices: usize,
    timeout: Duration,
) -> Result<Vec<Peer>> {
    let port = port_of(coordinator)?;
    let listener = TcpListener::bind(("0.0.0.0", port)).with_context(|| {
        format!("node 0: listening on port {port} of --coordinator {coordinator}")
    })?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    let mut joined: Vec<Option<Peer>> = (1..nodes).map(|_| None).collect();
    tracing::info!(
        "node 0: waiting for {} other node(s) on port {port}",
        nodes - 1
    );
    while joined.iter().any(Option::is_none) {
        let (stream, from) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<String> = (1..nodes)
                        .filter(|r| joined[r - 1].is_none())
                        .map(|r| r.to_string())
                        .collect();
                    bail!(
                        "node 0: node(s) {} did not join within {} s on port {port} (started \
                         with the same --nodes {nodes} and --coordinator {coordinator}?)",
                        missing.join(", "),
                        timeout.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(e).context("node 0: accepting a node"),
        };
        stream.set_nonblocking(false)?;
        // A stranger that connects and says nothing holds node 0 up for seconds, not the timeout.
        configure(&stream, HANDSHAKE.min(timeout))?;
        let mut head = [0u8; 20];
        if let Err(e) = (&stream).read_exact(&mut head) {
            tracing::warn!("node 0: ignoring a connection from {from} that did not say hello: {e}");
            continue;
        }
        if &head[..8] != HELLO {
            tracing::warn!("node 0: ignoring a connection from {from}: not a biomamba node");
            continue;
        }
        let word = |i: usize| u32::from_le_bytes(head[8 + 4 * i..12 + 4 * i].try_into().unwrap());
        let (their_nodes, rank, their_devices) =
            (word(0) as usize, word(1) as usize, word(2) as usize);
        let refusal = if their_nodes != nodes {
            Some(format!(
                "it was started with --nodes {their_nodes}, node 0 with {nodes}"
            ))
        } else if rank == 0 || rank >= nodes {
            Some(format!("--node-rank {rank} is not one of 1..{nodes}"))
        } else if joined[rank - 1].is_some() {
            Some(format!("node {rank} has joined already"))
        } else if their_devices != devices {
            Some(format!(
                "it trains on {their_devices} device(s), node 0 on {devices}: every node needs \
                 the same devices"
            ))
        } else {
            None
        };
        let mut reply = vec![u8::from(refusal.is_some())];
        let msg = refusal.clone().unwrap_or_default();
        reply.extend((msg.len() as u32).to_le_bytes());
        reply.extend(msg.as_bytes());
        (&stream).write_all(&reply)?;
        if let Some(r) = refusal {
            bail!("node 0: refused a node from {from}: {r}");
        }
        tracing::info!("node 0: node {rank} joined from {from}");
        configure(&stream, timeout)?;
        joined[rank - 1] = Some(peer(rank, stream)?);
    }
    Ok(joined.into_iter().map(|p| p.expect("all joined")).collect())
}

/// Node `rank` > 0: connect to node 0 and be accepted.
fn join_node0(
    nodes: usize,
    rank: usize,
    coordinator: &str,
    devices: usize,
    timeout: Duration,
) -> Result<Peer> {
    let deadline = Instant::now() + timeout;
    let stream = loop {
        let attempt = coordinator
            .to_socket_addrs()
            .with_context(|| format!("--coordinator {coordinator}: not an address"))
            .and_then(|addrs| {
                let addrs: Vec<_> = addrs.collect();
                addrs
                    .iter()
                    .find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(5)).ok())
                    .with_context(|| format!("no answer at {coordinator}"))
            });
        match attempt {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!(
                    "node {rank}: node 0 did not answer at --coordinator {coordinator} within {} s",
                    timeout.as_secs()
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    configure(&stream, timeout)?;
    let what = "joining node 0";
    let fail = |e: std::io::Error| io_failure(rank, 0, what, timeout, e);
    (&stream)
        .write_all(&hello(nodes, rank, devices))
        .map_err(fail)?;
    let mut head = [0u8; 5];
    (&stream).read_exact(&mut head).map_err(fail)?;
    let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
    let mut msg = vec![0u8; len.min(1 << 16)];
    (&stream).read_exact(&mut msg).map_err(fail)?;
    if head[0] != 0 {
        bail!(
            "node {rank}: node 0 at {coordinator} refused this node: {}",
            String::from_utf8_lossy(&msg)
        );
    }
    tracing::info!("node {rank}: joined node 0 at {coordinator}");
    peer(0, stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Three nodes on loopback: every node gets the same sum, added in node order, exchange
    /// after exchange (the deadlock of burn-collective 0.21 was at the second).
    #[test]
    fn nodes_sum_in_node_order_every_exchange() {
        let coordinator = format!("127.0.0.1:{}", free_port());
        let t = Duration::from_secs(20);
        let handles: Vec<_> = (0..3)
            .map(|rank| {
                let c = coordinator.clone();
                std::thread::spawn(move || {
                    let mut link = NodeLink::connect(3, rank, &c, 1, t).unwrap();
                    (0..5)
                        .map(|k| {
                            // 1e8 + 1 + (-1e8) in node order is 0 in f32, not 1.
                            let v = [[1e8f32, 1.0, -1e8][rank], rank as f32 * k as f32];
                            link.sum(&v, &format!("exchange {k}")).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (k, sum) in results[0].iter().enumerate() {
            assert_eq!(sum, &vec![0.0, 3.0 * k as f32], "exchange {k}");
            assert_eq!(&results[1][k], sum);
            assert_eq!(&results[2][k], sum);
        }
    }

    /// A node that stops fails the other at once, naming it; a node of another run is refused.
    #[test]
    fn a_stopped_node_fails_the_others_and_strangers_are_refused() {
        let coordinator = format!("127.0.0.1:{}", free_port());
        let t = Duration::from_secs(20);
        let c = coordinator.clone();
        let node1 = std::thread::spawn(move || {
            let mut link = NodeLink::connect(2, 1, &c, 1, t).unwrap();
            link.sum(&[1.0], "update 1").unwrap();
            // dropped: this node stops
        });
        let mut link = NodeLink::connect(2, 0, &coordinator, 1, t).unwrap();
        assert_eq!(link.sum(&[2.0], "update 1").unwrap(), vec![3.0]);
        node1.join().unwrap();
        let started = Instant::now();
        let e = link
            .sum(&[2.0], "update 2's all-reduce")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 1 has stopped") && e.contains("update 2's all-reduce"),
            "{e}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the timeout"
        );
        let again = link.sum(&[2.0], "update 3").unwrap_err().to_string();
        assert!(again.contains("failed earlier"), "{again}");

        let coordinator = format!("127.0.0.1:{}", free_port());
        let c = coordinator.clone();
        let stranger = std::thread::spawn(move || {
            NodeLink::connect(3, 1, &c, 1, t)
                .err()
                .map(|e| e.to_string())
        });
        let e = NodeLink::connect(2, 0, &coordinator, 1, t)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--nodes 3"), "{e}");
        let theirs = stranger.join().unwrap().unwrap();
        assert!(theirs.contains("refused this node"), "{theirs}");
    }

    /// A node that does not come is named after the timeout.
    #[test]
    fn a_missing_node_is_named() {
        let coordinator = format!("127.0.0.1:{}", free_port());
        let e = NodeLink::connect(3, 0, &coordinator, 2, Duration::from_millis(300))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("node(s) 1, 2 did not join"), "{e}");
    }
}
