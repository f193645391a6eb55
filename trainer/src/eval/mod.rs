//! Evaluation: BioASQ answering of every exact-answer type and PubMedQA answering (with our
//! answer cleaning, `candidates`), the prompts of every task (`qa`, `items`), the golden rows a
//! task is scored on (`golden`), the official measures (`metrics`), scoring of any submission
//! (`submission`, `pubmedqa`), results tables (`results`, `report`), and perplexity on the
//! validation shards; HF parity scoring for the `score` command.

pub mod answer;
pub mod candidates;
pub mod golden;
pub mod items;
pub mod metrics;
pub mod parity;
pub mod perplexity;
pub mod pubmedqa;
pub mod qa;
pub mod report;
pub mod results;
pub mod submission;
pub mod token_bytes;
