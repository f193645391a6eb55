//! Training: the machinery shared by pretraining and fine-tuning (run directory with exact
//! resume, checkpoints, the optimizer step, data order, losses) and the commands built on it.

pub mod checkpoint;
pub mod data;
pub mod ema;
pub mod export;
pub mod finetune;
pub mod loss;
pub mod nodes;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod pretrain;
pub mod session;
pub mod step;
