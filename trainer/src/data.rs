//! Training data: packed token sequences (`shards/{train,val}/shard-NNNNN.arrow`, schema
//! `schemas::shards::schema`) read through memory maps, and the deterministic global order.
//!
//! The order of an epoch is a Fisher–Yates permutation of all sequence indices drawn from a
//! ChaCha8 stream keyed by `(seed, epoch)`, so a position `(epoch, position)` alone tells where
//! a run is in its data: nothing else has to be saved to resume exactly.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{Array, AsArray, FixedSizeListArray, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, UInt16Type, UInt32Type};
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::{convert::fb_to_schema, root_as_footer};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
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

/// One memory-mapped shard: its record batches decoded zero-copy over the map.
struct MappedShard {
    path: PathBuf,
    /// (first global row of the batch within this shard, `input_ids` column).
    batches: Vec<(usize, FixedSizeListArray)>,
    rows: usize,
}

/// All shards of one split (`shards/train` or `shards/val`), in file-name order.
pub struct ShardSet {
    shards: Vec<MappedShard>,
    /// First global sequence index of each shard.
    starts: Vec<usize>,
    len: usize,
    seq_len: usize,
    fingerprint: String,
}

impl ShardSet {
    /// Open every `shard-*.arrow` in `dir`. An absent directory or one without shards is an error.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir)
            .with_context(|| format!("reading shard directory {}", dir.display()))?
        {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with("shard-") && name.ends_with(".arrow") {
                paths.push(path);
            }
        }
        paths.sort();
        ensure!(
            !paths.is_empty(),
            "no shard-*.arrow files in {} (run `pipeline tokenize` first)",
            dir.display()
        );
        Self::open(&paths)
    }

    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut starts = Vec::with_capacity(paths.len());
        let mut len = 0;
        let mut seq_len = None;
        let mut fp = Xxh3::new();
        for path in paths {
            let (shard, shard_seq_len, content_hash) = open_shard(path)?;
            if let Some(l) = seq_len
                && l != shard_seq_len
            {
                bail!(
                    "{}: sequences of {shard_seq_len} tokens, but earlier shards have {l}",
                    path.display()
                );
            }
            seq_len = Some(shard_seq_len);
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            fp.update(name.as_bytes());
            fp.update(&[0]);
            fp.update(&content_hash.to_le_bytes());
            starts.push(len);
            len += shard.rows;
            shards.push(shard);
        }
        let seq_len = seq_len.context("no shards given")?;
        fp.update(&(seq_len as u64).to_le_bytes());
        Ok(Self {
            shards,
            starts,
            len,
            seq_len,
            fingerprint: format!("shards:{:032x}", fp.digest128()),
        })
    }
}

fn open_shard(path: &Path) -> Result<(MappedShard, usize, u64)> {
    let file = File::open(path).with_context(|| format!("opening shard {}", path.display()))?;
    // SAFETY: shards are written once (atomically renamed into place) and never modified.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("memory-mapping {}", path.display()))?;
    let size = map.len();
    ensure!(
        size >= 16,
        "{}: {size} bytes, too short for an Arrow IPC file",
        path.display()
    );
    let content_hash = xxh3_64(&map);
    let ptr = NonNull::new(map.as_ptr() as *mut u8).context("null memory map")?;
    // SAFETY: the buffer keeps the map alive (it owns it) and never writes through the pointer.
    let buffer = unsafe { Buffer::from_custom_allocation(ptr, size, Arc::new(map)) };
    let trailer: [u8; 10] = buffer[size - 10..].try_into().expect("10 bytes");
    let footer_len = read_footer_length(trailer).with_context(|| {
        format!(
            "{}: no Arrow IPC file trailer at byte {}",
            path.display(),
            size - 10
        )
    })?;
    ensure!(
        footer_len + 10 <= size,
        "{}: footer length {footer_len} exceeds the file size {size}",
        path.display()
    );
    let footer = root_as_footer(&buffer[size - 10 - footer_len..size - 10]).map_err(|e| {
        anyhow::anyhow!(
            "{}: invalid Arrow IPC footer at byte {}: {e}",
            path.display(),
            size - 10 - footer_len
        )
    })?;
    let schema =
        Arc::new(fb_to_schema(footer.schema().with_context(|| {
            format!("{}: IPC footer has no schema", path.display())
        })?));
    let (col, field) = schema
        .column_with_name("input_ids")
        .with_context(|| format!("{}: no `input_ids` column", path.display()))?;
    let seq_len = match field.data_type() {
        DataType::FixedSizeList(item, n)
            if matches!(item.data_type(), DataType::UInt16 | DataType::UInt32) && *n > 1 =>
        {
            *n as usize
        }
        other => bail!(
            "{}: `input_ids` is {other}, expected FixedSizeList<UInt16 or UInt32, seq_len > 1>",
            path.display()
        ),
    };
    let decoder = FileDecoder::new(schema.clone(), footer.version()).with_projection(vec![col]);
    let mut batches = Vec::new();
    let mut rows = 0;
    for (bi, block) in footer.recordBatches().into_iter().flatten().enumerate() {
        let block_len = block.bodyLength() as usize + block.metaDataLength() as usize;
        let offset = block.offset() as usize;
        ensure!(
            offset + block_len <= size,
            "{}: record batch {bi} at byte {offset} runs past the end of the file",
            path.display()
        );
        let data = buffer.slice_with_length(offset, block_len);
        let batch: RecordBatch = decoder
            .read_record_batch(block, &data)
            .with_context(|| format!("{}: decoding record batch {bi}", path.display()))?
            .with_context(|| format!("{}: record batch {bi} is empty", path.display()))?;
        let ids = batch.column(0).as_fixed_size_list().clone();
        ensure!(
            ids.null_count() == 0,
            "{}: record batch {bi} has null sequences",
            path.display()
        );
        let n = ids.len();
        batches.push((rows, ids));
        rows += n;
    }
    Ok((
        MappedShard {
            path: path.to_path_buf(),
            batches,
            rows,
        },
        seq_len,
        content_hash,
    ))
}

impl SequenceSource for ShardSet {
    fn len(&self) -> usize {
        self.len
    }
    fn seq_len(&self) -> usize {
        self.seq_len
    }
    fn sequence(&self, i: usize) -> Result<Vec<u32>> {
        ensure!(
            i < self.len,
            "sequence {i} out of range (have {})",
            self.len
        );
        let s = self.starts.partition_point(|&st| st <= i) - 1;
        let shard = &self.shards[s];
        let row = i - self.starts[s];
        let b = shard.batches.partition_point(|(st, _)| *st <= row) - 1;
        let (first, ids) = &shard.batches[b];
        let r = row - first;
        let values = ids.value(r);
        let out: Vec<u32> = match values.data_type() {
            DataType::UInt16 => values
                .as_primitive::<UInt16Type>()
                .values()
                .iter()
                .map(|&t| t as u32)
                .collect(),
            DataType::UInt32 => values.as_primitive::<UInt32Type>().values().to_vec(),
            other => bail!(
                "{}: unexpected token type {other} in row {row}",
                shard.path.display()
            ),
        };
        ensure!(
            out.len() == self.seq_len,
            "{}: row {row} has {} tokens, expected {}",
            shard.path.display(),
            out.len(),
            self.seq_len
        );
        Ok(out)
    }
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

/// Write sequences as one shard with the `schemas::shards` schema (tests and tools; the
/// pipeline's `tokenize` stage is the producer of real shards). Written atomically.
pub fn write_shard(
    path: &Path,
    seqs: &[Vec<u32>],
    seq_len: usize,
    vocab_size: usize,
) -> Result<()> {
    use arrow::array::{ArrayRef, ListArray, UInt16Array, UInt32Array};
    use arrow::buffer::OffsetBuffer;
    use arrow::datatypes::Field;
    use arrow::ipc::writer::FileWriter;
    let schema = schemas::shards::schema(seq_len, vocab_size);
    let flat: Vec<u32> = seqs.iter().flatten().copied().collect();
    ensure!(
        seqs.iter().all(|s| s.len() == seq_len),
        "every sequence must have {seq_len} tokens"
    );
    let values: ArrayRef = match schemas::shards::token_type(vocab_size) {
        DataType::UInt16 => Arc::new(UInt16Array::from(
            flat.iter().map(|&t| t as u16).collect::<Vec<_>>(),
        )),
        _ => Arc::new(UInt32Array::from(flat)),
    };
    let item = match schema.field(0).data_type() {
        DataType::FixedSizeList(item, _) => item.clone(),
        _ => unreachable!("schema defines input_ids as a FixedSizeList"),
    };
    let ids = FixedSizeListArray::try_new(item, seq_len as i32, values, None)?;
    let starts = ListArray::try_new(
        Arc::new(Field::new("item", DataType::UInt32, false)),
        OffsetBuffer::from_lengths(seqs.iter().map(|_| 1)),
        Arc::new(UInt32Array::from(vec![0u32; seqs.len()])),
        None,
    )?;
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(starts)])?;
    let mut file = schemas::atomic::AtomicFile::create(path)?;
    {
        let mut w = FileWriter::try_new(&mut file, &schema)?;
        w.write(&batch)?;
        w.finish()?;
    }
    file.commit()?;
    Ok(())
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
        write_shard(&dir.path().join("shard-00000.arrow"), &seqs[..4], 16, 4096).unwrap();
        write_shard(&dir.path().join("shard-00001.arrow"), &seqs[4..], 16, 4096).unwrap();
        let set = ShardSet::open_dir(dir.path()).unwrap();
        assert_eq!(set.len(), 7);
        assert_eq!(set.seq_len(), 16);
        for (i, s) in seqs.iter().enumerate() {
            assert_eq!(&set.sequence(i).unwrap(), s);
        }
        assert!(set.sequence(7).is_err());
        let fp = set.fingerprint();
        write_shard(&dir.path().join("shard-00001.arrow"), &seqs[3..], 16, 4096).unwrap();
        assert_ne!(ShardSet::open_dir(dir.path()).unwrap().fingerprint(), fp);
    }

    #[test]
    fn garbage_shard_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shard-00000.arrow");
        std::fs::write(&p, vec![7u8; 100]).unwrap();
        let e = format!("{:#}", ShardSet::open_dir(dir.path()).err().unwrap());
        assert!(e.contains("shard-00000.arrow"), "{e}");
    }
}
