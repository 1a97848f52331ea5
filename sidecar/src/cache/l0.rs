//! L0: this sidecar's in-process cache (moka).
//!
//! Entries are keyed by (exact key, user epoch). A user's epoch changes on
//! every invalidation, so an answer that was being fetched while the user's
//! data changed lands under the old epoch and is never read; the user's
//! entries are also removed to free the memory. Epochs come from one
//! process-wide counter, so a user slot evicted and made again cannot reuse
//! an old epoch. Each user slot also keeps the recent queries with their
//! embeddings for semantic matching.

use super::key::Digest128;
use super::semantic::SemanticEntry;
use bytes::Bytes;
use moka::future::Cache;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a cached answer came from (for `X-Cache` on the request that filled it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Answered by the dataplane.
    Upstream,
    /// Answered by the dataplane while L1 was unusable.
    UpstreamL1Down,
    L1Exact,
    L1Semantic,
    L0Semantic,
}

/// An answer as served: the dataplane's JSON body.
#[derive(Debug)]
pub struct Cached {
    pub body: Bytes,
    pub inserted: Instant,
    pub source: Source,
    /// The user's L1 generation read before the answer was fetched; `None`
    /// when L1 was unusable. An invalidation announcing a generation no newer
    /// than this one is already reflected in the answer.
    pub generation: Option<u64>,
}

pub type L0Key = (Digest128, u64);

/// Recent queries of a user kept for semantic matching, per slot. With the
/// slot bound below this caps the semantic index of one sidecar: at the
/// default 10 000 entries, 2 500 users × 16 queries × ~1.6 KB (384-dim
/// vector and text) ≈ 64 MB at most.
const RECENT_PER_USER: usize = 16;

/// User slots kept: a quarter of the entries, at least 1 024. A user whose
/// slot is evicted gets a new epoch, so that user's old entries are simply
/// never read again (correct, only colder).
fn user_slots(max_entries: u64) -> u64 {
    (max_entries / 4).max(1024)
}

static NEXT_EPOCH: AtomicU64 = AtomicU64::new(1);

fn next_epoch() -> u64 {
    NEXT_EPOCH.fetch_add(1, Ordering::Relaxed)
}

/// Per-user state: epoch, recent queries, activity.
pub struct UserSlot {
    epoch: AtomicU64,
    recent: Mutex<VecDeque<(u64, SemanticEntry)>>,
    last_search: Mutex<Instant>,
    /// A warm-up is scheduled and not yet run.
    pub warm_pending: AtomicBool,
}

impl UserSlot {
    fn new() -> Self {
        UserSlot {
            epoch: AtomicU64::new(next_epoch()),
            recent: Mutex::new(VecDeque::new()),
            last_search: Mutex::new(Instant::now()),
            warm_pending: AtomicBool::new(false),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn touch(&self) {
        if let Ok(mut t) = self.last_search.lock() {
            *t = Instant::now();
        }
    }

    pub fn searched_within(&self, d: Duration) -> bool {
        self.last_search.lock().map(|t| t.elapsed() <= d).unwrap_or(false)
    }

    /// Remembers a query answered under `epoch` (newest first, bounded).
    pub fn remember(&self, epoch: u64, entry: SemanticEntry) {
        if let Ok(mut r) = self.recent.lock() {
            r.retain(|(_, e)| e.exact != entry.exact);
            r.push_front((epoch, entry));
            r.truncate(RECENT_PER_USER);
        }
    }

    /// The remembered queries of the current epoch.
    pub fn recent(&self) -> Vec<SemanticEntry> {
        let epoch = self.epoch();
        self.recent
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(e, _)| *e == epoch)
                    .map(|(_, s)| s.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// New epoch; returns it and the queries remembered under earlier ones.
    fn invalidate(&self) -> (u64, Vec<(u64, SemanticEntry)>) {
        let epoch = next_epoch();
        self.epoch.store(epoch, Ordering::Release);
        let old = self
            .recent
            .lock()
            .map(|mut r| r.drain(..).collect())
            .unwrap_or_default();
        (epoch, old)
    }
}

/// The L0 cache.
pub struct L0 {
    pub entries: Cache<L0Key, Arc<Cached>>,
    users: moka::sync::Cache<String, Arc<UserSlot>>,
}

impl L0 {
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        L0 {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            // Slots outlive entries a little so activity (warm-up) is known.
            users: moka::sync::Cache::builder()
                .max_capacity(user_slots(max_entries))
                .time_to_idle(ttl * 4)
                .build(),
        }
    }

    pub fn user(&self, user_id: &str) -> Arc<UserSlot> {
        self.users.get_with_by_ref(user_id, || Arc::new(UserSlot::new()))
    }

    /// The user's slot only if it exists (an invalidation for an unknown user
    /// needs no slot).
    pub fn existing_user(&self, user_id: &str) -> Option<Arc<UserSlot>> {
        self.users.get(user_id)
    }

    /// Drops everything cached for the user.
    pub async fn invalidate_user(&self, user_id: &str) {
        self.invalidate_user_before(user_id, u64::MAX).await;
    }

    /// The user was erased: drops their answers and their slot (which holds
    /// their id and recent queries), so nothing of them stays in memory.
    pub async fn forget_user(&self, user_id: &str) {
        self.invalidate_user(user_id).await;
        self.users.invalidate(user_id);
    }

    /// The user's data changed at `generation`: drops the user's answers
    /// fetched before it and carries the others into the new epoch. Messages
    /// arrive after the fact (a search may have filled L0 at the new
    /// generation already), so dropping everything would only cost hits.
    /// Fills still in flight land under the old epoch and are never read.
    pub async fn invalidate_user_before(&self, user_id: &str, generation: u64) {
        let Some(slot) = self.users.get(user_id) else {
            return;
        };
        let (epoch, old) = slot.invalidate();
        // Oldest first, so `remember` keeps the newest in front.
        for (old_epoch, entry) in old.into_iter().rev() {
            let key = (entry.exact, old_epoch);
            let kept = self
                .entries
                .remove(&key)
                .await
                .filter(|c| c.generation.is_some_and(|g| g >= generation));
            if let Some(c) = kept {
                self.entries.insert((entry.exact, epoch), c).await;
                slot.remember(epoch, entry);
            }
        }
    }

    /// Drops everything (the invalidation stream had a gap).
    pub fn clear(&self) {
        for (_, slot) in self.users.iter() {
            let _ = slot.invalidate();
        }
        self.entries.invalidate_all();
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached() -> Arc<Cached> {
        Arc::new(Cached {
            body: Bytes::from_static(b"{}"),
            inserted: Instant::now(),
            source: Source::Upstream,
            generation: Some(5),
        })
    }

    #[tokio::test]
    async fn invalidation_changes_the_epoch_and_drops_entries() {
        let l0 = L0::new(100, Duration::from_secs(60));
        let slot = l0.user("u1");
        let e1 = slot.epoch();
        let key = (Digest128([7; 16]), e1);
        l0.entries.insert(key, cached()).await;
        slot.remember(
            e1,
            SemanticEntry {
                params: Digest128([1; 16]),
                exact: Digest128([7; 16]),
                query: "q".into(),
                embedding: vec![1.0].into(),
            },
        );
        assert_eq!(slot.recent().len(), 1);
        l0.invalidate_user("u1").await;
        assert_ne!(l0.user("u1").epoch(), e1);
        assert!(l0.entries.get(&key).await.is_none());
        assert!(slot.recent().is_empty());
        // Another user's slot is untouched.
        let other = l0.user("u2").epoch();
        l0.invalidate_user("u1").await;
        assert_eq!(l0.user("u2").epoch(), other);
    }

    #[tokio::test]
    async fn answers_fetched_at_the_announced_generation_survive_it() {
        let l0 = L0::new(100, Duration::from_secs(60));
        let slot = l0.user("u1");
        let e1 = slot.epoch();
        let fetched_at = |exact: u8, generation: Option<u64>| {
            let key = (Digest128([exact; 16]), e1);
            let entry = SemanticEntry {
                params: Digest128([1; 16]),
                exact: Digest128([exact; 16]),
                query: format!("q{exact}"),
                embedding: vec![1.0].into(),
            };
            let c = Arc::new(Cached {
                body: Bytes::from_static(b"{}"),
                inserted: Instant::now(),
                source: Source::Upstream,
                generation,
            });
            (key, entry, c)
        };
        for (exact, generation) in [(1, Some(4)), (2, Some(5)), (3, Some(6)), (4, None)] {
            let (key, entry, c) = fetched_at(exact, generation);
            l0.entries.insert(key, c).await;
            slot.remember(e1, entry);
        }
        // Generation 5 announced: the answer fetched at 4 (and the one
        // fetched without L1) are older; those at 5 and 6 already show it.
        l0.invalidate_user_before("u1", 5).await;
        let e2 = slot.epoch();
        assert_ne!(e2, e1);
        let alive = |exact: u8| {
            let l0 = &l0;
            async move { l0.entries.get(&(Digest128([exact; 16]), e2)).await.is_some() }
        };
        assert!(!alive(1).await);
        assert!(alive(2).await);
        assert!(alive(3).await);
        assert!(!alive(4).await);
        let recent: Vec<String> = slot.recent().into_iter().map(|e| e.query).collect();
        assert_eq!(recent, ["q3", "q2"], "newest first, only the survivors");
        // Nothing is left under the old epoch.
        for exact in 1..=4 {
            assert!(l0.entries.get(&(Digest128([exact; 16]), e1)).await.is_none());
        }
    }
}
