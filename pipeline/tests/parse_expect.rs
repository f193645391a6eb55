//! Every record of every real fixture and of the synthetic sample equals its expect JSONL.

mod common;

use common::*;

#[test]
fn real_fixtures_match_expect() {
    let Some(fx) = fixtures() else {
        println!("SKIP: fixtures not found (set BIOMAMBA_FIXTURES)");
        return;
    };
    let dir = fx.join("pubmed");
    let inputs = xml_files(&dir);
    assert!(
        inputs.len() >= 9,
        "expected the fixture files, found {inputs:?}"
    );
    let mut total = 0;
    for input in &inputs {
        let expect = dir.join("expect").join(format!("{}.jsonl", stem(input)));
        assert!(expect.is_file(), "no expect file for {}", input.display());
        total += assert_matches_expect(input, &expect);
    }
    assert!(total > 60, "only {total} records compared");
}

#[test]
fn sample_matches_expect() {
    let dir = sample();
    let inputs = xml_files(&dir.join("pubmed"));
    assert_eq!(inputs.len(), 2, "sample inputs: {inputs:?}");
    for input in &inputs {
        let expect = dir.join("expect").join(format!("{}.jsonl", stem(input)));
        assert_matches_expect(input, &expect);
    }
}
