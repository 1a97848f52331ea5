//! `FactGraph` on FalkorDB through its Redis protocol (`GRAPH.QUERY`), running
//! the shared Cypher of [`super::cypher`].
//!
//! Parameters travel in FalkorDB's `CYPHER name=value ...` prefix as Cypher
//! literals; strings are quoted and escaped here, so user text can never change
//! a statement. Every call has a deadline.

use super::cypher;
use crate::ports::{FactGraph, StoreError};
use async_trait::async_trait;
use redis::Value;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::time::Duration;

/// A Cypher literal value for the parameter prefix.
#[derive(Debug, Clone)]
pub enum Param {
    Str(String),
    List(Vec<Param>),
    Map(Vec<(&'static str, Param)>),
}

impl Param {
    fn render(&self, out: &mut String) {
        match self {
            Param::Str(s) => {
                out.push('\'');
                for c in s.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\'' => out.push_str("\\'"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
                out.push('\'');
            }
            Param::List(items) => {
                out.push('[');
                for (i, p) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    p.render(out);
                }
                out.push(']');
            }
            Param::Map(fields) => {
                out.push('{');
                for (i, (k, p)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push(':');
                    p.render(out);
                }
                out.push('}');
            }
        }
    }
}

fn strs(items: &[String]) -> Param {
    Param::List(items.iter().map(|s| Param::Str(s.clone())).collect())
}

/// `CYPHER a=... b=... QUERY`.
pub fn with_params(query: &str, params: &[(&str, Param)]) -> String {
    let mut out = String::from("CYPHER ");
    for (name, p) in params {
        out.push_str(name);
        out.push('=');
        p.render(&mut out);
        out.push(' ');
    }
    out.push_str(query);
    out
}

/// FalkorDB graph store.
#[derive(Clone)]
pub struct FalkorGraph {
    conn: ConnectionManager,
    graph: String,
    timeout: Duration,
}

fn unavailable(e: impl Into<crate::ports::BoxError>) -> StoreError {
    StoreError::unavailable("falkordb", e)
}

impl FalkorGraph {
    /// Connects (`falkordb://host:port` or `redis://host:port`; `falkordbs://`
    /// or `rediss://` over TLS) and creates the indexes.
    pub async fn connect(url: &str, graph: &str, timeout: Duration) -> Result<Self, StoreError> {
        let url = url
            .replacen("falkordbs://", "rediss://", 1)
            .replacen("falkordb://", "redis://", 1);
        let client = super::redis_client(&url, std::path::Path::new(""), "falkordb")?;
        let conn = tokio::time::timeout(
            timeout.max(Duration::from_secs(2)),
            client.get_connection_manager(),
        )
        .await
        .map_err(|_| unavailable("connect timed out"))?
        .map_err(unavailable)?;
        let g = FalkorGraph {
            conn,
            graph: graph.to_string(),
            timeout,
        };
        for stmt in cypher::INDEXES {
            if let Err(e) = g.query(stmt).await {
                // "already indexed" is fine; anything else shows up on the first real query.
                tracing::debug!(error = %e, stmt, "graph index");
            }
        }
        Ok(g)
    }

    async fn query(&self, text: &str) -> Result<Value, StoreError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("GRAPH.QUERY");
        cmd.arg(&self.graph).arg(text);
        let fut = cmd.query_async::<Value>(&mut conn);
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| unavailable("timed out"))?
            .map_err(unavailable)
    }

    /// Drops the whole graph (tests).
    pub async fn delete_graph(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: Value = redis::cmd("GRAPH.DELETE")
            .arg(&self.graph)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).to_string()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Rows of a `GRAPH.QUERY` reply: `[header, rows, statistics]`.
fn rows(reply: &Value) -> Vec<&Vec<Value>> {
    match reply {
        Value::Array(parts) if parts.len() == 3 => match &parts[1] {
            Value::Array(rows) => rows
                .iter()
                .filter_map(|r| match r {
                    Value::Array(cells) => Some(cells),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[async_trait]
impl FactGraph for FalkorGraph {
    async fn ping(&self) -> Result<(), StoreError> {
        self.query("RETURN 1").await.map(|_| ())
    }

    async fn upsert_facts(&self, user_id: &str, facts: &[(String, Vec<String>)]) -> Result<(), StoreError> {
        if facts.is_empty() {
            return Ok(());
        }
        let list = Param::List(
            facts
                .iter()
                .map(|(id, entities)| {
                    Param::Map(vec![("id", Param::Str(id.clone())), ("entities", strs(entities))])
                })
                .collect(),
        );
        let q = with_params(
            cypher::UPSERT_FACTS,
            &[("user", Param::Str(user_id.into())), ("facts", list)],
        );
        self.query(&q).await.map(|_| ())
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
        let q = with_params(
            cypher::RELATED,
            &[("user", Param::Str(user_id.into())), ("ids", strs(fact_ids))],
        );
        let reply = self.query(&q).await?;
        let pairs = rows(&reply)
            .into_iter()
            .filter_map(|row| Some((row.first().and_then(as_string)?, row.get(1).and_then(as_string)?)));
        Ok(cypher::group_related(pairs, per_fact))
    }

    async fn delete_facts(&self, user_id: &str, fact_ids: &[String]) -> Result<(), StoreError> {
        if fact_ids.is_empty() {
            return Ok(());
        }
        let q = with_params(
            cypher::DELETE_FACTS,
            &[("user", Param::Str(user_id.into())), ("ids", strs(fact_ids))],
        );
        self.query(&q).await?;
        let orphans = with_params(
            cypher::DELETE_ORPHAN_ENTITIES,
            &[("user", Param::Str(user_id.into()))],
        );
        self.query(&orphans).await.map(|_| ())
    }

    async fn delete_user(&self, user_id: &str) -> Result<(), StoreError> {
        for stmt in cypher::DELETE_USER {
            self.query(&with_params(stmt, &[("user", Param::Str(user_id.into()))]))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_quoted_literals() {
        let q = with_params(
            "RETURN $x",
            &[("x", Param::Str("it's a \\ test' DETACH DELETE n //".into()))],
        );
        assert_eq!(q, "CYPHER x='it\\'s a \\\\ test\\' DETACH DELETE n //' RETURN $x");
    }
}
