//! The results of one BioASQ task for one system as `results.json` stores them (written by
//! answering and by scoring a submission, read by `trainer report`), and Table 3: rows task ×
//! measure, one column per system, in Markdown and JSON.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::eval::metrics::{FactoidMetrics, TaskMetrics};

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

/// Results of one task for one system, as written to `results.json`. Files written before
/// `system`, `submission` and `missing` existed still load (the column is then the model).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// Config task name, e.g. `bioasq-4b`.
    pub task: String,
    /// Row label of Table 3, e.g. `4b`.
    pub label: String,
    /// Column label of Table 3: the system that answered. Default: the `--model` path
    /// (answering) or the submission's file name (scoring); `--label` sets it.
    #[serde(default)]
    pub system: String,
    /// The model that answered (answering); empty for a scored submission.
    #[serde(default)]
    pub model: String,
    /// The submission file scored (`trainer eval --submission`); absent for answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<String>,
    /// Decoding settings (answering); absent for a scored submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<AnswerSettings>,
    /// Factoid questions with no context in the test table (answered with nothing; answering).
    #[serde(default)]
    pub questions_without_context: usize,
    /// Factoid questions of the golden batches absent from the submission (scored 0).
    #[serde(default)]
    pub missing: usize,
    pub metrics: TaskMetrics,
}

impl TaskResult {
    /// The column of this result: `system`, else (older files) the model, else the submission.
    pub fn system_label(&self) -> &str {
        [&self.system, &self.model]
            .into_iter()
            .find(|s| !s.is_empty())
            .map(String::as_str)
            .or(self.submission.as_deref())
            .unwrap_or("?")
    }

    /// Where the answers came from, for the table's notes.
    fn source(&self) -> String {
        match &self.submission {
            Some(f) => format!("submission {f}"),
            None => format!("model {}", self.model),
        }
    }
}

/// One measure of Table 3: row name, JSON key, value.
type Measure = (&'static str, &'static str, fn(&FactoidMetrics) -> f64);

/// The three measures of Table 3.
const MEASURES: [Measure; 3] = [
    ("ACC (strict)", "strict_acc", |m| m.strict_acc),
    ("ACC (lenient)", "lenient_acc", |m| m.lenient_acc),
    ("MRR", "mrr", |m| m.mrr),
];

/// Table 3: rows task × measure, one column per system.
pub struct Table3<'a> {
    /// Column labels, in the order first seen.
    pub systems: Vec<String>,
    /// Row tasks `(label, task)`, sorted.
    pub tasks: Vec<(String, String)>,
    /// `cells[task][system]`.
    cells: Vec<Vec<Option<&'a TaskResult>>>,
}

impl<'a> Table3<'a> {
    /// Lay out `results`: columns by [`TaskResult::system_label`] in the order first seen,
    /// rows by task label. Two results for the same system and task are an error.
    pub fn new(results: &'a [TaskResult]) -> Result<Self> {
        let mut systems: Vec<String> = Vec::new();
        let mut tasks: Vec<(String, String)> = Vec::new();
        for r in results {
            let s = r.system_label().to_string();
            if !systems.contains(&s) {
                systems.push(s);
            }
            let t = (r.label.clone(), r.task.clone());
            if !tasks.contains(&t) {
                tasks.push(t);
            }
        }
        tasks.sort();
        let mut cells = vec![vec![None; systems.len()]; tasks.len()];
        for r in results {
            let si = systems.iter().position(|s| s == r.system_label()).unwrap();
            let ti = tasks
                .iter()
                .position(|(l, t)| *l == r.label && *t == r.task)
                .unwrap();
            if let Some(prev) = cells[ti][si].replace(r) {
                bail!(
                    "two results for system {:?} and task {}: {} and {}; give them different \
                     labels (`trainer eval --label`, or LABEL=PATH for `trainer report`)",
                    r.system_label(),
                    r.task,
                    prev.source(),
                    r.source()
                );
            }
        }
        Ok(Table3 {
            systems,
            tasks,
            cells,
        })
    }

    fn rows(
        &self,
        metric: fn(&TaskMetrics) -> &FactoidMetrics,
    ) -> Vec<(String, &str, Vec<Option<f64>>)> {
        let mut out = Vec::new();
        for (ti, (label, _)) in self.tasks.iter().enumerate() {
            for (name, _, f) in MEASURES {
                let vals = self.cells[ti]
                    .iter()
                    .map(|c| c.map(|r| f(metric(&r.metrics))))
                    .collect();
                out.push((label.clone(), name, vals));
            }
        }
        out
    }

    fn markdown_table(&self, s: &mut String, metric: fn(&TaskMetrics) -> &FactoidMetrics) {
        s.push_str("| Task | Measure |");
        for sys in &self.systems {
            s.push_str(&format!(" {} |", cell(sys)));
        }
        s.push_str("\n|---|---|");
        s.push_str(&"---:|".repeat(self.systems.len()));
        s.push('\n');
        for (label, name, vals) in self.rows(metric) {
            s.push_str(&format!("| {} | {name} |", cell(&label)));
            for v in vals {
                match v {
                    Some(v) => s.push_str(&format!(" {v:.4} |")),
                    None => s.push_str(" – |"),
                }
            }
            s.push('\n');
        }
    }

    /// Markdown: the table over the mean of the test batches (the BioASQ convention), the same
    /// over all questions, and where each column's numbers come from.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "BioASQ factoid QA (Table 3 layout), one column per system: mean over the test \
             batches (the BioASQ convention).\n\n",
        );
        self.markdown_table(&mut s, |m| &m.mean_over_batches);
        s.push_str("\nOver all questions (micro-average):\n\n");
        self.markdown_table(&mut s, |m| &m.all_questions);
        s.push_str(
            "\n| System | Task | Answers from | Questions | Batches | Missing | Without context |\n\
             |---|---|---|---:|---:|---:|---:|\n",
        );
        for (si, sys) in self.systems.iter().enumerate() {
            for (ti, (label, _)) in self.tasks.iter().enumerate() {
                if let Some(r) = self.cells[ti][si] {
                    s.push_str(&format!(
                        "| {} | {} | {} | {} | {} | {} | {} |\n",
                        cell(sys),
                        cell(label),
                        cell(&r.source()),
                        r.metrics.all_questions.questions,
                        r.metrics.batches.len(),
                        r.missing,
                        r.questions_without_context,
                    ));
                }
            }
        }
        s
    }

    /// JSON: `systems` (the columns), `rows` (task, measure, one value per system or null, for
    /// the mean over batches and over all questions) and `tasks` (every result, as loaded).
    pub fn json(&self, results: &[TaskResult]) -> Value {
        let mut rows = Vec::new();
        for (ti, (label, task)) in self.tasks.iter().enumerate() {
            for (name, key, f) in MEASURES {
                let vals = |m: fn(&TaskMetrics) -> &FactoidMetrics| -> Vec<Option<f64>> {
                    self.cells[ti]
                        .iter()
                        .map(|c| c.map(|r| f(m(&r.metrics))))
                        .collect()
                };
                rows.push(json!({
                    "task": task,
                    "label": label,
                    "measure": key,
                    "name": name,
                    "mean_over_batches": vals(|m| &m.mean_over_batches),
                    "all_questions": vals(|m| &m.all_questions),
                }));
            }
        }
        json!({
            "table": "bioasq-factoid",
            "systems": self.systems,
            "rows": rows,
            "tasks": results,
        })
    }
}

/// A Markdown table cell: `|` escaped, line breaks as spaces.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Markdown Table 3 of `results` ([`Table3::markdown`]); for one result, one system column.
pub fn table3_markdown(results: &[TaskResult]) -> String {
    match Table3::new(results) {
        Ok(t) => t.markdown(),
        Err(e) => format!("{e:#}\n"),
    }
}

/// `v` as pretty JSON with a final newline, keys sorted (how every JSON file of a result is
/// written).
pub fn pretty_json(v: &impl Serialize) -> Result<Vec<u8>> {
    let mut b = serde_json::to_vec_pretty(&serde_json::to_value(v)?)?;
    b.push(b'\n');
    Ok(b)
}

/// Write `bytes` to `out/name` atomically.
pub fn write_result_file(out: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    schemas::atomic::write_atomic(out.join(name), bytes)
        .with_context(|| format!("writing {}", out.join(name).display()))
}

/// Write a task's `details.jsonl` (one line per question of `details`), `results.json` and
/// `results.md` under `out` (created), as answering and submission scoring both do.
pub fn write_task_files<T: Serialize>(
    out: &Path,
    result: &TaskResult,
    details: &[T],
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut lines = Vec::new();
    for q in details {
        serde_json::to_writer(&mut lines, q)?;
        lines.push(b'\n');
    }
    write_result_file(out, "details.jsonl", &lines)?;
    write_result_file(out, "results.json", &pretty_json(result)?)?;
    write_result_file(
        out,
        "results.md",
        table3_markdown(std::slice::from_ref(result)).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::metrics::{QuestionScore, aggregate};

    fn result(task: &str, label: &str, system: &str, strict: &[f64]) -> TaskResult {
        let scored: Vec<(String, QuestionScore)> = strict
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                (
                    format!("B{}", i % 2 + 1),
                    QuestionScore {
                        strict: s,
                        lenient: s,
                        reciprocal_rank: s,
                    },
                )
            })
            .collect();
        TaskResult {
            task: task.into(),
            label: label.into(),
            system: system.into(),
            model: String::new(),
            submission: Some(format!("{system}.json")),
            settings: None,
            questions_without_context: 0,
            missing: 0,
            metrics: aggregate(&scored),
        }
    }

    /// A results.json written before issue #18 (no `system`, `submission`, `missing`) loads;
    /// its column is its model.
    #[test]
    fn old_results_json_loads_and_is_labelled_by_its_model() {
        let old = r#"{
          "task": "bioasq-4b", "label": "4b", "model": "runs/finetune-bioasq-4b/model",
          "settings": {"beams": 5, "max_new_tokens": 16, "max_len": 2048, "limit": null},
          "questions_without_context": 2,
          "metrics": {
            "batches": {"4B1": {"strict_acc": 0.5, "lenient_acc": 0.5, "mrr": 0.5, "questions": 2}},
            "mean_over_batches": {"strict_acc": 0.5, "lenient_acc": 0.5, "mrr": 0.5, "questions": 2},
            "all_questions": {"strict_acc": 0.5, "lenient_acc": 0.5, "mrr": 0.5, "questions": 2}
          }
        }"#;
        let r: TaskResult = serde_json::from_str(old).unwrap();
        assert_eq!(r.system_label(), "runs/finetune-bioasq-4b/model");
        assert_eq!(r.missing, 0);
        assert_eq!(r.settings.as_ref().unwrap().beams, 5);
        let md = table3_markdown(std::slice::from_ref(&r));
        assert!(
            md.contains("| Task | Measure | runs/finetune-bioasq-4b/model |"),
            "{md}"
        );
        assert!(md.contains("| 4b | MRR | 0.5000 |"), "{md}");
        // Written back, a scored submission has no settings and an answering run no submission.
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("submission").is_none());
        let sub = serde_json::to_value(result("t", "4b", "x", &[1.0])).unwrap();
        assert!(sub.get("settings").is_none());
    }

    #[test]
    fn systems_are_columns_in_order_seen_and_tasks_rows_sorted() {
        let results = vec![
            result("bioasq-5b", "5b", "ours", &[1.0, 0.0]),
            result("bioasq-4b", "4b", "ours", &[1.0, 1.0, 0.0, 0.0]),
            result("bioasq-4b", "4b", "BioBERT | v1", &[1.0, 1.0, 1.0, 0.0]),
        ];
        let t = Table3::new(&results).unwrap();
        assert_eq!(t.systems, ["ours", "BioBERT | v1"]);
        let md = t.markdown();
        assert!(
            md.contains("| Task | Measure | ours | BioBERT \\| v1 |"),
            "{md}"
        );
        // 4b: ours 0.5 (B1 1/2, B2 1/2); BioBERT B1 = 1, B2 = 1/2 -> 0.75 over batches.
        assert!(
            md.contains("| 4b | ACC (strict) | 0.5000 | 0.7500 |"),
            "{md}"
        );
        assert!(md.contains("| 5b | MRR | 0.5000 | – |"), "{md}");
        let rows_4b = md.find("| 4b | ACC (strict)").unwrap();
        assert!(rows_4b < md.find("| 5b | ACC (strict)").unwrap());
        // All questions: BioBERT 3/4.
        let all = &md[md.find("Over all questions").unwrap()..];
        assert!(
            all.contains("| 4b | ACC (strict) | 0.5000 | 0.7500 |"),
            "{all}"
        );
        let j = t.json(&results);
        assert_eq!(j["systems"], json!(["ours", "BioBERT | v1"]));
        assert_eq!(j["rows"].as_array().unwrap().len(), 6);
        assert_eq!(j["rows"][0]["label"], "4b");
        assert_eq!(j["rows"][0]["measure"], "strict_acc");
        assert_eq!(j["rows"][0]["mean_over_batches"], json!([0.5, 0.75]));
        assert_eq!(j["rows"][5]["mean_over_batches"], json!([0.5, null]));
        assert_eq!(j["tasks"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn the_same_system_twice_for_a_task_is_an_error() {
        let results = vec![
            result("bioasq-4b", "4b", "ours", &[1.0]),
            result("bioasq-4b", "4b", "ours", &[0.0]),
        ];
        let e = format!("{:#}", Table3::new(&results).err().unwrap());
        assert!(e.contains("\"ours\"") && e.contains("bioasq-4b"), "{e}");
    }
}
