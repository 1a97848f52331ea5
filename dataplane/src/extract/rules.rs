//! The built-in rule extractor for Vietnamese and English child speech.
//!
//! It keeps only what the child says about themself: clauses of user turns
//! with a first-person subject ("mình", "tớ", "con", "I", "my"...), rewritten
//! in the third person ("Bé nuôi mèo tên Miu.", "The child has a dog called
//! Max."), classified by predicate, tagged with bilingual concepts and names.
//! Questions, greetings and fragments are skipped. No network, deterministic,
//! microseconds per conversation.
//!
//! Over 400 lines on purpose: the extractor's patterns are read together,
//! Vietnamese and English side by side; the lexicon, dates, names and episodes
//! are apart.

use super::lexicon::{concepts_in, is_pet, tags_of};
use crate::domain::{Candidate, Decision, Fact, Polarity};
use crate::ports::{ExtractError, Extractor};
use async_trait::async_trait;
use pika_common::text::{fold, looks_vietnamese, syllables};
use pika_common::wire::{Category, Message, Role};

/// Deterministic extractor; see the module docs.
#[derive(Debug, Default, Clone)]
pub struct RuleExtractor;

const VI_PRONOUNS: &[&str] = &["mình", "tớ", "tôi", "em", "con", "cháu", "tao"];
const EN_SUBJECTS: &[&str] = &["i", "i'm", "im", "i've", "i'd", "i'll", "my", "me"];

/// Coarse predicates; a fact and its negation share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Predicate {
    Own,
    Like,
    Experience,
    Habit,
    Learn,
    Feel,
    Identity,
    Family,
}

impl Predicate {
    fn as_str(self) -> &'static str {
        match self {
            Predicate::Own => "own",
            Predicate::Like => "like",
            Predicate::Experience => "experience",
            Predicate::Habit => "habit",
            Predicate::Learn => "learn",
            Predicate::Feel => "feel",
            Predicate::Identity => "identity",
            Predicate::Family => "family",
        }
    }
}

/// Predicate cues, checked in order (first match wins). Folded forms for Vietnamese
/// phrases are matched against the folded clause; English against the lowercase clause.
const CUES: &[(Predicate, &[&str])] = &[
    (
        Predicate::Identity,
        &[
            "tên là",
            "tên mình",
            "tuổi",
            "my name",
            "years old",
            "i am",
            "i'm",
        ],
    ),
    (
        Predicate::Own,
        &[
            "nuôi",
            "có một con",
            "có con",
            "có một",
            "have a",
            "has a",
            "have two",
            "got a",
            "own a",
            "my pet",
            "have an",
        ],
    ),
    (
        Predicate::Like,
        &[
            "thích",
            "yêu",
            "mê",
            "ghét",
            "sợ ăn",
            "like",
            "love",
            "enjoy",
            "favorite",
            "favourite",
            "hate",
            "prefer",
        ],
    ),
    (
        Predicate::Habit,
        &[
            "thường",
            "hay ",
            "mỗi ngày",
            "mỗi sáng",
            "mỗi tối",
            "hằng ngày",
            "every day",
            "usually",
            "always",
            "often",
            "every morning",
            "every night",
            "every week",
        ],
    ),
    (
        Predicate::Learn,
        &[
            "học",
            "đang tập",
            "biết đọc",
            "biết đếm",
            "learn",
            "learning",
            "study",
            "studying",
            "practice",
            "can read",
            "can count",
            "school",
        ],
    ),
    (
        Predicate::Feel,
        &[
            "vui", "buồn", "sợ", "giận", "lo", "happy", "sad", "scared", "afraid", "angry", "worried",
            "excited", "feel",
        ],
    ),
    (
        Predicate::Experience,
        &[
            "đã đi",
            "đi chơi",
            "hôm qua",
            "cuối tuần",
            "tuần trước",
            "đã",
            "went",
            "visited",
            "yesterday",
            "last week",
            "saw",
            "played",
            "ate",
            "was at",
        ],
    ),
    (
        Predicate::Family,
        &[
            "mẹ", "bố", "anh", "chị", "em gái", "em trai", "ông", "bà", "bạn", "mom", "dad", "brother",
            "sister", "friend", "grandma", "grandpa",
        ],
    ),
];

const VI_NEGATIONS: &[&str] = &[
    "không",
    "chẳng",
    "chả",
    "chưa bao giờ",
    "hết",
    "ghét",
    "không còn",
];
const EN_NEGATIONS: &[&str] = &[
    "don't",
    "dont",
    "do not",
    "doesn't",
    "not",
    "no longer",
    "never",
    "anymore",
    "didn't",
    "hate",
    "can't",
];

impl RuleExtractor {
    /// Candidates from one conversation, in turn order.
    pub fn extract_sync(&self, conversation: &[Message]) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for (turn, msg) in conversation.iter().enumerate() {
            if msg.role != Role::User {
                continue;
            }
            for clause in clauses(&msg.content) {
                if let Some(c) = analyze(&clause, turn as u32)
                    && !out.iter().any(|o| o.content == c.content)
                {
                    out.push(c);
                }
            }
        }
        out
    }
}

/// A clause of a turn and whether it was a question.
struct Clause {
    text: String,
    question: bool,
}

/// Splits a turn into sentences, and sentences into clauses where a new
/// first-person subject starts after a comma or "nhưng"/"but".
fn clauses(text: &str) -> Vec<Clause> {
    let mut out = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        if matches!(ch, '.' | '!' | '?' | ';' | '\n' | '…') {
            push_sentence(&mut out, &current, ch == '?');
            current.clear();
        } else {
            current.push(ch);
        }
    }
    push_sentence(&mut out, &current, false);
    out
}

fn push_sentence(out: &mut Vec<Clause>, sentence: &str, question: bool) {
    let mut parts: Vec<String> = vec![String::new()];
    for piece in sentence.split(',') {
        let first = piece.split_whitespace().next().unwrap_or("").to_lowercase();
        let starts_subject = is_subject(&first)
            || ((first == "nhưng" || first == "but")
                && piece
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|w| is_subject(&w.to_lowercase())));
        let last = parts.last_mut().expect("parts is never empty");
        if starts_subject && !last.trim().is_empty() {
            parts.push(piece.to_string());
        } else {
            if !last.is_empty() {
                last.push(',');
            }
            last.push_str(piece);
        }
    }
    for p in parts {
        let t = p
            .trim()
            .trim_matches(|c: char| c == ',' || c.is_whitespace())
            .to_string();
        if !t.is_empty() {
            out.push(Clause { text: t, question });
        }
    }
}

fn is_subject(word: &str) -> bool {
    VI_PRONOUNS.contains(&word) || EN_SUBJECTS.contains(&word)
}

fn contains_phrase(haystack_padded: &str, phrase: &str) -> bool {
    haystack_padded.contains(&format!(" {} ", phrase.trim()))
}

fn analyze(clause: &Clause, turn: u32) -> Option<Candidate> {
    if clause.question {
        return None;
    }
    let text = strip_interjection(&clause.text);
    let words = syllables(&text);
    if words.len() < 3 {
        return None;
    }
    let lower = format!(" {} ", text.to_lowercase().replace([',', '"'], " "));
    let vietnamese = looks_vietnamese(&text);
    let first_person = words.iter().any(|w| is_subject(w)) || lower.contains(" i ");
    if !first_person {
        return None;
    }
    let predicate = CUES
        .iter()
        .find(|(_, cues)| cues.iter().any(|c| contains_phrase(&lower, c)))
        .map(|(p, _)| *p);
    let concepts = concepts_in(&text);
    if predicate.is_none() && concepts.is_empty() {
        return None;
    }
    let negations = if vietnamese { VI_NEGATIONS } else { EN_NEGATIONS };
    let polarity = if negations.iter().any(|n| contains_phrase(&lower, n)) {
        Polarity::Negative
    } else {
        Polarity::Positive
    };
    let mut entities: Vec<String> = concepts.iter().map(|c| c.entity.to_string()).collect();
    let mut tags: Vec<String> = concepts.iter().flat_map(|c| tags_of(c)).collect();
    if let Some(name) = proper_name(&text) {
        tags.push(name.clone());
        entities.push(name);
    }
    tags.sort();
    tags.dedup();
    let has_pet = concepts.iter().any(|c| is_pet(c.entity));
    let category = match predicate {
        Some(Predicate::Own) if has_pet => Category::Relationship,
        Some(Predicate::Own) => Category::Personal,
        Some(Predicate::Like) => Category::Preference,
        Some(Predicate::Habit) => Category::Habit,
        Some(Predicate::Learn) => Category::Learning,
        Some(Predicate::Feel) => Category::Emotion,
        Some(Predicate::Experience) => Category::Experience,
        Some(Predicate::Identity) => Category::Personal,
        Some(Predicate::Family) => Category::Relationship,
        None if has_pet => Category::Relationship,
        None => Category::Other,
    };
    let content = if vietnamese {
        third_person_vi(&text)
    } else {
        third_person_en(&text)
    };
    Some(Candidate {
        content,
        occurred_at: None,
        category,
        confidence: if predicate.is_some() { 0.85 } else { 0.6 },
        entities,
        tags,
        source_turns: vec![turn],
        language: if vietnamese { "vi".into() } else { "en".into() },
        polarity,
        predicate: predicate.map(|p| p.as_str().to_string()),
    })
}

/// Drops a leading "Yes", "Ừ", "Dạ"... so the clause starts with its subject.
fn strip_interjection(text: &str) -> String {
    const INTERJECTIONS: &[&str] = &[
        "yes", "yeah", "yep", "no", "nope", "well", "oh", "um", "uh", "ừ", "ừm", "dạ", "vâng", "có", "ồ",
        "à", "ờ", "hmm",
    ];
    let mut rest = text.trim();
    loop {
        let first = rest
            .split(|c: char| c.is_whitespace() || c == ',')
            .next()
            .unwrap_or("");
        let next = rest
            .get(first.len()..)
            .unwrap_or("")
            .trim_start_matches([',', ' ']);
        if !first.is_empty()
            && INTERJECTIONS.contains(&first.to_lowercase().as_str())
            && next
                .split_whitespace()
                .next()
                .is_some_and(|w| is_subject(&w.to_lowercase()))
        {
            rest = next;
        } else {
            return rest.to_string();
        }
    }
}

/// A capitalised word after "tên", "named", "called" ("mèo tên Miu" → "Miu").
fn proper_name(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.windows(2).find_map(|w| {
        let cue = fold(w[0]);
        let name = w[1].trim_matches(|c: char| !c.is_alphanumeric());
        let capitalised = name.chars().next().is_some_and(char::is_uppercase);
        (matches!(cue.as_str(), "ten" | "named" | "called" | "la") && capitalised && name.chars().count() > 1)
            .then(|| name.to_string())
    })
}

fn finish_sentence(mut s: String) -> String {
    if let Some(first) = s.chars().next() {
        let upper: String = first.to_uppercase().collect();
        s.replace_range(..first.len_utf8(), &upper);
    }
    if !s.ends_with(['.', '!']) {
        s.push('.');
    }
    s
}

/// "Mình nuôi mèo tên Miu" → "Bé nuôi mèo tên Miu."
fn third_person_vi(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let words: Vec<&str> = text.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let bare = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        let prev = if i > 0 { fold(words[i - 1]) } else { String::new() };
        let clause_start = i == 0 || words[i - 1].ends_with(',') || prev == "nhung" || prev == "va";
        // "con" and "em" are pronouns only as a subject or after "của" ("con mèo" is not).
        let pronoun = VI_PRONOUNS.contains(&bare.as_str())
            && (clause_start || prev == "cua" || !matches!(bare.as_str(), "con" | "em"));
        if pronoun {
            let tail: String = w.chars().skip_while(|c| c.is_alphanumeric()).collect();
            out.push(format!("bé{tail}"));
        } else {
            out.push((*w).to_string());
        }
    }
    finish_sentence(out.join(" "))
}

/// "I have a dog called Max" → "The child has a dog called Max."
fn third_person_en(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let lw = w.to_lowercase();
        let lw = lw.trim_matches(|c: char| !(c.is_alphanumeric() || c == '\''));
        let tail: String = w
            .chars()
            .rev()
            .take_while(|c| !c.is_alphanumeric())
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        match lw {
            "i" => {
                out.push("the child".into());
                if let Some(next) = words.get(i + 1) {
                    let verb = next.to_lowercase();
                    let bare = verb.trim_matches(|c: char| !(c.is_alphanumeric() || c == '\''));
                    let vtail: String = next
                        .chars()
                        .rev()
                        .take_while(|c| !c.is_alphanumeric())
                        .collect::<String>()
                        .chars()
                        .rev()
                        .collect();
                    out.push(format!("{}{vtail}", third_person_verb(bare)));
                    i += 1;
                }
            }
            "i'm" | "im" => out.push(format!("the child is{tail}")),
            "i've" => out.push(format!("the child has{tail}")),
            "i'll" => out.push(format!("the child will{tail}")),
            "i'd" => out.push(format!("the child would{tail}")),
            "my" => out.push(format!("their{tail}")),
            "me" => out.push(format!("them{tail}")),
            "mine" => out.push(format!("theirs{tail}")),
            "myself" => out.push(format!("themselves{tail}")),
            _ => out.push(w.to_string()),
        }
        i += 1;
    }
    finish_sentence(out.join(" "))
}

fn third_person_verb(v: &str) -> String {
    const KEEP: &[&str] = &[
        "went",
        "was",
        "had",
        "saw",
        "got",
        "made",
        "ate",
        "can",
        "could",
        "will",
        "would",
        "should",
        "did",
        "must",
        "might",
        "may",
        "can't",
        "won't",
        "didn't",
        "wasn't",
        "really",
        "also",
        "just",
        "still",
        "never",
        "always",
        "usually",
        "often",
        "sometimes",
        "played",
        "liked",
        "loved",
    ];
    match v {
        "am" => "is".into(),
        "have" => "has".into(),
        "do" => "does".into(),
        "don't" | "dont" => "doesn't".into(),
        _ if KEEP.contains(&v) || v.ends_with("ed") || !v.chars().all(|c| c.is_ascii_alphabetic()) => {
            v.into()
        }
        _ if v.ends_with('s')
            || v.ends_with("sh")
            || v.ends_with("ch")
            || v.ends_with('x')
            || v.ends_with('o') =>
        {
            format!("{v}es")
        }
        _ if v.ends_with('y') && !v.ends_with("ay") && !v.ends_with("ey") && !v.ends_with("oy") => {
            format!("{}ies", &v[..v.len() - 1])
        }
        _ => format!("{v}s"),
    }
}

/// Rule decision: a candidate that negates (or re-affirms) an existing fact
/// with the same predicate about a shared topic replaces it.
pub fn rule_decision(candidate: &Candidate, neighbors: &[(Fact, f32)]) -> Decision {
    let shared_topic = |f: &Fact| {
        f.entities
            .iter()
            .any(|e| candidate.entities.contains(e) && !is_name(e))
    };
    neighbors
        .iter()
        .find(|(f, _)| {
            f.predicate.is_some()
                && f.predicate == candidate.predicate
                && f.polarity != candidate.polarity
                && shared_topic(f)
        })
        .map(|(f, _)| Decision::Update(f.fact_id.clone()))
        .unwrap_or(Decision::Add)
}

fn is_name(entity: &str) -> bool {
    entity.chars().next().is_some_and(char::is_uppercase)
}

#[async_trait]
impl Extractor for RuleExtractor {
    fn name(&self) -> &str {
        "rules"
    }

    async fn extract(&self, conversation: &[Message]) -> Result<Vec<Candidate>, ExtractError> {
        Ok(self.extract_sync(conversation))
    }

    async fn decide(
        &self,
        candidate: &Candidate,
        neighbors: &[(Fact, f32)],
    ) -> Result<Decision, ExtractError> {
        Ok(rule_decision(candidate, neighbors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(t: &str) -> Message {
        Message {
            role: Role::User,
            content: t.into(),
        }
    }

    fn assistant(t: &str) -> Message {
        Message {
            role: Role::Assistant,
            content: t.into(),
        }
    }

    #[test]
    fn vietnamese_pet_and_hobbies() {
        let c = RuleExtractor.extract_sync(&[
            assistant("Chào cậu! Cậu có nuôi con vật nào không?"),
            user("Mình nuôi mèo tên Miu. Mình thích chơi xích đu và leo cây."),
        ]);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].content, "Bé nuôi mèo tên Miu.");
        assert_eq!(c[0].category, Category::Relationship);
        assert!(c[0].tags.contains(&"thú cưng".to_string()));
        assert!(c[0].entities.contains(&"Miu".to_string()));
        assert_eq!(c[0].source_turns, vec![1]);
        assert_eq!(c[1].content, "Bé thích chơi xích đu và leo cây.");
        assert_eq!(c[1].category, Category::Preference);
    }

    #[test]
    fn english_answer_after_interjection() {
        let c = RuleExtractor.extract_sync(&[
            assistant("Do you have a pet?"),
            user("Yes! I have a dog called Max."),
        ]);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].content, "The child has a dog called Max.");
        assert_eq!(c[0].language, "en");
        assert!(c[0].tags.contains(&"pet".to_string()));
    }

    #[test]
    fn negation_splits_and_contradicts() {
        let c = RuleExtractor.extract_sync(&[
            assistant("Miu khoẻ không?"),
            user("Mình không nuôi mèo nữa, mình nuôi chó"),
        ]);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].content, "Bé không nuôi mèo nữa.");
        assert_eq!(c[0].polarity, Polarity::Negative);
        assert_eq!(c[1].content, "Bé nuôi chó.");
        assert_eq!(c[1].polarity, Polarity::Positive);
    }

    #[test]
    fn skips_questions_and_assistant_turns() {
        let c = RuleExtractor.extract_sync(&[user("Cậu thích gì?"), assistant("Mình thích mèo")]);
        assert!(c.is_empty(), "{c:?}");
    }
}
