//! The two-priority request queue shared by the local embedders' inference threads.
//!
//! Queries (a search waiting on its vector) go before bulk work (extraction,
//! reindexing): a search never queues behind a worker's batch that has not
//! started yet. A batch holds requests of one priority only, so bulk work never
//! lengthens a query's pass either.
//!
//! Bounded: at most [`MAX_WAITING`] requests of each priority wait; beyond
//! that a request is refused at once as `Unavailable` (the caller answers 503
//! or retries the job) instead of queueing memory and latency without limit.
//! [`WorkQueue::waiting`] reports the depth.

use super::EmbedError;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use tokio::sync::oneshot;

pub(super) struct Request {
    pub texts: Vec<String>,
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

impl Request {
    /// Answers the request with its share of `outcome`, which holds the rows
    /// of this and the following requests of the batch, in order.
    pub fn answer(self, outcome: &mut Result<Vec<Vec<f32>>, EmbedError>) {
        let reply = match outcome {
            Ok(rows) => Ok(rows.drain(..self.texts.len().min(rows.len())).collect()),
            Err(e) => Err(EmbedError::Inference(e.to_string())),
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = self.reply.send(reply);
    }
}

/// Pending requests in two priorities.
#[derive(Default)]
struct Pending {
    queries: VecDeque<Request>,
    bulk: VecDeque<Request>,
    closed: bool,
}

/// A batch taken off the queue: all queries or all bulk requests.
pub(super) struct Batch {
    pub bulk: bool,
    pub requests: Vec<Request>,
}

/// Requests of one priority that may wait for the model.
pub const MAX_WAITING: usize = 1024;

#[derive(Default)]
pub(super) struct WorkQueue {
    pending: Mutex<Pending>,
    ready: Condvar,
}

impl WorkQueue {
    pub fn push(&self, req: Request, bulk: bool) -> Result<(), EmbedError> {
        let mut p = self.pending.lock().map_err(|_| EmbedError::Closed)?;
        if p.closed {
            return Err(EmbedError::Closed);
        }
        let waiting = if bulk { &mut p.bulk } else { &mut p.queries };
        if waiting.len() >= MAX_WAITING {
            return Err(EmbedError::Unavailable(format!(
                "{MAX_WAITING} embedding requests already waiting"
            )));
        }
        waiting.push_back(req);
        drop(p);
        self.ready.notify_one();
        Ok(())
    }

    /// Blocks for the next batch: waiting queries first, else bulk requests,
    /// up to `max_batch` texts (a larger single request is taken whole).
    /// `None` once closed.
    pub fn next_batch(&self, max_batch: usize) -> Option<Batch> {
        let mut p = self.pending.lock().ok()?;
        while p.queries.is_empty() && p.bulk.is_empty() {
            if p.closed {
                return None;
            }
            p = self.ready.wait(p).ok()?;
        }
        let bulk = p.queries.is_empty();
        let source = if bulk { &mut p.bulk } else { &mut p.queries };
        Some(Batch {
            bulk,
            requests: take_up_to(source, max_batch),
        })
    }

    /// The queries waiting right now, without blocking (empty when none).
    /// Lets a long bulk pass step aside for a search between its chunks.
    pub fn take_queries(&self, max_batch: usize) -> Vec<Request> {
        match self.pending.lock() {
            Ok(mut p) => take_up_to(&mut p.queries, max_batch),
            Err(_) => Vec::new(),
        }
    }

    /// Requests waiting now: (queries, bulk).
    pub fn waiting(&self) -> (usize, usize) {
        match self.pending.lock() {
            Ok(p) => (p.queries.len(), p.bulk.len()),
            Err(_) => (0, 0),
        }
    }

    pub fn close(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.closed = true;
        }
        self.ready.notify_all();
    }
}

fn take_up_to(source: &mut VecDeque<Request>, max_batch: usize) -> Vec<Request> {
    let mut batch = Vec::new();
    let mut count = 0;
    while let Some(front) = source.front() {
        if !batch.is_empty() && count + front.texts.len() > max_batch {
            break;
        }
        count += front.texts.len();
        batch.extend(source.pop_front());
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        let (reply, _) = oneshot::channel();
        Request {
            texts: vec!["x".into()],
            reply,
        }
    }

    #[test]
    fn a_full_priority_refuses_at_once_and_the_other_still_takes() {
        let q = WorkQueue::default();
        for _ in 0..MAX_WAITING {
            q.push(request(), true).expect("room");
        }
        assert!(matches!(q.push(request(), true), Err(EmbedError::Unavailable(_))));
        q.push(request(), false).expect("queries have their own bound");
        assert_eq!(q.waiting(), (1, MAX_WAITING));
        let first = q.next_batch(8).expect("batch");
        assert!(!first.bulk, "queries first");
        q.close();
        assert!(matches!(q.push(request(), false), Err(EmbedError::Closed)));
    }
}
