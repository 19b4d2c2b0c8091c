//! What a rate counter counts: accesses of one subject to one resource with one action.

use serde::{Deserialize, Serialize};

use crate::StateError;
use crate::counter::mix;

/// Longest subject, resource or action accepted, in bytes.
pub const MAX_KEY_PART_BYTES: usize = 256;

/// The digests and the lock shards of the state split keys into this many groups.
pub(crate) const SHARDS: usize = 64;

/// (subject, resource, action), e.g. ("alice", "bucket/reports", "read").
///
/// Held as one string with the two boundaries: every node keeps one per live key, and three
/// separate strings cost three allocations and 72 bytes in each map entry (at a million keys,
/// hundreds of megabytes). Serialised as the three parts, as before.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CounterKey {
    text: Box<str>,
    /// Where the subject and the resource end in `text`.
    ends: (u16, u16),
}

#[derive(Serialize, Deserialize)]
struct Parts<'a> {
    #[serde(borrow)]
    subject: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    resource: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
}

impl Serialize for CounterKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Parts {
            subject: self.subject().into(),
            resource: self.resource().into(),
            action: self.action().into(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CounterKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let p = Parts::deserialize(deserializer)?;
        Self::join(&p.subject, &p.resource, &p.action)
            .ok_or_else(|| serde::de::Error::custom("counter key part over 65535 bytes"))
    }
}

impl std::fmt::Debug for CounterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterKey")
            .field("subject", &self.subject())
            .field("resource", &self.resource())
            .field("action", &self.action())
            .finish()
    }
}

/// Part by part, as three separate strings sorted.
impl Ord for CounterKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.subject(), self.resource(), self.action()).cmp(&(
            other.subject(),
            other.resource(),
            other.action(),
        ))
    }
}

impl PartialOrd for CounterKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl CounterKey {
    /// A validated key: every part 1 to [`MAX_KEY_PART_BYTES`] bytes.
    pub fn new(
        subject: impl AsRef<str>,
        resource: impl AsRef<str>,
        action: impl AsRef<str>,
    ) -> Result<Self, StateError> {
        let key = Self::join(subject.as_ref(), resource.as_ref(), action.as_ref())
            .ok_or_else(|| StateError::InvalidKey("counter key part over 65535 bytes".into()))?;
        key.check().map_err(StateError::InvalidKey)?;
        Ok(key)
    }

    /// Unchecked (peers' keys are checked where they are applied); `None` if a part's
    /// boundary does not fit the index.
    fn join(subject: &str, resource: &str, action: &str) -> Option<Self> {
        let first = u16::try_from(subject.len()).ok()?;
        let second = u16::try_from(subject.len() + resource.len()).ok()?;
        let mut text = String::with_capacity(subject.len() + resource.len() + action.len());
        text.push_str(subject);
        text.push_str(resource);
        text.push_str(action);
        Some(Self {
            text: text.into_boxed_str(),
            ends: (first, second),
        })
    }

    /// The same key counted in `region`: what the global counters keep per region, so each
    /// region's demand is a key of its own.
    pub fn in_region(&self, region: &str) -> CounterKey {
        Self::join(
            self.subject(),
            self.resource(),
            &format!("{}@{region}", self.action()),
        )
        .expect("the subject and resource boundaries are this key's own")
    }

    pub fn subject(&self) -> &str {
        &self.text[..usize::from(self.ends.0)]
    }

    pub fn resource(&self) -> &str {
        &self.text[usize::from(self.ends.0)..usize::from(self.ends.1)]
    }

    pub fn action(&self) -> &str {
        &self.text[usize::from(self.ends.1)..]
    }

    /// Why the key is not acceptable, naming the part (peers' keys are checked too).
    pub(crate) fn check(&self) -> Result<(), String> {
        for (part, value) in [
            ("subject", self.subject()),
            ("resource", self.resource()),
            ("action", self.action()),
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
            self.subject().as_bytes(),
            self.resource().as_bytes(),
            self.action().as_bytes(),
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
    fn the_parts_travel_as_before_and_come_back_whole() {
        let key = CounterKey::new("alice", "bucket/reports", "read").unwrap();
        assert_eq!(
            (key.subject(), key.resource(), key.action()),
            ("alice", "bucket/reports", "read")
        );
        // The wire form is the three strings, as when they were three fields.
        let bytes = postcard::to_allocvec(&key).unwrap();
        let parts: (String, String, String) = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            parts,
            ("alice".into(), "bucket/reports".into(), "read".into())
        );
        assert_eq!(postcard::from_bytes::<CounterKey>(&bytes).unwrap(), key);
        let long = postcard::to_allocvec(&("x".repeat(70_000), "b", "r")).unwrap();
        assert!(postcard::from_bytes::<CounterKey>(&long).is_err());
        assert!(
            CounterKey::new("a", "z", "r").unwrap() < CounterKey::new("ab", "a", "r").unwrap(),
            "ordered part by part"
        );
    }

    #[test]
    fn part_boundaries_change_the_hash() {
        let a = CounterKey::new("ab", "c", "r").unwrap();
        let b = CounterKey::new("a", "bc", "r").unwrap();
        assert_ne!(a.hash64(), b.hash64());
        assert!(a.shard() < SHARDS);
    }
}
