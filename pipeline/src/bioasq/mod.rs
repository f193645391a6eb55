//! `pipeline bioasq`: BioASQ exact-answer QA (factoid, yes/no, list) → SQuAD-style Arrow tables, joined
//! with our PubMed, leak-free.
//!
//! Reads every JSON file of `raw/bioasq/` (or `--input`), official BioASQ or BioBERT SQuAD format, and
//! writes under `bioasq/`: `examples` (every example of every input), `golden` (every question of the
//! official files) and, per config task, `<task>/train` and `<task>/test` — each as `.arrow` (IPC,
//! uncompressed) plus a `.parquet` copy (zstd). Layout and columns: `schemas/README.md`.
//!
//! The whole stage is one cached unit: the leak-free training sets depend on every input, and the
//! test contexts on `parquet/current` and the efetch cache.

pub mod convert;
pub mod documents;
pub mod efetch;
pub mod formats;
pub mod tables;
pub mod tasks;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Ctx;
use crate::config::{BioasqConfig, TaskInputs, TestDocuments};
use crate::stage::{Plan, Stage, StageStatus, in_data_dir, settings_path, status_settings};
use formats::{InputFile, OfficialQuestion, exact_answer_lists, pmid_of_url};
use schemas::bioasq::{Example, GoldenRow, Split, qtype, source};
use tasks::TestQuestion;

pub const STAGE: &str = "bioasq";
/// Bumped whenever the conversion changes its output (2: test contexts of efetch records follow the
/// parser's text contract 2, see `parse::CODE_VERSION`; 3: yes/no and list questions, `type` and
/// `answer_list` columns).
const CODE_VERSION: u32 = 3;
const UNIT: &str = "bioasq";

/// Question types of BioASQ Task B; others are skipped and counted.
const KNOWN_TYPES: [&str; 4] = qtype::ALL;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// BioASQ JSON files (official or SQuAD format); default: every `*.json` in DATA/raw/bioasq/.
    #[arg(long = "input", value_name = "JSON")]
    pub inputs: Vec<PathBuf>,
    /// Never contact NCBI: documents not in parquet/current or the efetch cache fall back to the
    /// question's snippets of that document.
    #[arg(long)]
    pub offline: bool,
    /// NCBI API key: raises the efetch rate limit from 3 to 10 requests/s.
    #[arg(long, env = "NCBI_API_KEY", hide_env_values = true)]
    pub ncbi_api_key: Option<String>,
    /// E-utilities base URL (tests point it at a local server).
    #[arg(long, default_value = efetch::DEFAULT_BASE_URL)]
    pub base_url: String,
}

impl Args {
    pub fn new() -> Self {
        Self {
            base_url: efetch::DEFAULT_BASE_URL.to_string(),
            ..Default::default()
        }
    }
}

/// The config fields the outputs depend on (the stage fingerprint).
#[derive(Serialize)]
struct Fingerprinted<'a> {
    test_documents: TestDocuments,
    tasks: &'a BTreeMap<String, TaskInputs>,
    offline: bool,
}

/// `*.json` files of `raw/bioasq/`, sorted.
fn default_inputs(dir: &Path) -> Result<Vec<PathBuf>> {
    schemas::layout::files_with_suffix(dir, ".json")
}

/// `<pmid>.xml` files of the efetch cache, sorted.
fn efetch_cache_files(dir: &Path) -> Result<Vec<PathBuf>> {
    schemas::layout::files_with_suffix(dir, ".xml")
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{}: not a UTF-8 file name", path.display()))
}

fn stage_inputs(ctx: &Ctx, json: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut all = json.to_vec();
    all.extend(documents::parquet_files(&ctx.layout.parquet_current())?);
    all.extend(efetch_cache_files(&ctx.layout.raw_efetch())?);
    Ok(all)
}

/// The effective settings of a run, as its manifest records them.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BioasqSettings {
    /// `--input` files (empty: every `*.json` of `raw/bioasq/`).
    inputs: Vec<PathBuf>,
    offline: bool,
    /// `[bioasq]`: test documents and tasks.
    config: BioasqConfig,
}

fn open_stage(ctx: &Ctx, config: &BioasqConfig, offline: bool) -> Result<Stage> {
    Stage::open(
        ctx.layout.root(),
        STAGE,
        CODE_VERSION,
        schemas::bioasq::VERSION,
        &Fingerprinted {
            test_documents: config.test_documents,
            tasks: &config.tasks,
            offline,
        },
        ctx.force,
    )
}

/// `pipeline status` row: cached when the last run's outputs are valid for today's inputs and config
/// (with the last run's `--offline` setting).
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let previous = schemas::StageManifest::load(&ctx.layout.manifest(STAGE))?;
    let offline = previous
        .as_ref()
        .and_then(|m| m.config.get("offline").and_then(Value::as_bool))
        .unwrap_or(false);
    let from_config = BioasqSettings {
        inputs: Vec::new(),
        offline,
        config: ctx.config.bioasq.clone(),
    };
    let settings = status_settings(ctx, STAGE, from_config)?;
    let stage = open_stage(ctx, &settings.config, settings.offline)?;
    let json = if settings.inputs.is_empty() {
        default_inputs(&ctx.layout.raw_bioasq())?
    } else {
        (settings.inputs.iter())
            .map(|p| in_data_dir(ctx.layout.root(), p))
            .filter(|p| p.is_file())
            .collect()
    };
    let units = if json.is_empty() {
        Vec::new()
    } else {
        vec![(UNIT.to_string(), stage_inputs(ctx, &json)?)]
    };
    let mut status = stage.status(&units)?;
    if let Some(m) = previous {
        status.note = format!(
            "{} examples, {} golden questions, {} tasks",
            m.summary["examples"],
            m.summary["golden_questions"],
            m.config["tasks"].as_object().map_or(0, |t| t.len())
        );
    }
    Ok(status)
}

/// Run the stage; returns the manifest summary.
pub fn run(ctx: &Ctx, args: Args) -> Result<Value> {
    let json = if args.inputs.is_empty() {
        default_inputs(&ctx.layout.raw_bioasq())?
    } else {
        args.inputs.clone()
    };
    if json.is_empty() {
        bail!(
            "no BioASQ JSON files in {} (put them there or pass --input)",
            ctx.layout.raw_bioasq().display()
        );
    }
    let mut names = BTreeMap::new();
    for path in &json {
        if let Some(other) = names.insert(file_name(path)?, path.clone()) {
            bail!(
                "two inputs share the file name {}: {} and {}",
                file_name(path)?,
                other.display(),
                path.display()
            );
        }
    }
    check_tasks(&ctx.config.bioasq.tasks, &names)?;

    let bioasq_dir = ctx.layout.bioasq();
    if bioasq_dir.exists() {
        schemas::atomic::remove_stale_temps(&bioasq_dir)?;
    }
    let root = ctx.layout.root();
    let stage =
        open_stage(ctx, &ctx.config.bioasq, args.offline)?.with_settings(&BioasqSettings {
            inputs: args.inputs.iter().map(|p| settings_path(root, p)).collect(),
            offline: args.offline,
            config: ctx.config.bioasq.clone(),
        })?;
    let inputs = stage.inputs(UNIT, &stage_inputs(ctx, &json)?)?;
    match stage.plan(UNIT, &inputs)? {
        Plan::Cached => {
            println!("bioasq: cached ({} inputs)", inputs.len());
            return Ok(stage.manifest().summary);
        }
        Plan::Run(reason) => tracing::info!("bioasq: building ({reason})"),
    }
    let previous_outputs: Vec<String> = stage
        .recorded(UNIT)
        .map(|u| u.outputs.into_iter().map(|o| o.path).collect())
        .unwrap_or_default();

    let built = build(ctx, &args, &names)?;

    // Outputs of tasks no longer configured go away.
    let now: BTreeSet<String> = built
        .outputs
        .iter()
        .map(|p| schemas::manifest::relative_path(ctx.layout.root(), p))
        .collect();
    for old in previous_outputs.iter().filter(|p| !now.contains(*p)) {
        let _ = std::fs::remove_file(ctx.layout.root().join(old));
    }
    // Record the inputs as they are now: fetching added efetch cache files.
    let inputs = stage.inputs(UNIT, &stage_inputs(ctx, &json)?)?;
    stage.record(UNIT, inputs, &built.outputs, built.stats.clone())?;
    stage.finish(built.stats.clone())?;
    print_summary(&built.stats);
    Ok(built.stats)
}

fn print_summary(stats: &Value) {
    println!(
        "bioasq: {} examples, {} golden questions",
        stats["examples"], stats["golden_questions"]
    );
    println!("bioasq: test contexts {}", stats["test"]["sources"]);
    if let Some(tasks) = stats["tasks"].as_object() {
        for (name, t) in tasks {
            let l = &t["leaks"];
            println!(
                "bioasq: {name}: train {} examples / {} questions (removed {} by id, {} by text, per test year {}), test {} examples",
                l["train_examples"],
                l["train_questions"],
                l["removed_by_id"],
                l["removed_by_text"],
                l["removed_by_test_year"],
                t["test_examples"]
            );
        }
    }
}

fn check_tasks(
    tasks: &BTreeMap<String, TaskInputs>,
    names: &BTreeMap<String, PathBuf>,
) -> Result<()> {
    for (task, t) in tasks {
        if task.is_empty()
            || !task
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || task.starts_with('.')
        {
            bail!("bioasq task name {task:?}: use letters, digits, '-', '_' and '.' only");
        }
        if t.year == 0 {
            bail!("bioasq task {task}: `year` is missing (e.g. year = 4 for BioASQ 4b)");
        }
        if t.train.is_empty() {
            bail!("bioasq task {task}: `train` is missing");
        }
        for f in std::iter::once(&t.train).chain(&t.test) {
            if !names.contains_key(f) {
                bail!(
                    "bioasq task {task}: input {f} is not among the inputs ({})",
                    names.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Examples per (input file, role).
type Conversions = BTreeMap<(String, Split), Vec<Example>>;

struct Built {
    outputs: Vec<PathBuf>,
    stats: Value,
}

/// One input file with what the stage needs to know about it.
struct Loaded {
    name: String,
    input: InputFile,
    /// Train or test by default: official files named `*_golden.json` or used as a task's test are
    /// test sets; SQuAD files without any answer are test files.
    role: Split,
    year: Option<u32>,
}

fn build(ctx: &Ctx, args: &Args, names: &BTreeMap<String, PathBuf>) -> Result<Built> {
    let config = &ctx.config.bioasq;
    let used_as_test: BTreeSet<&str> = config
        .tasks
        .values()
        .flat_map(|t| t.test.iter().map(String::as_str))
        .collect();
    // A test file's year: what its name says (`4B1_golden.json`), else the year of the task using it.
    let mut task_years: BTreeMap<&str, u32> = BTreeMap::new();
    for (task, t) in &config.tasks {
        for f in t.test.iter().filter(|f| tasks::year_from_name(f).is_none()) {
            if let Some(&y) = task_years.get(f.as_str()).filter(|&&y| y != t.year) {
                bail!(
                    "bioasq task {task}: test file {f} is given year {} here and {y} in another task",
                    t.year
                );
            }
            task_years.insert(f, t.year);
        }
    }

    // Read every input.
    let progress = schemas::progress::Progress::new(
        "bioasq inputs",
        names.len() as u64,
        schemas::progress::Unit::Count("files"),
    );
    let mut loaded = Vec::new();
    for (name, path) in names {
        let input = formats::read_input(path)?;
        let role = match &input {
            InputFile::Official(_) if used_as_test.contains(name.as_str()) => Split::Test,
            InputFile::Official(_) if name.ends_with("_golden.json") => Split::Test,
            InputFile::Official(_) => Split::Train,
            InputFile::Squad(f) => {
                let any_answer = f
                    .data
                    .iter()
                    .flat_map(|a| &a.paragraphs)
                    .flat_map(|p| &p.qas)
                    .any(|q| q.answers.as_ref().is_some_and(|a| !a.is_empty()));
                if any_answer {
                    Split::Train
                } else {
                    Split::Test
                }
            }
        };
        let year = tasks::year_from_name(name).or_else(|| task_years.get(name.as_str()).copied());
        loaded.push(Loaded {
            name: name.clone(),
            input,
            role,
            year,
        });
        progress.inc(1);
    }
    progress.finish();

    // Golden table and per-file facts.
    let mut golden = Vec::new();
    let mut file_stats = serde_json::Map::new();
    for f in &loaded {
        let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
        let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
        match &f.input {
            InputFile::Official(file) => {
                for q in &file.questions {
                    if !KNOWN_TYPES.contains(&q.qtype.as_str()) {
                        *unknown.entry(q.qtype.clone()).or_default() += 1;
                        continue;
                    }
                    *by_type.entry(q.qtype.clone()).or_default() += 1;
                    golden.push(golden_row(q, f)?);
                }
                file_stats.insert(
                    f.name.clone(),
                    json!({"format": "official", "role": f.role.as_str(), "year": f.year,
                           "questions": file.questions.len(), "by_type": by_type,
                           "unknown_types_skipped": unknown}),
                );
            }
            InputFile::Squad(_) => {
                file_stats.insert(
                    f.name.clone(),
                    json!({"format": "squad", "role": f.role.as_str(), "year": f.year}),
                );
            }
        }
    }

    // Conversions: each file in its default role, plus the roles tasks use it in.
    let mut wanted_roles: BTreeSet<(String, Split)> =
        loaded.iter().map(|f| (f.name.clone(), f.role)).collect();
    for t in config.tasks.values() {
        wanted_roles.insert((t.train.clone(), Split::Train));
        for f in &t.test {
            wanted_roles.insert((f.clone(), Split::Test));
        }
    }
    let by_name: BTreeMap<&str, &Loaded> = loaded.iter().map(|f| (f.name.as_str(), f)).collect();

    let mut conversions: Conversions = BTreeMap::new();
    let mut train_counts: BTreeMap<&'static str, convert::TrainCounts> = qtype::EXACT
        .into_iter()
        .map(|t| (t, convert::TrainCounts::default()))
        .collect();
    let mut summary_skipped = 0usize;
    // Official test conversions need the documents first.
    let mut official_tests: Vec<(&Loaded, Vec<&OfficialQuestion>)> = Vec::new();
    for (name, role) in &wanted_roles {
        let f = by_name[name.as_str()];
        match (&f.input, role) {
            (InputFile::Squad(file), _) => {
                let (examples, split) = convert::squad_examples(file, name)?;
                if *role == Split::Train && split == Split::Test {
                    bail!(
                        "{name} is used as a training file but holds no answers (a SQuAD test file)"
                    );
                }
                conversions.insert((name.clone(), *role), examples);
            }
            (InputFile::Official(file), Split::Train) => {
                let mut out = Vec::new();
                for q in &file.questions {
                    let Some(counts) = train_counts.get_mut(q.qtype.as_str()) else {
                        summary_skipped += usize::from(q.qtype == qtype::SUMMARY);
                        continue;
                    };
                    let answers = exact_answer_lists(q.exact_answer.as_ref())
                        .map_err(|e| anyhow::anyhow!("{name}: question {}: {e}", q.id))?;
                    out.extend(convert::training_examples(q, &answers, name, counts));
                }
                conversions.insert((name.clone(), Split::Train), out);
            }
            (InputFile::Official(file), Split::Test) => {
                let exact: Vec<&OfficialQuestion> = file
                    .questions
                    .iter()
                    .filter(|q| qtype::EXACT.contains(&q.qtype.as_str()))
                    .collect();
                official_tests.push((f, exact));
            }
        }
    }

    let (test_conversions, test_stats) =
        convert_tests(ctx, args, config.test_documents, &official_tests)?;
    conversions.extend(test_conversions);

    for examples in conversions.values() {
        for e in examples {
            convert::validate(e)?;
        }
    }

    // Every question of every test set, for leak matching.
    let mut test_questions = Vec::new();
    for f in &loaded {
        let is_test_set = f.role == Split::Test || used_as_test.contains(f.name.as_str());
        if !is_test_set {
            continue;
        }
        match &f.input {
            InputFile::Official(file) => {
                test_questions.extend(file.questions.iter().map(|q| TestQuestion {
                    id: q.id.clone(),
                    normalized: convert::normalize_question(&q.body),
                    year: f.year,
                }))
            }
            InputFile::Squad(_) => {
                let examples = &conversions[&(f.name.clone(), f.role)];
                test_questions.extend(examples.iter().map(|e| TestQuestion {
                    id: e.question_id.clone(),
                    normalized: convert::normalize_question(&e.question),
                    year: f.year,
                }))
            }
        }
    }

    // Write the tables.
    let layout = &ctx.layout;
    let mut outputs = Vec::new();
    let all: Vec<Example> = conversions.values().flatten().cloned().collect();
    outputs.extend(tables::write_table(
        &schemas::bioasq::examples_batch(&all)?,
        &layout.bioasq_examples(),
    )?);
    outputs.extend(tables::write_table(
        &schemas::bioasq::golden_batch(&golden)?,
        &layout.bioasq_golden(),
    )?);

    let mut task_stats = serde_json::Map::new();
    for (task, t) in &config.tasks {
        let train_all = &conversions[&(t.train.clone(), Split::Train)];
        let (train, leaks) = tasks::leak_free(train_all, &test_questions, t.year);
        let test: Vec<Example> = t
            .test
            .iter()
            .flat_map(|f| conversions[&(f.clone(), Split::Test)].iter().cloned())
            .collect();
        outputs.extend(tables::write_table(
            &schemas::bioasq::examples_batch(&train)?,
            &layout.bioasq_table(task, schemas::layout::TRAIN),
        )?);
        outputs.extend(tables::write_table(
            &schemas::bioasq::examples_batch(&test)?,
            &layout.bioasq_table(task, schemas::layout::TEST),
        )?);
        let test_questions: BTreeSet<&str> = test.iter().map(|e| e.question_id.as_str()).collect();
        task_stats.insert(
            task.clone(),
            json!({"leaks": leaks, "test_examples": test.len(), "test_questions": test_questions.len(),
                   "train_file": t.train, "test_files": t.test}),
        );
    }

    let mut per_split: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &all {
        *per_split.entry(e.split.as_str()).or_default() += 1;
    }
    let stats = json!({
        "examples": all.len(),
        "examples_per_split": per_split,
        "golden_questions": golden.len(),
        "files": file_stats,
        "training_conversion": train_counts,
        "summary_questions_skipped": summary_skipped,
        "test": test_stats,
        "test_sets": test_questions.iter().map(|t| t.year.map_or("unknown".to_string(), |y| y.to_string()))
            .fold(BTreeMap::<String, usize>::new(), |mut m, y| { *m.entry(y).or_default() += 1; m }),
        "tasks": task_stats,
    });
    Ok(Built { outputs, stats })
}

fn golden_row(q: &OfficialQuestion, f: &Loaded) -> Result<GoldenRow> {
    let exact_answer = exact_answer_lists(q.exact_answer.as_ref())
        .map_err(|e| anyhow::anyhow!("{}: question {}: {e}", f.name, q.id))?;
    let documents = q
        .documents
        .iter()
        .map(|u| {
            pmid_of_url(u).with_context(|| {
                format!(
                    "{}: question {}: document {u:?} does not end in a PMID",
                    f.name, q.id
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(GoldenRow {
        question_id: q.id.clone(),
        qtype: q.qtype.clone(),
        body: q.body.clone(),
        exact_answer,
        documents,
        batch: f.name.strip_suffix("_golden.json").map(str::to_string),
        year: f.year.map(|y| y as i32),
        source_file: f.name.clone(),
    })
}

/// Test conversion of the official test files: one example per document of each question of an
/// exact-answer type (factoid, yes/no, list),
/// the context from `parquet/current`, else the efetch cache, else NCBI (unless offline), else (offline)
/// the question's snippets of that document.
fn convert_tests(
    ctx: &Ctx,
    args: &Args,
    which: TestDocuments,
    files: &[(&Loaded, Vec<&OfficialQuestion>)],
) -> Result<(Conversions, Value)> {
    let wanted: BTreeSet<u64> = files
        .iter()
        .flat_map(|(_, qs)| qs.iter().flat_map(|q| convert::test_pmids(q, which)))
        .collect();
    let mut docs: BTreeMap<u64, (convert::Document, &'static str)> = BTreeMap::new();
    if !wanted.is_empty() {
        let parquet = documents::parquet_files(&ctx.layout.parquet_current())?;
        for (pmid, d) in documents::lookup(&parquet, &wanted)? {
            docs.insert(pmid, (d, source::PUBMED));
        }
    }
    let cache = ctx.layout.raw_efetch();
    let load_cached =
        |docs: &mut BTreeMap<u64, (convert::Document, &'static str)>| -> Result<Vec<u64>> {
            let mut missing = Vec::new();
            let todo: Vec<u64> = wanted
                .iter()
                .copied()
                .filter(|p| !docs.contains_key(p))
                .collect();
            for pmid in todo {
                match efetch::read_cached(&cache, pmid)? {
                    Some(d) => {
                        docs.insert(pmid, (d, source::EFETCH));
                    }
                    None => missing.push(pmid),
                }
            }
            Ok(missing)
        };
    let mut missing = load_cached(&mut docs)?;
    let mut fetch = efetch::FetchReport::default();
    if !missing.is_empty() && !args.offline {
        let opts = efetch::EfetchOptions::new(Some(&args.base_url), args.ncbi_api_key.as_deref());
        tracing::info!(
            "bioasq: fetching {} PMIDs from {} ({} requests/s at most)",
            missing.len(),
            opts.base_url,
            opts.requests_per_second()
        );
        fetch = efetch::fetch_into_cache(&opts, &missing, &cache)?;
        missing = load_cached(&mut docs)?;
    }

    let mut out = BTreeMap::new();
    let mut sources: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut not_found, mut no_abstract, mut without_examples) = (0usize, 0usize, 0usize);
    let mut questions: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (f, qs) in files {
        let mut examples = Vec::new();
        for q in qs {
            let Some(qt) = qtype::EXACT.into_iter().find(|t| *t == q.qtype) else {
                continue;
            };
            *questions.entry(qt).or_default() += 1;
            let mut n = 0usize;
            for pmid in convert::test_pmids(q, which) {
                let (context, src) = match docs.get(&pmid) {
                    Some((d, src)) => match convert::document_context(d) {
                        Some(c) => (c, *src),
                        None => {
                            no_abstract += 1;
                            continue;
                        }
                    },
                    None if args.offline => match convert::snippet_context(q, pmid) {
                        Some(c) => (c, source::SNIPPET_FALLBACK),
                        None => {
                            not_found += 1;
                            continue;
                        }
                    },
                    None => {
                        not_found += 1;
                        continue;
                    }
                };
                *sources.entry(src).or_default() += 1;
                examples.push(Example {
                    id: format!("{}_{n:03}", q.id),
                    question_id: q.id.clone(),
                    question: q.body.clone(),
                    context,
                    answer_text: None,
                    answer_start: None,
                    pmid: Some(pmid),
                    context_source: src,
                    split: Split::Test,
                    source_file: f.name.clone(),
                    qtype: qt,
                    answer_list: None,
                });
                n += 1;
            }
            without_examples += usize::from(n == 0);
        }
        out.insert((f.name.clone(), Split::Test), examples);
    }
    let stats = json!({
        "questions": questions,
        "questions_without_examples": without_examples,
        "documents_wanted": wanted.len(),
        "sources": sources,
        "documents_not_found": not_found,
        "documents_without_abstract": no_abstract,
        "still_missing_pmids": missing.len(),
        "efetch_requests": fetch.requests,
        "efetch_fetched": fetch.fetched,
        "efetch_not_found": fetch.not_found.len(),
        "offline": args.offline,
    });
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_config_snippet_parses() {
        let text = include_str!("../../../configs/bioasq-tasks.toml");
        let config: crate::Config = toml::from_str(text).expect("configs/bioasq-tasks.toml");
        let tasks = &config.bioasq.tasks;
        assert_eq!(
            tasks.keys().collect::<Vec<_>>(),
            [
                "bioasq-4b",
                "bioasq-5b",
                "bioasq-6b",
                "bioasq-6b-yesno-list"
            ]
        );
        assert_eq!(
            (tasks["bioasq-4b"].year, tasks["bioasq-6b"].test.len()),
            (4, 5)
        );
    }
}
