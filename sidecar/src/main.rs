//! `pika-sidecar`: the caching proxy in front of one dataplane.

use anyhow::{Context, Result};
use clap::Parser;
use pika_sidecar::config::SidecarConfig;
use pika_sidecar::{load_policy, start};
use std::path::PathBuf;

/// Flags override the configuration file and `PIKA_SIDECAR__*` variables.
#[derive(Parser)]
#[command(name = "pika-sidecar", version, about = "PIKA caching sidecar")]
struct Cli {
    /// The sidecar's configuration file (TOML; see `SidecarConfig`).
    #[arg(long, env = "PIKA_SIDECAR_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    listen: Option<String>,
    /// The dataplane, `http://host:port`.
    #[arg(long)]
    upstream: Option<String>,
    /// Cache policy file: JSON or TOML, the `CachePolicy` spec schema.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// How long a key's grant is trusted, in milliseconds.
    #[arg(long)]
    key_cache_ttl_ms: Option<u64>,
    /// Requests per second per API key (0: no limit).
    #[arg(long)]
    rate_limit_per_second: Option<u32>,
    #[arg(long)]
    rate_limit_burst: Option<u32>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = SidecarConfig::load(cli.config.as_deref())?;
    if let Some(v) = cli.listen {
        config.listen = v;
    }
    if let Some(v) = cli.upstream {
        config.upstream = v;
    }
    if let Some(v) = cli.policy {
        config.policy = v;
    }
    if let Some(v) = cli.key_cache_ttl_ms {
        config.keys.cache_ttl_ms = v;
    }
    if let Some(v) = cli.rate_limit_per_second {
        config.rate_limit.per_second = v;
    }
    if let Some(v) = cli.rate_limit_burst {
        config.rate_limit.burst = v;
    }
    pika_common::telemetry::init(config.log.format, &config.log.filter);
    let policy = if config.policy.as_os_str().is_empty() {
        Default::default()
    } else {
        load_policy(&config.policy)?
    };
    let running = start(config, policy).await.context("cannot start the sidecar")?;
    println!("sidecar listening on http://{}", running.addr);
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        pika_common::shutdown::signal().await;
        tracing::info!("shutting down: draining requests and cache-hit audits");
        let _ = stop.send(true);
    });
    running.wait().await;
    Ok(())
}
