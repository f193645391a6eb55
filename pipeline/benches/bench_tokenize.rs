//! `just bench-tokenize`: throughput of the whole tokenize stage (Parquet in, token files, shards out)
//! against Python `tokenizers` `encode_batch` on the same documents with the same thread count.
//!
//! The corpus is ≥ `--mb` MB of abstract text made by replicating the fixture and sample abstracts
//! (title + "\n" + abstract) under fresh PMIDs into Parquet parts of the abstracts schema.
//! Replication repeats words, so both sides profit alike from the BPE word cache; absolute rates on
//! real PubMed will be somewhat lower.
//!
//! Rows: the stage (Parquet in, shards out, encoding with our GPT-2 split), the encoder alone on the
//! in-memory documents (with our split, and the tokenizers crate with its own regex engine), and
//! Python `encode_batch`. Runs are interleaved: each round measures, per thread count, all of them
//! right after each other, so a change in machine load hits all of them alike; every round
//! is a row group of the table, and the summary gives per thread count the median of the rounds.
//! The title names the regex engine the tokenizers crate was built with (`--features onig` for
//! Oniguruma; `just bench-tokenize-engines` runs both builds alternately).
//!
//! Usage: `bench_tokenize [--mb 50] [--threads 1,2] [--rounds 3] [--tokenizer PATH] [--python PATH]`
//! Python: `python3 -m venv ~/.cache/biomamba-pyvenv && ~/.cache/biomamba-pyvenv/bin/pip install tokenizers`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pipeline::config::TokenizeConfig;
use pipeline::tokenize::{self, document_text};
use pipeline::{Config, Ctx};
use testkit::synthetic::{AbstractRow, read_expect_jsonl, write_abstracts_part};

struct Options {
    mb: usize,
    threads: Vec<usize>,
    rounds: usize,
    tokenizer: PathBuf,
    python: PathBuf,
}

use testkit::fixtures::{fixtures_dir as fixtures, sample_dir};

fn parse_args() -> Result<Options> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options {
        mb: 50,
        threads: if cores > 1 { vec![1, cores] } else { vec![1] },
        rounds: 3,
        tokenizer: fixtures().join("tokenizer/gpt-neox-20b.tokenizer.json"),
        python: std::env::var_os("BIOMAMBA_BENCH_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".cache/biomamba-pyvenv/bin/python")),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--mb" => o.mb = value()?.parse().context("--mb")?,
            "--threads" => {
                o.threads = value()?
                    .split(',')
                    .map(|t| t.parse().context("--threads"))
                    .collect::<Result<_>>()?
            }
            "--rounds" => o.rounds = value()?.parse::<usize>().context("--rounds")?.max(1),
            "--tokenizer" => o.tokenizer = value()?.into(),
            "--python" => o.python = value()?.into(),
            other => bail!("unknown argument {other}; see the file header for usage"),
        }
    }
    Ok(o)
}

/// Abstract texts of every expect file we have (fixtures and the sample).
fn source_rows() -> Result<Vec<AbstractRow>> {
    let mut files = Vec::new();
    for dir in [
        fixtures().join("pubmed/expect"),
        sample_dir().join("expect"),
    ] {
        files.extend(schemas::layout::files_with_suffix(&dir, ".jsonl")?);
    }
    let mut rows = Vec::new();
    for f in files {
        rows.extend(
            read_expect_jsonl(&f)?
                .into_iter()
                .filter(|r| r.abstract_text.as_deref().is_some_and(|a| !a.is_empty())),
        );
    }
    if rows.is_empty() {
        bail!(
            "no source abstracts found (fixtures under {})",
            fixtures().display()
        );
    }
    Ok(rows)
}

/// Write ≥ `mb` MB of document text as Parquet parts under `data/parquet/current`, and the same
/// documents as JSON lines for Python. Returns (documents, text bytes).
fn build_corpus(data: &Path, jsonl: &Path, mb: usize) -> Result<(usize, usize)> {
    let source = source_rows()?;
    let target = mb * 1_000_000;
    let per_part = 20_000;
    let (mut docs, mut bytes, mut part) = (0usize, 0usize, 0usize);
    let mut out = std::io::BufWriter::new(std::fs::File::create(jsonl)?);
    let mut rows = Vec::with_capacity(per_part);
    let mut pmid = 100_000_000u64;
    while bytes < target {
        for r in &source {
            pmid += 1;
            let text = document_text(r.title.as_deref(), r.abstract_text.as_deref(), false)
                .context("source rows have abstracts")?;
            bytes += text.len();
            docs += 1;
            serde_json::to_writer(&mut out, &text)?;
            out.write_all(b"\n")?;
            rows.push(AbstractRow { pmid, ..r.clone() });
            if rows.len() == per_part {
                write_part(data, part, &rows)?;
                part += 1;
                rows.clear();
            }
            if bytes >= target {
                break;
            }
        }
    }
    if !rows.is_empty() {
        write_part(data, part, &rows)?;
    }
    out.flush()?;
    Ok((docs, bytes))
}

fn write_part(data: &Path, index: usize, rows: &[AbstractRow]) -> Result<()> {
    let path = data.join(format!("parquet/current/part-{index:05}.parquet"));
    write_abstracts_part(&path, rows, "bench")
}

struct Row {
    name: String,
    threads: usize,
    tokens: u64,
    seconds: f64,
    round: usize,
}

const STAGE: &str = "stage (Parquet → shards)";
const RAW_FAST: &str = "rust, our GPT-2 split (in memory)";
const PYTHON_BATCH: &str = "python tokenizers encode_batch";

fn run_stage(data: &Path, tokenizer: &Path, threads: usize) -> Result<Row> {
    for d in ["tokens", "shards", "manifests"] {
        let _ = std::fs::remove_dir_all(data.join(d));
    }
    let mut config = Config::default();
    config.tokenize.tokenizer = tokenizer.to_path_buf();
    let ctx = Ctx::new(Some(data.to_path_buf()), config, false);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let start = Instant::now();
    let (report, packed) = pool.install(|| -> Result<_> {
        let s = TokenizeConfig::resolve(&ctx, &tokenize::Args::default())?;
        let t = Instant::now();
        let report = tokenize::tokenize_stage(&ctx, &s)?;
        let tokenize_s = t.elapsed().as_secs_f64();
        let packed = tokenize::pack::pack_stage(&ctx, &s, &report.token_files)?;
        eprintln!(
            "  stage breakdown: tokenize {tokenize_s:.2}s, pack {:.2}s",
            t.elapsed().as_secs_f64() - tokenize_s
        );
        Ok((report, packed))
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let tokens = report.totals.tokens;
    anyhow::ensure!(
        packed.train.tokens + packed.val.tokens == tokens,
        "packing lost tokens"
    );
    Ok(Row {
        name: STAGE.into(),
        threads,
        tokens,
        seconds,
        round: 0,
    })
}

/// The encoder alone on the in-memory documents (the stage's ceiling, to show what Parquet reading,
/// token files and packing add): `fast` = what the stage encodes with (`LoadedTokenizer`: the
/// tokenizers crate with our GPT-2 split), else the tokenizers crate as loaded (its own regex engine).
fn run_rust_raw(tokenizer: &Path, jsonl: &Path, threads: usize, fast: bool) -> Result<Row> {
    use rayon::prelude::*;
    let tok = if fast {
        tokenize::LoadedTokenizer::load(tokenizer)?
    } else {
        tokenize::LoadedTokenizer::load_generic(tokenizer)?
    };
    anyhow::ensure!(tok.fast.is_some() == fast, "fast split not available");
    let docs: Vec<String> = std::fs::read_to_string(jsonl)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let start = Instant::now();
    let tokens: u64 = pool.install(|| {
        docs.par_iter()
            .map(|d| tok.encode_document(d).map(|ids| ids.len() as u64))
            .sum::<Result<u64>>()
    })?;
    Ok(Row {
        name: if fast { RAW_FAST.into() } else { raw_crate() },
        threads,
        tokens,
        seconds: start.elapsed().as_secs_f64(),
        round: 0,
    })
}

fn raw_crate() -> String {
    format!("rust tokenizers, {} (in memory)", tokenize::REGEX_ENGINE)
}

const PYTHON: &str = r#"
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
docs = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
out = {}
for name in ["encode_batch", "encode_batch_fast"]:
    fn = getattr(tok, name, None)
    if fn is None:
        continue
    t0 = time.perf_counter(); n = 0
    for i in range(0, len(docs), 10000):
        for e in fn(docs[i:i + 10000], add_special_tokens=False):
            n += len(e.ids) + 1  # + EOS, as the stage counts it
    out[name] = [n, time.perf_counter() - t0]
print(json.dumps(out))
"#;

fn run_python(o: &Options, jsonl: &Path, threads: usize) -> Result<Vec<Row>> {
    let output = Command::new(&o.python)
        .arg("-c")
        .arg(PYTHON)
        .arg(&o.tokenizer)
        .arg(jsonl)
        .env("RAYON_RS_NUM_THREADS", threads.to_string())
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("TOKENIZERS_PARALLELISM", "true")
        .output()
        .with_context(|| format!("running {}", o.python.display()))?;
    if !output.status.success() {
        bail!("python failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut rows = Vec::new();
    for name in ["encode_batch", "encode_batch_fast"] {
        if let Some(r) = v.get(name) {
            rows.push(Row {
                name: format!("python tokenizers {name}"),
                threads,
                tokens: r[0].as_u64().unwrap_or(0),
                seconds: r[1].as_f64().unwrap_or(f64::NAN),
                round: 0,
            });
        }
    }
    Ok(rows)
}

fn main() -> Result<()> {
    let o = parse_args()?;
    if !o.tokenizer.exists() {
        bail!(
            "tokenizer {} not found (pass --tokenizer)",
            o.tokenizer.display()
        );
    }
    let work = std::env::temp_dir().join(format!("bench-tokenize-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench(&o, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench(o: &Options, work: &Path) -> Result<()> {
    let data = work.join("data");
    let jsonl = work.join("docs.jsonl");
    let t = Instant::now();
    let (docs, bytes) = build_corpus(&data, &jsonl, o.mb)?;
    eprintln!(
        "corpus: {docs} documents, {:.1} MB of text, built in {:.1}s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let python_ok = o.python.exists();
    let mut rows = Vec::new();
    for round in 1..=o.rounds {
        for &threads in &o.threads {
            eprintln!("round {round}: stage, {threads} thread(s)...");
            let mut batch = vec![
                run_stage(&data, &o.tokenizer, threads)?,
                run_rust_raw(&o.tokenizer, &jsonl, threads, true)?,
                run_rust_raw(&o.tokenizer, &jsonl, threads, false)?,
            ];
            if python_ok {
                eprintln!("round {round}: python, {threads} thread(s)...");
                batch.extend(run_python(o, &jsonl, threads)?);
            }
            for mut r in batch {
                r.round = round;
                rows.push(r);
            }
        }
    }
    println!(
        "\ntokenize benchmark: {docs} documents, {:.1} MB text, tokenizer {}, regex engine {}, {} interleaved round(s)",
        bytes as f64 / 1e6,
        o.tokenizer
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        tokenize::REGEX_ENGINE,
        o.rounds
    );
    println!(
        "| {:>5} | {:<40} | {:>7} | {:>11} | {:>8} | {:>12} | {:>15} | {:>14} |",
        "round",
        "implementation",
        "threads",
        "tokens",
        "seconds",
        "tokens/s",
        "tokens/s/core",
        "/ python batch"
    );
    println!(
        "|{:->7}|{:-<42}|{:->9}|{:->13}|{:->10}|{:->14}|{:->17}|{:->16}|",
        ":", ":", ":", ":", ":", ":", ":", ":"
    );
    let rate = |r: &Row| r.tokens as f64 / r.seconds;
    // The Python peer of a row: same round, same thread count.
    let peer = |r: &Row| {
        rows.iter()
            .find(|p| p.round == r.round && p.threads == r.threads && p.name == PYTHON_BATCH)
    };
    for r in &rows {
        let ratio = match peer(r) {
            Some(p) if r.name != PYTHON_BATCH => format!("{:.2}x", rate(r) / rate(p)),
            _ => String::new(),
        };
        println!(
            "| {:>5} | {:<40} | {:>7} | {:>11} | {:>8.2} | {:>12.0} | {:>15.0} | {:>14} |",
            r.round,
            r.name,
            r.threads,
            r.tokens,
            r.seconds,
            rate(r),
            rate(r) / r.threads as f64,
            ratio
        );
    }
    if python_ok {
        println!(
            "\nmedian over rounds of (ours / python encode_batch), regex engine {}:",
            tokenize::REGEX_ENGINE
        );
        for &threads in &o.threads {
            let median = |name: &str| {
                let mut v: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.threads == threads && r.name == name)
                    .filter_map(|r| peer(r).map(|p| rate(r) / rate(p)))
                    .collect();
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
            };
            println!(
                "  {threads} thread(s): stage {:.2}x, raw encode with our split {:.2}x, raw encode tokenizers/{} {:.2}x",
                median(STAGE),
                median(RAW_FAST),
                tokenize::REGEX_ENGINE,
                median(&raw_crate())
            );
        }
    }
    if !python_ok {
        println!(
            "python peer not run: {} missing (python3 -m venv ~/.cache/biomamba-pyvenv && ~/.cache/biomamba-pyvenv/bin/pip install tokenizers)",
            o.python.display()
        );
    }
    Ok(())
}
