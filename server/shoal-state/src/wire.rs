//! What nodes send each other about shared state, and its encoding (postcard: compact, varint
//! lengths, strict decoding). Every message travels inside memberlist's encrypted, authenticated
//! user messages; this layer adds a version byte and the sender's node id.

use serde::{Deserialize, Serialize};

use crate::key::CounterKey;
use crate::{BucketDelta, CacheUpdate, Event, Origin, Stamp};

/// Bumped on any incompatible change; a node drops (and counts) messages of another version.
pub(crate) const WIRE_VERSION: u8 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub version: u8,
    /// The sending node's id; must be a current member.
    pub from: String,
    pub msg: Msg,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Msg {
    /// One origin's updates since its previous batch (coalesced).
    Batch(Batch),
    /// Anti-entropy: what the sender has seen and hashes of its state.
    Digest(Digest),
    /// "Send me every batch after these sequence numbers" (join, rejoin, a detected gap).
    SyncRequest {
        have: Vec<(Origin, u64)>,
    },
    SyncReply(SyncReply),
    /// The full state of some shards (anti-entropy repair); `pull` asks for the peer's in return.
    Shards(ShardState),
    /// Strict mode: checks forwarded to the key's owner.
    Checks(Vec<Check>),
    Verdicts(Vec<Verdict>),
    /// "I own these checks' keys but have not finished replaying the cluster's state: decide
    /// them yourself" (the asker's counts are complete; a new owner's may not be yet). Last in
    /// the enum, so older nodes, which cannot decode it, drop it and their askers time out.
    Deferred(Vec<u64>),
    /// "Resend these batches": gaps in origins' numbers, asked of the node that sent the
    /// batches past them (the origin itself, or the relay that passed them on) rather than of
    /// everyone (a full sync request would carry every origin's watermark and bring back every
    /// origin's batches in flight). Appended late, like `Deferred`: an older node drops it, and
    /// anti-entropy repairs the gap.
    Missing(Vec<Gap>),
    /// Batches passed along the relay ring (clusters above `state.relay_above` nodes): each
    /// receiver applies them and passes on those new to it, within each span's limit. Last in
    /// the enum, like `Missing`: an older node drops it.
    Relay(Vec<Span>),
}

impl Msg {
    /// The message kinds, in [`Msg::kind`]'s order.
    pub(crate) const KINDS: [&'static str; 11] = [
        "batch",
        "digest",
        "sync request",
        "sync reply",
        "shards",
        "checks",
        "verdicts",
        "deferred",
        "missing",
        "relay",
        "undecodable",
    ];

    /// The index of this message's kind in [`Msg::KINDS`].
    pub(crate) fn kind(&self) -> usize {
        match self {
            Msg::Batch(_) => 0,
            Msg::Digest(_) => 1,
            Msg::SyncRequest { .. } => 2,
            Msg::SyncReply(_) => 3,
            Msg::Shards(_) => 4,
            Msg::Checks(_) => 5,
            Msg::Verdicts(_) => 6,
            Msg::Deferred(_) => 7,
            Msg::Missing(_) => 8,
            Msg::Relay(_) => 9,
        }
    }
}

/// "Of origin `origin`, resend the batches after `after` and before `before`", with the limit
/// the asker was given for that origin's batches: the answer comes with it, so the asker passes
/// the batches on to the part of the ring below it, which missed them too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Gap {
    pub origin: Origin,
    pub after: u64,
    pub before: u64,
    pub limit: u64,
}

/// Batches whose receiver passes them on to the nodes strictly between itself and `limit` on
/// the relay ring (a limit at the receiver's own position: to nobody).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Span {
    pub limit: u64,
    /// Passed on even by nodes that already hold them: an origin's newest batch, resent once
    /// it has gone quiet, reaches the nodes below a lost copy (no later batch would show them
    /// the gap).
    pub again: bool,
    pub batches: Vec<Compact>,
}

#[cfg(test)]
impl Batch {
    /// A batch that counts nothing: enough for tests of numbering, limits and relaying.
    pub(crate) fn empty(origin: u64, node: &str, seq: u64) -> Self {
        Batch {
            origin: Origin(origin),
            node: node.into(),
            seq,
            stamp: Stamp {
                time: 1,
                origin: Origin(origin),
            },
            counters: Vec::new(),
            cache: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// A batch as relays carry it: without the copies of its origin that its stamp and every
/// counter delta repeat (ten bytes each, a third of a typical one-increment batch).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Compact {
    pub origin: Origin,
    pub node: String,
    pub seq: u64,
    pub time: u64,
    pub counters: Vec<(CounterKey, Vec<CompactDelta>)>,
    pub cache: Vec<CacheUpdate>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct CompactDelta {
    pub window: u8,
    pub bucket: u64,
    pub value: u64,
}

impl From<&Batch> for Compact {
    /// A delta of another origin cannot be carried: it is dropped here, as the receiver would
    /// refuse the batch for it (batches only ever raise their own origin's counts).
    fn from(b: &Batch) -> Self {
        Compact {
            origin: b.origin,
            node: b.node.clone(),
            seq: b.seq,
            time: b.stamp.time,
            counters: b
                .counters
                .iter()
                .map(|u| {
                    let deltas = u
                        .deltas
                        .iter()
                        .filter(|d| d.origin == b.origin)
                        .map(|d| CompactDelta {
                            window: d.window,
                            bucket: d.bucket,
                            value: d.value,
                        })
                        .collect();
                    (u.key.clone(), deltas)
                })
                .collect(),
            cache: b.cache.clone(),
            events: b.events.clone(),
        }
    }
}

impl From<Compact> for Batch {
    fn from(c: Compact) -> Self {
        let origin = c.origin;
        Batch {
            origin,
            node: c.node,
            seq: c.seq,
            stamp: Stamp {
                time: c.time,
                origin,
            },
            counters: c
                .counters
                .into_iter()
                .map(|(key, deltas)| CounterUpdate {
                    key,
                    deltas: deltas
                        .into_iter()
                        .map(|d| BucketDelta {
                            window: d.window,
                            bucket: d.bucket,
                            origin,
                            value: d.value,
                        })
                        .collect(),
                })
                .collect(),
            cache: c.cache,
            events: c.events,
        }
    }
}

/// Updates made on one origin, numbered so receivers notice what they missed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Batch {
    pub origin: Origin,
    /// Node id of the origin (for the console's per-node contributions).
    pub node: String,
    /// 1, 2, 3… within the origin (an origin lives for one process run).
    pub seq: u64,
    pub stamp: Stamp,
    pub counters: Vec<CounterUpdate>,
    pub cache: Vec<CacheUpdate>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CounterUpdate {
    pub key: CounterKey,
    pub deltas: Vec<BucketDelta>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Digest {
    /// The sender's clock: both sides hash the buckets live at this instant.
    pub now_ms: u64,
    pub have: Vec<(Origin, u64)>,
    pub shards: Vec<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SyncReply {
    pub batches: Vec<Batch>,
    /// Present when the replay buffer no longer held everything asked for.
    pub full: Option<ShardState>,
    /// What the state in this reply covers, once applied.
    pub have: Vec<(Origin, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ShardState {
    pub now_ms: u64,
    pub shards: Vec<u16>,
    pub counters: Vec<CounterUpdate>,
    pub cache: Vec<CacheUpdate>,
    pub nodes: Vec<(Origin, String)>,
    pub pull: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Check {
    pub id: u64,
    pub key: CounterKey,
    pub window: u8,
    pub limit: u64,
    pub cost: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Verdict {
    pub id: u64,
    pub allowed: bool,
    pub count: u64,
    /// The key's total in every window after the decision.
    pub totals: Vec<u64>,
}

pub(crate) fn encode(from: &str, msg: Msg) -> Vec<u8> {
    let envelope = Envelope {
        version: WIRE_VERSION,
        from: from.to_string(),
        msg,
    };
    // Serializing plain owned data into a Vec cannot fail.
    postcard::to_allocvec(&envelope).expect("postcard encoding of owned data")
}

/// Decodes a peer's message; the error says what was wrong (for the rate-limited log).
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope, String> {
    let Some(&version) = bytes.first() else {
        return Err("empty message".into());
    };
    if version != WIRE_VERSION {
        return Err(format!(
            "state message version {version}; this node speaks {WIRE_VERSION}"
        ));
    }
    postcard::from_bytes::<Envelope>(bytes)
        .map_err(|e| format!("malformed state message ({} bytes): {e}", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_bytes() {
        let bytes = encode(
            "node-a",
            Msg::SyncRequest {
                have: vec![(Origin(7), 3)],
            },
        );
        let back = decode(&bytes).unwrap();
        assert_eq!(back.from, "node-a");
        assert!(matches!(back.msg, Msg::SyncRequest { ref have } if have == &[(Origin(7), 3)]));
        assert!(decode(&[]).unwrap_err().contains("empty"));
        assert!(decode(&[9, 1, 2]).unwrap_err().contains("version 9"));
        // A length prefix claiming far more data than the message holds.
        let mut lying = vec![WIRE_VERSION, 0xff, 0xff, 0xff, 0xff, 0x0f];
        lying.extend_from_slice(b"abc");
        assert!(decode(&lying).unwrap_err().contains("malformed"));
        for cut in 1..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
    }
}
