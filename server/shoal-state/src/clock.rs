//! Lamport time: a total order of updates across nodes without synchronized clocks.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::Origin;

/// When (in Lamport time) and where an update happened. Ordered by time, then by node, so two
/// updates never tie: the basis of last-writer-wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub time: u64,
    pub origin: Origin,
}

/// This node's Lamport clock. Lock-free: ticking is on the request path.
#[derive(Debug)]
pub struct LamportClock {
    origin: Origin,
    time: AtomicU64,
}

/// How far ahead of us a peer's clock may claim to be before we refuse to follow it: a bogus
/// or hostile stamp near `u64::MAX` must not exhaust the clock for everyone.
pub const MAX_CLOCK_JUMP: u64 = 1 << 40;

impl LamportClock {
    pub fn new(origin: Origin) -> Self {
        Self {
            origin,
            time: AtomicU64::new(0),
        }
    }

    /// A fresh stamp for a local update.
    pub fn tick(&self) -> Stamp {
        Stamp {
            time: self.time.fetch_add(1, Ordering::AcqRel) + 1,
            origin: self.origin,
        }
    }

    /// Moves the clock past a remote stamp (so our next update orders after it). Returns false,
    /// leaving the clock alone, for a stamp implausibly far ahead.
    pub fn observe(&self, remote: Stamp) -> bool {
        let now = self.time.load(Ordering::Acquire);
        if remote.time > now.saturating_add(MAX_CLOCK_JUMP) {
            return false;
        }
        self.time.fetch_max(remote.time, Ordering::AcqRel);
        true
    }

    pub fn now(&self) -> u64 {
        self.time.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_increase_and_observing_moves_past_remote_time() {
        let clock = LamportClock::new(Origin(1));
        assert_eq!(clock.tick().time, 1);
        assert!(clock.observe(Stamp {
            time: 10,
            origin: Origin(2)
        }));
        let next = clock.tick();
        assert_eq!(next.time, 11);
        assert!(
            next > Stamp {
                time: 10,
                origin: Origin(2)
            }
        );
        assert!(
            clock.observe(Stamp {
                time: 3,
                origin: Origin(2)
            }),
            "older is fine"
        );
        assert_eq!(clock.now(), 11);
    }

    #[test]
    fn an_absurd_remote_time_is_refused() {
        let clock = LamportClock::new(Origin(1));
        assert!(!clock.observe(Stamp {
            time: u64::MAX,
            origin: Origin(2)
        }));
        assert_eq!(clock.now(), 0);
        assert_eq!(clock.tick().time, 1);
    }

    #[test]
    fn stamps_tie_break_on_origin() {
        let a = Stamp {
            time: 5,
            origin: Origin(1),
        };
        let b = Stamp {
            time: 5,
            origin: Origin(2),
        };
        assert!(a < b);
    }
}
