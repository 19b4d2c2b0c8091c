//! The revocations in force on this node: every `revoke` event of the events' cluster (the
//! global one when the node is in several), held for the period it names. Checked right after
//! the caller is identified, before anything is counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::Instant;

use shoal_state::{Event, REVOKE_TOPIC, Revocation, Revoked, SharedState};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub(crate) struct Revocations {
    /// Whether any revocation was ever applied: the request path reads one flag, not the
    /// lock, on a node that never saw one.
    any: AtomicBool,
    until: Mutex<HashMap<Revoked, Instant>>,
}

impl Revocations {
    fn apply(&self, event: &Event) {
        if event.topic != REVOKE_TOPIC {
            return;
        }
        // Refused at publish when malformed; one from a node that did not check is logged.
        let revocation = match Revocation::parse(&event.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("revoke event ignored: {e}");
                return;
            }
        };
        let until = Instant::now() + revocation.lasts;
        let mut map = self.until.lock().expect("revocations");
        let now = Instant::now();
        map.retain(|_, u| *u > now);
        let held = map.entry(revocation.revoked.clone()).or_insert(until);
        *held = (*held).max(until);
        self.any.store(true, Ordering::Release);
        tracing::info!(
            revoked = ?revocation.revoked,
            seconds = revocation.lasts.as_secs(),
            "revocation in force"
        );
    }

    /// What revokes this caller, if anything does: the user, or the credential it presented.
    pub(crate) fn revoked(&self, user: &str, key_id: &str) -> Option<Revoked> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let map = self.until.lock().expect("revocations");
        let now = Instant::now();
        [
            Revoked::User(user.to_string()),
            Revoked::Key(key_id.to_string()),
        ]
        .into_iter()
        .find(|r| map.get(r).is_some_and(|u| *u > now))
    }
}

/// Applies the revocations delivered so far, then each new one, until `stop`.
pub(crate) async fn follow(
    events: SharedState,
    revocations: std::sync::Arc<Revocations>,
    stop: CancellationToken,
) {
    let mut incoming = events.subscribe();
    // Subscribed first, so none falls between the two; applying one twice changes nothing.
    for e in events.delivered() {
        revocations.apply(&e);
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            received = incoming.recv() => match received {
                Ok(e) => revocations.apply(&e),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "revocations: events arrived faster than read; re-reading those kept");
                    for e in events.delivered() {
                        revocations.apply(&e);
                    }
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use shoal_state::{Origin, Stamp};

    use super::*;

    fn event(topic: &str, payload: &str) -> Event {
        Event {
            stamp: Stamp {
                time: 1,
                origin: Origin(1),
            },
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_revoked_user_or_key_is_refused_and_nothing_else() {
        let r = Revocations::default();
        assert_eq!(r.revoked("mallory", "k1"), None, "nothing revoked yet");
        r.apply(&event("revoke", "user=mallory"));
        r.apply(&event("revoke", "key=AKIALEAKED for=60"));
        r.apply(&event("cache-flush", "user=alice"));
        r.apply(&event("revoke", "not a revocation"));
        assert_eq!(
            r.revoked("mallory", "k1"),
            Some(Revoked::User("mallory".into()))
        );
        assert_eq!(
            r.revoked("bob", "AKIALEAKED"),
            Some(Revoked::Key("AKIALEAKED".into()))
        );
        assert_eq!(
            r.revoked("alice", "k2"),
            None,
            "another topic revokes nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_revocation_lapses_after_its_period() {
        let r = Revocations::default();
        r.apply(&event("revoke", "user=mallory for=60"));
        tokio::time::advance(std::time::Duration::from_secs(59)).await;
        assert!(r.revoked("mallory", "k").is_some());
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert!(r.revoked("mallory", "k").is_none());
    }
}
