//! A steady SDD mix through the sidecar (70% search, 30% extract) at a
//! fixed rate, each request sent on time whatever the previous ones do (a
//! slow answer never slows the load). Every answer is counted against the
//! phase it was sent in, and whether a fault was active then; every 202 is
//! kept for the oracle.

use rand::Rng;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// One accepted extract: what the oracle checks.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub job_id: String,
    pub user: String,
    pub conversation_id: String,
    /// The user's turn (unique per request): a search for it must find this conversation.
    pub text: String,
}

#[derive(Debug, Default, Clone)]
pub struct PhaseStats {
    pub extracts: u64,
    pub accepted: Vec<Accepted>,
    /// 5xx answers to extracts (no 202: nothing was accepted), and how many
    /// of them came while the fault was active.
    pub extract_5xx: u64,
    pub extract_5xx_in_fault: u64,
    /// Extracts that got no HTTP answer at all (connection refused: the sidecar is
    /// in process, so this means the client timed out).
    pub extract_no_answer: u64,
    pub searches: u64,
    pub search_5xx: u64,
    pub search_5xx_in_fault: u64,
    pub search_degraded: u64,
    pub search_no_answer: u64,
    pub other_4xx: u64,
}

#[derive(Default)]
struct Board {
    phase: String,
    in_fault: bool,
    users: Vec<String>,
    phases: BTreeMap<String, PhaseStats>,
    sequence: u64,
}

/// The running load.
pub struct Load {
    board: Arc<Mutex<Board>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

const ANIMALS: &[&str] = &[
    "cat", "dog", "rabbit", "parrot", "turtle", "hamster", "pony", "goldfish",
];
const PLACES: &[&str] = &[
    "the park",
    "grandma's house",
    "school",
    "the beach",
    "the zoo",
    "the library",
];

fn lock(board: &Mutex<Board>) -> std::sync::MutexGuard<'_, Board> {
    board.lock().unwrap_or_else(|p| p.into_inner())
}

impl Load {
    /// Starts `rps` requests per second against `base` with `key`.
    pub fn start(base: &str, key: &str, rps: f64) -> Load {
        let board = Arc::new(Mutex::new(Board::default()));
        let (stop, stopped) = watch::channel(false);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        let in_flight = Arc::new(Semaphore::new(128));
        let mut tasks = Vec::new();
        for (kind, share) in [("extract", 0.3), ("search", 0.7)] {
            let period = Duration::from_secs_f64(1.0 / (rps * share).max(0.01));
            let (board, http, base, key, in_flight) = (
                board.clone(),
                http.clone(),
                base.to_string(),
                key.to_string(),
                in_flight.clone(),
            );
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stopped.changed() => break,
                        _ = tick.tick() => {}
                    }
                    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                        continue; // 128 requests hanging: the system is down, not the load.
                    };
                    let (board, http, base, key) = (board.clone(), http.clone(), base.clone(), key.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        if kind == "extract" {
                            extract(&board, &http, &base, &key).await;
                        } else {
                            search(&board, &http, &base, &key).await;
                        }
                    });
                }
            }));
        }
        Load { board, stop, tasks }
    }

    /// Starts counting into `phase`, whose requests go to `users`.
    pub fn phase(&self, phase: &str, users: Vec<String>) {
        let mut b = lock(&self.board);
        b.phase = phase.to_string();
        b.users = users;
        b.in_fault = false;
        b.phases.entry(phase.to_string()).or_default();
    }

    /// Marks the fault as active (or over) for the answers that follow.
    pub fn fault(&self, active: bool) {
        lock(&self.board).in_fault = active;
    }

    pub fn stats(&self, phase: &str) -> PhaseStats {
        lock(&self.board).phases.get(phase).cloned().unwrap_or_default()
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // Requests in flight finish within the client timeout.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The phase, fault flag, a user and a sequence number for the next request.
fn next(board: &Mutex<Board>) -> Option<(String, bool, String, u64)> {
    let mut b = lock(board);
    if b.users.is_empty() {
        return None;
    }
    b.sequence += 1;
    let user = b.users[rand::rng().random_range(0..b.users.len())].clone();
    Some((b.phase.clone(), b.in_fault, user, b.sequence))
}

fn record(board: &Mutex<Board>, phase: &str, f: impl FnOnce(&mut PhaseStats)) {
    let mut b = lock(board);
    f(b.phases.entry(phase.to_string()).or_default());
}

async fn extract(board: &Mutex<Board>, http: &reqwest::Client, base: &str, key: &str) {
    let Some((phase, in_fault, user, n)) = next(board) else {
        return;
    };
    let (animal, place) = {
        let mut r = rand::rng();
        (
            ANIMALS[r.random_range(0..ANIMALS.len())],
            PLACES[r.random_range(0..PLACES.len())],
        )
    };
    let text = format!("I love my {animal} called Bo{n}, we play at {place} every day.");
    let conversation_id = format!("c{n}");
    let body = json!({
        "user_id": user,
        "conversation_id": conversation_id,
        "conversation": [
            {"role": "assistant", "content": "Tell me about your pets!"},
            {"role": "user", "content": text},
        ],
    });
    let sent = http
        .post(format!("{base}/v1/extract_facts"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await;
    let answer = match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            Some((status, body))
        }
        Err(_) => None,
    };
    record(board, &phase, |s| {
        s.extracts += 1;
        match answer {
            Some((202, body)) => match body["data"]["job_id"].as_str() {
                Some(id) => s.accepted.push(Accepted {
                    job_id: id.to_string(),
                    user,
                    conversation_id,
                    text,
                }),
                None => s.other_4xx += 1,
            },
            Some((status, _)) if status >= 500 => {
                s.extract_5xx += 1;
                s.extract_5xx_in_fault += u64::from(in_fault);
            }
            Some(_) => s.other_4xx += 1,
            None => s.extract_no_answer += 1,
        }
    });
}

async fn search(board: &Mutex<Board>, http: &reqwest::Client, base: &str, key: &str) {
    let Some((phase, in_fault, user, _)) = next(board) else {
        return;
    };
    let query = {
        let mut r = rand::rng();
        match r.random_range(0..3) {
            0 => format!(
                "Which {} does the child have?",
                ANIMALS[r.random_range(0..ANIMALS.len())]
            ),
            1 => format!(
                "Where does the child play? {}",
                PLACES[r.random_range(0..PLACES.len())]
            ),
            _ => "What are the child's pets called?".to_string(),
        }
    };
    let sent = http
        .post(format!("{base}/v1/search_facts"))
        .bearer_auth(key)
        .json(&json!({"user_id": user, "query": query}))
        .send()
        .await;
    let answer = match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            Some((status, body["data"]["degraded"] == true))
        }
        Err(_) => None,
    };
    record(board, &phase, |s| {
        s.searches += 1;
        match answer {
            Some((status, degraded)) if status < 300 => s.search_degraded += u64::from(degraded),
            Some((status, _)) if status >= 500 => {
                s.search_5xx += 1;
                s.search_5xx_in_fault += u64::from(in_fault);
            }
            Some(_) => s.other_4xx += 1,
            None => s.search_no_answer += 1,
        }
    });
}
