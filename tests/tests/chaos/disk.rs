//! A full disk under the embedded store: `pika-dataplane serve` on its
//! embedded defaults with its data folder on a small tmpfs, which is then
//! filled to the last byte. Extracts that cannot be stored must be refused
//! (no 202 for a job that is not on disk), jobs accepted before must
//! complete once space is back, and the service must recover by itself.

use crate::cluster::spawn;
use crate::load::Load;
use crate::{Mode, Row, oracle, recovered};
use pika_tests::support::model_dir;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

const FAULT: &str = "embedded data dir full (tmpfs)";

/// Fills the file system holding `path` with a file there; returns its size.
fn fill(path: &std::path::Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    // The last partial chunk.
    while f.write_all(&chunk[..4096]).is_ok() {
        written += 4096;
    }
    let _ = f.flush();
    written
}

pub async fn full_disk(mode: Mode) -> Row {
    let mount = tempfile::tempdir().expect("tempdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
        .arg(mount.path())
        .status()
        .is_ok_and(|s| s.success());
    let mut row = Row {
        fault: FAULT.to_string(),
        stats: Default::default(),
        verdict: Default::default(),
        recovery: Some(Duration::ZERO),
        search_may_fail: true,
    };
    if !mounted {
        row.fault = format!("{FAULT}: skipped, cannot mount a tmpfs here");
        return row;
    }
    let data = mount.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let env: Vec<(String, String)> = [
        ("PIKA__SERVER__LISTEN", format!("127.0.0.1:{port}")),
        ("PIKA__STORAGE__DATA_DIR", data.display().to_string()),
        ("PIKA__EMBEDDING__MODEL_DIR", model_dir().display().to_string()),
        ("PIKA__WORKER__RETRY_MAX_DELAY_MS", "2000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let log = std::env::temp_dir().join("pika-chaos-disk.log");
    let (mut serve, _) = spawn(&["serve"], &env, "listening on ", &log);
    let base = format!("http://127.0.0.1:{port}");
    let key = std::fs::read_to_string(data.join("bootstrap-admin.key"))
        .expect("admin key")
        .trim()
        .to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let users: Vec<String> = (0..5).map(|k| format!("disk-u{k}")).collect();
    let load = Load::start(&base, &key, mode.rps);
    load.phase(FAULT, users.clone());
    tokio::time::sleep(mode.warm).await;
    load.fault(true);
    let filler = mount.path().join("filler");
    let filled = fill(&filler);
    tokio::time::sleep(mode.hold).await;
    let _ = std::fs::remove_file(&filler);
    load.fault(false);
    row.recovery = recovered(&http, &base, &base, &key, "disk-canary").await;
    tokio::time::sleep(mode.cool).await;
    load.phase("settling", Vec::new());
    row.stats = load.stats(FAULT);
    load.stop().await;
    row.verdict = oracle::verify(
        &http,
        &base,
        &key,
        &row.stats.accepted,
        &users,
        Duration::from_secs(300),
    )
    .await;
    println!(
        "{FAULT}: filled {} MiB; accepted {}, completed {}, extract 5xx {} ({} in fault)",
        filled / (1 << 20),
        row.verdict.accepted,
        row.verdict.completed,
        row.stats.extract_5xx,
        row.stats.extract_5xx_in_fault
    );
    serve.kill9();
    let _ = Command::new("umount").arg(mount.path()).status();
    row
}
