//! Extraction and consolidation decisions by an OpenAI-compatible chat model
//! (chat completions with a JSON-schema response format), via async-openai.
//!
//! The reply is checked strictly: an unparsable reply, a missing field, an
//! unknown category, a confidence outside 0..1 or a source turn that is not a
//! user turn rejects the whole reply with a clear error, and the job is
//! retried. Facts are never silently dropped or invented.
//!
//! Over 400 lines on purpose: a third of it is the tests' local OpenAI-wire
//! servers (a scripted reply, an always-503 one), kept beside the client they
//! check.

use crate::domain::{Candidate, Decision, Fact, Polarity};
use crate::ports::{ExtractError, Extractor};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequestArgs, ResponseFormat, ResponseFormatJsonSchema,
};
use async_trait::async_trait;
use pika_common::text::looks_vietnamese;
use pika_common::wire::{Category, Message, Role};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// Connection settings of the model.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub timeout: Duration,
}

/// The language-model extractor.
pub struct LlmExtractor {
    client: Client<OpenAIConfig>,
    model: String,
}

const EXTRACT_PROMPT: &str = "You extract long-term memory facts about a child from a conversation between \
the child (role user) and a robot companion (role assistant). Return only facts the child states about \
themself: preferences, experiences, habits, emotions, relationships (family, friends, pets), learning \
progress and personal details. Write each fact as a short third-person sentence in the language the child \
used (Vietnamese: start with \"Bé\"; English: start with \"The child\"). Give entities (people, pets, \
things, activities), bilingual topic tags in Vietnamese and English (e.g. a cat gives \"mèo\", \"cat\", \
\"thú cưng\", \"pet\"), the indices of the user turns each fact comes from, polarity negative when the \
child says something is no longer or not true, and a confidence from 0 to 1. Return an empty list when \
there is nothing to remember.";

const DECIDE_PROMPT: &str = "You maintain a child's memory. Given a new fact and similar existing facts, \
answer ADD if the new fact is new information, UPDATE with the id of the existing fact it corrects or \
replaces, DELETE with the id of the existing fact it shows is no longer true (when the new fact adds nothing \
else), or NONE with the id of the existing fact that already says the same.";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtractReply {
    facts: Vec<ReplyFact>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyFact {
    content: String,
    category: String,
    confidence: f32,
    entities: Vec<String>,
    tags: Vec<String>,
    source_turns: Vec<u32>,
    polarity: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideReply {
    decision: String,
    fact_id: Option<String>,
}

fn extract_schema() -> serde_json::Value {
    let cats: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["facts"],
        "properties": {"facts": {"type": "array", "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["content", "category", "confidence", "entities", "tags", "source_turns", "polarity"],
            "properties": {
                "content": {"type": "string"},
                "category": {"type": "string", "enum": cats},
                "confidence": {"type": "number"},
                "entities": {"type": "array", "items": {"type": "string"}},
                "tags": {"type": "array", "items": {"type": "string"}},
                "source_turns": {"type": "array", "items": {"type": "integer"}},
                "polarity": {"type": "string", "enum": ["positive", "negative"]}
            }
        }}}
    })
}

fn decide_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["decision", "fact_id"],
        "properties": {
            "decision": {"type": "string", "enum": ["ADD", "UPDATE", "DELETE", "NONE"]},
            "fact_id": {"type": ["string", "null"]}
        }
    })
}

fn classify(e: OpenAIError) -> ExtractError {
    match e {
        OpenAIError::JSONDeserialize(e, body) => ExtractError::BadReply(format!(
            "response is not a chat completion ({e}); body starts {:?}",
            body.chars().take(200).collect::<String>()
        )),
        other => ExtractError::Unavailable(other.to_string()),
    }
}

impl LlmExtractor {
    pub fn new(opts: LlmOptions) -> Result<Self, ExtractError> {
        // One request per call: retries are the job's (bounded, with backoff).
        let client = pika_embed::openai_client(&opts.base_url, &opts.api_key, opts.timeout)
            .map_err(|e| ExtractError::Unavailable(e.to_string()))?;
        Ok(LlmExtractor {
            client,
            model: opts.model,
        })
    }

    async fn ask(
        &self,
        system: &str,
        user: String,
        name: &str,
        schema: serde_json::Value,
    ) -> Result<String, ExtractError> {
        let messages: Vec<ChatCompletionRequestMessage> = vec![
            ChatCompletionRequestSystemMessage::from(system.to_string()).into(),
            ChatCompletionRequestUserMessage::from(user.as_str()).into(),
        ];
        let request = CreateChatCompletionRequestArgs::default()
            .model(&self.model)
            .messages(messages)
            .temperature(0.0)
            .response_format(ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: None,
                    name: name.to_string(),
                    schema: Some(schema),
                    strict: Some(true),
                },
            })
            .build()
            .map_err(|e| ExtractError::BadReply(e.to_string()))?;
        let reply = self.client.chat().create(request).await.map_err(classify)?;
        let choice = reply
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ExtractError::BadReply("reply has no choices".into()))?;
        if let Some(refusal) = choice.message.refusal {
            return Err(ExtractError::BadReply(format!("model refused: {refusal}")));
        }
        choice
            .message
            .content
            .ok_or_else(|| ExtractError::BadReply("reply has no content".into()))
    }
}

/// Checks a parsed extraction reply against the conversation.
fn check_reply(reply: ExtractReply, conversation: &[Message]) -> Result<Vec<Candidate>, ExtractError> {
    let mut out = Vec::with_capacity(reply.facts.len());
    for (i, f) in reply.facts.into_iter().enumerate() {
        let bad = |why: String| ExtractError::BadReply(format!("facts[{i}]: {why}"));
        let content = f.content.trim().to_string();
        if content.is_empty() || content.chars().count() > 2000 {
            return Err(bad("content must be 1..2000 characters".into()));
        }
        let category =
            Category::parse(&f.category).ok_or_else(|| bad(format!("unknown category {:?}", f.category)))?;
        if !(0.0..=1.0).contains(&f.confidence) || !f.confidence.is_finite() {
            return Err(bad(format!("confidence {} outside 0..1", f.confidence)));
        }
        if f.source_turns.is_empty() {
            return Err(bad("source_turns is empty".into()));
        }
        for t in &f.source_turns {
            match conversation.get(*t as usize) {
                Some(m) if m.role == Role::User => {}
                _ => {
                    return Err(bad(format!(
                        "source turn {t} is not a user turn of this conversation"
                    )));
                }
            }
        }
        let polarity = match f.polarity.as_str() {
            "positive" => Polarity::Positive,
            "negative" => Polarity::Negative,
            other => return Err(bad(format!("unknown polarity {other:?}"))),
        };
        let language = if looks_vietnamese(&content) { "vi" } else { "en" };
        out.push(Candidate {
            content,
            occurred_at: None,
            category,
            confidence: f.confidence,
            entities: f.entities,
            tags: f.tags,
            source_turns: f.source_turns,
            language: language.into(),
            polarity,
            predicate: None,
        });
    }
    Ok(out)
}

#[async_trait]
impl Extractor for LlmExtractor {
    fn name(&self) -> &str {
        "llm"
    }

    async fn extract(&self, conversation: &[Message]) -> Result<Vec<Candidate>, ExtractError> {
        let turns: Vec<serde_json::Value> = conversation
            .iter()
            .enumerate()
            .map(|(i, m)| json!({"turn": i, "role": m.role, "content": m.content}))
            .collect();
        let text = self
            .ask(
                EXTRACT_PROMPT,
                json!({ "conversation": turns }).to_string(),
                "facts",
                extract_schema(),
            )
            .await?;
        let reply: ExtractReply = serde_json::from_str(&text)
            .map_err(|e| ExtractError::BadReply(format!("content is not the requested JSON ({e})")))?;
        check_reply(reply, conversation)
    }

    async fn decide(
        &self,
        candidate: &Candidate,
        neighbors: &[(Fact, f32)],
    ) -> Result<Decision, ExtractError> {
        if neighbors.is_empty() {
            return Ok(Decision::Add);
        }
        let existing: Vec<serde_json::Value> = neighbors
            .iter()
            .map(|(f, s)| json!({"fact_id": f.fact_id, "content": f.content, "similarity": s}))
            .collect();
        let input = json!({"new_fact": candidate.content, "existing_facts": existing}).to_string();
        let text = self
            .ask(DECIDE_PROMPT, input, "decision", decide_schema())
            .await?;
        let reply: DecideReply = serde_json::from_str(&text)
            .map_err(|e| ExtractError::BadReply(format!("decision is not the requested JSON ({e})")))?;
        let target = || -> Result<String, ExtractError> {
            let id = reply
                .fact_id
                .clone()
                .ok_or_else(|| ExtractError::BadReply(format!("{} without fact_id", reply.decision)))?;
            if neighbors.iter().any(|(f, _)| f.fact_id == id) {
                Ok(id)
            } else {
                Err(ExtractError::BadReply(format!(
                    "decision names unknown fact {id}"
                )))
            }
        };
        match reply.decision.as_str() {
            "ADD" => Ok(Decision::Add),
            "UPDATE" => Ok(Decision::Update(target()?)),
            "DELETE" => Ok(Decision::Delete(target()?)),
            "NONE" => Ok(Decision::Keep(target()?)),
            other => Err(ExtractError::BadReply(format!("unknown decision {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo() -> Vec<Message> {
        vec![
            Message {
                role: Role::Assistant,
                content: "Do you have a pet?".into(),
            },
            Message {
                role: Role::User,
                content: "I have a dog called Max".into(),
            },
        ]
    }

    fn reply(v: serde_json::Value) -> Result<Vec<Candidate>, ExtractError> {
        check_reply(
            serde_json::from_value(v).map_err(|e| ExtractError::BadReply(e.to_string()))?,
            &convo(),
        )
    }

    #[test]
    fn accepts_a_complete_reply() {
        let c = reply(json!({"facts": [{"content": "The child has a dog called Max", "category": "relationship",
            "confidence": 0.9, "entities": ["Max"], "tags": ["dog", "pet"], "source_turns": [1], "polarity": "positive"}]}))
        .expect("valid");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].language, "en");
    }

    #[test]
    fn rejects_partial_or_invented_facts() {
        // missing field
        assert!(reply(json!({"facts": [{"content": "x", "category": "habit"}]})).is_err());
        // assistant turn as source
        assert!(
            reply(
                json!({"facts": [{"content": "x", "category": "habit", "confidence": 0.5, "entities": [],
            "tags": [], "source_turns": [0], "polarity": "positive"}]})
            )
            .is_err()
        );
        // bad category
        assert!(
            reply(
                json!({"facts": [{"content": "x", "category": "pets", "confidence": 0.5, "entities": [],
            "tags": [], "source_turns": [1], "polarity": "positive"}]})
            )
            .is_err()
        );
    }

    /// A server that answers every request with 503 and counts the requests.
    async fn overloaded_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    // One request per connection: headers, then a content-length body.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break;
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let reply = "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
                                 content-type: text/plain\r\ncontent-length: 10\r\n\r\noverloaded";
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        (format!("http://{addr}/v1"), hits)
    }

    #[tokio::test]
    async fn a_server_error_is_one_request_and_left_to_the_job() {
        let (base_url, hits) = overloaded_server().await;
        let llm = LlmExtractor::new(LlmOptions {
            base_url,
            api_key: "sk-test".into(),
            model: "test-chat".into(),
            timeout: Duration::from_secs(5),
        })
        .expect("extractor");
        // async-openai's own retry would keep going for minutes.
        let result = tokio::time::timeout(Duration::from_secs(10), llm.extract(&convo()))
            .await
            .expect("fails fast, no internal retries");
        match result {
            Err(ExtractError::Unavailable(m)) => assert!(m.contains("overloaded"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "exactly one request"
        );
    }
}
