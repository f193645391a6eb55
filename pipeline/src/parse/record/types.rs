//! What the record parser yields: citations, deletions and parse errors.

use std::fmt;
use std::sync::Arc;

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

/// What a handler gives back: an item when one is complete, or the error that stops it.
pub(super) type Step = std::result::Result<Option<Item>, ParseError>;
