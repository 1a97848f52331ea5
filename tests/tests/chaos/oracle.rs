//! What every accepted job must come to, checked against what the load
//! recorded (the oracle): each 202 ends `completed` (or `failed` with a
//! reason); every fact a completed job reported exists; the conversation
//! it stored is found by a search for what the child said; no user holds
//! the same memory twice.

use crate::load::Accepted;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub accepted: usize,
    pub completed: usize,
    pub failed: usize,
    /// Accepted and never final within the deadline, or gone.
    pub lost: usize,
    /// Reported by a completed job and not stored (or not active or superseded).
    pub missing_facts: usize,
    /// Completed, but a search for the child's words does not find the conversation.
    pub unfindable: usize,
    /// The same memory text stored twice for one user.
    pub duplicates: usize,
    /// Failure reasons, for the report.
    pub failures: Vec<String>,
    /// How long after the fault ended the last job reached its final state.
    pub drained_after: Duration,
}

async fn get(http: &reqwest::Client, base: &str, key: &str, path: &str) -> Option<(u16, Value)> {
    let resp = http
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

enum JobCheck {
    Failed(String),
    Completed { missing: usize, found: bool },
}

/// One final job: its reported facts exist, and a search for what the
/// child said finds its conversation.
async fn check_job(http: &reqwest::Client, base: &str, key: &str, a: &Accepted, job: &Value) -> JobCheck {
    if job["state"] == "failed" {
        return JobCheck::Failed(job["error"].as_str().unwrap_or("no reason").to_string());
    }
    let mut missing = 0;
    for id in job["result"]["fact_ids"].as_array().into_iter().flatten() {
        let id = id.as_str().unwrap_or_default();
        let ok = matches!(
            get(http, base, key, &format!("/v1/facts/{id}")).await,
            Some((200, f)) if matches!(f["data"]["status"].as_str(), Some("active" | "superseded"))
        );
        missing += usize::from(!ok);
    }
    let found = http
        .post(format!("{base}/v1/search_facts"))
        .bearer_auth(key)
        .json(&json!({"user_id": a.user, "query": a.text, "limit": 20, "score_threshold": 0.0}))
        .send()
        .await
        .ok();
    let body: Value = match found {
        Some(r) => r.json().await.unwrap_or(Value::Null),
        None => Value::Null,
    };
    let found = body["data"]["results"].as_array().is_some_and(|rs| {
        rs.iter()
            .any(|r| r["conversation_id"] == a.conversation_id.as_str())
    });
    JobCheck::Completed { missing, found }
}

/// Checks `accepted` against the API at `base` (directly, not through the
/// sidecar's cache), waiting up to `deadline` for jobs to finish.
pub async fn verify(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    accepted: &[Accepted],
    users: &[String],
    deadline: Duration,
) -> Verdict {
    let started = Instant::now();
    let mut v = Verdict {
        accepted: accepted.len(),
        ..Verdict::default()
    };
    let mut pending: Vec<&Accepted> = accepted.iter().collect();
    let mut finals: HashMap<String, Value> = HashMap::new();
    while !pending.is_empty() && started.elapsed() < deadline {
        let mut still = Vec::new();
        for a in pending {
            match get(http, base, key, &format!("/v1/jobs/{}", a.job_id)).await {
                Some((200, body))
                    if matches!(body["data"]["state"].as_str(), Some("completed" | "failed")) =>
                {
                    finals.insert(a.job_id.clone(), body["data"].clone());
                }
                _ => still.push(a),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    v.drained_after = started.elapsed();
    v.lost = pending.len();
    // Each completed job's facts and findability, 16 at a time.
    let checks = futures::stream::iter(
        accepted
            .iter()
            .filter_map(|a| finals.get(&a.job_id).map(|j| (a, j))),
    )
    .map(|(a, job)| check_job(http, base, key, a, job))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    for c in checks {
        match c {
            JobCheck::Failed(reason) => {
                v.failed += 1;
                v.failures.push(reason);
            }
            JobCheck::Completed { missing, found } => {
                v.completed += 1;
                v.missing_facts += missing;
                v.unfindable += usize::from(!found);
            }
        }
    }
    for user in users {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/users/{user}/facts?limit=200&kind=all&cursor={c}"),
                None => format!("/v1/users/{user}/facts?limit=200&kind=all"),
            };
            let Some((200, page)) = get(http, base, key, &path).await else {
                break;
            };
            for f in page["data"]["facts"].as_array().into_iter().flatten() {
                if f["status"] == "active" {
                    *seen.entry(format!("{}|{}", f["kind"], f["content"])).or_default() += 1;
                }
            }
            match page["data"]["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        v.duplicates += seen.values().map(|n| n.saturating_sub(1)).sum::<usize>();
    }
    v
}
