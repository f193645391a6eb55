//! Every file in `configs/` parses with the trainer's config loader (`[model]`, `[pretrain]`,
//! `[finetune]`, `[tasks.*]`) and has the sections the `just` recipes that use it need
//! (pipeline/tests/configs.rs checks the pipeline's side).

use std::path::Path;

use trainer::config::{Config, Section};

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

use testkit::fixtures::configs_dir as configs;

fn raw(path: &Path) -> toml::Table {
    schemas::config_file::read(path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
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
                // The [model] shape is a valid from-scratch model of its architecture.
                let scratch = train
                    .model
                    .scratch_config()
                    .unwrap_or_else(|e| panic!("{file}: {e:#}"));
                assert_eq!(scratch.arch(), train.model.arch, "{file}");
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

/// The five Mamba-2 configs describe the published checkpoints: mamba2-130m is exactly what its
/// mamba_ssm config.json gives, and each size's parameter count is near its name.
#[test]
fn mamba2_configs_have_the_published_shapes() {
    use trainer::model::{Mamba2Config, ModelConfig};
    for (size, nominal) in [
        ("130m", 130e6),
        ("370m", 370e6),
        ("780m", 780e6),
        ("1.3b", 1.3e9),
        ("2.7b", 2.7e9),
    ] {
        let file = format!("mamba2-{size}.toml");
        let c = Config::load(Some(&configs().join(&file)), Section::ALL).unwrap();
        let m = c.model.scratch_config().unwrap();
        let ModelConfig::Mamba2(m2) = &m else {
            panic!("{file}: not Mamba-2")
        };
        assert_eq!(m2.vocab_size % 16, 0, "{file}: vocabulary padded to 16");
        let n = m.num_params() as f64;
        println!("{file}: {:.1}M parameters", n / 1e6);
        assert!(
            (n / nominal - 1.0).abs() < 0.1,
            "{file}: {n} parameters for a {size} model"
        );
        if size == "130m" {
            assert_eq!(m, ModelConfig::Mamba2(Mamba2Config::mamba2_130m()));
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
