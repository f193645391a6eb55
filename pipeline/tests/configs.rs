//! Every file in `configs/` parses with the pipeline's config loader and has the sections the `just`
//! recipes that use it need (trainer/tests/configs.rs checks the trainer's side).

/// Each config and the recipes that read it (`just demo` uses sample.toml, or sample-mamba2.toml or
/// sample-corpora.toml when given; `CONFIG` defaults to pubmed-130m.toml for the others and may name a mamba2-*.toml;
/// bioasq-tasks.toml is the `[bioasq]` snippet). Files are read with `extends` resolved.
const RECIPES: &[(&str, &[&str])] = &[
    ("bioasq-tasks.toml", &[]),
    ("biomamba2-1.3b.toml", REAL),
    ("biomamba2-130m.toml", REAL),
    ("biomamba2-2.7b.toml", REAL),
    ("biomamba2-370m.toml", REAL),
    ("biomamba2-780m.toml", REAL),
    ("mamba2-1.3b.toml", REAL),
    ("mamba2-130m.toml", REAL),
    ("mamba2-2.7b.toml", REAL),
    ("mamba2-370m.toml", REAL),
    ("mamba2-780m.toml", REAL),
    // `trainer report --published` (no config sections; read by `just finetune`'s report).
    ("published.toml", &[]),
    ("pubmed-130m.toml", REAL),
    ("sample-corpora.toml", &["demo"]),
    ("sample-mamba2.toml", &["demo"]),
    ("sample.toml", &["demo"]),
];
/// The recipes of a real run (`CONFIG=... just ingest`, then pretrain, finetune, eval).
const REAL: &[&str] = &["ingest", "pretrain", "finetune", "eval"];

/// Sections of the pipeline each recipe runs stages of.
fn needs(recipe: &str) -> &'static [&'static str] {
    match recipe {
        "ingest" => &["download", "parse", "current", "bioasq", "tokenize"],
        "demo" => &["data", "current", "train_tokenizer", "bioasq", "tokenize"],
        _ => &[],
    }
}

use testkit::fixtures::configs_dir as configs;

#[test]
fn every_config_parses_and_has_its_recipes_sections() {
    let files = testkit::fixtures::config_files().unwrap();
    let listed: Vec<&str> = RECIPES.iter().map(|r| r.0).collect();
    assert_eq!(
        files, listed,
        "a config in configs/ without its recipes in RECIPES"
    );
    let raw =
        |file: &str| -> toml::Table { schemas::config_file::read(&configs().join(file)).unwrap() };
    for (file, recipes) in RECIPES {
        let c = pipeline::Config::load(&configs().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        let t = raw(file);
        for recipe in *recipes {
            for s in needs(recipe) {
                assert!(
                    t.get(*s).is_some_and(|v| v.is_table()),
                    "{file}: `just {recipe}` needs a [{s}] section"
                );
            }
            // `just demo` copies data/sample/corpus into raw/corpus: every corpus file is there.
            if *recipe == "demo" {
                for (name, corpus) in &c.corpus {
                    for f in &corpus.files {
                        let path = testkit::sample_dir().join("corpus").join(name).join(f);
                        assert!(path.is_file(), "{file}: [corpus.{name}] {f}: no {path:?}");
                    }
                }
            }
            if needs(recipe).contains(&"bioasq") {
                assert!(!c.bioasq.tasks.is_empty(), "{file}: no [bioasq.tasks.*]");
            }
        }
        if *recipes == ["ingest", "pretrain", "finetune", "eval"] {
            for task in ["bioasq-4b", "bioasq-5b", "bioasq-6b"] {
                assert!(
                    c.bioasq.tasks.contains_key(task),
                    "{file}: no [bioasq.tasks.{task}]"
                );
            }
            // The snippet and the real config describe the same tasks.
            assert_eq!(
                t.get("bioasq"),
                raw("bioasq-tasks.toml").get("bioasq"),
                "{file}: [bioasq] differs from configs/bioasq-tasks.toml"
            );
        }
    }
}
