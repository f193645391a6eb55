//! The text contract over every text column of every table `pipeline parse` writes, for every real
//! fixture and sample XML file (and a held-out-style record): no value starts or ends with
//! whitespace, no value holds a double space, and no empty section text (or other empty part) is
//! joined with a separator — no empty line in `abstract` or `other_abstracts.text`, no `Label: `
//! with nothing after it.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline::config::ParseConfig;
use schemas::progress::{Progress, Unit};

/// Visit every string value of `array` (through lists and structs) with its column path.
fn strings(path: &str, array: &ArrayRef, f: &mut dyn FnMut(&str, &str)) {
    match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            for v in a.iter().flatten() {
                f(path, v);
            }
        }
        DataType::List(_) => strings(path, array.as_list::<i32>().values(), f),
        DataType::Struct(fields) => {
            let s = array.as_struct();
            for (field, column) in fields.iter().zip(s.columns()) {
                strings(&format!("{path}.{}", field.name()), column, f);
            }
        }
        _ => {}
    }
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// The contract violations of one value of column `path` (empty when it holds).
fn violations(path: &str, v: &str) -> Vec<&'static str> {
    let mut bad = Vec::new();
    if v.trim() != v {
        bad.push("starts or ends with whitespace");
    }
    if v.contains("  ") {
        bad.push("double space");
    }
    // Joined columns: lines joined with `\n`; every other column is one collapsed line.
    let joined = matches!(path, "abstract" | "other_abstracts.text");
    if joined {
        for line in v.split('\n') {
            if v.is_empty() {
                break;
            }
            if line.is_empty() {
                bad.push("empty line (an empty section joined)");
            } else if line.trim() != line {
                // e.g. `CLINICALTRIALS: ` (a label joined to an empty text)
                bad.push("line starts or ends with whitespace");
            }
        }
    } else if v.contains(|c: char| c.is_whitespace() && c != ' ') {
        bad.push("whitespace other than single spaces");
    }
    bad
}

/// Parse `input` into its two Parquet parts and check every text value; returns how many values.
fn check_file(input: &Path, out: &Path) -> usize {
    let stem = common::stem(input);
    let abstracts = out.join(format!("abstracts/{stem}.parquet"));
    let deletions = out.join(format!("deletions/{stem}.parquet"));
    let progress = Arc::new(Progress::new("parse", 0, Unit::Bytes));
    pipeline::parse::write_parts(
        &ParseConfig::default(),
        input,
        &abstracts,
        &deletions,
        &progress,
    )
    .unwrap_or_else(|e| panic!("{}: {e:#}", input.display()));
    let mut checked = 0;
    let mut failures = Vec::new();
    for part in [&abstracts, &deletions] {
        for batch in read(part) {
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                strings(field.name(), column, &mut |path, v| {
                    checked += 1;
                    let bad = violations(path, v);
                    if !bad.is_empty() {
                        failures.push(format!("{}: {path} = {v:?}: {bad:?}", input.display()));
                    }
                });
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    checked
}

/// A held-out-style file: the empty labelled `CLINICALTRIALS` section of real PubMed records, an
/// empty unlabelled section, an empty date part, whitespace inside labels.
const HELD_OUT: &str = r#"<?xml version="1.0"?>
<PubmedArticleSet><PubmedArticle><MedlineCitation Status="MEDLINE"><PMID Version="1">42</PMID>
<Article><Journal><JournalIssue><PubDate><Year>2021</Year><Month/><Day>3</Day></PubDate></JournalIssue><Title>J</Title></Journal>
<ArticleTitle>Trial.</ArticleTitle>
<Abstract><AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">Text.</AbstractText>
<AbstractText Label="CLINICALTRIALS" NlmCategory="RESULTS"/>
<AbstractText Label="GOV ID">NCT00000042</AbstractText><AbstractText/>
<AbstractText Label=" TRIAL  REGISTRATION ">  </AbstractText></Abstract>
<Language>eng</Language></Article>
<OtherAbstract Type="Publisher" Language="spa"><AbstractText Label="REGISTRO"/><AbstractText>uno</AbstractText></OtherAbstract>
</MedlineCitation></PubmedArticle></PubmedArticleSet>
"#;

#[test]
fn violations_are_recognised() {
    assert!(violations("title", "ok text").is_empty());
    assert!(!violations("title", "trailing ").is_empty());
    assert!(!violations("title", "a  b").is_empty());
    assert!(!violations("abstract", "CLINICALTRIALS: \nGOV ID: x").is_empty());
    assert!(!violations("abstract", "a\n\nb").is_empty());
    assert!(violations("abstract", "CLINICALTRIALS:\nGOV ID: x").is_empty());
}

#[test]
fn every_text_column_of_every_fixture_and_sample_file_keeps_the_contract() {
    let out = tempfile::tempdir().unwrap();
    let held_out = out.path().join("held-out.xml");
    std::fs::write(&held_out, HELD_OUT).unwrap();
    let mut inputs = vec![held_out];
    inputs.extend(common::xml_files(&common::sample().join("pubmed")));
    match common::fixtures() {
        Some(fx) => inputs.extend(common::xml_files(&fx.join("pubmed"))),
        None => println!("SKIP (fixtures part): fixtures not found (set BIOMAMBA_FIXTURES)"),
    }
    let mut values = 0;
    for input in &inputs {
        values += check_file(input, out.path());
    }
    assert!(values > 1000, "only {values} text values checked");
    println!("{} files, {values} text values checked", inputs.len());

    // The held-out record as the contract says it should read.
    let batches = read(&out.path().join("abstracts/held-out.parquet"));
    let abstracts = batches[0]
        .column_by_name("abstract")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(
        abstracts.value(0),
        "BACKGROUND: Text.\nCLINICALTRIALS:\nGOV ID: NCT00000042\nTRIAL REGISTRATION:"
    );
    let pub_date = batches[0]
        .column_by_name("pub_date")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(pub_date.value(0), "2021 3");
}
