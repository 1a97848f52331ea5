//! Real servers for adapter tests: URLs come from the environment
//! (`scripts/services.sh env` prints them). In CI a missing server fails the
//! test; elsewhere the test prints why it skipped.

/// The URL in `var`, or `None` (after saying so) when the server is not configured.
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{var} is not set in CI: scripts/test.sh starts the servers and exports it");
            }
            eprintln!(
                "SKIPPED: {var} not set (run scripts/services.sh start; eval \"$(scripts/services.sh env)\")"
            );
            None
        }
    }
}

/// A name unique to this test run, for schemas, collections and queues.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}
