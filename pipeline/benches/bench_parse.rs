//! `just bench-parse`: our PubMed parser vs `pubmed_parser.parse_medline_xml` (Python) vs `zcat`.
//!
//! Builds a gzipped baseline-format file of ≥ 30,000 citations by replicating the fixture citations
//! with fresh PMIDs, then runs each contender as a child process under `/usr/bin/time` (wall time,
//! CPU time = user + system, peak RSS), pinned to one core: ours = `pipeline::parse::write_parts`,
//! what `pipeline parse` does per file (stream, parse, Arrow batches, zstd Parquet parts), on one
//! thread. zcat and ours run `--runs` times, interleaved, and the table shows medians: on a shared
//! machine wall time is noisy, CPU time much less so, and the ratio to zcat is given for both.
//!
//! `cargo run --release -p pipeline --example bench_parse -- [--citations N] [--runs N] [--work DIR] [--skip-python]`

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use pipeline::config::ParseConfig;
use pipeline::parse::{Item, ParseOptions, open_input, parse_reader};
use schemas::layout::files_with_suffix;
use schemas::progress::{Progress, Unit};

struct Opts {
    citations: usize,
    runs: usize,
    work: PathBuf,
    skip_python: bool,
}

fn parse_args() -> Result<Result<Opts, (PathBuf, bool)>> {
    let mut args = std::env::args().skip(1);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let mut opts = Opts {
        citations: 30_000,
        runs: 5,
        work: target.join("bench-parse"),
        skip_python: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--child" => {
                return Ok(Err((
                    PathBuf::from(args.next().context("--child FILE")?),
                    true,
                )));
            }
            "--child-parse-only" => {
                return Ok(Err((
                    PathBuf::from(args.next().context("--child-parse-only FILE")?),
                    false,
                )));
            }
            "--citations" => opts.citations = args.next().context("--citations N")?.parse()?,
            "--runs" => opts.runs = args.next().context("--runs N")?.parse::<usize>()?.max(1),
            "--work" => opts.work = PathBuf::from(args.next().context("--work DIR")?),
            "--skip-python" => opts.skip_python = true,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Ok(opts))
}

/// The child: parse `input` on this thread (into a Parquet file when `write`); print the citation count.
fn child(input: &Path, write: bool) -> Result<()> {
    if !write {
        let name = input
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut n = 0u64;
        for item in parse_reader(open_input(input)?, &name, &ParseOptions::default()) {
            if let Item::Citation(_) = item? {
                n += 1;
            }
        }
        println!("{n}");
        return Ok(());
    }
    let abstracts = input.with_extension("bench.parquet");
    let deletions = input.with_extension("bench-deletions.parquet");
    for p in [&abstracts, &deletions] {
        let _ = std::fs::remove_file(p); // a first run, as `pipeline parse` on a new file
    }
    let size = std::fs::metadata(input)?.len();
    let progress = std::sync::Arc::new(Progress::new("parse", size, Unit::Bytes));
    let (outcome, _) = pipeline::parse::write_parts(
        &ParseConfig::default(),
        input,
        &abstracts,
        &deletions,
        &progress,
    )?;
    println!("{}", outcome.citations);
    Ok(())
}

use testkit::fixtures::fixtures_dir;

/// `<PubmedArticle>` elements (text) with their PMIDs, from the real fixtures, else the sample.
fn source_records() -> Result<Vec<(String, String)>> {
    let fx = fixtures_dir().join("pubmed");
    let mut files: Vec<PathBuf> = if fx.is_dir() {
        let mut files = files_with_suffix(&fx, ".xml.gz")?;
        files.extend(files_with_suffix(&fx, ".xml")?);
        files
    } else {
        let s = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/pubmed");
        vec![
            s.join("baseline/pubmed26n0001.xml.gz"),
            s.join("updatefiles/pubmed26n0002.xml.gz"),
        ]
    };
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let mut xml = String::new();
        open_input(&f)?.read_to_string(&mut xml)?;
        let mut rest = xml.as_str();
        while let Some(start) = rest.find("<PubmedArticle>") {
            let Some(len) = rest[start..].find("</PubmedArticle>") else {
                break;
            };
            let end = start + len + "</PubmedArticle>".len();
            let rec = &rest[start..end];
            let pmid = rec
                .find("<PMID")
                .and_then(|p0| {
                    let p1 = rec[p0..].find('>')? + p0 + 1;
                    let p2 = rec[p1..].find('<')? + p1;
                    Some(rec[p1..p2].to_string())
                })
                .filter(|p| !p.is_empty());
            // PMID-only records crash pubmed_parser; keep the input fair to every contender.
            let has_article = rec.contains("<Article>") || rec.contains("<Article ");
            if let Some(pmid) = pmid.filter(|_| has_article) {
                out.push((rec.to_string(), pmid));
            }
            rest = &rest[end..];
        }
    }
    if out.is_empty() {
        bail!("no source citations found");
    }
    Ok(out)
}

/// Write the benchmark input; returns (path, uncompressed XML bytes).
fn build_input(opts: &Opts) -> Result<(PathBuf, u64)> {
    std::fs::create_dir_all(&opts.work)?;
    let path = opts.work.join(format!("pubmed99n{:04}.xml.gz", 1));
    let records = source_records()?;
    let mut gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(std::fs::File::create(&path)?),
        flate2::Compression::default(),
    );
    let mut xml_bytes = 0u64;
    let mut put = |gz: &mut flate2::write::GzEncoder<_>, s: &[u8]| -> Result<()> {
        xml_bytes += s.len() as u64;
        gz.write_all(s)?;
        Ok(())
    };
    put(&mut gz, b"<?xml version=\"1.0\" ?>\n<!DOCTYPE PubmedArticleSet PUBLIC \"-//NLM//DTD PubMedArticle, 1st January 2025//EN\" \"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd\">\n<PubmedArticleSet>\n")?;
    for i in 0..opts.citations {
        let (rec, old) = &records[i % records.len()];
        let fresh = 60_000_000 + i as u64;
        let rec = rec.replacen(&format!(">{old}</PMID>"), &format!(">{fresh}</PMID>"), 1);
        put(&mut gz, rec.as_bytes())?;
        put(&mut gz, b"\n")?;
    }
    put(&mut gz, b"</PubmedArticleSet>\n")?;
    gz.finish()?.flush()?;
    Ok((path, xml_bytes))
}

#[derive(Clone)]
struct Measured {
    wall_s: f64,
    /// User + system CPU seconds.
    cpu_s: f64,
    rss_kb: u64,
    output: String,
}

/// Run `cmd` under `/usr/bin/time`, pinned to one core with `taskset` when available.
fn measure(work: &Path, argv: &[&str]) -> Result<Measured> {
    let stats = work.join("time.txt");
    let mut cmd = if Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", "0", "/usr/bin/time"]);
        c
    } else {
        Command::new("/usr/bin/time")
    };
    cmd.args(["-f", "%e %U %S %M", "-o"]).arg(&stats).args(argv);
    let out = cmd.output().with_context(|| format!("running {argv:?}"))?;
    if !out.status.success() {
        bail!("{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&stats)?;
    let last = text.lines().last().unwrap_or_default();
    let fields: Vec<f64> = last
        .split_whitespace()
        .map(|f| f.parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("/usr/bin/time wrote {last:?}"))?;
    let [wall_s, user_s, sys_s, rss_kb] = fields[..] else {
        bail!("/usr/bin/time wrote {last:?}");
    };
    Ok(Measured {
        wall_s,
        cpu_s: user_s + sys_s,
        rss_kb: rss_kb as u64,
        output: String::from_utf8_lossy(&out.stdout).trim().to_string(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians of wall and CPU time over runs, the largest peak RSS.
fn summarize(runs: &[Measured]) -> Measured {
    Measured {
        wall_s: median(runs.iter().map(|m| m.wall_s).collect()),
        cpu_s: median(runs.iter().map(|m| m.cpu_s).collect()),
        rss_kb: runs.iter().map(|m| m.rss_kb).max().unwrap_or(0),
        output: runs.last().map(|m| m.output.clone()).unwrap_or_default(),
    }
}

/// A venv with pubmed_parser, made on first use.
fn python_with_pubmed_parser(work: &Path) -> Result<PathBuf> {
    let venv = work.join("venv");
    let python = venv.join("bin/python");
    let ok = |p: &Path| {
        Command::new(p)
            .args(["-c", "import pubmed_parser"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if python.exists() && ok(&python) {
        return Ok(python);
    }
    let st = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?;
    if !st.success() {
        bail!("python3 -m venv failed");
    }
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "pubmed_parser"])
        .output()?;
    if !out.status.success() || !ok(&python) {
        bail!(
            "pip install pubmed_parser failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    Ok(python)
}

fn main() -> Result<()> {
    let opts = match parse_args()? {
        Err((input, write)) => return child(&input, write),
        Ok(o) => o,
    };
    if !Path::new("/usr/bin/time").exists() {
        bail!("/usr/bin/time is needed to measure peak RSS (apt-get install time)");
    }
    let (input, xml_bytes) = build_input(&opts)?;
    let gz_bytes = std::fs::metadata(&input)?.len();
    let mb = xml_bytes as f64 / 1e6;
    println!(
        "input: {} — {} citations, {:.1} MB gzipped, {:.1} MB of XML",
        input.display(),
        opts.citations,
        gz_bytes as f64 / 1e6,
        mb
    );
    let input_s = input.to_string_lossy().into_owned();
    let me = std::env::current_exe()?;
    let me_s = me.to_string_lossy().into_owned();
    let zcat_cmd = format!("zcat '{input_s}' > /dev/null");
    let contenders: Vec<(&str, Vec<&str>)> = vec![
        ("zcat > /dev/null", vec!["sh", "-c", &zcat_cmd]),
        (
            "biomamba parse (→ Parquet)",
            vec![&me_s, "--child", &input_s],
        ),
        (
            "biomamba parse only (no Parquet)",
            vec![&me_s, "--child-parse-only", &input_s],
        ),
    ];
    // Interleaved, so a change in the machine's load hits every contender alike.
    let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); contenders.len()];
    for run in 0..opts.runs {
        for (i, (name, argv)) in contenders.iter().enumerate() {
            let m = measure(&opts.work, argv).with_context(|| format!("{name}, run {run}"))?;
            if i > 0 && m.output != opts.citations.to_string() {
                bail!(
                    "{name} read {} citations, expected {}",
                    m.output,
                    opts.citations
                );
            }
            runs[i].push(m);
        }
    }
    let mut rows: Vec<(String, usize, Result<Measured>)> = contenders
        .iter()
        .zip(&runs)
        .map(|((name, _), r)| (name.to_string(), r.len(), Ok(summarize(r))))
        .collect();
    if opts.skip_python {
        rows.push((
            "pubmed_parser.parse_medline_xml".into(),
            0,
            Err(anyhow::anyhow!("skipped (--skip-python)")),
        ));
    } else {
        let py = python_with_pubmed_parser(&opts.work).and_then(|python| {
            let script =
                "import sys, pubmed_parser as pp\nprint(sum(1 for _ in pp.parse_medline_xml(sys.argv[1])))";
            measure(
                &opts.work,
                &[&python.to_string_lossy(), "-c", script, &input_s],
            )
        });
        rows.push(("pubmed_parser.parse_medline_xml".into(), 1, py));
    }
    let zcat = rows[0].2.as_ref().ok().cloned();
    println!();
    println!(
        "{:<34} {:>4} {:>7} {:>7} {:>9} {:>15} {:>9} {:>10} {:>9}",
        "contender (1 core, medians)",
        "runs",
        "wall s",
        "CPU s",
        "MB/s XML",
        "citations/CPU s",
        "RSS MB",
        "×zcat wall",
        "×zcat CPU"
    );
    for (name, n, m) in &rows {
        match m {
            Ok(m) => {
                let ratio = |ours: f64, z: f64| format!("{:.2}", ours / z.max(1e-9));
                println!(
                    "{:<34} {:>4} {:>7.2} {:>7.2} {:>9.1} {:>15.0} {:>9.1} {:>10} {:>9}",
                    name,
                    n,
                    m.wall_s,
                    m.cpu_s,
                    mb / m.wall_s.max(1e-9),
                    opts.citations as f64 / m.cpu_s.max(1e-9),
                    m.rss_kb as f64 / 1024.0,
                    zcat.as_ref()
                        .map(|z| ratio(m.wall_s, z.wall_s))
                        .unwrap_or_default(),
                    zcat.as_ref()
                        .map(|z| ratio(m.cpu_s, z.cpu_s))
                        .unwrap_or_default(),
                );
            }
            Err(e) => println!("{name:<34} unavailable: {e:#}"),
        }
    }
    println!(
        "\nMB/s from wall time; citations per CPU second = per core. Targets: biomamba ≤ 1.3 × zcat, peak RSS < 200 MB."
    );
    Ok(())
}
