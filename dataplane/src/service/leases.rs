//! Job leases: a worker holds each `processing` job under a lease in the
//! metadata store and one task per process renews the leases of every job
//! the process holds, in one statement, every third of the lease. A worker
//! that dies, hangs, or gives up on a job without recording why (the store
//! was down at that moment) stops renewing; the sweeper then finds the lease
//! run out and queues the job again (`JobStore::requeue_expired_leases`), so
//! no job stays `processing` for ever.
//!
//! On shutdown, jobs still held when the drain deadline passes are handed
//! back (`release_all`): `queued` again with the attempt not counted, for the
//! next worker, instead of waiting out their lease.

use crate::domain::Claim;
use crate::ports::MetaStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The jobs this process holds, by job id.
#[derive(Default)]
pub struct HeldJobs {
    claims: Mutex<HashMap<String, Claim>>,
}

impl HeldJobs {
    pub fn hold(&self, claim: &Claim) {
        self.lock().insert(claim.job_id.clone(), claim.clone());
    }

    /// The job is finished, failed, requeued or lost: no longer renewed.
    pub fn let_go(&self, job_id: &str) {
        self.lock().remove(job_id);
    }

    pub fn claims(&self) -> Vec<Claim> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Claim>> {
        // A panic while holding this lock leaves the map intact: keep using it.
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Renews the leases of `held` every third of `lease`, until aborted (it
/// outlives the workers' shutdown signal: draining jobs still need it).
pub async fn renew(meta: Arc<dyn MetaStore>, held: Arc<HeldJobs>, lease: Duration) {
    let period = (lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(period).await;
        let claims = held.claims();
        if claims.is_empty() {
            continue;
        }
        match meta.renew_leases(&claims, lease).await {
            Ok(n) if (n as usize) < claims.len() => {
                // Taken over meanwhile (a redelivery): that worker's commit wins.
                tracing::debug!(held = claims.len(), renewed = n, "some held jobs were taken over");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot renew job leases; will try again"),
        }
    }
}

/// Hands every held job back to the queue; returns how many were released.
pub async fn release_all(meta: &dyn MetaStore, held: &HeldJobs) -> usize {
    let mut released = 0;
    for claim in held.claims() {
        match meta.release_job(&claim).await {
            Ok(true) => released += 1,
            Ok(false) => {}
            Err(e) => {
                // Its lease runs out instead, and the sweeper requeues it.
                tracing::warn!(job_id = %claim.job_id, error = %e, "cannot hand a job back; its lease will expire")
            }
        }
        held.let_go(&claim.job_id);
    }
    released
}
