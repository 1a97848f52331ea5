//! What every integration test needs from its surroundings: server URLs from
//! the environment (a missing one skips locally and fails in CI) and the
//! local embedding weights.

use std::path::PathBuf;

/// The URL in `var`, or None (and a SKIPPED line) when it is unset outside CI.
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

/// Where `scripts/fetch-model.sh` puts the weights.
pub fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2")
}

/// True when the local model is present; otherwise a test skips (or fails in CI).
pub fn have_model() -> bool {
    if model_dir().join("model.safetensors").exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("embedding weights missing in CI: run scripts/fetch-model.sh");
    }
    eprintln!("SKIPPED: embedding weights missing; run scripts/fetch-model.sh");
    false
}
