//! `trainer eval --ppl`: cross-entropy, perplexity and bits per byte on the validation
//! shards, honestly and with the paper's protocol side by side (Table 4 layout).
//!
//! - **Honest, packed**: every row of `shards/val/*.arrow` (packed 2048-token sequences, no
//!   padding); CE = sum of next-token NLLs / number of predicted tokens (L−1 per row).
//! - **Honest, one document per row**: the same token stream cut into its documents where the
//!   shards' `doc_starts` say (closing EOS not included), each truncated to 512 tokens and right-padded with id 0; padded
//!   targets are masked; CE = sum NLL / number of real predicted tokens.
//! - **Paper protocol** (BioMamba's evaluation code): the same 512-token document rows, but
//!   padding targets are scored like real tokens and CE = mean over batches of the per-batch
//!   mean loss. Padding after the first pad is trivially predictable, so this number is not
//!   comparable to the honest ones.
//!
//! Shards made with `[tokenize] sequences = "document"` already hold one (truncated, padded) document
//! per row: their documents are the rows' real tokens, and the packed protocol does not apply.
//!
//! Every domain with validation shards is evaluated (PubMed's `shards/val`, each corpus's
//! `shards/<name>/val`), for the model and for any `--baseline` model beside it (the initial model:
//! the check for forgetting), into one table.
//!
//! Bits per byte = total NLL / ln 2 / UTF-8 bytes of the predicted tokens, where a token's
//! bytes are read from the byte-level BPE vocabulary (`token_bytes`; EOS and other special
//! tokens count 0 bytes: they are not text). Not defined for the paper protocol.

use crate::model::scan::ScanBackend;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::eval::token_bytes::TokenBytes;
use crate::model::MambaLm;
use crate::model::hf::load_pretrained;
use crate::train::data::{SequenceSource, Shards};
use crate::train::loss::next_token_nll;

/// What is evaluated: packed validation rows, and the documents they hold.
pub struct Validation {
    pub rows: Vec<Vec<u32>>,
    pub docs: Vec<Vec<u32>>,
}

impl Validation {
    /// The first `max_rows` rows of the shards in `dir` (name order) and their documents
    /// ([`documents`], cut where the shards' `doc_starts` say).
    pub fn read(dir: &Path, max_rows: Option<usize>, eos: u32) -> Result<Self> {
        let shards = Shards::open_dir(dir)?;
        let n = shards.len().min(max_rows.unwrap_or(usize::MAX));
        let rows = (0..n)
            .map(|i| shards.sequence(i))
            .collect::<Result<Vec<_>>>()?;
        if shards.set().sequences() == schemas::shards::Sequences::Document {
            // One document per row already: its real tokens, the closing EOS (if it fit) dropped.
            let docs = rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let mut d = r[..shards.set().length(i)].to_vec();
                    if d.last() == Some(&eos) {
                        d.pop();
                    }
                    (!d.is_empty()).then_some(d)
                })
                .collect();
            return Ok(Self {
                rows: Vec::new(),
                docs,
            });
        }
        let starts: Vec<Vec<u32>> = (0..n)
            .map(|i| shards.set().doc_starts(i).to_vec())
            .collect();
        Ok(Self {
            docs: documents(&rows, &starts, eos),
            rows,
        })
    }
}

/// The documents of packed `rows` whose document starts are `starts[r]` (positions in row `r`):
/// the token stream cut at every start, each document's closing `eos` dropped. Empty documents
/// are skipped, and so is one still open at the end of the rows (its EOS not among them).
pub fn documents(rows: &[Vec<u32>], starts: &[Vec<u32>], eos: u32) -> Vec<Vec<u32>> {
    let stream: Vec<u32> = rows.iter().flatten().copied().collect();
    let mut cuts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for (row, row_starts) in rows.iter().zip(starts) {
        cuts.extend(row_starts.iter().map(|&p| offset + p as usize));
        offset += row.len();
    }
    if cuts.first() != Some(&0) {
        cuts.insert(0, 0);
    }
    cuts.push(stream.len());
    cuts.windows(2)
        .filter_map(|w| match stream[w[0]..w[1]].split_last() {
            Some((&last, doc)) if last == eos && !doc.is_empty() => Some(doc.to_vec()),
            _ => None,
        })
        .collect()
}

/// The EOS id the shards under `data` were packed with (the pack manifest's), else `fallback`
/// with a warning (shards made elsewhere).
pub fn eos_of_shards(data: &schemas::Layout, fallback: u32) -> Result<u32> {
    Ok(match schemas::shards::pack_facts(data)? {
        Some(facts) => facts.eos_id,
        None => {
            tracing::warn!(
                "no pack manifest under {} (shards not made by `pipeline tokenize` there): \
                 taking EOS id {fallback} from [finetune] eos",
                data.root().display()
            );
            fallback
        }
    })
}

/// One protocol's numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PplResult {
    pub protocol: String,
    pub description: String,
    /// Nats per predicted token.
    pub cross_entropy: f64,
    pub perplexity: f64,
    pub bits_per_byte: Option<f64>,
    /// Predicted tokens scored (padding included for the paper protocol).
    pub tokens: u64,
    pub bytes: Option<u64>,
    pub rows: usize,
}

/// Per-position NLLs `[rows][len-1]` of `ids` (row-major, all rows the same length).
fn nll_rows<B: ScanBackend>(
    model: &MambaLm<B>,
    rows: &[&[u32]],
    device: &B::Device,
) -> Result<Vec<Vec<f64>>> {
    let len = rows[0].len();
    let flat: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.iter().map(|&t| t as i64))
        .collect();
    let ids: Tensor<B, 2, Int> =
        Tensor::from_data(TensorData::new(flat, [rows.len(), len]), device);
    let nll = next_token_nll(model.forward(ids.clone()), ids);
    let v = nll
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| anyhow::anyhow!("reading NLLs: {e:?}"))?;
    Ok(v.chunks(len - 1).map(<[f64]>::to_vec).collect())
}

/// Settings of a perplexity evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PplSettings {
    pub batch_size: usize,
    pub doc_len: usize,
    pub eos: u32,
    pub max_rows: Option<usize>,
}

/// All three protocols on the validation rows and their documents.
pub fn evaluate<B: ScanBackend>(
    model: &MambaLm<B>,
    bytes: &TokenBytes,
    data: &Validation,
    s: &PplSettings,
    device: &B::Device,
) -> Result<Vec<PplResult>> {
    let (rows, docs) = (&data.rows, &data.docs);
    if rows.is_empty() && docs.is_empty() {
        bail!("no validation rows to evaluate");
    }
    if s.batch_size == 0 || s.doc_len < 2 {
        bail!("batch size must be ≥ 1 and document length ≥ 2");
    }
    let n_batches = rows.len().div_ceil(s.batch_size) + docs.len().div_ceil(s.batch_size);
    let bar = schemas::progress::Progress::new(
        "perplexity",
        n_batches as u64,
        schemas::progress::Unit::Count("batches"),
    );

    // Honest, packed.
    let (mut nll, mut toks, mut nbytes) = (0f64, 0u64, 0u64);
    for chunk in rows.chunks(s.batch_size) {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        for (r, row_nll) in refs.iter().zip(nll_rows(model, &refs, device)?) {
            nll += row_nll.iter().sum::<f64>();
            toks += row_nll.len() as u64;
            nbytes += bytes.count(r[1..].iter().copied());
        }
        bar.inc(1);
    }
    let packed = (!rows.is_empty()).then(|| {
        finish(
            "honest-packed",
            &format!(
                "honest: packed {}-token validation rows, sum NLL / predicted tokens",
                rows[0].len()
            ),
            nll,
            toks,
            Some(nbytes),
            rows.len(),
        )
    });

    // One document per row: honest (padding masked) and paper (padding scored, mean of batch means).
    let (mut nll, mut toks, mut nbytes) = (0f64, 0u64, 0u64);
    let mut batch_means = Vec::new();
    let mut padded_tokens = 0u64;
    for chunk in docs.chunks(s.batch_size) {
        let padded: Vec<Vec<u32>> = chunk
            .iter()
            .map(|d| {
                let mut r: Vec<u32> = d.iter().copied().take(s.doc_len).collect();
                r.resize(s.doc_len, s.eos);
                r
            })
            .collect();
        let refs: Vec<&[u32]> = padded.iter().map(Vec::as_slice).collect();
        let mut batch_sum = 0f64;
        for ((doc, row), row_nll) in chunk
            .iter()
            .zip(&padded)
            .zip(nll_rows(model, &refs, device)?)
        {
            let real = doc.len().min(s.doc_len);
            // Target t+1 is real when t+1 < real.
            let scored = real.saturating_sub(1);
            nll += row_nll[..scored].iter().sum::<f64>();
            toks += scored as u64;
            nbytes += bytes.count(row[1..real].iter().copied());
            batch_sum += row_nll.iter().sum::<f64>();
        }
        padded_tokens += (chunk.len() * (s.doc_len - 1)) as u64;
        batch_means.push(batch_sum / (chunk.len() * (s.doc_len - 1)) as f64);
        bar.inc(1);
    }
    bar.finish();
    if docs.is_empty() {
        return Ok(packed.into_iter().collect());
    }
    let honest_docs = finish(
        "honest-documents",
        &format!(
            "honest: one document per row, truncated/padded to {}, padded targets masked, sum NLL / real predicted tokens",
            s.doc_len
        ),
        nll,
        toks,
        Some(nbytes),
        docs.len(),
    );
    let ce = batch_means.iter().sum::<f64>() / batch_means.len() as f64;
    let paper = PplResult {
        protocol: "paper".into(),
        description: format!(
            "paper protocol: one document per row padded to {}, padding scored, mean of per-batch mean losses (batch {})",
            s.doc_len, s.batch_size
        ),
        cross_entropy: ce,
        perplexity: ce.exp(),
        bits_per_byte: None,
        tokens: padded_tokens,
        bytes: None,
        rows: docs.len(),
    };
    Ok(packed.into_iter().chain([honest_docs, paper]).collect())
}

fn finish(
    protocol: &str,
    description: &str,
    nll: f64,
    toks: u64,
    bytes: Option<u64>,
    rows: usize,
) -> PplResult {
    let ce = nll / toks.max(1) as f64;
    PplResult {
        protocol: protocol.into(),
        description: description.into(),
        cross_entropy: ce,
        perplexity: ce.exp(),
        bits_per_byte: bytes
            .filter(|&b| b > 0)
            .map(|b| nll / std::f64::consts::LN_2 / b as f64),
        tokens: toks,
        bytes,
        rows,
    }
}

/// Markdown in the layout of the paper's Table 4.
pub fn table4_markdown(model: &str, results: &[PplResult]) -> String {
    let mut s = String::from(
        "Held-out PubMed (validation shards), Table 4 layout. Only the honest rows are \
         comparable across models; the paper protocol scores padding.\n\n\
         | Model | Protocol | Cross-entropy (nats/token) | Perplexity | Bits per byte | Predicted tokens | Rows |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {model} | {} | {:.4} | {:.3} | {} | {} | {} |\n",
            r.description,
            r.cross_entropy,
            r.perplexity,
            r.bits_per_byte
                .map_or("n/a".to_string(), |b| format!("{b:.4}")),
            r.tokens,
            r.rows
        ));
    }
    s
}

/// The validation shard directories of every domain under `data`: PubMed's `shards/val` and each
/// corpus's `shards/<name>/val`, those that exist (PubMed first, then by name).
pub fn domains(data: &schemas::Layout) -> Result<Vec<(String, std::path::PathBuf)>> {
    use schemas::layout::{PUBMED, TRAIN, VAL};
    let mut out = Vec::new();
    if data.shards(VAL).is_dir() {
        out.push((PUBMED.to_string(), data.shards(VAL)));
    }
    for dir in schemas::layout::subdirectories(&data.shards_root())? {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name != TRAIN && name != VAL && dir.join(VAL).is_dir() {
            out.push((name.clone(), data.domain_shards(&name, VAL)));
        }
    }
    if out.is_empty() {
        bail!(
            "no validation shards under {} (run `pipeline tokenize` first)",
            data.shards_root().display()
        );
    }
    Ok(out)
}

/// One model's results on one domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainResults {
    pub model: String,
    pub domain: String,
    pub shards: String,
    pub results: Vec<PplResult>,
}

/// Per-domain perplexity of several models side by side: one row per domain and protocol, one
/// perplexity column per model.
pub fn domains_markdown(models: &[String], all: &[DomainResults]) -> String {
    let mut s = String::from(
        "Held-out perplexity per domain (validation shards). Only the honest rows are comparable \
         across models; the paper protocol scores padding.\n\n| Domain | Protocol |",
    );
    for m in models {
        s.push_str(&format!(" {m} |"));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---:|".repeat(models.len()));
    s.push('\n');
    let first = &models[0];
    for d in all.iter().filter(|d| &d.model == first) {
        for r in &d.results {
            s.push_str(&format!("| {} | {} |", d.domain, r.protocol));
            for m in models {
                let cell = all
                    .iter()
                    .find(|x| &x.model == m && x.domain == d.domain)
                    .and_then(|x| x.results.iter().find(|y| y.protocol == r.protocol))
                    .map_or("n/a".to_string(), |y| format!("{:.3}", y.perplexity));
                s.push_str(&format!(" {cell} |"));
            }
            s.push('\n');
        }
    }
    s
}

/// `trainer eval --ppl`: evaluate `model_dir` (and each of `baselines` beside it) on every
/// domain's validation shards; write `ppl.json`/`ppl.md`. With one domain and no baseline the
/// table is Table 4's layout; otherwise one row per domain and protocol, a column per model.
/// `results` in ppl.json are the model's on the first domain (PubMed when present).
pub fn run<B: ScanBackend>(
    model_dir: &Path,
    baselines: &[std::path::PathBuf],
    tokenizer: &tokenizers::Tokenizer,
    domains: &[(String, std::path::PathBuf)],
    out: &Path,
    s: &PplSettings,
    device: &B::Device,
) -> Result<Vec<PplResult>> {
    let bytes = TokenBytes::from_tokenizer(tokenizer)?;
    let data = domains
        .iter()
        .map(|(name, dir)| {
            Validation::read(dir, s.max_rows, s.eos).with_context(|| format!("domain {name}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut all = Vec::new();
    let mut names = Vec::new();
    for dir in std::iter::once(model_dir).chain(baselines.iter().map(|p| p.as_path())) {
        let (_, model) = load_pretrained::<B>(dir, device)?;
        let name = dir.display().to_string();
        for ((domain, shards), val) in domains.iter().zip(&data) {
            tracing::info!("perplexity of {name} on {domain}");
            all.push(DomainResults {
                model: name.clone(),
                domain: domain.clone(),
                shards: shards.display().to_string(),
                results: evaluate(&model, &bytes, val, s, device)
                    .with_context(|| format!("{name} on {domain}"))?,
            });
        }
        names.push(name);
    }
    let results = all[0].results.clone();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let md = if all.len() == 1 {
        table4_markdown(&names[0], &results)
    } else {
        domains_markdown(&names, &all)
    };
    let mut j = serde_json::to_vec_pretty(&serde_json::json!({
        "table": "perplexity", "model": names[0], "shards": all[0].shards,
        "settings": s, "results": results, "domains": all,
    }))?;
    j.push(b'\n');
    schemas::atomic::write_atomic(out.join("ppl.json"), &j)?;
    schemas::atomic::write_atomic(out.join("ppl.md"), md.as_bytes())?;
    print!("{md}");
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_eos_and_the_open_tail_is_dropped() {
        let rows = vec![vec![5, 6, 0, 7], vec![8, 0, 0, 9]];
        let starts = testkit::shards::doc_starts(&rows, 0);
        assert_eq!(starts, vec![vec![0, 3], vec![2, 3]]);
        assert_eq!(documents(&rows, &starts, 0), vec![vec![5, 6], vec![7, 8]]);
    }

    /// A model whose every NLL is known: all weights zero → uniform logits → NLL = ln V.
    #[test]
    fn document_shards_are_their_rows_real_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let docs = vec![vec![1, 2, 3, 0], vec![4, 5, 6, 7, 8, 9], vec![5, 0]];
        testkit::shards::write_documents(&dir.path().join("shard-00000.arrow"), &docs, 5, 16, 0)
            .unwrap();
        let v = Validation::read(dir.path(), None, 0).unwrap();
        // No packed rows; the closing EOS dropped where it fit, the truncated one kept whole.
        assert!(v.rows.is_empty());
        assert_eq!(v.docs, [vec![1, 2, 3], vec![4, 5, 6, 7, 8], vec![5]]);
    }

    #[test]
    fn protocols_on_a_uniform_model() {
        type Be = burn::backend::NdArray<f32>;
        let dev = Default::default();
        let v = 16;
        let cfg = crate::MambaConfig::new(v, 8, 1);
        let mut model = cfg.init::<Be>(&dev);
        model.embeddings = burn::module::Param::from_tensor(Tensor::zeros([v, 8], &dev));
        let bytes = TokenBytes::from_tokenizer(&gpt2_like_tokenizer()).unwrap();
        // Packed rows of length 4: docs [1,2,3], [4], [5,6]; trailing open doc [7].
        let rows = vec![vec![1, 2, 3, 0], vec![4, 0, 5, 6], vec![0, 7, 7, 7]];
        let s = PplSettings {
            batch_size: 2,
            doc_len: 3,
            eos: 0,
            max_rows: None,
        };
        let data = Validation {
            docs: documents(&rows, &testkit::shards::doc_starts(&rows, 0), 0),
            rows,
        };
        let r = evaluate(&model, &bytes, &data, &s, &dev).unwrap();
        let ln_v = (v as f64).ln();
        assert_eq!(r.len(), 3);
        // Packed: 3 rows × 3 targets.
        assert_eq!(r[0].tokens, 9);
        assert!((r[0].cross_entropy - ln_v).abs() < 1e-5);
        // Documents: [1,2,3] → 2 targets, [4] → 0, [5,6] → 1.
        assert_eq!(r[1].tokens, 3);
        assert_eq!(r[1].rows, 3);
        // Token i (1..=7) is the single byte 'a'+i-1 in the test vocabulary.
        assert_eq!(r[1].bytes, Some(3));
        assert!((r[1].bits_per_byte.unwrap() - ln_v / 2f64.ln()).abs() < 1e-5);
        // Paper: padding scored: 3 docs × 2 targets.
        assert_eq!(r[2].tokens, 6);
        assert!((r[2].cross_entropy - ln_v).abs() < 1e-5);
        assert_eq!(r[2].bits_per_byte, None);
    }

    fn gpt2_like_tokenizer() -> tokenizers::Tokenizer {
        let mut vocab = serde_json::Map::new();
        vocab.insert("<|endoftext|>".into(), 0.into());
        for i in 1..16u8 {
            vocab.insert(((b'a' + i - 1) as char).to_string(), i.into());
        }
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "BPE", "vocab": vocab, "merges": []}
        });
        tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json).unwrap()).unwrap()
    }
}
