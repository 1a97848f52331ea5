//! Relative dates in Vietnamese and English child speech, resolved against
//! when the conversation happened ("hôm qua" said on 2026-09-13 is
//! 2026-09-12), and questions that ask "when".
//!
//! Matching is on folded text (no diacritics, lowercase), so "hom qua" typed
//! without tone marks resolves like "hôm qua". Phrases are checked longest
//! first ("thứ bảy tuần trước" before "tuần trước"). Dates are calendar days
//! in the conversation's own UTC offset, returned as local noon: noon keeps
//! the same calendar day in UTC for every offset from −11 to +11 hours.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc, Weekday};
use pika_common::text::fold;

/// A day (or the first day of a span: "last week", "last weekend") that a
/// text refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedDate {
    pub day: NaiveDate,
    /// Days covered (1 for a day, 2 for a weekend, 7 for a week).
    pub span_days: u32,
}

impl ResolvedDate {
    /// Local noon of the day, as an instant.
    pub fn at_noon(&self, offset: FixedOffset) -> DateTime<Utc> {
        let noon = self.day.and_hms_opt(12, 0, 0).unwrap_or_default();
        offset
            .from_local_datetime(&noon)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&noon))
    }
}

const WEEKDAYS: &[(&[&str], Weekday)] = &[
    (&["thu hai", "monday"], Weekday::Mon),
    (&["thu ba", "tuesday"], Weekday::Tue),
    (&["thu tu", "wednesday"], Weekday::Wed),
    (&["thu nam", "thursday"], Weekday::Thu),
    (&["thu sau", "friday"], Weekday::Fri),
    (&["thu bay", "saturday"], Weekday::Sat),
    (&["chu nhat", "sunday"], Weekday::Sun),
];

const NUMBERS: &[(&str, i64)] = &[
    ("mot", 1),
    ("hai", 2),
    ("ba", 3),
    ("bon", 4),
    ("tu", 4),
    ("nam", 5),
    ("sau", 6),
    ("bay", 7),
    ("tam", 8),
    ("chin", 9),
    ("muoi", 10),
    ("a", 1),
    ("an", 1),
    ("one", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("a couple of", 2),
    ("a few", 3),
    ("few", 3),
];

/// Fixed phrases: (folded phrase, days back, span). Longest first within a meaning.
const PHRASES: &[(&str, i64, u32)] = &[
    ("the day before yesterday", 2, 1),
    ("hom kia", 2, 1),
    ("bua kia", 2, 1),
    ("hom qua", 1, 1),
    ("bua qua", 1, 1),
    ("toi qua", 1, 1),
    ("dem qua", 1, 1),
    ("chieu qua", 1, 1),
    ("sang qua", 1, 1),
    ("yesterday", 1, 1),
    ("last night", 1, 1),
    ("hom nay", 0, 1),
    ("bua nay", 0, 1),
    ("sang nay", 0, 1),
    ("chieu nay", 0, 1),
    ("toi nay", 0, 1),
    ("today", 0, 1),
    ("tonight", 0, 1),
    ("this morning", 0, 1),
    ("this afternoon", 0, 1),
    ("ngay mai", -1, 1),
    ("tomorrow", -1, 1),
];

/// The first relative date the text names, resolved against `reference`
/// (the conversation's time, in its own offset). `None` when it names none.
pub fn resolve(text: &str, reference: DateTime<FixedOffset>) -> Option<ResolvedDate> {
    let t = format!(" {} ", normalize(text));
    let today = reference.date_naive();
    let day = |back: i64, span: u32| ResolvedDate {
        day: today - Duration::days(back),
        span_days: span,
    };
    // "thứ bảy tuần trước", "last saturday", "on saturday" (the most recent one).
    for (names, wd) in WEEKDAYS {
        for name in *names {
            let padded = format!(" {name} ");
            if let Some(at) = t.find(&padded) {
                let after = &t[at + padded.len() - 1..];
                let before = &t[..at + 1];
                let last_week = after.starts_with(" tuan truoc")
                    || after.starts_with(" tuan roi")
                    || before.ends_with(" last ");
                let next = after.starts_with(" tuan sau") || before.ends_with(" next ");
                let mut back = (today.weekday().num_days_from_monday() as i64
                    - wd.num_days_from_monday() as i64)
                    .rem_euclid(7);
                if next {
                    let fwd = (7 - back) % 7;
                    return Some(day(-(if fwd == 0 { 7 } else { fwd }), 1));
                }
                if back == 0 && last_week {
                    back = 7;
                } else if last_week && back < 7 && !before.ends_with(" last ") {
                    // "thứ bảy tuần trước": the Saturday of the previous calendar week.
                    let monday_this_week = today.weekday().num_days_from_monday() as i64;
                    back = monday_this_week + 7 - wd.num_days_from_monday() as i64;
                }
                return Some(day(back, 1));
            }
        }
    }
    for (phrase, back, span) in PHRASES {
        if t.contains(&format!(" {phrase} ")) {
            return Some(day(*back, *span));
        }
    }
    // Weekends before weeks: "cuối tuần trước" contains "tuần trước".
    let weekend_back = || {
        // The Saturday before today (a Saturday/Sunday today means the previous weekend).
        let since_sat = (today.weekday().num_days_from_monday() as i64 - 5).rem_euclid(7);
        if since_sat <= 1 { since_sat + 7 } else { since_sat }
    };
    for p in [
        "cuoi tuan truoc",
        "cuoi tuan roi",
        "last weekend",
        "this past weekend",
    ] {
        if t.contains(&format!(" {p} ")) {
            return Some(day(weekend_back(), 2));
        }
    }
    for p in [
        "tuan truoc",
        "tuan roi",
        "last week",
        "a week ago",
        "mot tuan truoc",
    ] {
        if t.contains(&format!(" {p} ")) {
            return Some(day(7, 7));
        }
    }
    for p in ["thang truoc", "thang roi", "last month", "a month ago"] {
        if t.contains(&format!(" {p} ")) {
            return Some(day(30, 30));
        }
    }
    for p in ["nam ngoai", "nam truoc", "nam roi", "last year", "a year ago"] {
        if t.contains(&format!(" {p} ")) {
            return Some(day(365, 365));
        }
    }
    // "2 ngày trước", "hai hôm trước", "two days ago", "3 weeks ago".
    let words: Vec<&str> = t.split_whitespace().collect();
    for i in 0..words.len() {
        let (n, used) = match number_at(&words, i) {
            Some(x) => x,
            None => continue,
        };
        let unit = words.get(i + used).copied().unwrap_or_default();
        let next = words.get(i + used + 1).copied().unwrap_or_default();
        let vi_ago = matches!(next, "truoc" | "roi");
        let en_ago = next == "ago";
        let days = match unit {
            "ngay" | "hom" | "bua" if vi_ago => n,
            "day" | "days" if en_ago => n,
            "tuan" if vi_ago => n * 7,
            "week" | "weeks" if en_ago => n * 7,
            "thang" if vi_ago => n * 30,
            "month" | "months" if en_ago => n * 30,
            _ => continue,
        };
        if (1..=3650).contains(&days) {
            return Some(day(days, 1));
        }
    }
    None
}

fn number_at(words: &[&str], i: usize) -> Option<(i64, usize)> {
    if let Ok(n) = words[i].parse::<i64>() {
        return Some((n, 1));
    }
    for (w, n) in NUMBERS {
        let parts: Vec<&str> = w.split(' ').collect();
        if words.len() >= i + parts.len() && words[i..i + parts.len()] == parts[..] {
            return Some((*n, parts.len()));
        }
    }
    None
}

/// Folded, lowercase, punctuation as spaces.
fn normalize(text: &str) -> String {
    fold(text)
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when a question asks when something happened.
pub fn asks_when(query: &str) -> bool {
    let t = format!(" {} ", normalize(query));
    [
        " khi nao ",
        " hoi nao ",
        " bao gio ",
        " luc nao ",
        " ngay nao ",
        " hom nao ",
        " thang nao ",
        " nam nao ",
        " when ",
        " what date ",
        " what day ",
        " which day ",
        " what time ",
        " how long ago ",
        " what month ",
        " what year ",
    ]
    .iter()
    .any(|p| t.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sunday 13 September 2026, 18:30 in Vietnam.
    fn sunday() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-09-13T18:30:00+07:00").expect("date")
    }

    fn on(text: &str) -> Option<String> {
        resolve(text, sunday()).map(|d| d.day.to_string())
    }

    #[test]
    fn vietnamese_relative_days() {
        assert_eq!(on("Hôm qua con đi sở thú").as_deref(), Some("2026-09-12"));
        assert_eq!(on("hom qua con di so thu").as_deref(), Some("2026-09-12"));
        assert_eq!(on("hôm kia con bị ốm").as_deref(), Some("2026-09-11"));
        assert_eq!(on("2 ngày trước con đi bơi").as_deref(), Some("2026-09-11"));
        assert_eq!(on("hai hôm trước").as_deref(), Some("2026-09-11"));
        assert_eq!(on("tuần trước con thi toán").as_deref(), Some("2026-09-06"));
        // Sunday 13th: the previous calendar week's Saturday is the 5th.
        assert_eq!(on("thứ bảy tuần rồi con đi biển").as_deref(), Some("2026-09-05"));
        assert_eq!(
            on("cuối tuần trước nhà con về quê").as_deref(),
            Some("2026-09-05")
        );
    }

    #[test]
    fn english_relative_days() {
        assert_eq!(on("Yesterday I went to the zoo").as_deref(), Some("2026-09-12"));
        assert_eq!(
            on("two days ago my tooth fell out").as_deref(),
            Some("2026-09-11")
        );
        assert_eq!(on("last weekend we went camping").as_deref(), Some("2026-09-05"));
        assert_eq!(on("last Monday I had a test").as_deref(), Some("2026-09-07"));
        assert_eq!(on("on Friday we baked a cake").as_deref(), Some("2026-09-11"));
        assert_eq!(on("I like cats"), None);
        // Words that merely contain a phrase do not count.
        assert_eq!(on("the toddler plays"), None);
    }

    #[test]
    fn noon_keeps_the_calendar_day() {
        let d = resolve("hôm qua", sunday()).expect("resolves");
        let utc = d.at_noon(*sunday().offset());
        assert_eq!(utc.date_naive().to_string(), "2026-09-12");
    }

    #[test]
    fn when_questions() {
        assert!(asks_when("Bé đi sở thú khi nào?"));
        assert!(asks_when("bao giờ bé đi biển"));
        assert!(asks_when("When did Na lose her tooth?"));
        assert!(!asks_when("What does Na like?"));
    }
}
