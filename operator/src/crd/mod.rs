//! The operator's custom resources. `crdgen` writes their definitions to
//! `crds/`; a test keeps the checked-in YAML equal to these types.

pub mod cache_policy;
pub mod memory_service;

pub use cache_policy::{CachePolicy, CachePolicyResourceSpec, Policy};
pub use memory_service::*;

use kube::CustomResourceExt;

/// The group of every PIKA resource.
pub const GROUP: &str = "pika.stepup.edu.vn";

/// Every CRD as YAML documents, in a stable order: `(file name, YAML)`.
pub fn crd_files() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    Ok(vec![
        (
            "memoryservices.yaml",
            serde_yaml::to_string(&MemoryService::crd())?,
        ),
        ("cachepolicies.yaml", serde_yaml::to_string(&CachePolicy::crd())?),
    ])
}
