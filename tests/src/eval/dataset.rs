//! LOCOMO-format conversations with labelled questions, read as the evaluation
//! needs them.
//!
//! Accepted shapes: REALTALK files (top-level `name {speaker_1, speaker_2}`,
//! `session_N`, `session_N_date_time`, `qa`, turns with `clean_text`), LOCOMO
//! files (a list of samples, each with `conversation {speaker_a, speaker_b,
//! session_N, ...}` and `qa`, turns with `text`), and this repository's child
//! set (REALTALK's shape, turns with `text`, questions with `tags`). Questions
//! without evidence, or whose evidence names no known turn (LOCOMO's
//! adversarial category), are dropped and counted.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// One turn of a session.
#[derive(Debug, Clone)]
pub struct Turn {
    pub dia_id: String,
    pub speaker: String,
    pub text: String,
}

/// One session: turns in order and when it happened.
#[derive(Debug, Clone)]
pub struct Session {
    pub number: u32,
    pub date: Option<DateTime<Utc>>,
    pub turns: Vec<Turn>,
}

/// A labelled question.
#[derive(Debug, Clone)]
pub struct Question {
    pub question: String,
    pub evidence: Vec<String>,
    pub category: String,
    pub tags: Vec<String>,
    /// The speaker whose memory the question is searched in.
    pub subject: String,
}

/// One multi-session conversation between two speakers.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Short stable id (from the file name and sample index).
    pub id: String,
    pub speakers: Vec<String>,
    pub sessions: Vec<Session>,
    pub questions: Vec<Question>,
    /// Questions dropped because their evidence is empty or unknown.
    pub dropped_questions: usize,
}

impl Sample {
    pub fn turn_count(&self) -> usize {
        self.sessions.iter().map(|s| s.turns.len()).sum()
    }
}

/// Reads every sample of a file (a REALTALK/child object or a LOCOMO list).
pub fn load_file(path: &Path) -> Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("sample")
        .to_string();
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = v
                    .get("sample_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{stem}-{i}"));
                parse_sample(&id, v).with_context(|| format!("{} sample {i}", path.display()))
            })
            .collect(),
        v @ Value::Object(_) => Ok(vec![
            parse_sample(&stem, &v).with_context(|| path.display().to_string())?,
        ]),
        _ => bail!("{}: expected a JSON object or array", path.display()),
    }
}

/// Reads files and folders (every `*.json` inside, sorted) in the order given.
pub fn load_paths(paths: &[std::path::PathBuf]) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(p)
                .with_context(|| format!("listing {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort_by_key(|f| natural_key(&f.to_string_lossy()));
            for f in files {
                out.extend(load_file(&f)?);
            }
        } else {
            out.extend(load_file(p)?);
        }
    }
    Ok(out)
}

/// Sort key that orders `Chat_2` before `Chat_10`.
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((std::mem::take(&mut text), num.parse().unwrap_or(0)));
                num.clear();
            }
            text.push(c);
        }
    }
    out.push((text, num.parse().unwrap_or(0)));
    out
}

fn parse_sample(id: &str, v: &Value) -> Result<Sample> {
    // LOCOMO nests the sessions under `conversation`; REALTALK keeps them on top.
    let conv = v.get("conversation").unwrap_or(v);
    let mut speakers: Vec<String> = Vec::new();
    if let Some(names) = v.get("name").and_then(Value::as_object) {
        for key in ["speaker_1", "speaker_2"] {
            if let Some(n) = names.get(key).and_then(Value::as_str) {
                speakers.push(n.to_string());
            }
        }
    }
    for key in ["speaker_a", "speaker_b"] {
        if let Some(n) = conv.get(key).and_then(Value::as_str)
            && !speakers.iter().any(|s| s == n)
        {
            speakers.push(n.to_string());
        }
    }
    let obj = conv.as_object().context("conversation is not an object")?;
    let mut sessions = Vec::new();
    for (key, turns) in obj {
        let Some(n) = key.strip_prefix("session_").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Some(list) = turns.as_array() else { continue };
        let date = obj
            .get(&format!("session_{n}_date_time"))
            .and_then(Value::as_str)
            .and_then(parse_date);
        let mut parsed = Vec::with_capacity(list.len());
        for t in list {
            let dia_id = t.get("dia_id").and_then(Value::as_str).unwrap_or_default();
            let speaker = t.get("speaker").and_then(Value::as_str).unwrap_or_default();
            let text = t
                .get("clean_text")
                .or_else(|| t.get("text"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if dia_id.is_empty() || speaker.is_empty() {
                continue;
            }
            if !speakers.iter().any(|s| s == speaker) {
                speakers.push(speaker.to_string());
            }
            parsed.push(Turn {
                dia_id: dia_id.to_string(),
                speaker: speaker.to_string(),
                text: text.to_string(),
            });
        }
        sessions.push(Session {
            number: n,
            date,
            turns: parsed,
        });
    }
    sessions.sort_by_key(|s| s.number);
    if sessions.is_empty() {
        bail!("no sessions");
    }

    let speaker_of: HashMap<&str, &str> = sessions
        .iter()
        .flat_map(|s| &s.turns)
        .map(|t| (t.dia_id.as_str(), t.speaker.as_str()))
        .collect();
    let mut questions = Vec::new();
    let mut dropped = 0;
    for q in v.get("qa").and_then(Value::as_array).into_iter().flatten() {
        let question = q.get("question").and_then(Value::as_str).unwrap_or_default();
        let evidence: Vec<String> = q
            .get("evidence")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            // LOCOMO sometimes writes "D1:3; D1:4" in one string.
            .flat_map(|s| s.split([';', ',']).map(str::trim).map(str::to_string))
            .filter(|s| speaker_of.contains_key(s.as_str()))
            .collect();
        if question.trim().is_empty() || evidence.is_empty() {
            dropped += 1;
            continue;
        }
        let category = match q.get("category") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => "none".into(),
        };
        let tags = q
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let subject = subject_of(question, &evidence, &speaker_of, &speakers);
        questions.push(Question {
            question: question.chars().take(500).collect(),
            evidence,
            category,
            tags,
            subject,
        });
    }
    Ok(Sample {
        id: id.to_string(),
        speakers,
        sessions,
        questions,
        dropped_questions: dropped,
    })
}

/// The person a question asks about: the speaker of most of its evidence
/// turns; on a tie, the one the question names; else the first of the tie.
fn subject_of(
    question: &str,
    evidence: &[String],
    speaker_of: &HashMap<&str, &str>,
    speakers: &[String],
) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for e in evidence {
        if let Some(s) = speaker_of.get(e.as_str()) {
            match counts.iter_mut().find(|(n, _)| n == s) {
                Some((_, c)) => *c += 1,
                None => counts.push((s.to_string(), 1)),
            }
        }
    }
    let best = counts.iter().map(|(_, c)| *c).max().unwrap_or(0);
    let tied: Vec<&String> = counts
        .iter()
        .filter(|(_, c)| *c == best)
        .map(|(n, _)| n)
        .collect();
    let lower = question.to_lowercase();
    tied.iter()
        .find(|n| lower.contains(&n.to_lowercase()))
        .or(tied.first())
        .map(|s| s.to_string())
        .or_else(|| speakers.first().cloned())
        .unwrap_or_default()
}

/// Session dates as the data sets write them: RFC 3339, REALTALK's
/// `29.12.2023, 22:42:04`, LOCOMO's `1:56 pm on 8 May, 2023`, `2023-05-08 13:56`.
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%d.%m.%Y, %H:%M:%S",
        "%d.%m.%Y %H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    let lower = s.to_lowercase();
    if let Ok(t) = NaiveDateTime::parse_from_str(&lower, "%I:%M %p on %d %B, %Y") {
        return Some(Utc.from_utc_datetime(&t));
    }
    for f in ["%Y-%m-%d", "%d %B, %Y", "%d %B %Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(&lower, f) {
            return d.and_hms_opt(12, 0, 0).map(|t| Utc.from_utc_datetime(&t));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_shape() {
        let want = |s: &str| parse_date(s).map(|d| d.format("%Y-%m-%d %H:%M").to_string());
        assert_eq!(want("29.12.2023, 22:42:04").as_deref(), Some("2023-12-29 22:42"));
        assert_eq!(
            want("1:56 pm on 8 May, 2023").as_deref(),
            Some("2023-05-08 13:56")
        );
        assert_eq!(
            want("2026-09-05T18:30:00+07:00").as_deref(),
            Some("2026-09-05 11:30")
        );
        assert_eq!(want("nonsense"), None);
    }

    #[test]
    fn realtalk_shape_and_subject_by_evidence() {
        let v = serde_json::json!({
            "name": {"speaker_1": "Emi", "speaker_2": "elise"},
            "session_1_date_time": "29.12.2023, 22:42:04",
            "session_1": [
                {"clean_text": "Hey", "speaker": "Emi", "dia_id": "D1:1"},
                {"clean_text": "I ski", "speaker": "elise", "dia_id": "D1:2"},
                {"clean_text": "I cook", "speaker": "Emi", "dia_id": "D1:3"}
            ],
            "qa": [
                {"question": "What are Kate's hobbies?", "evidence": ["D1:3"], "category": 1},
                {"question": "Both?", "evidence": ["D1:2", "D1:3"], "category": 1},
                {"question": "None", "evidence": [], "category": 5}
            ]
        });
        let s = parse_sample("c1", &v).expect("parses");
        assert_eq!(s.speakers, vec!["Emi", "elise"]);
        assert_eq!(s.turn_count(), 3);
        assert_eq!(s.questions.len(), 2);
        assert_eq!(s.dropped_questions, 1);
        assert_eq!(s.questions[0].subject, "Emi");
        assert_eq!(s.questions[1].subject, "elise");
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["Chat_10_a", "Chat_2_b", "Chat_1_c"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, vec!["Chat_1_c", "Chat_2_b", "Chat_10_a"]);
    }
}
