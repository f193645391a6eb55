//! What the parser knows at each point of the document: the state of every open element, the leaf
//! fields whose text it captures, and the record being read.

use super::types::{Chemical, MeshDescriptor, OtherAbstract, RecordKind, Section};

/// What an open element is, on the paths we extract from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
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
pub(super) enum Field {
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

pub(super) fn child_state(parent: State, name: &[u8]) -> State {
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
pub(super) struct Draft {
    pub(super) kind: Option<RecordKind>,
    pub(super) start_offset: u64,
    pub(super) pmid: Option<u64>,
    pub(super) version: u32,
    pub(super) title: Option<String>,
    pub(super) book_title: Option<String>,
    pub(super) sections: Vec<Section>,
    /// An `Abstract` element was seen (abstract is `""`-joined sections, possibly none).
    pub(super) has_abstract: bool,
    pub(super) abstract_closed: bool,
    pub(super) other_abstracts: Vec<OtherAbstract>,
    pub(super) other_parts: Vec<String>,
    pub(super) languages: Vec<String>,
    pub(super) journal_title: Option<String>,
    pub(super) iso_abbreviation: Option<String>,
    pub(super) year_text: Option<String>,
    pub(super) medline_date: Option<String>,
    pub(super) date_parts: Vec<String>,
    pub(super) pub_date_seen: bool,
    pub(super) pub_date_closed: bool,
    pub(super) publication_types: Vec<String>,
    pub(super) mesh: Vec<MeshDescriptor>,
    pub(super) keywords: Vec<String>,
    pub(super) chemicals: Vec<Chemical>,
    pub(super) doi: Option<String>,
    pub(super) pmc_id: Option<String>,
    pub(super) id_list_seen: bool,
    pub(super) id_list_closed: bool,
    pub(super) citation_status: Option<String>,
    pub(super) medline_citation_seen: bool,
    /// First recoverable error inside this record.
    pub(super) error: Option<(u64, String)>,
}

/// Attributes a leaf needs, read at its start tag.
#[derive(Default)]
pub(super) struct LeafAttrs {
    pub(super) a: Option<String>,
    pub(super) b: Option<String>,
}
