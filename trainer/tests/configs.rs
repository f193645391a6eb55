//! Every file in `configs/` parses with the trainer's config loader (`[model]`, `[pretrain]`,
//! `[finetune]`, `[tasks.*]`) and has the sections the `just` recipes that use it need
//! (pipeline/tests/configs.rs checks the pipeline's side).

use std::path::Path;

use trainer::config::{Config, Section};

/// Each config and the recipes that read it (`just demo` uses sample.toml; `CONFIG` defaults to
/// pubmed-130m.toml for the others; bioasq-tasks.toml is the `[bioasq]` snippet).
const RECIPES: &[(&str, &[&str])] = &[
    ("bioasq-tasks.toml", &[]),
    // `trainer report --published` (no config sections; read by `just finetune`'s report).
    ("published.toml", &[]),
    (
        "pubmed-130m.toml",
        &["ingest", "pretrain", "finetune", "eval"],
    ),
    ("sample.toml", &["demo"]),
];

use testkit::fixtures::configs_dir as configs;

fn raw(path: &Path) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn section<'a>(t: &'a toml::Table, name: &str, file: &str, recipe: &str) -> &'a toml::Table {
    t.get(name)
        .and_then(|v| v.as_table())
        .unwrap_or_else(|| panic!("{file}: `just {recipe}` needs a [{name}] section"))
}

#[test]
fn every_config_parses_and_has_its_recipes_sections() {
    let files = testkit::fixtures::config_files().unwrap();
    let listed: Vec<&str> = RECIPES.iter().map(|r| r.0).collect();
    assert_eq!(
        files, listed,
        "a config in configs/ without its recipes in RECIPES"
    );

    for (file, recipes) in RECIPES {
        let path = configs().join(file);
        let t = raw(&path);
        // The trainer's loader accepts every file (unknown keys in its sections are errors).
        let train =
            Config::load(Some(&path), Section::ALL).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        for recipe in *recipes {
            let trains = matches!(*recipe, "demo" | "pretrain");
            let finetunes = matches!(*recipe, "demo" | "finetune");
            if trains {
                section(&t, "model", file, recipe);
                section(&t, "pretrain", file, recipe);
                let tok = section(&t, "tokenize", file, recipe);
                assert_eq!(
                    tok.get("seq_len").and_then(|v| v.as_integer()),
                    Some(train.pretrain.seq_len as i64),
                    "{file}: [tokenize] seq_len must equal [pretrain] seq_len"
                );
            }
            if finetunes || *recipe == "eval" {
                let f = section(&t, "finetune", file, recipe);
                // `trainer export` writes no tokenizer: the config must name one.
                assert!(
                    f.contains_key("tokenizer"),
                    "{file}: `just {recipe}` needs [finetune] tokenizer"
                );
            }
            if finetunes {
                let tasks = section(&t, "tasks", file, recipe);
                let wanted: Vec<&str> = if *recipe == "finetune" {
                    vec![
                        "bioasq-4b",
                        "bioasq-5b",
                        "bioasq-6b",
                        "bioasq-6b-yesno-list",
                        "pubmedqa",
                    ]
                } else {
                    tasks.keys().map(String::as_str).collect()
                };
                assert!(!wanted.is_empty(), "{file}: no [tasks.*]");
                let bioasq = section(&t, "bioasq", file, recipe);
                let built = section(bioasq, "tasks", file, recipe);
                for task in wanted {
                    assert!(
                        tasks.contains_key(task),
                        "{file}: `just {recipe}` needs [tasks.{task}]"
                    );
                    let r = train.resolve_task(task, None, None, None, None).unwrap();
                    assert!(!r.tables.label.is_empty(), "{file}: [tasks.{task}] label");
                    if r.kinds().is_pubmedqa() {
                        // The tables `pipeline pubmedqa` writes.
                        assert_eq!(r.tables.train, Path::new("pubmedqa/train.arrow"));
                        assert_eq!(r.tables.test, Path::new("pubmedqa/test.arrow"));
                        continue;
                    }
                    assert!(
                        !r.tables.batches.is_empty(),
                        "{file}: [tasks.{task}] batches"
                    );
                    // The tables are the ones `pipeline bioasq` builds for a [bioasq.tasks.*].
                    let dir = r.tables.train.parent().unwrap();
                    let name = dir.file_name().unwrap().to_str().unwrap();
                    assert!(
                        built.contains_key(name),
                        "{file}: [tasks.{task}] reads {} but there is no [bioasq.tasks.{name}]",
                        dir.display()
                    );
                    assert_eq!(r.tables.train, dir.join("train.arrow"));
                    assert_eq!(r.tables.test, dir.join("test.arrow"));
                    assert_eq!(r.tables.golden, Path::new("bioasq/golden.arrow"));
                }
            }
            if *recipe == "demo" {
                let v = section(&t, "train_tokenizer", file, recipe)
                    .get("vocab_size")
                    .and_then(|v| v.as_integer())
                    .expect("[train_tokenizer] vocab_size");
                assert!(
                    train.model.vocab_size as i64 >= v,
                    "{file}: [model] vocab_size must cover the trained tokenizer's {v}"
                );
            }
        }
    }
}

/// `configs/published.toml` loads as published numbers (measures known, values fractions).
#[test]
fn published_numbers_load() {
    let p = trainer::eval::results::Published::load(&configs().join("published.toml")).unwrap();
    let biogpt = p.result.iter().find(|r| r.system == "BioGPT").unwrap();
    assert_eq!(
        (biogpt.label.as_str(), biogpt.values["accuracy"]),
        ("PubMedQA", 0.782)
    );
}
