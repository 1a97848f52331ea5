//! Cross-crate test support and the `pika-loadgen` load generator.
//!
//! The dataplane's and the sidecar's integration tests share [`support`]
//! (server URLs, model weights) and [`fault_proxy`] (cutting a connection to
//! a real server without stopping it), [`pki`] (a private CA for TLS tests) and
//! [`http_fuzz`] (the randomized run over an HTTP surface).
//!
//! This is the one crate allowed to depend on all the others: tests that
//! need two of them together (the sidecar in front of a real dataplane, the
//! operator's rendered files loaded by the crates they configure) live in
//! its `tests/`, so that no product crate needs another as a dev-dependency.

pub mod eval;
pub mod fault_proxy;
pub mod http_fuzz;
pub mod pki;
pub mod support;
pub mod tls_redis;
