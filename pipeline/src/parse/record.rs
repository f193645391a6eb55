//! Streaming PubMed record parser: quick-xml events in, one [`Citation`] or [`Deletion`] out at a time.
//!
//! Reads baseline/update files (`PubmedArticleSet` of `PubmedArticle`, `PubmedBookArticle`,
//! `DeleteCitation`), E-utilities efetch output (same root, DOCTYPE, pretty-printed) and the legacy
//! `MedlineCitationSet` root (`MedlineCitation` records). Only the current record is held in memory.
//!
//! Each open element gets a [`State`] derived from its parent's state and its name; elements on no
//! path we extract from are [`State::Dead`] and cost one name comparison. A leaf state starts a text
//! capture that takes in all descendant text (markup dropped) until the leaf closes.
//!
//! Errors inside a record (no PMID, invalid UTF-8, an unknown entity, a non-numeric PMID) are
//! *recoverable*: the parser reads on to the record's end tag and yields the error; calling `next()`
//! again continues with the next record. Errors of the XML stream itself (malformed markup, a
//! truncated file, a gzip failure) are fatal: the iterator ends after yielding them.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::text::{CollapsedText, first_year, resolve_reference};

/// One `AbstractText` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    /// `@Label`, None when absent or empty.
    pub label: Option<String>,
    pub nlm_category: Option<String>,
    pub text: String,
}

/// One `OtherAbstract` (its sections joined like `abstract`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtherAbstract {
    pub kind: Option<String>,
    pub language: Option<String>,
    pub text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshDescriptor {
    pub name: String,
    pub ui: Option<String>,
    pub major_topic: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chemical {
    pub name: String,
    pub ui: Option<String>,
    pub registry_number: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    PubmedArticle,
    PubmedBookArticle,
    MedlineCitation,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::PubmedArticle => "PubmedArticle",
            RecordKind::PubmedBookArticle => "PubmedBookArticle",
            RecordKind::MedlineCitation => "MedlineCitation",
        }
    }
}

/// One citation: the columns of `schemas::abstracts::schema()` (see `schemas/README.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Citation {
    pub pmid: u64,
    pub version: u32,
    pub title: Option<String>,
    pub abstract_text: Option<String>,
    pub abstract_sections: Vec<Section>,
    pub other_abstracts: Vec<OtherAbstract>,
    pub languages: Vec<String>,
    pub journal_title: Option<String>,
    pub iso_abbreviation: Option<String>,
    pub year: Option<i32>,
    pub pub_date: Option<String>,
    pub publication_types: Vec<String>,
    pub mesh: Vec<MeshDescriptor>,
    pub keywords: Vec<String>,
    pub chemicals: Vec<Chemical>,
    pub doi: Option<String>,
    pub pmc_id: Option<String>,
    pub citation_status: Option<String>,
    pub record_kind: RecordKind,
    pub source_file: Arc<str>,
    /// 0-based position among the file's citation records (skipped bad records count too).
    pub record_index: u32,
}

/// One PMID named by a `DeleteCitation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    pub pmid: u64,
    pub version: u32,
    pub source_file: Arc<str>,
    /// 0-based position among the file's deleted PMIDs.
    pub record_index: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Citation(Box<Citation>),
    Deletion(Deletion),
}

/// A parse error with its place: the input name, the byte offset in the (decompressed) XML, and the
/// PMID of the record when it was read before the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub source_name: String,
    pub offset: u64,
    pub pmid: Option<u64>,
    /// True when the parser skipped past the broken record and can go on.
    pub recoverable: bool,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: byte offset {} of the XML",
            self.source_name, self.offset
        )?;
        if let Some(pmid) = self.pmid {
            write!(f, " (PMID {pmid})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parser options.
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {}

/// Open an XML input, gzip-compressed or not (detected by the magic bytes `1f 8b`, not the name).
pub fn open_input(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    open_reader(file).with_context(|| format!("reading {}", path.display()))
}

/// Wrap any byte source: decompress when it starts with the gzip magic, buffer otherwise.
/// Concatenated gzip members are read as one stream. The result is meant to be read in large
/// blocks (as [`RecordParser`] does): the inflater writes straight into the reader's buffer.
pub fn open_reader<R: Read + Send + 'static>(raw: R) -> Result<Box<dyn Read + Send>> {
    const BUF: usize = 128 * 1024;
    let mut raw = BufReader::with_capacity(BUF, raw);
    let head = raw.fill_buf().context("reading the first bytes")?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(raw)))
    } else {
        Ok(Box::new(raw))
    }
}

/// Parse records from `reader`; `source_name` is what errors and the `source_file` column say.
pub fn parse_reader<R: Read>(
    reader: R,
    source_name: &str,
    _opts: &ParseOptions,
) -> RecordParser<R> {
    RecordParser::new(reader, source_name)
}

/// What an open element is, on the paths we extract from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Document,
    /// Root `PubmedArticleSet`.
    ArticleSet,
    /// Root `MedlineCitationSet`.
    MedlineSet,
    RecordArticle,
    RecordBook,
    Delete,
    MedlineCitation,
    Article,
    Journal,
    JournalIssue,
    PubDate,
    Abstract,
    OtherAbstract,
    PubTypeList,
    MeshList,
    MeshHeading,
    KeywordList,
    ChemList,
    Chemical,
    PubmedData,
    IdList,
    BookDocument,
    Book,
    Leaf(Field),
    Dead,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Pmid,
    Title,
    BookTitle,
    JournalTitle,
    IsoAbbreviation,
    Year,
    MedlineDate,
    DatePart,
    Section,
    OtherSection,
    Language,
    PublicationType,
    Mesh,
    Keyword,
    RegistryNumber,
    Substance,
    ArticleId,
    DeletedPmid,
}

fn child_state(parent: State, name: &[u8]) -> State {
    use Field as F;
    use State as S;
    if parent == S::Dead {
        return S::Dead;
    }
    match (parent, name) {
        (S::Document, b"PubmedArticleSet") => S::ArticleSet,
        (S::Document, b"MedlineCitationSet") => S::MedlineSet,
        (S::ArticleSet, b"PubmedArticle") => S::RecordArticle,
        (S::ArticleSet, b"PubmedBookArticle") => S::RecordBook,
        (S::ArticleSet | S::MedlineSet, b"DeleteCitation") => S::Delete,
        (S::MedlineSet, b"MedlineCitation") => S::MedlineCitation,
        (S::RecordArticle, b"MedlineCitation") => S::MedlineCitation,
        (S::RecordArticle, b"PubmedData") => S::PubmedData,
        (S::RecordBook, b"BookDocument") => S::BookDocument,
        (S::RecordBook, b"PubmedBookData") => S::PubmedData,
        (S::Delete, b"PMID") => S::Leaf(F::DeletedPmid),
        (S::MedlineCitation, b"PMID") => S::Leaf(F::Pmid),
        (S::MedlineCitation, b"Article") => S::Article,
        (S::MedlineCitation, b"OtherAbstract") => S::OtherAbstract,
        (S::MedlineCitation, b"MeshHeadingList") => S::MeshList,
        (S::MedlineCitation | S::BookDocument, b"KeywordList") => S::KeywordList,
        (S::MedlineCitation, b"ChemicalList") => S::ChemList,
        (S::Article, b"Journal") => S::Journal,
        (S::Article | S::BookDocument, b"ArticleTitle") => S::Leaf(F::Title),
        (S::Article | S::BookDocument, b"Abstract") => S::Abstract,
        (S::Article | S::BookDocument, b"Language") => S::Leaf(F::Language),
        (S::Article, b"PublicationTypeList") => S::PubTypeList,
        (S::Journal, b"Title") => S::Leaf(F::JournalTitle),
        (S::Journal, b"ISOAbbreviation") => S::Leaf(F::IsoAbbreviation),
        (S::Journal, b"JournalIssue") => S::JournalIssue,
        (S::JournalIssue | S::Book, b"PubDate") => S::PubDate,
        (S::PubDate, b"Year") => S::Leaf(F::Year),
        (S::PubDate, b"MedlineDate") => S::Leaf(F::MedlineDate),
        (S::PubDate, _) => S::Leaf(F::DatePart),
        (S::Abstract, b"AbstractText") => S::Leaf(F::Section),
        (S::OtherAbstract, b"AbstractText") => S::Leaf(F::OtherSection),
        (S::PubTypeList, b"PublicationType") => S::Leaf(F::PublicationType),
        (S::BookDocument, b"PublicationType") => S::Leaf(F::PublicationType),
        (S::MeshList, b"MeshHeading") => S::MeshHeading,
        (S::MeshHeading, b"DescriptorName") => S::Leaf(F::Mesh),
        (S::KeywordList, b"Keyword") => S::Leaf(F::Keyword),
        (S::ChemList, b"Chemical") => S::Chemical,
        (S::Chemical, b"RegistryNumber") => S::Leaf(F::RegistryNumber),
        (S::Chemical, b"NameOfSubstance") => S::Leaf(F::Substance),
        (S::PubmedData, b"ArticleIdList") => S::IdList,
        (S::IdList, b"ArticleId") => S::Leaf(F::ArticleId),
        (S::BookDocument, b"PMID") => S::Leaf(F::Pmid),
        (S::BookDocument, b"Book") => S::Book,
        (S::Book, b"BookTitle") => S::Leaf(F::BookTitle),
        _ => S::Dead,
    }
}

/// The record being read.
#[derive(Default)]
struct Draft {
    kind: Option<RecordKind>,
    start_offset: u64,
    pmid: Option<u64>,
    version: u32,
    title: Option<String>,
    book_title: Option<String>,
    sections: Vec<Section>,
    /// An `Abstract` element was seen (abstract is `""`-joined sections, possibly none).
    has_abstract: bool,
    abstract_closed: bool,
    other_abstracts: Vec<OtherAbstract>,
    other_parts: Vec<String>,
    languages: Vec<String>,
    journal_title: Option<String>,
    iso_abbreviation: Option<String>,
    year_text: Option<String>,
    medline_date: Option<String>,
    date_parts: Vec<String>,
    pub_date_seen: bool,
    pub_date_closed: bool,
    publication_types: Vec<String>,
    mesh: Vec<MeshDescriptor>,
    keywords: Vec<String>,
    chemicals: Vec<Chemical>,
    doi: Option<String>,
    pmc_id: Option<String>,
    id_list_seen: bool,
    id_list_closed: bool,
    citation_status: Option<String>,
    medline_citation_seen: bool,
    /// First recoverable error inside this record.
    error: Option<(u64, String)>,
}

/// Attributes a leaf needs, read at its start tag.
#[derive(Default)]
struct LeafAttrs {
    a: Option<String>,
    b: Option<String>,
}

/// Decompressed bytes are read into one buffer of this size (grown only for a single longer event).
const CHUNK: usize = 256 * 1024;

/// Iterator over the records of one XML stream. See the module docs for error behaviour.
///
/// The stream is read in chunks into one buffer and tokenized by quick-xml's borrowing slice reader,
/// so event bytes are never copied. An event cut by the end of the buffered bytes (markup, a
/// reference, or text that may go on) is read again from its first byte once more bytes are in.
/// Because each chunk gets a fresh quick-xml reader, end-tag names are checked here.
pub struct RecordParser<R: Read> {
    src: R,
    buf: Vec<u8>,
    /// Valid bytes are `buf[..filled]`; `buf[pos..filled]` is not yet tokenized.
    filled: usize,
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    src_eof: bool,
    /// `buf[utf8_from..utf8_to]` is known to be valid UTF-8 (checked in large blocks as it is read),
    /// so text events inside it need no check of their own.
    utf8_from: usize,
    utf8_to: usize,
    /// Stream offsets of the current event's first byte and of the byte after it.
    ev_start: u64,
    ev_end: u64,
    /// Names of the open elements, concatenated, and where each starts.
    open_names: Vec<u8>,
    open_starts: Vec<usize>,
    source: Arc<str>,
    stack: Vec<State>,
    /// Depth (stack length) of the open leaf whose text is being captured, 0 when none.
    capture_depth: usize,
    capture: CollapsedText,
    leaf_attrs: LeafAttrs,
    draft: Draft,
    citations_seen: u32,
    deletions_seen: u32,
    root_seen: bool,
    done: bool,
}

type Step = std::result::Result<Option<Item>, ParseError>;

/// What one pass over the buffered bytes ended with.
enum Scan {
    Item(Item),
    NeedMore,
    Eof,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl<R: Read> RecordParser<R> {
    pub fn new(src: R, source_name: &str) -> Self {
        Self::with_chunk(src, source_name, CHUNK)
    }

    /// A parser that reads `chunk` bytes at a time (tests use tiny chunks to move the boundaries).
    pub fn with_chunk(src: R, source_name: &str, chunk: usize) -> Self {
        Self {
            src,
            buf: vec![0; chunk.max(1)],
            filled: 0,
            pos: 0,
            base: 0,
            src_eof: false,
            utf8_from: 0,
            utf8_to: 0,
            ev_start: 0,
            ev_end: 0,
            open_names: Vec::with_capacity(1024),
            open_starts: Vec::with_capacity(32),
            source: Arc::from(source_name),
            stack: Vec::with_capacity(32),
            capture_depth: 0,
            capture: CollapsedText::new(),
            leaf_attrs: LeafAttrs::default(),
            draft: Draft::default(),
            citations_seen: 0,
            deletions_seen: 0,
            root_seen: false,
            done: false,
        }
    }

    /// Bytes of XML consumed so far.
    pub fn position(&self) -> u64 {
        self.ev_end
    }

    fn in_record(&self) -> bool {
        self.draft.kind.is_some()
    }

    fn error(&self, offset: u64, recoverable: bool, message: impl Into<String>) -> ParseError {
        ParseError {
            source_name: self.source.to_string(),
            offset,
            pmid: if self.in_record() {
                self.draft.pmid
            } else {
                None
            },
            recoverable,
            message: message.into(),
        }
    }

    /// Note an error in the current record (the first one wins); outside a record it is fatal.
    fn record_error(
        &mut self,
        offset: u64,
        message: String,
    ) -> std::result::Result<(), ParseError> {
        if self.in_record() {
            if self.draft.error.is_none() {
                self.draft.error = Some((offset, message));
            }
            Ok(())
        } else {
            Err(self.error(offset, false, message))
        }
    }

    /// Keep the untokenized bytes, move them to the front and read more after them.
    fn refill(&mut self) -> std::result::Result<(), ParseError> {
        let pending = self.filled - self.pos;
        self.buf.copy_within(self.pos..self.filled, 0);
        if self.utf8_to <= self.pos {
            (self.utf8_from, self.utf8_to) = (0, 0);
        } else {
            self.utf8_from = self.utf8_from.saturating_sub(self.pos);
            self.utf8_to -= self.pos;
        }
        self.base += self.pos as u64;
        self.pos = 0;
        self.filled = pending;
        // One event longer than the buffer: grow geometrically, so re-reading it stays linear.
        if pending * 2 > self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        while self.filled < self.buf.len() {
            match self.src.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.src_eof = true;
                    break;
                }
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(self.error(
                        self.base + self.filled as u64,
                        false,
                        format!("reading the input failed (truncated or corrupt gzip?): {e}"),
                    ));
                }
            }
        }
        self.extend_utf8_window();
        Ok(())
    }

    /// Extend the known-valid UTF-8 window over the bytes just read. Invalid bytes restart it after
    /// them (events across them are checked one by one and report the error); an incomplete
    /// character at the end waits for the next read.
    fn extend_utf8_window(&mut self) {
        loop {
            match std::str::from_utf8(&self.buf[self.utf8_to..self.filled]) {
                Ok(_) => {
                    self.utf8_to = self.filled;
                    return;
                }
                Err(e) => {
                    let good = self.utf8_to + e.valid_up_to();
                    match e.error_len() {
                        None => {
                            self.utf8_to = good;
                            return;
                        }
                        Some(len) => {
                            self.utf8_from = good + len;
                            self.utf8_to = self.utf8_from;
                        }
                    }
                }
            }
        }
    }

    /// Whether the current event's bytes lie in the known-valid UTF-8 window.
    fn event_is_utf8(&self) -> bool {
        let from = (self.ev_start - self.base) as usize;
        let to = (self.ev_end - self.base) as usize;
        self.utf8_from <= from && to <= self.utf8_to
    }

    /// Tokenize `data` (= `self.buf[..self.filled]`) from `self.pos` until an item is complete,
    /// more bytes are needed, or the stream ends.
    fn scan(&mut self, data: &[u8]) -> std::result::Result<Scan, ParseError> {
        let mut start = self.pos;
        // quick-xml drops a BOM at a reader's start, so it must never see one there: the one at
        // offset 0 is a byte order mark, any other (even right after it) is U+FEFF in text.
        while data[start..].starts_with(UTF8_BOM) {
            if self.base + start as u64 == 0 {
                start += UTF8_BOM.len();
            } else {
                self.ev_start = self.base + start as u64;
                self.ev_end = self.ev_start + UTF8_BOM.len() as u64;
                start += UTF8_BOM.len();
                self.pos = start;
                self.text(UTF8_BOM, true)?;
            }
        }
        let rest = &data[start..];
        let mut reader = Reader::from_reader(rest);
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        let at = self.base + start as u64;
        loop {
            let rel_start = reader.buffer_position() as usize;
            let event = reader.read_event();
            let rel_end = reader.buffer_position() as usize;
            self.ev_start = at + rel_start as u64;
            self.ev_end = at + rel_end as u64;
            let event = match event {
                Ok(Event::Eof) if !self.src_eof => {
                    self.pos = start + rel_start;
                    return Ok(Scan::NeedMore);
                }
                // Text up to the end of the buffered bytes may go on in the next ones.
                Ok(Event::Text(_)) if rel_end == rest.len() && !self.src_eof => {
                    self.pos = start + rel_start;
                    return Ok(Scan::NeedMore);
                }
                Ok(e) => e,
                Err(e) if !self.src_eof && Self::cut_by_buffer_end(&e, &rest[rel_start..]) => {
                    self.pos = start + rel_start;
                    return Ok(Scan::NeedMore);
                }
                Err(e) => {
                    self.pos = start + rel_end;
                    let offset = at + reader.error_position();
                    let message = match &e {
                        quick_xml::Error::Syntax(syntax)
                            if !matches!(
                                syntax,
                                quick_xml::errors::SyntaxError::InvalidBangMarkup
                            ) =>
                        {
                            format!("malformed XML: {syntax}; the file is truncated")
                        }
                        other => format!("malformed XML: {other}"),
                    };
                    return Err(self.error(offset, false, message));
                }
            };
            self.pos = start + rel_end;
            if let Event::Eof = event {
                self.eof()?;
                return Ok(Scan::Eof);
            }
            if let Some(item) = self.event(event)? {
                return Ok(Scan::Item(item));
            }
        }
    }

    /// Whether quick-xml's error `e` for the event whose bytes start `ev` comes from the end of the
    /// buffered bytes rather than from the document.
    fn cut_by_buffer_end(e: &quick_xml::Error, ev: &[u8]) -> bool {
        match e {
            // Syntax errors are reported when the input ends inside markup.
            quick_xml::Error::Syntax(_) => true,
            // `&name` with neither `;` nor where the reference would stop.
            quick_xml::Error::IllFormed(quick_xml::errors::IllFormedError::UnclosedReference) => {
                ev.len() < 2 || !ev[1..].iter().any(|b| matches!(b, b';' | b'&' | b'<'))
            }
            _ => false,
        }
    }

    fn eof(&mut self) -> std::result::Result<(), ParseError> {
        self.done = true;
        let offset = self.ev_end;
        if let Some(open) = self.stack.last().copied() {
            let what = if self.in_record() {
                "inside a record"
            } else {
                "before the root element closed"
            };
            return Err(self.error(
                offset,
                false,
                format!("unexpected end of input {what} ({} elements open, innermost {open:?}); the file is truncated", self.stack.len()),
            ));
        }
        if !self.root_seen {
            return Err(self.error(
                offset,
                false,
                "no root element (expected PubmedArticleSet or MedlineCitationSet)",
            ));
        }
        Ok(())
    }

    /// A text event's bytes; `valid`: known to be UTF-8.
    fn text(&mut self, bytes: &[u8], valid: bool) -> std::result::Result<(), ParseError> {
        if self.capture_depth > 0 || self.in_record() {
            let checked = if valid {
                // SAFETY: `valid` says these bytes lie in a window checked by `from_utf8` and
                // start and end at character boundaries (next to ASCII markup delimiters).
                Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
            } else {
                std::str::from_utf8(bytes)
            };
            match checked {
                Ok(s) => {
                    if self.capture_depth > 0 {
                        self.capture.push_str(s);
                    }
                }
                Err(e) => {
                    let offset = self.ev_start + e.valid_up_to() as u64;
                    self.record_error(offset, "invalid UTF-8 in text".into())?;
                }
            }
        } else if self.stack.is_empty() && !bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(self.error(self.ev_start, false, "text outside the root element"));
        }
        Ok(())
    }

    /// Check an end tag's name against the open element's.
    fn close_name(&mut self, name: &[u8]) -> std::result::Result<(), ParseError> {
        let Some(at) = self.open_starts.pop() else {
            return Err(self.error(
                self.ev_start,
                false,
                format!(
                    "malformed XML: ill-formed document: close tag `</{}>` does not match any open tag",
                    String::from_utf8_lossy(name)
                ),
            ));
        };
        if &self.open_names[at..] != name {
            let message = format!(
                "malformed XML: ill-formed document: expected `</{}>`, but `</{}>` was found",
                String::from_utf8_lossy(&self.open_names[at..]),
                String::from_utf8_lossy(name)
            );
            return Err(self.error(self.ev_start, false, message));
        }
        self.open_names.truncate(at);
        Ok(())
    }

    fn event(&mut self, event: Event<'_>) -> Step {
        match event {
            Event::Start(start) => {
                let name = start.name();
                self.open_starts.push(self.open_names.len());
                self.open_names.extend_from_slice(name.as_ref());
                self.start(&start)?;
                Ok(None)
            }
            Event::Empty(start) => {
                self.start(&start)?;
                self.end()
            }
            Event::End(end) => {
                self.close_name(end.name().as_ref())?;
                self.end()
            }
            Event::Text(text) => {
                debug_assert_eq!(text.len() as u64, self.ev_end - self.ev_start);
                self.text(&text, self.event_is_utf8())?;
                Ok(None)
            }
            Event::CData(data) => {
                if self.capture_depth > 0 {
                    let checked = if self.event_is_utf8() {
                        // SAFETY: the whole `<![CDATA[…]]>` lies in the checked window and its
                        // content is delimited by ASCII bytes.
                        Ok(unsafe { std::str::from_utf8_unchecked(&data) })
                    } else {
                        std::str::from_utf8(&data)
                    };
                    match checked {
                        Ok(s) => self.capture.push_str(s),
                        Err(_) => {
                            self.record_error(self.ev_end, "invalid UTF-8 in CDATA".into())?;
                        }
                    }
                }
                Ok(None)
            }
            Event::GeneralRef(r) => {
                let name = std::str::from_utf8(&r).unwrap_or("\u{fffd}");
                match resolve_reference(name) {
                    Ok(c) => {
                        if self.capture_depth > 0 {
                            self.capture.push_char(c);
                        }
                    }
                    Err(message) => {
                        self.record_error(self.ev_end, message)?;
                    }
                }
                Ok(None)
            }
            // Handled by `scan`.
            Event::Eof => Ok(None),
            // Declarations, DOCTYPE, comments, processing instructions carry no record data.
            Event::Decl(_) | Event::DocType(_) | Event::Comment(_) | Event::PI(_) => Ok(None),
        }
    }

    fn attr(start: &BytesStart<'_>, name: &[u8]) -> std::result::Result<Option<String>, String> {
        match start.try_get_attribute(name) {
            Ok(Some(a)) => match a.unescape_value() {
                Ok(v) => Ok(Some(v.replace(['\t', '\n', '\r'], " "))),
                Err(e) => Err(format!(
                    "bad value of attribute {}: {e}",
                    String::from_utf8_lossy(name)
                )),
            },
            Ok(None) => Ok(None),
            Err(e) => Err(format!(
                "malformed attributes on <{}>: {e}",
                String::from_utf8_lossy(start.name().as_ref())
            )),
        }
    }

    fn start(&mut self, start: &BytesStart<'_>) -> std::result::Result<(), ParseError> {
        let parent = self.stack.last().copied().unwrap_or(State::Document);
        let name = start.name();
        let name = name.as_ref();
        let state = if self.capture_depth > 0 {
            State::Dead // markup inside captured text (<i>, MathML …): only its text counts
        } else {
            child_state(parent, name)
        };
        if parent == State::Document {
            if self.root_seen {
                return Err(self.error(self.ev_end, false, "a second root element"));
            }
            self.root_seen = true;
            if state == State::Dead {
                return Err(self.error(
                    self.ev_end,
                    false,
                    format!(
                        "root element <{}> where PubmedArticleSet or MedlineCitationSet was expected",
                        String::from_utf8_lossy(name)
                    ),
                ));
            }
        }
        self.stack.push(state);
        let offset = self.ev_end;
        let result: std::result::Result<(), String> = (|| {
            match state {
                State::RecordArticle | State::RecordBook => {
                    self.begin_record(if state == State::RecordArticle {
                        RecordKind::PubmedArticle
                    } else {
                        RecordKind::PubmedBookArticle
                    });
                }
                State::MedlineCitation => {
                    if parent == State::MedlineSet {
                        self.begin_record(RecordKind::MedlineCitation);
                    }
                    if !self.draft.medline_citation_seen {
                        self.draft.medline_citation_seen = true;
                        self.draft.citation_status = Self::attr(start, b"Status")?;
                    }
                }
                State::Delete => {}
                State::Abstract => {
                    if !self.draft.abstract_closed {
                        self.draft.has_abstract = true;
                    }
                }
                State::PubDate => self.draft.pub_date_seen = true,
                State::IdList => self.draft.id_list_seen = true,
                State::OtherAbstract => {
                    self.draft.other_parts.clear();
                    self.draft.other_abstracts.push(OtherAbstract {
                        kind: Self::attr(start, b"Type")?,
                        language: Self::attr(start, b"Language")?,
                        text: String::new(),
                    });
                }
                State::Chemical => self.draft.chemicals.push(Chemical::default()),
                State::Leaf(field) => {
                    self.capture_depth = self.stack.len();
                    self.capture.clear();
                    self.leaf_attrs = match field {
                        Field::Pmid | Field::DeletedPmid => LeafAttrs {
                            a: Self::attr(start, b"Version")?,
                            b: None,
                        },
                        Field::Section | Field::OtherSection => LeafAttrs {
                            a: Self::attr(start, b"Label")?,
                            b: Self::attr(start, b"NlmCategory")?,
                        },
                        Field::Mesh => LeafAttrs {
                            a: Self::attr(start, b"UI")?,
                            b: Self::attr(start, b"MajorTopicYN")?,
                        },
                        Field::Substance => LeafAttrs {
                            a: Self::attr(start, b"UI")?,
                            b: None,
                        },
                        Field::ArticleId => LeafAttrs {
                            a: Self::attr(start, b"IdType")?,
                            b: None,
                        },
                        _ => LeafAttrs::default(),
                    };
                }
                _ => {}
            }
            Ok(())
        })();
        if let Err(message) = result {
            self.record_error(offset, message)?;
        }
        Ok(())
    }

    fn begin_record(&mut self, kind: RecordKind) {
        self.draft = Draft {
            kind: Some(kind),
            start_offset: self.ev_end,
            version: 1,
            ..Draft::default()
        };
    }

    fn end(&mut self) -> Step {
        let Some(state) = self.stack.pop() else {
            // `close_name` has matched the end tag with an open element, so this is unreachable;
            // report rather than panic.
            return Err(self.error(self.ev_end, false, "end tag without a start tag"));
        };
        let offset = self.ev_end;
        match state {
            State::Leaf(field) if self.capture_depth == self.stack.len() + 1 => {
                self.capture_depth = 0;
                let text = self.capture.take();
                return self.finish_leaf(field, text, offset);
            }
            State::Abstract => self.draft.abstract_closed = true,
            State::PubDate => self.draft.pub_date_closed = true,
            State::IdList => self.draft.id_list_closed = true,
            State::OtherAbstract => {
                let joined = self.draft.other_parts.join("\n");
                if let Some(last) = self.draft.other_abstracts.last_mut() {
                    last.text = joined;
                }
            }
            State::RecordArticle | State::RecordBook => return self.finish_record(),
            State::MedlineCitation if self.draft.kind == Some(RecordKind::MedlineCitation) => {
                return self.finish_record();
            }
            _ => {}
        }
        Ok(None)
    }

    fn finish_leaf(&mut self, field: Field, text: String, offset: u64) -> Step {
        let attrs = std::mem::take(&mut self.leaf_attrs);
        let d = &mut self.draft;
        match field {
            Field::Pmid => {
                if d.pmid.is_none() {
                    let Ok(pmid) = text.parse::<u64>() else {
                        self.record_error(offset, format!("PMID {text:?} is not a number"))?;
                        return Ok(None);
                    };
                    d.pmid = Some(pmid);
                    match attrs.a.as_deref().map(str::parse::<u32>) {
                        None => {}
                        Some(Ok(v)) => d.version = v,
                        Some(Err(_)) => self.record_error(
                            offset,
                            format!("PMID Version {:?} is not a number", attrs.a),
                        )?,
                    }
                }
            }
            Field::DeletedPmid => {
                let index = self.deletions_seen;
                self.deletions_seen += 1;
                let pmid = text.parse::<u64>().map_err(|_| {
                    self.error(
                        offset,
                        true,
                        format!("deleted PMID {text:?} is not a number"),
                    )
                })?;
                let version = match attrs.a.as_deref().map(str::parse::<u32>) {
                    None => 1,
                    Some(Ok(v)) => v,
                    Some(Err(_)) => {
                        return Err(self.error(
                            offset,
                            true,
                            format!(
                                "deleted PMID {pmid} has a non-numeric Version {:?}",
                                attrs.a
                            ),
                        ));
                    }
                };
                return Ok(Some(Item::Deletion(Deletion {
                    pmid,
                    version,
                    source_file: self.source.clone(),
                    record_index: index,
                })));
            }
            Field::Title => {
                if d.title.is_none() {
                    d.title = Some(text);
                }
            }
            Field::BookTitle => {
                if d.book_title.is_none() {
                    d.book_title = Some(text);
                }
            }
            Field::JournalTitle => {
                if d.journal_title.is_none() {
                    d.journal_title = Some(text);
                }
            }
            Field::IsoAbbreviation => {
                if d.iso_abbreviation.is_none() {
                    d.iso_abbreviation = Some(text);
                }
            }
            Field::Year | Field::MedlineDate | Field::DatePart => {
                if !d.pub_date_closed {
                    if field == Field::Year && d.year_text.is_none() {
                        d.year_text = Some(text.clone());
                    }
                    if field == Field::MedlineDate && d.medline_date.is_none() {
                        d.medline_date = Some(text.clone());
                    }
                    d.date_parts.push(text);
                }
            }
            Field::Section => {
                if !d.abstract_closed {
                    d.sections.push(Section {
                        label: attrs.a.filter(|l| !l.is_empty()),
                        nlm_category: attrs.b,
                        text,
                    });
                }
            }
            Field::OtherSection => {
                let part = match attrs.a.filter(|l| !l.is_empty()) {
                    Some(label) => format!("{label}: {text}"),
                    None => text,
                };
                d.other_parts.push(part);
            }
            Field::Language => d.languages.push(text),
            Field::PublicationType => d.publication_types.push(text),
            Field::Mesh => d.mesh.push(MeshDescriptor {
                name: text,
                ui: attrs.a,
                major_topic: attrs.b.as_deref() == Some("Y"),
            }),
            Field::Keyword => d.keywords.push(text),
            Field::RegistryNumber => {
                if let Some(c) = d.chemicals.last_mut() {
                    c.registry_number = Some(text);
                }
            }
            Field::Substance => {
                if let Some(c) = d.chemicals.last_mut() {
                    c.name = text;
                    c.ui = attrs.a;
                }
            }
            Field::ArticleId => {
                if !d.id_list_closed {
                    match attrs.a.as_deref() {
                        Some("doi") if d.doi.is_none() => d.doi = Some(text),
                        Some("pmc") if d.pmc_id.is_none() => d.pmc_id = Some(text),
                        _ => {}
                    }
                }
            }
        }
        Ok(None)
    }

    fn finish_record(&mut self) -> Step {
        let d = std::mem::take(&mut self.draft);
        let index = self.citations_seen;
        self.citations_seen += 1;
        let kind = d.kind.unwrap_or(RecordKind::PubmedArticle);
        if let Some((offset, message)) = d.error {
            return Err(ParseError {
                source_name: self.source.to_string(),
                offset,
                pmid: d.pmid,
                recoverable: true,
                message: format!("{} record #{index}: {message}", kind.as_str()),
            });
        }
        let Some(pmid) = d.pmid else {
            return Err(ParseError {
                source_name: self.source.to_string(),
                offset: d.start_offset,
                pmid: None,
                recoverable: true,
                message: format!(
                    "{} record #{index} has no PMID (expected {})",
                    kind.as_str(),
                    if kind == RecordKind::PubmedBookArticle {
                        "BookDocument/PMID"
                    } else {
                        "MedlineCitation/PMID"
                    }
                ),
            });
        };
        let abstract_text = d.has_abstract.then(|| {
            let mut out = String::new();
            for (i, s) in d.sections.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                if let Some(label) = &s.label {
                    out.push_str(label);
                    out.push_str(": ");
                }
                out.push_str(&s.text);
            }
            out
        });
        let year = match (&d.year_text, &d.medline_date) {
            (Some(y), _) => first_year(y),
            (None, Some(m)) => first_year(m),
            (None, None) => None,
        };
        let pub_date =
            (d.pub_date_seen && !d.date_parts.is_empty()).then(|| d.date_parts.join(" "));
        let title = d.title.or(d.book_title);
        Ok(Some(Item::Citation(Box::new(Citation {
            pmid,
            version: d.version,
            title,
            abstract_text,
            abstract_sections: d.sections,
            other_abstracts: d.other_abstracts,
            languages: d.languages,
            journal_title: d.journal_title,
            iso_abbreviation: d.iso_abbreviation,
            year,
            pub_date,
            publication_types: d.publication_types,
            mesh: d.mesh,
            keywords: d.keywords,
            chemicals: d.chemicals,
            doi: d.doi,
            pmc_id: d.pmc_id,
            citation_status: d.citation_status,
            record_kind: kind,
            source_file: self.source.clone(),
            record_index: index,
        }))))
    }
}

impl<R: Read> Iterator for RecordParser<R> {
    type Item = std::result::Result<Item, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            // The events borrow the buffer; moving it out lets the handlers borrow `self` mutably.
            let buf = std::mem::take(&mut self.buf);
            let scanned = self.scan(&buf[..self.filled]);
            self.buf = buf;
            let result = match scanned {
                Ok(Scan::Item(item)) => return Some(Ok(item)),
                Ok(Scan::Eof) => Ok(()),
                Ok(Scan::NeedMore) => self.refill(),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                if !e.recoverable {
                    self.done = true;
                }
                return Some(Err(e));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Vec<std::result::Result<Item, ParseError>> {
        parse_reader(xml.as_bytes(), "t.xml", &ParseOptions::default()).collect()
    }

    fn citations(xml: &str) -> Vec<Citation> {
        parse(xml)
            .into_iter()
            .map(|r| match r {
                Ok(Item::Citation(c)) => *c,
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn legacy_medline_citation_set_with_all_columns() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE MedlineCitationSet PUBLIC "-//NLM//DTD Medline Citation, 1st January 2012//EN" "x.dtd">
<MedlineCitationSet>
 <MedlineCitation Owner="NLM" Status="MEDLINE">
  <PMID Version="3">17</PMID>
  <Article>
   <Journal><JournalIssue><PubDate><MedlineDate>1998 Fall-Winter</MedlineDate></PubDate></JournalIssue>
    <Title>J  Test</Title><ISOAbbreviation>J Test</ISOAbbreviation></Journal>
   <ArticleTitle>A <i>b</i>c &amp; d</ArticleTitle>
   <ELocationID EIdType="doi">10.1/x</ELocationID>
   <Abstract>
     <AbstractText Label="AIM" NlmCategory="OBJECTIVE">one
       two</AbstractText>
     <AbstractText>three<sup>2</sup></AbstractText>
     <CopyrightInformation>(c) nobody</CopyrightInformation>
   </Abstract>
   <Language>eng</Language><Language>fre</Language>
   <PublicationTypeList><PublicationType UI="D1">Journal Article</PublicationType></PublicationTypeList>
  </Article>
  <ChemicalList><Chemical><RegistryNumber>0</RegistryNumber><NameOfSubstance UI="D2">Water</NameOfSubstance></Chemical></ChemicalList>
  <MeshHeadingList><MeshHeading><DescriptorName UI="D3" MajorTopicYN="Y">Heat</DescriptorName><QualifierName UI="Q1">x</QualifierName></MeshHeading></MeshHeadingList>
  <OtherAbstract Type="Publisher" Language="spa"><AbstractText Label="A">uno</AbstractText><AbstractText>dos</AbstractText></OtherAbstract>
  <KeywordList><Keyword>k1</Keyword><Keyword> k2 </Keyword></KeywordList>
 </MedlineCitation>
 <MedlineCitation><PMID>18</PMID></MedlineCitation>
</MedlineCitationSet>"#;
        let c = citations(xml);
        assert_eq!(c.len(), 2);
        let a = &c[0];
        assert_eq!((a.pmid, a.version, a.record_index), (17, 3, 0));
        assert_eq!(a.record_kind, RecordKind::MedlineCitation);
        assert_eq!(a.title.as_deref(), Some("A bc & d"));
        assert_eq!(a.abstract_text.as_deref(), Some("AIM: one two\nthree2"));
        assert_eq!(
            a.abstract_sections[0].nlm_category.as_deref(),
            Some("OBJECTIVE")
        );
        assert_eq!(a.abstract_sections[1].label, None);
        assert_eq!(a.year, Some(1998));
        assert_eq!(a.pub_date.as_deref(), Some("1998 Fall-Winter"));
        assert_eq!(a.journal_title.as_deref(), Some("J Test"));
        assert_eq!(a.languages, ["eng", "fre"]);
        assert_eq!(a.publication_types, ["Journal Article"]);
        assert_eq!(
            a.mesh,
            [MeshDescriptor {
                name: "Heat".into(),
                ui: Some("D3".into()),
                major_topic: true
            }]
        );
        assert_eq!(a.chemicals[0].name, "Water");
        assert_eq!(a.chemicals[0].registry_number.as_deref(), Some("0"));
        assert_eq!(a.other_abstracts[0].text, "A: uno\ndos");
        assert_eq!(a.other_abstracts[0].language.as_deref(), Some("spa"));
        assert_eq!(a.keywords, ["k1", "k2"]);
        assert_eq!(a.citation_status.as_deref(), Some("MEDLINE"));
        assert_eq!(a.doi, None, "doi comes from PubmedData/ArticleIdList only");
        let b = &c[1];
        assert_eq!((b.pmid, b.version, b.record_index), (18, 1, 1));
        assert_eq!(
            (b.title.clone(), b.abstract_text.clone(), b.year),
            (None, None, None)
        );
    }

    #[test]
    fn book_and_deletions_and_ids() {
        let xml = r#"<PubmedArticleSet>
<PubmedBookArticle><BookDocument><PMID Version="1">5</PMID><ArticleIdList><ArticleId IdType="doi">no</ArticleId></ArticleIdList>
<Book><BookTitle>The <i>Book</i></BookTitle><PubDate><Year>2001</Year><Month>May</Month></PubDate></Book>
<Language>eng</Language><Abstract><AbstractText Label="">x</AbstractText></Abstract></BookDocument>
<PubmedBookData><ArticleIdList><ArticleId IdType="bookaccession">NBK1</ArticleId><ArticleId IdType="doi">10.2/b</ArticleId></ArticleIdList></PubmedBookData></PubmedBookArticle>
<PubmedArticle><MedlineCitation><PMID>6</PMID><Article><ArticleTitle/></Article></MedlineCitation>
<PubmedData><ArticleIdList><ArticleId IdType="pmc">PMC9</ArticleId></ArticleIdList>
<ReferenceList><Reference><ArticleIdList><ArticleId IdType="doi">10.9/ref</ArticleId></ArticleIdList></Reference></ReferenceList></PubmedData></PubmedArticle>
<DeleteCitation><PMID Version="1">7</PMID><PMID Version="2">8</PMID></DeleteCitation>
</PubmedArticleSet>"#;
        let items: Vec<Item> = parse(xml).into_iter().map(|r| r.unwrap()).collect();
        let Item::Citation(book) = &items[0] else {
            panic!()
        };
        assert_eq!(book.title.as_deref(), Some("The Book"));
        assert_eq!(book.doi.as_deref(), Some("10.2/b"));
        assert_eq!(book.abstract_text.as_deref(), Some("x"));
        assert_eq!(
            (book.year, book.pub_date.as_deref()),
            (Some(2001), Some("2001 May"))
        );
        let Item::Citation(art) = &items[1] else {
            panic!()
        };
        assert_eq!(art.title.as_deref(), Some(""));
        assert_eq!(
            (art.doi.as_deref(), art.pmc_id.as_deref()),
            (None, Some("PMC9"))
        );
        let Item::Deletion(d) = &items[3] else {
            panic!()
        };
        assert_eq!((d.pmid, d.version, d.record_index), (8, 2, 1));
        assert_eq!(items.len(), 4);
    }

    /// Every item (and error, with its offset) as the default parser yields them, for comparing.
    fn items_with_chunk(xml: &[u8], chunk: usize) -> Vec<String> {
        RecordParser::with_chunk(xml, "t.xml", chunk)
            .map(|r| format!("{r:?}"))
            .collect()
    }

    #[test]
    fn chunk_boundaries_anywhere_give_the_same_items() {
        // Markup, references, CDATA, comments, a DOCTYPE subset, U+FEFF in text, invalid UTF-8,
        // and a record error: cut at every byte, the items and error offsets must not change.
        let mut xml = b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!DOCTYPE PubmedArticleSet [ <!ENTITY x \"y\"> ]>\n\
<PubmedArticleSet><!-- a > b --><PubmedArticle><MedlineCitation Status=\"MEDLINE\"><PMID Version=\"2\">11</PMID><Article>\
<ArticleTitle>\xEF\xBB\xBFp<sub>trend</sub> &lt;0.01 &#x3b1;&#946;<![CDATA[ <c> ]]>\xCE\xB1  z</ArticleTitle>\
<Abstract><AbstractText Label=\"A &amp; B\">one\n two</AbstractText><AbstractText>\xE2\x80\x89x</AbstractText></Abstract>\
</Article></MedlineCitation></PubmedArticle>\n\xEF\xBB\xBF\n<PubmedArticle><MedlineCitation><PMID>12</PMID>\
<Article><ArticleTitle>bad \xFF here</ArticleTitle></Article></MedlineCitation></PubmedArticle>\
<DeleteCitation><PMID Version=\"1\">13</PMID></DeleteCitation></PubmedArticleSet>\n"
            .to_vec();
        let whole = items_with_chunk(&xml, 1 << 20);
        assert_eq!(whole.len(), 3, "{whole:#?}");
        assert!(
            whole[0].contains("\"\\u{feff}ptrend <0.01 αβ <c> α z\""),
            "{}",
            whole[0]
        );
        assert!(whole[0].contains("\"A & B: one two\\nx\""), "{}", whole[0]);
        assert!(
            whole[1].contains("invalid UTF-8") && whole[1].contains("Some(12)"),
            "{}",
            whole[1]
        );
        for chunk in 1..=xml.len() {
            assert_eq!(items_with_chunk(&xml, chunk), whole, "chunk {chunk}");
        }
        // A truncated document ends with the same fatal error wherever the chunks end.
        xml.truncate(xml.len() - 30);
        let cut = items_with_chunk(&xml, 1 << 20);
        assert!(cut.last().unwrap().contains("truncated"), "{cut:?}");
        for chunk in [1, 2, 3, 5, 8, 13, 64, 100] {
            assert_eq!(items_with_chunk(&xml, chunk), cut, "chunk {chunk}");
        }
    }

    /// Found by `just fuzz-parse`: with the first BOM skipped, quick-xml dropped a second one as a
    /// BOM too, so the error depended on where the buffer ended.
    #[test]
    fn only_the_first_bom_is_a_byte_order_mark() {
        let xml = b"\xEF\xBB\xBF\xEF\xBB\xBF<FFFFFFFFFF,,,,,,,,&lt;,,,,,,";
        for chunk in [1, 3, 4, 32, 1 << 20] {
            let items = items_with_chunk(xml, chunk);
            assert_eq!(items.len(), 1, "{items:?}");
            assert!(
                items[0].contains("offset: 3,")
                    && items[0].contains("text outside the root element"),
                "chunk {chunk}: {items:?}"
            );
        }
        let ok = items_with_chunk(b"\xEF\xBB\xBF<PubmedArticleSet/>", 1 << 20);
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn chunk_boundaries_in_the_sample_give_the_same_items() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/sample/pubmed/baseline/pubmed26n0001.xml.gz");
        let mut xml = Vec::new();
        open_input(&path).unwrap().read_to_end(&mut xml).unwrap();
        let whole = items_with_chunk(&xml, 1 << 20);
        assert_eq!(whole.len(), 100);
        for chunk in [97, 1000, 4096, 65_537] {
            assert_eq!(items_with_chunk(&xml, chunk), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn recoverable_errors_continue_and_fatal_errors_stop() {
        let xml = "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article><ArticleTitle>&nbsp;</ArticleTitle></Article></MedlineCitation></PubmedArticle>\
<PubmedArticle><MedlineCitation><PMID>x2</PMID></MedlineCitation></PubmedArticle>\
<PubmedArticle><MedlineCitation><PMID>3</PMID></MedlineCitation></PubmedArticle></PubmedArticleSet>";
        let r = parse(xml);
        assert_eq!(r.len(), 3);
        let e = r[0].as_ref().unwrap_err();
        assert!(
            e.recoverable && e.message.contains("unknown entity &nbsp;"),
            "{e}"
        );
        assert_eq!(e.pmid, Some(1));
        assert!(
            r[1].as_ref()
                .unwrap_err()
                .message
                .contains("\"x2\" is not a number")
        );
        assert!(matches!(&r[2], Ok(Item::Citation(c)) if c.pmid == 3 && c.record_index == 2));

        let bad = parse(
            "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID></Medline></PubmedArticle>",
        );
        assert_eq!(bad.len(), 1);
        assert!(!bad[0].as_ref().unwrap_err().recoverable);
        for xml in [
            "",
            "<Foo/>",
            "<PubmedArticleSet>",
            "<PubmedArticleSet/>junk",
        ] {
            let r = parse(xml);
            if xml == "<PubmedArticleSet/>junk" {
                assert!(r.iter().any(|x| x.is_err()), "{xml:?}");
            } else {
                assert!(
                    matches!(r.last(), Some(Err(e)) if !e.recoverable),
                    "{xml:?}: {r:?}"
                );
            }
        }
    }
}
