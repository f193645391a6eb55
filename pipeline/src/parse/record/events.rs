//! The record state machine: what each XML event (start and end tags, text, CDATA, references, end
//! of input) does to the open elements and the record being read, and where errors go.

use std::io::Read;

use quick_xml::events::{BytesStart, Event};

use super::super::text::{collapse, resolve_reference};
use super::chunks::RecordParser;
use super::states::{Draft, Field, LeafAttrs, State, child_state};
use super::types::{Chemical, OtherAbstract, ParseError, RecordKind, Step};

impl<R: Read> RecordParser<R> {
    pub(super) fn in_record(&self) -> bool {
        self.draft.kind.is_some()
    }

    pub(super) fn error(
        &self,
        offset: u64,
        recoverable: bool,
        message: impl Into<String>,
    ) -> ParseError {
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
    pub(super) fn record_error(
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

    pub(super) fn eof(&mut self) -> std::result::Result<(), ParseError> {
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
    pub(super) fn text(
        &mut self,
        bytes: &[u8],
        valid: bool,
    ) -> std::result::Result<(), ParseError> {
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

    pub(super) fn event(&mut self, event: Event<'_>) -> Step {
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
                // The text contract holds for attribute values too: whitespace runs collapsed, trimmed.
                Ok(v) => Ok(Some(collapse(&v))),
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
                State::Abstract if !self.draft.abstract_closed => self.draft.has_abstract = true,
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
}
