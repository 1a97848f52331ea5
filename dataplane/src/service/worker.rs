//! The extraction worker: claim → extract facts and episodes, resolve dates
//! and names → embed (one batch) → consolidate facts →
//! write vectors and graph (idempotent upserts) → commit metadata and complete
//! the job in one transaction → clean up replaced facts → bump the user's
//! cache generation.
//!
//! Exactly-once: fact ids are derived from the job id, so a job re-run after a
//! crash overwrites its own vectors and graph rows instead of adding new ones,
//! and only the final transaction (guarded by the claim token) makes facts
//! visible. Anything written before a crash and never committed is invisible:
//! searches only return facts whose metadata row is active.
//!
//! Nothing accepted is lost to a short outage: a job is held under a lease
//! (`service::leases`), transient failures are retried with capped
//! exponential backoff and jitter until `worker.retry_horizon_ms` has passed
//! since the job was accepted (or re-driven), and a graph write that fails
//! (the graph is optional: DESIGN §8) does not fail the job: the commit
//! queues it for the repair loop (`service::repair`).
//!
//! Over 400 lines on purpose: a job's steps as one readable pipeline (claim to
//! complete) with its consolidation rule; extraction itself lives in
//! `extract/`.

use crate::app::Deps;
use crate::config::WorkerConfig;
use crate::domain::{
    Candidate, Claim, Decision, ExtractionPlan, Fact, FactStatus, HistoryEntry, HistoryEvent, Job,
    MemoryKind, Polarity,
};
use crate::extract::episodes::{self, EpisodeDraft, EpisodeLimits};
use crate::extract::{names, time};
use crate::ports::Delivery;
use crate::service::ServiceError;
use crate::service::forget::Forget;
use crate::service::leases::HeldJobs;
use chrono::{DateTime, Utc};
use pika_common::vector::dot;
use pika_common::wire::Category;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Nearest existing items looked at per candidate (episodes among them are
/// skipped, so this over-fetches).
const NEIGHBORS: usize = 24;

/// Episode ids are derived like fact ids, from indices past any fact's.
const EPISODE_ID_BASE: usize = 1_000_000;

/// What happened to one delivered job.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Retrying,
    Failed,
    /// Not claimable: already done or taken by a live worker (a duplicate delivery).
    Skipped,
    /// Can never succeed (bad message, missing job row): moved to the dead-letter queue.
    DeadLettered,
}

/// One worker loop; several run concurrently. A worker uses every port:
/// it reads the job, extracts, embeds, and writes metadata, vectors, graph
/// and the cache signal.
pub struct Worker {
    deps: Deps,
    config: WorkerConfig,
    /// Announces each job reaching a final state (`?wait=true` listens).
    job_done: tokio::sync::broadcast::Sender<String>,
    /// The jobs this process holds (their leases are renewed together).
    held: Arc<HeldJobs>,
    id: usize,
}

impl Worker {
    pub fn new(
        deps: Deps,
        config: WorkerConfig,
        job_done: tokio::sync::broadcast::Sender<String>,
        held: Arc<HeldJobs>,
        id: usize,
    ) -> Self {
        Worker {
            deps,
            config,
            job_done,
            held,
            id,
        }
    }

    /// Takes jobs until shutdown; a job in progress is always finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let next = tokio::select! {
                _ = shutdown.changed() => break,
                next = self.deps.queue.next() => next,
            };
            match next {
                Ok(delivery) => {
                    failures = 0;
                    self.handle(delivery).await;
                }
                Err(e) => {
                    // The broker may be restarting: wait and try again, never stop silently.
                    failures += 1;
                    let pause = Duration::from_millis(200u64.saturating_mul(1 << failures.min(6)));
                    tracing::error!(worker = self.id, error = %e, ?pause, "job queue failed; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            }
        }
        tracing::debug!(worker = self.id, "worker stopped");
    }

    /// Handles one queue message: every path ends in ack, retry or dead letter.
    #[tracing::instrument(skip(self, delivery), fields(worker = self.id, job_id = ?delivery.job_id))]
    pub async fn handle(&self, delivery: Delivery) -> Outcome {
        let queue = &self.deps.queue;
        let settle = |r: Result<(), crate::ports::StoreError>| {
            if let Err(e) = r {
                tracing::error!(error = %e, "cannot settle job message; the broker will redeliver it");
            }
        };
        let Some(job_id) = delivery.job_id.clone() else {
            // Never requeue a message that can never succeed (the seeds' infinite loop).
            settle(queue.dead_letter(&delivery, "message body is not a job id").await);
            return Outcome::DeadLettered;
        };
        let lease = Duration::from_millis(self.config.lease_ms.max(1));
        let claimed = match self
            .deps
            .meta
            .claim_job(&job_id, delivery.redelivered, lease)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim job; retrying later");
                settle(queue.retry_later(&delivery, self.backoff(1)).await);
                return Outcome::Retrying;
            }
        };
        let Some((claim, job)) = claimed else {
            return match self.deps.meta.get_job(&job_id).await {
                Ok(None) => {
                    settle(queue.dead_letter(&delivery, "job row does not exist").await);
                    Outcome::DeadLettered
                }
                Ok(Some(_)) => {
                    // Finished already, or held by a live worker: a duplicate delivery.
                    settle(queue.ack(&delivery).await);
                    Outcome::Skipped
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read job; retrying later");
                    settle(queue.retry_later(&delivery, self.backoff(1)).await);
                    Outcome::Retrying
                }
            };
        };
        self.held.hold(&claim);
        let outcome = self.run_job(&claim, &job).await;
        self.held.let_go(&claim.job_id);
        match outcome {
            Outcome::Retrying => settle(queue.retry_later(&delivery, self.backoff(job.attempts)).await),
            _ => settle(queue.ack(&delivery).await),
        }
        outcome
    }

    /// Runs a claimed job to completion, retry or failure (in the metadata store).
    async fn run_job(&self, claim: &Claim, job: &Job) -> Outcome {
        let deps = &self.deps;
        let started = Instant::now();
        // A job accepted before its user was erased does nothing; one whose
        // user is erased while it runs removes what it wrote (the tombstone,
        // see `forget`), whether its commit landed or lost its row.
        if self.erased_meanwhile(job, &[]).await {
            return Outcome::Skipped;
        }
        let deadline = Duration::from_millis(self.config.job_timeout_ms.max(1));
        let processed = tokio::time::timeout(deadline, self.process(job, started))
            .await
            .unwrap_or_else(|_| {
                Err(ServiceError::Store(crate::ports::StoreError::unavailable(
                    "worker",
                    format!("the attempt took longer than worker.job_timeout_ms ({deadline:?})"),
                )))
            });
        let outcome = match processed {
            Ok(plan) => {
                let written: Vec<String> = plan.new_facts.iter().map(|f| f.fact_id.clone()).collect();
                let committed = self.commit(claim, job, plan).await;
                if self.erased_meanwhile(job, &written).await {
                    return Outcome::Skipped;
                }
                committed
            }
            Err(e) => Err(e),
        };
        let metrics = &self.deps.metrics;
        match outcome {
            Ok(()) => {
                metrics.jobs.with_label_values(&["completed"]).inc();
                metrics
                    .job_duration
                    .with_label_values(&["completed"])
                    .observe(started.elapsed().as_secs_f64());
                let _ = self.job_done.send(job.job_id.clone());
                Outcome::Completed
            }
            Err(ServiceError::Store(crate::ports::StoreError::ClaimLost)) => Outcome::Skipped,
            Err(e) => {
                let transient = match &e {
                    ServiceError::Store(s) => s.is_transient(),
                    ServiceError::Embed(s) => s.is_transient(),
                    ServiceError::Extract(s) => s.is_transient(),
                    _ => false,
                };
                let retry = transient && self.within_retry_horizon(job);
                let message = format!("attempt {}: {e}", job.attempts);
                tracing::warn!(error = %e, retry, "extraction attempt failed");
                if let Err(store) = deps.meta.fail_job(claim, &message, retry).await {
                    // The job stays `processing` with its lease no longer
                    // renewed: the sweeper queues it again once the lease ends.
                    tracing::error!(error = %store, "cannot record job failure; its lease will expire");
                    return Outcome::Retrying;
                }
                if retry {
                    Outcome::Retrying
                } else {
                    metrics.jobs.with_label_values(&["failed"]).inc();
                    metrics
                        .job_duration
                        .with_label_values(&["failed"])
                        .observe(started.elapsed().as_secs_f64());
                    let _ = self.job_done.send(job.job_id.clone());
                    Outcome::Failed
                }
            }
        }
    }

    /// Whether the job's user was erased after the job was accepted; if so,
    /// `written` (and the user's last side-store traces) are removed.
    async fn erased_meanwhile(&self, job: &Job, written: &[String]) -> bool {
        let forget = Forget {
            meta: self.deps.meta.clone(),
            vectors: self.deps.vectors.clone(),
            graph: self.deps.graph.clone(),
            signals: self.deps.signals.clone(),
        };
        match forget.undo_if_erased(&job.user_id, job.created_at, written).await {
            Ok(true) => {
                tracing::info!("the job's user was erased; its writes were removed");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check for an erasure of the job's user");
                false
            }
        }
    }

    /// Whether a transient failure of `job` is retried: within the retry
    /// horizon (from acceptance or the last re-drive) and the attempt bound.
    fn within_retry_horizon(&self, job: &Job) -> bool {
        let waited = (Utc::now() - job.retry_since).num_milliseconds().max(0) as u64;
        job.attempts < self.config.max_attempts && waited < self.config.retry_horizon_ms
    }

    /// The pause before the next attempt after `attempts` of them.
    fn backoff(&self, attempts: u32) -> Duration {
        backoff_delay(
            self.config.retry_base_ms,
            self.config.retry_max_delay_ms,
            attempts,
            rand::rng().random_range(0.0..1.0),
        )
    }

    /// Extracts facts and episodes and consolidates the facts; writes only the
    /// side stores (vectors, graph), which stay invisible until the commit.
    async fn process(&self, job: &Job, started: Instant) -> Result<ExtractionPlan, ServiceError> {
        let deps = &self.deps;
        let cfg = &self.config;
        let req = &job.request;
        let conversation = &req.conversation;
        // Relative dates resolve against when the conversation happened, in its own offset.
        let reference = req.occurred_at.unwrap_or_else(|| job.created_at.fixed_offset());
        let said_at = reference.with_timezone(&Utc);
        let date_of = |texts: &[&str]| -> Option<DateTime<Utc>> {
            texts
                .iter()
                .find_map(|t| time::resolve(t, reference))
                .map(|d| d.at_noon(*reference.offset()))
        };
        let mut candidates = if req.store_as_given {
            as_given(conversation)
        } else {
            deps.extractor.extract(conversation).await?
        };
        for c in &mut candidates {
            let mut texts: Vec<&str> = vec![c.content.as_str()];
            texts.extend(
                c.source_turns
                    .iter()
                    .filter_map(|t| conversation.get(*t as usize))
                    .map(|m| m.content.as_str()),
            );
            c.occurred_at = c.occurred_at.or_else(|| date_of(&texts));
        }
        // Kept as given, each message already is its own memory: no episode
        // repeats it.
        let drafts = if req.store_as_given {
            Vec::new()
        } else {
            episodes::episodes(
                conversation,
                EpisodeLimits {
                    max_messages: cfg.episode_max_messages,
                    max_chars: cfg.episode_max_chars,
                },
            )
        };
        let mut plan = ExtractionPlan {
            user_id: job.user_id.clone(),
            ..ExtractionPlan::default()
        };
        if let Some(n) = &req.user_name {
            plan.user_names.push(n.clone());
        }
        for n in names::names_in(conversation) {
            if !plan.user_names.iter().any(|o| o.eq_ignore_ascii_case(&n)) {
                plan.user_names.push(n);
            }
        }
        let now = Utc::now();
        let mut episode_facts: Vec<Fact> = drafts
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let occurred = date_of(&[d.content.as_str(), d.context.as_deref().unwrap_or_default()]);
                new_episode(
                    fact_id_for(&job.job_id, job.created_at, EPISODE_ID_BASE + i),
                    d,
                    job,
                    occurred,
                    said_at,
                    now,
                )
            })
            .collect();
        // The same exchange sent again (a repeated conversation) is kept once.
        let keys: Vec<String> = episode_facts.iter().filter_map(Fact::dedup_key).collect();
        let known = deps.meta.known_episodes(&job.user_id, &keys).await?;
        let mut seen: Vec<String> = known;
        episode_facts.retain(|e| match e.dedup_key() {
            Some(k) if seen.contains(&k) => false,
            Some(k) => {
                seen.push(k);
                true
            }
            None => true,
        });
        if candidates.is_empty() && episode_facts.is_empty() {
            plan.result.processing_time_ms = started.elapsed().as_millis() as u64;
            return Ok(plan);
        }
        // Facts and episodes are embedded in one batch.
        let mut texts: Vec<String> = candidates.iter().map(|c| c.content.clone()).collect();
        texts.extend(episode_facts.iter().map(Fact::embedding_text));
        let mut vectors = deps.embedder.embed_passages(texts).await?;
        let episode_vectors = vectors.split_off(candidates.len());

        // Neighbours of every candidate fact, hydrated in one batch. Episodes
        // are never consolidated: they are what was said, each kept.
        let hits = deps
            .vectors
            .search_many(&job.user_id, &vectors, NEIGHBORS)
            .await?;
        let mut ids: Vec<String> = hits.iter().flatten().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        // A memory is consolidated only with memories of the same Mem0 scope
        // (agent, run, app): agent B saying what agent A heard is B's memory
        // too, and must be found, listed and deleted under B.
        let scope = req.scope.clone().unwrap_or_default();
        let existing: HashMap<String, Fact> = deps
            .meta
            .active_facts(&ids)
            .await?
            .into_iter()
            .filter(|f| f.kind == MemoryKind::Fact)
            .filter(|f| f.attrs.as_ref().map(|a| &a.scope).unwrap_or(&Default::default()) == &scope)
            .map(|f| (f.fact_id.clone(), f))
            .collect();

        let rule = DuplicateRule::for_model(cfg, deps.embedder.model_id());
        let mut new_vectors: Vec<(usize, Vec<f32>)> = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        for (i, (cand, vector)) in candidates.iter().zip(&vectors).enumerate() {
            let neighbors: Vec<(Fact, f32)> = hits[i]
                .iter()
                .filter(|(id, _)| !touched.contains(id))
                .filter_map(|(id, s)| existing.get(id).map(|f| (f.clone(), *s)))
                .collect();
            // The same fact twice in one conversation.
            if let Some((j, _)) = new_vectors.iter().find(|(_, v)| dot(v, vector) >= rule.same) {
                let id = plan.new_facts[*j].fact_id.clone();
                if !plan.result.fact_ids.contains(&id) {
                    plan.result.fact_ids.push(id);
                }
                continue;
            }
            let decision = match duplicate_of(cand, &neighbors, rule) {
                Some(id) => Decision::Keep(id),
                None => deps.extractor.decide(cand, &neighbors).await?,
            };
            let new_id = fact_id_for(&job.job_id, job.created_at, i);
            match decision {
                Decision::Keep(id) => {
                    plan.refreshed.push((id.clone(), cand.confidence));
                    plan.result.unchanged += 1;
                    touched.push(id.clone());
                    plan.result.fact_ids.push(id);
                }
                Decision::Add => {
                    plan.history.push(history(
                        &new_id,
                        HistoryEvent::Add,
                        None,
                        Some(&cand.content),
                        None,
                        job,
                        now,
                    ));
                    new_vectors.push((plan.new_facts.len(), vector.clone()));
                    plan.new_facts
                        .push(new_fact(new_id.clone(), cand, job, None, said_at, now));
                    plan.result.added += 1;
                    plan.result.fact_ids.push(new_id);
                }
                Decision::Update(old_id) => {
                    let old_content = existing.get(&old_id).map(|f| f.content.clone());
                    plan.history.push(history(
                        &old_id,
                        HistoryEvent::Update,
                        old_content.as_deref(),
                        Some(&cand.content),
                        Some(&new_id),
                        job,
                        now,
                    ));
                    plan.history.push(history(
                        &new_id,
                        HistoryEvent::Update,
                        old_content.as_deref(),
                        Some(&cand.content),
                        Some(&old_id),
                        job,
                        now,
                    ));
                    plan.superseded.push((old_id.clone(), new_id.clone()));
                    new_vectors.push((plan.new_facts.len(), vector.clone()));
                    plan.new_facts.push(new_fact(
                        new_id.clone(),
                        cand,
                        job,
                        Some(old_id.clone()),
                        said_at,
                        now,
                    ));
                    plan.result.updated += 1;
                    touched.push(old_id);
                    plan.result.fact_ids.push(new_id);
                }
                Decision::Delete(old_id) => {
                    // The old fact no longer holds: it leaves search, its history
                    // records why, and nothing new is stored (DESIGN.md §4.2).
                    let old_content = existing.get(&old_id).map(|f| f.content.clone());
                    plan.history.push(history(
                        &old_id,
                        HistoryEvent::Delete,
                        old_content.as_deref(),
                        Some(&cand.content),
                        None,
                        job,
                        now,
                    ));
                    plan.retired.push(old_id.clone());
                    plan.result.deleted += 1;
                    touched.push(old_id);
                }
            }
        }
        let fact_count = plan.new_facts.len();
        for (episode, vector) in episode_facts.into_iter().zip(episode_vectors) {
            new_vectors.push((fact_count, vector));
            plan.result.episodes += 1;
            plan.new_facts.push(episode);
        }
        plan.result.facts_count = plan.result.fact_ids.len();
        plan.result.processing_time_ms = started.elapsed().as_millis() as u64;
        // Vectors travel with the plan in new-item order.
        self.write_side_stores(job, &mut plan, new_vectors.into_iter().map(|(_, v)| v).collect())
            .await?;
        Ok(plan)
    }

    /// Vectors and graph first (idempotent, keyed by fact id); invisible
    /// until the commit. Vectors are required (a failure retries the job);
    /// a failed graph write is left to the repair loop (`plan.graph_pending`).
    async fn write_side_stores(
        &self,
        job: &Job,
        plan: &mut ExtractionPlan,
        vectors: Vec<Vec<f32>>,
    ) -> Result<(), ServiceError> {
        if plan.new_facts.is_empty() {
            return Ok(());
        }
        let deps = &self.deps;
        let items: Vec<(String, Vec<f32>)> = plan
            .new_facts
            .iter()
            .map(|f| f.fact_id.clone())
            .zip(vectors)
            .collect();
        deps.vectors.upsert(&job.user_id, &items).await?;
        // The graph relates facts through entities; episodes stay out of it.
        let nodes: Vec<(String, Vec<String>)> = plan
            .new_facts
            .iter()
            .filter(|f| f.kind == MemoryKind::Fact)
            .map(|f| (f.fact_id.clone(), f.entities.clone()))
            .collect();
        if !nodes.is_empty()
            && let Err(e) = deps.graph.upsert_facts(&job.user_id, &nodes).await
        {
            tracing::warn!(error = %e, facts = nodes.len(), "graph write failed; queued for repair");
            plan.graph_pending = nodes.into_iter().map(|(id, _)| id).collect();
        }
        Ok(())
    }

    async fn commit(&self, claim: &Claim, job: &Job, mut plan: ExtractionPlan) -> Result<(), ServiceError> {
        let deps = &self.deps;
        plan.result.processing_time_ms = plan.result.processing_time_ms.max(1);
        // Cache generations are bumped on both sides of the commit. Before: a
        // cached answer from before this job is dropped while the commit runs.
        // After: an answer cached during the commit (it may predate it) is
        // dropped too. The sidecar also bumps when it relays a `completed`
        // status, so a client that saw the job complete never reads older.
        self.bump_generation(&job.user_id).await;
        deps.meta.complete_job(claim, &plan).await?;
        if !plan.graph_pending.is_empty() {
            deps.metrics.graph_repairs.with_label_values(&["queued"]).inc();
        }
        let mut old: Vec<String> = plan.superseded.iter().map(|(o, _)| o.clone()).collect();
        old.extend(plan.retired.iter().cloned());
        if !old.is_empty() {
            // Best effort: replaced facts are already invisible (metadata says superseded).
            if let Err(e) = deps.vectors.delete(&job.user_id, &old).await {
                tracing::warn!(error = %e, "cannot drop vectors of replaced facts");
            }
            if let Err(e) = deps.graph.delete_facts(&job.user_id, &old).await {
                // Stale nodes would relate old facts in enrichment: remove them later.
                tracing::warn!(error = %e, "cannot drop graph nodes of replaced facts; queued for repair");
                match deps
                    .meta
                    .queue_graph_repair(&job.user_id, crate::domain::RepairOp::Delete, &old)
                    .await
                {
                    Ok(()) => deps.metrics.graph_repairs.with_label_values(&["queued"]).inc(),
                    Err(e) => tracing::warn!(error = %e, "cannot queue the graph repair"),
                }
            }
        }
        self.bump_generation(&job.user_id).await;
        Ok(())
    }

    async fn bump_generation(&self, user_id: &str) {
        if let Err(e) = self.deps.signals.bump(user_id).await {
            tracing::warn!(error = %e, "cannot bump cache generation");
        }
    }
}

/// The pause before the next attempt after `attempts` of them: `base_ms`
/// doubling per attempt, capped at `max_ms`, then jittered down by up to
/// half (`unit` in 0..1), so jobs failed together by one outage do not all
/// come back at the same moment.
pub fn backoff_delay(base_ms: u64, max_ms: u64, attempts: u32, unit: f64) -> Duration {
    let exp = base_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(max_ms.max(base_ms));
    let jittered = exp as f64 * (1.0 - 0.5 * unit.clamp(0.0, 1.0));
    Duration::from_millis(jittered.round() as u64)
}

/// Cosine rules for "the same fact", per embedder (see `WorkerConfig`).
#[derive(Debug, Clone, Copy)]
pub struct DuplicateRule {
    pub same: f32,
    /// Cross-language duplicates with the same entities and predicate; `None`
    /// for embedders that cannot relate languages.
    pub cross_lingual: Option<f32>,
}

impl DuplicateRule {
    pub fn for_model(cfg: &crate::config::WorkerConfig, model_id: &str) -> DuplicateRule {
        if model_id.contains("e5") {
            DuplicateRule {
                same: cfg.duplicate_threshold_e5,
                cross_lingual: Some(cfg.cross_lingual_threshold_e5),
            }
        } else {
            DuplicateRule {
                same: cfg.duplicate_threshold,
                cross_lingual: None,
            }
        }
    }
}

/// An existing fact that says the same thing (same polarity; near-identical
/// vector or text, or the same entities and predicate said in another language).
fn duplicate_of(cand: &Candidate, neighbors: &[(Fact, f32)], rule: DuplicateRule) -> Option<String> {
    let norm = |s: &str| pika_common::text::syllables(s).join(" ");
    let same_claim = |f: &Fact| {
        let mut a = f.entities.clone();
        let mut b = cand.entities.clone();
        a.sort();
        b.sort();
        !a.is_empty() && a == b && f.predicate == cand.predicate
    };
    neighbors
        .iter()
        .find(|(f, s)| {
            f.polarity == cand.polarity
                && (*s >= rule.same
                    || norm(&f.content) == norm(&cand.content)
                    || rule
                        .cross_lingual
                        .is_some_and(|t| *s >= t && f.language != cand.language && same_claim(f)))
        })
        .map(|(f, _)| f.fact_id.clone())
}

/// A UUIDv7 whose time is the job's creation and whose random bits come from
/// the job id and the candidate index: the same job always yields the same ids.
pub fn fact_id_for(job_id: &str, created_at: DateTime<Utc>, index: usize) -> String {
    let digest = Sha256::digest(format!("{job_id}/{index}").as_bytes());
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let ms = created_at.timestamp_millis().max(0) as u64;
    uuid::Builder::from_unix_timestamp_millis(ms, &random)
        .into_uuid()
        .to_string()
}

fn new_fact(
    fact_id: String,
    c: &Candidate,
    job: &Job,
    supersedes: Option<String>,
    said_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Fact {
    Fact {
        fact_id,
        user_id: job.user_id.clone(),
        conversation_id: job.conversation_id.clone(),
        kind: MemoryKind::Fact,
        context: None,
        occurred_at: Some(c.occurred_at.unwrap_or(said_at)),
        said_at: Some(said_at),
        content: c.content.clone(),
        category: c.category,
        confidence: c.confidence,
        entities: c.entities.clone(),
        tags: c.tags.clone(),
        source_turns: c.source_turns.clone(),
        language: c.language.clone(),
        status: FactStatus::Active,
        polarity: c.polarity,
        predicate: c.predicate.clone(),
        supersedes,
        created_at: now,
        updated_at: now,
        accessed_count: 0,
        last_accessed_at: None,
        attrs: attrs_of(job),
    }
}

fn new_episode(
    fact_id: String,
    d: EpisodeDraft,
    job: &Job,
    occurred_at: Option<DateTime<Utc>>,
    said_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Fact {
    Fact {
        fact_id,
        user_id: job.user_id.clone(),
        conversation_id: job.conversation_id.clone(),
        kind: MemoryKind::Episode,
        content: d.content,
        context: d.context,
        occurred_at: Some(occurred_at.unwrap_or(said_at)),
        said_at: Some(said_at),
        category: Category::Other,
        confidence: 1.0,
        entities: d.entities,
        tags: d.tags,
        source_turns: d.source_turns,
        language: d.language,
        status: FactStatus::Active,
        polarity: Polarity::Positive,
        predicate: None,
        supersedes: None,
        created_at: now,
        updated_at: now,
        accessed_count: 0,
        last_accessed_at: None,
        attrs: attrs_of(job),
    }
}

fn history(
    fact_id: &str,
    event: HistoryEvent,
    old: Option<&str>,
    new: Option<&str>,
    related: Option<&str>,
    job: &Job,
    now: DateTime<Utc>,
) -> HistoryEntry {
    HistoryEntry {
        fact_id: fact_id.to_string(),
        event,
        old_content: old.map(str::to_string),
        new_content: new.map(str::to_string),
        related_fact_id: related.map(str::to_string),
        job_id: Some(job.job_id.clone()),
        created_at: now,
    }
}

/// What a memory made by `job` carries besides its text: the request's
/// metadata and scope, for requests from the Mem0 routes.
fn attrs_of(job: &Job) -> Option<pika_common::wire::MemoryAttrs> {
    job.request
        .scope
        .as_ref()
        .map(|scope| pika_common::wire::MemoryAttrs {
            metadata: job.request.metadata.clone(),
            scope: scope.clone(),
        })
}

/// `store_as_given`: each of the user's messages as one memory, word for
/// word (category `other`; it is embedded, keyword-indexed and consolidated
/// like any extracted fact, so the same sentence twice is one memory).
fn as_given(conversation: &[pika_common::wire::Message]) -> Vec<Candidate> {
    conversation
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == pika_common::wire::Role::User)
        .map(|(i, m)| Candidate {
            content: m.content.clone(),
            occurred_at: None,
            category: pika_common::wire::Category::Other,
            confidence: 1.0,
            entities: Vec::new(),
            tags: crate::service::memories::concept_tags(&m.content),
            source_turns: vec![i as u32],
            language: if pika_common::text::looks_vietnamese(&m.content) {
                "vi"
            } else {
                "en"
            }
            .into(),
            polarity: Default::default(),
            predicate: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_at_most_half_jitter() {
        let no_jitter: Vec<u64> = (1..=8)
            .map(|n| backoff_delay(500, 30_000, n, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(no_jitter, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(backoff_delay(500, 30_000, 40, 1.0).as_millis(), 15_000);
        assert_eq!(backoff_delay(500, 30_000, u32::MAX, 0.5).as_millis(), 22_500);
        // A cap below the base never shortens the first pause.
        assert_eq!(backoff_delay(500, 10, 1, 0.0).as_millis(), 500);
        // Summed over the default horizon's attempts, the pauses outlast a
        // one-minute dependency restart many times over.
        let total: u64 = (1..=20)
            .map(|n| backoff_delay(500, 30_000, n, 1.0).as_millis() as u64)
            .sum();
        assert!(total > 120_000, "{total}");
    }

    #[test]
    fn fact_ids_are_deterministic_v7() {
        let t = Utc::now();
        let a = fact_id_for("job-1", t, 0);
        assert_eq!(a, fact_id_for("job-1", t, 0));
        assert_ne!(a, fact_id_for("job-1", t, 1));
        let u = uuid::Uuid::parse_str(&a).expect("uuid");
        assert_eq!(u.get_version_num(), 7);
    }
}
