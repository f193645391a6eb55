//! biomamba trainer: the Mamba-1 model in Burn (HF-compatible), generation, scoring.

pub mod model;
pub mod scan;

pub use model::{MambaCache, MambaConfig, MambaLm, causal_lm_loss};
pub mod hf;
pub mod st;

pub use hf::{HfConfig, hf_grads, load_pretrained, save_pretrained};
pub mod generate;

pub use generate::{Candidate, GenerateConfig, beam_search, greedy};
pub mod loss;
pub mod metrics;
pub mod qa;
pub mod token_bytes;
pub mod answer;
pub mod report;
pub mod finetune;
pub mod eval;
pub mod ppl;
