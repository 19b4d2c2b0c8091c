//! Entry points for the fuzz targets in `fuzz/` (`scripts/fuzz`). cargo-fuzz builds with
//! `--cfg fuzzing` and the tests below replay the targets' inputs, so normal builds never
//! contain this module, and the decoder and replica stay private to the crate.

use std::time::Duration;

use crate::wire::{self, Batch, Compact, Msg, Span};
use crate::{CacheLimits, CounterKey, EventLimits, Origin, WindowSpec, replica::Replica};

/// A fixed clock (2027-01-15), so a crashing input replays the same way on any day.
const NOW: u64 = 1_800_000_000_000;

/// Decodes bytes as a peer's state message; only a panic (or a hang) is a finding.
pub fn decode(bytes: &[u8]) {
    let _ = wire::decode(bytes);
}

/// What a node does with a peer's state message: decode it, then merge or answer it the
/// way `node::receive::handle` does (minus the sending, as there is no cluster), on a replica
/// that already holds a little local state so digests and shard transfers have data to hash.
/// A decoded message must also encode again, since replies and replays re-send parts.
pub fn receive(bytes: &[u8]) {
    let Ok(envelope) = wire::decode(bytes) else {
        return;
    };
    let replica = Replica::new(
        Origin(1),
        WindowSpec::DEFAULTS.to_vec(),
        16,
        CacheLimits::default(),
        EventLimits::default(),
    );
    replica.set_node("local");
    let key = CounterKey::new("alice", "bucket/reports", "read").expect("valid key");
    replica.increment(&key, 3, NOW);
    match envelope.msg {
        Msg::Batch(batch) => {
            replica.apply_batch(batch, NOW);
            replay_all(&replica);
        }
        Msg::Digest(digest) => {
            let diff = replica.compare(&digest);
            if diff.they_lack {
                let in_flight = Duration::from_millis(50);
                reencode(Msg::SyncReply(
                    replica.serve_sync(&digest.have, NOW, in_flight).0,
                ));
            }
            reencode(Msg::Shards(replica.shard_state(&diff.shards, NOW, true)));
        }
        Msg::SyncRequest { have } => {
            reencode(Msg::SyncReply(
                replica.serve_sync(&have, NOW, Duration::ZERO).0,
            ));
        }
        Msg::SyncReply(reply) => {
            replica.apply_sync_reply(reply, NOW);
            replay_all(&replica);
        }
        Msg::Shards(state) => {
            let shards = state.shards.clone();
            replica.apply_shards(state, NOW);
            reencode(Msg::Shards(replica.shard_state(&shards, NOW, false)));
        }
        Msg::Checks(checks) => {
            // The owner's side of a strict check, with the same guards as
            // `node::receive::handle`.
            for check in checks {
                if check.key.check().is_ok() && (1..=1_000_000).contains(&check.cost) {
                    let window = usize::from(check.window).min(replica.windows().len() - 1);
                    replica.decide(&check.key, window, check.limit, check.cost, NOW, true);
                    replica.totals(&check.key, NOW);
                }
            }
        }
        Msg::Missing(gaps) => {
            for gap in gaps.iter().take(256) {
                replica.gap(gap.origin);
                let batches = replica.logged_batches(gap.origin, gap.after, gap.before, 256);
                reencode(Msg::Relay(vec![Span {
                    limit: gap.limit,
                    again: false,
                    batches: batches.iter().map(|b| Compact::from(&**b)).collect(),
                }]));
            }
        }
        Msg::Relay(spans) => {
            for span in spans {
                for batch in span.batches.into_iter().map(Batch::from) {
                    replica.distrust_watermark_past(batch.origin, batch.seq);
                    replica.apply_batch(batch, NOW);
                }
            }
            replay_all(&replica);
        }
        msg @ (Msg::Verdicts(_) | Msg::Deferred(_)) => reencode(msg),
    }
    replica.digest(NOW);
    replica.sweep(NOW);
}

/// Everything the replica would replay to a joining node, batches from peers included.
fn replay_all(replica: &Replica) {
    reencode(Msg::SyncReply(
        replica.serve_sync(&[], NOW, Duration::ZERO).0,
    ));
}

fn reencode(msg: Msg) {
    let bytes = wire::encode("local", msg);
    assert!(
        wire::decode(&bytes).is_ok(),
        "a message this node encodes does not decode"
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use shoal_config::fuzzing::{edited, inputs};

    use super::*;

    const TARGET: &str = "gossip_state_message";

    #[test]
    fn every_seed_and_corpus_message_is_handled_without_a_panic() {
        let inputs = inputs(TARGET);
        let decoded = inputs.iter().filter(|i| wire::decode(i).is_ok()).count();
        assert!(
            decoded > 0,
            "no seed decodes: the seeds no longer match the wire format"
        );
        for input in &inputs {
            receive(input);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn edited_messages_are_handled_without_a_panic(input in edited(TARGET)) {
            receive(&input);
        }
    }
}
