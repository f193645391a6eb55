//! `bioasq/`: BioASQ factoid questions as SQuAD-style examples and the official golden answers.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// 2: `split` in examples, `year` in golden.
pub const VERSION: u32 = 2;

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

/// SQuAD-style examples: one (question, context) pair per row.
pub fn examples_schema() -> SchemaRef {
    Arc::new(
        Schema::new(vec![
            utf8("id", false),
            utf8("question_id", false),
            utf8("question", false),
            utf8("context", false),
            utf8("answer_text", true),
            Field::new("answer_start", DataType::Int64, true),
            Field::new("pmid", DataType::UInt64, true),
            utf8("context_source", false),
            utf8("split", false),
            utf8("source_file", false),
        ])
        .with_metadata(crate::table_metadata("bioasq_examples", VERSION)),
    )
}

/// Golden answers of the official files: one row per question.
pub fn golden_schema() -> SchemaRef {
    let synonyms = DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)));
    Arc::new(
        Schema::new(vec![
            utf8("question_id", false),
            utf8("type", false),
            utf8("body", false),
            Field::new(
                "exact_answer",
                DataType::List(Arc::new(Field::new("item", synonyms, false))),
                false,
            ),
            Field::new(
                "documents",
                DataType::List(Arc::new(Field::new("item", DataType::UInt64, false))),
                false,
            ),
            utf8("batch", true),
            Field::new("year", DataType::Int32, true),
            utf8("source_file", false),
        ])
        .with_metadata(crate::table_metadata("bioasq_golden", VERSION)),
    )
}
