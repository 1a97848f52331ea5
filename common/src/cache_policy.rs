//! The cache policy: what the sidecar caches and for how long.
//!
//! One type for both ends: the sidecar reads it from a file (JSON or TOML) and
//! the operator's `CachePolicy` resource carries it as its `spec`, rendered
//! into the sidecar's ConfigMap. Field names are camelCase, as in Kubernetes.
//! Every field has a default, so `{}` is a complete policy.

use serde::{Deserialize, Serialize};

/// L0: the in-process cache of one sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct L0Policy {
    /// Cached answers kept (least valuable evicted first).
    pub max_entries: u64,
    /// Longest an answer is served, whatever invalidation says.
    pub ttl_seconds: u64,
    /// Longest an answer is served while the invalidation subscription is
    /// down (writes may then go unnoticed).
    pub unsubscribed_ttl_seconds: u64,
}

impl Default for L0Policy {
    fn default() -> Self {
        L0Policy {
            max_entries: 10_000,
            ttl_seconds: 300,
            unsubscribed_ttl_seconds: 2,
        }
    }
}

/// L1: the Redis cache shared by the sidecars of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct L1Policy {
    pub enabled: bool,
    pub ttl_seconds: u64,
    /// Answers kept per user and generation for semantic matching (the
    /// newest win); exact entries expire by TTL.
    pub max_entries_per_user: u64,
    /// Deadline of one Redis call; slower counts as a miss.
    pub timeout_ms: u64,
}

impl Default for L1Policy {
    fn default() -> Self {
        L1Policy {
            enabled: true,
            ttl_seconds: 3600,
            max_entries_per_user: 100,
            timeout_ms: 50,
        }
    }
}

/// Matching a paraphrase of an earlier query by the same user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct SemanticPolicy {
    pub enabled: bool,
    /// Cosine at or above which a cached query counts as the same question.
    pub threshold: f64,
}

impl Default for SemanticPolicy {
    fn default() -> Self {
        SemanticPolicy {
            enabled: true,
            threshold: 0.95,
        }
    }
}

/// Pre-computation: queries answered ahead of time for a user whose cache was
/// just invalidated, so the robot's usual questions stay fast after a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupPolicy {
    pub queries: Vec<String>,
    /// Only users who searched this recently are warmed.
    pub active_within_seconds: u64,
    /// Wait after an invalidation before warming (writes come in bursts).
    pub delay_ms: u64,
}

impl Default for WarmupPolicy {
    fn default() -> Self {
        WarmupPolicy {
            queries: Vec::new(),
            active_within_seconds: 900,
            delay_ms: 500,
        }
    }
}

/// The whole policy (the `CachePolicy` spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CachePolicySpec {
    pub l0: L0Policy,
    pub l1: L1Policy,
    pub semantic: SemanticPolicy,
    pub warmup: WarmupPolicy,
}

impl CachePolicySpec {
    /// Every rule a policy must satisfy, as messages naming the field.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.l0.max_entries == 0 {
            out.push("l0.maxEntries must be at least 1".to_string());
        }
        if self.l0.ttl_seconds == 0 {
            out.push("l0.ttlSeconds must be at least 1".to_string());
        }
        if self.l0.unsubscribed_ttl_seconds > self.l0.ttl_seconds {
            out.push("l0.unsubscribedTtlSeconds must not exceed l0.ttlSeconds".to_string());
        }
        if self.l1.enabled && (self.l1.ttl_seconds == 0 || self.l1.max_entries_per_user == 0) {
            out.push("l1.ttlSeconds and l1.maxEntriesPerUser must be at least 1".to_string());
        }
        if !(self.semantic.threshold > 0.0 && self.semantic.threshold <= 1.0) {
            out.push(format!(
                "semantic.threshold must be within (0, 1], got {}",
                self.semantic.threshold
            ));
        }
        if self
            .warmup
            .queries
            .iter()
            .any(|q| q.trim().is_empty() || q.chars().count() > 500)
        {
            out.push("warmup.queries must be 1..500 characters each".to_string());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_policy_is_the_default_and_valid() {
        let p: CachePolicySpec = serde_json::from_str("{}").expect("parse");
        assert_eq!(p, CachePolicySpec::default());
        assert!(p.problems().is_empty());
        assert_eq!(p.semantic.threshold, 0.95);
    }

    #[test]
    fn camel_case_fields_and_unknown_fields_rejected() {
        let p: CachePolicySpec =
            serde_json::from_str(r#"{"l0":{"maxEntries":5,"ttlSeconds":10},"semantic":{"threshold":0.9}}"#)
                .expect("parse");
        assert_eq!(p.l0.max_entries, 5);
        assert_eq!(p.l0.unsubscribed_ttl_seconds, 2);
        assert!(serde_json::from_str::<CachePolicySpec>(r#"{"l0":{"max_entries":5}}"#).is_err());
    }

    #[test]
    fn out_of_range_values_are_named() {
        let mut p = CachePolicySpec::default();
        p.semantic.threshold = 1.5;
        p.l0.max_entries = 0;
        let problems = p.problems().join("; ");
        assert!(problems.contains("semantic.threshold"), "{problems}");
        assert!(problems.contains("l0.maxEntries"), "{problems}");
    }
}
