//! Loopback download throughput: serve a generated file (default 200 MB) from a local HTTP server and
//! fetch it with `pipeline download` (GET + MD5 + write + fsync + manifest), next to `curl` on the
//! same URL (to /dev/null and to a file) when curl is installed.
//!
//! `cargo run --release -p pipeline --example bench_download [-- SIZE_MB [RUNS]]`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use md5::{Digest, Md5};
use pipeline::download::{self, Args};
use pipeline::{Config, Ctx};
use testkit::test_server::{TestServer, html_index, random_bytes};

const NAME: &str = "pubmed26n0001.xml.gz";

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    let size_mb: usize = argv.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let runs: usize = argv.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let size = size_mb * 1_000_000;

    let body = random_bytes(size, 42);
    let md5 = hex::encode(Md5::digest(&body));
    let server = TestServer::start()?;
    server.add(&format!("/baseline/{NAME}"), body);
    server.add(
        &format!("/baseline/{NAME}.md5"),
        format!("MD5({NAME})= {md5}\n").into_bytes(),
    );
    server.add("/baseline/", html_index(&[NAME]).into_bytes());
    let url = format!("{}/baseline/{NAME}", server.url());

    let scratch =
        std::env::temp_dir().join(format!("biomamba-bench-download-{}", std::process::id()));
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();

    let mut ours = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(&scratch);
        let ctx = Ctx::new(Some(scratch.clone()), Config::default(), false);
        let args = Args {
            files: Some("all".into()),
            updates: Some("none".into()),
            base_url: Some(server.url()),
            ..Default::default()
        };
        let t = Instant::now();
        let summary = download::download(&ctx, &args)?;
        let secs = t.elapsed().as_secs_f64();
        if summary.downloaded.len() != 1 || !summary.failed.is_empty() {
            bail!("benchmark download failed: {}", summary.line());
        }
        let got = std::fs::metadata(scratch.join("raw/pubmed/baseline").join(NAME))?.len();
        if got != size as u64 {
            bail!("downloaded {got} bytes, expected {size}");
        }
        ours.push(secs);
    }
    rows.push(("pipeline download (MD5-verified, fsynced)".into(), ours));

    if Command::new("curl").arg("--version").output().is_ok() {
        let to_file = scratch.join("curl.out");
        for (label, out) in [
            ("curl -o /dev/null", PathBuf::from("/dev/null")),
            ("curl -o FILE", to_file.clone()),
        ] {
            let mut times = Vec::new();
            for _ in 0..runs {
                times.push(curl(&url, &out)?);
            }
            rows.push((label.into(), times));
        }
        let _ = std::fs::remove_file(&to_file);
    } else {
        eprintln!("curl not found: no peer measurement");
    }
    let _ = std::fs::remove_dir_all(&scratch);

    println!(
        "loopback download of a {size_mb} MB file (1 MB = 10^6 bytes), best / median of {runs} runs"
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "client", "best MB/s", "median", "best s"
    );
    for (label, mut times) in rows {
        times.sort_by(f64::total_cmp);
        let best = times[0];
        let median = times[times.len() / 2];
        println!(
            "{label:<44} {:>10.0} {:>10.0} {:>10.2}",
            size as f64 / 1e6 / best,
            size as f64 / 1e6 / median,
            best
        );
    }
    Ok(())
}

fn curl(url: &str, out: &Path) -> Result<f64> {
    let t = Instant::now();
    let status = Command::new("curl")
        .args(["-s", "-f", "-o"])
        .arg(out)
        .arg(url)
        .status()
        .context("running curl")?;
    let secs = t.elapsed().as_secs_f64();
    if !status.success() {
        bail!("curl {url} failed: {status}");
    }
    Ok(secs)
}
