//! Application services: one per use case, each holding only the ports it
//! needs, none knowing HTTP (qdrant's handler → service → storage split).
//! Handlers parse, call one service method and map the result; the worker
//! and the sweeper run beside them on the same ports.

pub mod audit;
pub mod bm25;
pub mod bookkeeping;
pub mod error;
pub mod export;
pub mod facts;
pub mod forget;
pub mod health;
pub mod ingest;
pub mod job_admin;
pub mod jobs;
pub mod keys;
pub mod leases;
pub mod memories;
pub mod ranking;
pub mod reindex;
pub mod repair;
pub mod retention;
pub mod search;
pub mod sweeper;
pub mod users;
pub mod worker;

pub use error::ServiceError;

use crate::app::Deps;
use crate::config::Config;
use audit::AuditLog;
use bookkeeping::Bookkeeper;
use facts::FactService;
use forget::Forget;
use health::HealthService;
use ingest::ExtractService;
use jobs::JobService;
use search::SearchService;
use tokio::sync::broadcast;
use users::UserService;

/// Every use case the API serves.
pub struct Services {
    pub extract: ExtractService,
    pub search: SearchService,
    pub jobs: JobService,
    pub job_admin: job_admin::JobAdmin,
    pub facts: FactService,
    pub memories: memories::MemoryEdits,
    pub users: UserService,
    pub health: HealthService,
    pub keys: keys::KeyService,
    pub audit: AuditLog,
}

impl Services {
    /// Hands each service its ports.
    pub fn new(
        deps: &Deps,
        config: &Config,
        bookkeeper: Bookkeeper,
        job_done: broadcast::Sender<String>,
    ) -> Self {
        let audit = AuditLog::new(deps.meta.clone(), bookkeeper);
        let forget = Forget {
            meta: deps.meta.clone(),
            vectors: deps.vectors.clone(),
            graph: deps.graph.clone(),
            signals: deps.signals.clone(),
        };
        Services {
            extract: ExtractService {
                meta: deps.meta.clone(),
                queue: deps.queue.clone(),
                audit: audit.clone(),
            },
            search: SearchService {
                meta: deps.meta.clone(),
                vectors: deps.vectors.clone(),
                graph: deps.graph.clone(),
                embedder: deps.embedder.clone(),
                config: config.search.clone(),
                metrics: deps.metrics.clone(),
                audit: audit.clone(),
            },
            jobs: JobService {
                meta: deps.meta.clone(),
                job_done,
                waits: jobs::WaitSlots::new(config.server.max_waiting, config.server.max_waiting_per_key),
            },
            job_admin: job_admin::JobAdmin {
                meta: deps.meta.clone(),
                queue: Some(deps.queue.clone()),
                metrics: deps.metrics.clone(),
                audit: Some(audit.clone()),
            },
            facts: FactService {
                meta: deps.meta.clone(),
                forget: forget.clone(),
                audit: audit.clone(),
            },
            memories: memories::MemoryEdits {
                meta: deps.meta.clone(),
                vectors: deps.vectors.clone(),
                graph: deps.graph.clone(),
                embedder: deps.embedder.clone(),
                signals: deps.signals.clone(),
                audit: audit.clone(),
            },
            users: UserService {
                meta: deps.meta.clone(),
                forget,
                audit: audit.clone(),
            },
            keys: keys::KeyService {
                meta: deps.meta.clone(),
                env: config.auth.key_env.clone(),
                audit: audit.clone(),
            },
            health: HealthService {
                meta: deps.meta.clone(),
                vectors: deps.vectors.clone(),
                graph: deps.graph.clone(),
                embedder: deps.embedder.clone(),
                extractor: deps.extractor.name().to_string(),
                breakers: deps.breakers.clone(),
                metrics: deps.metrics.clone(),
                audit: audit.clone(),
            },
            audit,
        }
    }
}
