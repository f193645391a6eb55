//! `pipeline parse` killed with SIGKILL in the middle of writing leaves no half-written file at a
//! final path, and the next run completes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{pipeline_binary, sample_dir as sample};

const FILES: usize = 4;
const RECORDS_PER_FILE: usize = 6000;

/// The `<PubmedArticle>` elements of the sample baseline with their PMIDs.
fn sample_records() -> Vec<(String, String)> {
    let mut xml = String::new();
    flate2::read::MultiGzDecoder::new(
        std::fs::File::open(sample().join("pubmed/baseline/pubmed26n0001.xml.gz")).unwrap(),
    )
    .read_to_string(&mut xml)
    .unwrap();
    let mut out = Vec::new();
    let mut rest = xml.as_str();
    while let Some(start) = rest.find("<PubmedArticle>") {
        let end =
            rest[start..].find("</PubmedArticle>").unwrap() + start + "</PubmedArticle>".len();
        let rec = &rest[start..end];
        let p0 = rec.find("<PMID").unwrap();
        let p1 = rec[p0..].find('>').unwrap() + p0 + 1;
        let p2 = rec[p1..].find('<').unwrap() + p1;
        out.push((rec.to_string(), rec[p1..p2].to_string()));
        rest = &rest[end..];
    }
    out
}

/// Write FILES gzipped baseline files of RECORDS_PER_FILE citations each, with fresh PMIDs.
fn make_inputs(dir: &Path) {
    let records = sample_records();
    assert!(records.len() > 50);
    let mut pmid = 50_000_000u64;
    for f in 0..FILES {
        let path = dir.join(format!("pubmed26n{:04}.xml.gz", f + 1));
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        writeln!(
            gz,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<PubmedArticleSet>"
        )
        .unwrap();
        for i in 0..RECORDS_PER_FILE {
            let (rec, old) = &records[i % records.len()];
            pmid += 1;
            let rec = rec.replace(&format!(">{old}</PMID>"), &format!(">{pmid}</PMID>"));
            gz.write_all(rec.as_bytes()).unwrap();
        }
        writeln!(gz, "</PubmedArticleSet>").unwrap();
        gz.finish().unwrap();
    }
}

fn parquet_rows(path: &Path) -> Result<i64, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(f)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    use parquet::file::reader::FileReader;
    Ok(reader.metadata().file_metadata().num_rows())
}

/// Every file with a final name under parquet/ must be a whole Parquet file with the full row count.
fn check_final_files(data: &Path) -> usize {
    let mut checked = 0;
    for sub in ["abstracts", "deletions", "current"] {
        let dir = data.join("parquet").join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path: PathBuf = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // a temporary of the killed run
            }
            let rows = parquet_rows(&path).unwrap_or_else(|e| panic!("half-written {name}: {e}"));
            if sub == "abstracts" {
                assert_eq!(rows, RECORDS_PER_FILE as i64, "{name}");
            }
            if sub == "deletions" {
                assert_eq!(rows, 0, "{name}");
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn sigkill_mid_write_leaves_no_partial_files_and_rerun_completes() {
    let bin = pipeline_binary();
    let data = tempfile::tempdir().unwrap();
    let raw = data.path().join("raw/pubmed/baseline");
    std::fs::create_dir_all(&raw).unwrap();
    make_inputs(&raw);

    let run = || {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--data-dir",
            data.path().to_str().unwrap(),
            "parse",
            "--jobs",
            "2",
        ])
        .env("BIOMAMBA_PROGRESS_SECS", "3600")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        cmd
    };
    // Kill as soon as a temporary part exists (i.e. mid-write), or after a deadline.
    let mut child = run().spawn().unwrap();
    let started = Instant::now();
    let abstracts = data.path().join("parquet/abstracts");
    loop {
        let writing = std::fs::read_dir(&abstracts)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            })
            .unwrap_or(false);
        if writing || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let killed_early = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        killed_early,
        "the run finished before it could be killed; make the input larger"
    );
    check_final_files(data.path());

    let out = run().output().unwrap();
    assert!(
        out.status.success(),
        "rerun failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checked = check_final_files(data.path());
    assert!(
        checked >= 2 * FILES,
        "only {checked} final files after the rerun"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&abstracts)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "stale temporaries not swept: {leftovers:?}"
    );
}
