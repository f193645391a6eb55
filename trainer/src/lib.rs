//! biomamba trainer: Mamba-1 in Burn, HF-compatible, with pretraining, BioASQ and PubMedQA
//! fine-tuning and evaluation. `ARCHITECTURE.md` at the workspace root is the map; in short:
//!
//! - [`model`]: the model (config, mixer, autocast), the selective scan per backend
//!   ([`model::scan`]: reference tensor ops, fused CPU loops, CubeCL kernels, one autodiff node),
//!   HF weights in and out ([`model::hf`]) and generation ([`model::generate`]).
//! - [`train`]: the shared training machinery — run directory and exact resume
//!   ([`train::session`], [`train::checkpoint`]), the optimizer step ([`train::step`],
//!   [`train::optim`]), data order ([`train::data`]), losses ([`train::loss`]) — and the
//!   commands built on it: [`train::pretrain`], [`train::finetune`], [`train::export`],
//!   [`train::plot`].
//! - [`eval`]: BioASQ (factoid, yes/no, list) and PubMedQA answering and their official
//!   measures ([`eval::answer`], [`eval::pubmedqa`], [`eval::metrics`], [`eval::submission`],
//!   [`eval::results`], [`eval::report`]), perplexity ([`eval::perplexity`]) and HF parity
//!   scoring ([`eval::parity`]).
//! - [`config`]: the one TOML config, loaded once per command; [`backend`]: the backends;
//!   [`cli`]: the `trainer` command line (clap arguments and dispatch only).
//!
//! Commands are siblings over this machinery: none imports another.

pub mod backend;
pub mod cli;
pub mod config;
pub mod eval;
pub mod model;
pub mod train;

pub use backend::{AutodiffCpu, Cpu};
pub use model::hf::{HfConfig, hf_grads, load_pretrained, save_pretrained};
pub use model::{
    Candidate, GenerateConfig, MambaCache, MambaConfig, MambaLm, Precision, beam_search, greedy,
};
pub use train::loss::causal_lm_loss;
