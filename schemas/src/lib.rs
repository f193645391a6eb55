//! Arrow schemas of every table biomamba writes, and the stage manifest that records how each was made.
//!
//! This crate is the contract between `pipeline` and `trainer`: every column is documented in
//! `schemas/README.md`; the functions here are the single source of truth that the pipeline writes
//! with and the trainer reads with — table schemas, the shard reader and writer ([`shards`]), the
//! BioASQ and PubMedQA row types ([`bioasq`], [`pubmedqa`]) and the data-directory layout
//! ([`layout`]). The small runtime pieces the stage contract needs on both sides (atomic file
//! replacement, manifests, progress reporting) live here too, so that `pipeline` and `trainer`
//! never depend on each other.

pub mod abstracts;
pub mod atomic;
pub mod bioasq;
pub mod config_file;
pub mod corpus;
pub mod layout;
pub mod logging;
pub mod manifest;
pub mod progress;
pub mod pubmedqa;
pub mod shards;

pub use atomic::AtomicFile;
pub use layout::Layout;
pub use manifest::{FileRecord, Fingerprint, StageManifest, UnitRecord};

/// Metadata key under which every table stores its schema version.
pub const SCHEMA_VERSION_KEY: &str = "biomamba.schema_version";
/// Metadata key under which every table stores its table name.
pub const TABLE_KEY: &str = "biomamba.table";

/// Schema metadata common to all tables: table name and schema version.
pub fn table_metadata(table: &str, version: u32) -> std::collections::HashMap<String, String> {
    [
        (TABLE_KEY.to_string(), table.to_string()),
        (SCHEMA_VERSION_KEY.to_string(), version.to_string()),
    ]
    .into_iter()
    .collect()
}
