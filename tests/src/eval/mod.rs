//! `pika-eval`: retrieval quality measured through the HTTP API, as a user
//! would see it, with the raw-transcript baselines of the same run beside it
//! (DESIGN.md §12).
//!
//! Protocol: every speaker that some question asks about becomes a user; each
//! session is sent to `extract_facts` from that speaker's side (their turns as
//! `user`, the other's as `assistant`), in windows of at most 100 turns, with
//! the session date as `occurred_at` and the speaker's name as `user_name`.
//! Every question is then searched (`limit` 10, `score_threshold` 0) in the
//! memory of the person it asks about (the speaker of most of its evidence),
//! and counts as answered at k when one of the top k results has a
//! `conversation_id` + `source_turns` that point at an evidence turn.
//! The baselines search all raw turns of the same conversation.
//!
//! Over 400 lines on purpose: the evaluation loop and its scoring in one place;
//! the dataset reader, baselines and report are apart.

pub mod baseline;
pub mod dataset;
pub mod report;

use anyhow::{Context, Result, bail};
use dataset::{Question, Sample};
use futures::StreamExt;
use pika_embed::Embedder;
use report::{Counts, Report, SystemScores};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Recall cut-offs reported.
pub const KS: [usize; 4] = [1, 3, 5, 10];

/// Where the service under test runs.
pub struct Target {
    pub base_url: String,
    pub key: String,
}

/// What to run.
pub struct EvalOptions {
    pub target: Target,
    /// Embedder for the dense baseline (the service's own model).
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Prefix of user ids, so runs against a shared service stay apart.
    pub run_id: String,
    /// Extracts in flight at once during ingest.
    pub concurrency: usize,
    /// Longest wait for all ingest jobs.
    pub ingest_timeout: Duration,
    /// Results asked per question.
    pub limit: usize,
    /// Print questions not answered within this many results (0: none), for diagnosis.
    pub show_misses: usize,
}

/// One extract call: which sample, user and conversation, and the turn map.
struct Conversation {
    user_id: String,
    conversation_id: String,
    /// dia_id of each message sent, in order (`source_turns` index into this).
    dia_ids: Vec<String>,
    body: Value,
}

/// Runs the whole evaluation and returns its report.
pub async fn run(samples: &[Sample], opts: &EvalOptions) -> Result<Report> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut report = Report::default();
    let conversations = plan_conversations(samples, &opts.run_id);
    let turn_map: HashMap<(String, String), Vec<String>> = conversations
        .iter()
        .map(|c| ((c.user_id.clone(), c.conversation_id.clone()), c.dia_ids.clone()))
        .collect();
    report.samples = samples.len();
    report.turns = samples.iter().map(Sample::turn_count).sum();
    report.dropped_questions = samples.iter().map(|s| s.dropped_questions).sum();

    // Ingest.
    let started = Instant::now();
    let jobs = submit_all(&http, opts, &conversations).await?;
    wait_for_jobs(&http, opts, &jobs).await?;
    let ingest_s = started.elapsed().as_secs_f64();
    report.conversations = conversations.len();
    report.ingest_seconds = ingest_s;
    report.ingest_per_second = conversations.len() as f64 / ingest_s.max(1e-9);

    // Questions through the API.
    let mut pika = SystemScores::new("PIKA (through the API)");
    let mut latencies = Vec::new();
    for sample in samples {
        for q in &sample.questions {
            let user_id = user_id_for(&opts.run_id, &sample.id, &q.subject);
            let t = Instant::now();
            let hits = search(&http, opts, &user_id, &q.question).await?;
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            let ranked: Vec<HashSet<String>> = hits
                .iter()
                .map(|(conv, turns)| {
                    let map = turn_map.get(&(user_id.clone(), conv.clone()));
                    turns
                        .iter()
                        .filter_map(|t| map.and_then(|m| m.get(*t as usize)).cloned())
                        .collect()
                })
                .collect();
            pika.record(q, &ranked);
            if opts.show_misses > 0
                && !ranked
                    .iter()
                    .take(opts.show_misses)
                    .any(|s| q.evidence.iter().any(|e| s.contains(e)))
            {
                print_miss(sample, q, &hits_text(&http, opts, &user_id, &q.question).await?);
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    report.search_p50_ms = percentile(&latencies, 0.50);
    report.search_p99_ms = percentile(&latencies, 0.99);
    report.systems.push(pika);
    report
        .systems
        .extend(baselines(samples, opts.embedder.as_deref()).await?);
    Ok(report)
}

/// The raw-turn baselines over every sample.
async fn baselines(samples: &[Sample], embedder: Option<&dyn Embedder>) -> Result<Vec<SystemScores>> {
    let mut bm25 = SystemScores::new("raw turns: BM25");
    let mut dense = SystemScores::new("raw turns: dense");
    let mut fused = SystemScores::new("raw turns: BM25+dense RRF");
    for sample in samples {
        let turns: Vec<&dataset::Turn> = sample
            .sessions
            .iter()
            .flat_map(|s| &s.turns)
            .filter(|t| !t.text.trim().is_empty())
            .collect();
        let ids: Vec<HashSet<String>> = turns.iter().map(|t| HashSet::from([t.dia_id.clone()])).collect();
        let index = baseline::Bm25::new(turns.iter().map(|t| t.text.as_str()));
        let turn_vectors = match embedder {
            Some(e) => Some(
                embed_in_chunks(e, turns.iter().map(|t| t.text.clone()).collect(), false)
                    .await
                    .context("embedding raw turns for the dense baseline")?,
            ),
            None => None,
        };
        let query_vectors = match embedder {
            Some(e) => Some(
                embed_in_chunks(
                    e,
                    sample.questions.iter().map(|q| q.question.clone()).collect(),
                    true,
                )
                .await?,
            ),
            None => None,
        };
        for (qi, q) in sample.questions.iter().enumerate() {
            let b = index.scores(&q.question);
            let b_rank = baseline::top_k(&b, turns.len());
            bm25.record(q, &pick(&ids, &b_rank));
            if let (Some(tv), Some(qv)) = (&turn_vectors, &query_vectors) {
                let d: Vec<f32> = tv.iter().map(|v| pika_common::vector::dot(v, &qv[qi])).collect();
                let d_rank = baseline::top_k(&d, turns.len());
                dense.record(q, &pick(&ids, &d_rank));
                let f = baseline::rrf(&[b_rank, d_rank], turns.len());
                fused.record(q, &pick(&ids, &baseline::top_k(&f, 10)));
            }
        }
    }
    let mut out = vec![bm25];
    if embedder.is_some() {
        out.push(dense);
        out.push(fused);
    }
    Ok(out)
}

fn pick(ids: &[HashSet<String>], ranking: &[usize]) -> Vec<HashSet<String>> {
    ranking.iter().take(10).map(|&i| ids[i].clone()).collect()
}

async fn embed_in_chunks(e: &dyn Embedder, texts: Vec<String>, queries: bool) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let v = if queries {
            e.embed(chunk.to_vec()).await?
        } else {
            e.embed_passages(chunk.to_vec()).await?
        };
        out.extend(v);
    }
    Ok(out)
}

/// A user id the API accepts (`[A-Za-z0-9_.:@-]`, at most 100 characters).
pub fn user_id_for(run_id: &str, sample: &str, speaker: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.:@-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let id = format!("{}:{}:{}", clean(run_id), clean(sample), clean(speaker));
    id.chars().take(100).collect()
}

/// Every extract call of the run: per subject speaker, per session, in windows.
fn plan_conversations(samples: &[Sample], run_id: &str) -> Vec<Conversation> {
    let mut out = Vec::new();
    for sample in samples {
        let mut subjects: Vec<&str> = Vec::new();
        for q in &sample.questions {
            if !subjects.contains(&q.subject.as_str()) {
                subjects.push(&q.subject);
            }
        }
        for subject in subjects {
            let user_id = user_id_for(run_id, &sample.id, subject);
            for session in &sample.sessions {
                let turns: Vec<&dataset::Turn> = session
                    .turns
                    .iter()
                    .filter(|t| !t.text.trim().is_empty())
                    .collect();
                if turns.len() < 2 {
                    continue;
                }
                // Balanced windows of at most 100 turns, none shorter than 2.
                let windows = turns.len().div_ceil(100);
                let size = turns.len().div_ceil(windows);
                for (w, chunk) in turns.chunks(size).enumerate() {
                    let conversation_id = if windows == 1 {
                        format!("session_{}", session.number)
                    } else {
                        format!("session_{}_part_{}", session.number, w + 1)
                    };
                    let messages: Vec<Value> = chunk
                        .iter()
                        .map(|t| {
                            json!({
                                "role": if t.speaker == subject { "user" } else { "assistant" },
                                "content": t.text.trim().chars().take(5000).collect::<String>(),
                            })
                        })
                        .collect();
                    let mut body = json!({
                        "user_id": user_id,
                        "conversation_id": conversation_id,
                        "conversation": messages,
                        "user_name": subject,
                    });
                    if let Some(d) = session.date {
                        body["occurred_at"] = json!(d.to_rfc3339());
                    }
                    out.push(Conversation {
                        user_id: user_id.clone(),
                        conversation_id,
                        dia_ids: chunk.iter().map(|t| t.dia_id.clone()).collect(),
                        body,
                    });
                }
            }
        }
    }
    out
}

async fn submit_all(
    http: &reqwest::Client,
    opts: &EvalOptions,
    convs: &[Conversation],
) -> Result<Vec<String>> {
    let url = format!("{}/v1/extract_facts", opts.target.base_url);
    let results: Vec<Result<String>> = futures::stream::iter(convs)
        .map(|c| {
            let url = url.clone();
            async move {
                let resp = http
                    .post(&url)
                    .bearer_auth(&opts.target.key)
                    .json(&c.body)
                    .send()
                    .await?;
                let status = resp.status();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                if status.as_u16() != 202 && status.as_u16() != 200 {
                    bail!(
                        "extract {} {} answered {status}: {body}",
                        c.user_id,
                        c.conversation_id
                    );
                }
                body["data"]["job_id"]
                    .as_str()
                    .map(str::to_string)
                    .context("extract reply has no job_id")
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

async fn wait_for_jobs(http: &reqwest::Client, opts: &EvalOptions, jobs: &[String]) -> Result<()> {
    let deadline = Instant::now() + opts.ingest_timeout;
    let mut pending: Vec<&String> = jobs.iter().collect();
    while !pending.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "{} of {} extraction jobs unfinished after {:?}",
                pending.len(),
                jobs.len(),
                opts.ingest_timeout
            );
        }
        let mut still = Vec::new();
        // Oldest first: once the first pending job is unfinished, later ones are too.
        for (i, job) in pending.iter().enumerate() {
            let url = format!("{}/v1/jobs/{job}", opts.target.base_url);
            let body: Value = http
                .get(&url)
                .bearer_auth(&opts.target.key)
                .send()
                .await?
                .json()
                .await?;
            match body["data"]["state"].as_str() {
                Some("completed") => {}
                Some("failed") => bail!("extraction job {job} failed: {}", body["data"]["error"]),
                _ => {
                    still.extend(pending[i..].iter().copied());
                    break;
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// `(conversation_id, source_turns)` of each result, best first.
async fn search(
    http: &reqwest::Client,
    opts: &EvalOptions,
    user_id: &str,
    query: &str,
) -> Result<Vec<(String, Vec<u64>)>> {
    let resp = http
        .post(format!("{}/v1/search_facts", opts.target.base_url))
        .bearer_auth(&opts.target.key)
        .json(&json!({"user_id": user_id, "query": query, "limit": opts.limit, "score_threshold": 0.0}))
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("search for {user_id} answered {status}: {body}");
    }
    Ok(body["data"]["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["conversation_id"].as_str().unwrap_or_default().to_string(),
                r["source_turns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64)
                    .collect(),
            )
        })
        .collect())
}

/// The top results' kind and text, for `show_misses`.
async fn hits_text(
    http: &reqwest::Client,
    opts: &EvalOptions,
    user_id: &str,
    query: &str,
) -> Result<Vec<String>> {
    let body: Value = http
        .post(format!("{}/v1/search_facts", opts.target.base_url))
        .bearer_auth(&opts.target.key)
        .json(&json!({"user_id": user_id, "query": query, "limit": opts.show_misses, "score_threshold": 0.0}))
        .send()
        .await?
        .json()
        .await?;
    Ok(body["data"]["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "[{} {:.3}] {} | {}",
                r["kind"].as_str().unwrap_or("?"),
                r["score"].as_f64().unwrap_or(0.0),
                r["context"].as_str().unwrap_or(""),
                r["content"].as_str().unwrap_or("")
            )
        })
        .collect())
}

fn print_miss(sample: &Sample, q: &Question, top: &[String]) {
    let text: HashMap<&str, &str> = sample
        .sessions
        .iter()
        .flat_map(|s| &s.turns)
        .map(|t| (t.dia_id.as_str(), t.text.as_str()))
        .collect();
    eprintln!("MISS {} [{} {:?}] {}", sample.id, q.category, q.tags, q.question);
    for e in &q.evidence {
        eprintln!("   evidence {e}: {}", text.get(e.as_str()).unwrap_or(&""));
    }
    for t in top {
        eprintln!("   got {t}");
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

impl SystemScores {
    fn record(&mut self, q: &Question, ranked: &[HashSet<String>]) {
        let first = ranked
            .iter()
            .take(10)
            .position(|s| q.evidence.iter().any(|e| s.contains(e)));
        let mut groups = vec!["all".to_string(), format!("category {}", q.category)];
        groups.extend(q.tags.iter().map(|t| format!("tag {t}")));
        for g in groups {
            self.groups.entry(g).or_default().add(first);
        }
    }
}

/// Groups in a stable order: all, categories, tags.
pub fn ordered_groups(groups: &BTreeMap<String, Counts>) -> Vec<(&String, &Counts)> {
    let mut v: Vec<_> = groups.iter().collect();
    v.sort_by_key(|(g, _)| (g.as_str() != "all", !g.starts_with("category"), g.to_string()));
    v
}
