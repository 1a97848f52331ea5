//! Bilingual concept lexicon for children's topics.
//!
//! Each concept has Vietnamese and English trigger words and the tags a fact
//! mentioning it carries. Tags are what make "thú cưng" (pets) find a fact
//! about "mèo" (cat) although the embedded English-only embedder cannot
//! (DESIGN.md §11). Queries are expanded with the same lexicon.
//!
//! Over 400 lines on purpose: it is mostly data (the concept table), kept
//! beside the few lines that match it.

use pika_common::text::fold;

/// One topic.
#[derive(Debug)]
pub struct Concept {
    /// Canonical entity name stored in the graph.
    pub entity: &'static str,
    /// Lowercase trigger words or phrases (Vietnamese with diacritics, English).
    pub triggers: &'static [&'static str],
    /// Tags added to a fact mentioning the concept (both languages, broader terms).
    pub tags: &'static [&'static str],
}

const PET: &[&str] = &["thú cưng", "pet", "con vật", "animal", "động vật"];

pub static CONCEPTS: &[Concept] = &[
    Concept {
        entity: "cat",
        triggers: &["mèo", "cat", "cats", "kitten", "kitty", "mèo con"],
        tags: &["mèo", "cat"],
    },
    Concept {
        entity: "dog",
        triggers: &["chó", "cún", "dog", "dogs", "puppy", "chó con"],
        tags: &["chó", "dog"],
    },
    Concept {
        entity: "fish",
        triggers: &["cá vàng", "fish", "goldfish", "bể cá"],
        tags: &["cá", "fish"],
    },
    Concept {
        entity: "bird",
        triggers: &["chim", "vẹt", "bird", "parrot"],
        tags: &["chim", "bird"],
    },
    Concept {
        entity: "rabbit",
        triggers: &["thỏ", "rabbit", "bunny"],
        tags: &["thỏ", "rabbit"],
    },
    Concept {
        entity: "hamster",
        triggers: &["hamster", "chuột hamster"],
        tags: &["hamster"],
    },
    Concept {
        entity: "turtle",
        triggers: &["rùa", "turtle", "tortoise"],
        tags: &["rùa", "turtle"],
    },
    Concept {
        entity: "pet",
        triggers: &[
            "thú cưng",
            "pet",
            "pets",
            "con vật",
            "animal",
            "animals",
            "động vật",
        ],
        tags: &[],
    },
    Concept {
        entity: "football",
        triggers: &["bóng đá", "đá bóng", "football", "soccer"],
        tags: &["bóng đá", "football", "thể thao", "sport"],
    },
    Concept {
        entity: "basketball",
        triggers: &["bóng rổ", "basketball"],
        tags: &["bóng rổ", "basketball", "thể thao", "sport"],
    },
    Concept {
        entity: "swimming",
        triggers: &["bơi", "swim", "swimming"],
        tags: &["bơi", "swimming", "thể thao", "sport"],
    },
    Concept {
        entity: "cycling",
        triggers: &["đạp xe", "xe đạp", "bike", "bicycle", "cycling"],
        tags: &["xe đạp", "bike", "thể thao", "sport"],
    },
    Concept {
        entity: "dancing",
        triggers: &["nhảy", "múa", "dance", "dancing", "ballet"],
        tags: &["múa", "dance", "năng khiếu", "hobby"],
    },
    Concept {
        entity: "swing",
        triggers: &["xích đu", "swing", "swings"],
        tags: &["xích đu", "swing", "trò chơi", "play", "công viên", "playground"],
    },
    Concept {
        entity: "climbing",
        triggers: &["leo cây", "trèo cây", "leo núi", "climb", "climbing"],
        tags: &["leo trèo", "climbing", "trò chơi", "play", "outdoor"],
    },
    Concept {
        entity: "park",
        triggers: &["công viên", "park", "playground", "sân chơi"],
        tags: &["công viên", "park", "đi chơi", "outing"],
    },
    Concept {
        entity: "beach",
        triggers: &["biển", "bãi biển", "beach", "sea"],
        tags: &["biển", "beach", "du lịch", "trip"],
    },
    Concept {
        entity: "zoo",
        triggers: &["sở thú", "vườn thú", "zoo"],
        tags: &["sở thú", "zoo", "đi chơi", "outing", "con vật", "animal"],
    },
    Concept {
        entity: "drawing",
        triggers: &[
            "vẽ", "tranh", "draw", "drawing", "paint", "painting", "tô màu", "coloring",
        ],
        tags: &["vẽ", "drawing", "nghệ thuật", "art", "sở thích", "hobby"],
    },
    Concept {
        entity: "music",
        triggers: &[
            "hát",
            "bài hát",
            "âm nhạc",
            "đàn",
            "piano",
            "guitar",
            "sing",
            "singing",
            "song",
            "songs",
            "music",
        ],
        tags: &["âm nhạc", "music", "sở thích", "hobby"],
    },
    Concept {
        entity: "reading",
        triggers: &[
            "đọc sách",
            "đọc truyện",
            "truyện",
            "sách",
            "read",
            "reading",
            "book",
            "books",
            "story",
            "stories",
        ],
        tags: &["đọc sách", "reading", "sách", "book"],
    },
    Concept {
        entity: "math",
        triggers: &["toán", "math", "maths", "mathematics", "counting", "đếm"],
        tags: &["toán", "math", "học tập", "learning", "môn học", "subject"],
    },
    Concept {
        entity: "english",
        triggers: &["tiếng anh", "english"],
        tags: &[
            "tiếng anh",
            "english",
            "học tập",
            "learning",
            "ngôn ngữ",
            "language",
        ],
    },
    Concept {
        entity: "vietnamese",
        triggers: &["tiếng việt", "vietnamese"],
        tags: &[
            "tiếng việt",
            "vietnamese",
            "học tập",
            "learning",
            "ngôn ngữ",
            "language",
        ],
    },
    Concept {
        entity: "science",
        triggers: &["khoa học", "science"],
        tags: &["khoa học", "science", "học tập", "learning"],
    },
    Concept {
        entity: "school",
        triggers: &[
            "trường",
            "lớp",
            "cô giáo",
            "thầy giáo",
            "school",
            "class",
            "teacher",
            "kindergarten",
            "mẫu giáo",
        ],
        tags: &["trường học", "school", "học tập", "learning"],
    },
    Concept {
        entity: "mother",
        triggers: &["mẹ", "má", "mom", "mommy", "mum", "mother"],
        tags: &["mẹ", "mom", "gia đình", "family"],
    },
    Concept {
        entity: "father",
        triggers: &["bố", "ba", "cha", "dad", "daddy", "father"],
        tags: &["bố", "dad", "gia đình", "family"],
    },
    Concept {
        entity: "sibling",
        triggers: &[
            "anh trai",
            "chị gái",
            "em trai",
            "em gái",
            "brother",
            "sister",
            "anh hai",
            "chị hai",
        ],
        tags: &["anh chị em", "sibling", "gia đình", "family"],
    },
    Concept {
        entity: "grandparent",
        triggers: &[
            "ông",
            "bà",
            "ông bà",
            "grandma",
            "grandpa",
            "grandmother",
            "grandfather",
            "granny",
        ],
        tags: &["ông bà", "grandparents", "gia đình", "family"],
    },
    Concept {
        entity: "family",
        triggers: &["gia đình", "family"],
        tags: &["gia đình", "family"],
    },
    Concept {
        entity: "friend",
        triggers: &["bạn thân", "bạn bè", "friend", "friends", "best friend"],
        tags: &["bạn bè", "friend"],
    },
    Concept {
        entity: "ice cream",
        triggers: &["kem", "ice cream"],
        tags: &["kem", "ice cream", "đồ ăn", "food", "món ăn"],
    },
    Concept {
        entity: "candy",
        triggers: &["kẹo", "candy", "sweets", "chocolate", "sô cô la"],
        tags: &["kẹo", "candy", "đồ ăn", "food"],
    },
    Concept {
        entity: "fruit",
        triggers: &[
            "trái cây",
            "hoa quả",
            "táo",
            "chuối",
            "xoài",
            "dưa hấu",
            "fruit",
            "apple",
            "banana",
            "mango",
            "watermelon",
        ],
        tags: &["trái cây", "fruit", "đồ ăn", "food"],
    },
    Concept {
        entity: "vegetables",
        triggers: &["rau", "vegetable", "vegetables", "broccoli", "carrot", "cà rốt"],
        tags: &["rau", "vegetables", "đồ ăn", "food"],
    },
    Concept {
        entity: "noodles",
        triggers: &["phở", "bún", "mì", "noodles", "pasta", "spaghetti"],
        tags: &["món ăn", "food", "đồ ăn"],
    },
    Concept {
        entity: "pizza",
        triggers: &["pizza"],
        tags: &["pizza", "đồ ăn", "food"],
    },
    Concept {
        entity: "rice",
        triggers: &["cơm", "rice"],
        tags: &["cơm", "rice", "đồ ăn", "food"],
    },
    Concept {
        entity: "cake",
        triggers: &["bánh", "bánh ngọt", "cake", "cookie", "cookies"],
        tags: &["bánh", "cake", "đồ ăn", "food"],
    },
    Concept {
        entity: "toys",
        triggers: &[
            "đồ chơi",
            "lego",
            "búp bê",
            "gấu bông",
            "ô tô đồ chơi",
            "toy",
            "toys",
            "doll",
            "teddy",
            "blocks",
        ],
        tags: &["đồ chơi", "toy", "trò chơi", "play"],
    },
    Concept {
        entity: "robot",
        triggers: &["robot", "rô bốt"],
        tags: &["robot", "đồ chơi", "toy"],
    },
    Concept {
        entity: "games",
        triggers: &[
            "trò chơi",
            "game",
            "games",
            "video game",
            "trốn tìm",
            "hide and seek",
        ],
        tags: &["trò chơi", "game", "play"],
    },
    Concept {
        entity: "cartoons",
        triggers: &[
            "hoạt hình",
            "phim",
            "cartoon",
            "cartoons",
            "movie",
            "movies",
            "tv",
        ],
        tags: &[
            "hoạt hình",
            "cartoon",
            "phim",
            "movie",
            "giải trí",
            "entertainment",
        ],
    },
    Concept {
        entity: "dinosaur",
        triggers: &["khủng long", "dinosaur", "dinosaurs", "t-rex"],
        tags: &["khủng long", "dinosaur", "con vật", "animal"],
    },
    Concept {
        entity: "colors",
        triggers: &[
            "màu",
            "màu đỏ",
            "màu xanh",
            "màu vàng",
            "màu hồng",
            "màu tím",
            "color",
            "colour",
            "red",
            "blue",
            "green",
            "yellow",
            "pink",
            "purple",
        ],
        tags: &["màu sắc", "color"],
    },
    Concept {
        entity: "happy",
        triggers: &["vui", "hạnh phúc", "happy", "excited", "glad"],
        tags: &["vui", "happy", "cảm xúc", "feeling", "emotion"],
    },
    Concept {
        entity: "sad",
        triggers: &["buồn", "khóc", "sad", "cry", "cried", "upset"],
        tags: &["buồn", "sad", "cảm xúc", "feeling", "emotion"],
    },
    Concept {
        entity: "fear",
        triggers: &["sợ", "scared", "afraid", "fear", "frightened"],
        tags: &["sợ", "afraid", "nỗi sợ", "fear", "cảm xúc", "emotion"],
    },
    Concept {
        entity: "angry",
        triggers: &["giận", "tức", "angry", "mad"],
        tags: &["giận", "angry", "cảm xúc", "emotion"],
    },
    Concept {
        entity: "birthday",
        triggers: &["sinh nhật", "birthday"],
        tags: &["sinh nhật", "birthday", "sự kiện", "event"],
    },
    Concept {
        entity: "travel",
        triggers: &[
            "du lịch",
            "đi chơi",
            "về quê",
            "travel",
            "trip",
            "vacation",
            "holiday",
        ],
        tags: &["du lịch", "trip", "đi chơi", "outing"],
    },
];

/// Concepts whose triggers occur in `text` (whole words; accents must match for
/// single-syllable triggers, multi-syllable triggers also match without accents).
pub fn concepts_in(text: &str) -> Vec<&'static Concept> {
    let exact = padded(&pika_common::text::syllables(text).join(" "));
    let folded = fold(&exact);
    CONCEPTS
        .iter()
        .filter(|c| {
            c.triggers.iter().any(|t| {
                exact.contains(&padded(t)) || (t.contains(' ') && folded.contains(&padded(&fold(t))))
            })
        })
        .collect()
}

fn padded(s: &str) -> String {
    format!(" {s} ")
}

/// Tags of a concept including its own name and pet tags for animals.
pub fn tags_of(c: &Concept) -> Vec<String> {
    let mut tags: Vec<String> = c.tags.iter().map(|t| t.to_string()).collect();
    if is_pet(c.entity) || c.entity == "pet" {
        tags.extend(PET.iter().map(|t| t.to_string()));
    }
    tags
}

/// Fact tags that show a fact is about concept `c` (the generic "pet" concept
/// matches any pet's tags; a specific one only its own).
pub fn matching_tags(c: &Concept) -> &'static [&'static str] {
    if c.entity == "pet" { PET } else { c.tags }
}

/// Animals children keep as pets.
pub fn is_pet(entity: &str) -> bool {
    matches!(
        entity,
        "cat" | "dog" | "fish" | "bird" | "rabbit" | "hamster" | "turtle"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_concepts_in_both_languages() {
        let names = |t: &str| concepts_in(t).iter().map(|c| c.entity).collect::<Vec<_>>();
        assert_eq!(names("Mình nuôi mèo tên Miu"), vec!["cat"]);
        assert_eq!(names("I have a dog called Max"), vec!["dog"]);
        assert_eq!(names("thú cưng của bé là gì"), vec!["pet"]);
        assert_eq!(
            names("Mình thích chơi xích đu và leo cây"),
            vec!["swing", "climbing"]
        );
        // "ca" without accents is not "cá"; "bà" needs its accent.
        assert!(names("ca").is_empty(), "unaccented ca is not cá");
    }
}
