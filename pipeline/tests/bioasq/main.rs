//! `pipeline bioasq` end to end: the synthetic sample, the real fixtures (SKIP when absent), a local
//! efetch server, and BioBERT's own 4b test contexts rebuilt from PubMed XML.
//!
//! One test binary: `sample.rs` (the synthetic sample, bad inputs, the join with parsed PubMed),
//! `efetch.rs` (the efetch join against a local server), `fixtures.rs` (the real fixtures and
//! BioBERT's 4b contexts), `server.rs` (the local efetch server both use).

#[path = "../common/mod.rs"]
mod common;
mod efetch;
mod fixtures;
mod sample;
mod server;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Int32Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
    new_empty_array, new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::DataType;
use pipeline::bioasq::convert;
use pipeline::bioasq::{self, Args};
use pipeline::{Config, Ctx, Layout};
use schemas::bioasq::{Example, Split, qtype};
use serde_json::Value;

fn fixtures() -> Option<PathBuf> {
    testkit::fixtures::fixtures_with(&["bioasq/golden/4B1_golden.json"])
}

fn sample_dir() -> PathBuf {
    testkit::fixtures::sample_dir().join("bioasq")
}

fn ctx(dir: &Path, toml: &str, force: bool) -> Ctx {
    let config: Config = toml::from_str(toml).expect("test config");
    Ctx {
        layout: Layout::new(dir),
        config,
        force,
    }
}

fn args(inputs: Vec<PathBuf>, offline: bool, base_url: Option<&str>) -> Args {
    let mut a = Args::new();
    a.inputs = inputs;
    a.offline = offline;
    if let Some(u) = base_url {
        a.base_url = u.to_string();
    }
    a
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file under `dir` with its bytes (for byte-identical re-run checks).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    testkit::fixtures::snapshot(dir)
        .unwrap()
        .into_iter()
        .map(|(p, (_, bytes))| (p, bytes))
        .collect()
}

/// (question_id, type, exact_answer, year, source_file)
type GoldenTuple = (String, String, Vec<Vec<String>>, Option<i32>, String);

fn golden_rows(path: &Path) -> Vec<GoldenTuple> {
    schemas::bioasq::read_golden(path)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.question_id,
                r.qtype,
                r.exact_answer,
                r.year,
                r.source_file,
            )
        })
        .collect()
}
