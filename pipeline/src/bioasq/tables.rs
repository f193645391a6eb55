//! Writing the `examples` and `golden` tables (record batches from `schemas::bioasq`): an
//! uncompressed Arrow IPC file plus a zstd Parquet copy, both atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use schemas::AtomicFile;

/// Write `batch` to `arrow_path` (`<name>.arrow`, IPC file, uncompressed) and its Parquet copy
/// `<name>.parquet` beside it (zstd); returns both paths. Identical bytes keep the existing files.
pub fn write_table(batch: &RecordBatch, arrow_path: &Path) -> Result<Vec<PathBuf>> {
    let arrow_path = arrow_path.to_path_buf();
    let parquet_path = arrow_path.with_extension("parquet");

    let file = AtomicFile::create(&arrow_path)?;
    let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &batch.schema())
        .with_context(|| format!("writing {}", arrow_path.display()))?;
    writer
        .write(batch)
        .and_then(|_| writer.finish())
        .with_context(|| format!("writing {}", arrow_path.display()))?;
    writer
        .into_inner()
        .with_context(|| format!("writing {}", arrow_path.display()))?
        .commit_unless_identical()?;

    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .build();
    let file = AtomicFile::create(&parquet_path)?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
        .with_context(|| format!("writing {}", parquet_path.display()))?;
    writer
        .write(batch)
        .with_context(|| format!("writing {}", parquet_path.display()))?;
    writer
        .into_inner()
        .with_context(|| format!("writing {}", parquet_path.display()))?
        .commit_unless_identical()?;
    Ok(vec![arrow_path, parquet_path])
}
