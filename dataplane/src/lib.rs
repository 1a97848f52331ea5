//! PIKA memory dataplane: the extract and search API, the extraction worker and
//! the storage adapters behind one port per capability.
//!
//! Layering (outer to inner): `http` (axum handlers, the envelope) → `service`
//! (use cases, no HTTP types) → `ports` (traits) ← `store`, `queue`, `extract`
//! (adapters); `resilience` puts circuit breakers in front of the optional
//! dependencies. `app` wires adapters chosen by configuration. This crate knows
//! nothing about Kubernetes or the sidecar's caches.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod extract;
pub mod http;
pub mod metrics;
pub mod ports;
pub mod queue;
pub mod resilience;
pub mod resolve;
pub mod service;
pub mod store;
pub mod transfer;
pub mod vault;
