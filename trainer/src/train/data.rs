//! Training data: packed token sequences (`shards/{train,val}/shard-NNNNN.arrow`, read with
//! `schemas::shards`) behind [`SequenceSource`], and the deterministic global order.
//!
//! The order of an epoch is a Fisher–Yates permutation of all sequence indices drawn from a
//! ChaCha8 stream keyed by `(seed, epoch)`, so a position `(epoch, position)` alone tells where
//! a run is in its data: nothing else has to be saved to resume exactly.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use schemas::shards::ShardSet;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

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
    /// Identifies the data: changes whenever any token or the set of shards changes.
    fn fingerprint(&self) -> String;
}

/// Sequences held in memory (tests, benchmarks).
pub struct InMemorySource {
    seqs: Vec<Vec<u32>>,
    seq_len: usize,
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
        Ok(Self { seqs, seq_len })
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
    fn fingerprint(&self) -> String {
        let mut h = Xxh3::new();
        h.update(&(self.seq_len as u64).to_le_bytes());
        for s in &self.seqs {
            for t in s {
                h.update(&t.to_le_bytes());
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
        let mut fp = Xxh3::new();
        for shard in set.shards() {
            let name = shard
                .path()
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            fp.update(name.as_bytes());
            fp.update(&[0]);
            fp.update(&xxh3_64(shard.bytes()).to_le_bytes());
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        write("shard-00001.arrow", &seqs[3..]);
        assert_ne!(Shards::open_dir(dir.path()).unwrap().fingerprint(), fp);
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
