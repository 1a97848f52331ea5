//! Who is who: the names a user goes by, learned from what is said, and
//! queries read with those names as the user.
//!
//! A memory is searched in one user's store, so "What does Caroline like?"
//! asked of Caroline's memory is "what do I like": her name carries no
//! information there, and it only matches the other speaker's greetings
//! ("Hi Caroline!"). Names come from the extract request (`user_name`), from
//! the user introducing themself ("Mình tên là Bin", "My name is Na", "call
//! me Na") and from the other speaker addressing them at the start of a turn
//! ("Chào Bin!", "Hey Na,").

use pika_common::text::fold;
use pika_common::wire::{Message, Role};

/// Words that follow a greeting but are not names.
const NOT_NAMES: &[&str] = &[
    "there", "everyone", "guys", "all", "friend", "buddy", "again", "you", "ban", "cau", "con", "em", "chau",
    "be", "moi", "nguoi", "ca", "nha", "pika", "the", "my", "dear", "so", "girl", "boy", "man", "mate",
];

/// Names the conversation gives the user.
pub fn names_in(conversation: &[Message]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |n: String| {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&n)) {
            out.push(n);
        }
    };
    for m in conversation {
        let words: Vec<&str> = m
            .content
            .split(|c: char| c.is_whitespace() || ",.!?;:()\"".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        let folded: Vec<String> = words.iter().map(|w| fold(w)).collect();
        match m.role {
            Role::User => {
                for i in 0..words.len() {
                    let after = |n: usize| words.get(i + n).copied();
                    let f = |n: usize| folded.get(i + n).map(String::as_str).unwrap_or_default();
                    // "my name is X", "call me X", "tên (mình|con|em|tớ) là X", "(mình|con) tên (là) X"
                    let candidate = if f(0) == "my" && f(1) == "name" && f(2) == "is" {
                        after(3)
                    } else if f(0) == "call" && f(1) == "me" {
                        after(2)
                    } else if f(0) == "ten"
                        && matches!(f(1), "minh" | "con" | "em" | "to" | "toi" | "chau")
                        && f(2) == "la"
                    {
                        after(3)
                    } else if matches!(f(0), "minh" | "con" | "em" | "to" | "toi" | "chau") && f(1) == "ten" {
                        if f(2) == "la" { after(3) } else { after(2) }
                    } else {
                        None
                    };
                    if let Some(n) = candidate.filter(|n| looks_like_name(n)) {
                        push(n.to_string());
                    }
                }
            }
            Role::Assistant => {
                // "Hi Na!", "Chào Bin", "Good morning Kate," at the start of a turn.
                let start = match (
                    folded.first().map(String::as_str),
                    folded.get(1).map(String::as_str),
                ) {
                    (Some("good"), Some("morning" | "evening" | "afternoon" | "night")) => 2,
                    (Some("hi" | "hey" | "hello" | "chao" | "hiii" | "heyy" | "yo"), _) => 1,
                    _ => continue,
                };
                if let Some(n) = words.get(start)
                    && looks_like_name(n)
                    && !NOT_NAMES.contains(&fold(n).as_str())
                {
                    push(n.to_string());
                }
            }
        }
    }
    out
}

/// A capitalised word of letters, 2..30 characters.
fn looks_like_name(w: &str) -> bool {
    let n = w.chars().count();
    (2..=30).contains(&n)
        && w.chars().next().is_some_and(char::is_uppercase)
        && w.chars().all(char::is_alphabetic)
        && !NOT_NAMES.contains(&fold(w).as_str())
}

/// The query with the user's own names (and their possessive `'s`) removed.
pub fn without_names(query: &str, names: &[String]) -> String {
    if names.is_empty() {
        return query.to_string();
    }
    let lower_names: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
    let folded_names: Vec<String> = names.iter().map(|n| fold(n)).collect();
    let kept: Vec<&str> = query
        .split_whitespace()
        .filter(|w| {
            let core: String = w
                .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '’')
                .trim_end_matches("'s")
                .trim_end_matches("’s")
                .to_string();
            // Exact (any case) matches; a word typed without tone marks also
            // matches by its folded form ("Duc" for "Đức"), but a word with
            // its own marks never does ("ăn", to eat, is not the name "An").
            let lower = core.to_lowercase();
            let matches =
                lower_names.contains(&lower) || (core.is_ascii() && folded_names.contains(&fold(&core)));
            !matches
        })
        .collect();
    let out = kept.join(" ");
    if out.trim().is_empty() {
        query.to_string()
    } else {
        out
    }
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
    fn learns_names_from_introductions_and_greetings() {
        let conv = [
            m(Role::Assistant, "Chào Bin! Hôm nay thế nào?"),
            m(Role::User, "Mình tên là Bin nha"),
            m(Role::Assistant, "Hi there!"),
            m(Role::User, "my name is Na, call me Nana"),
        ];
        assert_eq!(names_in(&conv), vec!["Bin", "Na", "Nana"]);
        assert!(names_in(&[m(Role::User, "I'm tired, my name is hard")]).is_empty());
    }

    #[test]
    fn strips_the_users_names_from_queries() {
        let names = vec!["Caroline".to_string()];
        assert_eq!(
            without_names("What does Caroline like?", &names),
            "What does like?"
        );
        assert_eq!(
            without_names("What are Caroline's hobbies?", &names),
            "What are hobbies?"
        );
        assert_eq!(without_names("Caroline", &names), "Caroline");
        assert_eq!(without_names("Bin thích ăn gì?", &["Bin".into()]), "thích ăn gì?");
        assert_eq!(without_names("An thích ăn gì?", &["An".into()]), "thích ăn gì?");
        assert_eq!(without_names("Duc hoc lop may?", &["Đức".into()]), "hoc lop may?");
    }
}
