//! The prompt/answer items of a task ([`QaItem`]): its training items, read from its training
//! table and chosen by its kinds, and the PubMedQA prompt of a question.
//!
//! - BioASQ tasks: the rows of the training table (`bioasq/<task>/train.arrow`, leak-free as
//!   `pipeline bioasq` builds it) whose `type` is one of the task's kinds, in table order; rows
//!   without an answer are skipped. Factoid and yes/no rows are one snippet each with its answer;
//!   list rows one snippet with the entities it mentions.
//! - PubMedQA tasks: the rows of `pubmedqa/train.arrow` (the 500 cross-validation questions), all
//!   of them or all but `dev_fold`'s; the context is the question's contexts as `LABEL: text`
//!   joined by spaces, the reasoning-free setting adds the long answer on a line of its own after
//!   them, the answer is the label.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use schemas::pubmedqa::PubmedqaRow;

use crate::config::{PubmedqaSetting, Resolved};
use crate::eval::qa::QaItem;

/// A PubMedQA question's context: each context as `LABEL: text` (just `text` when the label is
/// empty), joined by single spaces (as BioASQ document contexts join an abstract's sections).
pub fn pubmedqa_context(row: &PubmedqaRow) -> String {
    row.contexts
        .iter()
        .zip(&row.context_labels)
        .map(|(text, label)| {
            if label.is_empty() {
                text.clone()
            } else {
                format!("{label}: {text}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The prompt of a PubMedQA question in `setting`, with its label as the answer: reasoning-free
/// adds `"\nLong answer: {long answer}"` at the end of the context (cut from the left last).
pub fn pubmedqa_item(row: &PubmedqaRow, setting: PubmedqaSetting) -> QaItem {
    let context = pubmedqa_context(row);
    QaItem {
        id: row.pmid.to_string(),
        context: match setting {
            PubmedqaSetting::ReasoningRequired => context,
            PubmedqaSetting::ReasoningFree => {
                format!("{context}\nLong answer: {}", row.long_answer)
            }
        },
        question: row.question.clone(),
        answer: Some(row.label.clone()),
    }
}

/// The training items of task `r` (see the module docs), at most `[finetune] train_limit`, and
/// the table they come from.
pub fn training_items(r: &Resolved, data_dir: &Path) -> Result<(Vec<QaItem>, PathBuf)> {
    let path = data_dir.join(&r.tables.train);
    let mut items: Vec<QaItem> = if r.kinds().is_pubmedqa() {
        let setting = r.tables.setting.unwrap_or_default();
        schemas::pubmedqa::read(&path)?
            .iter()
            .filter(|row| r.tables.dev_fold.is_none() || row.fold != r.tables.dev_fold)
            .map(|row| pubmedqa_item(row, setting))
            .collect()
    } else {
        let types = r.kinds().qtypes();
        let rows = schemas::bioasq::read_examples(&path)?;
        let items: Vec<QaItem> = rows
            .iter()
            .filter(|e| types.contains(&e.qtype))
            .map(QaItem::from_example)
            .filter(|i| i.answer.is_some())
            .collect();
        ensure!(
            !items.is_empty() || rows.is_empty(),
            "{}: no training row of type {} (of {} rows); `pipeline bioasq` converts yes/no and \
             list questions of official-format training files only",
            path.display(),
            types.join(" or "),
            rows.len()
        );
        items
    };
    items.truncate(r.cfg.train_limit.unwrap_or(usize::MAX));
    Ok((items, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubmedqa_prompts_in_both_settings() {
        let row = PubmedqaRow {
            pmid: 7,
            question: "Does X help?".into(),
            contexts: vec!["We studied X.".into(), "X helped.".into()],
            context_labels: vec!["BACKGROUND".into(), String::new()],
            long_answer: "X helps.".into(),
            label: "yes".into(),
            split: "train".into(),
            fold: Some(1),
            year: None,
            meshes: vec![],
            reasoning_required_pred: "yes".into(),
            reasoning_free_pred: "yes".into(),
        };
        let rr = pubmedqa_item(&row, PubmedqaSetting::ReasoningRequired);
        assert_eq!(rr.context, "BACKGROUND: We studied X. X helped.");
        assert_eq!(rr.answer.as_deref(), Some("yes"));
        let rf = pubmedqa_item(&row, PubmedqaSetting::ReasoningFree);
        assert_eq!(
            rf.context,
            "BACKGROUND: We studied X. X helped.\nLong answer: X helps."
        );
        assert_eq!(rf.id, "7");
    }
}
