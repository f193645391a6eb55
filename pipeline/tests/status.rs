//! `pipeline status` without a config judges every stage against the settings it last ran with
//! (recorded in its manifest), so stages run with flags only show as cached; with a config it
//! judges against the config.

mod common;

use std::path::Path;

use pipeline::{Config, Ctx};

fn copy_sample(dir: &Path) {
    let sample = common::sample();
    for (from, to) in [
        ("pubmed/baseline", "raw/pubmed/baseline"),
        ("pubmed/updatefiles", "raw/pubmed/updatefiles"),
        ("bioasq", "raw/bioasq"),
    ] {
        let to = dir.join(to);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(sample.join(from)).unwrap() {
            let f = entry.unwrap().path();
            if f.is_file() {
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
}

#[test]
fn stages_run_with_flags_only_are_cached_in_status() {
    if !common::sample().join("pubmed/baseline").is_dir() {
        println!("SKIP: sample absent");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_sample(dir);
    // No config file: every setting that differs from the defaults comes from a flag.
    let c = Ctx::new(Some(dir.to_path_buf()), Config::default(), false);
    assert!(c.config.source.is_none());
    common::parse_command(
        &c,
        pipeline::parse::Args {
            skip_bad_records: true,
            no_current: true,
            ..Default::default()
        },
    )
    .unwrap();
    pipeline::current::run(
        &c,
        pipeline::current::Args {
            partitions: Some(3),
        },
    )
    .unwrap();
    pipeline::train_tokenizer::run(
        &c,
        pipeline::train_tokenizer::Args {
            vocab_size: Some(600),
            ..Default::default()
        },
    )
    .unwrap();
    let mut bioasq = pipeline::bioasq::Args::new();
    bioasq.offline = true;
    bioasq.inputs = vec![
        dir.join("raw/bioasq/training-sample.json"),
        dir.join("raw/bioasq/test-batch1_golden.json"),
    ];
    pipeline::bioasq::run(&c, bioasq).unwrap();
    common::tokenize_command(
        &c,
        pipeline::tokenize::Args {
            seq_len: Some(64),
            shard_sequences: Some(8),
            val_fraction: Some(0.2),
            decontaminate: vec![dir.join("raw/bioasq/test-batch1_golden.json")],
            ..Default::default()
        },
    )
    .unwrap();

    let rows = pipeline::status::run(&c).unwrap();
    let by_stage = |rows: &[pipeline::stage::StageStatus], name: &str| {
        rows.iter()
            .find(|r| r.stage == name)
            .unwrap_or_else(|| panic!("no status row {name}"))
            .clone()
    };
    for stage in [
        "parse",
        "current",
        "train-tokenizer",
        "tokenize",
        "pack",
        "bioasq",
    ] {
        let row = by_stage(&rows, stage);
        assert_eq!(
            (row.state(), row.stale, row.missing),
            ("cached", 0, 0),
            "{stage}: {row:?}"
        );
    }
    assert_eq!(by_stage(&rows, "current").cached, 3);
    assert_eq!(by_stage(&rows, "parse").cached, 2);

    // The settings as recorded: the flags applied, paths inside the data directory relative to it.
    let manifest = |stage: &str| {
        schemas::StageManifest::load(&c.layout.manifest(stage))
            .unwrap()
            .unwrap()
    };
    let settings = manifest("pack").settings;
    assert_eq!(settings["seq_len"], 64);
    assert_eq!(settings["tokenizer"], "tokenizer/tokenizer.json");
    assert_eq!(
        settings["decontaminate"],
        serde_json::json!(["raw/bioasq/test-batch1_golden.json"])
    );
    assert_eq!(
        manifest("parse").settings["config"]["skip_bad_records"],
        true
    );
    assert_eq!(manifest("current").settings["partitions"], 3);
    assert_eq!(manifest("train-tokenizer").settings["vocab_size"], 600);
    assert_eq!(manifest("bioasq").settings["offline"], true);

    // With a config file given (here: the defaults), status judges against it instead.
    let with_config = Ctx::new(
        Some(dir.to_path_buf()),
        Config {
            source: Some("defaults.toml".into()),
            ..Config::default()
        },
        false,
    );
    let rows = pipeline::status::run(&with_config).unwrap();
    for stage in ["parse", "current", "train-tokenizer", "pack", "bioasq"] {
        let row = by_stage(&rows, stage);
        assert_ne!(
            row.state(),
            "cached",
            "{stage} against the default config: {row:?}"
        );
    }
    let current = by_stage(&rows, "current");
    assert_eq!((current.stale, current.missing), (3, 5), "{current:?}");
}
