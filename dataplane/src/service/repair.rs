//! The graph repair loop. The graph is an optional store (DESIGN §8: graph
//! down only means no enrichment), so a job whose graph write fails still
//! completes, and its commit queues a repair naming the facts
//! (`graph_repairs`). This loop, run where workers run, replays due repairs:
//! an upsert reads the facts back from the metadata store (only the still
//! active ones: a fact deleted or erased meanwhile is not written back) and
//! writes their nodes and entities; a delete removes nodes of replaced
//! facts. A repair that fails again waits longer each time (capped), and a
//! pass stops at the first failure: the graph is still down.

use crate::metrics::Metrics;
use crate::ports::{FactGraph, MetaStore, StoreError};
use crate::service::forget::Forget;
use crate::service::worker::backoff_delay;
use crate::{app::Deps, domain::GraphRepair, domain::MemoryKind, domain::RepairOp};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Repairs taken per pass.
const BATCH: usize = 100;

/// A taken repair is hidden from other processes this long.
const HOLD: Duration = Duration::from_secs(60);

/// Longest pause between two tries of one repair.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// Replays graph writes the graph missed.
pub struct GraphRepairer {
    meta: Arc<dyn MetaStore>,
    graph: Arc<dyn FactGraph>,
    metrics: Arc<Metrics>,
    /// Undoes a repair whose user was erased while it ran.
    forget: Forget,
    every: Duration,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RepairPass {
    pub repaired: usize,
    pub failed: usize,
}

impl GraphRepairer {
    pub fn new(deps: &Deps, every: Duration) -> Self {
        GraphRepairer {
            meta: deps.meta.clone(),
            graph: deps.graph.clone(),
            metrics: deps.metrics.clone(),
            forget: Forget {
                meta: deps.meta.clone(),
                vectors: deps.vectors.clone(),
                graph: deps.graph.clone(),
                signals: deps.signals.clone(),
            },
            every: every.max(Duration::from_millis(50)),
        }
    }

    /// Runs a pass every `every` until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(self.every) => {}
            }
            if *shutdown.borrow() {
                break;
            }
            match self.pass().await {
                Ok(p) if p.repaired > 0 => tracing::info!(repaired = p.repaired, "graph writes repaired"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read graph repairs; will try again"),
            }
        }
    }

    /// Replays the repairs due now.
    pub async fn pass(&self) -> Result<RepairPass, StoreError> {
        let mut out = RepairPass::default();
        let due = self.meta.take_graph_repairs(Utc::now(), HOLD, BATCH).await?;
        for repair in due {
            match self.replay(&repair).await {
                Ok(()) => {
                    self.meta.finish_graph_repair(repair.id).await?;
                    self.metrics.graph_repairs.with_label_values(&["repaired"]).inc();
                    out.repaired += 1;
                }
                Err(e) => {
                    let wait = backoff_delay(
                        self.every.as_millis() as u64,
                        MAX_DELAY.as_millis() as u64,
                        repair.attempts + 1,
                        0.0,
                    );
                    let next =
                        Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
                    tracing::debug!(error = %e, attempts = repair.attempts + 1, ?wait, "graph repair failed");
                    self.meta
                        .postpone_graph_repair(repair.id, &e.to_string(), next)
                        .await?;
                    self.metrics.graph_repairs.with_label_values(&["failed"]).inc();
                    out.failed += 1;
                    // The graph is still down: the rest keep their turn.
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn replay(&self, repair: &GraphRepair) -> Result<(), StoreError> {
        match repair.op {
            RepairOp::Upsert => {
                let nodes: Vec<(String, Vec<String>)> = self
                    .meta
                    .active_facts(&repair.fact_ids)
                    .await?
                    .into_iter()
                    .filter(|f| f.kind == MemoryKind::Fact && f.user_id == repair.user_id)
                    .map(|f| (f.fact_id, f.entities))
                    .collect();
                if nodes.is_empty() {
                    return Ok(());
                }
                self.graph.upsert_facts(&repair.user_id, &nodes).await?;
                // Erased while this ran: what was just written goes too.
                let written: Vec<String> = nodes.into_iter().map(|(id, _)| id).collect();
                if let Err(e) = self
                    .forget
                    .undo_if_erased(&repair.user_id, repair.created_at, &written)
                    .await
                {
                    tracing::warn!(error = %e, "cannot check for an erasure after a graph repair");
                }
                Ok(())
            }
            RepairOp::Delete => self.graph.delete_facts(&repair.user_id, &repair.fact_ids).await,
        }
    }
}
