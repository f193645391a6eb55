//! `trainer report`: the results of any number of systems — our runs and scored submissions,
//! BioASQ (factoid, yes/no, list) and PubMedQA — in one table laid out like the paper's Table 3
//! (rows: task × measure, one column per system), with numbers reported in papers as columns of
//! their own (`--published FILE`, labelled "published": not measured by us), Markdown and JSON.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, bail};

use crate::eval::results::{Published, Table3, TaskResult, pretty_json};

/// One input of `trainer report`: `PATH`, or `LABEL=PATH` to put every result found under PATH
/// in the column LABEL (an existing path containing `=` is taken as a path).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportInput {
    pub label: Option<String>,
    pub path: PathBuf,
}

impl FromStr for ReportInput {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.split_once('=') {
            Some((label, path)) if !Path::new(s).exists() && !label.is_empty() => ReportInput {
                label: Some(label.to_string()),
                path: PathBuf::from(path),
            },
            _ => ReportInput {
                label: None,
                path: PathBuf::from(s),
            },
        })
    }
}

/// Options of `trainer report`.
#[derive(clap::Args, Debug)]
pub struct ReportOptions {
    /// `results.json` files, or directories searched (recursively) for them; `LABEL=PATH` puts
    /// the results under PATH in column LABEL (default: each file's `system`). Columns appear
    /// in the order of the inputs.
    #[arg(required = true)]
    pub inputs: Vec<ReportInput>,
    /// Output prefix: writes `PREFIX.md` and `PREFIX.json`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Published numbers (TOML, `[[result]]` with `system`, `label`, `source` and measures, e.g.
    /// configs/published.toml): extra columns, labelled "(published)".
    #[arg(long)]
    pub published: Option<PathBuf>,
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

/// Read the task results under `inputs`, in input order (files of a directory sorted), each
/// with its column label set (`LABEL=` of its input, else its own [`TaskResult::system_label`]).
pub fn load_results(inputs: &[ReportInput]) -> Result<Vec<TaskResult>> {
    let mut results = Vec::new();
    for input in inputs {
        let mut files = Vec::new();
        collect(&input.path, &mut files)?;
        if files.is_empty() {
            bail!("no results.json found under {}", input.path.display());
        }
        for f in files {
            let text = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
            let mut r: TaskResult = serde_json::from_slice(&text)
                .with_context(|| format!("{}: not a task results.json", f.display()))?;
            r.system = match &input.label {
                Some(l) => l.clone(),
                None => r.system_label().to_string(),
            };
            results.push(r);
        }
    }
    Ok(results)
}

/// Read the task results (and the published numbers), print the table and write it (Markdown and
/// JSON) when asked.
pub fn run(args: ReportOptions) -> Result<()> {
    let results = load_results(&args.inputs)?;
    let published = match &args.published {
        Some(p) => Published::load(p)?,
        None => Published::default(),
    };
    let table = Table3::with_published(&results, &published)?;
    let md = table.markdown();
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
        schemas::atomic::write_atomic(with_ext(".json"), &pretty_json(&table.json(&results))?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_paths_or_label_equals_path() {
        let p = |s: &str| s.parse::<ReportInput>().unwrap();
        assert_eq!(
            p("BioBERT=subs/biobert"),
            ReportInput {
                label: Some("BioBERT".into()),
                path: "subs/biobert".into()
            }
        );
        assert_eq!(p("data/runs").label, None);
        assert_eq!(p("=x").path, PathBuf::from("=x"));
        // An existing path with '=' in its name stays a path.
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a=b");
        std::fs::create_dir(&odd).unwrap();
        assert_eq!(p(odd.to_str().unwrap()).path, odd);
        assert_eq!(p(odd.to_str().unwrap()).label, None);
    }
}
