//! Storage adapters. `sqlite` is the embedded default for every port: one file
//! under the data dir holds facts, jobs, history, keys, audit, vectors and the
//! entity graph, so a first-day developer needs no server. `postgres` is the
//! production metadata store; `milvus`, `neo4j` / `falkordb` and `redis_signals` are the
//! production vector index, graph and cache signals.

pub mod cypher;
mod data_keys;
mod falkordb;
mod local_signals;
mod milvus;
mod neo4j;
mod postgres;
mod redis_client;
mod redis_signals;
mod sqlite;
mod sqlite_graph;
mod sqlite_vectors;

pub use data_keys::{PostgresDataKeys, SqliteDataKeys};
pub use falkordb::FalkorGraph;
pub use local_signals::LocalSignals;
pub use milvus::{IndexSpec, MilvusIndex, MilvusOptions, collection_name};
pub use neo4j::{Neo4jGraph, Neo4jOptions};
pub use postgres::PostgresMetaStore;
pub use redis_client::redis_client;
pub use redis_signals::RedisSignals;
pub use sqlite::SqliteMetaStore;
pub use sqlite_graph::SqliteGraph;
pub use sqlite_vectors::SqliteVectorIndex;

use crate::domain::Permission;
use crate::ports::StoreError;
use chrono::{DateTime, TimeZone, Utc};

/// A stored enum's text read back losslessly: unknown text is corrupt data,
/// never a default.
pub(crate) fn parse_stored<T>(what: &str, text: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("{what} {text:?}")))
}

/// Comma-separated permissions of a stored key, every one known.
pub(crate) fn parse_permissions(text: &str) -> Result<Vec<Permission>, StoreError> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| parse_stored("key permission", p, Permission::parse))
        .collect()
}

/// How one tenant's scoped user keys are matched by position of a needle
/// (`instr`/`strpos`): the default tenant's keys hold no `/` (position 0),
/// another tenant's start with `tenant/` (position 1).
pub(crate) fn tenant_match(tenant_id: &str) -> (String, i32) {
    if tenant_id == pika_common::tenancy::DEFAULT_TENANT {
        ("/".to_string(), 0)
    } else {
        (format!("{tenant_id}/"), 1)
    }
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}
