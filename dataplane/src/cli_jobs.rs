//! `pika-dataplane jobs list|retry|redrive`: the command-line face of
//! [`pika_dataplane::service::job_admin`], across every tenant. With the
//! embedded queue the serving process publishes re-driven jobs (its
//! sweeper, within `queue.sweep_after_ms`); with RabbitMQ they are
//! published at once.

use anyhow::{Result, bail};
use clap::Subcommand;
use pika_common::wire::JobState;
use pika_dataplane::config::Config;
use pika_dataplane::domain::JobFilter;
use pika_dataplane::metrics::Metrics;
use pika_dataplane::resolve;
use pika_dataplane::service::job_admin::{JobAdmin, MAX_JOBS, Scope};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum JobsAction {
    /// List jobs, newest first.
    List {
        /// queued, processing, completed or failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only jobs older than this job id (the last one of a page).
        #[arg(long)]
        before: Option<String>,
    },
    /// Queue failed jobs again by id (no attempts, a new retry horizon).
    Retry {
        #[arg(required = true)]
        job_ids: Vec<String>,
    },
    /// Queue every failed job again (of one tenant with --tenant), and with
    /// --dead-letters move RabbitMQ's dead-lettered messages back too.
    Redrive {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = MAX_JOBS)]
        limit: usize,
        #[arg(long)]
        dead_letters: bool,
    },
}

fn check_limit(limit: usize) -> Result<usize> {
    if !(1..=MAX_JOBS).contains(&limit) {
        bail!("--limit must be 1..{MAX_JOBS}");
    }
    Ok(limit)
}

fn check_tenant(tenant: &Option<String>) -> Result<()> {
    if let Some(t) = tenant {
        pika_common::tenancy::check_tenant_id(t).map_err(|r| anyhow::anyhow!("--tenant {r}"))?;
    }
    Ok(())
}

pub async fn run(config: &Config, action: JobsAction) -> Result<()> {
    let admin = JobAdmin {
        meta: resolve::open_meta(config).await?,
        queue: match &action {
            JobsAction::List { .. } => None,
            _ => resolve::open_broker(config).await?,
        },
        metrics: Arc::new(Metrics::new()?),
        audit: None,
    };
    match action {
        JobsAction::List {
            state,
            tenant,
            limit,
            before,
        } => {
            check_tenant(&tenant)?;
            let state = state
                .as_deref()
                .map(|s| JobState::parse(s).ok_or_else(|| anyhow::anyhow!("--state {s:?}: not a job state")))
                .transpose()?;
            let filter = JobFilter {
                state,
                tenant_id: tenant,
                before,
                limit: check_limit(limit)?,
                job_ids: None,
            };
            let jobs = admin.list(Scope::Everyone, filter).await?;
            println!(
                "{:<36} {:<10} {:>8} {:<20} {:<30} ERROR",
                "JOB ID", "STATE", "ATTEMPTS", "UPDATED", "USER"
            );
            for j in &jobs {
                println!(
                    "{:<36} {:<10} {:>8} {:<20} {:<30} {}",
                    j.job_id,
                    j.state.as_str(),
                    j.attempts,
                    j.updated_at.format("%Y-%m-%d %H:%M:%S"),
                    j.user_id,
                    j.error.as_deref().unwrap_or("-")
                );
            }
            if jobs.len() == limit
                && let Some(last) = jobs.last()
            {
                println!("(more: --before {})", last.job_id);
            }
        }
        JobsAction::Retry { job_ids } => {
            if job_ids.len() > MAX_JOBS {
                bail!("at most {MAX_JOBS} job ids at once");
            }
            let n = job_ids.len();
            let filter = JobFilter {
                job_ids: Some(job_ids.clone()),
                limit: n,
                ..JobFilter::default()
            };
            let done = admin.redrive(Scope::Everyone, filter).await?;
            report(&admin, &done);
            let missed: Vec<&String> = job_ids.iter().filter(|id| !done.job_ids.contains(id)).collect();
            if !missed.is_empty() {
                bail!("not failed (or not found), left alone: {missed:?}");
            }
        }
        JobsAction::Redrive {
            tenant,
            limit,
            dead_letters,
        } => {
            check_tenant(&tenant)?;
            let filter = JobFilter {
                tenant_id: tenant,
                limit: check_limit(limit)?,
                ..JobFilter::default()
            };
            let done = admin.redrive(Scope::Everyone, filter).await?;
            report(&admin, &done);
            if dead_letters {
                if admin.queue.is_none() {
                    bail!("the embedded queue has no dead-letter queue (queue.url is empty)");
                }
                let moved = admin.redrive_dead_letters(100_000).await?;
                println!("moved {moved} dead-lettered messages back to the job queue");
            }
        }
    }
    Ok(())
}

fn report(admin: &JobAdmin, done: &pika_dataplane::service::job_admin::Redriven) {
    for id in &done.job_ids {
        println!("queued again: {id}");
    }
    if admin.queue.is_some() {
        println!(
            "{} jobs queued again, {} published",
            done.job_ids.len(),
            done.published
        );
    } else {
        println!(
            "{} jobs queued again; the serving process publishes them (embedded queue)",
            done.job_ids.len()
        );
    }
}
