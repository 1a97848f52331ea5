//! Cache-signal names and messages (DESIGN.md §5): every write for a user
//! runs [`BUMP_SCRIPT`], which increments that user's generation under
//! [`generation_key`] and publishes an [`Invalidation`] on
//! [`INVALIDATE_CHANNEL`]. The dataplane (and the worker) send them, the
//! sidecars key their L1 entries by generation and drop L0 entries on the
//! message; this module is the one place both sides read the format from.

/// Channel the sidecars subscribe to.
pub const INVALIDATE_CHANNEL: &str = "pika:invalidate";

/// `KEYS[1]` = the generation key, `ARGV[1]` = the channel, `ARGV[2]` = the
/// user id. INCR and PUBLISH in one script: atomic, one round trip, and the
/// message carries the generation it announces. Returns the new generation.
pub const BUMP_SCRIPT: &str =
    "local g = redis.call('INCR', KEYS[1]) redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. g) return g";

/// The Redis key of a user's generation.
pub fn generation_key(user_id: &str) -> String {
    format!("pika:gen:{user_id}")
}

/// The generation an erasure announces: every cached answer of the user is
/// stale, and a sidecar forgets the user altogether (its L0 slot too).
pub const ERASED: u64 = u64::MAX;

/// The L1 key of one cached answer: `pika:sc:{user}:{generation}:{exact}`.
pub fn l1_entry_key(user_id: &str, generation: u64, exact_hex: &str) -> String {
    format!("pika:sc:{user_id}:{generation}:{exact_hex}")
}

/// The L1 key of a user's semantic index at one generation.
pub fn l1_index_key(user_id: &str, generation: u64) -> String {
    format!("pika:sci:{user_id}:{generation}")
}

/// SCAN patterns that find every L1 key of `user_id` (and possibly keys of
/// users whose id extends it with `:`; filter with [`is_l1_key_of`]). User
/// ids hold no glob characters (validation), so the patterns are literal.
pub fn l1_patterns(user_id: &str) -> [String; 2] {
    [format!("pika:sc:{user_id}:*"), format!("pika:sci:{user_id}:*")]
}

/// Whether `key` is exactly one of `user_id`'s L1 keys.
pub fn is_l1_key_of(key: &str, user_id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = key
        .strip_prefix("pika:sc:")
        .and_then(|r| r.strip_prefix(user_id))
        .and_then(|r| r.strip_prefix(':'))
    {
        return rest
            .split_once(':')
            .is_some_and(|(g, h)| digits(g) && !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    key.strip_prefix("pika:sci:")
        .and_then(|r| r.strip_prefix(user_id))
        .and_then(|r| r.strip_prefix(':'))
        .is_some_and(digits)
}

/// "This user's data changed; what you fetched before `generation` is stale."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    pub user_id: String,
    pub generation: u64,
}

impl Invalidation {
    /// The message text: `"{user} {generation}"` (what [`BUMP_SCRIPT`] publishes).
    pub fn encode(&self) -> String {
        format!("{} {}", self.user_id, self.generation)
    }

    /// Reads a message; `None` for anything malformed. User ids cannot hold
    /// spaces (validation), so the last space separates the two parts.
    pub fn parse(payload: &str) -> Option<Invalidation> {
        let (user, generation) = payload.rsplit_once(' ')?;
        let generation = generation.parse::<u64>().ok()?;
        (!user.is_empty()).then(|| Invalidation {
            user_id: user.to_string(),
            generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = Invalidation {
            user_id: "child:7".into(),
            generation: 42,
        };
        assert_eq!(Invalidation::parse(&m.encode()), Some(m));
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in ["", "u", "u x", " 3", "u -1"] {
            assert_eq!(Invalidation::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn l1_keys_of_one_user_are_told_from_a_longer_id() {
        let k = l1_entry_key("kid1", 3, "00ff");
        assert!(is_l1_key_of(&k, "kid1"));
        assert!(is_l1_key_of(&l1_index_key("t/kid1", 9), "t/kid1"));
        assert!(!is_l1_key_of(&l1_entry_key("kid1:x", 3, "00ff"), "kid1"));
        assert!(!is_l1_key_of(&l1_index_key("kid1:7", 2), "kid1"));
        assert!(!is_l1_key_of(&l1_entry_key("kid10", 3, "00ff"), "kid1"));
        assert!(l1_patterns("kid1")[0].starts_with("pika:sc:kid1:"));
        let erased = Invalidation {
            user_id: "kid1".into(),
            generation: ERASED,
        };
        assert_eq!(Invalidation::parse(&erased.encode()), Some(erased));
    }

    #[test]
    fn the_script_publishes_what_parse_reads() {
        // The script appends ' ' and the generation to the user id, as encode does.
        assert!(BUMP_SCRIPT.contains("ARGV[2] .. ' ' .. g"));
        assert_eq!(generation_key("u1"), "pika:gen:u1");
    }
}
