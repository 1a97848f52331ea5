//! `FactGraph` on Neo4j over Bolt (neo4rs), running the same Cypher as the
//! FalkorDB adapter ([`super::cypher`]) with real Bolt parameters.
//!
//! neo4rs speaks Bolt 4.x, so this adapter needs Neo4j 4.4 or 5.x (both accept
//! Bolt 4.4); FalkorDB's Bolt endpoint (5.x only) cannot serve it, which is why
//! FalkorDB has its own adapter over the Redis protocol. Every call has a
//! deadline; the pool reconnects by itself after the server comes back.

use super::cypher;
use crate::ports::{FactGraph, StoreError};
use async_trait::async_trait;
use neo4rs::{BoltType, ConfigBuilder, Graph, Query, query};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// How to reach Neo4j.
#[derive(Debug, Clone)]
pub struct Neo4jOptions {
    /// `neo4j://host:7687` or `bolt://host:7687` (credentials may be in the URL).
    pub uri: String,
    pub user: String,
    pub password: String,
    /// Database name; empty for the server's default.
    pub database: String,
    pub max_connections: usize,
    /// Deadline for one call.
    pub timeout: Duration,
}

/// Neo4j graph store.
pub struct Neo4jGraph {
    graph: Graph,
    timeout: Duration,
}

fn unavailable(e: impl Into<crate::ports::BoxError>) -> StoreError {
    StoreError::unavailable("neo4j", e)
}

/// Splits `bolt://user:pass@host:port` into the address and credentials.
fn split_credentials(uri: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return (uri.to_string(), None);
    };
    match rest.rsplit_once('@') {
        Some((auth, host)) => {
            let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
            (
                format!("{scheme}://{host}"),
                Some((user.to_string(), pass.to_string())),
            )
        }
        None => (uri.to_string(), None),
    }
}

fn strs(items: &[String]) -> BoltType {
    BoltType::from(items.to_vec())
}

impl Neo4jGraph {
    /// Connects and creates the indexes.
    pub async fn connect(options: Neo4jOptions) -> Result<Self, StoreError> {
        let (uri, from_url) = split_credentials(&options.uri);
        let (user, password) = from_url.unwrap_or((options.user.clone(), options.password.clone()));
        let mut config = ConfigBuilder::default()
            .uri(uri)
            .user(user)
            .password(password)
            .max_connections(options.max_connections.max(1));
        if !options.database.is_empty() {
            config = config.db(options.database.as_str());
        }
        let config = config.build().map_err(unavailable)?;
        let connect = tokio::time::timeout(
            options.timeout.max(Duration::from_secs(2)),
            Graph::connect(config),
        );
        let graph = connect
            .await
            .map_err(|_| unavailable("connect timed out"))?
            .map_err(unavailable)?;
        let g = Neo4jGraph {
            graph,
            timeout: options.timeout,
        };
        for stmt in cypher::INDEXES {
            if let Err(e) = g.run(query(stmt)).await {
                // An equivalent index already exists; anything else shows up on the first real query.
                tracing::debug!(error = %e, stmt, "graph index");
            }
        }
        Ok(g)
    }

    async fn deadline<T>(
        &self,
        fut: impl Future<Output = Result<T, neo4rs::Error>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(unavailable)
    }

    async fn run(&self, q: Query) -> Result<(), StoreError> {
        self.deadline(self.graph.run(q)).await
    }

    /// `(fact, related)` rows of [`cypher::RELATED`].
    async fn related_rows(&self, q: Query) -> Result<Vec<(String, String)>, StoreError> {
        self.deadline(async {
            let mut stream = self.graph.execute(q).await?;
            let mut pairs = Vec::new();
            while let Some(row) = stream.next().await? {
                if let (Ok(fact), Ok(related)) = (row.get::<String>("fact"), row.get::<String>("related")) {
                    pairs.push((fact, related));
                }
            }
            Ok(pairs)
        })
        .await
    }
}

#[async_trait]
impl FactGraph for Neo4jGraph {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run(query("RETURN 1")).await
    }

    async fn upsert_facts(&self, user_id: &str, facts: &[(String, Vec<String>)]) -> Result<(), StoreError> {
        if facts.is_empty() {
            return Ok(());
        }
        let list: Vec<BoltType> = facts
            .iter()
            .map(|(id, entities)| {
                BoltType::from(HashMap::from([
                    ("id", BoltType::from(id.as_str())),
                    ("entities", strs(entities)),
                ]))
            })
            .collect();
        self.run(
            query(cypher::UPSERT_FACTS)
                .param("user", user_id)
                .param("facts", list),
        )
        .await
    }

    async fn related(
        &self,
        user_id: &str,
        fact_ids: &[String],
        per_fact: usize,
    ) -> Result<HashMap<String, Vec<String>>, StoreError> {
        if fact_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let q = query(cypher::RELATED)
            .param("user", user_id)
            .param("ids", strs(fact_ids));
        Ok(cypher::group_related(self.related_rows(q).await?, per_fact))
    }

    async fn delete_facts(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError> {
        if fact_ids.is_empty() {
            return Ok(());
        }
        self.run(
            query(cypher::DELETE_FACTS)
                .param("user", user_id)
                .param("ids", strs(fact_ids)),
        )
        .await?;
        self.run(query(cypher::DELETE_ORPHAN_ENTITIES).param("user", user_id))
            .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        for stmt in cypher::DELETE_USER {
            self.run(query(stmt).param("user", user_id)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_split_off() {
        assert_eq!(
            split_credentials("bolt://neo4j:s3cr:et@db:7687"),
            (
                "bolt://db:7687".to_string(),
                Some(("neo4j".into(), "s3cr:et".into()))
            )
        );
        assert_eq!(
            split_credentials("neo4j://db:7687"),
            ("neo4j://db:7687".to_string(), None)
        );
    }
}
