//! `pika-dataplane import` and `export` in Mem0's format, as a user runs
//! them: the real binary on a real embedded store, then the server finds
//! what came in (through the Mem0 routes) and an export goes back in as
//! nothing new.

use crate::harness::{TestServer, have_model, model_dir, test_config};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn cli(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pika-dataplane"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("PIKA__EMBEDDING__MODEL_DIR", model_dir())
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A Mem0 `get_all` page of `n` memories of two users, plus one bad object.
fn export_page(n: usize) -> Value {
    let things = [
        "cats",
        "dinosaurs",
        "football",
        "pancakes",
        "the moon",
        "trains",
        "drawing",
        "rain",
    ];
    let mut results: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("0b6a1c2e-0000-4000-8000-{i:012}"),
                "memory": format!("Likes {} (note {i})", things[i % things.len()]),
                "user_id": if i % 2 == 0 { "kid-a" } else { "kid-b" },
                "agent_id": if i == 3 { Some("pika-robot") } else { None },
                "metadata": {"source": "mem0", "n": i},
                "categories": ["hobbies"],
                "created_at": "2025-03-01T08:00:00.000000-07:00",
                "updated_at": "2025-03-02T08:00:00.000000-07:00",
            })
        })
        .collect();
    results.push(json!({"id": "bad-1", "user_id": "kid-a"}));
    json!({"count": results.len(), "next": null, "previous": null, "results": results})
}

/// Mem0's open-source history database: one memory added then updated,
/// one added then deleted.
async fn history_db(path: &Path) {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.expect("history.db");
    sqlx::query(
        "CREATE TABLE history (id TEXT PRIMARY KEY, memory_id TEXT, old_memory TEXT, new_memory TEXT,
         event TEXT, created_at DATETIME, updated_at DATETIME, is_deleted INTEGER, actor_id TEXT, role TEXT)",
    )
    .execute(&pool)
    .await
    .expect("table");
    for (id, mem, old, new, event, at, deleted) in [
        (
            "h1",
            "hist-1",
            None,
            Some("Has a goldfish"),
            "ADD",
            "2025-01-01T10:00:00",
            0,
        ),
        (
            "h2",
            "hist-1",
            Some("Has a goldfish"),
            Some("Has two goldfish"),
            "UPDATE",
            "2025-02-01T10:00:00",
            0,
        ),
        (
            "h3",
            "hist-2",
            None,
            Some("Is afraid of the dark"),
            "ADD",
            "2025-01-01T10:00:00",
            0,
        ),
        (
            "h4",
            "hist-2",
            Some("Is afraid of the dark"),
            None,
            "DELETE",
            "2025-01-05T10:00:00",
            1,
        ),
    ] {
        sqlx::query("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)")
            .bind(id)
            .bind(mem)
            .bind(old)
            .bind(new)
            .bind(event)
            .bind(at)
            .bind(at)
            .bind(deleted)
            .execute(&pool)
            .await
            .expect("row");
    }
    pool.close().await;
}

async fn mem0_search(s: &TestServer, user: &str, query: &str, filters: Value) -> Vec<Value> {
    let mut f = json!({"user_id": user});
    if let (Some(obj), Some(extra)) = (f.as_object_mut(), filters.as_object()) {
        obj.extend(extra.clone());
    }
    let body: Value = s
        .http
        .post(format!("{}/v3/memories/search/", s.base))
        .header("Authorization", format!("Token {}", s.key))
        .json(&json!({"query": query, "filters": {"AND": [f]}, "top_k": 5}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    body["results"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mem0_export_comes_in_once_and_goes_back_out_in_the_same_shape() {
    if !have_model() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let export = dir.path().join("export.json");
    std::fs::write(&export, export_page(40).to_string()).expect("write export");
    let history = dir.path().join("history.db");
    history_db(&history).await;
    let (export_s, history_s) = (export.to_str().expect("utf-8"), history.to_str().expect("utf-8"));

    let dry = cli(
        &data,
        &["import", "--dry-run", "--user", "kid-c", export_s, history_s],
    );
    assert!(dry.contains("would import 41 memories for 3 users"), "{dry}");
    let first = cli(&data, &["import", "--user", "kid-c", export_s, history_s]);
    assert!(first.contains("imported 41 memories for 3 users"), "{first}");
    assert!(
        first.contains("(0 already there, 1 rejected) from 42 read"),
        "{first}"
    );
    assert!(first.contains("rejected "), "the bad object is named: {first}");
    let second = cli(&data, &["import", "--user", "kid-c", export_s, history_s]);
    assert!(
        second.contains("imported 0 memories"),
        "a second run adds nothing: {second}"
    );
    assert!(second.contains("(41 already there"), "{second}");

    let server = TestServer::start_with(test_config(&data)).await;
    let hits = mem0_search(&server, "kid-b", "dinosaurs", json!({})).await;
    let top = hits.first().expect("an imported memory is found");
    assert!(
        top["memory"].as_str().is_some_and(|m| m.contains("dinosaurs")),
        "{hits:?}"
    );
    assert_eq!(top["metadata"]["source"], "mem0", "{top}");
    assert_eq!(top["created_at"], "2025-03-01T15:00:00Z", "{top}");
    let scoped = mem0_search(&server, "kid-b", "pancakes", json!({"agent_id": "pika-robot"})).await;
    let ids: Vec<&str> = scoped.iter().filter_map(|h| h["id"].as_str()).collect();
    assert_eq!(ids, ["0b6a1c2e-0000-4000-8000-000000000003"], "{scoped:?}");
    // The history database's memory came in with its history; the deleted one did not.
    let fish = mem0_search(&server, "kid-c", "goldfish", json!({})).await;
    assert_eq!(
        fish.first().and_then(|h| h["memory"].as_str()),
        Some("Has two goldfish"),
        "{fish:?}"
    );
    let hist: Value = server
        .http
        .get(format!("{}/v1/memories/hist-1/history/", server.base))
        .header("Authorization", format!("Token {}", server.key))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    let events: Vec<&str> = hist
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|h| h["event"].as_str())
        .collect();
    assert_eq!(events, ["ADD", "UPDATE"], "{hist}");
    let dark = mem0_search(&server, "kid-c", "afraid of the dark", json!({})).await;
    assert!(
        dark.iter().all(|h| h["id"] != "hist-2"),
        "a deleted memory stays out: {dark:?}"
    );
    server.stop().await;

    let out = dir.path().join("out.jsonl");
    cli(&data, &["export", "--out", out.to_str().expect("utf-8")]);
    let lines: Vec<Value> = std::fs::read_to_string(&out)
        .expect("export file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 41, "every memory is exported");
    let three = lines
        .iter()
        .find(|l| l["id"] == "0b6a1c2e-0000-4000-8000-000000000003")
        .expect("memory 3");
    assert_eq!(three["agent_id"], "pika-robot");
    assert_eq!(three["user_id"], "kid-b");
    assert_eq!(three["metadata"], json!({"source": "mem0", "n": 3}));
    let again = cli(&data, &["import", out.to_str().expect("utf-8")]);
    assert!(
        again.contains("imported 0 memories") && again.contains("(41 already there"),
        "{again}"
    );
}
