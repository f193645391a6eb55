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

fn write_cache_file(cache_dir: &Path, pmid: u64, record: &[u8]) -> Result<()> {
    let mut bytes = Vec::with_capacity(record.len() + 100);
    bytes.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PubmedArticleSet>\n");
    bytes.extend_from_slice(record);
    bytes.extend_from_slice(b"\n</PubmedArticleSet>\n");
    schemas::atomic::write_atomic(cache_path(cache_dir, pmid), &bytes)
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
/// range of the element. `source` names the document in errors.
///
/// This is the one place that turns PubMed XML into text; it follows the abstracts-table text contract
/// (see `schemas/README.md`): descendant text in document order, markup dropped, entities decoded,
/// Unicode whitespace runs collapsed to one space, trimmed; `abstract` = the `AbstractText` sections,
/// `Label: text` when labelled, joined with `\n`.
pub fn parse_records(xml: &[u8], source: &str) -> Result<Vec<(Document, Range<usize>)>> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    // The record being read: its depth, start byte and collected fields.
    let mut record: Option<(usize, usize, RecordFields)> = None;
    // The field whose text is being collected and the depth of its element.
    let mut capture: Option<(Field, usize, String)> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| {
            anyhow::anyhow!(
                "{source}: malformed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if record.is_none() && (name == "PubmedArticle" || name == "PubmedBookArticle") {
                    record = Some((stack.len(), before, RecordFields::default()));
                }
                if let Some((depth, _, fields)) = record.as_mut() {
                    let rel: Vec<&str> = stack[*depth..]
                        .iter()
                        .map(String::as_str)
                        .chain([name.as_str()])
                        .collect();
                    if capture.is_none() {
                        if let Some(field) = classify(&rel) {
                            let label = if field == Field::Section {
                                e.try_get_attribute("Label")
                                    .ok()
                                    .flatten()
                                    .and_then(|a| a.unescape_value().ok())
                                    .map(|v| collapse(&v))
                                    .filter(|v| !v.is_empty())
                            } else {
                                None
                            };
                            if field == Field::Section {
                                fields.sections.push((label, String::new()));
                            }
                            capture = Some((field, stack.len(), String::new()));
                        } else if is_abstract(&rel) {
                            fields.has_abstract = true;
                        }
                    }
                }
                if empty {
                    // An empty element closes at once.
                    if let Some((field, d, text)) = capture.take_if(|(_, d, _)| *d == stack.len()) {
                        finish_field(record.as_mut(), field, &text, d)?;
                    }
                    if let Some((_, start, fields)) = record.take_if(|(d, _, _)| *d == stack.len())
                    {
                        out.push(finish_record(
                            fields,
                            start..reader.buffer_position() as usize,
                            source,
                        )?);
                    }
                } else {
                    stack.push(name);
                }
            }
            Event::End(_) => {
                stack.pop();
                if let Some((field, d, text)) = capture.take_if(|(_, d, _)| *d == stack.len()) {
                    finish_field(record.as_mut(), field, &text, d)?;
                }
                if let Some((_, start, fields)) = record.take_if(|(d, _, _)| *d == stack.len()) {
                    out.push(finish_record(
                        fields,
                        start..reader.buffer_position() as usize,
                        source,
                    )?);
                }
            }
            Event::Text(t) => {
                if let Some((_, _, text)) = capture.as_mut() {
                    let decoded = t
                        .decode()
                        .map_err(|e| anyhow::anyhow!("{source}: bad text at byte {before}: {e}"))?;
                    text.push_str(&decoded);
                }
            }
            Event::CData(t) => {
                if let Some((_, _, text)) = capture.as_mut() {
                    let decoded = t.decode().map_err(|e| {
                        anyhow::anyhow!("{source}: bad CDATA at byte {before}: {e}")
                    })?;
                    text.push_str(&decoded);
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, _, text)) = capture.as_mut() {
                    if r.is_char_ref() {
                        match r.resolve_char_ref() {
                            Ok(Some(c)) => text.push(c),
                            _ => bail!("{source}: bad character reference at byte {before}"),
                        }
                    } else {
                        let name = r.decode().map_err(|e| {
                            anyhow::anyhow!("{source}: bad entity at byte {before}: {e}")
                        })?;
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => text.push_str(s),
                            None => bail!("{source}: unknown entity &{name}; at byte {before}"),
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if record.is_some() {
        bail!("{source}: the XML ends inside a record");
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Pmid,
    Title,
    BookTitle,
    Section,
}

#[derive(Default)]
struct RecordFields {
    pmid: Option<String>,
    title: Option<String>,
    book_title: Option<String>,
    has_abstract: bool,
    sections: Vec<(Option<String>, String)>,
}

/// The field an element is, by its path below the record element.
fn classify(rel: &[&str]) -> Option<Field> {
    match rel {
        ["PubmedArticle", "MedlineCitation", "PMID"]
        | ["PubmedBookArticle", "BookDocument", "PMID"] => Some(Field::Pmid),
        [
            "PubmedArticle",
            "MedlineCitation",
            "Article",
            "ArticleTitle",
        ]
        | ["PubmedBookArticle", "BookDocument", "ArticleTitle"] => Some(Field::Title),
        ["PubmedBookArticle", "BookDocument", "Book", "BookTitle"] => Some(Field::BookTitle),
        [
            "PubmedArticle",
            "MedlineCitation",
            "Article",
            "Abstract",
            "AbstractText",
        ]
        | [
            "PubmedBookArticle",
            "BookDocument",
            "Abstract",
            "AbstractText",
        ] => Some(Field::Section),
        _ => None,
    }
}

fn is_abstract(rel: &[&str]) -> bool {
    matches!(
        rel,
        ["PubmedArticle", "MedlineCitation", "Article", "Abstract"]
            | ["PubmedBookArticle", "BookDocument", "Abstract"]
    )
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn finish_field(
    record: Option<&mut (usize, usize, RecordFields)>,
    field: Field,
    text: &str,
    _depth: usize,
) -> Result<()> {
    let Some((_, _, fields)) = record else {
        return Ok(());
    };
    let text = collapse(text);
    match field {
        Field::Pmid => {
            fields.pmid.get_or_insert(text);
        }
        Field::Title => {
            fields.title.get_or_insert(text);
        }
        Field::BookTitle => {
            fields.book_title.get_or_insert(text);
        }
        Field::Section => {
            fields.has_abstract = true;
            if let Some(last) = fields.sections.last_mut() {
                last.1 = text;
            }
        }
    }
    Ok(())
}

fn finish_record(
    fields: RecordFields,
    range: Range<usize>,
    source: &str,
) -> Result<(Document, Range<usize>)> {
    let pmid_text = fields.pmid.unwrap_or_default();
    let pmid: u64 = pmid_text.parse().map_err(|_| {
        anyhow::anyhow!(
            "{source}: record at byte {} has PMID {pmid_text:?}, expected a positive integer",
            range.start
        )
    })?;
    let title = fields
        .title
        .filter(|t| !t.is_empty())
        .or(fields.book_title.filter(|t| !t.is_empty()));
    let abstract_text = fields.has_abstract.then(|| {
        fields
            .sections
            .iter()
            .map(|(label, text)| match label {
                Some(l) => format!("{l}: {text}"),
                None => text.clone(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok((
        Document {
            pmid,
            title,
            abstract_text,
        },
        range,
    ))
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
        assert_eq!((docs[2].pmid, docs[2].title.as_deref()), (103, None));
        // Each range is exactly one record element.
        let first = &XML.as_bytes()[recs[0].1.clone()];
        assert!(first.starts_with(b"<PubmedArticle>") && first.ends_with(b"</PubmedArticle>"));
        let again = parse_records(first, "slice").unwrap();
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
