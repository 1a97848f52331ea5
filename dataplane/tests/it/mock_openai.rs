//! A local HTTP server speaking the OpenAI wire format (chat completions and
//! embeddings), scripted per test: what it answers and how slowly.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the next chat completions answer.
#[derive(Clone, Debug)]
pub enum ChatReply {
    /// `content` of the assistant message, verbatim.
    Content(String),
    /// A non-JSON HTTP body with status 200.
    Garbage(String),
    /// An HTTP error status.
    Status(u16),
    /// `content` chosen by the requested JSON schema's name (`response_format.json_schema.name`),
    /// e.g. one reply for extraction and another for the decision step.
    BySchema(Vec<(String, String)>),
}

#[derive(Clone)]
pub struct Mock {
    inner: Arc<Mutex<MockState>>,
}

struct MockState {
    chat: ChatReply,
    delay: Duration,
    chat_calls: usize,
    embedding_calls: usize,
    last_request: Option<Value>,
}

impl Mock {
    /// Starts the server; returns it and its base URL (`http://127.0.0.1:PORT/v1`).
    pub async fn start(chat: ChatReply) -> (Mock, String) {
        let mock = Mock {
            inner: Arc::new(Mutex::new(MockState {
                chat,
                delay: Duration::ZERO,
                chat_calls: 0,
                embedding_calls: 0,
                last_request: None,
            })),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/embeddings", post(embeddings))
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (mock, format!("http://{addr}/v1"))
    }

    pub fn set_chat(&self, reply: ChatReply) {
        self.inner.lock().expect("lock").chat = reply;
    }

    pub fn set_delay(&self, d: Duration) {
        self.inner.lock().expect("lock").delay = d;
    }

    pub fn chat_calls(&self) -> usize {
        self.inner.lock().expect("lock").chat_calls
    }

    pub fn embedding_calls(&self) -> usize {
        self.inner.lock().expect("lock").embedding_calls
    }

    pub fn last_request(&self) -> Option<Value> {
        self.inner.lock().expect("lock").last_request.clone()
    }
}

async fn chat_completions(State(mock): State<Mock>, Json(req): Json<Value>) -> Response {
    let (reply, delay) = {
        let mut s = mock.inner.lock().expect("lock");
        s.chat_calls += 1;
        s.last_request = Some(req.clone());
        (s.chat.clone(), s.delay)
    };
    tokio::time::sleep(delay).await;
    let reply = match reply {
        ChatReply::BySchema(options) => {
            let name = req["response_format"]["json_schema"]["name"]
                .as_str()
                .unwrap_or_default();
            options
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| ChatReply::Content(c))
                .unwrap_or(ChatReply::Status(400))
        }
        other => other,
    };
    match reply {
        ChatReply::BySchema(_) => StatusCode::BAD_REQUEST.into_response(),
        ChatReply::Content(content) => Json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_700_000_000u32,
            "model": req["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
        }))
        .into_response(),
        ChatReply::Garbage(text) => (StatusCode::OK, text).into_response(),
        ChatReply::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({"error": {"message": "scripted failure", "type": "server_error", "param": null, "code": null}})),
        )
            .into_response(),
    }
}

/// Deterministic 8-dimensional embeddings: bag of hashed words, so equal texts
/// get equal vectors and texts sharing words are close.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; 8];
    for w in text
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = w
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        v[(h % 8) as usize] += 1.0;
    }
    v
}

async fn embeddings(State(mock): State<Mock>, Json(req): Json<Value>) -> Response {
    mock.inner.lock().expect("lock").embedding_calls += 1;
    let inputs: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(t)}))
        .collect();
    Json(json!({"object": "list", "data": data, "model": req["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
        .into_response()
}
