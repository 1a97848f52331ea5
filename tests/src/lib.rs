//! Cross-crate integration tests and the `pika-loadgen` load generator live in this crate.
