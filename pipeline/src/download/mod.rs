//! `pipeline download`: mirror PubMed baseline and update files over HTTP, resumable and verified.
//!
//! The remote directory index (or a local list, `--list`) gives the file names; `--files` / `--updates`
//! select by file number. Each file is checked against its `.md5` sidecar before it takes its final
//! name under `raw/pubmed/{baseline,updatefiles}/` (see [`fetch`] for resumption, retries and
//! verification). Verified files are recorded (size, mtime, MD5) in `manifests/download.json`, one unit
//! per file, and are not fetched again. A file that keeps failing is reported and the others go on;
//! the command then exits non-zero with a summary.

pub mod fetch;
pub mod hub;
pub mod listing;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::HumanBytes;
use serde::Serialize;

use crate::Ctx;
use crate::config::DownloadConfig;
use crate::stage::{Plan, Stage, StageStatus};
use fetch::{Bars, CounterSnapshot, Expect, Fetcher, NetOptions};
use listing::{PubmedName, RemoteDir, Selection};

pub const STAGE: &str = "download";
const CODE_VERSION: u32 = 1;
const SCHEMA_VERSION: u32 = 1;

/// Network flags shared by `download`, `fetch-model` and `fetch-tokenizer` (override `[download]`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NetArgs {
    /// Failed attempts per file before giving up.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Seconds to wait for a connection.
    #[arg(long)]
    pub connect_timeout: Option<f64>,
    /// Seconds without data after which a request counts as stalled.
    #[arg(long)]
    pub read_timeout: Option<f64>,
    /// First retry delay in seconds (doubles per failure, with jitter).
    #[arg(long)]
    pub backoff: Option<f64>,
    /// Longest retry delay in seconds.
    #[arg(long)]
    pub backoff_max: Option<f64>,
}

impl NetArgs {
    pub fn options(&self, cfg: &DownloadConfig) -> Result<NetOptions> {
        let secs = |v: f64, what: &str| -> Result<Duration> {
            Duration::try_from_secs_f64(v).with_context(|| {
                format!("{what} must be a non-negative number of seconds, got {v}")
            })
        };
        let max_attempts = self.max_attempts.unwrap_or(cfg.max_attempts);
        if max_attempts == 0 {
            bail!("max_attempts must be at least 1");
        }
        Ok(NetOptions {
            connect_timeout: secs(
                self.connect_timeout.unwrap_or(cfg.connect_timeout_secs),
                "connect timeout",
            )?,
            read_timeout: secs(
                self.read_timeout.unwrap_or(cfg.read_timeout_secs),
                "read timeout",
            )?,
            max_attempts,
            backoff_initial: secs(self.backoff.unwrap_or(cfg.backoff_initial_secs), "backoff")?,
            backoff_max: secs(
                self.backoff_max.unwrap_or(cfg.backoff_max_secs),
                "backoff max",
            )?,
        })
    }
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Baseline files by number: `all`, `none`, `1-5`, `3,7-9` (default: config download.files).
    #[arg(long)]
    pub files: Option<String>,
    /// Also fetch update files; optionally which (`--updates 1335-1340`); bare `--updates` = all.
    #[arg(long, num_args = 0..=1, default_missing_value = "all")]
    pub updates: Option<String>,
    /// Take file names from this local file (names, paths or URLs one a line, or a saved HTML
    /// index) instead of listing the remote directories.
    #[arg(long)]
    pub list: Option<PathBuf>,
    /// PubMed root URL (default: config download.base_url, NCBI).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Files downloaded at the same time.
    #[arg(long, short = 'j')]
    pub concurrency: Option<usize>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// One file to mirror.
#[derive(Clone, Debug)]
struct Target {
    dir: RemoteDir,
    name: String,
    url: String,
    dest: PathBuf,
}

impl Target {
    fn key(&self) -> String {
        format!("{}/{}", self.dir.as_str(), self.name)
    }
}

/// A file that could not be fetched.
#[derive(Clone, Debug, Serialize)]
pub struct FailedFile {
    pub file: String,
    pub error: String,
}

/// What a run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DownloadSummary {
    pub selected: usize,
    /// Fetched and verified in this run.
    pub downloaded: Vec<String>,
    /// Already verified: recorded in the manifest, or present with the right MD5.
    pub cached: Vec<String>,
    pub failed: Vec<FailedFile>,
    /// Size of the files downloaded in this run.
    pub bytes_downloaded: u64,
    pub seconds: f64,
    pub net: CounterSnapshot,
}

impl DownloadSummary {
    pub fn line(&self) -> String {
        let rate = if self.seconds > 0.0 {
            self.net.bytes_received as f64 / self.seconds
        } else {
            0.0
        };
        format!(
            "download: {} downloaded ({}), {} cached, {} failed of {} selected in {:.1} s ({}/s); \
             {} requests, {} retries, {} range resumes ({} ignored), {} checksum mismatches, {} stalls",
            self.downloaded.len(),
            HumanBytes(self.bytes_downloaded),
            self.cached.len(),
            self.failed.len(),
            self.selected,
            self.seconds,
            HumanBytes(rate as u64),
            self.net.requests,
            self.net.retries,
            self.net.range_requests,
            self.net.range_ignored,
            self.net.checksum_mismatches,
            self.net.stalls,
        )
    }
}

fn dir_path(ctx: &Ctx, dir: RemoteDir) -> PathBuf {
    match dir {
        RemoteDir::Baseline => ctx.layout.raw_baseline(),
        RemoteDir::Updatefiles => ctx.layout.raw_updatefiles(),
    }
}

/// Open the stage. Nothing about how a file was fetched changes what a verified file is, so the
/// fingerprint holds no config: a changed mirror or concurrency keeps everything cached.
fn open_stage(ctx: &Ctx) -> Result<Stage> {
    Stage::open(
        ctx.layout.root(),
        STAGE,
        CODE_VERSION,
        SCHEMA_VERSION,
        &serde_json::json!({ "verify": "md5" }),
        ctx.force,
    )
}

/// `pipeline download`: returns an error naming every file that failed.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let summary = download(ctx, &args)?;
    println!("{}", summary.line());
    if !summary.failed.is_empty() {
        for f in &summary.failed {
            tracing::warn!("failed: {}: {}", f.file, f.error);
        }
        let names: Vec<&str> = summary.failed.iter().map(|f| f.file.as_str()).collect();
        bail!(
            "{} of {} files failed to download: {}",
            names.len(),
            summary.selected,
            names.join(", ")
        );
    }
    Ok(())
}

/// The download itself; per-file failures are in the summary, not an error.
pub fn download(ctx: &Ctx, args: &Args) -> Result<DownloadSummary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(download_async(ctx, args))
}

async fn download_async(ctx: &Ctx, args: &Args) -> Result<DownloadSummary> {
    let started = Instant::now();
    let cfg = &ctx.config.download;
    let base = args
        .base_url
        .clone()
        .unwrap_or_else(|| cfg.base_url.clone());
    let base = base.trim_end_matches('/').to_string();
    let concurrency = args.concurrency.unwrap_or(cfg.concurrency).max(1);
    let baseline_sel = Selection::parse(args.files.as_deref().unwrap_or(&cfg.files))
        .context("--files / download.files")?;
    let updates_sel = Selection::parse(args.updates.as_deref().unwrap_or(&cfg.updates))
        .context("--updates / download.updates")?;
    let fetcher = Arc::new(Fetcher::new(args.net.options(cfg)?)?);

    // Names per remote directory, from the list file or the remote indexes.
    let listed: Option<Vec<(RemoteDir, PubmedName)>> = match &args.list {
        Some(path) => Some(listing::names_from_list_file(path)?),
        None => None,
    };
    let mut targets = Vec::new();
    for (dir, sel, flag) in [
        (RemoteDir::Baseline, &baseline_sel, "--files"),
        (RemoteDir::Updatefiles, &updates_sel, "--updates"),
    ] {
        if sel.is_empty() {
            continue;
        }
        let names: Vec<PubmedName> = match &listed {
            Some(l) => l
                .iter()
                .filter(|(d, _)| *d == dir)
                .map(|(_, n)| n.clone())
                .collect(),
            None => {
                let url = format!("{base}/{}/", dir.as_str());
                let html = fetcher
                    .get_text(&url)
                    .await
                    .with_context(|| format!("listing {url}"))?;
                let names = listing::names_from_html(&html);
                if names.is_empty() {
                    bail!("the index {url} links no pubmedYYnNNNN.xml.gz files");
                }
                names
            }
        };
        for n in sel.apply(&names, flag)? {
            targets.push(Target {
                dir,
                url: format!("{base}/{}/{}", dir.as_str(), n.name),
                dest: dir_path(ctx, dir).join(&n.name),
                name: n.name,
            });
        }
    }

    let stage = Arc::new(open_stage(ctx)?.with_settings(&serde_json::json!({
        "base_url": base,
        "files": args.files.as_deref().unwrap_or(&cfg.files),
        "updates": args.updates.as_deref().unwrap_or(&cfg.updates),
        "list": args.list.as_ref().map(|p| crate::stage::settings_path(ctx.layout.root(), p)),
        "concurrency": concurrency,
    }))?);
    let mut summary = DownloadSummary {
        selected: targets.len(),
        ..Default::default()
    };
    let mut todo = Vec::new();
    for t in targets {
        match stage.plan(&t.key(), &[])? {
            Plan::Cached => summary.cached.push(t.name),
            Plan::Run(_) => todo.push(t),
        }
    }
    if !summary.cached.is_empty() {
        tracing::info!(
            "download: {} of {} files already verified (cached)",
            summary.cached.len(),
            summary.selected
        );
    }

    let any_to_fetch = !todo.is_empty();
    let bars = Arc::new(Bars::new("total"));
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for t in todo {
        let (fetcher, stage, bars, permits) = (
            fetcher.clone(),
            stage.clone(),
            bars.clone(),
            permits.clone(),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcome = fetch_one(&fetcher, &stage, &bars, &t).await;
            (t, outcome)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (t, outcome) = joined.context("a download task panicked")?;
        match outcome {
            Ok(Outcome::Downloaded(size)) => {
                summary.bytes_downloaded += size;
                summary.downloaded.push(t.name);
            }
            Ok(Outcome::AlreadyPresent) => summary.cached.push(t.name),
            Err(e) => {
                tracing::warn!("{}: {e:#}", t.name);
                summary.failed.push(FailedFile {
                    file: t.key(),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    if any_to_fetch {
        bars.finish();
    }
    summary.downloaded.sort();
    summary.cached.sort();
    summary.failed.sort_by(|a, b| a.file.cmp(&b.file));
    summary.seconds = started.elapsed().as_secs_f64();
    summary.net = fetcher.counters.snapshot();
    stage.finish(serde_json::to_value(&summary)?)?;
    Ok(summary)
}

enum Outcome {
    Downloaded(u64),
    AlreadyPresent,
}

/// Fetch one file's MD5, then the file (unless a file with that MD5 is already in place), and record it.
async fn fetch_one(fetcher: &Fetcher, stage: &Stage, bars: &Bars, t: &Target) -> Result<Outcome> {
    let md5_url = format!("{}.md5", t.url);
    let sidecar = fetcher.get_text(&md5_url).await?;
    let md5 = listing::parse_md5_sidecar(&sidecar, &t.name)
        .with_context(|| format!("reading {md5_url}"))?;
    // A file at the final path that the manifest does not vouch for (manifest lost, files copied in,
    // --force): keep it when its MD5 matches, without downloading.
    if t.dest.is_file() {
        let (local, _) = fetch::hash_file(&t.dest, false).await?;
        if local == md5 {
            record(stage, t, &md5, 0)?;
            return Ok(Outcome::AlreadyPresent);
        }
        tracing::info!(
            "{}: local file has MD5 {local}, remote {md5}; downloading again",
            t.dest.display()
        );
    }
    let expect = Expect {
        md5: Some(md5.clone()),
        ..Default::default()
    };
    let fetched = fetcher
        .fetch_verified(&t.url, &t.dest, &expect, Some(bars))
        .await?;
    record(stage, t, &md5, fetched.attempts)?;
    Ok(Outcome::Downloaded(fetched.size))
}

fn record(stage: &Stage, t: &Target, md5: &str, attempts: u32) -> Result<()> {
    let size = std::fs::metadata(&t.dest)
        .with_context(|| format!("reading metadata of {}", t.dest.display()))?
        .len();
    stage.record(
        &t.key(),
        Vec::new(),
        std::slice::from_ref(&t.dest),
        serde_json::json!({ "url": t.url, "md5": md5, "size": size, "attempts": attempts }),
    )
}

/// `pipeline status` row: cached = verified files still present unchanged; stale = recorded but
/// modified since; missing = recorded but gone. The note counts partial downloads.
pub fn status(ctx: &Ctx) -> Result<StageStatus> {
    let stage = open_stage(ctx)?;
    let manifest = stage.manifest();
    let mut st = StageStatus {
        stage: STAGE.to_string(),
        ..Default::default()
    };
    let mut bytes = 0u64;
    for (key, unit) in &manifest.units {
        match stage.plan(key, &[])? {
            Plan::Cached => {
                st.cached += 1;
                bytes += unit.outputs.iter().map(|o| o.size).sum::<u64>();
            }
            Plan::Run(_) => {
                let present = unit
                    .outputs
                    .iter()
                    .all(|o| ctx.layout.root().join(&o.path).exists());
                if present {
                    st.stale += 1;
                } else {
                    st.missing += 1;
                }
            }
        }
    }
    let parts = [RemoteDir::Baseline, RemoteDir::Updatefiles]
        .iter()
        .map(|&d| count_parts(&dir_path(ctx, d)))
        .sum::<usize>();
    st.note = format!("{} verified", HumanBytes(bytes));
    if parts > 0 {
        st.note.push_str(&format!(", {parts} partial (.part)"));
    }
    Ok(st)
}

fn count_parts(dir: &Path) -> usize {
    schemas::layout::files_with_suffix(dir, ".part").map_or(0, |files| files.len())
}
