//! End-to-end tests of the operator on a kind cluster (`tests/kind.rs`,
//! `run.sh`): they need Docker and kind, and are skipped elsewhere.
//!
//! This crate has no library code and must not grow any: what the e2e test
//! checks is the product as a cluster sees it (images, manifests, the
//! operator's reconcile), not its crates' internals.
