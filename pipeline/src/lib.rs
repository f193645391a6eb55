//! biomamba's data pipeline: PubMed XML → Parquet → packed token shards, BioASQ → SQuAD-style tables,
//! and PubMedQA → its official split.
//! Every stage runs through the cached [`stage::Stage`] runner and writes files atomically.

pub mod bioasq;
pub mod config;
pub mod corpus;
pub mod current;
pub mod download;
pub mod inspect;
pub mod parse;
pub mod pubmedqa;
pub mod stage;
pub mod status;
pub mod tokenize;
pub mod train_tokenizer;

use std::path::PathBuf;

pub use config::Config;
pub use schemas::Layout;

/// What every command gets: the data layout, the loaded config and the global flags.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub layout: Layout,
    pub config: Config,
    /// Re-run stages even when cached.
    pub force: bool,
}

impl Ctx {
    pub fn new(data_dir: Option<PathBuf>, config: Config, force: bool) -> Self {
        let dir = data_dir.unwrap_or_else(|| config.data.dir.clone());
        Self {
            layout: Layout::new(dir),
            config,
            force,
        }
    }
}
