//! The buffered chunk reader under the record parser: decompressed bytes are read into one buffer,
//! checked for UTF-8 in large blocks, and tokenized by quick-xml's borrowing slice reader; an event
//! cut by the end of the buffered bytes is read again once more bytes are in.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use quick_xml::Reader;
use quick_xml::events::Event;

use super::super::text::CollapsedText;
use super::states::{Draft, LeafAttrs, State};
use super::types::{Item, ParseError, ParseOptions};

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
    pub(super) ev_start: u64,
    pub(super) ev_end: u64,
    /// Names of the open elements, concatenated, and where each starts.
    pub(super) open_names: Vec<u8>,
    pub(super) open_starts: Vec<usize>,
    pub(super) source: Arc<str>,
    pub(super) stack: Vec<State>,
    /// Depth (stack length) of the open leaf whose text is being captured, 0 when none.
    pub(super) capture_depth: usize,
    pub(super) capture: CollapsedText,
    pub(super) leaf_attrs: LeafAttrs,
    pub(super) draft: Draft,
    pub(super) citations_seen: u32,
    pub(super) deletions_seen: u32,
    pub(super) root_seen: bool,
    pub(super) done: bool,
}

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
    pub(super) fn event_is_utf8(&self) -> bool {
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
