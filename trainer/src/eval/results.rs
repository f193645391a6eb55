//! The results of one task for one system as `results.json` stores them (written by answering
//! and by scoring a submission, read by `trainer report`), and the results table: rows task ×
//! measure (every BioASQ exact-answer measure, PubMedQA's accuracy and macro-F1), one column per
//! system, published numbers as columns of their own, in Markdown and JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::eval::metrics::{Measures, PubmedqaMetrics, TaskMetrics};

/// Decoding settings of the answering step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnswerSettings {
    pub beams: usize,
    pub max_new_tokens: usize,
    /// Prompt + answer budget in tokens; contexts are cut from the left to fit.
    pub max_len: usize,
    /// Answer only the first N questions of each type (tests, demos); `None` = all.
    pub limit: Option<usize>,
    /// Use at most K contexts per question (tests, demos); `None` = all.
    #[serde(default)]
    pub max_contexts: Option<usize>,
    /// List questions: at most this many entities per answer (absent: no list questions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_answers: Option<usize>,
    /// PubMedQA: the setting answered in (`reasoning-required`, `reasoning-free`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
}

/// The measures of a result: BioASQ's (per batch, their mean, over all questions) or
/// PubMedQA's (over its test set). Stored untagged: `metrics.batches…` or `metrics.accuracy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResultMetrics {
    Bioasq(Box<TaskMetrics>),
    Pubmedqa(PubmedqaMetrics),
}

impl From<TaskMetrics> for ResultMetrics {
    fn from(m: TaskMetrics) -> Self {
        ResultMetrics::Bioasq(Box::new(m))
    }
}

/// Which aggregate a table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// BioASQ: the unweighted mean over the test batches (PubMedQA: its test set).
    MeanOverBatches,
    /// BioASQ: every question of the task (PubMedQA: its test set).
    AllQuestions,
}

impl ResultMetrics {
    /// The value of measure `key` ([`MEASURES`]) in `view`, if this result has it.
    pub fn value(&self, key: &str, view: View) -> Option<f64> {
        match self {
            ResultMetrics::Bioasq(m) => {
                let measures: &Measures = match view {
                    View::MeanOverBatches => &m.mean_over_batches,
                    View::AllQuestions => &m.all_questions,
                };
                measures.get(key)
            }
            ResultMetrics::Pubmedqa(m) => match key {
                "accuracy" => Some(m.accuracy),
                "macro_f1" => Some(m.macro_f1),
                _ => None,
            },
        }
    }

    /// Questions scored (all types).
    pub fn questions(&self) -> usize {
        match self {
            ResultMetrics::Bioasq(m) => m.all_questions.questions(),
            ResultMetrics::Pubmedqa(m) => m.questions,
        }
    }

    /// Test batches (PubMedQA: one test set).
    pub fn batches(&self) -> usize {
        match self {
            ResultMetrics::Bioasq(m) => m.batches.len(),
            ResultMetrics::Pubmedqa(_) => 1,
        }
    }
}

/// Results of one task for one system, as written to `results.json`. Files written before
/// `system`, `submission` and `missing` existed still load (the column is then the model).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// Config task name, e.g. `bioasq-4b`.
    pub task: String,
    /// Row label of the table, e.g. `4b`.
    pub label: String,
    /// Column label of the table: the system that answered. Default: the `--model` path
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
    /// Questions with no context in the test table (answering).
    #[serde(default)]
    pub questions_without_context: usize,
    /// Questions of the golden batches absent from the submission (scored 0).
    #[serde(default)]
    pub missing: usize,
    pub metrics: ResultMetrics,
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

/// The measures of the table, in row order: name, `results.json` key.
pub const MEASURES: [(&str, &str); 12] = [
    ("ACC (strict)", "strict_acc"),
    ("ACC (lenient)", "lenient_acc"),
    ("MRR", "mrr"),
    ("Yes/no ACC", "yesno_acc"),
    ("Yes/no F1 (yes)", "yesno_f1_yes"),
    ("Yes/no F1 (no)", "yesno_f1_no"),
    ("Yes/no macro-F1", "yesno_macro_f1"),
    ("List P", "list_precision"),
    ("List R", "list_recall"),
    ("List F1", "list_f1"),
    ("ACC", "accuracy"),
    ("Macro-F1", "macro_f1"),
];

/// A number reported in a paper, not measured by us: one row of the published-numbers TOML
/// (`[[result]]` with `system`, `label` (the task's row label), `source` and measures by their
/// `results.json` keys, e.g. `accuracy = 0.782`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedResult {
    pub system: String,
    pub label: String,
    pub source: String,
    #[serde(flatten)]
    pub values: BTreeMap<String, f64>,
}

/// The published-numbers file: `[[result]]` entries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    #[serde(default)]
    pub result: Vec<PublishedResult>,
}

impl Published {
    /// Read `path`; a measure that is not one of [`MEASURES`] or a value outside [0, 1] is an
    /// error naming the entry.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading published numbers {}", path.display()))?;
        let p: Published = toml::from_str(&text)
            .with_context(|| format!("parsing published numbers {}", path.display()))?;
        for r in &p.result {
            for (k, v) in &r.values {
                if !MEASURES.iter().any(|(_, key)| key == k) {
                    bail!(
                        "{}: {} / {}: unknown measure {k:?} (measures: {})",
                        path.display(),
                        r.system,
                        r.label,
                        MEASURES.map(|(_, k)| k).join(", ")
                    );
                }
                if !(0.0..=1.0).contains(v) {
                    bail!(
                        "{}: {} / {}: {k} = {v} is not a fraction in [0, 1] (write 78.2% as 0.782)",
                        path.display(),
                        r.system,
                        r.label
                    );
                }
            }
        }
        Ok(p)
    }
}

/// A column of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The system as the header shows it (published columns end in ` (published)`).
    pub name: String,
    pub published: bool,
}

/// What one (row label, column) holds: our results (one per task; tasks may share a label when
/// their measures differ) or published numbers.
#[derive(Default, Clone)]
struct Cell<'a> {
    results: Vec<&'a TaskResult>,
    published: BTreeMap<String, (f64, String)>,
}

impl Cell<'_> {
    fn value(&self, key: &str, view: View) -> Option<f64> {
        if let Some(v) = self.results.iter().find_map(|r| r.metrics.value(key, view)) {
            return Some(v);
        }
        match view {
            View::MeanOverBatches => self.published.get(key).map(|(v, _)| *v),
            View::AllQuestions => None,
        }
    }
    fn task(&self, key: &str) -> Option<&str> {
        self.results
            .iter()
            .find(|r| r.metrics.value(key, View::MeanOverBatches).is_some())
            .map(|r| r.task.as_str())
    }
}

/// The results table: rows task label × measure, one column per system.
pub struct Table3<'a> {
    /// Columns: systems in the order first seen, then published ones.
    pub columns: Vec<Column>,
    /// Row labels, sorted.
    pub labels: Vec<String>,
    /// `cells[label][column]`.
    cells: Vec<Vec<Cell<'a>>>,
}

impl<'a> Table3<'a> {
    /// Lay out `results`: columns by [`TaskResult::system_label`] in the order first seen, rows
    /// by task label. Two results of one system whose rows share a label and a measure are an
    /// error (so are two results for the same system and task).
    pub fn new(results: &'a [TaskResult]) -> Result<Self> {
        Self::with_published(results, &Published::default())
    }

    /// [`Self::new`] with published numbers as extra columns, `"SYSTEM (published)"`.
    pub fn with_published(results: &'a [TaskResult], published: &Published) -> Result<Self> {
        let mut columns: Vec<Column> = Vec::new();
        let mut labels: Vec<String> = Vec::new();
        for r in results {
            let s = r.system_label().to_string();
            if !columns.iter().any(|c| c.name == s && !c.published) {
                columns.push(Column {
                    name: s,
                    published: false,
                });
            }
            if !labels.contains(&r.label) {
                labels.push(r.label.clone());
            }
        }
        for p in &published.result {
            let name = format!("{} (published)", p.system);
            if !columns.iter().any(|c| c.name == name && c.published) {
                columns.push(Column {
                    name,
                    published: true,
                });
            }
            if !labels.contains(&p.label) {
                labels.push(p.label.clone());
            }
        }
        labels.sort();
        let mut cells = vec![vec![Cell::default(); columns.len()]; labels.len()];
        let label_index = |l: &str| labels.iter().position(|x| x == l).unwrap();
        for r in results {
            let ci = columns
                .iter()
                .position(|c| c.name == r.system_label() && !c.published)
                .unwrap();
            let cell = &mut cells[label_index(&r.label)][ci];
            for prev in &cell.results {
                let shared = MEASURES.iter().find(|(_, k)| {
                    [View::MeanOverBatches, View::AllQuestions].iter().any(|v| {
                        prev.metrics.value(k, *v).is_some() && r.metrics.value(k, *v).is_some()
                    })
                });
                if prev.task == r.task || shared.is_some() {
                    bail!(
                        "two results for system {:?} and task {} (row {}{}): {} and {}; give them \
                         different labels (`trainer eval --label`, or LABEL=PATH for `trainer \
                         report`)",
                        r.system_label(),
                        r.task,
                        r.label,
                        shared.map_or(String::new(), |(_, k)| format!(", measure {k}")),
                        prev.source(),
                        r.source()
                    );
                }
            }
            cell.results.push(r);
        }
        for p in &published.result {
            let name = format!("{} (published)", p.system);
            let ci = columns
                .iter()
                .position(|c| c.name == name && c.published)
                .unwrap();
            let cell = &mut cells[label_index(&p.label)][ci];
            for (k, v) in &p.values {
                if cell
                    .published
                    .insert(k.clone(), (*v, p.source.clone()))
                    .is_some()
                {
                    bail!(
                        "published numbers: {} / {} / {k} given twice",
                        p.system,
                        p.label
                    );
                }
            }
        }
        Ok(Table3 {
            columns,
            labels,
            cells,
        })
    }

    /// System names of the columns.
    pub fn systems(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// Rows: (label index, measure name, key) for every measure some column has for the label.
    fn rows(&self) -> Vec<(usize, &'static str, &'static str)> {
        let mut out = Vec::new();
        for li in 0..self.labels.len() {
            for (name, key) in MEASURES {
                let any = self.cells[li].iter().any(|c| {
                    c.value(key, View::MeanOverBatches).is_some()
                        || c.value(key, View::AllQuestions).is_some()
                });
                if any {
                    out.push((li, name, key));
                }
            }
        }
        out
    }

    fn markdown_table(&self, s: &mut String, view: View) {
        let cols: Vec<usize> = (0..self.columns.len())
            .filter(|&c| view == View::MeanOverBatches || !self.columns[c].published)
            .collect();
        s.push_str("| Task | Measure |");
        for &c in &cols {
            s.push_str(&format!(" {} |", cell(&self.columns[c].name)));
        }
        s.push_str("\n|---|---|");
        s.push_str(&"---:|".repeat(cols.len()));
        s.push('\n');
        for (li, name, key) in self.rows() {
            s.push_str(&format!("| {} | {name} |", cell(&self.labels[li])));
            for &c in &cols {
                match self.cells[li][c].value(key, view) {
                    Some(v) => s.push_str(&format!(" {v:.4} |")),
                    None => s.push_str(" – |"),
                }
            }
            s.push('\n');
        }
    }

    /// Markdown: the table over the mean of the test batches (the BioASQ convention; PubMedQA
    /// over its test set), with published columns; the same over all questions (ours only); where
    /// each column's numbers come from.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "Biomedical QA, one column per system: BioASQ exact answers (factoid, yes/no, list; \
             mean over the test batches, the BioASQ convention) and PubMedQA (its test set). \
             Columns marked (published) are numbers their authors reported, not measured by us.\n\n",
        );
        self.markdown_table(&mut s, View::MeanOverBatches);
        s.push_str("\nOver all questions (micro-average; our columns only):\n\n");
        self.markdown_table(&mut s, View::AllQuestions);
        s.push_str(
            "\n| System | Task | Answers from | Questions | Batches | Missing | Without context |\n\
             |---|---|---|---:|---:|---:|---:|\n",
        );
        for (ci, col) in self.columns.iter().enumerate() {
            for (li, label) in self.labels.iter().enumerate() {
                for r in &self.cells[li][ci].results {
                    s.push_str(&format!(
                        "| {} | {} | {} | {} | {} | {} | {} |\n",
                        cell(&col.name),
                        cell(&format!("{label} ({})", r.task)),
                        cell(&r.source()),
                        r.metrics.questions(),
                        r.metrics.batches(),
                        r.missing,
                        r.questions_without_context,
                    ));
                }
            }
        }
        let mut sources: Vec<String> = Vec::new();
        for (ci, col) in self.columns.iter().enumerate().filter(|(_, c)| c.published) {
            for (li, label) in self.labels.iter().enumerate() {
                for (k, (_, src)) in &self.cells[li][ci].published {
                    sources.push(format!(
                        "| {} | {} | {k} | {} |\n",
                        cell(&col.name),
                        cell(label),
                        cell(src)
                    ));
                }
            }
        }
        if !sources.is_empty() {
            s.push_str("\n| Published | Task | Measure | Source |\n|---|---|---|---|\n");
            s.extend(sources);
        }
        s
    }

    /// JSON: `systems` (the columns), `published` (whether each is), `rows` (label, measure, one
    /// value per column or null, for the mean over batches and over all questions, and the task
    /// each value comes from) and `tasks` (every result, as loaded).
    pub fn json(&self, results: &[TaskResult]) -> Value {
        let mut rows = Vec::new();
        for (li, name, key) in self.rows() {
            let vals = |v: View| -> Vec<Option<f64>> {
                self.cells[li].iter().map(|c| c.value(key, v)).collect()
            };
            rows.push(json!({
                "label": self.labels[li],
                "measure": key,
                "name": name,
                "mean_over_batches": vals(View::MeanOverBatches),
                "all_questions": vals(View::AllQuestions),
                "tasks": self.cells[li].iter().map(|c| c.task(key)).collect::<Vec<_>>(),
            }));
        }
        json!({
            "table": "biomedical-qa",
            "systems": self.systems(),
            "published": self.columns.iter().map(|c| c.published).collect::<Vec<_>>(),
            "rows": rows,
            "tasks": results,
        })
    }
}

/// A Markdown table cell: `|` escaped, line breaks as spaces.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Markdown table of `results` ([`Table3::markdown`]); for one result, one system column.
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
    use crate::eval::metrics::{QuestionScore, Scored, aggregate, pubmedqa_metrics, score_yesno};

    fn result(task: &str, label: &str, system: &str, strict: &[f64]) -> TaskResult {
        let scored: Vec<(String, Scored)> = strict
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                (
                    format!("B{}", i % 2 + 1),
                    Scored::Factoid(QuestionScore {
                        strict: s,
                        lenient: s,
                        reciprocal_rank: s,
                    }),
                )
            })
            .collect();
        with_metrics(task, label, system, aggregate(&scored).into())
    }

    fn with_metrics(task: &str, label: &str, system: &str, metrics: ResultMetrics) -> TaskResult {
        TaskResult {
            task: task.into(),
            label: label.into(),
            system: system.into(),
            model: String::new(),
            submission: Some(format!("{system}.json")),
            settings: None,
            questions_without_context: 0,
            missing: 0,
            metrics,
        }
    }

    /// Yes/no results of one batch: `right` of `n` "yes" questions answered right.
    fn yesno(task: &str, label: &str, system: &str, right: usize, n: usize) -> TaskResult {
        let gold = vec![vec!["yes".to_string()]];
        let scored: Vec<(String, Scored)> = (0..n)
            .map(|i| {
                let a = if i < right { "yes" } else { "no" };
                ("B1".to_string(), Scored::YesNo(score_yesno(Some(a), &gold)))
            })
            .collect();
        with_metrics(task, label, system, aggregate(&scored).into())
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
        assert!(!md.contains("Yes/no"), "{md}");
        // Written back, a scored submission has no settings and an answering run no submission.
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("submission").is_none());
        let sub = serde_json::to_value(result("t", "4b", "x", &[1.0])).unwrap();
        assert!(sub.get("settings").is_none());
        assert!(sub["metrics"]["batches"]["B1"].get("yesno_acc").is_none());
    }

    #[test]
    fn systems_are_columns_in_order_seen_and_tasks_rows_sorted() {
        let results = vec![
            result("bioasq-5b", "5b", "ours", &[1.0, 0.0]),
            result("bioasq-4b", "4b", "ours", &[1.0, 1.0, 0.0, 0.0]),
            result("bioasq-4b", "4b", "BioBERT | v1", &[1.0, 1.0, 1.0, 0.0]),
        ];
        let t = Table3::new(&results).unwrap();
        assert_eq!(t.systems(), ["ours", "BioBERT | v1"]);
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
        assert_eq!(j["rows"][0]["tasks"], json!(["bioasq-4b", "bioasq-4b"]));
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
        // Two tasks of one label measuring the same thing: an error too.
        let results = vec![
            result("bioasq-4b", "4b", "ours", &[1.0]),
            result("bioasq-4b-again", "4b", "ours", &[0.0]),
        ];
        let e = format!("{:#}", Table3::new(&results).err().unwrap());
        assert!(e.contains("measure strict_acc"), "{e}");
    }

    /// Every measure and task in one table: a factoid task and a yes/no task of one label share
    /// its rows, PubMedQA has its own, published numbers are columns of their own (shown over the
    /// batches only).
    #[test]
    fn every_measure_and_task_with_published_numbers() {
        let pmqa = ResultMetrics::Pubmedqa(pubmedqa_metrics(
            &["yes", "no", "maybe"],
            &["yes", "no", "no"],
        ));
        let results = vec![
            result("bioasq-6b", "6b", "ours", &[1.0, 0.0]),
            yesno("bioasq-6b-yesno-list", "6b", "ours", 3, 4),
            with_metrics("pubmedqa", "PubMedQA", "ours", pmqa),
            yesno("bioasq-6b", "6b", "hand-made", 4, 4),
        ];
        let published = Published {
            result: vec![PublishedResult {
                system: "BioGPT".into(),
                label: "PubMedQA".into(),
                source: "Luo et al. 2022".into(),
                values: [("accuracy".to_string(), 0.782)].into_iter().collect(),
            }],
        };
        let t = Table3::with_published(&results, &published).unwrap();
        assert_eq!(t.systems(), ["ours", "hand-made", "BioGPT (published)"]);
        let md = t.markdown();
        assert!(
            md.contains("| 6b | ACC (strict) | 0.5000 | – | – |"),
            "{md}"
        );
        assert!(
            md.contains("| 6b | Yes/no ACC | 0.7500 | 1.0000 | – |"),
            "{md}"
        );
        assert!(
            md.contains("| 6b | Yes/no F1 (no) | 0.0000 | 0.0000 | – |"),
            "{md}"
        );
        assert!(
            md.contains("| PubMedQA | ACC | 0.6667 | – | 0.7820 |"),
            "{md}"
        );
        assert!(
            md.contains("| PubMedQA | Macro-F1 | 0.5556 | – | – |"),
            "{md}"
        );
        assert!(
            !md.contains("List F1"),
            "no list result, no list rows: {md}"
        );
        let all = &md[md.find("Over all questions").unwrap()..md.find("| System |").unwrap()];
        assert!(
            all.contains("| Task | Measure | ours | hand-made |\n"),
            "{all}"
        );
        assert!(
            md.contains("| BioGPT (published) | PubMedQA | accuracy | Luo et al. 2022 |"),
            "{md}"
        );
        let j = t.json(&results);
        assert_eq!(j["published"], json!([false, false, true]));
        let acc = j["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["measure"] == "accuracy")
            .unwrap();
        assert_eq!(acc["mean_over_batches"][2], 0.782);
        assert_eq!(acc["all_questions"][2], Value::Null);
        assert_eq!(acc["tasks"], json!(["pubmedqa", null, null]));
        // The PubMedQA results.json shape: metrics.accuracy, metrics.macro_f1.
        let v = serde_json::to_value(&results[2]).unwrap();
        assert!(v["metrics"]["accuracy"].is_number() && v["metrics"]["macro_f1"].is_number());
        let back: TaskResult = serde_json::from_value(v).unwrap();
        assert!(matches!(back.metrics, ResultMetrics::Pubmedqa(_)));
    }

    #[test]
    fn published_numbers_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("published.toml");
        std::fs::write(
            &p,
            "[[result]]\nsystem = \"BioGPT\"\nlabel = \"PubMedQA\"\nsource = \"x\"\naccuracy = 0.782\n",
        )
        .unwrap();
        assert_eq!(
            Published::load(&p).unwrap().result[0].values["accuracy"],
            0.782
        );
        std::fs::write(
            &p,
            "[[result]]\nsystem = \"BioGPT\"\nlabel = \"PubMedQA\"\nsource = \"x\"\naccuracy = 78.2\n",
        )
        .unwrap();
        assert!(format!("{:#}", Published::load(&p).unwrap_err()).contains("0.782"));
        std::fs::write(
            &p,
            "[[result]]\nsystem = \"BioGPT\"\nlabel = \"PubMedQA\"\nsource = \"x\"\nacc = 0.7\n",
        )
        .unwrap();
        assert!(format!("{:#}", Published::load(&p).unwrap_err()).contains("\"acc\""));
    }
}
