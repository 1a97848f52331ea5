//! Vietnamese-aware text normalisation for keyword matching.
//!
//! The embedded embedder (all-MiniLM-L6-v2) is English-only and its tokenizer
//! strips diacritics, so Vietnamese relevance cannot come from the vector alone.
//! Keyword matching works on syllables (Vietnamese words are space-separated
//! syllables) and compares both the accented form and the folded form (no
//! diacritics, `đ` → `d`), so "meo" still finds "mèo" while an exact accented
//! match counts more than a folded one ("ca" is cá, cà and ca).

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Removes diacritics and lowercases: "Thú cưng Đỏ" → "thu cung do".
pub fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| match c {
            'đ' | 'Đ' => 'd',
            other => other,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Lowercased syllables (maximal runs of letters and digits), accents kept, in NFC.
pub fn syllables(s: &str) -> Vec<String> {
    let nfc: String = s.nfc().collect();
    nfc.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// True when the text carries Vietnamese-specific letters or tone marks.
pub fn looks_vietnamese(s: &str) -> bool {
    const VI_WORDS: &[&str] = &[
        "minh", "to", "toi", "em", "con", "cau", "khong", "thich", "nuoi", "co", "la", "va",
    ];
    let has_marks = s.nfd().any(is_combining_mark) || s.contains(['đ', 'Đ']);
    if has_marks {
        return true;
    }
    let words = syllables(s);
    let hits = words.iter().filter(|w| VI_WORDS.contains(&w.as_str())).count();
    !words.is_empty() && hits * 3 >= words.len()
}

/// Vietnamese function words, with their tones: folding first would merge
/// "cưng" (pet, as in thú cưng) with "cũng" (also). "con" is the animal
/// classifier ("con mèo"), "bé" the child.
const STOPWORDS_VI: &[&str] = &[
    "của", "bé", "là", "gì", "con", "cái", "những", "các", "có", "không", "và", "với", "thì", "mà", "này",
    "đó", "nào", "ai", "bạn", "mình", "tớ", "tôi", "em", "cậu", "nó", "được", "đã", "đang", "sẽ", "rất",
    "lắm", "nhé", "ạ", "ơi", "à", "ừ", "vâng", "dạ", "cũng", "như", "thế", "ở", "một", "về", "cho", "từ",
    "ra", "vào", "lên", "hay", "cháu", "nữa", "rồi", "chưa", "bao", "giờ", "sao", "vậy", "nè", "thích", "gì",
    "nhỉ", "hả", "đâu",
];

/// English function words.
const STOPWORDS_EN: &[&str] = &[
    "the", "a", "an", "is", "are", "was", "were", "what", "which", "who", "whom", "does", "do", "did",
    "have", "has", "had", "of", "in", "on", "for", "to", "child", "kid", "kids", "user", "my", "i", "me",
    "you", "your", "his", "her", "their", "they", "he", "she", "it", "its", "and", "or", "with", "about",
    "that", "this", "there", "any", "some", "s", "am", "be", "been", "at", "by", "from", "as", "if", "so",
    "can", "will", "would", "yes", "no", "not", "dont", "don", "t", "m", "ll", "ve", "re", "d", "them", "us",
    "we", "our", "how", "why", "when", "where", "tell", "know", "named", "called", "name", "like", "likes",
];

/// True when the (lowercase, accented) syllable is a function word. Text typed
/// without diacritics is also checked against the folded Vietnamese list.
pub fn is_stopword(word: &str) -> bool {
    static FOLDED_VI: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    if STOPWORDS_VI.contains(&word) || STOPWORDS_EN.contains(&word) {
        return true;
    }
    word.is_ascii()
        && FOLDED_VI
            .get_or_init(|| STOPWORDS_VI.iter().map(|w| fold(w)).collect())
            .iter()
            .any(|w| w == word)
}

/// A topic term of a text: the accented syllable and its folded form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Term {
    pub exact: String,
    pub folded: String,
}

/// The topic terms of a text: syllables minus stopwords, with a crude English
/// singular ("pets" → "pet") added beside plurals. Order kept, duplicates removed.
pub fn terms(s: &str) -> Vec<Term> {
    let mut out: Vec<Term> = Vec::new();
    for syl in syllables(s) {
        let folded = fold(&syl);
        if is_stopword(&syl) {
            continue;
        }
        let mut push = |exact: String, folded: String| {
            if !out.iter().any(|t| t.exact == exact) {
                out.push(Term { exact, folded });
            }
        };
        if let Some(singular) = english_singular(&syl) {
            push(singular.clone(), singular);
        }
        push(syl, folded);
    }
    out
}

/// Terms of the ranked keyword index (BM25), in text order with repeats (so
/// term frequency counts): each non-stopword syllable folded (no diacritics),
/// English words Snowball-stemmed ("hobbies" → "hobbi", "skiing" → "ski"), and
/// for an accented syllable its accented form too, marked with a leading `~`,
/// so text typed without tone marks still matches while an exact accented
/// match scores higher. Queries and documents go through the same function.
pub fn index_terms(text: &str) -> Vec<String> {
    static STEMMER: std::sync::OnceLock<rust_stemmers::Stemmer> = std::sync::OnceLock::new();
    let stemmer = STEMMER.get_or_init(|| rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English));
    let mut out = Vec::new();
    for syl in syllables(text) {
        if is_stopword(&syl) || syl.chars().count() > 40 {
            continue;
        }
        let folded = fold(&syl);
        if syl.is_ascii() {
            out.push(stemmer.stem(&folded).into_owned());
        } else {
            out.push(folded);
            out.push(format!("~{syl}"));
        }
    }
    out
}

/// "pets" → "pet", "puppies" → "puppy", "boxes" → "box"; `None` for words that are
/// not plain ASCII plurals.
fn english_singular(w: &str) -> Option<String> {
    if !w.is_ascii() || w.len() <= 3 || w.ends_with("ss") || w.ends_with("us") {
        return None;
    }
    if let Some(stem) = w.strip_suffix("ies") {
        return Some(format!("{stem}y"));
    }
    if let Some(stem) = w.strip_suffix("es")
        && (stem.ends_with("sh") || stem.ends_with("ch") || stem.ends_with('x'))
    {
        return Some(stem.to_string());
    }
    w.strip_suffix('s').map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_removes_tones_and_d_bar() {
        assert_eq!(fold("Thú cưng ĐỎ"), "thu cung do");
        assert_eq!(fold("mèo"), "meo");
    }

    #[test]
    fn terms_drop_function_words_in_both_languages() {
        let t: Vec<String> = terms("thú cưng của bé là gì")
            .into_iter()
            .map(|t| t.exact)
            .collect();
        assert_eq!(t, vec!["thú", "cưng"]);
        let t: Vec<String> = terms("What pets does the child have?")
            .into_iter()
            .map(|t| t.exact)
            .collect();
        assert_eq!(t, vec!["pet", "pets"]);
    }

    #[test]
    fn index_terms_fold_stem_and_mark_accents() {
        assert_eq!(
            index_terms("My hobbies: skiing, cooking"),
            vec!["hobbi", "ski", "cook"]
        );
        assert_eq!(index_terms("nuôi mèo"), vec!["nuoi", "~nuôi", "meo", "~mèo"]);
        assert_eq!(index_terms("nuoi meo"), vec!["nuoi", "meo"]);
    }

    #[test]
    fn detects_language() {
        assert!(looks_vietnamese("Mình nuôi mèo tên Miu"));
        assert!(looks_vietnamese("minh nuoi meo"));
        assert!(!looks_vietnamese("I have a dog called Max"));
    }
}
