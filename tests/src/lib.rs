//! Cross-crate test support and the `pika-loadgen` load generator.
//!
//! The dataplane's and the sidecar's integration tests share [`support`]
//! (server URLs, model weights) and [`fault_proxy`] (cutting a connection to
//! a real server without stopping it).

pub mod eval;
pub mod fault_proxy;
pub mod support;
