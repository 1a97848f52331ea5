//! Types and helpers shared by the PIKA dataplane and sidecar.
//!
//! This crate holds what both processes must agree on byte for byte: the HTTP
//! wire types and their validation limits, the error envelope, the
//! Vietnamese-aware text normalisation, and telemetry initialisation.
//! Embedders are in `pika-embed`, so that the operator compiles no model runtime.
//!
//! It knows nothing about storage, queues or Kubernetes, and opens no database
//! or cache connection.
#![forbid(unsafe_code)]

pub mod cache_policy;
#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "http")]
pub mod grants;
#[cfg(feature = "http")]
pub mod http;
pub mod keys;
pub mod mem0;
#[cfg(feature = "seal")]
pub mod seal;
pub mod secret;
pub mod shutdown;
pub mod signals;
pub mod telemetry;
pub mod tenancy;
pub mod text;
#[cfg(feature = "http")]
pub mod tls;
pub mod validate;
pub mod vector;
pub mod wire;
