//! Logging initialisation shared by every binary: JSON lines in production,
//! human-readable text for local runs, filter from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Output format of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production, log shippers).
    Json,
    /// Compact text for a terminal.
    #[default]
    Text,
}

/// `[log]` of every process's configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `RUST_LOG`-style filter used when `RUST_LOG` is unset.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls are ignored),
/// which matters for tests that start several servers in one process.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}
