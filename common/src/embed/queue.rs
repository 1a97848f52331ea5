//! The two-priority request queue shared by the local embedders' inference threads.
//!
//! Queries (a search waiting on its vector) go before bulk work (extraction,
//! reindexing): a search never queues behind a worker's batch that has not
//! started yet. A batch holds requests of one priority only, so bulk work never
//! lengthens a query's pass either.

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
        if bulk {
            p.bulk.push_back(req);
        } else {
            p.queries.push_back(req);
        }
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
