//! PubMedQA's official split of the 1,000 expert-annotated questions (PQA-L): what
//! `preprocess/split_dataset.py pqal` of pubmedqa/pubmedqa does, reproduced exactly (Python's
//! `random` is [`super::pyrandom`]).
//!
//! The script seeds `random` with 0 once, then `split(dataset, 2)` gives the cross-validation set
//! and the test set, and `split(cv_set, 10)` the ten folds. `split(d, k)` groups the PMIDs of `d`
//! (in its order) by label — `yes`, `no`, `maybe`, in that order — shuffles each group
//! (`random.shuffle`) and cuts it into `k` chunks of `ceil(n / k)` (the last takes the rest); part
//! `i` is the `i`-th chunk of each label, concatenated in label order. When the last part is not as
//! large as the first, each of the first `k - 1` parts in turn gives one PMID
//! (`random.choice` over its PMIDs in order) to the end of the last part. Dict order is insertion
//! order throughout, so the file order of `ori_pqal.json` matters; with the published file the
//! test part is exactly the PMIDs of `test_ground_truth.json` (checked by the stage).

use anyhow::{Result, bail};

use super::pyrandom::PyRandom;

/// The labels, in the order of the script's `label2pmid` dict.
const LABEL_ORDER: [&str; 3] = ["yes", "no", "maybe"];

/// `split_label(pmids, fold)`: shuffle, then `fold` chunks of `ceil(n / fold)`.
fn split_label(rng: &mut PyRandom, mut pmids: Vec<u64>, fold: usize) -> Vec<Vec<u64>> {
    rng.shuffle(&mut pmids);
    let n = pmids.len();
    let size = n.div_ceil(fold);
    (0..fold)
        .map(|i| {
            let start = (i * size).min(n);
            let end = if i == fold - 1 {
                n
            } else {
                ((i + 1) * size).min(n)
            };
            pmids[start..end].to_vec()
        })
        .collect()
}

/// `split(dataset, fold)` over `(pmid, label)` pairs in dict order; returns the parts, each in
/// its dict order.
pub fn split(rng: &mut PyRandom, dataset: &[(u64, &str)], fold: usize) -> Result<Vec<Vec<u64>>> {
    assert!(fold >= 1);
    let mut by_label: Vec<Vec<u64>> = vec![Vec::new(); LABEL_ORDER.len()];
    for &(pmid, label) in dataset {
        let Some(i) = LABEL_ORDER.iter().position(|l| *l == label) else {
            bail!("PMID {pmid}: final_decision {label:?} is not one of {LABEL_ORDER:?}");
        };
        by_label[i].push(pmid);
    }
    let chunks: Vec<Vec<Vec<u64>>> = by_label
        .into_iter()
        .map(|pmids| split_label(rng, pmids, fold))
        .collect();
    let mut out: Vec<Vec<u64>> = (0..fold)
        .map(|i| chunks.iter().flat_map(|c| c[i].iter().copied()).collect())
        .collect();
    if out[fold - 1].len() != out[0].len() {
        for i in 0..fold - 1 {
            let at = rng.choice_index(out[i].len());
            let picked = out[i].remove(at);
            out[fold - 1].push(picked);
        }
    }
    Ok(out)
}

/// The official PQA-L split: `(test PMIDs, the ten cross-validation folds)`, each in the script's
/// order, from `dataset` = `ori_pqal.json`'s `(pmid, final_decision)` in file order.
pub fn pqal_split(dataset: &[(u64, &str)]) -> Result<(Vec<u64>, Vec<Vec<u64>>)> {
    let mut rng = PyRandom::seed(0);
    let mut halves = split(&mut rng, dataset, 2)?;
    let test = halves.pop().expect("two parts");
    let cv = halves.pop().expect("two parts");
    let label: std::collections::HashMap<u64, &str> = dataset.iter().copied().collect();
    let cv_set: Vec<(u64, &str)> = cv.iter().map(|p| (*p, label[p])).collect();
    let folds = split(&mut rng, &cv_set, schemas::pubmedqa::FOLDS as usize)?;
    Ok((test, folds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small dataset whose parts are unequal, so the `random.choice` rebalancing runs. Expected
    /// parts printed by Python 3.11.7 running the script's `split` on the same dict.
    #[test]
    fn unequal_parts_are_rebalanced_like_the_script() {
        let labels = [
            "yes", "no", "maybe", "yes", "yes", "no", "yes", "maybe", "yes", "no", "yes",
        ];
        let data: Vec<(u64, &str)> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, *l))
            .collect();
        let mut rng = PyRandom::seed(0);
        let parts = split(&mut rng, &data, 3).unwrap();
        // Sizes before rebalancing: 4, 4, 3; after: 3, 3, 5.
        assert_eq!(parts, [vec![9, 5, 3], vec![4, 10, 8], vec![11, 7, 6, 2, 1]]);
        assert!(split(&mut PyRandom::seed(0), &[(1, "Yes")], 2).is_err());
    }
}
