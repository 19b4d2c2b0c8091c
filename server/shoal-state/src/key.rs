//! What a rate counter counts: accesses of one subject to one resource with one action.

use serde::{Deserialize, Serialize};

use crate::StateError;
use crate::counter::mix;

/// Longest subject, resource or action accepted, in bytes.
pub const MAX_KEY_PART_BYTES: usize = 256;

/// The digests and the lock shards of the state split keys into this many groups.
pub(crate) const SHARDS: usize = 64;

/// (subject, resource, action), e.g. ("alice", "bucket/reports", "read").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CounterKey {
    pub subject: String,
    pub resource: String,
    pub action: String,
}

impl CounterKey {
    /// A validated key: every part 1 to [`MAX_KEY_PART_BYTES`] bytes.
    pub fn new(
        subject: impl Into<String>,
        resource: impl Into<String>,
        action: impl Into<String>,
    ) -> Result<Self, StateError> {
        let key = Self {
            subject: subject.into(),
            resource: resource.into(),
            action: action.into(),
        };
        key.check().map_err(StateError::InvalidKey)?;
        Ok(key)
    }

    /// Why the key is not acceptable, naming the part (peers' keys are checked too).
    pub(crate) fn check(&self) -> Result<(), String> {
        for (part, value) in [
            ("subject", &self.subject),
            ("resource", &self.resource),
            ("action", &self.action),
        ] {
            if value.is_empty() || value.len() > MAX_KEY_PART_BYTES {
                return Err(format!(
                    "counter key {part} must be 1-{MAX_KEY_PART_BYTES} bytes, got {}",
                    value.len()
                ));
            }
        }
        Ok(())
    }

    /// Stable across nodes and versions (FNV-1a of the parts, then mixed): it places the key
    /// on the strict-mode ring and in a digest shard.
    pub(crate) fn hash64(&self) -> u64 {
        mix(fnv1a(&[
            self.subject.as_bytes(),
            self.resource.as_bytes(),
            self.action.as_bytes(),
        ]))
    }

    pub(crate) fn shard(&self) -> usize {
        (self.hash64() % SHARDS as u64) as usize
    }
}

/// FNV-1a over parts, with a separator so ("ab", "c") and ("a", "bc") differ.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The digest shard of a cache key.
pub(crate) fn cache_shard(key: &str) -> usize {
    (mix(fnv1a(&[key.as_bytes()])) % SHARDS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_checked_and_named() {
        let err = CounterKey::new("", "b", "read").unwrap_err().to_string();
        assert!(err.contains("subject") && err.contains("got 0"), "{err}");
        let long = "x".repeat(MAX_KEY_PART_BYTES + 1);
        let err = CounterKey::new("u", long, "read").unwrap_err().to_string();
        assert!(err.contains("resource"), "{err}");
        assert!(CounterKey::new("u", "b", "read").is_ok());
    }

    #[test]
    fn part_boundaries_change_the_hash() {
        let a = CounterKey::new("ab", "c", "r").unwrap();
        let b = CounterKey::new("a", "bc", "r").unwrap();
        assert_ne!(a.hash64(), b.hash64());
        assert!(a.shard() < SHARDS);
    }
}
