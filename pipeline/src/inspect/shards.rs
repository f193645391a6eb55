//! `pipeline inspect` of shard files (table `shards`): counts, token histogram and, with
//! `--decode N`, sequence N as text.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, anyhow, ensure};
use schemas::shards::ShardSet;
use tokenizers::Tokenizer;

use crate::tokenize::EOS_TOKEN;

/// Counts of a shard set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardCounts {
    pub shards: usize,
    pub rows: usize,
    /// Real tokens (document rows: the `lengths`; padding not counted).
    pub tokens: u64,
    /// Pad positions of document rows.
    pub padding: u64,
    /// Document starts over all rows.
    pub documents: u64,
    pub eos: u64,
}

/// A shard file, or every shard of a directory.
pub fn open(path: &Path) -> Result<ShardSet> {
    if path.is_dir() {
        ShardSet::open(path)
    } else {
        ShardSet::from_paths(&[path.to_path_buf()])
    }
}

/// Render counts, the 20 most frequent ids (decoded when a tokenizer is given) and, with `decode`,
/// sequence N as text (as ids when no tokenizer is given).
pub fn inspect_shards(
    path: &Path,
    decode: Option<usize>,
    tokenizer: Option<&Path>,
) -> Result<String> {
    use std::fmt::Write;
    let set = open(path)?;
    let tok = tokenizer
        .map(|p| {
            Tokenizer::from_file(p).map_err(|e| anyhow!("loading tokenizer {}: {e}", p.display()))
        })
        .transpose()?;
    let eos = tok
        .as_ref()
        .and_then(|t| t.token_to_id(EOS_TOKEN))
        .unwrap_or(0);
    let mut counts = ShardCounts {
        shards: set.shards().len(),
        rows: set.len(),
        ..Default::default()
    };
    let mut histogram: HashMap<u32, u64> = HashMap::new();
    for g in 0..set.len() {
        let seq = set.sequence(g);
        let real = set.length(g);
        counts.tokens += real as u64;
        counts.padding += (seq.len() - real) as u64;
        counts.documents += set.doc_starts(g).len() as u64;
        for i in 0..real {
            *histogram.entry(seq.get(i)).or_default() += 1;
        }
    }
    counts.eos = histogram.get(&eos).copied().unwrap_or(0);
    let mut out = String::new();
    writeln!(out, "{}", path.display())?;
    writeln!(
        out,
        "shards {}  rows {} ({})  seq_len {}  tokens {}  padding {}  documents starting {}  EOS ({eos}) {}  distinct ids {}",
        counts.shards,
        counts.rows,
        set.sequences().name(),
        set.seq_len().unwrap_or(0),
        counts.tokens,
        counts.padding,
        counts.documents,
        counts.eos,
        histogram.len()
    )?;
    let mut top: Vec<(u32, u64)> = histogram.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    writeln!(out, "top ids:")?;
    for (id, n) in top.iter().take(20) {
        let text = tok
            .as_ref()
            .and_then(|t| t.decode(&[*id], false).ok())
            .map(|s| format!("{s:?}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {id:>7} {n:>12} {:>6.2}%  {text}",
            100.0 * *n as f64 / counts.tokens.max(1) as f64
        )?;
    }
    if let Some(n) = decode {
        ensure!(
            n < set.len(),
            "--decode {n}: {} holds {} sequences",
            path.display(),
            set.len()
        );
        // Document rows: the real tokens only (the padding is no text).
        let mut ids = set.sequence(n).to_u32_vec();
        ids.truncate(set.length(n));
        let (shard, row) = set.locate(n);
        writeln!(
            out,
            "sequence {n} ({} row {row}), doc_starts {:?}:",
            set.shards()[shard].path().display(),
            set.doc_starts(n)
        )?;
        match &tok {
            Some(t) => {
                let text = t
                    .decode(&ids, false)
                    .map_err(|e| anyhow!("decoding sequence {n}: {e}"))?;
                writeln!(out, "{text}")?;
            }
            None => writeln!(out, "{ids:?}\n(pass --tokenizer to see text)")?,
        }
    }
    Ok(out)
}

/// Counts only (for tests and tools).
pub fn count(path: &Path) -> Result<ShardCounts> {
    let set = open(path)?;
    let mut c = ShardCounts {
        shards: set.shards().len(),
        rows: set.len(),
        ..Default::default()
    };
    for g in 0..set.len() {
        let real = set.length(g);
        c.tokens += real as u64;
        c.padding += (set.sequence(g).len() - real) as u64;
        c.documents += set.doc_starts(g).len() as u64;
    }
    Ok(c)
}
