//! Erasure that leaves nothing (issue 12): a unique marker goes in through
//! every path (extract: facts and episodes; searches: L0 and L1 of two
//! sidecars; jobs still queued or running when the delete arrives), the user
//! is deleted through a sidecar, and then every backend is scanned for the
//! user id and the marker: the SQLite file (every table, and the raw bytes of
//! the database and its WAL) or every PostgreSQL table, Redis keys and
//! values, the vector index, the graph, and both sidecars' L0. Expect 0.

use crate::harness::{Stack, user};
use pika_dataplane::config::{Config, Secret};
use pika_tests::support::server_url;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// Traces found, by place.
#[derive(Default, Debug)]
struct Traces(Vec<String>);

impl Traces {
    fn found(&mut self, place: impl Into<String>) {
        self.0.push(place.into());
    }
}

/// The metadata database and the keyring (data keys by owner), as tables and as raw bytes.
async fn scan_sqlite(dir: &std::path::Path, needles: &[&str], traces: &mut Traces) {
    for db in ["pika.db", "keyring.db"] {
        scan_sqlite_file(dir, db, needles, traces).await;
    }
}

async fn scan_sqlite_file(dir: &std::path::Path, db: &str, needles: &[&str], traces: &mut Traces) {
    let url = format!("sqlite://{}", dir.join(db).display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open sqlite");
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&pool)
        .await
        .expect("tables");
    for table in &tables {
        let cols: Vec<String> = sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .fetch_all(&pool)
            .await
            .expect("columns");
        for col in cols {
            for n in needles {
                let hits: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM \"{table}\" WHERE instr(lower(CAST(\"{col}\" AS TEXT)), lower(?)) > 0"
                ))
                .bind(*n)
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
                if hits > 0 {
                    traces.found(format!("sqlite {db} {table}.{col} holds {n:?} ({hits} rows)"));
                }
            }
        }
    }
    pool.close().await;
    for file in [db.to_string(), format!("{db}-wal")] {
        let Ok(bytes) = std::fs::read(dir.join(&file)) else {
            continue;
        };
        let lower = bytes.to_ascii_lowercase();
        for n in needles {
            let n = n.to_ascii_lowercase();
            if lower.windows(n.len()).any(|w| w == n.as_bytes()) {
                traces.found(format!("raw bytes of {file} hold {n:?}"));
            }
        }
    }
}

async fn scan_postgres(pool: &sqlx::PgPool, schema: &str, needles: &[&str], traces: &mut Traces) {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1")
            .bind(schema)
            .fetch_all(pool)
            .await
            .expect("tables");
    for table in tables {
        for n in needles {
            let hits: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM \"{schema}\".\"{table}\" r WHERE strpos(lower(r::text), lower($1)) > 0"
            ))
            .bind(*n)
            .fetch_one(pool)
            .await
            .expect("scan");
            if hits > 0 {
                traces.found(format!("postgres {table} holds {n:?} ({hits} rows)"));
            }
        }
    }
}

async fn scan_redis(url: &str, needles: &[&str], traces: &mut Traces) {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("pika:*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        for key in keys {
            if needles.iter().any(|n| key.contains(n)) {
                traces.found(format!("redis key {key}"));
                continue;
            }
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            if let Some(v) = value {
                let lower = v.to_ascii_lowercase();
                for n in needles {
                    let n = n.to_ascii_lowercase();
                    if lower.windows(n.len()).any(|w| w == n.as_bytes()) {
                        traces.found(format!("redis value of {key} holds {n:?}"));
                    }
                }
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

async fn scan_falkordb(url: &str, graph: &str, needles: &[&str], traces: &mut Traces) {
    let client = redis::Client::open(url.replacen("falkordb://", "redis://", 1)).expect("falkordb url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("falkordb");
    for n in needles {
        let q = format!(
            "MATCH (x) WHERE toLower(coalesce(x.id, '')) CONTAINS '{n}' OR toLower(coalesce(x.user_id, '')) CONTAINS '{n}' \
             OR toLower(coalesce(x.name, '')) CONTAINS '{n}' RETURN count(x)",
            n = n.to_lowercase()
        );
        let reply: redis::Value = redis::cmd("GRAPH.QUERY")
            .arg(graph)
            .arg(&q)
            .query_async(&mut conn)
            .await
            .expect("graph query");
        let text = format!("{reply:?}").to_lowercase();
        // The count is the only integer in the result.
        if !text.contains("int(0)") {
            traces.found(format!("falkordb nodes match {n:?}: {text}"));
        }
    }
}

/// Everything the scenario writes, then erases.
async fn write_everywhere_then_erase(stack: &Stack, kid: &str, marker: &str) -> Value {
    let first = stack.sidecar(&stack.redis_url, |_| {}).await;
    let second = stack.sidecar(&stack.redis_url, |_| {}).await;
    let a = format!("http://{}", first.addr);
    let b = format!("http://{}", second.addr);
    for sentence in [
        format!("Mình có con rồng tên là {marker}"),
        format!("I have a pet dragon named {marker}"),
    ] {
        let job = stack.extract(&a, kid, &sentence).await;
        stack.wait_completed(&a, &job).await;
    }
    // Searches through both sidecars: L0 in each, L1 shared; the query holds
    // the marker too (cached queries must go as well).
    for base in [&a, &b, &a, &b] {
        let ans = stack.search(base, kid, &format!("{marker} là con gì")).await;
        assert_eq!(ans.status, StatusCode::OK);
        assert!(
            !ans.facts().is_empty(),
            "the marker is searchable before the erasure"
        );
    }
    // Jobs still queued or running when the delete arrives.
    for i in 0..3 {
        stack
            .extract(&a, kid, &format!("Hôm nay {marker} bay lên trời lần {i}"))
            .await;
    }
    let resp = stack
        .http
        .delete(format!("{a}/v1/users/{kid}"))
        .bearer_auth(&stack.key)
        .send()
        .await
        .expect("delete sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let receipt: Value = resp.json().await.expect("receipt");
    // Let in-flight jobs finish (and undo) and the second cache sweep run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let scoped = kid.to_string();
    for (name, s) in [("first", &first), ("second", &second)] {
        assert!(
            s.state.cache.l0.existing_user(&scoped).is_none(),
            "{name} sidecar still holds an L0 slot for the user"
        );
    }
    let after = stack.search(&b, kid, &format!("{marker} là con gì")).await;
    assert_eq!(
        (after.x_cache.as_str(), after.facts().len()),
        ("MISS", 0),
        "{}",
        after.body
    );
    // That search's own miss left a (now empty) answer in L1; erase again so
    // the scan sees what the erasure leaves, not what the check wrote.
    let resp = stack
        .http
        .delete(format!("{a}/v1/users/{kid}"))
        .bearer_auth(&stack.key)
        .send()
        .await
        .expect("delete sent");
    assert_eq!(resp.status(), StatusCode::OK);
    first.stop().await;
    second.stop().await;
    receipt
}

#[tokio::test]
async fn an_erased_user_leaves_no_trace_on_the_embedded_stores() {
    let Some(stack) = Stack::start().await else { return };
    let kid = user("erase-kid");
    let marker = format!("Zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let receipt = write_everywhere_then_erase(&stack, &kid, &marker).await;
    println!("erasure receipt: {receipt}");
    let r = &receipt["data"]["receipt"];
    assert!(r["metadata"]["facts"].as_u64().unwrap_or(0) >= 1, "{receipt}");
    assert!(r["metadata"]["episodes"].as_u64().unwrap_or(0) >= 1, "{receipt}");
    assert!(
        r["cache_entries"].as_u64().unwrap_or(0) >= 1,
        "L1 entries removed: {receipt}"
    );
    assert!(
        r["metadata"]["audit_pseudonymised"].as_u64().unwrap_or(0) >= 1,
        "queued audit lines are written, then pseudonymised: {receipt}"
    );
    let mut traces = Traces::default();
    let needles = [kid.as_str(), marker.as_str()];
    scan_sqlite(&stack.config.storage.data_dir, &needles, &mut traces).await;
    scan_redis(&stack.redis_url, &needles, &mut traces).await;
    println!(
        "erasure scan (embedded): {} traces {:?}",
        traces.0.len(),
        traces.0
    );
    assert!(traces.0.is_empty(), "{:?}", traces.0);
}

#[tokio::test]
async fn an_erased_user_leaves_no_trace_on_the_real_backends() {
    let (Some(pg), Some(falkor), Some(milvus)) = (
        server_url("PIKA_TEST_POSTGRES_URL"),
        server_url("PIKA_TEST_FALKORDB_URL"),
        server_url("PIKA_TEST_MILVUS_URL"),
    ) else {
        return;
    };
    let schema = format!("pika_erase_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let store = pika_dataplane::store::PostgresMetaStore::connect(&pg, Some(&schema), 2)
        .await
        .expect("postgres");
    let sep = if pg.contains('?') { '&' } else { '?' };
    let meta_url = format!("{pg}{sep}options=-c%20search_path%3D{schema}");
    let graph = schema.clone();
    let prefix = schema.clone();
    let tweak = {
        let (falkor, milvus, graph, prefix) = (falkor.clone(), milvus.clone(), graph.clone(), prefix.clone());
        move |c: &mut Config| {
            c.storage.meta_url = Secret::new(meta_url);
            c.storage.graph_url = Secret::new(falkor);
            c.storage.graph_name = graph;
            c.vector.url = Secret::new(milvus);
            c.vector.collection_prefix = prefix;
        }
    };
    let Some(stack) = Stack::start_with(tweak).await else {
        return;
    };
    let kid = user("erase-kid");
    let marker = format!("Zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let receipt = write_everywhere_then_erase(&stack, &kid, &marker).await;
    println!("erasure receipt (real backends): {receipt}");
    let mut traces = Traces::default();
    let needles = [kid.as_str(), marker.as_str()];
    scan_postgres(&store.pool(), &schema, &needles, &mut traces).await;
    scan_redis(&stack.redis_url, &needles, &mut traces).await;
    scan_falkordb(&falkor, &graph, &needles, &mut traces).await;
    let deps = pika_dataplane::resolve::build_deps(&stack.config)
        .await
        .expect("deps");
    let probe = vec![0.05f32; deps.embedder.dimension()];
    let left = deps
        .vectors
        .search(&kid, &probe, 100)
        .await
        .expect("milvus search");
    if !left.is_empty() {
        traces.found(format!("milvus holds {} vectors of the user", left.len()));
    }
    println!(
        "erasure scan (postgres, redis, falkordb, milvus): {} traces {:?}",
        traces.0.len(),
        traces.0
    );
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&store.pool())
        .await
        .expect("drop schema");
    let _ = deps.graph.delete_user(&kid).await;
    assert!(traces.0.is_empty(), "{:?}", traces.0);
}

/// Every L1 value of a user (answers and the semantic index of queries), raw.
async fn l1_values(url: &str, user: &str) -> Vec<Vec<u8>> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let mut keys: Vec<String> = Vec::new();
    for pattern in pika_common::signals::l1_patterns(user) {
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .expect("keys");
        keys.extend(found);
    }
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("type");
        if kind == "list" {
            let items: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .expect("lrange");
            out.extend(items);
        } else {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("get");
            out.extend(v);
        }
    }
    out
}

/// L1 holds sealed values only: neither the answer's text nor the query's
/// is in Redis, yet a second sidecar (same key) answers from L1.
#[tokio::test]
async fn l1_values_are_sealed() {
    let Some(stack) = Stack::start().await else { return };
    let first = stack.sidecar(&stack.redis_url, |_| {}).await;
    let second = stack.sidecar(&stack.redis_url, |_| {}).await;
    let (a, b) = (
        format!("http://{}", first.addr),
        format!("http://{}", second.addr),
    );
    let kid = user("sealed-l1");
    let marker = format!("Zq{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let job = stack
        .extract(&a, &kid, &format!("Con rồng của mình tên là {marker}"))
        .await;
    stack.wait_completed(&a, &job).await;
    let query = format!("{marker} là con gì");
    let miss = stack.search(&a, &kid, &query).await;
    assert!(miss.body.to_string().contains(&marker), "{}", miss.body);
    let mut values = Vec::new();
    for _ in 0..50 {
        values = l1_values(&stack.redis_url, &kid).await;
        if values.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        values.len() >= 2,
        "an answer and its query entry in L1: {}",
        values.len()
    );
    let needle = marker.to_ascii_lowercase();
    let clear = values
        .iter()
        .filter(|v| {
            let lower = v.to_ascii_lowercase();
            lower.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .count();
    let other = stack.search(&b, &kid, &query).await;
    assert_eq!(other.x_cache, "L1-HIT", "{}", other.body);
    assert!(other.body.to_string().contains(&marker), "{}", other.body);
    println!(
        "L1 sealed: {} values of the user in Redis, {clear} hold the text in the clear",
        values.len()
    );
    assert_eq!(clear, 0);
    first.stop().await;
    second.stop().await;
}
