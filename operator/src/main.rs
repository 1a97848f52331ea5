//! `pika-operator`: leader election, then the controller; `/health`,
//! `/ready` and `/metrics` on `--listen` throughout.

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use kube::Client;
use kube::runtime::events::Reporter;
use kube_lease_manager::LeaseManagerBuilder;
use pika_common::telemetry::{self, LogFormat};
use pika_operator::controller::{self, Context};
use pika_operator::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "pika-operator",
    version,
    about = "Reconciles MemoryService and CachePolicy resources"
)]
struct Cli {
    /// Health and metrics address.
    #[arg(long, env = "PIKA_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
    /// Watch one namespace only (all namespaces by default).
    #[arg(long, env = "PIKA_OPERATOR_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, env = "PIKA_OPERATOR_LEASE", default_value = "pika-operator")]
    lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lease duration in seconds: how long a dead leader blocks the others.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Run without a Lease (one replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// Re-apply every child this often even if unchanged (corrects drift).
    #[arg(long, default_value_t = 3600)]
    full_apply_seconds: u64,
    /// `json` or `text`.
    #[arg(long, env = "PIKA_OPERATOR_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

#[derive(Clone)]
struct Http {
    metrics: Metrics,
    started: Arc<AtomicBool>,
}

async fn serve_http(listen: &str, http: Http) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        // Ready once connected to the API server; a standby replica is ready
        // too (it serves metrics and waits for the lease).
        .route(
            "/ready",
            get(|State(h): State<Http>| async move {
                if h.started.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(h): State<Http>| async move { h.metrics.render() }),
        )
        .with_state(http);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = if cli.log_format == "text" {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    telemetry::init(format, "info,kube=warn");
    let metrics = Metrics::new()?;
    let started = Arc::new(AtomicBool::new(false));
    let http = Http {
        metrics: metrics.clone(),
        started: started.clone(),
    };
    let listen = cli.listen.clone();
    tokio::spawn(async move {
        if let Err(e) = serve_http(&listen, http).await {
            tracing::error!(error = %e, "health and metrics server stopped");
        }
    });

    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API")?;
    started.store(true, Ordering::Relaxed);
    let identity = cli
        .identity
        .clone()
        .unwrap_or_else(|| format!("pika-operator-{}", std::process::id()));
    let reporter = Reporter {
        controller: "pika-operator".into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        reporter,
        Duration::from_secs(cli.full_apply_seconds),
    ));

    if cli.no_leader_election {
        metrics.leader.set(1);
        controller::run(ctx, cli.watch_namespace, pika_common::shutdown::signal()).await;
        return Ok(());
    }

    let manager = LeaseManagerBuilder::new(client, &cli.lease_name)
        .with_namespace(&cli.lease_namespace)
        .with_identity(&identity)
        .with_duration(cli.lease_seconds)
        .build()
        .await
        .context("cannot set up the leader lease")?;
    let (mut leading, lease_task) = manager.watch().await;
    tracing::info!(identity = %identity, lease = %cli.lease_name, "waiting for leadership");
    let shutdown = pika_common::shutdown::signal();
    tokio::pin!(shutdown);
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            _ = &mut shutdown => break,
            changed = leading.changed() => changed.context("leader election stopped")?,
        }
    }
    if *leading.borrow() {
        tracing::info!("leading; starting the controller");
        metrics.leader.set(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut lost = leading.clone();
        let controller = tokio::spawn(controller::run(ctx, cli.watch_namespace, async move {
            let _ = stop_rx.await;
        }));
        let lost_leadership = async move {
            while *lost.borrow_and_update() {
                if lost.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            _ = &mut shutdown => tracing::info!("shutting down"),
            _ = lost_leadership => tracing::warn!("lost leadership; stopping so a fresh replica can take over"),
        }
        let _ = stop_tx.send(());
        let _ = controller.await;
        metrics.leader.set(0);
    }
    // Dropping the receiver ends the lease task, which releases the lease.
    drop(leading);
    match lease_task.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "lease not released cleanly"),
        Err(e) => tracing::warn!(error = %e, "lease task failed"),
    }
    Ok(())
}
