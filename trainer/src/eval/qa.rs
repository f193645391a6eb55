//! BioASQ factoid QA data for the trainer: examples of the `bioasq` tables (read with
//! `schemas::bioasq`) turned into prompt/target token ids.
//!
//! Prompt `"{context}\nQuestion: {question}\nAnswer:"`, target `" " + answer` + EOS. The
//! context and the rest of the prompt are tokenized separately, so the context can be cut
//! from the left at token level (keeping the question and "Answer:") when the prompt does
//! not fit.

use anyhow::{Result, bail};
use schemas::bioasq::Example;
use tokenizers::Tokenizer;

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
            answer_start: None,
            pmid: None,
            context_source: schemas::bioasq::source::SNIPPET,
            split: schemas::bioasq::Split::Train,
            source_file: "train.json".into(),
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
