//! The sidecar's own configuration (it reads nothing of the dataplane's):
//! compiled-in defaults, then a TOML file (`--config`), then
//! `PIKA_SIDECAR__SECTION__KEY` environment variables, then flags. Unknown
//! keys are refused, so a misspelt setting fails at start-up.
//!
//! `[embedding]` must name the same model as the dataplane's: the sidecar
//! embeds missed queries once for it, and the dataplane uses the vector only
//! when model and dimension match (otherwise it embeds again: slower, never
//! wrong).

use pika_common::config::load_layered;
use pika_common::secret::Secret;
use pika_common::telemetry::LogConfig;
use pika_common::tls::ServerTlsConfig;
use pika_embed::EmbeddingConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SidecarConfig {
    /// Address the sidecar listens on.
    pub listen: String,
    /// `http://host:port` of the dataplane (loopback in a pod).
    pub upstream: String,
    pub upstream_timeout_ms: u64,
    /// Requests in flight at once; beyond, 503 with `Retry-After` at once
    /// (load shedding). Liveness and metrics are exempt.
    pub max_in_flight: usize,
    /// A client must send a request's headers within this, else its
    /// connection is closed (slow-header attacks); idle keep-alive
    /// connections close after it too.
    pub header_read_timeout_ms: u64,
    /// HTTPS (rustls; TLS 1.3 preferred) when `tls.cert_file` is set: the
    /// operator mounts the certificate from a Secret for in-pod TLS.
    pub tls: ServerTlsConfig,
    /// On shutdown, how long the sidecar goes on serving with readiness
    /// already 503, so the load balancer stops sending before it stops
    /// accepting (the pod's endpoints are removed meanwhile).
    pub shutdown_delay_ms: u64,
    /// Then, how long requests in flight may take to finish.
    pub drain_timeout_ms: u64,
    /// The cache policy file (JSON, as the operator renders it, or TOML);
    /// empty: the defaults of `CachePolicySpec`.
    pub policy: PathBuf,
    /// No keys checked (local experiments only; the dataplane must run with
    /// `auth.insecure_dev` too).
    pub insecure_dev: bool,
    /// A key with the search permission, for warm-up queries.
    pub warmup_key: Secret,
    pub keys: KeysConfig,
    pub rate_limit: RateLimitConfig,
    pub redis: RedisConfig,
    pub embedding: EmbeddingConfig,
    pub audit: AuditConfig,
    pub log: LogConfig,
}

/// Key grants from the dataplane's `GET /v1/keys/self`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// A grant is trusted this long before the dataplane is asked again: a
    /// revoked key keeps working at most this long (plus the dataplane's own
    /// `auth.key_cache_ttl_ms`).
    pub cache_ttl_ms: u64,
    /// While the dataplane cannot answer, a grant seen within this long is
    /// still used, so cached answers keep flowing to known keys during a
    /// restart of the dataplane; unknown keys get 503.
    pub stale_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second per API key (0: no limit).
    pub per_second: u32,
    pub burst: u32,
    /// Requests per second per client address whose key is not known to be
    /// live (missing, unknown, or not looked up yet); 0: no limit.
    pub unknown_key_per_second: u32,
    pub unknown_key_burst: u32,
    /// Take the client address from the first `X-Forwarded-For` hop (set
    /// behind an ingress that writes it; never when clients reach the
    /// sidecar directly, since they could then pick their own address).
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// L1 and invalidations; empty: L0 only, no cross-pod invalidation.
    /// `rediss://` over TLS (system roots, or `ca_file`).
    pub url: Secret,
    /// PEM CA certificate(s) of a Redis with a private CA.
    pub ca_file: PathBuf,
    /// Deadline of each generation bump.
    pub timeout_ms: u64,
    /// The key that seals L1 entries (32 bytes, base64), the same in every
    /// sidecar of a service so they share L1. Empty: a random key of this
    /// process (entries are still sealed, but only this sidecar reads them).
    pub seal_key: Secret,
}

/// Audit lines for answers served from cache, sent to the dataplane.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Entries waiting to be sent at most; a full queue makes requests wait
    /// (cache hits are data access and are never dropped silently).
    pub queue_capacity: usize,
    pub flush_every_ms: u64,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        SidecarConfig {
            listen: "127.0.0.1:8080".into(),
            upstream: "http://127.0.0.1:8081".into(),
            upstream_timeout_ms: 30_000,
            max_in_flight: 2048,
            header_read_timeout_ms: 10_000,
            tls: ServerTlsConfig::default(),
            shutdown_delay_ms: 0,
            drain_timeout_ms: 25_000,
            policy: PathBuf::new(),
            insecure_dev: false,
            warmup_key: Secret::default(),
            keys: KeysConfig::default(),
            rate_limit: RateLimitConfig::default(),
            redis: RedisConfig::default(),
            embedding: EmbeddingConfig::default(),
            audit: AuditConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            cache_ttl_ms: 5_000,
            stale_ms: 60_000,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: 100,
            burst: 200,
            unknown_key_per_second: 20,
            unknown_key_burst: 40,
            trust_forwarded_for: false,
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: Secret::default(),
            ca_file: PathBuf::new(),
            timeout_ms: 250,
            seal_key: Secret::default(),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            queue_capacity: 10_000,
            flush_every_ms: 250,
        }
    }
}

/// Configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid sidecar configuration: {0}")]
pub struct ConfigError(String);

impl SidecarConfig {
    pub fn load(file: Option<&Path>) -> Result<SidecarConfig, ConfigError> {
        let cfg: SidecarConfig =
            load_layered(file, "PIKA_SIDECAR__").map_err(|e| ConfigError(e.to_string()))?;
        if cfg.audit.queue_capacity == 0 {
            return Err(ConfigError("audit.queue_capacity must be at least 1".into()));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature is fixed
    fn file_env_and_refusals() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "sidecar.toml",
                "listen = \"0.0.0.0:1\"\n[keys]\ncache_ttl_ms = 100\n[embedding]\nprovider = \"e5\"\n",
            )?;
            jail.set_env("PIKA_SIDECAR__REDIS__URL", "redis://127.0.0.1:6379");
            let c = SidecarConfig::load(Some(Path::new("sidecar.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen, "0.0.0.0:1");
            assert_eq!(c.keys.cache_ttl_ms, 100);
            assert_eq!(c.keys.stale_ms, 60_000);
            assert_eq!(c.embedding.provider, "e5");
            assert_eq!(c.redis.url.expose(), "redis://127.0.0.1:6379");
            jail.create_file("bad.toml", "[keys]\ncache_ttl = 100\n")?;
            let err = SidecarConfig::load(Some(Path::new("bad.toml"))).expect_err("unknown key");
            assert!(err.to_string().contains("cache_ttl"), "{err}");
            Ok(())
        });
    }
}
