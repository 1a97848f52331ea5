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
    fn the_script_publishes_what_parse_reads() {
        // The script appends ' ' and the generation to the user id, as encode does.
        assert!(BUMP_SCRIPT.contains("ARGV[2] .. ' ' .. g"));
        assert_eq!(generation_key("u1"), "pika:gen:u1");
    }
}
