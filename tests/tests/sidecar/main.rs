//! The sidecar in front of a real in-process dataplane, on real Redis
//! (`PIKA_TEST_REDIS_URL`): freshness through the real pub/sub path, user
//! isolation, auth before cache, Redis failing mid-run, pass-through.

mod behaviour;
mod erasure;
mod faults;
mod fuzz;
mod harness;
mod mem0;
mod tls;
