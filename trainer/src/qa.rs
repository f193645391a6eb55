//! BioASQ factoid QA data for the trainer: reading the `bioasq` Arrow tables
//! (`schemas::bioasq`) and turning examples into prompt/target token ids.
//!
//! Prompt `"{context}\nQuestion: {question}\nAnswer:"`, target `" " + answer` + EOS. The
//! context and the rest of the prompt are tokenized separately, so the context can be cut
//! from the left at token level (keeping the question and "Answer:") when the prompt does
//! not fit.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use arrow::ipc::reader::FileReader;
use tokenizers::Tokenizer;

/// One row of an examples table (`schemas::bioasq::examples_schema`).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub question_id: String,
    pub question: String,
    pub context: String,
    pub answer_text: Option<String>,
    pub context_source: String,
}

/// One row of a golden table (`schemas::bioasq::golden_schema`).
#[derive(Debug, Clone, PartialEq)]
pub struct Golden {
    pub question_id: String,
    pub qtype: String,
    pub body: String,
    /// Synonym lists.
    pub exact_answer: Vec<Vec<String>>,
    /// Test batch (e.g. "4B1"); falls back to the source file name when null.
    pub batch: String,
    /// Whether the row comes from a golden test batch file (`batch` not null), as opposed to a
    /// training file that repeats a test question.
    pub in_batch: bool,
}

fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let f = File::open(path).with_context(|| format!("opening table {}", path.display()))?;
    let reader = FileReader::try_new(f, None)
        .with_context(|| format!("{}: not an Arrow IPC file", path.display()))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading record batches of {}", path.display()))
}

fn column<'a>(b: &'a RecordBatch, path: &Path, name: &str, ty: &DataType) -> Result<&'a dyn Array> {
    let c = b
        .column_by_name(name)
        .with_context(|| format!("{}: missing column `{name}`", path.display()))?;
    if c.data_type() != ty {
        bail!(
            "{}: column `{name}` has type {}, expected {ty}",
            path.display(),
            c.data_type()
        );
    }
    Ok(c.as_ref())
}

fn utf8_at(a: &dyn Array, i: usize) -> Option<String> {
    let s = a.as_string::<i32>();
    (!s.is_null(i)).then(|| s.value(i).to_string())
}

fn required(a: &dyn Array, i: usize, path: &Path, name: &str, row: usize) -> Result<String> {
    utf8_at(a, i).with_context(|| format!("{}: row {row}: `{name}` is null", path.display()))
}

/// Read every row of an examples table.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for b in read_batches(path)? {
        let col = |n: &str| column(&b, path, n, &DataType::Utf8);
        let (id, qid, q, ctx, ans, src) = (
            col("id")?,
            col("question_id")?,
            col("question")?,
            col("context")?,
            col("answer_text")?,
            col("context_source")?,
        );
        // answer_start is not needed here, but a table without it is not an examples table.
        column(&b, path, "answer_start", &DataType::Int64)?.as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let row = out.len();
            out.push(Example {
                id: required(id, i, path, "id", row)?,
                question_id: required(qid, i, path, "question_id", row)?,
                question: required(q, i, path, "question", row)?,
                context: required(ctx, i, path, "context", row)?,
                answer_text: utf8_at(ans, i),
                context_source: required(src, i, path, "context_source", row)?,
            });
        }
    }
    Ok(out)
}

/// Read every row of a golden table.
pub fn read_golden(path: &Path) -> Result<Vec<Golden>> {
    let golden_ty = schemas::bioasq::golden_schema();
    let exact_ty = golden_ty
        .field_with_name("exact_answer")
        .expect("schema has exact_answer")
        .data_type()
        .clone();
    let docs_ty = golden_ty
        .field_with_name("documents")
        .expect("schema has documents")
        .data_type()
        .clone();
    let mut out = Vec::new();
    for b in read_batches(path)? {
        let col = |n: &str| column(&b, path, n, &DataType::Utf8);
        let (qid, ty, body, batch, src) = (
            col("question_id")?,
            col("type")?,
            col("body")?,
            col("batch")?,
            col("source_file")?,
        );
        column(&b, path, "documents", &docs_ty)?
            .as_list::<i32>()
            .values()
            .as_primitive::<UInt64Type>();
        let exact = column(&b, path, "exact_answer", &exact_ty)?.as_list::<i32>();
        for i in 0..b.num_rows() {
            let row = out.len();
            let question_id = required(qid, i, path, "question_id", row)?;
            let lists = exact.value(i);
            let lists = lists.as_list::<i32>();
            let mut exact_answer = Vec::with_capacity(lists.len());
            for j in 0..lists.len() {
                let syn = lists.value(j);
                let syn = syn.as_string::<i32>();
                exact_answer.push((0..syn.len()).map(|k| syn.value(k).to_string()).collect());
            }
            let (batch, in_batch) = match utf8_at(batch, i) {
                Some(b) => (b, true),
                None => (required(src, i, path, "source_file", row)?, false),
            };
            out.push(Golden {
                question_id,
                qtype: required(ty, i, path, "type", row)?,
                body: required(body, i, path, "body", row)?,
                exact_answer,
                batch,
                in_batch,
            });
        }
    }
    Ok(out)
}

/// A tokenized training example: `ids = prompt ++ target`, loss on the target only.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Number of leading prompt tokens (not scored).
    pub prompt_len: usize,
    /// Context tokens cut from the left to fit `max_len`.
    pub context_cut: usize,
}

/// Tokenizes prompts and targets for one tokenizer.
pub struct QaEncoder<'a> {
    pub tokenizer: &'a Tokenizer,
    pub eos: u32,
}

fn encode(tok: &Tokenizer, s: &str) -> Result<Vec<u32>> {
    Ok(tok
        .encode(s, false)
        .map_err(|e| anyhow::anyhow!("tokenizing {s:?}: {e}"))?
        .get_ids()
        .to_vec())
}

impl QaEncoder<'_> {
    /// Prompt ids for `(context, question)` of at most `max_len` tokens; returns the ids and
    /// how many context tokens were cut from the left. Errors when the question part alone
    /// does not fit.
    pub fn prompt(
        &self,
        context: &str,
        question: &str,
        max_len: usize,
    ) -> Result<(Vec<u32>, usize)> {
        let ctx = encode(self.tokenizer, context)?;
        let rest = encode(self.tokenizer, &format!("\nQuestion: {question}\nAnswer:"))?;
        if rest.len() > max_len {
            bail!(
                "question {question:?} takes {} tokens, more than the {max_len} allowed for a prompt",
                rest.len()
            );
        }
        let keep = ctx.len().min(max_len - rest.len());
        let cut = ctx.len() - keep;
        let mut ids = ctx[cut..].to_vec();
        ids.extend_from_slice(&rest);
        Ok((ids, cut))
    }

    /// Target ids: `" " + answer` then EOS.
    pub fn target(&self, answer: &str) -> Result<Vec<u32>> {
        let mut t = encode(self.tokenizer, &format!(" {answer}"))?;
        t.push(self.eos);
        Ok(t)
    }

    /// Full training example within `max_len` tokens; `None` when the example has no answer
    /// or its target alone leaves no room for the question.
    pub fn example(&self, ex: &Example, max_len: usize) -> Result<Option<Encoded>> {
        let Some(answer) = ex.answer_text.as_deref() else {
            return Ok(None);
        };
        let target = self.target(answer)?;
        if target.len() >= max_len {
            return Ok(None);
        }
        let (mut ids, context_cut) =
            match self.prompt(&ex.context, &ex.question, max_len - target.len()) {
                Ok(p) => p,
                Err(_) => return Ok(None),
            };
        let prompt_len = ids.len();
        ids.extend_from_slice(&target);
        Ok(Some(Encoded {
            ids,
            prompt_len,
            context_cut,
        }))
    }
}

/// A right-padded batch: `ids` `[rows, len]` (pad id 0), `mask[r][t] = 1` where `ids[r][t]`
/// is a scored target token.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddedBatch {
    pub ids: Vec<i64>,
    pub mask: Vec<f32>,
    pub rows: usize,
    pub len: usize,
}

/// Pad examples to the longest one (at least 2 tokens) with id `pad`.
pub fn pad_batch(examples: &[&Encoded], pad: u32) -> PaddedBatch {
    let len = examples
        .iter()
        .map(|e| e.ids.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let rows = examples.len();
    let mut ids = vec![pad as i64; rows * len];
    let mut mask = vec![0f32; rows * len];
    for (r, e) in examples.iter().enumerate() {
        for (t, &id) in e.ids.iter().enumerate() {
            ids[r * len + t] = id as i64;
            if t >= e.prompt_len {
                mask[r * len + t] = 1.0;
            }
        }
    }
    PaddedBatch {
        ids,
        mask,
        rows,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer built in memory: every test below is hand-checkable.
    fn word_tokenizer() -> Tokenizer {
        let words = [
            "<eos>", "a", "b", "c", "d", "e", "Question", ":", "Answer", "\n", "what", "?", "x",
        ];
        let vocab: serde_json::Map<String, serde_json::Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
            .collect();
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [{"id": 0, "content": "<eos>", "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": false},
                {"type": "Split", "pattern": {"Regex": "\\w+|[^\\w\\s]|\\n"},
                 "behavior": "Isolated", "invert": false}]},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "x"}
        });
        Tokenizer::from_bytes(serde_json::to_vec(&json).unwrap()).unwrap()
    }

    fn ex(context: &str, answer: Option<&str>) -> Example {
        Example {
            id: "q_001".into(),
            question_id: "q".into(),
            question: "what ?".into(),
            context: context.into(),
            answer_text: answer.map(String::from),
            context_source: "snippet".into(),
        }
    }

    #[test]
    fn prompt_and_target_layout() {
        let tok = word_tokenizer();
        let enc = QaEncoder {
            tokenizer: &tok,
            eos: 0,
        };
        let e = enc.example(&ex("a b c", Some("d")), 100).unwrap().unwrap();
        // a b c \n Question : what ? \n Answer : | d <eos>
        assert_eq!(e.ids, vec![1, 2, 3, 9, 6, 7, 10, 11, 9, 8, 7, 4, 0]);
        assert_eq!(e.prompt_len, 11);
        assert_eq!(e.context_cut, 0);
    }

    #[test]
    fn long_context_is_cut_from_the_left_keeping_the_question() {
        let tok = word_tokenizer();
        let enc = QaEncoder {
            tokenizer: &tok,
            eos: 0,
        };
        // Question part = 8 tokens, target = 2: max 11 leaves 1 context token.
        let e = enc.example(&ex("a b c", Some("d")), 11).unwrap().unwrap();
        assert_eq!(e.ids, vec![3, 9, 6, 7, 10, 11, 9, 8, 7, 4, 0]);
        assert_eq!(e.context_cut, 2);
        assert_eq!(e.ids.len(), 11);
        // No room for the question: skipped, not an error.
        assert_eq!(enc.example(&ex("a b c", Some("d")), 9).unwrap(), None);
        // No answer (test rows): skipped.
        assert_eq!(enc.example(&ex("a", None), 100).unwrap(), None);
    }

    #[test]
    fn padding_is_right_with_zero_and_masked() {
        let a = Encoded {
            ids: vec![5, 6, 7, 0],
            prompt_len: 2,
            context_cut: 0,
        };
        let b = Encoded {
            ids: vec![5, 8, 0],
            prompt_len: 1,
            context_cut: 0,
        };
        let p = pad_batch(&[&a, &b], 0);
        assert_eq!((p.rows, p.len), (2, 4));
        assert_eq!(p.ids, vec![5, 6, 7, 0, 5, 8, 0, 0]);
        assert_eq!(p.mask, vec![0., 0., 1., 1., 0., 1., 1., 0.]);
    }
}
