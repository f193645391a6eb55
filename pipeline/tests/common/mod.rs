//! Helpers shared by the pipeline's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pipeline::Ctx;
use pipeline::parse::{Citation, Item, ParseOptions, ParseSummary, open_input, parse_reader};
use serde_json::{Value, json};

/// What the `pipeline parse` command does: the parse stage, then the current view (unless sharded
/// or `--no-current`).
pub fn parse_command(ctx: &Ctx, args: pipeline::parse::Args) -> anyhow::Result<ParseSummary> {
    let builds_current = args.builds_current();
    let summary = pipeline::parse::run(ctx, args)?;
    if builds_current {
        pipeline::current::run(ctx, pipeline::current::Args::default())?;
    }
    Ok(summary)
}

/// What the `pipeline tokenize` command does: the tokenize stage, then the pack stage.
pub fn tokenize_command(ctx: &Ctx, args: pipeline::tokenize::Args) -> anyhow::Result<()> {
    let config = pipeline::config::TokenizeConfig::resolve(ctx, &args)?;
    let report = pipeline::tokenize::run(ctx, &config)?;
    pipeline::tokenize::pack::run(ctx, &config, &report.token_files)?;
    Ok(())
}

/// What the `pipeline tokenize` command does with corpora configured: tokenize + pack for
/// PubMed, then for every `[corpus.<name>]`.
pub fn tokenize_all_command(ctx: &Ctx, args: pipeline::tokenize::Args) -> anyhow::Result<()> {
    let config = pipeline::config::TokenizeConfig::resolve(ctx, &args)?;
    let report = pipeline::tokenize::run(ctx, &config)?;
    pipeline::tokenize::pack::run(ctx, &config, &report.token_files)?;
    for domain in pipeline::tokenize::Domain::corpora(ctx)? {
        let report = pipeline::tokenize::run_domain(ctx, &config, &domain, None)?;
        pipeline::tokenize::pack::run_domain(ctx, &config, &domain, &report.token_files)?;
    }
    Ok(())
}

/// What the `pipeline pack` command does: the pack stage over the token files of every part.
pub fn pack_command(ctx: &Ctx, args: pipeline::tokenize::Args) -> anyhow::Result<()> {
    let config = pipeline::config::TokenizeConfig::resolve(ctx, &args)?;
    let files = pipeline::tokenize::token_files(ctx, &config)?;
    pipeline::tokenize::pack::run(ctx, &config, &files)?;
    Ok(())
}

/// The real fixtures (`BIOMAMBA_FIXTURES`, default `<workspace>/../shared/fixtures`), if present.
pub fn fixtures() -> Option<PathBuf> {
    testkit::fixtures::fixtures_with(&["pubmed"])
}

pub fn sample() -> PathBuf {
    testkit::fixtures::sample_dir()
}

/// Every `*.xml` / `*.xml.gz` below `dir`, sorted.
pub fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(xml_files(&p));
        } else {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            if n.ends_with(".xml") || n.ends_with(".xml.gz") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The expect-file view of a citation.
pub fn expect_view(c: &Citation) -> Value {
    json!({
        "pmid": c.pmid, "version": c.version, "title": c.title, "abstract": c.abstract_text,
        "year": c.year, "languages": c.languages, "doi": c.doi,
    })
}

/// Parse `path` into (expect-style rows, deleted PMIDs); panics on any error (tests only).
pub fn parse_all(path: &Path) -> (Vec<Value>, Vec<u64>) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut rows = Vec::new();
    let mut deleted = Vec::new();
    for item in parse_reader(open_input(path).unwrap(), &name, &ParseOptions::default()) {
        match item.unwrap_or_else(|e| panic!("{e}")) {
            Item::Citation(c) => rows.push(expect_view(&c)),
            Item::Deletion(d) => deleted.push(d.pmid),
        }
    }
    (rows, deleted)
}

/// Read an expect JSONL: (citation rows, deleted PMIDs).
pub fn read_expect(path: &Path) -> (Vec<Value>, Vec<u64>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = Vec::new();
    let mut deleted = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(d) = v.get("deleted") {
            deleted.extend(d.as_array().unwrap().iter().map(|p| p.as_u64().unwrap()));
        } else {
            rows.push(v);
        }
    }
    (rows, deleted)
}

/// Compare a parsed file with its expect file, field by field, with a readable failure.
pub fn assert_matches_expect(input: &Path, expect: &Path) -> usize {
    let (got, got_deleted) = parse_all(input);
    let (want, want_deleted) = read_expect(expect);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        for key in [
            "pmid",
            "version",
            "title",
            "abstract",
            "year",
            "languages",
            "doi",
        ] {
            assert_eq!(
                g[key],
                w[key],
                "{}: record #{i} (PMID {}) field {key}",
                input.display(),
                w["pmid"]
            );
        }
    }
    assert_eq!(got.len(), want.len(), "{}: record count", input.display());
    assert_eq!(got_deleted, want_deleted, "{}: deletions", input.display());
    got.len()
}

/// The stem an expect file is named after (`pubmed26n1334.xml.gz` → `pubmed26n1334`).
pub fn stem(path: &Path) -> String {
    pipeline::parse::file_stem(path)
}
