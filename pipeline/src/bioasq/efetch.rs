//! PubMed records by PMID from NCBI E-utilities `efetch`, with batching, rate limiting and a per-PMID
//! cache of the raw XML under `raw/pubmed/efetch/<pmid>.xml`.
//!
//! Requests: `{base}/entrez/eutils/efetch.fcgi?db=pubmed&id=1,2,…&retmode=xml`, at most
//! [`MAX_IDS_PER_REQUEST`] ids each, request starts spaced so that no 1-second window holds more than
//! 3 (10 with an API key), as NCBI asks. Each returned `PubmedArticle`/`PubmedBookArticle` is cached as
//! its exact bytes wrapped in a `PubmedArticleSet`, written atomically.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use quick_xml::events::Event;

use super::convert::Document;

pub const DEFAULT_BASE_URL: &str = "https://eutils.ncbi.nlm.nih.gov";
/// NCBI's advice for one GET request.
pub const MAX_IDS_PER_REQUEST: usize = 200;

/// Where and how fast to fetch.
#[derive(Clone, Debug)]
pub struct EfetchOptions {
    pub base_url: String,
    pub api_key: Option<String>,
    pub max_ids: usize,
}

impl EfetchOptions {
    pub fn new(base_url: Option<&str>, api_key: Option<&str>) -> Self {
        Self {
            base_url: base_url
                .unwrap_or(DEFAULT_BASE_URL)
                .trim_end_matches('/')
                .to_string(),
            api_key: api_key.filter(|k| !k.is_empty()).map(str::to_string),
            max_ids: MAX_IDS_PER_REQUEST,
        }
    }

    /// Requests per second NCBI allows: 3, or 10 with an API key.
    pub fn requests_per_second(&self) -> u32 {
        if self.api_key.is_some() { 10 } else { 3 }
    }

    /// Gap between request starts: 5% above 1/rate, so n+1 starts never fit in one second.
    pub fn min_interval(&self) -> Duration {
        Duration::from_secs_f64(1.05 / self.requests_per_second() as f64)
    }
}

/// What one fetch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    pub requests: usize,
    /// PMIDs whose record came back (and is now cached).
    pub fetched: usize,
    /// Requested PMIDs that no response held.
    pub not_found: Vec<u64>,
}

/// The cache file of one PMID.
pub fn cache_path(cache_dir: &Path, pmid: u64) -> PathBuf {
    cache_dir.join(format!("{pmid}.xml"))
}

/// Fetch `pmids` (sorted, unique) into `cache_dir`, one request per [`EfetchOptions::max_ids`] ids.
pub fn fetch_into_cache(
    opts: &EfetchOptions,
    pmids: &[u64],
    cache_dir: &Path,
) -> Result<FetchReport> {
    if pmids.is_empty() {
        return Ok(FetchReport::default());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    runtime.block_on(fetch_async(opts, pmids, cache_dir))
}

async fn fetch_async(opts: &EfetchOptions, pmids: &[u64], cache_dir: &Path) -> Result<FetchReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("biomamba-pipeline/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    let progress = schemas::progress::Progress::new(
        "efetch",
        pmids.len() as u64,
        schemas::progress::Unit::Count("records"),
    );
    let mut report = FetchReport::default();
    let mut last_start: Option<Instant> = None;
    for batch in pmids.chunks(opts.max_ids.clamp(1, MAX_IDS_PER_REQUEST)) {
        let ids = batch
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut url = format!(
            "{}/entrez/eutils/efetch.fcgi?db=pubmed&id={ids}&retmode=xml&tool=biomamba",
            opts.base_url
        );
        if let Some(key) = &opts.api_key {
            url.push_str("&api_key=");
            url.push_str(key);
        }
        let body = get_with_retries(&client, &url, opts, &mut last_start, &mut report).await?;
        let shown = format!("efetch response for ids {}…", batch[0]);
        let records = parse_records(&body, &shown)?;
        let wanted: BTreeSet<u64> = batch.iter().copied().collect();
        let mut got = BTreeSet::new();
        for (doc, range) in &records {
            write_cache_file(cache_dir, doc.pmid, &body[range.clone()])?;
            got.insert(doc.pmid);
        }
        report.fetched += wanted.intersection(&got).count();
        report.not_found.extend(wanted.difference(&got).copied());
        progress.inc(batch.len() as u64);
    }
    progress.finish();
    Ok(report)
}

/// GET `url`, keeping the rate limit, retrying (1 s, 2 s, 4 s later) on transport errors, 429 and 5xx.
async fn get_with_retries(
    client: &reqwest::Client,
    url: &str,
    opts: &EfetchOptions,
    last_start: &mut Option<Instant>,
    report: &mut FetchReport,
) -> Result<Vec<u8>> {
    // The key never appears in messages.
    let shown = match &opts.api_key {
        Some(key) => url.replace(key, "***"),
        None => url.to_string(),
    };
    let mut backoff = Duration::from_secs(1);
    for attempt in 1..=4 {
        if let Some(last) = *last_start {
            let next = last + opts.min_interval();
            let now = Instant::now();
            if next > now {
                tokio::time::sleep(next - now).await;
            }
        }
        *last_start = Some(Instant::now());
        report.requests += 1;
        let retry_reason = match client.get(url).send().await {
            Ok(resp) if resp.status().is_success() => {
                let bytes = resp
                    .bytes()
                    .await
                    .with_context(|| format!("reading the body of {shown}"))?;
                return Ok(bytes.to_vec());
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let snippet: String = body.chars().take(300).collect();
                if status.as_u16() != 429 && !status.is_server_error() {
                    bail!("efetch {shown}: HTTP {status}: {snippet}");
                }
                format!("HTTP {status}: {snippet}")
            }
            Err(e) => format!("{e}"),
        };
        if attempt == 4 {
            bail!("efetch {shown}: giving up after {attempt} attempts: {retry_reason}");
        }
        tracing::warn!("efetch {shown}: {retry_reason}; retrying in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    unreachable!("the loop returns or bails on its last attempt")
}

/// One record's exact bytes as a PubMed XML document of its own (the cache file content).
pub fn wrap_record(record: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(record.len() + 100);
    bytes.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PubmedArticleSet>\n");
    bytes.extend_from_slice(record);
    bytes.extend_from_slice(b"\n</PubmedArticleSet>\n");
    bytes
}

fn write_cache_file(cache_dir: &Path, pmid: u64, record: &[u8]) -> Result<()> {
    schemas::atomic::write_atomic(cache_path(cache_dir, pmid), &wrap_record(record))
}

/// The cached record of `pmid`, if the cache holds one.
pub fn read_cached(cache_dir: &Path, pmid: u64) -> Result<Option<Document>> {
    let path = cache_path(cache_dir, pmid);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let records = parse_records(&bytes, &path.display().to_string())?;
    match records.into_iter().find(|(d, _)| d.pmid == pmid) {
        Some((doc, _)) => Ok(Some(doc)),
        None => bail!(
            "{}: the efetch cache file holds no record of PMID {pmid}",
            path.display()
        ),
    }
}

/// Every `PubmedArticle`/`PubmedBookArticle` of a PubMed XML document: its [`Document`] and the byte
/// range of the element (what the per-PMID cache file keeps). `source` names the document in errors.
///
/// The text comes from our own PubMed parser ([`crate::parse::record::parse_reader`]), so efetch contexts follow
/// exactly the abstracts-table text contract that `parquet/current` does.
pub fn parse_records(xml: &[u8], source: &str) -> Result<Vec<(Document, Range<usize>)>> {
    let ranges = record_ranges(xml, source)?;
    let mut docs = Vec::with_capacity(ranges.len());
    let opts = crate::parse::record::ParseOptions::default();
    for item in crate::parse::record::parse_reader(xml, source, &opts) {
        match item.map_err(|e| anyhow::anyhow!("{e}"))? {
            crate::parse::record::Item::Citation(c) => docs.push(Document {
                pmid: c.pmid,
                title: c.title,
                abstract_text: c.abstract_text,
            }),
            crate::parse::record::Item::Deletion(_) => {}
        }
    }
    if docs.len() != ranges.len() {
        bail!(
            "{source}: {} records parsed but {} record elements found",
            docs.len(),
            ranges.len()
        );
    }
    Ok(docs.into_iter().zip(ranges).collect())
}

/// Byte ranges of the top-level `PubmedArticle`/`PubmedBookArticle` elements, in document order.
fn record_ranges(xml: &[u8], source: &str) -> Result<Vec<Range<usize>>> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut depth = 0usize;
    let mut open: Option<(usize, usize)> = None; // (depth, start byte) of the record being read
    let mut out = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            anyhow::anyhow!(
                "{source}: malformed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(e) => {
                let name = e.name();
                if open.is_none()
                    && matches!(name.as_ref(), b"PubmedArticle" | b"PubmedBookArticle")
                {
                    open = Some((depth, before));
                }
                depth += 1;
            }
            Event::Empty(e)
                if open.is_none()
                    && matches!(e.name().as_ref(), b"PubmedArticle" | b"PubmedBookArticle") =>
            {
                out.push(before..reader.buffer_position() as usize);
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if let Some((_, start)) = open.take_if(|(d, _)| *d == depth) {
                    out.push(start..reader.buffer_position() as usize);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if open.is_some() {
        bail!("{source}: the XML ends inside a record");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<!DOCTYPE PubmedArticleSet>
<PubmedArticleSet>
<PubmedArticle><MedlineCitation Status="MEDLINE"><PMID Version="1">101</PMID>
<Article><ArticleTitle>A <i>BRXD5</i> &amp; &#x3b1;&#160;study.</ArticleTitle>
<Abstract><AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">First
   part.</AbstractText><AbstractText Label="">No label.</AbstractText><AbstractText>Plain <sup>2</sup>.</AbstractText></Abstract>
</Article><CommentsCorrectionsList><CommentsCorrections><PMID>5</PMID></CommentsCorrections></CommentsCorrectionsList></MedlineCitation></PubmedArticle>
<PubmedBookArticle><BookDocument><PMID Version="1">102</PMID><Book><BookTitle>Book &lt;T&gt;</BookTitle></Book></BookDocument></PubmedBookArticle>
<PubmedArticle><MedlineCitation><PMID>103</PMID><Article><ArticleTitle/></Article></MedlineCitation></PubmedArticle>
</PubmedArticleSet>"#;

    #[test]
    fn extracts_records_by_the_text_contract() {
        let recs = parse_records(XML.as_bytes(), "t").unwrap();
        let docs: Vec<&Document> = recs.iter().map(|(d, _)| d).collect();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].pmid, 101);
        assert_eq!(docs[0].title.as_deref(), Some("A BRXD5 & α study."));
        assert_eq!(
            docs[0].abstract_text.as_deref(),
            Some("BACKGROUND: First part.\nNo label.\nPlain 2.")
        );
        assert_eq!(docs[1].pmid, 102);
        assert_eq!(docs[1].title.as_deref(), Some("Book <T>"));
        assert_eq!(docs[1].abstract_text, None);
        // An empty ArticleTitle is "" (the parse contract); contexts skip an empty title.
        assert_eq!((docs[2].pmid, docs[2].title.as_deref()), (103, Some("")));
        // Each range is exactly one record element.
        let first = &XML.as_bytes()[recs[0].1.clone()];
        assert!(first.starts_with(b"<PubmedArticle>") && first.ends_with(b"</PubmedArticle>"));
        let again = parse_records(&wrap_record(first), "cache file").unwrap();
        assert_eq!(&again[0].0, docs[0]);
    }

    #[test]
    fn malformed_xml_names_source_and_offset() {
        let err = parse_records(b"<PubmedArticleSet><PubmedArticle></Oops>", "resp")
            .unwrap_err()
            .to_string();
        assert!(err.contains("resp") && err.contains("byte"), "{err}");
    }

    #[test]
    fn rate_limit_spacing() {
        let plain = EfetchOptions::new(None, None);
        assert!(plain.min_interval() * 3 > Duration::from_secs(1));
        let keyed = EfetchOptions::new(None, Some("k"));
        assert!(keyed.min_interval() * 10 > Duration::from_secs(1));
        assert!(keyed.min_interval() < plain.min_interval());
    }
}
