//! Streaming PubMed record parser: quick-xml events in, one [`Citation`] or [`Deletion`] out at a time.
//!
//! Reads baseline/update files (`PubmedArticleSet` of `PubmedArticle`, `PubmedBookArticle`,
//! `DeleteCitation`), E-utilities efetch output (same root, DOCTYPE, pretty-printed) and the legacy
//! `MedlineCitationSet` root (`MedlineCitation` records). Only the current record is held in memory.
//!
//! Each open element gets a `State` derived from its parent's state and its name; elements on no
//! path we extract from are `State::Dead` and cost one name comparison. A leaf state starts a text
//! capture that takes in all descendant text (markup dropped) until the leaf closes.
//!
//! Errors inside a record (no PMID, invalid UTF-8, an unknown entity, a non-numeric PMID) are
//! *recoverable*: the parser reads on to the record's end tag and yields the error; calling `next()`
//! again continues with the next record. Errors of the XML stream itself (malformed markup, a
//! truncated file, a gzip failure) are fatal: the iterator ends after yielding them.
//!
//! Files: `types.rs` (the rows and errors it yields), `chunks.rs` (the buffered, UTF-8-checked chunk
//! reader that drives quick-xml, and the iterator), `states.rs` (element states, leaf fields and the
//! record being read), `events.rs` (what each XML event does to them), `assemble.rs` (a closed leaf
//! into the record, a closed record into a [`Citation`]), `tests.rs`.

mod assemble;
mod chunks;
mod events;
mod states;
#[cfg(test)]
mod tests;
mod types;

pub use chunks::{RecordParser, open_input, open_reader, parse_reader};
pub use types::{
    Chemical, Citation, Deletion, Item, MeshDescriptor, OtherAbstract, ParseError, ParseOptions,
    RecordKind, Section,
};
