//! Token shards for trainer tests, written with the one shard writer (`schemas::shards`).

use std::path::Path;

use anyhow::{Result, ensure};

/// Write `seqs` (each `seq_len` ids, read as one token stream) as one shard file. `doc_starts`
/// marks where a document begins: position 0 of the first row, and every position after an `eos`.
pub fn write_sequences(
    path: &Path,
    seqs: &[Vec<u32>],
    seq_len: usize,
    vocab_size: usize,
    eos: u32,
) -> Result<()> {
    ensure!(
        seqs.iter().all(|s| s.len() == seq_len),
        "every sequence must have {seq_len} tokens"
    );
    let tokens: Vec<u32> = seqs.iter().flatten().copied().collect();
    let batch = schemas::shards::batch(seq_len, vocab_size, &tokens, &doc_starts(seqs, eos))?;
    schemas::shards::write_shard(path, &batch)?;
    Ok(())
}

/// Write `docs` one per row (as `pipeline tokenize` with `sequences = "document"`): each truncated
/// to `seq_len` and right-padded with `pad`, its length recorded (`schemas::shards::document_batch`).
pub fn write_documents(
    path: &Path,
    docs: &[Vec<u32>],
    seq_len: usize,
    vocab_size: usize,
    pad: u32,
) -> Result<()> {
    ensure!(docs.iter().all(|d| !d.is_empty()), "empty document");
    let mut tokens = Vec::with_capacity(docs.len() * seq_len);
    let mut lengths = Vec::with_capacity(docs.len());
    for d in docs {
        let n = d.len().min(seq_len);
        tokens.extend_from_slice(&d[..n]);
        tokens.extend(std::iter::repeat_n(pad, seq_len - n));
        lengths.push(n as u32);
    }
    let starts = vec![vec![0u32]; docs.len()];
    let batch = schemas::shards::document_batch(seq_len, vocab_size, &tokens, &starts, &lengths)?;
    schemas::shards::write_shard(path, &batch)?;
    Ok(())
}

/// The `doc_starts` of `seqs` read as one token stream: position 0 of the first row, and every
/// position that follows an `eos` (as `pipeline tokenize` packs documents).
pub fn doc_starts(seqs: &[Vec<u32>], eos: u32) -> Vec<Vec<u32>> {
    let mut prev = None;
    seqs.iter()
        .map(|row| {
            let mut starts = Vec::new();
            for (p, &t) in row.iter().enumerate() {
                if prev.is_none_or(|e| e == eos) {
                    starts.push(p as u32);
                }
                prev = Some(t);
            }
            starts
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_start_after_each_eos() {
        let dir = std::env::temp_dir().join(format!("testkit-shards-{}", std::process::id()));
        let path = dir.join("shard-00000.arrow");
        write_sequences(&path, &[vec![5, 0, 6], vec![0, 7, 8]], 3, 16, 0).unwrap();
        let r = schemas::shards::ShardReader::open(&path).unwrap();
        assert_eq!(r.doc_starts(0), &[0, 2]);
        assert_eq!(r.doc_starts(1), &[1]);
        assert_eq!(r.sequence(1).to_u32_vec(), vec![0, 7, 8]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
