//! Real servers for adapter tests: URLs come from the environment
//! (`scripts/services.sh env` prints them). In CI a missing server fails the
//! test; elsewhere the test prints why it skipped.

pub use pika_tests::support::server_url;

/// A name unique to this test run, for schemas, collections and queues.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}
