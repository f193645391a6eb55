//! `pipeline pubmedqa`: PubMedQA's 1,000 expert-annotated questions (PQA-L, pubmedqa/pubmedqa, MIT)
//! → `pubmedqa/{train,test}.arrow` (+ Parquet copies), split as the benchmark splits them.
//!
//! Reads `raw/pubmedqa/ori_pqal.json` and `raw/pubmedqa/test_ground_truth.json`; when one is absent
//! it is downloaded from the pubmedqa GitHub repository (`{base_url}/data/NAME`, the published bytes
//! checked by size and SHA-256 through the pipeline's verified download, [`crate::download::fetch`]);
//! `--offline` never downloads. Test = the 500 PMIDs of `test_ground_truth.json`; train = the other
//! 500, each with its fold of the official 10-fold cross-validation: the seed-0 split of the
//! repository's `preprocess/split_dataset.py pqal`, reproduced exactly ([`split`], with Python's
//! `random` in [`pyrandom`]). The split's test part must be exactly the ground truth's PMIDs, and
//! each ground-truth label the question's `final_decision`; otherwise the files are not the
//! published ones and the stage stops, naming the PMIDs. Columns: `schemas/README.md`.
//!
//! One cached unit: both outputs depend on both inputs.

pub mod pyrandom;
pub mod split;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Ctx;
use crate::download::NetArgs;
use crate::download::fetch::{Bars, Expect, Fetcher};
use crate::stage::{Plan, Stage, StageStatus, status_settings};
use schemas::pubmedqa::PubmedqaRow;

pub const STAGE: &str = "pubmedqa";
/// Bumped whenever the conversion changes its output.
const CODE_VERSION: u32 = 1;
const UNIT: &str = "pqal";
pub const ORI_PQAL: &str = "ori_pqal.json";
pub const TEST_GROUND_TRUTH: &str = "test_ground_truth.json";

/// The published files (pubmedqa/pubmedqa, `data/`): name, size, SHA-256.
pub const PUBLISHED: [(&str, u64, &str); 2] = [
    (
        ORI_PQAL,
        2_584_787,
        "8b3276be8942ebbd77f3ddcda12c1749bf0e490045a736fd8438ee40cf37a41d",
    ),
    (
        TEST_GROUND_TRUTH,
        11_414,
        "939fe566f09017d13b1ca64d2ddfee0bc2374b366048152997669cccedc44d51",
    ),
];

#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Never download: the files must already be in DATA/raw/pubmedqa/.
    #[arg(long)]
    pub offline: bool,
    /// Where `data/ori_pqal.json` and `data/test_ground_truth.json` are fetched from (default:
    /// config pubmedqa.base_url, the raw files of the pubmedqa GitHub repository).
    #[arg(long)]
    pub base_url: Option<String>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// The effective settings of a run, as its manifest records them.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PubmedqaSettings {
    base_url: String,
    offline: bool,
}

/// One question of `ori_pqal.json` (its other fields are ignored).
#[derive(Debug, Deserialize)]
struct PqalEntry {
    #[serde(rename = "QUESTION")]
    question: String,
    #[serde(rename = "CONTEXTS")]
    contexts: Vec<String>,
    #[serde(rename = "LABELS")]
    labels: Vec<String>,
    #[serde(rename = "MESHES", default)]
    meshes: Vec<String>,
    #[serde(rename = "YEAR", default)]
    year: Option<String>,
    #[serde(rename = "LONG_ANSWER")]
    long_answer: String,
    final_decision: String,
    reasoning_required_pred: String,
    reasoning_free_pred: String,
}

/// A JSON object's entries in file order (the split depends on it; `serde_json::Map` sorts).
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object keyed by PMID")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, T>()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// Parse `path` as an object keyed by PMID, in file order; a key that is not a PMID, or repeats,
/// is an error naming it.
fn read_by_pmid<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<(u64, T)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let Ordered(entries) = serde_json::from_slice::<Ordered<T>>(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: line {} column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let mut seen = HashSet::new();
    entries
        .into_iter()
        .map(|(k, v)| {
            let pmid: u64 = k
                .parse()
                .ok()
                .filter(|_| k.bytes().all(|b| b.is_ascii_digit()))
                .with_context(|| format!("{}: key {k:?} is not a PMID", path.display()))?;
            if !seen.insert(pmid) {
                bail!("{}: PMID {pmid} appears twice", path.display());
            }
            Ok((pmid, v))
        })
        .collect()
}

fn open_stage(ctx: &Ctx) -> Result<Stage> {
    Stage::open(
        ctx.layout.root(),
        STAGE,
        CODE_VERSION,
        schemas::pubmedqa::VERSION,
        &json!({"split": "split_dataset.py pqal, random.seed(0)"}),
        ctx.force,
    )
}

fn raw_files(ctx: &Ctx) -> [PathBuf; 2] {
    let raw = ctx.layout.raw_pubmedqa();
    [raw.join(ORI_PQAL), raw.join(TEST_GROUND_TRUTH)]
}

/// `pipeline status` row.
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let from_config = PubmedqaSettings {
        base_url: ctx.config.pubmedqa.base_url.clone(),
        offline: false,
    };
    let _settings: PubmedqaSettings = status_settings(ctx, STAGE, from_config)?;
    let stage = open_stage(ctx)?;
    let files = raw_files(ctx);
    let units = if files.iter().all(|f| f.is_file()) {
        vec![(UNIT.to_string(), files.to_vec())]
    } else {
        Vec::new()
    };
    let mut status = stage.status(&units)?;
    if let Some(m) = schemas::StageManifest::load(&ctx.layout.manifest(STAGE))? {
        status.note = format!(
            "{} train ({} folds), {} test questions",
            m.summary["train"],
            m.summary["folds"].as_array().map_or(0, Vec::len),
            m.summary["test"]
        );
    }
    Ok(status)
}

/// Download the absent files of `files` from `base`.
fn download(ctx: &Ctx, args: &Args, base: &str, files: &[PathBuf]) -> Result<()> {
    let fetcher = Fetcher::new(args.net.options(&ctx.config.download)?)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let bars = Bars::new("pubmedqa");
    for dest in files.iter().filter(|f| !f.is_file()) {
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (_, size, sha256) = PUBLISHED
            .iter()
            .find(|(n, _, _)| *n == name)
            .expect("one of the published files");
        let url = format!("{base}/data/{name}");
        tracing::info!("pubmedqa: downloading {url}");
        let expect = Expect {
            md5: None,
            sha256: Some(sha256.to_string()),
            size: Some(*size),
            validate: Some(crate::download::hub::validate_json),
        };
        runtime
            .block_on(fetcher.fetch_verified(&url, dest, &expect, Some(&bars)))
            .with_context(|| format!("downloading PubMedQA's {name}"))?;
    }
    bars.finish();
    Ok(())
}

fn sha256_hex(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// At most 10 PMIDs, then how many more.
fn some_pmids(p: &[u64]) -> String {
    let mut s = p
        .iter()
        .take(10)
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if p.len() > 10 {
        s.push_str(&format!(" and {} more", p.len() - 10));
    }
    s
}

/// The rows of both tables and the folds (each in the script's order).
#[derive(Clone, Debug)]
pub struct PqalTables {
    pub train: Vec<PubmedqaRow>,
    pub test: Vec<PubmedqaRow>,
    pub folds: Vec<Vec<u64>>,
}

/// The tables' rows from the two files (module docs).
pub fn build_rows(ori: &Path, truth: &Path) -> Result<PqalTables> {
    let dataset: Vec<(u64, PqalEntry)> = read_by_pmid(ori)?;
    let ground: Vec<(u64, String)> = read_by_pmid(truth)?;
    let labels: Vec<(u64, &str)> = dataset
        .iter()
        .map(|(p, e)| (*p, e.final_decision.as_str()))
        .collect();
    let label_of: HashMap<u64, &str> = labels.iter().copied().collect();
    for (pmid, label) in &ground {
        match label_of.get(pmid) {
            None => bail!(
                "{}: PMID {pmid} is not a question of {}",
                truth.display(),
                ori.display()
            ),
            Some(l) if l != label => bail!(
                "{}: PMID {pmid} has label {label:?}, but its final_decision in {} is {l:?}",
                truth.display(),
                ori.display()
            ),
            Some(_) => {}
        }
    }
    let (test, folds) =
        split::pqal_split(&labels).with_context(|| format!("splitting {}", ori.display()))?;
    let truth_set: HashSet<u64> = ground.iter().map(|(p, _)| *p).collect();
    let test_set: HashSet<u64> = test.iter().copied().collect();
    if test_set != truth_set {
        let mut differ: Vec<u64> = test_set.symmetric_difference(&truth_set).copied().collect();
        differ.sort();
        bail!(
            "{}: the seed-0 split of split_dataset.py gives another test set than {} \
             ({} PMIDs in one and not the other: {}); these are not the published files",
            ori.display(),
            truth.display(),
            differ.len(),
            some_pmids(&differ)
        );
    }
    let fold_of: HashMap<u64, u32> = folds
        .iter()
        .enumerate()
        .flat_map(|(i, f)| f.iter().map(move |p| (*p, i as u32)))
        .collect();
    let (mut train, mut test_rows) = (Vec::new(), Vec::new());
    for (pmid, e) in dataset {
        let year = match e.year.as_deref() {
            None => None,
            Some(y) => Some(y.trim().parse::<i32>().with_context(|| {
                format!("{}: PMID {pmid}: YEAR {y:?} is not a year", ori.display())
            })?),
        };
        if e.contexts.len() != e.labels.len() {
            bail!(
                "{}: PMID {pmid}: {} CONTEXTS but {} LABELS",
                ori.display(),
                e.contexts.len(),
                e.labels.len()
            );
        }
        let is_test = test_set.contains(&pmid);
        let row = PubmedqaRow {
            pmid,
            question: e.question,
            contexts: e.contexts,
            context_labels: e.labels,
            long_answer: e.long_answer,
            label: e.final_decision,
            split: if is_test { "test" } else { "train" }.to_string(),
            fold: fold_of.get(&pmid).copied(),
            year,
            meshes: e.meshes,
            reasoning_required_pred: e.reasoning_required_pred,
            reasoning_free_pred: e.reasoning_free_pred,
        };
        if is_test {
            test_rows.push(row);
        } else {
            train.push(row);
        }
    }
    Ok(PqalTables {
        train,
        test: test_rows,
        folds,
    })
}

fn label_counts(rows: &[PubmedqaRow]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.label.as_str()).or_default() += 1;
    }
    m
}

/// Run the stage; returns the manifest summary.
pub fn run(ctx: &Ctx, args: Args) -> Result<Value> {
    let base = args
        .base_url
        .clone()
        .unwrap_or_else(|| ctx.config.pubmedqa.base_url.clone())
        .trim_end_matches('/')
        .to_string();
    let files = raw_files(ctx);
    let absent: Vec<&PathBuf> = files.iter().filter(|f| !f.is_file()).collect();
    if !absent.is_empty() {
        if args.offline {
            bail!(
                "offline: {} missing (get {} from {base}/data/, or run without --offline)",
                absent
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and "),
                [ORI_PQAL, TEST_GROUND_TRUTH].join(" and ")
            );
        }
        download(ctx, &args, &base, &files)?;
    }
    let out_dir = ctx.layout.pubmedqa();
    if out_dir.exists() {
        schemas::atomic::remove_stale_temps(&out_dir)?;
    }
    let stage = open_stage(ctx)?.with_settings(&PubmedqaSettings {
        base_url: base.clone(),
        offline: args.offline,
    })?;
    let inputs = stage.inputs(UNIT, &files)?;
    match stage.plan(UNIT, &inputs)? {
        Plan::Cached => {
            println!("pubmedqa: cached");
            return Ok(stage.manifest().summary);
        }
        Plan::Run(reason) => tracing::info!("pubmedqa: building ({reason})"),
    }
    let PqalTables { train, test, folds } = build_rows(&files[0], &files[1])?;
    let mut outputs = Vec::new();
    for (rows, split) in [
        (&train, schemas::layout::TRAIN),
        (&test, schemas::layout::TEST),
    ] {
        outputs.extend(crate::bioasq::tables::write_table(
            &schemas::pubmedqa::batch(rows)?,
            &ctx.layout.pubmedqa_table(split),
        )?);
    }
    let mut published = serde_json::Map::new();
    for (f, (name, _, sha)) in files.iter().zip(PUBLISHED) {
        published.insert(name.to_string(), json!(sha256_hex(f)? == sha));
    }
    let stats = json!({
        "questions": train.len() + test.len(),
        "train": train.len(),
        "test": test.len(),
        "labels": {"train": label_counts(&train), "test": label_counts(&test)},
        "folds": folds.iter().map(Vec::len).collect::<Vec<_>>(),
        "published_files": published,
    });
    stage.record(UNIT, inputs, &outputs, stats.clone())?;
    stage.finish(stats.clone())?;
    println!(
        "pubmedqa: {} train questions in {} folds of {:?}, {} test questions; labels {}",
        train.len(),
        folds.len(),
        folds.iter().map(Vec::len).collect::<Vec<_>>(),
        test.len(),
        stats["labels"]
    );
    Ok(stats)
}
