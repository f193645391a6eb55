//! Evaluation: BioASQ factoid answering scored with the official measures, results tables, and
//! perplexity on the validation shards; HF parity scoring for the `score` command.

pub mod answer;
pub mod metrics;
pub mod parity;
pub mod perplexity;
pub mod qa;
pub mod report;
pub mod results;
pub mod token_bytes;
