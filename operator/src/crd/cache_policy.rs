//! `CachePolicy`: what the caching sidecars of one or more MemoryServices
//! cache and for how long.
//!
//! The spec is `pika_common::cache_policy::CachePolicySpec`, the very type the
//! sidecar reads from its `--policy` file, so the CRD schema, the rendered
//! ConfigMap and the sidecar cannot drift apart. The CEL rules mirror
//! `CachePolicySpec::problems`, which the operator also runs before rendering.

use kube::CustomResource;
pub use pika_common::cache_policy::CachePolicySpec as Policy;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `CachePolicy` resource; its spec is the sidecar's policy file.
// See memory_service.rs: repeated `printcolumn(type_ = ..)` is not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "pika.stepup.edu.vn",
    version = "v1alpha1",
    kind = "CachePolicy",
    namespaced,
    shortname = "cpol",
    category = "pika",
    derive = "PartialEq",
    doc = "Cache policy of the PIKA caching sidecar (L0 in-process, L1 Redis, semantic matching, warm-up).",
    printcolumn(name = "L0", type_ = "integer", json_path = ".spec.l0.maxEntries", description = "L0 entries per pod"),
    printcolumn(name = "L1", type_ = "boolean", json_path = ".spec.l1.enabled"),
    printcolumn(name = "Semantic", type_ = "number", json_path = ".spec.semantic.threshold", description = "cosine threshold"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!has(self.spec.semantic) || !has(self.spec.semantic.threshold) || (self.spec.semantic.threshold > 0.0 && self.spec.semantic.threshold <= 1.0)").message("spec.semantic.threshold must be within (0, 1]"),
    validation = Rule::new("!has(self.spec.l0) || !has(self.spec.l0.maxEntries) || self.spec.l0.maxEntries >= 1").message("spec.l0.maxEntries must be at least 1"),
    validation = Rule::new("!has(self.spec.l0) || !has(self.spec.l0.ttlSeconds) || self.spec.l0.ttlSeconds >= 1").message("spec.l0.ttlSeconds must be at least 1"),
    validation = Rule::new("!has(self.spec.l0) || !has(self.spec.l0.ttlSeconds) || !has(self.spec.l0.unsubscribedTtlSeconds) || self.spec.l0.unsubscribedTtlSeconds <= self.spec.l0.ttlSeconds").message("spec.l0.unsubscribedTtlSeconds must not exceed spec.l0.ttlSeconds"),
    validation = Rule::new("!has(self.spec.l1) || !has(self.spec.l1.enabled) || !self.spec.l1.enabled || ((!has(self.spec.l1.ttlSeconds) || self.spec.l1.ttlSeconds >= 1) && (!has(self.spec.l1.maxEntriesPerUser) || self.spec.l1.maxEntriesPerUser >= 1))").message("spec.l1.ttlSeconds and spec.l1.maxEntriesPerUser must be at least 1 when L1 is enabled"),
    validation = Rule::new("!has(self.spec.warmup) || !has(self.spec.warmup.queries) || self.spec.warmup.queries.all(q, q.trim().size() > 0 && q.size() <= 500)").message("spec.warmup.queries must be 1..500 characters each"),
)]
#[serde(transparent)]
pub struct CachePolicyResourceSpec(pub Policy);
