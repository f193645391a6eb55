//! Prompt/target encoding of every task, for training and answering.
//!
//! Every task uses one prompt layout, `"{context}\nQuestion: {question}\nAnswer:"`, and the
//! target `" " + answer` + EOS; the loss is on the target tokens only ([`pad_batch`]'s mask).
//! The answer text per task ([`answer_text`], [`crate::eval::items`]):
//!
//! | task | context | answer |
//! |---|---|---|
//! | BioASQ factoid | a snippet (training) / a document (test) | the answer as written in it |
//! | BioASQ yes/no | a snippet / a document | `yes` or `no` |
//! | BioASQ list | a snippet / a document | the entities it mentions, joined by `"; "` ([`LIST_SEPARATOR`]) |
//! | PubMedQA | the contexts as `LABEL: text`, joined by spaces | `yes`, `no` or `maybe` |
//!
//! PubMedQA's reasoning-free setting puts the long answer at the end of the context, on its own
//! line (`"{contexts}\nLong answer: {long answer}\nQuestion: …"`). The context and the rest of the
//! prompt are tokenized separately, so the context can be cut from the left at token level
//! (keeping the question and "Answer:") when the prompt does not fit: the contexts go first, the
//! long answer last.

use anyhow::{Result, bail};
use schemas::bioasq::{Example, qtype};
use tokenizers::Tokenizer;

/// How a list answer's entities are joined in a target, and split again in an answer.
pub const LIST_SEPARATOR: &str = "; ";

/// One prompt (and, for training, its answer) of any task, before tokenizing.
#[derive(Debug, Clone, PartialEq)]
pub struct QaItem {
    /// Where it comes from (an example id, a PMID), for errors.
    pub id: String,
    /// Cut from the left when the prompt does not fit.
    pub context: String,
    pub question: String,
    /// The target's text; `None` for test items.
    pub answer: Option<String>,
}

/// The training answer text of a BioASQ example ([`QaItem::answer`]): factoid and yes/no rows
/// their `answer_text`, list rows their entities joined by [`LIST_SEPARATOR`]; `None` for test rows.
pub fn answer_text(ex: &Example) -> Option<String> {
    if ex.qtype == qtype::LIST {
        ex.answer_list
            .as_ref()
            .filter(|l| !l.is_empty())
            .map(|l| l.join(LIST_SEPARATOR))
    } else {
        ex.answer_text.clone()
    }
}

impl QaItem {
    /// A BioASQ example as a prompt/answer pair.
    pub fn from_example(ex: &Example) -> Self {
        QaItem {
            id: ex.id.clone(),
            context: ex.context.clone(),
            question: ex.question.clone(),
            answer: answer_text(ex),
        }
    }
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

    /// The prompt of `item` ([`Self::prompt`]).
    pub fn item_prompt(&self, item: &QaItem, max_len: usize) -> Result<(Vec<u32>, usize)> {
        self.prompt(&item.context, &item.question, max_len)
    }

    /// Target ids: `" " + answer` then EOS.
    pub fn target(&self, answer: &str) -> Result<Vec<u32>> {
        let mut t = encode(self.tokenizer, &format!(" {answer}"))?;
        t.push(self.eos);
        Ok(t)
    }

    /// Full training example of `item` within `max_len` tokens; `None` when it has no answer or
    /// its target alone leaves no room for the question.
    pub fn item(&self, item: &QaItem, max_len: usize) -> Result<Option<Encoded>> {
        let Some(answer) = item.answer.as_deref() else {
            return Ok(None);
        };
        let target = self.target(answer)?;
        if target.len() >= max_len {
            return Ok(None);
        }
        let (mut ids, context_cut) = match self.item_prompt(item, max_len - target.len()) {
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

    /// Full training example of a BioASQ example ([`Self::item`] of [`QaItem::from_example`]).
    pub fn example(&self, ex: &Example, max_len: usize) -> Result<Option<Encoded>> {
        self.item(&QaItem::from_example(ex), max_len)
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
            qtype: qtype::FACTOID,
            answer_list: None,
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

    #[test]
    fn yesno_list_and_long_answer_layouts() {
        let tok = word_tokenizer();
        let enc = QaEncoder {
            tokenizer: &tok,
            eos: 0,
        };
        let mut y = ex("a b", Some("x"));
        y.qtype = qtype::YESNO;
        y.answer_text = Some("e".into()); // the word tokenizer knows no "yes": any word will do
        let e = enc.example(&y, 100).unwrap().unwrap();
        assert_eq!(&e.ids[e.prompt_len..], &[5, 0]);
        let mut l = ex("a b c", None);
        (l.qtype, l.answer_list) = (qtype::LIST, Some(vec!["a".into(), "c".into()]));
        assert_eq!(answer_text(&l).as_deref(), Some("a; c"));
        let e = enc.example(&l, 100).unwrap().unwrap();
        // a ; c <eos>  (";" is unknown: x = 12)
        assert_eq!(&e.ids[e.prompt_len..], &[1, 12, 3, 0]);
        l.answer_list = Some(vec![]);
        assert_eq!(answer_text(&l), None);
        // A line at the end of the context (the long answer) is cut last.
        let item = QaItem {
            id: "p".into(),
            context: "a b c\nd".into(),
            question: "what ?".into(),
            answer: Some("e".into()),
        };
        let e = enc.item(&item, 100).unwrap().unwrap();
        // a b c \n d \n Question : what ? \n Answer : | e <eos>
        assert_eq!(e.ids, vec![1, 2, 3, 9, 4, 9, 6, 7, 10, 11, 9, 8, 7, 5, 0]);
        let cut = enc.item(&item, 13).unwrap().unwrap();
        assert_eq!((cut.context_cut, &cut.ids[..3]), (2, &[3, 9, 4][..]));
    }
}
