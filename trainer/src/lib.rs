//! biomamba trainer: the Mamba-1 model in Burn (HF-compatible), generation, scoring.
//!
//! Entry points:
//! - [`MambaConfig`] (`MambaConfig::mamba_130m()`, `.init_seeded(&device, seed)`,
//!   `.num_params()`), [`MambaLm`] (`forward`, `forward_full`, `step`, `empty_cache`),
//!   [`causal_lm_loss`].
//! - [`scan::ScanBackend`]: the S6 selective scan per backend (tensor-op default, fused CPU
//!   loops for `NdArray<f32>`, one custom autodiff node that recomputes states in backward).
//! - [`hf`]: `load_pretrained` / `save_pretrained` (HF `config.json` + `model.safetensors`),
//!   `MambaLm::hf_params` (HF names), `hf_grads`.
//! - [`generate`]: `greedy`, `beam_search` on the recurrent cache.
//! - [`score`]: logits / loss / gradients for the `trainer score` command.

pub mod model;
pub mod scan;
#[cfg(feature = "cubecl-kernels")]
pub mod scan_cubecl;

pub use model::{MambaCache, MambaConfig, MambaLm, Precision, causal_lm_loss};
pub mod hf;
pub mod st;

pub use hf::{HfConfig, hf_grads, load_pretrained, save_pretrained};
pub mod generate;

pub use generate::{Candidate, GenerateConfig, beam_search, greedy};
pub mod score;

/// CPU backend used by the CLI (f32 ndarray); a GPU backend comes with the `cuda` issue.
pub type Cpu = burn::backend::NdArray<f32>;
/// CPU backend with autodiff.
pub type AutodiffCpu = burn::backend::Autodiff<Cpu>;
pub mod checkpoint;
pub mod data;
pub mod optim;
pub mod plot;
pub mod pretrain;
pub mod session;

// BioASQ fine-tuning and evaluation.
pub mod answer;
pub mod eval;
pub mod finetune;
pub mod loss;
pub mod metrics;
pub mod ppl;
pub mod qa;
pub mod report;
pub mod token_bytes;
