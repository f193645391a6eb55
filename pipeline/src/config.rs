//! The one TOML config (`configs/*.toml`). Each stage reads its own section; sections of the trainer
//! are ignored here. Flags override config values.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    pub data: DataConfig,
    pub download: crate::download::DownloadConfig,
    pub parse: crate::parse::ParseConfig,
    pub current: crate::current::CurrentConfig,
    pub bioasq: crate::bioasq::BioasqConfig,
    pub tokenize: crate::tokenize::TokenizeConfig,
    pub train_tokenizer: crate::train_tokenizer::TrainTokenizerConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Data directory; `--data-dir` overrides it.
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
    }

    /// Load `path` if given, else the defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self> {
        path.map(Self::load).unwrap_or_else(|| Ok(Self::default()))
    }
}
