//! `shards/{train,val}/shard-NNNNN.arrow`: packed token sequences for the trainer.
//!
//! Shards are uncompressed Arrow IPC files, so they can be memory-mapped: [`ShardReader`] maps a file
//! and hands out sequence `i` as a slice of the map in O(1); [`ShardSet`] joins a split's shards into
//! one index space. [`batch`] + [`write_shard`] are the writing side (the pipeline uses them; tests of
//! the trainer can too).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail, ensure};
use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, ListArray, RecordBatch, UInt16Array, UInt32Array,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt16Type, UInt32Type};
use arrow::ipc::convert::fb_to_schema;
use arrow::ipc::reader::{FileDecoder, read_footer_length};
use arrow::ipc::root_as_footer;
use arrow::ipc::writer::FileWriter;
use memmap2::Mmap;

pub const VERSION: u32 = 1;
/// The `biomamba.table` name of shard files.
pub const TABLE: &str = "shards";

/// Token id type of a shard: u16 while the vocabulary fits, u32 beyond 65,535 tokens.
pub fn token_type(vocab_size: usize) -> DataType {
    if vocab_size <= u16::MAX as usize + 1 {
        DataType::UInt16
    } else {
        DataType::UInt32
    }
}

/// How the rows of a shard were made (`[tokenize] sequences`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sequences {
    /// Documents concatenated (EOS after each) and cut into rows of `seq_len`: every token is real.
    #[default]
    Packed,
    /// One document per row (its tokens and EOS, truncated to `seq_len`), right-padded with the
    /// pad id: the `lengths` column says how many tokens of each row are real.
    Document,
}

impl Sequences {
    pub fn name(self) -> &'static str {
        match self {
            Sequences::Packed => "packed",
            Sequences::Document => "document",
        }
    }
}

/// `input_ids`: FixedSizeList<token, seq_len>, one sequence per row.
/// `doc_starts`: List<UInt32>, positions inside the row where a new document begins
/// (the token after an EOS, and 0 when the row starts a document).
/// `lengths` (document sequences only): UInt32, the number of real tokens at the start of the row;
/// positions from there on are padding, never a target of the loss or of perplexity.
pub fn schema(seq_len: usize, vocab_size: usize) -> SchemaRef {
    schema_of(seq_len, vocab_size, Sequences::Packed)
}

/// The schema of shards holding `sequences` rows.
pub fn schema_of(seq_len: usize, vocab_size: usize, sequences: Sequences) -> SchemaRef {
    let token = token_type(vocab_size);
    let mut fields = vec![
        Field::new(
            "input_ids",
            DataType::FixedSizeList(Arc::new(Field::new("item", token, false)), seq_len as i32),
            false,
        ),
        Field::new(
            "doc_starts",
            DataType::List(Arc::new(Field::new("item", DataType::UInt32, false))),
            false,
        ),
    ];
    if sequences == Sequences::Document {
        fields.push(Field::new(LENGTHS, DataType::UInt32, false));
    }
    Arc::new(Schema::new(fields).with_metadata(crate::table_metadata(TABLE, VERSION)))
}

/// The column of real-token counts of document shards.
pub const LENGTHS: &str = "lengths";

/// The stage that writes the shards; its manifest (`manifests/pack.json`) describes them.
pub const PACK_STAGE: &str = "pack";

/// What readers of the shards need from the pack manifest's summary (the pipeline writes more).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct PackFacts {
    /// The id appended after every document (GPT-NeoX `<|endoftext|>` = 0).
    pub eos_id: u32,
    pub vocab_size: usize,
    pub seq_len: usize,
    /// xxh3-128 of the tokenizer file the shards were made with.
    pub tokenizer_hash: String,
    /// Packed rows or one document per row (older manifests: packed).
    #[serde(default)]
    pub sequences: Sequences,
}

/// The pack manifest's facts under `layout`, or `None` when the shards were not made by
/// `pipeline tokenize` there (no manifest). PubMed's shards (`shards/{train,val}`); see
/// [`pack_facts_of`] for any domain.
pub fn pack_facts(layout: &crate::Layout) -> Result<Option<PackFacts>> {
    pack_facts_of(layout, crate::layout::PUBMED)
}

/// The stage (and manifest, `manifests/<stage>.json`) that packs `domain`'s shards:
/// [`PACK_STAGE`] for PubMed ([`crate::layout::PUBMED`]), `pack-<name>` for the corpus `<name>`.
pub fn pack_stage_of(domain: &str) -> String {
    if domain == crate::layout::PUBMED {
        PACK_STAGE.to_string()
    } else {
        format!("{PACK_STAGE}-{domain}")
    }
}

/// The facts of `domain`'s shards ([`crate::Layout::domain_shards`]) from its pack manifest
/// ([`pack_stage_of`]), or `None` when that domain was never packed under `layout`.
pub fn pack_facts_of(layout: &crate::Layout, domain: &str) -> Result<Option<PackFacts>> {
    let path = layout.manifest(&pack_stage_of(domain));
    let Some(manifest) = crate::StageManifest::load(&path)? else {
        return Ok(None);
    };
    serde_json::from_value(manifest.summary)
        .map(Some)
        .with_context(|| {
            format!(
                "{}: summary lacks the shard facts (eos_id, vocab_size, seq_len, tokenizer_hash)",
                path.display()
            )
        })
}

/// The domains packed under `layout`, i.e. those with a pack manifest: [`crate::layout::PUBMED`]
/// first (when `manifests/pack.json` exists), then every corpus with a `manifests/pack-<name>.json`,
/// by name. Their shards are at [`crate::Layout::domain_shards`], their facts [`pack_facts_of`].
pub fn domains(layout: &crate::Layout) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if layout.manifest(PACK_STAGE).is_file() {
        out.push(crate::layout::PUBMED.to_string());
    }
    let prefix = format!("{PACK_STAGE}-");
    for path in crate::layout::files_with_suffix(&layout.manifests(), ".json")? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(domain) = name
            .strip_suffix(".json")
            .and_then(|n| n.strip_prefix(&prefix))
        {
            out.push(domain.to_string());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Build one shard batch from `rows` packed sequences: `tokens` holds `rows * seq_len` ids (row-major)
/// and `doc_starts[r]` the document-start positions of row `r`. Ids are narrowed to u16 when the
/// vocabulary allows it; an id that does not fit the vocabulary is an error.
pub fn batch(
    seq_len: usize,
    vocab_size: usize,
    tokens: &[u32],
    doc_starts: &[Vec<u32>],
) -> Result<RecordBatch> {
    batch_of(seq_len, vocab_size, tokens, doc_starts, None)
}

/// Build one shard batch of document rows: as [`batch`], plus `lengths[r]`, the number of real
/// tokens at the start of row `r` (1..=seq_len); the rest of the row is padding.
pub fn document_batch(
    seq_len: usize,
    vocab_size: usize,
    tokens: &[u32],
    doc_starts: &[Vec<u32>],
    lengths: &[u32],
) -> Result<RecordBatch> {
    batch_of(seq_len, vocab_size, tokens, doc_starts, Some(lengths))
}

fn batch_of(
    seq_len: usize,
    vocab_size: usize,
    tokens: &[u32],
    doc_starts: &[Vec<u32>],
    lengths: Option<&[u32]>,
) -> Result<RecordBatch> {
    ensure!(seq_len > 0, "seq_len must be positive");
    if let Some(lengths) = lengths {
        ensure!(
            lengths.len() == doc_starts.len(),
            "shard batch: {} lengths for {} rows",
            lengths.len(),
            doc_starts.len()
        );
        if let Some((r, l)) = lengths
            .iter()
            .enumerate()
            .find(|(_, l)| **l == 0 || **l as usize > seq_len)
        {
            bail!("shard batch: row {r} has length {l}, expected 1..={seq_len}");
        }
    }
    ensure!(
        tokens.len() == doc_starts.len() * seq_len,
        "shard batch: {} tokens for {} rows of {seq_len}",
        tokens.len(),
        doc_starts.len()
    );
    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
        bail!("token id {bad} outside the vocabulary of {vocab_size}");
    }
    let sequences = if lengths.is_some() {
        Sequences::Document
    } else {
        Sequences::Packed
    };
    let schema = schema_of(seq_len, vocab_size, sequences);
    let token = token_type(vocab_size);
    let values: ArrayRef = match token {
        DataType::UInt16 => Arc::new(UInt16Array::from_iter_values(
            tokens.iter().map(|&t| t as u16),
        )),
        _ => Arc::new(UInt32Array::from_iter_values(tokens.iter().copied())),
    };
    let item = Arc::new(Field::new("item", token, false));
    let input_ids = FixedSizeListArray::try_new(item, seq_len as i32, values, None)?;
    let mut offsets = Vec::with_capacity(doc_starts.len() + 1);
    offsets.push(0i32);
    let mut flat = Vec::new();
    for starts in doc_starts {
        flat.extend_from_slice(starts);
        offsets.push(i32::try_from(flat.len()).context("too many document starts in one shard")?);
    }
    let starts_field = Arc::new(Field::new("item", DataType::UInt32, false));
    let doc_starts = ListArray::try_new(
        starts_field,
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(UInt32Array::from(flat)),
        None,
    )?;
    let mut columns: Vec<ArrayRef> = vec![Arc::new(input_ids), Arc::new(doc_starts)];
    if let Some(lengths) = lengths {
        columns.push(Arc::new(UInt32Array::from(lengths.to_vec())));
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Write one shard as an uncompressed Arrow IPC file, atomically. When `path` already holds exactly
/// these bytes it is left untouched (mtime kept). Returns whether the file was (re)written.
pub fn write_shard(path: &Path, batch: &RecordBatch) -> Result<bool> {
    let mut file = crate::AtomicFile::create(path)?;
    {
        let mut writer = FileWriter::try_new(&mut file, batch.schema_ref())
            .with_context(|| format!("starting Arrow IPC file {}", path.display()))?;
        writer
            .write(batch)
            .with_context(|| format!("writing {}", path.display()))?;
        writer
            .finish()
            .with_context(|| format!("finishing {}", path.display()))?;
    }
    file.commit_unless_identical()
}

/// File name of shard `index`: `shard-NNNNN.arrow`.
pub fn shard_file_name(index: usize) -> String {
    format!("shard-{index:05}.arrow")
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The token ids of one packed sequence, borrowed from the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sequence<'a> {
    U16(&'a [u16]),
    U32(&'a [u32]),
}

impl Sequence<'_> {
    pub fn len(&self) -> usize {
        match self {
            Sequence::U16(s) => s.len(),
            Sequence::U32(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Sequence::U16(s) => s[i] as u32,
            Sequence::U32(s) => s[i],
        }
    }
    /// The ids widened to u32 (one copy of `seq_len` ids).
    pub fn to_u32_vec(&self) -> Vec<u32> {
        match self {
            Sequence::U16(s) => s.iter().map(|&t| t as u32).collect(),
            Sequence::U32(s) => s.to_vec(),
        }
    }
}

enum Ids {
    U16(UInt16Array),
    U32(UInt32Array),
}

struct Block {
    /// Global row index of this record batch's first row.
    first_row: usize,
    rows: usize,
    ids: Ids,
    doc_starts: ListArray,
    /// Real tokens per row (document shards only).
    lengths: Option<UInt32Array>,
}

/// A shard file, memory-mapped. Opening parses only the footer and the record batches' metadata
/// (the arrays point into the map, nothing is copied); [`ShardReader::sequence`] is O(1).
pub struct ShardReader {
    path: PathBuf,
    /// The whole mapped file.
    file: Buffer,
    seq_len: usize,
    token_type: DataType,
    sequences: Sequences,
    rows: usize,
    blocks: Vec<Block>,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader")
            .field("path", &self.path)
            .field("seq_len", &self.seq_len)
            .field("token_type", &self.token_type)
            .field("rows", &self.rows)
            .finish()
    }
}

impl ShardReader {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        Self::open_inner(&path).with_context(|| format!("reading shard {}", path.display()))
    }

    fn open_inner(path: &Path) -> Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len() as usize;
        // Magic (6) + padding (2) at the start, footer length (4) + magic (6) at the end.
        ensure!(
            len >= 18,
            "{len} bytes is too short for an Arrow IPC file (expected at least 18)"
        );
        // SAFETY: shard files are only ever replaced by atomic rename, never modified in place, so
        // the mapped bytes do not change under us.
        let map = unsafe { Mmap::map(&file)? };
        ensure!(
            &map[..6] == b"ARROW1",
            "not an Arrow IPC file: bytes 0..6 are {:?}, expected \"ARROW1\"",
            &map[..6]
        );
        let ptr = NonNull::new(map.as_ptr() as *mut u8).context("memory map returned null")?;
        let map = Arc::new(map);
        // SAFETY: `ptr` is valid for `len` bytes for as long as the map lives, and the buffer owns
        // an `Arc` of the map.
        let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, map) };
        let trailer_start = len - 10;
        let trailer: [u8; 10] = buffer[trailer_start..].try_into().expect("10 bytes");
        let footer_len = read_footer_length(trailer)
            .map_err(|e| anyhow!("invalid trailer at byte {trailer_start}: {e}"))?;
        ensure!(
            footer_len <= trailer_start - 8,
            "footer length {footer_len} at byte {trailer_start} exceeds the file"
        );
        let footer = root_as_footer(&buffer[trailer_start - footer_len..trailer_start])
            .map_err(|e| anyhow!("invalid footer at byte {}: {e}", trailer_start - footer_len))?;
        let schema = Arc::new(fb_to_schema(
            footer.schema().context("footer holds no schema")?,
        ));
        let (seq_len, token_type, sequences) = check_schema(&schema)?;
        let decoder = FileDecoder::new(schema, footer.version()).with_require_alignment(true);
        let mut blocks = Vec::new();
        let mut rows = 0usize;
        for (n, block) in footer.recordBatches().into_iter().flatten().enumerate() {
            let offset = usize::try_from(block.offset()).context("negative block offset")?;
            let block_len = block.bodyLength() as usize + block.metaDataLength() as usize;
            ensure!(
                offset.checked_add(block_len).is_some_and(|end| end <= len),
                "record batch {n} at byte {offset} (+{block_len}) runs past the end of the file"
            );
            let data = buffer.slice_with_length(offset, block_len);
            let batch = decoder
                .read_record_batch(block, &data)
                .with_context(|| format!("decoding record batch {n} at byte {offset}"))?
                .with_context(|| format!("record batch {n} at byte {offset} is empty"))?;
            let input_ids = batch
                .column(0)
                .as_fixed_size_list_opt()
                .context("input_ids is not a fixed-size list")?;
            let doc_starts = batch
                .column(1)
                .as_list_opt::<i32>()
                .context("doc_starts is not a list")?
                .clone();
            ensure!(
                input_ids.null_count() == 0 && doc_starts.null_count() == 0,
                "record batch {n} holds null rows"
            );
            let lengths = match sequences {
                Sequences::Packed => None,
                Sequences::Document => {
                    let l = batch
                        .column(2)
                        .as_primitive_opt::<UInt32Type>()
                        .context("lengths is not UInt32")?
                        .clone();
                    ensure!(l.null_count() == 0, "record batch {n}: null lengths");
                    if let Some((r, v)) = l
                        .values()
                        .iter()
                        .enumerate()
                        .find(|(_, v)| **v == 0 || **v as usize > seq_len)
                    {
                        bail!("record batch {n}, row {r}: length {v}, expected 1..={seq_len}");
                    }
                    Some(l)
                }
            };
            ensure!(
                input_ids.value_length() as usize == seq_len,
                "record batch {n}: list size {} differs from the schema's {seq_len}",
                input_ids.value_length()
            );
            let values = input_ids.values().slice(
                input_ids.value_offset(0) as usize,
                batch.num_rows() * seq_len,
            );
            let ids = match token_type {
                DataType::UInt16 => Ids::U16(values.as_primitive::<UInt16Type>().clone()),
                _ => Ids::U32(values.as_primitive::<UInt32Type>().clone()),
            };
            blocks.push(Block {
                first_row: rows,
                rows: batch.num_rows(),
                ids,
                doc_starts,
                lengths,
            });
            rows += batch.num_rows();
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: buffer,
            seq_len,
            token_type,
            sequences,
            rows,
            blocks,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The file's bytes (the memory map), e.g. to fingerprint the data.
    pub fn bytes(&self) -> &[u8] {
        self.file.as_slice()
    }
    /// Number of sequences (rows).
    pub fn len(&self) -> usize {
        self.rows
    }
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
    /// `UInt16` or `UInt32`.
    pub fn token_type(&self) -> &DataType {
        &self.token_type
    }
    /// Packed rows or one document per row.
    pub fn sequences(&self) -> Sequences {
        self.sequences
    }

    fn block(&self, i: usize) -> (&Block, usize) {
        assert!(
            i < self.rows,
            "sequence {i} out of range: {} has {} rows",
            self.path.display(),
            self.rows
        );
        let b = self.blocks.partition_point(|b| b.first_row + b.rows <= i);
        let block = &self.blocks[b];
        (block, i - block.first_row)
    }

    /// Sequence `i` (panics when `i >= len()`), borrowed from the map.
    pub fn sequence(&self, i: usize) -> Sequence<'_> {
        let (block, row) = self.block(i);
        let range = row * self.seq_len..(row + 1) * self.seq_len;
        match &block.ids {
            Ids::U16(a) => Sequence::U16(&a.values()[range]),
            Ids::U32(a) => Sequence::U32(&a.values()[range]),
        }
    }

    /// The number of real tokens at the start of sequence `i`: `seq_len` for packed rows, the
    /// document's (truncated) length for document rows; the rest is padding.
    pub fn length(&self, i: usize) -> usize {
        let (block, row) = self.block(i);
        match &block.lengths {
            Some(l) => l.value(row) as usize,
            None => self.seq_len,
        }
    }

    /// Positions in sequence `i` where a document begins.
    pub fn doc_starts(&self, i: usize) -> &[u32] {
        let (block, row) = self.block(i);
        let offsets = block.doc_starts.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let values = block.doc_starts.values().as_primitive::<UInt32Type>();
        &values.values()[start..end]
    }
}

fn check_schema(schema: &Schema) -> Result<(usize, DataType, Sequences)> {
    let table = schema.metadata().get(crate::TABLE_KEY);
    ensure!(
        table.map(String::as_str) == Some("shards"),
        "schema metadata {} is {table:?}, expected \"shards\"",
        crate::TABLE_KEY
    );
    let version = schema.metadata().get(crate::SCHEMA_VERSION_KEY);
    ensure!(
        version.map(String::as_str) == Some(VERSION.to_string().as_str()),
        "shard schema version {version:?}, this reader understands {VERSION}"
    );
    let sequences = match schema.fields().len() {
        2 => Sequences::Packed,
        3 if schema.field(2).name() == LENGTHS
            && schema.field(2).data_type() == &DataType::UInt32 =>
        {
            Sequences::Document
        }
        _ => bail!(
            "expected columns input_ids, doc_starts[, lengths UInt32]; found {:?}",
            schema
                .fields()
                .iter()
                .map(|f| format!("{} {:?}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
        ),
    };
    let (seq_len, token) = match schema.field(0).data_type() {
        DataType::FixedSizeList(item, n)
            if schema.field(0).name() == "input_ids"
                && matches!(item.data_type(), DataType::UInt16 | DataType::UInt32)
                && *n > 0 =>
        {
            (*n as usize, item.data_type().clone())
        }
        other => bail!(
            "column 0 is {} {other:?}, expected input_ids FixedSizeList<UInt16|UInt32>",
            schema.field(0).name()
        ),
    };
    match schema.field(1).data_type() {
        DataType::List(item)
            if schema.field(1).name() == "doc_starts" && item.data_type() == &DataType::UInt32 => {}
        other => bail!(
            "column 1 is {} {other:?}, expected doc_starts List<UInt32>",
            schema.field(1).name()
        ),
    }
    Ok((seq_len, token, sequences))
}

/// All shards of one split directory (`shard-*.arrow`, in name order) as one sequence index space:
/// global sequence `g` is row `g - first(shard)` of the shard holding it.
#[derive(Debug)]
pub struct ShardSet {
    shards: Vec<ShardReader>,
    /// `starts[k]` = global index of shard k's first row; one extra entry holds the total.
    starts: Vec<usize>,
}

impl ShardSet {
    /// Every `shard-*.arrow` of `dir`, in name order (none when `dir` does not exist).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let mut paths = crate::layout::files_with_suffix(dir.as_ref(), ".arrow")?;
        paths.retain(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("shard-"))
        });
        Self::from_paths(&paths)
    }

    /// Shards in the given order.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Self> {
        let shards = paths
            .iter()
            .map(ShardReader::open)
            .collect::<Result<Vec<_>>>()?;
        if let Some(first) = shards.first() {
            for s in &shards[1..] {
                ensure!(
                    s.sequences == first.sequences,
                    "{} holds {} sequences, but {} holds {}",
                    s.path.display(),
                    s.sequences.name(),
                    first.path.display(),
                    first.sequences.name()
                );
                ensure!(
                    s.seq_len == first.seq_len && s.token_type == first.token_type,
                    "{} has seq_len {} of {:?}, but {} has {} of {:?}",
                    s.path.display(),
                    s.seq_len,
                    s.token_type,
                    first.path.display(),
                    first.seq_len,
                    first.token_type
                );
            }
        }
        let mut starts = Vec::with_capacity(shards.len() + 1);
        let mut total = 0;
        for s in &shards {
            starts.push(total);
            total += s.len();
        }
        starts.push(total);
        Ok(Self { shards, starts })
    }

    pub fn shards(&self) -> &[ShardReader] {
        &self.shards
    }
    /// Total number of sequences.
    pub fn len(&self) -> usize {
        *self.starts.last().expect("starts holds the total")
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sequence length (None when there are no shards).
    pub fn seq_len(&self) -> Option<usize> {
        self.shards.first().map(|s| s.seq_len)
    }
    /// (shard, row) of global sequence `g` (panics when out of range).
    pub fn locate(&self, g: usize) -> (usize, usize) {
        assert!(g < self.len(), "sequence {g} out of range ({})", self.len());
        let shard = self.starts.partition_point(|&s| s <= g) - 1;
        (shard, g - self.starts[shard])
    }
    pub fn sequence(&self, g: usize) -> Sequence<'_> {
        let (shard, row) = self.locate(g);
        self.shards[shard].sequence(row)
    }
    pub fn doc_starts(&self, g: usize) -> &[u32] {
        let (shard, row) = self.locate(g);
        self.shards[shard].doc_starts(row)
    }
    /// Real tokens at the start of global sequence `g` ([`ShardReader::length`]).
    pub fn length(&self, g: usize) -> usize {
        let (shard, row) = self.locate(g);
        self.shards[shard].length(row)
    }
    /// Packed or document rows (packed when there are no shards).
    pub fn sequences(&self) -> Sequences {
        self.shards.first().map(|s| s.sequences).unwrap_or_default()
    }
}

// The trainer shares readers between threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ShardReader>();
    send_sync::<ShardSet>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(vocab: usize) {
        let dir = std::env::temp_dir().join(format!("shards-test-{vocab}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seq_len = 5;
        let top = (vocab - 1) as u32;
        let tokens: Vec<u32> = vec![1, 2, 0, 3, 4, 5, 0, top, 0, 7, 8, 9, 10, 11, 12];
        let starts = vec![vec![0, 3], vec![2, 4], vec![]];
        let b = batch(seq_len, vocab, &tokens, &starts).unwrap();
        let path = dir.join(shard_file_name(0));
        assert!(write_shard(&path, &b).unwrap());
        assert!(!write_shard(&path, &b).unwrap(), "identical bytes are kept");
        let r = ShardReader::open(&path).unwrap();
        assert_eq!((r.len(), r.seq_len()), (3, 5));
        for row in 0..3 {
            assert_eq!(
                r.sequence(row).to_u32_vec(),
                &tokens[row * 5..(row + 1) * 5]
            );
            assert_eq!(r.doc_starts(row), starts[row].as_slice());
        }
        assert_eq!(matches!(r.sequence(0), Sequence::U16(_)), vocab <= 65_536);
        let b2 = batch(seq_len, vocab, &tokens[..5], &starts[..1]).unwrap();
        write_shard(&dir.join(shard_file_name(1)), &b2).unwrap();
        let set = ShardSet::open(&dir).unwrap();
        assert_eq!(set.len(), 4);
        assert_eq!(set.locate(3), (1, 0));
        assert_eq!(set.sequence(2).get(0), 8);
        assert_eq!(set.doc_starts(3), &[0, 3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shard_roundtrip_u16_and_u32() {
        roundtrip(50_280);
        roundtrip(70_000);
    }

    #[test]
    fn rejects_non_shard_file() {
        let path = std::env::temp_dir().join(format!("not-a-shard-{}", std::process::id()));
        std::fs::write(&path, b"ARROW1 but not really an arrow file").unwrap();
        let err = format!("{:#}", ShardReader::open(&path).unwrap_err());
        assert!(err.contains("not-a-shard"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn document_rows_keep_their_lengths() {
        let dir = tempfile_dir("doc");
        let tokens: Vec<u32> = vec![5, 6, 0, 0, 7, 8, 9, 0, 1, 2, 3, 4];
        let b = document_batch(4, 100, &tokens, &[vec![0], vec![0], vec![0]], &[3, 4, 4]).unwrap();
        let path = dir.join(shard_file_name(0));
        write_shard(&path, &b).unwrap();
        let set = ShardSet::open(&dir).unwrap();
        assert_eq!(set.sequences(), Sequences::Document);
        assert_eq!((0..3).map(|g| set.length(g)).collect::<Vec<_>>(), [3, 4, 4]);
        assert_eq!(set.sequence(1).to_u32_vec(), [7, 8, 9, 0]);
        // A packed shard beside a document one is refused, naming both.
        write_shard(
            &dir.join(shard_file_name(1)),
            &batch(4, 100, &tokens[..4], &[vec![0]]).unwrap(),
        )
        .unwrap();
        let e = format!("{:#}", ShardSet::open(&dir).unwrap_err());
        assert!(
            e.contains("shard-00001.arrow") && e.contains("packed"),
            "{e}"
        );
        // Packed rows are all real.
        let p = ShardReader::open(dir.join(shard_file_name(1))).unwrap();
        assert_eq!((p.sequences(), p.length(0)), (Sequences::Packed, 4));
        assert!(document_batch(4, 100, &tokens[..4], &[vec![0]], &[0]).is_err());
        assert!(document_batch(4, 100, &tokens[..4], &[vec![0]], &[5]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shards-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn rejects_out_of_vocab_ids() {
        assert!(batch(2, 10, &[1, 10], &[vec![0]]).is_err());
    }

    #[test]
    fn domains_and_their_facts_come_from_the_pack_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let layout = crate::Layout::new(dir.path());
        assert!(domains(&layout).unwrap().is_empty());
        assert_eq!(pack_facts_of(&layout, "c4").unwrap(), None);
        let save = |stage: &str, sequences: &str, seq_len: usize| {
            let m = crate::StageManifest {
                stage: stage.into(),
                summary: serde_json::json!({
                    "eos_id": 0, "vocab_size": 4096, "seq_len": seq_len,
                    "tokenizer_hash": "ab", "sequences": sequences,
                }),
                ..Default::default()
            };
            m.save(&layout.manifest(stage)).unwrap();
        };
        save(&pack_stage_of("wikipedia"), "document", 64);
        save(&pack_stage_of(crate::layout::PUBMED), "packed", 128);
        save(&pack_stage_of("c4"), "document", 32);
        std::fs::write(layout.manifests().join("tokenize-c4.json"), "{}").unwrap();
        assert_eq!(domains(&layout).unwrap(), ["pubmed", "c4", "wikipedia"]);
        assert_eq!(pack_stage_of("c4"), "pack-c4");
        let c4 = pack_facts_of(&layout, "c4").unwrap().unwrap();
        assert_eq!((c4.seq_len, c4.sequences), (32, Sequences::Document));
        let pubmed = pack_facts(&layout).unwrap().unwrap();
        assert_eq!((pubmed.seq_len, pubmed.sequences), (128, Sequences::Packed));
    }
}
