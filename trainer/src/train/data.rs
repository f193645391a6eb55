//! Training data: packed token sequences (`shards/{train,val}/shard-NNNNN.arrow`, read with
//! `schemas::shards`) behind [`SequenceSource`], and the deterministic global order.
//!
//! The order of an epoch is a Fisher–Yates permutation of all sequence indices drawn from a
//! ChaCha8 stream keyed by `(seed, epoch)`, so a position `(epoch, position)` alone tells where
//! a run is in its data: nothing else has to be saved to resume exactly.
//!
//! Several domains (PubMed and general-domain corpora, `[pretrain.mix]`) are mixed by
//! [`MixedLoader`]: each domain keeps its own order, and which domain the next sequence comes from
//! is a pure function of how many each has given so far ([`next_domain`]), so the per-domain
//! counts and positions ([`MixState`]) are the whole mixture state.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use schemas::shards::ShardSet;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// The file beside a directory's shards that caches their content hashes ([`Shards::open_dir`]).
pub const HASH_CACHE: &str = ".xxh3-cache.json";

/// A shard's content hash, valid while its `(size, mtime seconds, mtime nanoseconds)` stand.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct CachedHash {
    stamp: (u64, u64, u32),
    xxh3: u64,
}

/// Random access to fixed-length token sequences.
pub trait SequenceSource: Send + Sync {
    /// Number of sequences.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Tokens per sequence (the same for all).
    fn seq_len(&self) -> usize;
    /// Sequence `i` (`i < len()`).
    fn sequence(&self, i: usize) -> Result<Vec<u32>>;
    /// Real tokens at the start of sequence `i`: `seq_len` for packed rows, fewer for a padded
    /// document row (the rest is padding: never a target).
    fn length(&self, i: usize) -> Result<usize> {
        let _ = i;
        Ok(self.seq_len())
    }
    /// Identifies the data: changes whenever any token or the set of shards changes.
    fn fingerprint(&self) -> String;
}

/// Sequences held in memory (tests, benchmarks).
pub struct InMemorySource {
    seqs: Vec<Vec<u32>>,
    seq_len: usize,
    lengths: Option<Vec<usize>>,
}

impl InMemorySource {
    pub fn new(seqs: Vec<Vec<u32>>, seq_len: usize) -> Result<Self> {
        for (i, s) in seqs.iter().enumerate() {
            ensure!(
                s.len() == seq_len,
                "sequence {i} has {} tokens, expected {seq_len}",
                s.len()
            );
        }
        Ok(Self {
            seqs,
            seq_len,
            lengths: None,
        })
    }

    /// Padded document rows: `lengths[i]` real tokens at the start of sequence `i`.
    pub fn with_lengths(mut self, lengths: Vec<usize>) -> Result<Self> {
        ensure!(
            lengths.len() == self.seqs.len(),
            "{} lengths for {} sequences",
            lengths.len(),
            self.seqs.len()
        );
        ensure!(
            lengths.iter().all(|&l| l >= 1 && l <= self.seq_len),
            "lengths must be within 1..={}",
            self.seq_len
        );
        self.lengths = Some(lengths);
        Ok(self)
    }
}

impl SequenceSource for InMemorySource {
    fn len(&self) -> usize {
        self.seqs.len()
    }
    fn seq_len(&self) -> usize {
        self.seq_len
    }
    fn sequence(&self, i: usize) -> Result<Vec<u32>> {
        self.seqs
            .get(i)
            .cloned()
            .with_context(|| format!("sequence {i} out of range (have {})", self.seqs.len()))
    }
    fn length(&self, i: usize) -> Result<usize> {
        ensure!(i < self.seqs.len(), "sequence {i} out of range");
        Ok(self.lengths.as_ref().map_or(self.seq_len, |l| l[i]))
    }
    fn fingerprint(&self) -> String {
        let mut h = Xxh3::new();
        h.update(&(self.seq_len as u64).to_le_bytes());
        for s in &self.seqs {
            for t in s {
                h.update(&t.to_le_bytes());
            }
        }
        if let Some(l) = &self.lengths {
            for n in l {
                h.update(&(*n as u64).to_le_bytes());
            }
        }
        format!("mem:{:032x}", h.digest128())
    }
}

/// All shards of one split (`shards/train` or `shards/val`), read through the one shard reader
/// of the contract ([`schemas::shards::ShardSet`]: memory-mapped, zero-copy).
pub struct Shards {
    set: ShardSet,
    seq_len: usize,
    fingerprint: String,
}

impl Shards {
    /// Open every `shard-*.arrow` in `dir`. An absent directory or one without shards is an error.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let set = ShardSet::open(dir)?;
        ensure!(
            !set.shards().is_empty(),
            "no shard-*.arrow files in {} (run `pipeline tokenize` first)",
            dir.display()
        );
        let seq_len = set.seq_len().context("no shards given")?;
        // xxh3 of every shard's name and bytes: any changed token or shard changes the data.
        // The bytes' hash is cached beside the shards under the file's size and modification
        // time, so a start (or a resume) reads only shards written since the last one: a
        // rewritten shard gets a new modification time and is hashed again.
        let cache_path = dir.join(HASH_CACHE);
        let cached: BTreeMap<String, CachedHash> = std::fs::read(&cache_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut now = BTreeMap::new();
        let mut fp = Xxh3::new();
        for shard in set.shards() {
            let name = shard
                .path()
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::metadata(shard.path())
                .with_context(|| format!("reading {}", shard.path().display()))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            let stamp = (meta.len(), mtime.as_secs(), mtime.subsec_nanos());
            let xxh3 = match cached.get(&name) {
                Some(c) if c.stamp == stamp => c.xxh3,
                _ => xxh3_64(shard.bytes()),
            };
            fp.update(name.as_bytes());
            fp.update(&[0]);
            fp.update(&xxh3.to_le_bytes());
            now.insert(name, CachedHash { stamp, xxh3 });
        }
        if now != cached {
            // A cache only: a read-only data directory just hashes every start.
            let written = serde_json::to_vec(&now)
                .map_err(anyhow::Error::from)
                .and_then(|b| schemas::atomic::write_atomic(&cache_path, &b));
            if let Err(e) = written {
                tracing::debug!("shard hashes not cached in {}: {e:#}", cache_path.display());
            }
        }
        fp.update(&(seq_len as u64).to_le_bytes());
        Ok(Self {
            set,
            seq_len,
            fingerprint: format!("shards:{:032x}", fp.digest128()),
        })
    }

    /// The shards themselves (document starts, per-shard access).
    pub fn set(&self) -> &ShardSet {
        &self.set
    }
}

impl SequenceSource for Shards {
    fn len(&self) -> usize {
        self.set.len()
    }
    fn seq_len(&self) -> usize {
        self.seq_len
    }
    fn sequence(&self, i: usize) -> Result<Vec<u32>> {
        ensure!(
            i < self.set.len(),
            "sequence {i} out of range (have {})",
            self.set.len()
        );
        Ok(self.set.sequence(i).to_u32_vec())
    }
    fn length(&self, i: usize) -> Result<usize> {
        ensure!(
            i < self.set.len(),
            "sequence {i} out of range (have {})",
            self.set.len()
        );
        Ok(self.set.length(i))
    }
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

/// The permutation of `0..n` used in `epoch`: Fisher–Yates driven by ChaCha8 seeded with
/// `seed` on stream `epoch`. Uses only `next_u64` (multiply-shift range reduction), so it
/// does not depend on `rand`'s version-specific sampling algorithms.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
        p.swap(i, j);
    }
    p
}

/// Where a run stands in its data: the `position`-th entry of epoch `epoch`'s permutation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub position: u64,
}

/// The global order of `n` items (sequences, fine-tuning examples): epoch after epoch of
/// [`epoch_permutation`]s, crossing epoch boundaries seamlessly. `pos` alone says where it is.
pub struct IndexOrder {
    n: usize,
    seed: u64,
    pub pos: DataPosition,
    perm: Vec<u32>,
    perm_epoch: Option<u64>,
}

impl IndexOrder {
    pub fn new(n: usize, seed: u64, pos: DataPosition) -> Result<Self> {
        ensure!(n > 0, "the training data is empty");
        Ok(Self {
            n,
            seed,
            pos,
            perm: Vec::new(),
            perm_epoch: None,
        })
    }

    /// The next `count` item indices (advancing the position).
    pub fn next_indices(&mut self, count: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            if self.pos.position >= self.n as u64 {
                self.pos = DataPosition {
                    epoch: self.pos.epoch + 1,
                    position: 0,
                };
            }
            if self.perm_epoch != Some(self.pos.epoch) {
                self.perm = epoch_permutation(self.n, self.seed, self.pos.epoch);
                self.perm_epoch = Some(self.pos.epoch);
            }
            out.push(self.perm[self.pos.position as usize] as usize);
            self.pos.position += 1;
        }
        out
    }
}

/// Iterates sequences in the global order ([`IndexOrder`]).
pub struct Loader<'a> {
    source: &'a dyn SequenceSource,
    pub order: IndexOrder,
}

impl<'a> Loader<'a> {
    pub fn new(source: &'a dyn SequenceSource, seed: u64, pos: DataPosition) -> Result<Self> {
        ensure!(!source.is_empty(), "the training data has no sequences");
        Ok(Self {
            source,
            order: IndexOrder::new(source.len(), seed, pos)?,
        })
    }

    /// The next `count` sequences (advancing the position).
    pub fn next_sequences(&mut self, count: usize) -> Result<Vec<Vec<u32>>> {
        self.order
            .next_indices(count)
            .into_iter()
            .map(|i| self.source.sequence(i))
            .collect()
    }

    pub fn pos(&self) -> DataPosition {
        self.order.pos
    }
}

/// One drawn training sequence: its ids, how many of them are real (the rest is padding) and the
/// domain it came from (an index into the loader's domains).
#[derive(Clone, Debug, PartialEq)]
pub struct Drawn {
    pub ids: Vec<u32>,
    pub length: usize,
    pub domain: usize,
}

/// Where a run stands in one domain: its order's position, and the sequences and real tokens
/// it has given so far.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DomainCursor {
    pub position: DataPosition,
    pub sequences: u64,
    pub tokens: u64,
}

/// The mixture's state: one cursor per domain, by name.
pub type MixState = BTreeMap<String, DomainCursor>;

/// The domain of the next sequence, given each domain's `weights` (any positive scale) and the
/// sequences `drawn` from each so far: the one furthest behind its share of `k + 1` draws
/// (`w_d (k + 1) - c_d` largest, ties to the lowest index). Deterministic and self-correcting:
/// every domain's count stays within one sequence of `w_d k` at every `k`, so the realised
/// mixture equals the target from the first step on, and the counts alone are the whole state.
pub fn next_domain(weights: &[f64], drawn: &[u64]) -> usize {
    let total: f64 = weights.iter().sum();
    let k = drawn.iter().sum::<u64>() as f64;
    let mut best = (0, f64::NEG_INFINITY);
    for (d, (&w, &c)) in weights.iter().zip(drawn).enumerate() {
        let deficit = w / total * (k + 1.0) - c as f64;
        if deficit > best.1 + 1e-12 {
            best = (d, deficit);
        }
    }
    best.0
}

/// The permutation seed of a domain: the run's seed for PubMed (so a run without a mixture
/// draws exactly what it always did), the seed plus a hash of the name for every other one.
pub fn domain_seed(seed: u64, domain: &str) -> u64 {
    if domain == schemas::layout::PUBMED {
        seed
    } else {
        seed.wrapping_add(xxh3_64(domain.as_bytes()))
    }
}

/// Training sequences from several domains, mixed by weight ([`next_domain`]); each domain is
/// read in its own [`IndexOrder`] (seeded by [`domain_seed`]). One domain of weight 1 is a plain
/// [`Loader`].
pub struct MixedLoader<'a> {
    names: Vec<String>,
    weights: Vec<f64>,
    sources: Vec<&'a dyn SequenceSource>,
    orders: Vec<IndexOrder>,
    sequences: Vec<u64>,
    tokens: Vec<u64>,
}

impl<'a> MixedLoader<'a> {
    /// `domains`: name, weight (> 0) and training data of each; `state`: where each stands
    /// (a domain absent from it starts at its beginning).
    pub fn new(
        domains: Vec<(String, f64, &'a dyn SequenceSource)>,
        seed: u64,
        state: &MixState,
    ) -> Result<Self> {
        ensure!(!domains.is_empty(), "no training domains");
        let mut l = Self {
            names: Vec::new(),
            weights: Vec::new(),
            sources: Vec::new(),
            orders: Vec::new(),
            sequences: Vec::new(),
            tokens: Vec::new(),
        };
        for (name, weight, source) in domains {
            ensure!(
                weight > 0.0 && weight.is_finite(),
                "[pretrain.mix] {name} = {weight}: weights must be positive"
            );
            ensure!(
                !source.is_empty(),
                "the training data of domain {name} has no sequences"
            );
            let cursor = state.get(&name);
            let pos = cursor.map_or(DataPosition::default(), |c| c.position);
            l.orders.push(
                IndexOrder::new(source.len(), domain_seed(seed, &name), pos)
                    .with_context(|| format!("domain {name}"))?,
            );
            l.sequences.push(cursor.map_or(0, |c| c.sequences));
            l.tokens.push(cursor.map_or(0, |c| c.tokens));
            l.names.push(name);
            l.weights.push(weight);
            l.sources.push(source);
        }
        Ok(l)
    }

    /// The next `count` sequences of the mixture (advancing every position).
    pub fn next_sequences(&mut self, count: usize) -> Result<Vec<Drawn>> {
        (0..count)
            .map(|_| {
                let d = next_domain(&self.weights, &self.sequences);
                let i = self.orders[d].next_indices(1)[0];
                let src = self.sources[d];
                let ids = src
                    .sequence(i)
                    .with_context(|| format!("domain {}", self.names[d]))?;
                let length = src.length(i)?;
                self.sequences[d] += 1;
                self.tokens[d] += length as u64;
                Ok(Drawn {
                    ids,
                    length,
                    domain: d,
                })
            })
            .collect()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// The weights normalised to shares.
    pub fn shares(&self) -> Vec<f64> {
        let total: f64 = self.weights.iter().sum();
        self.weights.iter().map(|w| w / total).collect()
    }
    /// Sequences drawn from each domain so far (in [`names`](Self::names) order).
    pub fn sequences(&self) -> &[u64] {
        &self.sequences
    }
    /// Real tokens drawn from each domain so far.
    pub fn tokens(&self) -> &[u64] {
        &self.tokens
    }
    /// Position of domain `d`'s order.
    pub fn position(&self, d: usize) -> DataPosition {
        self.orders[d].pos
    }
    /// Every domain's cursor, by name.
    pub fn state(&self) -> MixState {
        (0..self.names.len())
            .map(|d| {
                (
                    self.names[d].clone(),
                    DomainCursor {
                        position: self.orders[d].pos,
                        sequences: self.sequences[d],
                        tokens: self.tokens[d],
                    },
                )
            })
            .collect()
    }
}

/// `[B, L]` id tensor; every id must be below `vocab_size`.
pub fn batch_tensor<B: Backend>(
    seqs: &[Vec<u32>],
    vocab_size: usize,
    device: &B::Device,
) -> Result<Tensor<B, 2, Int>> {
    let len = seqs.first().map(|s| s.len()).context("empty batch")?;
    let mut flat = Vec::with_capacity(seqs.len() * len);
    for (b, s) in seqs.iter().enumerate() {
        ensure!(
            s.len() == len,
            "batch row {b}: {} tokens, expected {len}",
            s.len()
        );
        for (t, &id) in s.iter().enumerate() {
            ensure!(
                (id as usize) < vocab_size,
                "token id {id} at position {t} of batch row {b} is outside the model vocabulary \
                 [0, {vocab_size}) — do the shards come from a different tokenizer?"
            );
            flat.push(id as i64);
        }
    }
    Ok(Tensor::from_data(
        TensorData::new(flat, [seqs.len(), len]),
        device,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_depends_on_seed_and_epoch() {
        let p = epoch_permutation(1000, 7, 0);
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
        assert_eq!(p, epoch_permutation(1000, 7, 0));
        assert_ne!(p, epoch_permutation(1000, 7, 1));
        assert_ne!(p, epoch_permutation(1000, 8, 0));
    }

    #[test]
    fn loader_crosses_epochs_and_resumes_from_a_position() {
        let seqs: Vec<Vec<u32>> = (0..10).map(|i| vec![i, i + 1]).collect();
        let src = InMemorySource::new(seqs, 2).unwrap();
        let mut a = Loader::new(
            &src,
            3,
            DataPosition {
                epoch: 0,
                position: 0,
            },
        )
        .unwrap();
        let all = a.next_sequences(25).unwrap();
        assert_eq!(
            a.pos(),
            DataPosition {
                epoch: 2,
                position: 5
            }
        );
        let mut b = Loader::new(
            &src,
            3,
            DataPosition {
                epoch: 1,
                position: 4,
            },
        )
        .unwrap();
        assert_eq!(b.next_sequences(11).unwrap(), all[14..25].to_vec());
        // Every epoch visits every sequence once.
        let mut e0: Vec<u32> = all[..10].iter().map(|s| s[0]).collect();
        e0.sort();
        assert_eq!(e0, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn shard_roundtrip_through_memory_map() {
        let dir = tempfile::tempdir().unwrap();
        let seqs: Vec<Vec<u32>> = (0..7)
            .map(|i| (0..16).map(|t| i * 100 + t).collect())
            .collect();
        let write = |name: &str, seqs: &[Vec<u32>]| {
            testkit::shards::write_sequences(&dir.path().join(name), seqs, 16, 4096, 0).unwrap()
        };
        write("shard-00000.arrow", &seqs[..4]);
        write("shard-00001.arrow", &seqs[4..]);
        let set = Shards::open_dir(dir.path()).unwrap();
        assert_eq!(set.len(), 7);
        assert_eq!(set.seq_len(), 16);
        for (i, s) in seqs.iter().enumerate() {
            assert_eq!(&set.sequence(i).unwrap(), s);
        }
        assert!(set.sequence(7).is_err());
        let fp = set.fingerprint();
        assert_eq!(Shards::open_dir(dir.path()).unwrap().fingerprint(), fp);
        write("shard-00001.arrow", &seqs[3..]);
        let changed = Shards::open_dir(dir.path()).unwrap().fingerprint();
        assert_ne!(changed, fp);
        // The same size, one token changed: refused too (a new modification time, hashed again).
        let mut other = seqs[4..].to_vec();
        other[0][3] += 1;
        std::thread::sleep(std::time::Duration::from_millis(10));
        write("shard-00001.arrow", &other);
        let same_size = Shards::open_dir(dir.path()).unwrap().fingerprint();
        assert!(same_size != changed && same_size != fp);
    }

    /// A start hashes only shards written since the last one: with the cache told another hash
    /// for an unchanged shard, the fingerprint follows the cache (the bytes were not read).
    #[test]
    fn unchanged_shards_are_not_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let seqs: Vec<Vec<u32>> = (0..4).map(|i| vec![i; 16]).collect();
        testkit::shards::write_sequences(&dir.path().join("shard-00000.arrow"), &seqs, 16, 4096, 0)
            .unwrap();
        let fp = Shards::open_dir(dir.path()).unwrap().fingerprint();
        let cache = dir.path().join(HASH_CACHE);
        let mut entries: BTreeMap<String, CachedHash> =
            serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
        entries.get_mut("shard-00000.arrow").unwrap().xxh3 ^= 1;
        std::fs::write(&cache, serde_json::to_vec(&entries).unwrap()).unwrap();
        assert_ne!(Shards::open_dir(dir.path()).unwrap().fingerprint(), fp);
        // Without the cache (a read-only or fresh directory) the bytes are hashed: as at first.
        std::fs::remove_file(&cache).unwrap();
        assert_eq!(Shards::open_dir(dir.path()).unwrap().fingerprint(), fp);
    }

    /// The deficit rule keeps every domain within one sequence of its share at every draw, for
    /// shares that are not multiples of each other (the BioMamba-2 83/8/8 mix among them).
    #[test]
    fn mixture_tracks_its_weights_within_one_sequence() {
        for weights in [
            vec![0.834, 0.083, 0.083],
            vec![0.5, 0.3, 0.2],
            vec![1.0, 1.0],
            vec![0.97, 0.01, 0.01, 0.01],
            vec![1.0],
        ] {
            let total: f64 = weights.iter().sum();
            let mut drawn = vec![0u64; weights.len()];
            for k in 1..=5000u64 {
                let d = next_domain(&weights, &drawn);
                drawn[d] += 1;
                for (w, c) in weights.iter().zip(&drawn) {
                    let err = *c as f64 - w / total * k as f64;
                    assert!(err.abs() <= 1.0, "{weights:?} at {k}: {drawn:?}");
                }
            }
        }
    }

    /// A mixed loader resumed from its state continues exactly; every domain visits all of its
    /// sequences once per epoch; padded rows report their lengths.
    #[test]
    fn mixed_loader_resumes_from_its_state() {
        let a = InMemorySource::new((0..7).map(|i| vec![i, 0, 0]).collect(), 3)
            .unwrap()
            .with_lengths(vec![1, 2, 3, 1, 2, 3, 1])
            .unwrap();
        let b = InMemorySource::new((0..3).map(|i| vec![100 + i; 3]).collect(), 3).unwrap();
        let domains = || -> Vec<(String, f64, &dyn SequenceSource)> {
            vec![("a".into(), 0.7, &a), ("b".into(), 0.3, &b)]
        };
        let mut whole = MixedLoader::new(domains(), 5, &MixState::new()).unwrap();
        let all = whole.next_sequences(40).unwrap();
        let mut first = MixedLoader::new(domains(), 5, &MixState::new()).unwrap();
        let head = first.next_sequences(17).unwrap();
        let mut second = MixedLoader::new(domains(), 5, &first.state()).unwrap();
        let tail = second.next_sequences(23).unwrap();
        assert_eq!([head, tail].concat(), all);
        assert_eq!(second.state(), whole.state());
        assert_eq!(whole.sequences(), [28, 12]);
        let a_first_epoch: std::collections::BTreeSet<u32> = all
            .iter()
            .filter(|d| d.domain == 0)
            .take(7)
            .map(|d| d.ids[0])
            .collect();
        assert_eq!(a_first_epoch.len(), 7);
        for d in &all {
            let expect = if d.domain == 0 {
                [1, 2, 3][d.ids[0] as usize % 3]
            } else {
                3
            };
            assert_eq!(d.length, expect);
        }
        let toks: u64 = all
            .iter()
            .filter(|d| d.domain == 0)
            .map(|d| d.length as u64)
            .sum();
        assert_eq!(whole.tokens()[0], toks);
        // One PubMed domain draws exactly what the plain loader does.
        let mut plain = Loader::new(&a, 5, DataPosition::default()).unwrap();
        let mut one = MixedLoader::new(
            vec![(
                schemas::layout::PUBMED.into(),
                1.0,
                &a as &dyn SequenceSource,
            )],
            5,
            &MixState::new(),
        )
        .unwrap();
        let ids: Vec<Vec<u32>> = one
            .next_sequences(15)
            .unwrap()
            .into_iter()
            .map(|d| d.ids)
            .collect();
        assert_eq!(ids, plain.next_sequences(15).unwrap());
    }

    #[test]
    fn garbage_shard_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shard-00000.arrow");
        std::fs::write(&p, vec![7u8; 100]).unwrap();
        let e = format!("{:#}", Shards::open_dir(dir.path()).err().unwrap());
        assert!(e.contains("shard-00000.arrow"), "{e}");
    }
}
