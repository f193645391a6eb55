//! `parquet/abstracts/*.parquet` (one part per input XML file), `parquet/current/*.parquet`
//! (the current view: latest version of each PMID, deletions applied) and `deletions`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

/// Bumped whenever a column is added, removed or changes meaning.
pub const VERSION: u32 = 1;

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn list_of(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, false))),
        false,
    )
}

/// One `AbstractText` element: `{label, nlm_category, text}`.
pub fn section_fields() -> Fields {
    Fields::from(vec![
        utf8("label", true),
        utf8("nlm_category", true),
        utf8("text", false),
    ])
}

/// One `OtherAbstract`: `{type, language, text}`.
pub fn other_abstract_fields() -> Fields {
    Fields::from(vec![
        utf8("type", true),
        utf8("language", true),
        utf8("text", false),
    ])
}

/// One MeSH heading's descriptor: `{name, ui, major_topic}`.
pub fn mesh_fields() -> Fields {
    Fields::from(vec![
        utf8("name", false),
        utf8("ui", true),
        Field::new("major_topic", DataType::Boolean, false),
    ])
}

/// One `Chemical`: `{name, ui, registry_number}`.
pub fn chemical_fields() -> Fields {
    Fields::from(vec![
        utf8("name", false),
        utf8("ui", true),
        utf8("registry_number", true),
    ])
}

/// Schema of the abstracts table (per-file parts and the current view share it).
pub fn schema() -> SchemaRef {
    Arc::new(
        Schema::new(vec![
            Field::new("pmid", DataType::UInt64, false),
            Field::new("version", DataType::UInt32, false),
            utf8("title", true),
            utf8("abstract", true),
            list_of("abstract_sections", DataType::Struct(section_fields())),
            list_of("other_abstracts", DataType::Struct(other_abstract_fields())),
            list_of("languages", DataType::Utf8),
            utf8("journal_title", true),
            utf8("iso_abbreviation", true),
            Field::new("year", DataType::Int32, true),
            utf8("pub_date", true),
            list_of("publication_types", DataType::Utf8),
            list_of("mesh", DataType::Struct(mesh_fields())),
            list_of("keywords", DataType::Utf8),
            list_of("chemicals", DataType::Struct(chemical_fields())),
            utf8("doi", true),
            utf8("pmc_id", true),
            utf8("citation_status", true),
            utf8("record_kind", false),
            utf8("source_file", false),
            Field::new("record_index", DataType::UInt32, false),
        ])
        .with_metadata(crate::table_metadata("abstracts", VERSION)),
    )
}

/// Schema of the deletions table: one row per PMID named by a `DeleteCitation`.
pub fn deletions_schema() -> SchemaRef {
    Arc::new(
        Schema::new(vec![
            Field::new("pmid", DataType::UInt64, false),
            Field::new("version", DataType::UInt32, false),
            utf8("source_file", false),
            Field::new("record_index", DataType::UInt32, false),
        ])
        .with_metadata(crate::table_metadata("deletions", VERSION)),
    )
}
