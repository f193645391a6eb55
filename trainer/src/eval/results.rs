//! The results of one BioASQ task as `results.json` stores them (written by answering, read by
//! `trainer report`), and their Table 3 rendering.

use serde::{Deserialize, Serialize};

use crate::eval::metrics::TaskMetrics;

/// Decoding settings of the answering step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnswerSettings {
    pub beams: usize,
    pub max_new_tokens: usize,
    /// Prompt + answer budget in tokens; contexts are cut from the left to fit.
    pub max_len: usize,
    /// Answer only the first N factoid questions (tests, demos); `None` = all.
    pub limit: Option<usize>,
    /// Use at most K contexts per question (tests, demos); `None` = all.
    #[serde(default)]
    pub max_contexts: Option<usize>,
}

/// Results of one task, as written to `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// Config task name, e.g. `bioasq-4b`.
    pub task: String,
    /// Row label of Table 3, e.g. `4b`.
    pub label: String,
    pub model: String,
    pub settings: AnswerSettings,
    /// Factoid questions with no context in the test table (answered with nothing).
    pub questions_without_context: usize,
    pub metrics: TaskMetrics,
}

/// Markdown Table 3: one row per task and measure, mean over test batches (the BioASQ
/// convention) and over all questions side by side.
pub fn table3_markdown(results: &[TaskResult]) -> String {
    let mut s = String::from(
        "BioASQ factoid QA (Table 3 layout). Mean over test batches = BioASQ convention; \
         all questions = micro-average.\n\n\
         | Task | Measure | Mean over batches | All questions | Questions | Batches | Model |\n\
         |---|---|---:|---:|---:|---:|---|\n",
    );
    for r in results {
        let (mb, all) = (&r.metrics.mean_over_batches, &r.metrics.all_questions);
        let rows = [
            ("ACC (strict)", mb.strict_acc, all.strict_acc),
            ("ACC (lenient)", mb.lenient_acc, all.lenient_acc),
            ("MRR", mb.mrr, all.mrr),
        ];
        for (name, a, b) in rows {
            s.push_str(&format!(
                "| {} | {name} | {:.4} | {:.4} | {} | {} | {} |\n",
                r.label,
                a,
                b,
                all.questions,
                r.metrics.batches.len(),
                r.model
            ));
        }
    }
    s
}

