//! `shards/{train,val}/shard-NNNNN.arrow`: packed token sequences for the trainer.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub const VERSION: u32 = 1;

/// Token id type of a shard: u16 while the vocabulary fits, u32 beyond 65,535 tokens.
pub fn token_type(vocab_size: usize) -> DataType {
    if vocab_size <= u16::MAX as usize + 1 {
        DataType::UInt16
    } else {
        DataType::UInt32
    }
}

/// `input_ids`: FixedSizeList<token, seq_len>, one packed sequence per row.
/// `doc_starts`: List<UInt32>, positions inside the row where a new document begins
/// (the token after an EOS, and 0 when the row starts a document).
pub fn schema(seq_len: usize, vocab_size: usize) -> SchemaRef {
    let token = token_type(vocab_size);
    Arc::new(
        Schema::new(vec![
            Field::new(
                "input_ids",
                DataType::FixedSizeList(Arc::new(Field::new("item", token, false)), seq_len as i32),
                false,
            ),
            Field::new(
                "doc_starts",
                DataType::List(Arc::new(Field::new("item", DataType::UInt32, false))),
                false,
            ),
        ])
        .with_metadata(crate::table_metadata("shards", VERSION)),
    )
}
