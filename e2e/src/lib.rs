//! See `tests/kind.rs` and `run.sh`: the e2e test needs a kind cluster.
