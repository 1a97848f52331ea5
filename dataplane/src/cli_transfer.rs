//! `pika-dataplane import` and `export`: the command-line face of
//! [`pika_dataplane::transfer`] (files in and out, a progress bar, a summary).

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pika_dataplane::config::Config;
use pika_dataplane::resolve;
use pika_dataplane::service::audit::AuditLog;
use pika_dataplane::service::bookkeeping::Bookkeeper;
use pika_dataplane::service::memories::MemoryEdits;
use pika_dataplane::transfer::{self, ImportOptions, format};
use std::io::IsTerminal;
use std::path::PathBuf;

pub struct ImportArgs {
    pub files: Vec<PathBuf>,
    pub options: ImportOptions,
}

/// Reads every file (JSON or JSON Lines exports; `.db` files as Mem0's
/// history database), imports, and prints a summary.
pub async fn import(config: &Config, args: ImportArgs) -> Result<()> {
    let mut memories = Vec::new();
    let mut rejected = Vec::new();
    let mut history = std::collections::BTreeMap::new();
    for path in &args.files {
        let name = path.display().to_string();
        if path.extension().is_some_and(|e| e == "db") {
            history.extend(format::read_history_db(&name).await?);
            continue;
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
        let (ok, bad) = format::parse_export(&name, &text)?;
        memories.extend(ok);
        rejected.extend(bad);
    }
    // History rows go to the memories of the exports; the rest of a history
    // describes memories of its own (of `--user`: history.db names no users).
    for m in &mut memories {
        if let Some(h) = history.remove(&m.id) {
            m.history = h;
        }
    }
    memories.extend(format::memories_from_history(history));
    let ports = resolve::build_store_ports(config).await?;
    let (bookkeeper, writer) = Bookkeeper::start(ports.meta.clone());
    let edits = MemoryEdits {
        meta: ports.meta.clone(),
        vectors: ports.vectors.clone(),
        graph: ports.graph.clone(),
        embedder: ports.embedder.clone(),
        signals: ports.signals.clone(),
        audit: AuditLog::new(ports.meta.clone(), bookkeeper),
    };
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(memories.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} memories  {per_sec}  ETA {eta}")
            .context("progress template")?,
    );
    let report = transfer::import(
        &edits,
        ports.meta.as_ref(),
        memories,
        rejected,
        &args.options,
        &mut |done| bar.set_position(done as u64),
    )
    .await?;
    bar.finish_and_clear();
    drop(edits);
    let _ = writer.await;
    let verb = if args.options.dry_run {
        "would import"
    } else {
        "imported"
    };
    println!(
        "{verb} {} memories for {} users of tenant {} ({} already there, {} rejected) from {} read, in {:.1} s ({:.0} memories/s, {})",
        report.inserted,
        report.users,
        args.options.tenant,
        report.skipped,
        report.rejected.len(),
        report.read,
        report.elapsed.as_secs_f64(),
        report.rate(),
        ports.embedder.model_id(),
    );
    for r in report.rejected.iter().take(20) {
        println!("rejected {}: {}", r.at, r.reason);
    }
    if report.rejected.len() > 20 {
        println!("... and {} more rejected", report.rejected.len() - 20);
    }
    Ok(())
}

/// Writes memories as JSON Lines to `out` (stdout when `None`).
pub async fn export(config: &Config, tenant: &str, users: &[String], out: Option<PathBuf>) -> Result<()> {
    let meta = resolve::open_meta(config).await?;
    let n = match &out {
        Some(path) => {
            let file =
                std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            transfer::export(meta.as_ref(), tenant, users, &mut w).await?
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            transfer::export(meta.as_ref(), tenant, users, &mut w).await?
        }
    };
    eprintln!("exported {n} memories of tenant {tenant}");
    Ok(())
}
