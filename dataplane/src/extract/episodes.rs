//! Episodes: what the user said, kept as said, beside the extracted facts.
//!
//! Why: an extractor keeps only what it recognises as a statement about the
//! user; "Có, tên nó là Mướp á" (the answer to "Bin có nuôi con vật nào
//! không?") or "we went to Miami for New Year" hold memories no rule
//! foresaw. An episode is one turn of the user with the turn it answers (the
//! other speaker's message just before it): the pair is embedded and indexed
//! together, so the question supplies the topic the short answer leaves out.
//!
//! A turn is the user's consecutive messages with nobody else speaking in
//! between (people on messaging apps split one thought over several
//! messages), at most `max_messages` of them and about `max_chars`
//! characters; a longer run becomes several episodes. `source_turns` lists
//! the user's messages and the answered one, in conversation order.

use super::lexicon::{concepts_in, tags_of};
use pika_common::text::looks_vietnamese;
use pika_common::wire::{Message, Role};

/// An episode before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeDraft {
    /// The user's own words (their messages joined by newlines).
    pub content: String,
    /// The message it answers, when the other speaker spoke just before.
    pub context: Option<String>,
    pub source_turns: Vec<u32>,
    pub language: String,
    pub tags: Vec<String>,
    pub entities: Vec<String>,
}

/// Episode size limits.
#[derive(Debug, Clone, Copy)]
pub struct EpisodeLimits {
    pub max_messages: usize,
    pub max_chars: usize,
}

impl Default for EpisodeLimits {
    fn default() -> Self {
        EpisodeLimits {
            max_messages: 3,
            max_chars: 1200,
        }
    }
}

/// The episodes of a conversation, in order.
pub fn episodes(conversation: &[Message], limits: EpisodeLimits) -> Vec<EpisodeDraft> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < conversation.len() {
        if conversation[i].role != Role::User || conversation[i].content.trim().is_empty() {
            i += 1;
            continue;
        }
        let answered = i.checked_sub(1).filter(|&p| {
            conversation[p].role == Role::Assistant && !conversation[p].content.trim().is_empty()
        });
        let mut turns: Vec<u32> = Vec::new();
        let mut parts: Vec<&str> = Vec::new();
        let mut chars = 0;
        while i < conversation.len()
            && conversation[i].role == Role::User
            && turns.len() < limits.max_messages.max(1)
        {
            let text = conversation[i].content.trim();
            let n = text.chars().count();
            if !parts.is_empty() && chars + n > limits.max_chars {
                break;
            }
            if !text.is_empty() {
                parts.push(text);
                turns.push(i as u32);
                chars += n;
            }
            i += 1;
        }
        let content = parts.join("\n");
        let context = answered.map(|p| conversation[p].content.trim().to_string());
        let mut source_turns = turns;
        if let Some(p) = answered {
            source_turns.insert(0, p as u32);
        }
        let topics = concepts_in(&format!("{} {}", content, context.as_deref().unwrap_or_default()));
        let mut tags: Vec<String> = Vec::new();
        let mut entities: Vec<String> = Vec::new();
        for c in topics {
            for t in tags_of(c) {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            if !entities.iter().any(|e| e == c.entity) {
                entities.push(c.entity.to_string());
            }
        }
        out.push(EpisodeDraft {
            language: if looks_vietnamese(&content) { "vi" } else { "en" }.into(),
            content,
            context,
            source_turns,
            tags,
            entities,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, s: &str) -> Message {
        Message {
            role,
            content: s.into(),
        }
    }

    #[test]
    fn an_answer_keeps_the_question_it_answers() {
        let conv = [
            m(Role::Assistant, "Bin có nuôi con vật nào không?"),
            m(Role::User, "Có, tên nó là Mướp á"),
            m(Role::Assistant, "Dễ thương quá!"),
        ];
        let e = episodes(&conv, EpisodeLimits::default());
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].content, "Có, tên nó là Mướp á");
        assert_eq!(e[0].context.as_deref(), Some("Bin có nuôi con vật nào không?"));
        assert_eq!(e[0].source_turns, vec![0, 1]);
        assert!(
            e[0].tags.iter().any(|t| t == "pet" || t == "thú cưng"),
            "{:?}",
            e[0].tags
        );
    }

    #[test]
    fn consecutive_messages_form_one_turn_within_limits() {
        let conv = [
            m(Role::User, "hi"),
            m(Role::User, "I went skiing"),
            m(Role::User, "it was fun"),
            m(Role::User, "so cold though"),
            m(Role::Assistant, "nice"),
        ];
        let e = episodes(&conv, EpisodeLimits::default());
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].source_turns, vec![0, 1, 2]);
        assert_eq!(e[0].context, None);
        assert_eq!(e[1].source_turns, vec![3]);
        let single = episodes(
            &conv,
            EpisodeLimits {
                max_messages: 1,
                max_chars: 1200,
            },
        );
        assert_eq!(single.len(), 4);
    }
}
