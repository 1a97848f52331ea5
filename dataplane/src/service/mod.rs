//! Application services: what the API and the worker do, with no HTTP types.

pub mod bm25;
pub mod bookkeeping;
pub mod error;
pub mod forget;
pub mod ingest;
pub mod keys;
pub mod ranking;
pub mod reindex;
pub mod search;
pub mod sweeper;
pub mod worker;

pub use error::ServiceError;
