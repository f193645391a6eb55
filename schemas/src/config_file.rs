//! Reading a config file (`configs/*.toml`), shared by the pipeline's and the trainer's loaders:
//! a file may start from another with `extends = "other.toml"` (a path relative to the file),
//! whose tables it then overrides key by key. Nested tables merge; any other value (arrays
//! included) replaces the inherited one. A chain of `extends` is followed to its root.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The key naming the file a config extends.
pub const EXTENDS_KEY: &str = "extends";

/// `path` as one TOML table, with every `extends` resolved.
pub fn read(path: &Path) -> Result<toml::Table> {
    let mut chain: Vec<PathBuf> = Vec::new();
    read_chain(path, &mut chain)
}

fn read_chain(path: &Path, chain: &mut Vec<PathBuf>) -> Result<toml::Table> {
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if chain.contains(&key) {
        bail!(
            "config {} extends itself (through {})",
            path.display(),
            chain
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" -> ")
        );
    }
    chain.push(key);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?;
    let Some(parent) = table.remove(EXTENDS_KEY) else {
        return Ok(table);
    };
    let Some(parent) = parent.as_str() else {
        bail!(
            "config {}: `{EXTENDS_KEY}` must be a file name (a string), found {parent}",
            path.display()
        );
    };
    let parent_path = path.parent().unwrap_or(Path::new(".")).join(parent);
    let mut base = read_chain(&parent_path, chain)
        .with_context(|| format!("in the config {} extends", path.display()))?;
    merge(&mut base, table);
    Ok(base)
}

/// Overlay `over` on `base`: tables merge recursively, other values replace.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_merges_tables_and_replaces_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.toml"),
            "[model]\ninit = \"a\"\nhidden = 8\n[pretrain]\nlr = 1.0\nlist = [1, 2]\n[tasks.x]\nlabel = \"x\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("mid.toml"),
            "extends = \"base.toml\"\n[model]\ninit = \"b\"\n[pretrain]\nlist = [3]\n",
        )
        .unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(
            sub.join("top.toml"),
            "extends = \"../mid.toml\"\n[pretrain]\nlr = 2.0\n[tasks.y]\nlabel = \"y\"\n",
        )
        .unwrap();
        let t = read(&sub.join("top.toml")).unwrap();
        let want: toml::Table = toml::from_str(
            "[model]\ninit = \"b\"\nhidden = 8\n[pretrain]\nlr = 2.0\nlist = [3]\n[tasks.x]\nlabel = \"x\"\n[tasks.y]\nlabel = \"y\"\n",
        )
        .unwrap();
        assert_eq!(t, want);
    }

    #[test]
    fn cycles_and_bad_values_are_errors_naming_the_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), "extends = \"b.toml\"\n").unwrap();
        std::fs::write(dir.path().join("b.toml"), "extends = \"a.toml\"\n").unwrap();
        let err = format!("{:#}", read(&dir.path().join("a.toml")).unwrap_err());
        assert!(
            err.contains("extends itself") && err.contains("b.toml"),
            "{err}"
        );
        std::fs::write(dir.path().join("c.toml"), "extends = 3\n").unwrap();
        let err = format!("{:#}", read(&dir.path().join("c.toml")).unwrap_err());
        assert!(
            err.contains("c.toml") && err.contains("must be a file name"),
            "{err}"
        );
        std::fs::write(dir.path().join("d.toml"), "extends = \"missing.toml\"\n").unwrap();
        let err = format!("{:#}", read(&dir.path().join("d.toml")).unwrap_err());
        assert!(
            err.contains("missing.toml") && err.contains("d.toml"),
            "{err}"
        );
    }
}
