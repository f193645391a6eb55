//! `pipeline download` / `fetch-model` against a fault-injecting HTTP server on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use md5::{Digest, Md5};
use pipeline::download::hub::{self, HubArgs, Source};
use pipeline::download::{self, Args};
use pipeline::{Config, Ctx};
use sha2::Sha256;
use testkit::test_server::{Fault, TestServer, html_index, random_bytes};

const MB: usize = 1 << 20;

fn fixtures() -> Option<PathBuf> {
    testkit::fixtures::fixtures_with(&["pubmed/pubmed26n1334.xml.gz"])
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Fast retries and short timeouts, so fault tests take well under a second per fault.
fn test_ctx(dir: &Path) -> Ctx {
    let mut config = Config::default();
    let d = &mut config.download;
    d.max_attempts = 4;
    d.connect_timeout_secs = 2.0;
    d.read_timeout_secs = 0.4;
    d.backoff_initial_secs = 0.01;
    d.backoff_max_secs = 0.05;
    d.concurrency = 3;
    Ctx::new(Some(dir.to_path_buf()), config, false)
}

fn args(server: &TestServer) -> Args {
    Args {
        files: Some("all".into()),
        updates: Some("all".into()),
        base_url: Some(server.url()),
        ..Default::default()
    }
}

/// Serve `name` with its sidecar in OpenSSL form under `dir`.
fn serve_file(server: &TestServer, dir: &str, name: &str, body: &[u8]) {
    server.add(&format!("/{dir}/{name}"), body.to_vec());
    server.add(
        &format!("/{dir}/{name}.md5"),
        format!("MD5({name})= {}\n", md5_hex(body)).into_bytes(),
    );
}

fn parts_and_temps(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["raw/pubmed/baseline", "raw/pubmed/updatefiles"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.ends_with(".part") || n.contains(".tmp-") {
                    found.push(n);
                }
            }
        }
    }
    found
}

#[test]
fn real_files_survive_every_fault_and_a_second_run_fetches_nothing() {
    let Some(fx) = fixtures() else {
        eprintln!("SKIP: PubMed fixtures not found (set BIOMAMBA_FIXTURES)");
        return;
    };
    let server = TestServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = test_ctx(tmp.path());

    // Real baseline files with their real sidecars.
    let mut sources: Vec<(String, Vec<u8>)> = Vec::new();
    for name in ["pubmed26n1334.xml.gz", "pubmed26n1335.xml.gz"] {
        let body = std::fs::read(fx.join("pubmed").join(name)).unwrap();
        let md5 = std::fs::read(fx.join("pubmed").join(format!("{name}.md5"))).unwrap();
        server.add(&format!("/baseline/{name}"), body.clone());
        server.add(&format!("/baseline/{name}.md5"), md5);
        sources.push((format!("baseline/{name}"), body));
    }
    // Generated files, large enough for mid-body faults.
    let gen1 = random_bytes(4 * MB, 1);
    let gen2 = random_bytes(3 * MB, 2);
    let upd = random_bytes(2 * MB, 3);
    serve_file(&server, "baseline", "pubmed26n0001.xml.gz", &gen1);
    serve_file(&server, "baseline", "pubmed26n0002.xml.gz", &gen2);
    // Coreutils sidecar form for the update file.
    server.add("/updatefiles/pubmed26n1336.xml.gz", upd.clone());
    server.add(
        "/updatefiles/pubmed26n1336.xml.gz.md5",
        format!("{}  pubmed26n1336.xml.gz\n", md5_hex(&upd)).into_bytes(),
    );
    sources.push(("baseline/pubmed26n0001.xml.gz".into(), gen1));
    sources.push(("baseline/pubmed26n0002.xml.gz".into(), gen2));
    sources.push(("updatefiles/pubmed26n1336.xml.gz".into(), upd));
    server.add(
        "/baseline/",
        html_index(&[
            "pubmed26n0001.xml.gz",
            "pubmed26n0002.xml.gz",
            "pubmed26n1334.xml.gz",
            "pubmed26n1335.xml.gz",
        ])
        .into_bytes(),
    );
    server.add(
        "/updatefiles/",
        html_index(&["pubmed26n1336.xml.gz"]).into_bytes(),
    );

    // Faults.
    let p1334 = "/baseline/pubmed26n1334.xml.gz";
    let p1335 = "/baseline/pubmed26n1335.xml.gz";
    let p0001 = "/baseline/pubmed26n0001.xml.gz";
    let p0002 = "/baseline/pubmed26n0002.xml.gz";
    server.fault(p1334, Fault::Status(503));
    server.fault(p1334, Fault::Status(503));
    server.fault(p1335, Fault::Corrupt);
    server.fault(p0001, Fault::DropAfter(MB + MB / 2));
    server.fault(p0001, Fault::StallAfter(MB, Duration::from_secs(2)));
    server.always(p0002, Fault::IgnoreRange);
    server.fault(p0002, Fault::DropAfter(MB));
    server.fault("/baseline/", Fault::Status(500)); // even the listing is retried

    let summary = download::download(&ctx, &args(&server)).unwrap();
    eprintln!("{}", summary.line());
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.downloaded.len(), 5);
    assert_eq!(summary.selected, 5);

    for (rel, body) in &sources {
        let got = std::fs::read(tmp.path().join("raw/pubmed").join(rel)).unwrap();
        assert!(got == *body, "{rel} differs from the served file");
    }
    assert!(parts_and_temps(tmp.path()).is_empty());

    // Server-side evidence of every fault path.
    assert_eq!(server.hits(p1334).gets, 3, "503 twice, then success");
    assert_eq!(server.hits(p1335).gets, 2, "corrupt body, then success");
    let h1 = server.hits(p0001);
    assert_eq!(h1.gets, 3);
    assert_eq!(
        h1.ranges,
        vec![(MB + MB / 2) as u64, (2 * MB + MB / 2) as u64],
        "resumed after the drop and after the stall"
    );
    let h2 = server.hits(p0002);
    assert_eq!(h2.gets, 2);
    assert_eq!(
        h2.ranges,
        vec![MB as u64],
        "asked to resume; server ignored it"
    );
    assert_eq!(
        h2.body_bytes_sent,
        (MB + 3 * MB) as u64,
        "restarted from zero"
    );
    assert_eq!(server.hits("/baseline/").gets, 2);

    let net = &summary.net;
    assert_eq!(net.checksum_mismatches, 1);
    assert_eq!(net.range_ignored, 1);
    assert_eq!(net.stalls, 1);
    assert_eq!(net.range_requests, 3);
    // 2 (503) + 1 (MD5) + 2 (drop, stall) + 1 (drop) + 1 (listing 500)
    assert_eq!(net.retries, 7);
    println!("RETRIES EXERCISED: {}", net.retries);

    let st = download::status(&ctx).unwrap();
    assert_eq!((st.cached, st.stale, st.missing), (5, 0, 0));

    // Second run: only the two listings are requested, no file bodies, no sidecars.
    let before: Vec<u64> = sources
        .iter()
        .flat_map(|(rel, _)| {
            [
                server.hits(&format!("/{rel}")).gets,
                server.hits(&format!("/{rel}.md5")).gets,
            ]
        })
        .collect();
    let total_before = server.total_gets();
    let again = download::download(&ctx, &args(&server)).unwrap();
    assert_eq!(again.downloaded.len(), 0);
    assert_eq!(again.cached.len(), 5);
    let after: Vec<u64> = sources
        .iter()
        .flat_map(|(rel, _)| {
            [
                server.hits(&format!("/{rel}")).gets,
                server.hits(&format!("/{rel}.md5")).gets,
            ]
        })
        .collect();
    assert_eq!(before, after);
    assert_eq!(server.total_gets(), total_before + 2);

    // A deleted file shows as missing and is fetched again (only it).
    std::fs::remove_file(tmp.path().join("raw/pubmed/baseline/pubmed26n1335.xml.gz")).unwrap();
    assert_eq!(download::status(&ctx).unwrap().missing, 1);
    let third = download::download(&ctx, &args(&server)).unwrap();
    assert_eq!(third.downloaded, vec!["pubmed26n1335.xml.gz".to_string()]);
    assert_eq!(server.hits(p1335).gets, 3);
}

#[test]
fn unverifiable_file_never_reaches_its_final_path_and_parts_resume() {
    let server = TestServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = test_ctx(tmp.path());
    let good = random_bytes(3 * MB, 10);
    let bad = random_bytes(MB, 11);
    let present = random_bytes(MB / 2, 12);
    serve_file(&server, "baseline", "pubmed26n0001.xml.gz", &good);
    serve_file(&server, "baseline", "pubmed26n0003.xml.gz", &present);
    // The sidecar never matches the body.
    server.add("/baseline/pubmed26n0002.xml.gz", bad);
    server.add(
        "/baseline/pubmed26n0002.xml.gz.md5",
        format!(
            "MD5(pubmed26n0002.xml.gz)= {}\n",
            md5_hex(b"something else")
        )
        .into_bytes(),
    );
    // A list file instead of the remote index; URLs, paths and names all work.
    let list = tmp.path().join("files.txt");
    std::fs::write(
        &list,
        "# files\nhttps://example.org/pubmed/baseline/pubmed26n0001.xml.gz\nbaseline/pubmed26n0002.xml.gz\npubmed26n0003.xml.gz\n",
    )
    .unwrap();
    // A killed earlier run left the first MiB of 0001 as a part; 0003 is already in place, unrecorded.
    let base = tmp.path().join("raw/pubmed/baseline");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("pubmed26n0001.xml.gz.part"), &good[..MB]).unwrap();
    std::fs::write(base.join("pubmed26n0003.xml.gz"), &present).unwrap();

    let mut a = args(&server);
    a.list = Some(list);
    a.updates = None;
    let summary = download::download(&ctx, &a).unwrap();
    assert_eq!(summary.downloaded, vec!["pubmed26n0001.xml.gz".to_string()]);
    assert_eq!(summary.cached, vec!["pubmed26n0003.xml.gz".to_string()]);
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].file, "baseline/pubmed26n0002.xml.gz");
    assert!(
        summary.failed[0].error.contains("MD5 mismatch"),
        "{}",
        summary.failed[0].error
    );
    assert_eq!(
        server.hits("/baseline/pubmed26n0002.xml.gz").gets,
        4,
        "bounded by max_attempts"
    );
    assert!(!base.join("pubmed26n0002.xml.gz").exists());
    assert!(
        parts_and_temps(tmp.path()).is_empty(),
        "mismatching part deleted"
    );
    assert_eq!(
        std::fs::read(base.join("pubmed26n0001.xml.gz")).unwrap(),
        good
    );
    assert_eq!(
        server.hits("/baseline/pubmed26n0001.xml.gz").ranges,
        vec![MB as u64]
    );
    assert_eq!(server.hits("/baseline/pubmed26n0003.xml.gz").gets, 0);
    assert_eq!(server.hits("/baseline/").gets, 0, "no listing with --list");
}

#[test]
fn cli_exits_non_zero_naming_the_failed_file_while_others_complete() {
    let server = TestServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ok1 = random_bytes(MB, 20);
    let ok2 = random_bytes(MB, 21);
    serve_file(&server, "baseline", "pubmed26n0001.xml.gz", &ok1);
    serve_file(&server, "baseline", "pubmed26n0002.xml.gz", &ok2);
    serve_file(&server, "baseline", "pubmed26n0003.xml.gz", &ok2);
    server.always("/baseline/pubmed26n0002.xml.gz", Fault::Status(500));
    server.add(
        "/baseline/",
        html_index(&[
            "pubmed26n0001.xml.gz",
            "pubmed26n0002.xml.gz",
            "pubmed26n0003.xml.gz",
        ])
        .into_bytes(),
    );
    let data = tmp.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["download", "--files", "1-3", "--max-attempts", "3"])
        .args([
            "--backoff",
            "0.01",
            "--backoff-max",
            "0.02",
            "--read-timeout",
            "2",
        ])
        .arg("--base-url")
        .arg(server.url())
        .arg("--data-dir")
        .arg(&data)
        .env("CI", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("pubmed26n0002.xml.gz") && stderr.contains("HTTP 500"),
        "{stderr}"
    );
    assert!(
        stdout.contains("2 downloaded") && stdout.contains("1 failed"),
        "{stdout}"
    );
    assert_eq!(server.hits("/baseline/pubmed26n0002.xml.gz").gets, 3);
    let base = data.join("raw/pubmed/baseline");
    assert_eq!(
        std::fs::read(base.join("pubmed26n0001.xml.gz")).unwrap(),
        ok1
    );
    assert_eq!(
        std::fs::read(base.join("pubmed26n0003.xml.gz")).unwrap(),
        ok2
    );
    assert!(!base.join("pubmed26n0002.xml.gz").exists());

    // `pipeline status` lists the two verified files.
    let status = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .arg("status")
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success());
    let row = text.lines().find(|l| l.starts_with("download")).unwrap();
    assert_eq!(
        row.split_whitespace().nth(2),
        Some("2"),
        "cached column: {row}"
    );

    // A typo in the selection is an error before anything is fetched.
    let bad = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["download", "--files", "7"])
        .arg("--base-url")
        .arg(server.url())
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no file numbered 7"));
}

/// A minimal valid safetensors file with one F32 tensor of `n` values.
fn safetensors(n: usize) -> Vec<u8> {
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        4 * n
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(random_bytes(4 * n, 30));
    out
}

#[test]
fn model_assets_come_verified_by_sha256_and_resume() {
    let server = TestServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = test_ctx(tmp.path());
    let repo = "state-spaces/mamba-130m-hf";
    let config = br#"{"d_model": 768, "n_layer": 24}"#.to_vec();
    let model = safetensors(MB / 2);
    let sha = sha256_hex(&model);
    server.add_with_headers(
        &format!("/{repo}/resolve/main/config.json"),
        config.clone(),
        &[("ETag", "\"0123456789abcdef0123456789abcdef01234567\"")],
    );
    let size = model.len().to_string();
    server.redirect(
        &format!("/{repo}/resolve/main/model.safetensors"),
        &format!("{}/cdn/model.safetensors", server.url()),
        &[
            ("X-Linked-Etag", &format!("\"{sha}\"")),
            ("X-Linked-Size", &size),
        ],
    );
    server.add("/cdn/model.safetensors", model.clone());
    server.fault("/cdn/model.safetensors", Fault::DropAfter(MB));
    server.fault("/cdn/model.safetensors", Fault::Corrupt);

    let hub_args = HubArgs {
        base_url: Some(server.url()),
        ..Default::default()
    };
    let s = hub::fetch_repo(&ctx, &hub_args, repo, hub::MODEL_FILES).unwrap();
    let dir = tmp.path().join("models/state-spaces__mamba-130m-hf");
    assert_eq!(s.dir, dir);
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), config);
    assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), model);
    let m = s
        .files
        .iter()
        .find(|f| f.name == "model.safetensors")
        .unwrap();
    assert_eq!(m.sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(m.source, Source::Downloaded);
    let cdn = server.hits("/cdn/model.safetensors");
    assert_eq!(cdn.gets, 3, "drop, SHA-256 mismatch, success");
    assert_eq!(cdn.ranges, vec![MB as u64]);
    assert_eq!(s.retries, 2);
    assert!(!dir.join("model.safetensors.part").exists());

    // Cached: no new body requests.
    let again = hub::fetch_repo(&ctx, &hub_args, repo, hub::MODEL_FILES).unwrap();
    assert!(again.files.iter().all(|f| f.source == Source::Cached));
    assert_eq!(server.hits("/cdn/model.safetensors").gets, 3);

    // A body that is not JSON (an error page) never becomes tokenizer.json.
    let tok_repo = "EleutherAI/gpt-neox-20b";
    server.add(
        &format!("/{tok_repo}/resolve/main/tokenizer.json"),
        b"<html>rate limited</html>".to_vec(),
    );
    let err = hub::fetch_repo(&ctx, &hub_args, tok_repo, hub::TOKENIZER_FILES).unwrap_err();
    assert!(format!("{err:#}").contains("not valid JSON"), "{err:#}");
    let tok_dir = tmp.path().join("models/EleutherAI__gpt-neox-20b");
    assert!(!tok_dir.join("tokenizer.json").exists());
    assert!(!tok_dir.join("tokenizer.json.part").exists());

    // Offline: a local directory is validated and copied.
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("tokenizer.json"), br#"{"version":"1.0"}"#).unwrap();
    let off = HubArgs {
        from: Some(local.clone()),
        ..Default::default()
    };
    let s = hub::fetch_repo(&ctx, &off, tok_repo, hub::TOKENIZER_FILES).unwrap();
    assert_eq!(s.files[0].source, Source::Local);
    assert_eq!(
        std::fs::read(tok_dir.join("tokenizer.json")).unwrap(),
        br#"{"version":"1.0"}"#
    );
    // --offline with nothing there is a clear error.
    let empty = HubArgs {
        offline: true,
        out: Some(tmp.path().join("empty")),
        ..Default::default()
    };
    let err = hub::fetch_repo(&ctx, &empty, repo, hub::MODEL_FILES).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    // A truncated safetensors file is rejected offline too.
    std::fs::write(local.join("config.json"), &config).unwrap();
    std::fs::write(local.join("model.safetensors"), &model[..model.len() - 10]).unwrap();
    let trunc = HubArgs {
        from: Some(local),
        out: Some(tmp.path().join("trunc")),
        ..Default::default()
    };
    let err = hub::fetch_repo(&ctx, &trunc, repo, hub::MODEL_FILES).unwrap_err();
    assert!(format!("{err:#}").contains("data bytes"), "{err:#}");
}

/// A one-entry zip archive (stored, no compression) in the layout `torch.save` writes:
/// `archive/data.pkl` holding `payload`.
fn torch_zip(payload: &[u8]) -> Vec<u8> {
    let name = b"archive/data.pkl";
    let mut crc = flate2::Crc::new();
    crc.update(payload);
    let crc = crc.sum();
    let le16 = |v: u16| v.to_le_bytes();
    let le32 = |v: u32| v.to_le_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(b"PK\x03\x04");
    out.extend(le16(20)); // version needed
    out.extend(le16(0)); // flags
    out.extend(le16(0)); // stored
    out.extend(le32(0)); // time, date
    out.extend(le32(crc));
    out.extend(le32(payload.len() as u32));
    out.extend(le32(payload.len() as u32));
    out.extend(le16(name.len() as u16));
    out.extend(le16(0));
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    let central = out.len() as u32;
    out.extend_from_slice(b"PK\x01\x02");
    out.extend(le16(20));
    out.extend(le16(20));
    out.extend(le16(0));
    out.extend(le16(0));
    out.extend(le32(0));
    out.extend(le32(crc));
    out.extend(le32(payload.len() as u32));
    out.extend(le32(payload.len() as u32));
    out.extend(le16(name.len() as u16));
    out.extend([0; 12]); // extra, comment, disk, attributes (internal 2 + external 4)
    out.extend(le32(0)); // local header offset
    out.extend_from_slice(name);
    let central_len = out.len() as u32 - central;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend([0; 4]);
    out.extend(le16(1));
    out.extend(le16(1));
    out.extend(le32(central_len));
    out.extend(le32(central));
    out.extend(le16(0));
    out
}

/// state-spaces publishes Mamba-2 only in mamba_ssm's layout: no model.safetensors (404), a
/// `pytorch_model.bin`. fetch-model takes it, verified, cached; a repository with neither is a
/// clear error; a cut-off .bin is refused.
#[test]
fn mamba_ssm_repositories_give_pytorch_model_bin() {
    let server = TestServer::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = test_ctx(tmp.path());
    let repo = "state-spaces/mamba2-130m";
    let config = br#"{"d_model": 768, "n_layer": 24, "ssm_cfg": {"layer": "Mamba2"}}"#.to_vec();
    let weights = torch_zip(&random_bytes(MB / 4, 31));
    let sha = sha256_hex(&weights);
    server.add(&format!("/{repo}/resolve/main/config.json"), config.clone());
    server.redirect(
        &format!("/{repo}/resolve/main/pytorch_model.bin"),
        &format!("{}/cdn/pytorch_model.bin", server.url()),
        &[
            ("X-Linked-Etag", &format!("\"{sha}\"")),
            ("X-Linked-Size", &weights.len().to_string()),
        ],
    );
    server.add("/cdn/pytorch_model.bin", weights.clone());
    let hub_args = HubArgs {
        base_url: Some(server.url()),
        ..Default::default()
    };
    let s = hub::fetch_repo(&ctx, &hub_args, repo, hub::MODEL_FILES).unwrap();
    let names: Vec<&str> = s.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["config.json", "pytorch_model.bin"]);
    let dir = tmp.path().join("models/state-spaces__mamba2-130m");
    assert_eq!(
        std::fs::read(dir.join("pytorch_model.bin")).unwrap(),
        weights
    );
    assert!(!dir.join("model.safetensors").exists());
    assert_eq!(s.files[1].sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(s.files[1].source, Source::Downloaded);
    let again = hub::fetch_repo(&ctx, &hub_args, repo, hub::MODEL_FILES).unwrap();
    assert!(again.files.iter().all(|f| f.source == Source::Cached));
    assert_eq!(server.hits("/cdn/pytorch_model.bin").gets, 1);

    // Neither weights file: an error naming both.
    let bare = "someone/config-only";
    server.add(&format!("/{bare}/resolve/main/config.json"), config.clone());
    let err = format!(
        "{:#}",
        hub::fetch_repo(&ctx, &hub_args, bare, hub::MODEL_FILES).unwrap_err()
    );
    assert!(
        err.contains("model.safetensors") && err.contains("pytorch_model.bin"),
        "{err}"
    );

    // Offline from a local copy, and a truncated one refused.
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("config.json"), &config).unwrap();
    std::fs::write(local.join("pytorch_model.bin"), &weights).unwrap();
    let from = |out: &str| HubArgs {
        from: Some(local.clone()),
        out: Some(tmp.path().join(out)),
        ..Default::default()
    };
    let s = hub::fetch_repo(&ctx, &from("copy"), repo, hub::MODEL_FILES).unwrap();
    assert_eq!(s.files[1].name, "pytorch_model.bin");
    std::fs::write(
        local.join("pytorch_model.bin"),
        &weights[..weights.len() - 30],
    )
    .unwrap();
    let err = format!(
        "{:#}",
        hub::fetch_repo(&ctx, &from("trunc"), repo, hub::MODEL_FILES).unwrap_err()
    );
    assert!(err.contains("end-of-central-directory"), "{err}");
}
