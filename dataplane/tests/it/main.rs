//! HTTP-level integration tests of the dataplane: real servers on free ports,
//! real SQLite, the real MiniLM model (or a local OpenAI-compatible server).
//! One test binary (modules below) to keep link time down on small machines.

mod backends;
mod harness;
mod mock_openai;

mod adapters;

mod api;
mod broker;
mod encryption;
mod fuzz;
mod hardening;
mod import;
mod memory;
mod milvus;
mod openai_compat;
mod reliability;
mod restart;
mod retention;
mod split;
mod tenancy;
mod validation;
