//! The verified download of one URL to one final path, shared by PubMed files and model assets.
//!
//! Bytes go to `NAME.part` beside the final file. An interrupted download continues from the part's
//! length with an HTTP `Range` request; a server that answers 200 instead of 206 is followed from byte
//! zero. Once the body is complete the part is fsynced, its size, MD5 (and SHA-256 when one is
//! expected) are checked, and only then is it renamed to the final name (and the directory fsynced).
//! A part that fails verification is deleted. Transient failures (connect errors, timeouts including
//! a stall of the body, 408/425/429/5xx, bodies shorter than announced, checksum mismatches) are
//! retried with exponential backoff and jitter, a bounded number of times; other HTTP errors are final.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use indicatif::MultiProgress;
use md5::{Digest, Md5};
use rand::Rng;
use reqwest::{StatusCode, header};
use schemas::progress::{Progress, Unit};
use serde::Serialize;
use sha2::Sha256;

/// Network behaviour: timeouts and the retry policy.
#[derive(Clone, Debug)]
pub struct NetOptions {
    pub connect_timeout: Duration,
    /// Longest wait for response headers or for the next piece of a body (a stall).
    pub read_timeout: Duration,
    /// Failed attempts per file before giving up (attempts that moved the download forward by at
    /// least [`PROGRESS_STEP`] do not count).
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// An attempt that grew the part by this much past its best length is progress, not a failure.
pub const PROGRESS_STEP: u64 = 1 << 20;

/// What happened on the wire, summed over a run (for summaries and tests).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub range_requests: AtomicU64,
    pub range_ignored: AtomicU64,
    pub checksum_mismatches: AtomicU64,
    pub stalls: AtomicU64,
    pub bytes_received: AtomicU64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    pub requests: u64,
    pub retries: u64,
    pub range_requests: u64,
    pub range_ignored: u64,
    pub checksum_mismatches: u64,
    pub stalls: u64,
    pub bytes_received: u64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            requests: get(&self.requests),
            retries: get(&self.retries),
            range_requests: get(&self.range_requests),
            range_ignored: get(&self.range_ignored),
            checksum_mismatches: get(&self.checksum_mismatches),
            stalls: get(&self.stalls),
            bytes_received: get(&self.bytes_received),
        }
    }
}

/// What a download must match before it may take its final name.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// Lowercase hex MD5.
    pub md5: Option<String>,
    /// Lowercase hex SHA-256.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// A content check run on the complete part (e.g. "parses as JSON"); failing it is final.
    pub validate: Option<fn(&Path) -> Result<()>>,
}

/// A verified file now at its final path.
#[derive(Clone, Debug, Serialize)]
pub struct Fetched {
    pub size: u64,
    pub md5: String,
    pub sha256: Option<String>,
    /// Body bytes received over the network for this file, all attempts together.
    pub received: u64,
    pub attempts: u32,
}

/// The bars of a run: one per active file and a total in bytes.
pub struct Bars {
    group: MultiProgress,
    total: Progress,
    total_len: AtomicU64,
}

impl Bars {
    pub fn new(label: &str) -> Self {
        let group = Progress::group();
        let total = Progress::in_group(&group, label, 0, Unit::Bytes);
        Self {
            group,
            total,
            total_len: AtomicU64::new(0),
        }
    }
    fn file_bar(&self, name: &str) -> Progress {
        Progress::in_group(&self.group, name, 0, Unit::Bytes)
    }
    /// A file's size became known: the total grows by it.
    fn add_len(&self, n: u64) {
        let len = self.total_len.fetch_add(n, Ordering::Relaxed) + n;
        self.total.set_length(len);
    }
    fn inc(&self, n: u64) {
        self.total.inc(n);
    }
    /// Bytes counted before were thrown away (a part restarted from zero).
    fn discard(&self, n: u64) {
        self.total
            .set_position(self.total.position().saturating_sub(n));
    }
    pub fn finish(&self) {
        self.total.finish();
    }
}

/// How one attempt failed.
enum Failure {
    Retry {
        error: anyhow::Error,
        retry_after: Option<Duration>,
    },
    Permanent(anyhow::Error),
}

impl Failure {
    fn retry(error: anyhow::Error) -> Self {
        Failure::Retry {
            error,
            retry_after: None,
        }
    }
}

fn classify(e: reqwest::Error, url: &str) -> Failure {
    let permanent = e.is_builder() || e.is_redirect();
    let error = anyhow::Error::new(e).context(format!("requesting {url}"));
    if permanent {
        Failure::Permanent(error)
    } else {
        Failure::retry(error)
    }
}

fn retryable_status(s: StatusCode) -> bool {
    s.is_server_error()
        || s == StatusCode::TOO_MANY_REQUESTS
        || s == StatusCode::REQUEST_TIMEOUT
        || s.as_u16() == 425
}

fn status_failure(resp: &reqwest::Response, url: &str) -> Failure {
    let status = resp.status();
    let error = anyhow!("HTTP {status} from {url}");
    if retryable_status(status) {
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Failure::Retry { error, retry_after }
    } else {
        Failure::Permanent(error)
    }
}

/// Response header metadata the Hugging Face hub gives for a file.
#[derive(Clone, Debug, Default)]
pub struct HeadInfo {
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// The server answered 404: the repository has no such file.
    pub missing: bool,
}

fn header_str<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A SHA-256 carried in an ETag (`"hex"`, `W/"hex"`); git blob ids (40 hex) and others give `None`.
pub fn sha256_from_etag(etag: &str) -> Option<String> {
    let v = etag.trim().trim_start_matches("W/").trim_matches('"');
    (v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then(|| v.to_ascii_lowercase())
}

/// `bytes START-END/TOTAL` → (START, TOTAL when known).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The path a download is written to before verification: `NAME.part` beside `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!("{name}.part"))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

struct Hashes {
    md5: Md5,
    sha256: Option<Sha256>,
}

impl Hashes {
    fn new(with_sha256: bool) -> Self {
        Self {
            md5: Md5::new(),
            sha256: with_sha256.then(Sha256::new),
        }
    }
    fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        if let Some(s) = &mut self.sha256 {
            s.update(bytes);
        }
    }
    fn finish(self) -> (String, Option<String>) {
        (
            hex::encode(self.md5.finalize()),
            self.sha256.map(|s| hex::encode(s.finalize())),
        )
    }
}

/// Hash the first `len` bytes of `path` (the part being resumed).
fn hash_prefix(path: &Path, len: u64, with_sha256: bool) -> Result<Hashes> {
    let mut hashes = Hashes::new(with_sha256);
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hashes.update(&buf[..n]);
    }
    Ok(hashes)
}

/// MD5 (and SHA-256) of a whole file, off the async threads.
pub async fn hash_file(path: &Path, with_sha256: bool) -> Result<(String, Option<String>)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        hash_prefix(&path, u64::MAX, with_sha256).map(Hashes::finish)
    })
    .await
    .context("hashing task failed")?
}

/// Check size, checksums and content of a complete part.
fn check(
    part: &Path,
    size: u64,
    md5: &str,
    sha256: Option<&str>,
    expect: &Expect,
) -> Result<(), Failure> {
    if let Some(want) = expect.size
        && size != want
    {
        return Err(Failure::retry(anyhow!(
            "size mismatch for {}: expected {want} bytes, got {size}",
            part.display()
        )));
    }
    if let Some(want) = &expect.md5
        && md5 != want
    {
        return Err(Failure::retry(anyhow!(
            "MD5 mismatch for {}: expected {want}, got {md5}",
            part.display()
        )));
    }
    if let (Some(want), Some(got)) = (&expect.sha256, sha256)
        && got != want
    {
        return Err(Failure::retry(anyhow!(
            "SHA-256 mismatch for {}: expected {want}, got {got}",
            part.display()
        )));
    }
    if let Some(validate) = expect.validate {
        validate(part).map_err(Failure::Permanent)?;
    }
    Ok(())
}

pub struct Fetcher {
    client: reqwest::Client,
    no_redirect: reqwest::Client,
    opts: NetOptions,
    pub counters: Counters,
}

impl Fetcher {
    pub fn new(opts: NetOptions) -> Result<Self> {
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .user_agent(concat!("biomamba-pipeline/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(opts.connect_timeout)
                .redirect(redirects)
                .build()
                .context("building HTTP client")
        };
        Ok(Self {
            client: build(reqwest::redirect::Policy::limited(10))?,
            no_redirect: build(reqwest::redirect::Policy::none())?,
            opts,
            counters: Counters::default(),
        })
    }

    pub fn options(&self) -> &NetOptions {
        &self.opts
    }

    /// Wait before retry `failures` (1-based): exponential from `backoff_initial`, capped, with
    /// jitter in [50 %, 100 %] so parallel downloads do not retry in lockstep.
    fn backoff(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .opts
            .backoff_initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.opts.backoff_max);
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        retry_after
            .map(|r| r.min(self.opts.backoff_max).max(jittered))
            .unwrap_or(jittered)
    }

    /// Run `attempt` until it succeeds, fails permanently, or `max_attempts` attempts failed
    /// without progress (`progress()` is how far the work has got, e.g. the part's length).
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        progress: impl Fn() -> u64,
        mut attempt: F,
    ) -> Result<(T, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut failures = 0u32;
        let mut attempts = 0u32;
        let mut best = progress();
        loop {
            attempts += 1;
            match attempt().await {
                Ok(v) => return Ok((v, attempts)),
                Err(Failure::Permanent(e)) => {
                    return Err(e.context(format!("{what}: failed (not retried)")));
                }
                Err(Failure::Retry { error, retry_after }) => {
                    let now = progress();
                    if now >= best.saturating_add(PROGRESS_STEP) {
                        best = now;
                        failures = 1; // progressing: retry soon, and this does not use up attempts
                    } else {
                        failures += 1;
                    }
                    if failures >= self.opts.max_attempts {
                        return Err(
                            error.context(format!("{what}: giving up after {attempts} attempts"))
                        );
                    }
                    Counters::add(&self.counters.retries, 1);
                    let wait = self.backoff(failures, retry_after);
                    tracing::debug!(
                        "{what}: attempt {attempts} failed ({error:#}); retrying in {wait:?}"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, Failure> {
        Counters::add(&self.counters.requests, 1);
        let wait = self.opts.connect_timeout + self.opts.read_timeout;
        match tokio::time::timeout(wait, req.send()).await {
            Err(_) => Err(Failure::retry(anyhow!(
                "no response from {url} within {wait:?}"
            ))),
            Ok(Err(e)) => Err(classify(e, url)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// The next piece of a body, or a stall error when none comes within the read timeout.
    async fn next_chunk(
        &self,
        resp: &mut reqwest::Response,
        url: &str,
    ) -> Result<Option<bytes::Bytes>, Failure> {
        match tokio::time::timeout(self.opts.read_timeout, resp.chunk()).await {
            Err(_) => {
                Counters::add(&self.counters.stalls, 1);
                Err(Failure::retry(anyhow!(
                    "download of {url} stalled: no data for {:?}",
                    self.opts.read_timeout
                )))
            }
            Ok(Err(e)) => Err(Failure::retry(
                anyhow::Error::new(e).context(format!("reading body of {url}")),
            )),
            Ok(Ok(chunk)) => Ok(chunk),
        }
    }

    /// GET a small text resource (a directory index, an `.md5` sidecar), with retries.
    pub async fn get_text(&self, url: &str) -> Result<String> {
        let (bytes, _) = self
            .with_retries(
                url,
                || 0,
                || async {
                    let mut resp = self.send(self.client.get(url), url).await?;
                    if !resp.status().is_success() {
                        return Err(status_failure(&resp, url));
                    }
                    let expected = resp.content_length();
                    let mut body = Vec::new();
                    while let Some(chunk) = self.next_chunk(&mut resp, url).await? {
                        body.extend_from_slice(&chunk);
                    }
                    Counters::add(&self.counters.bytes_received, body.len() as u64);
                    if let Some(n) = expected
                        && n != body.len() as u64
                    {
                        return Err(Failure::retry(anyhow!(
                            "body of {url} ended after {} of {n} bytes",
                            body.len()
                        )));
                    }
                    Ok(body)
                },
            )
            .await?;
        String::from_utf8(bytes).with_context(|| format!("{url} is not UTF-8 text"))
    }

    /// HEAD without following redirects: the hub's `X-Linked-Size` / `X-Linked-Etag` (LFS files,
    /// answered with a redirect) or `Content-Length` / `ETag` (small files, answered directly).
    pub async fn head_info(&self, url: &str) -> Result<HeadInfo> {
        let (info, _) = self
            .with_retries(
                url,
                || 0,
                || async {
                    let resp = self.send(self.no_redirect.head(url), url).await?;
                    let status = resp.status();
                    // A mirror without HEAD: no expectations beyond the GET's own Content-Length.
                    if status == StatusCode::METHOD_NOT_ALLOWED
                        || status == StatusCode::NOT_IMPLEMENTED
                    {
                        return Ok(HeadInfo::default());
                    }
                    if status == StatusCode::NOT_FOUND {
                        return Ok(HeadInfo {
                            missing: true,
                            ..HeadInfo::default()
                        });
                    }
                    if !(status.is_success() || status.is_redirection()) {
                        return Err(status_failure(&resp, url));
                    }
                    let size = header_str(&resp, "x-linked-size")
                        .or_else(|| {
                            status
                                .is_success()
                                .then(|| header_str(&resp, "content-length"))
                                .flatten()
                        })
                        .and_then(|v| v.trim().parse().ok());
                    let sha256 = header_str(&resp, "x-linked-etag")
                        .or_else(|| {
                            status
                                .is_success()
                                .then(|| header_str(&resp, "etag"))
                                .flatten()
                        })
                        .and_then(sha256_from_etag);
                    Ok(HeadInfo {
                        size,
                        sha256,
                        missing: false,
                    })
                },
            )
            .await?;
        Ok(info)
    }

    /// Download `url` to `dest` through `dest.part`, verified against `expect`. On success `dest`
    /// holds exactly the verified bytes; on failure nothing is at `dest` that was not there before
    /// (a partial `.part` may remain for the next run to resume).
    pub async fn fetch_verified(
        &self,
        url: &str,
        dest: &Path,
        expect: &Expect,
        bars: Option<&Bars>,
    ) -> Result<Fetched> {
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
        let part = part_path(dest);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| url.to_string());
        let bar = match bars {
            Some(b) => b.file_bar(&name),
            None => Progress::new(&name, 0, Unit::Bytes),
        };
        let state = AttemptState {
            received: AtomicU64::new(0),
            counted_len: AtomicU64::new(0),
        };
        let result = self
            .with_retries(
                &format!("downloading {url}"),
                || file_len(&part),
                || self.attempt(url, &part, expect, &bar, bars, &state),
            )
            .await;
        bar.finish();
        let ((size, md5, sha256), attempts) = result?;
        std::fs::rename(&part, dest)
            .with_context(|| format!("renaming {} to {}", part.display(), dest.display()))?;
        schemas::atomic::sync_dir(dest)?;
        Ok(Fetched {
            size,
            md5,
            sha256,
            received: state.received.load(Ordering::Relaxed),
            attempts,
        })
    }

    /// One request for the rest of the part; on success the part is complete, fsynced and verified.
    async fn attempt(
        &self,
        url: &str,
        part: &Path,
        expect: &Expect,
        bar: &Progress,
        bars: Option<&Bars>,
        state: &AttemptState,
    ) -> Result<(u64, String, Option<String>), Failure> {
        let with_sha256 = expect.sha256.is_some();
        let mut offset = file_len(part);
        let mut req = self.client.get(url);
        if offset > 0 {
            req = req.header(header::RANGE, format!("bytes={offset}-"));
            Counters::add(&self.counters.range_requests, 1);
        }
        let mut resp = self.send(req, url).await?;
        let status = resp.status();
        let io = |e: std::io::Error, what: &str| {
            Failure::Permanent(anyhow::Error::new(e).context(format!("{what} {}", part.display())))
        };

        // A part already as long as the file: check it as it is.
        if status == StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
            drop(resp);
            let (md5, sha256) = hash_file(part, with_sha256)
                .await
                .map_err(Failure::Permanent)?;
            return match check(part, offset, &md5, sha256.as_deref(), expect) {
                Ok(()) => Ok((offset, md5, sha256)),
                Err(f) => {
                    let _ = std::fs::remove_file(part);
                    Err(f)
                }
            };
        }
        let total = match status {
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                let range = header_str(&resp, "content-range").and_then(parse_content_range);
                match range {
                    Some((start, total)) if start == offset => total,
                    other => {
                        let _ = std::fs::remove_file(part);
                        return Err(Failure::retry(anyhow!(
                            "{url} answered Range bytes={offset}- with Content-Range {other:?}; restarting"
                        )));
                    }
                }
            }
            StatusCode::OK => {
                if offset > 0 {
                    // The server ignored Range: the body starts at byte zero.
                    Counters::add(&self.counters.range_ignored, 1);
                    tracing::debug!("{url} ignored Range; restarting from zero");
                    if let Some(b) = bars {
                        b.discard(offset);
                    }
                    offset = 0;
                }
                resp.content_length()
            }
            _ if status.is_success() => {
                let _ = std::fs::remove_file(part);
                return Err(Failure::retry(anyhow!(
                    "unexpected HTTP {status} from {url}"
                )));
            }
            _ => return Err(status_failure(&resp, url)),
        };
        if let Some(total) = total {
            let before = state.counted_len.swap(total, Ordering::Relaxed);
            if let Some(b) = bars
                && total > before
            {
                b.add_len(total - before);
            }
            bar.set_length(total);
        }

        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(offset == 0)
            .append(offset > 0)
            .open(part)
            .map_err(|e| io(e, "opening"))?;
        let mut hashes = if offset > 0 {
            let p = part.to_path_buf();
            tokio::task::spawn_blocking(move || hash_prefix(&p, offset, with_sha256))
                .await
                .map_err(|e| Failure::Permanent(anyhow!("hashing task failed: {e}")))?
                .map_err(Failure::Permanent)?
        } else {
            Hashes::new(with_sha256)
        };
        bar.set_position(offset);
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut len = offset;
        let body = loop {
            match self.next_chunk(&mut resp, url).await {
                Ok(Some(chunk)) => {
                    out.write_all(&chunk).map_err(|e| io(e, "writing"))?;
                    hashes.update(&chunk);
                    let n = chunk.len() as u64;
                    len += n;
                    state.received.fetch_add(n, Ordering::Relaxed);
                    Counters::add(&self.counters.bytes_received, n);
                    bar.inc(n);
                    if let Some(b) = bars {
                        b.inc(n);
                    }
                }
                Ok(None) => break Ok(()),
                Err(f) => break Err(f),
            }
        };
        // Keep what arrived (flushed) so the next attempt resumes after it.
        let file = out
            .into_inner()
            .map_err(|e| io(e.into_error(), "flushing"))?;
        body?;
        if let Some(total) = total
            && len != total
        {
            return Err(Failure::retry(anyhow!(
                "body of {url} ended after {len} of {total} bytes"
            )));
        }
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| Failure::Permanent(anyhow!("fsync task failed: {e}")))?
            .map_err(|e| io(e, "fsync"))?;
        let (md5, sha256) = hashes.finish();
        if let Err(f) = check(part, len, &md5, sha256.as_deref(), expect) {
            if matches!(f, Failure::Retry { .. }) {
                Counters::add(&self.counters.checksum_mismatches, 1);
            }
            let _ = std::fs::remove_file(part);
            if let Some(b) = bars {
                b.discard(len);
            }
            return Err(f);
        }
        Ok((len, md5, sha256))
    }
}

struct AttemptState {
    received: AtomicU64,
    /// The file size already added to the total bar.
    counted_len: AtomicU64,
}
