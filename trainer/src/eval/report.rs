//! `trainer report`: the BioASQ factoid results of several tasks in one table laid out like
//! the paper's Table 3 (rows: task × measure), Markdown and JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::eval::results::{TaskResult, table3_markdown};

/// Options of `trainer report`.
#[derive(clap::Args, Debug)]
pub struct ReportOptions {
    /// `results.json` files, or directories searched (recursively) for them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output prefix: writes `PREFIX.md` and `PREFIX.json`.
    #[arg(long)]
    pub out: Option<PathBuf>,
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

/// Read the task results, print Table 3 and write it (Markdown and JSON) when asked.
pub fn run(args: ReportOptions) -> Result<()> {
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
