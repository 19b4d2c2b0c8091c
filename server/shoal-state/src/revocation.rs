//! Revocations as events: topic `revoke`, payload `user=NAME` or `key=ID`, optionally
//! followed by ` for=SECONDS`. Published on any node, an event reaches every node of the
//! events' cluster (the global one when a node is in several) once, so a key leaked in one
//! region is refused in every region within a gossip round trip, ahead of the control plane's
//! own change. Refused at publish when malformed, so a typo never travels.

use std::time::Duration;

/// The topic revocations travel under.
pub const REVOKE_TOPIC: &str = "revoke";

/// How long a revocation holds when its payload says nothing: long enough for the durable
/// change (the credential disabled or deleted in PostgreSQL) to reach every node.
pub const DEFAULT_REVOCATION: Duration = Duration::from_secs(24 * 3600);

/// The longest a revocation event may ask for: past it, the durable change is what holds.
pub const MAX_REVOCATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Who a revocation refuses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revoked {
    /// Every credential of a user.
    User(String),
    /// One credential: an API key id or an S3 access key id.
    Key(String),
}

/// One revocation: who, and for how long from when a node receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub revoked: Revoked,
    pub lasts: Duration,
}

impl Revocation {
    /// Reads a `revoke` event's payload; the error says what is wrong with it.
    pub fn parse(payload: &[u8]) -> Result<Self, String> {
        const FORM: &str =
            "expected `user=NAME` or `key=ID`, optionally followed by ` for=SECONDS`";
        let text = std::str::from_utf8(payload)
            .map_err(|_| format!("revoke payload is not UTF-8; {FORM}"))?;
        let mut parts = text.split_whitespace();
        let revoked = match parts.next().and_then(|p| p.split_once('=')) {
            Some(("user", name)) => Revoked::User(name.to_string()),
            Some(("key", id)) => Revoked::Key(id.to_string()),
            _ => return Err(format!("revoke payload {text:?}: {FORM}")),
        };
        let (Revoked::User(who) | Revoked::Key(who)) = &revoked;
        if who.is_empty() || who.len() > 256 || who.contains(char::is_control) {
            return Err(format!(
                "revoke payload {text:?}: the name or key id must be 1-256 printable characters"
            ));
        }
        let lasts = match parts.next() {
            None => DEFAULT_REVOCATION,
            Some(p) => {
                let secs = p
                    .strip_prefix("for=")
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|s| (1..=MAX_REVOCATION.as_secs()).contains(s))
                    .ok_or_else(|| {
                        format!(
                            "revoke payload {text:?}: `for=` takes whole seconds from 1 to {}, \
                             got {p:?}",
                            MAX_REVOCATION.as_secs()
                        )
                    })?;
                Duration::from_secs(secs)
            }
        };
        if let Some(extra) = parts.next() {
            return Err(format!(
                "revoke payload {text:?}: unexpected {extra:?}; {FORM}"
            ));
        }
        Ok(Self { revoked, lasts })
    }

    /// The payload that [`Revocation::parse`] reads back as this revocation.
    pub fn payload(&self) -> String {
        let who = match &self.revoked {
            Revoked::User(u) => format!("user={u}"),
            Revoked::Key(k) => format!("key={k}"),
        };
        if self.lasts == DEFAULT_REVOCATION {
            who
        } else {
            format!("{who} for={}", self.lasts.as_secs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_keys_parse_with_or_without_a_period() {
        let r = Revocation::parse(b"user=mallory").unwrap();
        assert_eq!(r.revoked, Revoked::User("mallory".into()));
        assert_eq!(r.lasts, DEFAULT_REVOCATION);
        let r = Revocation::parse(b"key=AKIAEXAMPLE for=600").unwrap();
        assert_eq!(r.revoked, Revoked::Key("AKIAEXAMPLE".into()));
        assert_eq!(r.lasts, Duration::from_secs(600));
        assert_eq!(Revocation::parse(r.payload().as_bytes()).unwrap(), r);
    }

    #[test]
    fn malformed_payloads_say_what_is_wrong() {
        for (payload, words) in [
            (&b"mallory"[..], "expected `user=NAME`"),
            (b"group=admins", "expected `user=NAME`"),
            (b"user=", "1-256 printable"),
            (b"key=A for=0", "whole seconds from 1"),
            (b"key=A for=1h", "whole seconds from 1"),
            (b"key=A for=60 now", "unexpected \"now\""),
            (b"user=\xff", "not UTF-8"),
        ] {
            let e = Revocation::parse(payload).unwrap_err();
            assert!(e.contains(words), "{payload:?}: {e}");
        }
    }
}
