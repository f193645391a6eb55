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
    Array, ArrayRef, AsArray, Int32Array, ListArray, RecordBatch, StringArray, UInt32Array,
    UInt64Array, new_empty_array, new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::DataType;
use pipeline::bioasq::convert;
use pipeline::bioasq::{self, Args};
use pipeline::{Config, Ctx, Layout};
use schemas::bioasq::{Example, Split};
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
    let file = std::fs::File::open(path).unwrap();
    let reader = arrow::ipc::reader::FileReader::try_new(file, None).unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let b = batch.unwrap();
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (qid, qtype, sf) = (s("question_id"), s("type"), s("source_file"));
        let exact = b
            .column_by_name("exact_answer")
            .unwrap()
            .as_list::<i32>()
            .clone();
        let year = b
            .column_by_name("year")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>()
            .clone();
        for i in 0..b.num_rows() {
            let groups = exact.value(i);
            let groups = groups.as_list::<i32>();
            let lists = (0..groups.len())
                .map(|g| {
                    let syn = groups.value(g);
                    let syn = syn.as_string::<i32>();
                    (0..syn.len()).map(|k| syn.value(k).to_string()).collect()
                })
                .collect();
            out.push((
                qid.value(i).to_string(),
                qtype.value(i).to_string(),
                lists,
                (!year.is_null(i)).then(|| year.value(i)),
                sf.value(i).to_string(),
            ));
        }
    }
    out
}
