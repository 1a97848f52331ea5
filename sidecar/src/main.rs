//! `pika-sidecar`: the caching proxy in front of one dataplane.

use anyhow::{Context, Result};
use clap::Parser;
use pika_dataplane::config::Config;
use pika_sidecar::{SidecarOptions, load_policy, start};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "pika-sidecar", version, about = "PIKA caching sidecar")]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PIKA_SIDECAR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// The dataplane, `http://host:port`.
    #[arg(long, env = "PIKA_SIDECAR_UPSTREAM", default_value = "http://127.0.0.1:8081")]
    upstream: String,
    /// The dataplane's configuration file (key store, Redis, embedder, auth).
    #[arg(long, env = "PIKA_CONFIG")]
    config: Option<PathBuf>,
    /// The dataplane's data folder (embedded key store, model), as `pika-dataplane --data-dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Cache policy file: JSON or TOML, the `CachePolicy` spec schema.
    #[arg(long, env = "PIKA_SIDECAR_POLICY")]
    policy: Option<PathBuf>,
    #[arg(long, env = "PIKA_SIDECAR_KEY_CACHE_TTL_MS", default_value_t = 5000)]
    key_cache_ttl_ms: u64,
    /// Requests per second per API key (0: no limit).
    #[arg(long, env = "PIKA_SIDECAR_RATE_LIMIT", default_value_t = 100)]
    rate_limit_per_second: u32,
    #[arg(long, env = "PIKA_SIDECAR_RATE_BURST", default_value_t = 200)]
    rate_limit_burst: u32,
    #[arg(long, env = "PIKA_SIDECAR_UPSTREAM_TIMEOUT_MS", default_value_t = 30_000)]
    upstream_timeout_ms: u64,
    /// A key with the search permission, used for warm-up queries.
    #[arg(long, env = "PIKA_SIDECAR_WARMUP_KEY", hide_env_values = true)]
    warmup_key: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.storage.data_dir = dir.clone();
    }
    pika_common::telemetry::init(config.log.format, &config.log.filter);
    let policy = match &cli.policy {
        Some(p) => load_policy(p)?,
        None => Default::default(),
    };
    let options = SidecarOptions {
        listen: cli.listen,
        upstream: cli.upstream,
        upstream_timeout: Duration::from_millis(cli.upstream_timeout_ms),
        key_cache_ttl: Duration::from_millis(cli.key_cache_ttl_ms),
        rate_limit_per_second: cli.rate_limit_per_second,
        rate_limit_burst: cli.rate_limit_burst,
        warmup_key: cli.warmup_key,
        policy,
    };
    let running = start(options, &config)
        .await
        .context("cannot start the sidecar")?;
    println!("sidecar listening on http://{}", running.addr);
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        pika_common::shutdown::signal().await;
        tracing::info!("shutting down: draining requests");
        let _ = stop.send(true);
    });
    running.wait().await;
    Ok(())
}
