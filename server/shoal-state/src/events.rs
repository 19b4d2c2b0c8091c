//! The broadcast event channel ("revoke user U's access now"): every node delivers each event
//! to its subscribers once, however many times gossip, replay or anti-entropy bring it.

use serde::{Deserialize, Serialize};

use crate::Stamp;
use crate::replay::{Pushed, Replay, ReplayBuffer};

/// One cluster-wide event. The stamp is unique (Lamport time of its origin, then the origin),
/// which is what makes delivery exactly-once per node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub stamp: Stamp,
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    pub max_topic_bytes: usize,
    pub max_payload_bytes: usize,
    /// Events kept for replay to joining nodes (the brief's default: 10,000).
    pub replay_capacity: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_topic_bytes: 128,
            max_payload_bytes: 16 * 1024,
            replay_capacity: 10_000,
        }
    }
}

/// Whether an incoming event is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// New here: hand it to subscribers.
    Deliver,
    /// Already delivered (or too old to tell): drop it.
    Duplicate,
    /// Refused, with the reason to log.
    Rejected(String),
}

/// This node's view of the event stream: deduplication and the replay buffer in one.
#[derive(Debug, Clone)]
pub struct EventChannel {
    limits: EventLimits,
    recent: ReplayBuffer<Event>,
}

impl EventChannel {
    pub fn new(limits: EventLimits) -> Self {
        Self {
            limits,
            recent: ReplayBuffer::new(limits.replay_capacity),
        }
    }

    /// Checks limits and deduplicates.
    pub fn accept(&mut self, event: Event) -> Accepted {
        if event.topic.is_empty() || event.topic.len() > self.limits.max_topic_bytes {
            return Accepted::Rejected(format!(
                "event topic must be 1-{} bytes, got {}",
                self.limits.max_topic_bytes,
                event.topic.len()
            ));
        }
        if event.payload.len() > self.limits.max_payload_bytes {
            return Accepted::Rejected(format!(
                "event payload of {} bytes exceeds the {}-byte limit",
                event.payload.len(),
                self.limits.max_payload_bytes
            ));
        }
        match self.recent.push(event.stamp, event) {
            Pushed::Added => Accepted::Deliver,
            Pushed::Duplicate | Pushed::TooOld => Accepted::Duplicate,
        }
    }

    /// Events after `watermark`, for a node that joins or comes back.
    pub fn since(&self, watermark: Option<Stamp>) -> Replay<Event> {
        self.recent.since(watermark)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Origin;

    fn event(time: u64, origin: u64, payload: usize) -> Event {
        Event {
            stamp: Stamp {
                time,
                origin: Origin(origin),
            },
            topic: "revoke".into(),
            payload: vec![7; payload],
        }
    }

    #[test]
    fn oversized_and_malformed_events_are_refused_with_a_reason() {
        let mut channel = EventChannel::new(EventLimits::default());
        let Accepted::Rejected(why) = channel.accept(event(1, 1, 20_000)) else {
            panic!("oversized event accepted")
        };
        assert!(
            why.contains("20000 bytes exceeds the 16384-byte limit"),
            "{why}"
        );
        let mut no_topic = event(2, 1, 1);
        no_topic.topic.clear();
        assert!(matches!(channel.accept(no_topic), Accepted::Rejected(_)));
        assert_eq!(channel.accept(event(3, 1, 1)), Accepted::Deliver);
    }

    proptest! {
        /// However often and in whatever order events arrive, each is delivered exactly once.
        #[test]
        fn each_event_is_delivered_exactly_once(
            stamps in prop::collection::btree_set((1u64..500, 0u64..4), 1..80),
            copies in 1usize..4,
            seed in any::<u64>(),
        ) {
            let events: Vec<Event> = stamps.iter().map(|&(t, o)| event(t, o, 8)).collect();
            let mut arrivals: Vec<Event> = Vec::new();
            for _ in 0..copies {
                arrivals.extend(events.iter().cloned());
            }
            crate::shuffle(&mut arrivals, seed);
            let mut channel = EventChannel::new(EventLimits::default());
            let delivered = arrivals
                .into_iter()
                .filter(|e| channel.accept(e.clone()) == Accepted::Deliver)
                .count();
            prop_assert_eq!(delivered, events.len());
        }
    }
}
