//! `pipeline fetch-model` / `fetch-tokenizer`: model assets from a Hugging Face repository, through
//! the same verified download as PubMed files.
//!
//! Files come from `{base}/{repo}/resolve/main/{file}` into `DATA/models/<owner>__<name>/` (or
//! `--out`). A model is `config.json` and its weights: `model.safetensors` (transformers' layout,
//! also the community conversions such as `AntonV/mamba2-130m-hf`), or, where the repository has
//! none (a HEAD answers 404), `pytorch_model.bin` (mamba_ssm's layout: `state-spaces/mamba2-*`).
//! There is no `.md5` there: a HEAD request (redirects not followed) gives the size and, for
//! LFS files, the SHA-256 (`X-Linked-Size`, `X-Linked-Etag`); the body must match them and its
//! Content-Length, and must parse (JSON, safetensors header) before it takes its final name. Verified
//! files are recorded in `manifests/models.json`. Offline (`--offline`, or `--from DIR`), a local
//! directory is validated and used as is (copied into the output directory when it is elsewhere).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::HumanBytes;
use serde::Serialize;

use super::NetArgs;
use super::fetch::{Bars, Expect, Fetcher};
use crate::Ctx;
use crate::stage::Stage;

pub const STAGE: &str = "models";
/// The files of a repository to fetch: each entry is one file, the first of its names that the
/// repository has.
pub type Wanted = &'static [&'static [&'static str]];
pub const MODEL_FILES: Wanted = &[
    &["config.json"],
    &["model.safetensors", "pytorch_model.bin"],
];
pub const TOKENIZER_FILES: Wanted = &[&["tokenizer.json"]];

#[derive(clap::Args, Clone, Debug, Default)]
pub struct HubArgs {
    /// Repository `owner/name` (default: config download.model_repo / download.tokenizer_repo).
    #[arg(long)]
    pub repo: Option<String>,
    /// Output directory (default: DATA/models/<owner>__<name>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Use the files in this local directory instead of the network.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// No network: use the output directory (or `--from`) as it is.
    #[arg(long)]
    pub offline: bool,
    /// Hub URL (default: config download.hub_url, https://huggingface.co).
    #[arg(long)]
    pub base_url: Option<String>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// How one file got to the output directory.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Downloaded,
    Cached,
    Local,
}

#[derive(Clone, Debug, Serialize)]
pub struct HubFile {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Option<String>,
    pub source: Source,
}

#[derive(Clone, Debug, Serialize)]
pub struct HubSummary {
    pub repo: String,
    pub dir: PathBuf,
    pub files: Vec<HubFile>,
    pub retries: u64,
}

/// `pipeline fetch-model`: the model's files from `--repo`, else `download.model_repo`.
pub fn run_model(ctx: &Ctx, args: HubArgs) -> Result<()> {
    run(ctx, args, &ctx.config.download.model_repo, MODEL_FILES)
}

/// `pipeline fetch-tokenizer`: the tokenizer from `--repo`, else `download.tokenizer_repo`.
pub fn run_tokenizer(ctx: &Ctx, args: HubArgs) -> Result<()> {
    run(
        ctx,
        args,
        &ctx.config.download.tokenizer_repo,
        TOKENIZER_FILES,
    )
}

fn run(ctx: &Ctx, args: HubArgs, default_repo: &str, files: Wanted) -> Result<()> {
    let repo = args
        .repo
        .clone()
        .unwrap_or_else(|| default_repo.to_string());
    print_summary(&fetch_repo(ctx, &args, &repo, files)?);
    Ok(())
}

fn print_summary(s: &HubSummary) {
    for f in &s.files {
        println!(
            "{:<20} {:>10}  {:<10} {}",
            f.name,
            HumanBytes(f.size).to_string(),
            format!("{:?}", f.source).to_lowercase(),
            f.path.display()
        );
    }
    println!("{}: {} files in {}", s.repo, s.files.len(), s.dir.display());
}

/// `owner/name` with characters that are safe in a URL path and a directory name.
fn check_repo(repo: &str) -> Result<()> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) => Ok(()),
        _ => bail!("repository {repo:?} is not of the form owner/name"),
    }
}

/// The default output directory of a repository: `DATA/models/<owner>__<name>/`.
pub fn repo_dir(ctx: &Ctx, repo: &str) -> PathBuf {
    ctx.layout.models().join(repo.replace('/', "__"))
}

/// The content check a file must pass, by name.
fn validator(name: &str) -> Option<fn(&Path) -> Result<()>> {
    if name.ends_with(".json") {
        Some(validate_json)
    } else if name.ends_with(".safetensors") {
        Some(validate_safetensors)
    } else if name.ends_with(".bin") {
        Some(validate_torch)
    } else {
        None
    }
}

/// A `torch.save` file: the zip archive PyTorch has written since 1.6 (a local-file header at the
/// start and the end-of-central-directory record within the last 64 KiB, so a cut-off download
/// fails), or the legacy pickle format (protocol 2 magic).
pub fn validate_torch(path: &Path) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut head = [0u8; 4];
    file.read_exact(&mut head)
        .with_context(|| format!("{}: shorter than a PyTorch file", path.display()))?;
    if head[..2] == [0x80, 0x02] {
        return Ok(());
    }
    if head != *b"PK\x03\x04" {
        bail!(
            "{}: not a PyTorch file (expected a zip archive or a pickle, found bytes {head:02x?})",
            path.display()
        );
    }
    use std::io::{Seek, SeekFrom};
    let tail_len = len.min(65_536 + 22);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail)?;
    if !tail.windows(4).any(|w| w == b"PK\x05\x06") {
        bail!(
            "{}: the zip archive has no end-of-central-directory record (a truncated download?)",
            path.display()
        );
    }
    Ok(())
}

pub fn validate_json(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_reader(BufReader::new(file))
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    if !value.is_object() {
        bail!(
            "{}: expected a JSON object at the top level",
            path.display()
        );
    }
    Ok(())
}

/// A safetensors file: 8-byte little-endian header length, a JSON header whose tensors' data offsets
/// end exactly at the end of the file.
pub fn validate_safetensors(path: &Path) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .with_context(|| format!("{}: shorter than a safetensors header", path.display()))?;
    let header_len = u64::from_le_bytes(n);
    if header_len > 100 << 20 || 8 + header_len > len {
        bail!(
            "{}: safetensors header length {header_len} does not fit a {len}-byte file",
            path.display()
        );
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .with_context(|| format!("reading the safetensors header of {}", path.display()))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .with_context(|| {
            format!(
                "{}: safetensors header (bytes 8..{}) is not a JSON object",
                path.display(),
                8 + header_len
            )
        })?;
    let mut end = 0u64;
    for (name, tensor) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let offsets = tensor
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .with_context(|| {
                format!(
                    "{}: tensor {name:?} has no [start, end] data_offsets",
                    path.display()
                )
            })?;
        if offsets.0 > offsets.1 {
            bail!(
                "{}: tensor {name:?} has data_offsets running backwards",
                path.display()
            );
        }
        end = end.max(offsets.1);
    }
    let data = len - 8 - header_len;
    if end != data {
        bail!(
            "{}: tensors end at data byte {end} but the file holds {data} data bytes",
            path.display()
        );
    }
    Ok(())
}

fn open_stage(ctx: &Ctx) -> Result<Stage> {
    Stage::open(
        ctx.layout.root(),
        STAGE,
        1,
        1,
        &serde_json::json!({ "verify": "size+sha256" }),
        ctx.force,
    )
}

/// Get `files` of `repo` into its output directory (see the module docs).
pub fn fetch_repo(ctx: &Ctx, args: &HubArgs, repo: &str, files: Wanted) -> Result<HubSummary> {
    check_repo(repo)?;
    let dir = args.out.clone().unwrap_or_else(|| repo_dir(ctx, repo));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if args.offline || args.from.is_some() {
        return use_local(args.from.as_deref().unwrap_or(&dir), &dir, repo, files);
    }
    let cfg = &ctx.config.download;
    let base = args.base_url.clone().unwrap_or_else(|| cfg.hub_url.clone());
    let base = base.trim_end_matches('/').to_string();
    let fetcher = Fetcher::new(args.net.options(cfg)?)?;
    let stage = open_stage(ctx)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = Instant::now();
    let bars = Bars::new("total");
    let mut out = Vec::new();
    'wanted: for &names in files {
        // Fetched before under one of its names: cached.
        for &name in names {
            let dest = dir.join(name);
            if stage.plan(&format!("{repo}/{name}"), &[])?.is_cached() {
                let unit = stage
                    .recorded(&format!("{repo}/{name}"))
                    .unwrap_or_default();
                out.push(HubFile {
                    name: name.to_string(),
                    size: std::fs::metadata(&dest)?.len(),
                    sha256: unit.stats["sha256"].as_str().map(str::to_string),
                    path: dest,
                    source: Source::Cached,
                });
                continue 'wanted;
            }
        }
        for (i, &name) in names.iter().enumerate() {
            let dest = dir.join(name);
            let url = format!("{base}/{repo}/resolve/main/{name}");
            let head = runtime
                .block_on(fetcher.head_info(&url))
                .with_context(|| format!("{name} of {repo}"))?;
            if head.missing {
                if i + 1 < names.len() {
                    continue;
                }
                bail!(
                    "{repo} has none of {} (HTTP 404 for each at {base})",
                    names.join(", ")
                );
            }
            let file = runtime.block_on(async {
                let expect = Expect {
                    md5: None,
                    sha256: head.sha256.clone(),
                    size: head.size,
                    validate: validator(name),
                };
                // Already here with the published checksum (e.g. copied offline earlier): keep it.
                if let (Some(want), true) = (&head.sha256, dest.is_file()) {
                    let (_, have) = super::fetch::hash_file(&dest, true).await?;
                    if have.as_deref() == Some(want.as_str()) {
                        return Ok::<_, anyhow::Error>((Source::Cached, head.sha256));
                    }
                }
                let fetched = fetcher
                    .fetch_verified(&url, &dest, &expect, Some(&bars))
                    .await
                    .with_context(|| format!("{name} of {repo}"))?;
                Ok((Source::Downloaded, fetched.sha256.or(head.sha256)))
            })?;
            let (source, sha256) = file;
            let size = std::fs::metadata(&dest)?.len();
            stage.record(
                &format!("{repo}/{name}"),
                Vec::new(),
                std::slice::from_ref(&dest),
                serde_json::json!({ "url": url, "size": size, "sha256": sha256 }),
            )?;
            out.push(HubFile {
                name: name.to_string(),
                path: dest,
                size,
                sha256,
                source,
            });
            continue 'wanted;
        }
    }
    bars.finish();
    let retries = fetcher.counters.snapshot().retries;
    stage.finish(serde_json::json!({
        "repo": repo,
        "seconds": started.elapsed().as_secs_f64(),
        "retries": retries,
    }))?;
    Ok(HubSummary {
        repo: repo.to_string(),
        dir,
        files: out,
        retries,
    })
}

/// Validate `files` in `src` (for each, the first of its names there) and put them in `dir` (a
/// copy, atomically, unless `src` is `dir`).
fn use_local(src: &Path, dir: &Path, repo: &str, files: Wanted) -> Result<HubSummary> {
    let mut out = Vec::new();
    let same = src.canonicalize().ok() == dir.canonicalize().ok();
    for &names in files {
        let Some(&name) = names.iter().find(|n| src.join(n).is_file()) else {
            bail!(
                "offline: {} is missing (expected {} of {repo} in {})",
                src.join(names[0]).display(),
                names.join(" or "),
                src.display()
            );
        };
        let from = src.join(name);
        if let Some(validate) = validator(name) {
            validate(&from)?;
        }
        let dest = dir.join(name);
        if !same {
            let mut reader =
                File::open(&from).with_context(|| format!("opening {}", from.display()))?;
            let mut file = schemas::AtomicFile::create(&dest)?;
            std::io::copy(&mut reader, &mut file)
                .with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
            file.commit_unless_identical()?;
        }
        out.push(HubFile {
            name: name.to_string(),
            size: std::fs::metadata(&dest)?.len(),
            path: dest,
            sha256: None,
            source: Source::Local,
        });
    }
    Ok(HubSummary {
        repo: repo.to_string(),
        dir: dir.to_path_buf(),
        files: out,
        retries: 0,
    })
}
