//! Writes the bundled sample's Wikipedia file,
//! `data/sample/corpus/wikipedia/20231101.en/train-00000-of-00001.parquet`, from the articles
//! `data/sample/generate.py` wrote to `data/sample/corpus-src/wikipedia-articles.jsonl`:
//!
//! ```sh
//! python3 data/sample/generate.py && cargo run -p testkit --example sample_wikipedia
//! ```
//!
//! The same articles give the same bytes (`pipeline/tests/corpus.rs` checks the committed file).

fn main() -> anyhow::Result<()> {
    let articles = testkit::corpus::read_articles(&testkit::corpus::sample_articles_path())?;
    let path = testkit::corpus::sample_wikipedia_path();
    testkit::corpus::write_wikipedia_parquet(&path, &articles)?;
    println!("{}: {} articles", path.display(), articles.len());
    Ok(())
}
