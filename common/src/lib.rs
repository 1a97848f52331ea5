//! Types and helpers shared by the PIKA dataplane and sidecar.
//!
//! This crate holds what both processes must agree on byte for byte: the HTTP
//! wire types and their validation limits, the error envelope, the embedding
//! providers (so the sidecar and dataplane produce the same query vectors), the
//! Vietnamese-aware text normalisation, and telemetry initialisation.
//!
//! It knows nothing about storage, queues or Kubernetes, and opens no database
//! or cache connection.
#![forbid(unsafe_code)]

pub mod cache_policy;
pub mod embed;
pub mod shutdown;
pub mod telemetry;
pub mod text;
pub mod validate;
pub mod vector;
pub mod wire;
