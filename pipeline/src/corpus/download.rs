//! `pipeline corpus-download`: the raw files of each `[corpus.<name>]` from its Hugging Face dataset
//! repository, through the same verified, resumable download as `fetch-model`
//! ([`crate::download::fetch`]).
//!
//! A file comes from `{hub_url}/datasets/{repo}/resolve/{revision}/{file}` into
//! `raw/corpus/<name>/<file>` (its path inside the repository kept). A HEAD request (redirects not
//! followed) gives the size and, for LFS files (all Parquet and `json.gz` shards of the hub), the
//! SHA-256 (`X-Linked-Size`, `X-Linked-Etag`); the body must match them and pass the format's
//! content check ([`super::formats::validator`]: Parquet magic and footer, a complete gzip stream)
//! before it takes its final name. Verified files are units of `manifests/corpus-download.json`
//! (key `<name>/<file>`, stats: url, size, sha256); a unit whose file is unchanged and whose URL is
//! the same is cached without a request. A file already in place with the published SHA-256 (copied
//! there earlier) is kept. With `--offline` nothing is fetched: every file must be in `raw/corpus`
//! already and pass the content check.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{CorpusFile, all_files, formats, selected};
use crate::Ctx;
use crate::download::NetArgs;
use crate::download::fetch::{Bars, Expect, Fetcher, hash_file};
use crate::download::hub::Source;
use crate::stage::{Stage, StageStatus};

pub const STAGE: &str = "corpus-download";

#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Only this corpus (a `[corpus.<name>]` of the config).
    #[arg(long)]
    pub corpus: Option<String>,
    /// No network: use the files in raw/corpus as they are (each validated).
    #[arg(long)]
    pub offline: bool,
    /// Hub URL (default: config download.hub_url, https://huggingface.co).
    #[arg(long)]
    pub base_url: Option<String>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// One raw file as this run found it.
#[derive(Clone, Debug, Serialize)]
pub struct CorpusFileReport {
    pub corpus: String,
    pub file: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Option<String>,
    pub source: Source,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CorpusDownloadSummary {
    pub files: Vec<CorpusFileReport>,
    pub retries: u64,
}

fn open_stage(ctx: &Ctx) -> Result<Stage> {
    Stage::open(
        ctx.layout.root(),
        STAGE,
        1,
        1,
        &serde_json::json!({ "verify": "size+sha256+content" }),
        ctx.force,
    )
}

/// `{hub}/datasets/{repo}/resolve/{revision}/{file}`.
pub fn file_url(hub: &str, repo: &str, revision: &str, file: &str) -> String {
    format!(
        "{}/datasets/{repo}/resolve/{revision}/{file}",
        hub.trim_end_matches('/')
    )
}

/// The stage: every file of the selected corpora in canonical order, verified.
pub fn download(ctx: &Ctx, args: &Args) -> Result<CorpusDownloadSummary> {
    let corpora = selected(ctx, args.corpus.as_deref())?;
    let files = all_files(ctx, &corpora);
    if args.offline {
        return use_local(ctx, &files);
    }
    if files.is_empty() {
        return Ok(CorpusDownloadSummary::default());
    }
    let cfg = &ctx.config.download;
    let hub = args.base_url.clone().unwrap_or_else(|| cfg.hub_url.clone());
    let fetcher = Fetcher::new(args.net.options(cfg)?)?;
    let stage = open_stage(ctx)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = Instant::now();
    let bars = Bars::new("corpus-download");
    let mut out = Vec::new();
    for f in &files {
        let corpus = &ctx.config.corpus[&f.corpus];
        let url = file_url(&hub, &corpus.repo, &corpus.revision, &f.file);
        let key = f.key();
        let what = || {
            format!(
                "{} of {} (revision {})",
                f.file, corpus.repo, corpus.revision
            )
        };
        let recorded = stage.recorded(&key);
        let same_url = recorded
            .as_ref()
            .is_some_and(|u| u.stats["url"].as_str() == Some(url.as_str()));
        if same_url && stage.plan(&key, &[])?.is_cached() {
            let sha256 = recorded.and_then(|u| u.stats["sha256"].as_str().map(str::to_string));
            out.push(report(f, sha256, Source::Cached)?);
            continue;
        }
        let head = runtime
            .block_on(fetcher.head_info(&url))
            .with_context(what)?;
        if head.missing {
            bail!(
                "{} has no file {} at revision {} (HTTP 404 for {url})",
                corpus.repo,
                f.file,
                corpus.revision
            );
        }
        let validate = formats::validator(corpus.format);
        let (source, sha256) = runtime
            .block_on(async {
                if let (Some(want), true) = (&head.sha256, f.raw.is_file()) {
                    let (_, have) = hash_file(&f.raw, true).await?;
                    if have.as_deref() == Some(want.as_str()) {
                        validate(&f.raw)?;
                        return Ok::<_, anyhow::Error>((Source::Cached, head.sha256.clone()));
                    }
                }
                let expect = Expect {
                    md5: None,
                    sha256: head.sha256.clone(),
                    size: head.size,
                    validate: Some(validate),
                };
                let fetched = fetcher
                    .fetch_verified(&url, &f.raw, &expect, Some(&bars))
                    .await?;
                Ok((Source::Downloaded, fetched.sha256.or(head.sha256.clone())))
            })
            .with_context(what)?;
        let size = std::fs::metadata(&f.raw)?.len();
        stage.record(
            &key,
            Vec::new(),
            std::slice::from_ref(&f.raw),
            serde_json::json!({ "url": url, "size": size, "sha256": sha256 }),
        )?;
        out.push(report(f, sha256, source)?);
    }
    bars.finish();
    let retries = fetcher.counters.snapshot().retries;
    if out.iter().any(|f| f.source != Source::Cached) {
        stage.finish(serde_json::json!({
            "files": out.len(),
            "bytes": out.iter().map(|f| f.size).sum::<u64>(),
            "seconds": started.elapsed().as_secs_f64(),
            "retries": retries,
        }))?;
    }
    Ok(CorpusDownloadSummary {
        files: out,
        retries,
    })
}

fn report(f: &CorpusFile, sha256: Option<String>, source: Source) -> Result<CorpusFileReport> {
    Ok(CorpusFileReport {
        corpus: f.corpus.clone(),
        file: f.file.clone(),
        size: std::fs::metadata(&f.raw)
            .with_context(|| format!("reading {}", f.raw.display()))?
            .len(),
        path: f.raw.clone(),
        sha256,
        source,
    })
}

/// `--offline`: every file must be in raw/corpus and pass its content check.
fn use_local(ctx: &Ctx, files: &[CorpusFile]) -> Result<CorpusDownloadSummary> {
    let mut out = Vec::new();
    for f in files {
        let corpus = &ctx.config.corpus[&f.corpus];
        if !f.raw.is_file() {
            bail!(
                "offline: {} is missing (expected {} of {} in {})",
                f.raw.display(),
                f.file,
                corpus.repo,
                ctx.layout.raw_corpus(&f.corpus).display()
            );
        }
        formats::validator(corpus.format)(&f.raw)
            .with_context(|| format!("offline: {} of {}", f.file, corpus.repo))?;
        out.push(report(f, None, Source::Local)?);
    }
    Ok(CorpusDownloadSummary {
        files: out,
        retries: 0,
    })
}

/// `pipeline corpus-download` with its summary lines.
pub fn run(ctx: &Ctx, args: &Args) -> Result<CorpusDownloadSummary> {
    if ctx.config.corpus.is_empty() {
        println!("corpus-download: no [corpus.<name>] in the config, nothing to do");
        return Ok(CorpusDownloadSummary::default());
    }
    let s = download(ctx, args)?;
    for f in &s.files {
        println!(
            "{:<12} {:>10}  {:<10} {}",
            f.corpus,
            indicatif::HumanBytes(f.size).to_string(),
            format!("{:?}", f.source).to_lowercase(),
            f.path.display()
        );
    }
    println!("corpus-download: {} files", s.files.len());
    Ok(s)
}

/// `pipeline status` row of corpus-download: a file is cached when verified and unchanged.
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let stage = open_stage(ctx)?;
    let files = all_files(ctx, &selected(ctx, None)?);
    let mut st = StageStatus {
        stage: STAGE.into(),
        ..Default::default()
    };
    for f in &files {
        let known = stage.recorded(&f.key()).is_some();
        match stage.plan(&f.key(), &[])? {
            crate::stage::Plan::Cached => st.cached += 1,
            _ if known => st.stale += 1,
            _ if f.raw.is_file() => {
                st.cached += 1;
                st.note = "files placed by hand (offline) count as present".into();
            }
            _ => st.missing += 1,
        }
    }
    Ok(st)
}
