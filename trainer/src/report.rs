//! `trainer report`: the BioASQ factoid results of several tasks in one table laid out like
//! the paper's Table 3 (rows: task × measure), Markdown and JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::answer::TaskResult;

/// Command-line arguments of `trainer report`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// `results.json` files, or directories searched (recursively) for them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output prefix: writes `PREFIX.md` and `PREFIX.json`.
    #[arg(long)]
    pub out: Option<PathBuf>,
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

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if p.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
        .with_context(|| format!("reading directory {}", p.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect(&e, out)?;
        } else if e.file_name().is_some_and(|n| n == "results.json") {
            out.push(e);
        }
    }
    Ok(())
}

/// Read task results, sorted by label, then task.
pub fn load_results(inputs: &[PathBuf]) -> Result<Vec<TaskResult>> {
    let mut files = Vec::new();
    for i in inputs {
        collect(i, &mut files)?;
    }
    if files.is_empty() {
        bail!("no results.json found under {inputs:?}");
    }
    let mut results = Vec::new();
    for f in files {
        let text = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        let r: TaskResult = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a task results.json", f.display()))?;
        results.push(r);
    }
    results.sort_by(|a, b| (&a.label, &a.task).cmp(&(&b.label, &b.task)));
    Ok(results)
}

pub fn run(args: Args) -> Result<()> {
    let results = load_results(&args.inputs)?;
    let md = table3_markdown(&results);
    print!("{md}");
    if let Some(prefix) = args.out {
        let with_ext = |ext: &str| {
            let mut p = prefix.clone().into_os_string();
            p.push(ext);
            PathBuf::from(p)
        };
        if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        schemas::atomic::write_atomic(with_ext(".md"), md.as_bytes())?;
        let mut j =
            serde_json::to_vec_pretty(&json!({ "table": "bioasq-factoid", "tasks": results }))?;
        j.push(b'\n');
        schemas::atomic::write_atomic(with_ext(".json"), &j)?;
    }
    Ok(())
}
