//! `pika-eval`: retrieval quality through the HTTP API, with the raw-turn
//! baselines of the same run (see `pika_tests::eval` for the protocol).
//!
//! ```sh
//! # an embedded service started in-process on a temporary data folder
//! cargo run --release -p pika-tests --bin pika-eval -- ../shared/datasets/realtalk
//! # a running service (its key needs extract + search)
//! cargo run --release -p pika-tests --bin pika-eval -- --url http://127.0.0.1:8081 --key $KEY tests/data/children
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use pika_dataplane::config::Config;
use pika_tests::eval::{self, EvalOptions, Target, dataset};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "pika-eval",
    about = "Retrieval quality of PIKA Memory on LOCOMO-format data"
)]
struct Args {
    /// LOCOMO-format files, or folders of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Base URL of a running service; without it an embedded one is started in-process.
    #[arg(long)]
    url: Option<String>,
    /// API key for --url (extract and search permissions).
    #[arg(long, env = "PIKA_API_KEY", default_value = "")]
    key: String,
    /// Dataplane configuration (TOML) for the embedded service and the dense baseline's embedder.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Use only the first N samples.
    #[arg(long)]
    max_samples: Option<usize>,
    /// Skip the dense and RRF baselines (no local embedder needed).
    #[arg(long)]
    no_dense_baseline: bool,
    /// Extract requests in flight during ingest.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Longest wait for ingest to finish, in seconds.
    #[arg(long, default_value_t = 3600)]
    ingest_timeout_s: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Print (to stderr) each question not answered within N results, with what came back.
    #[arg(long, default_value_t = 0)]
    show_misses: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut samples = dataset::load_paths(&args.paths)?;
    if let Some(n) = args.max_samples {
        samples.truncate(n);
    }
    let config = Config::load(args.config.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let embedder = if args.no_dense_baseline {
        None
    } else {
        Some(pika_dataplane::resolve::build_embedder(&config).context("building the baseline embedder")?)
    };
    let run_id = format!("eval{}", chrono::Utc::now().timestamp());
    let (target, running, _dir) = match &args.url {
        Some(url) => (
            Target {
                base_url: url.trim_end_matches('/').to_string(),
                key: args.key.clone(),
            },
            None,
            None,
        ),
        None => {
            let dir = tempfile::tempdir()?;
            let mut c = config.clone();
            c.server.listen = "127.0.0.1:0".into();
            c.storage.data_dir = dir.path().to_path_buf();
            let running = pika_dataplane::app::start(c)
                .await
                .map_err(|e| anyhow::anyhow!("starting the embedded service: {e}"))?;
            eprintln!("embedded service on http://{}", running.addr);
            (
                Target {
                    base_url: format!("http://{}", running.addr),
                    key: running.bootstrap_admin_key.clone().unwrap_or_default(),
                },
                Some(running),
                Some(dir),
            )
        }
    };
    let opts = EvalOptions {
        target,
        embedder,
        run_id,
        concurrency: args.concurrency,
        ingest_timeout: Duration::from_secs(args.ingest_timeout_s),
        limit: 10,
        show_misses: args.show_misses,
    };
    let report = eval::run(&samples, &opts).await;
    if let Some(r) = running {
        r.shutdown().await;
    }
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.to_markdown());
    }
    Ok(())
}
