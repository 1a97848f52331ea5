//! `pika-operator`: reconciles `MemoryService` and `CachePolicy` resources
//! into a running PIKA Memory installation.
//!
//! - `crd`: the resource types (the CRDs in `crds/` are generated from them).
//! - `index`: Milvus index parameters as a pure function of size and recall.
//! - `render`: every child object as a pure function of the spec.
//! - `children`: server-side apply and pruning of one object kind.
//! - `status`: status and conditions from what the cluster reports.
//! - `controller`: the reconcile loop tying these together.
//!
//! It must not know Milvus's wire protocol or the dataplane's internals: it
//! renders their configuration files (checked by loading them in those
//! crates' own types, in `tests/tests/operator_config.rs`) and talks only to
//! the Kubernetes API. It depends on `pika-common` for the cache policy
//! schema and nothing that embeds (no model runtime).

pub mod children;
pub mod controller;
pub mod crd;
pub mod error;
pub mod index;
pub mod metrics;
pub mod render;
pub mod status;

pub use error::Error;
