//! Audit lines and where they go. The data plane queues one per decision and the console one
//! per node-local admin change; neither knows how the line is kept (the control plane
//! journals it on disk and ships it to PostgreSQL), only whether it was.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// One audit line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub event_id: uuid::Uuid,
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: AuditDetail,
}

/// `at` as chrono writes it (RFC 3339, `Z`, 0, 3, 6 or 9 fraction digits), without the
/// formatting machinery chrono's `Display` goes through: every request's line has one.
fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    match Text::rfc3339(at) {
        Some(text) => serializer.serialize_str(text.as_str()),
        // Years of more than four digits and leap seconds: chrono's own text.
        None => at.serialize(serializer),
    }
}

impl AuditEntry {
    /// Calls `f` with `at` as the line's JSON holds it (without the quotes; the text never
    /// needs escaping), for a store that writes the line itself: the control plane writes
    /// its journal line and its `COPY` row from the entry, formatting the time once for both.
    /// Lent rather than returned, so the text stays on the stack.
    pub fn with_at_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match Text::rfc3339(&self.at) {
            Some(text) => f(text.as_str()),
            None => f(&self.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }

    /// The detail's JSON text.
    pub fn detail_json(&self) -> &str {
        self.detail.as_json()
    }
}

/// [`rfc3339`]'s text, on the stack.
#[derive(Default)]
struct Text {
    bytes: [u8; 30],
    len: usize,
}

impl Text {
    fn byte(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    /// `value` in `n` digits, zero-padded.
    fn digits(&mut self, mut value: u32, n: usize) {
        for i in (0..n).rev() {
            self.bytes[self.len + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += n;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("ASCII digits")
    }

    /// `None` for what this does not write: years past four digits and leap seconds.
    fn rfc3339(at: &DateTime<Utc>) -> Option<Self> {
        use chrono::{Datelike, Timelike};
        let nanos = at.nanosecond();
        if !(0..=9999).contains(&at.year()) || nanos >= 1_000_000_000 {
            return None;
        }
        let mut text = Text::default();
        text.digits(at.year() as u32, 4);
        let fields = [at.month(), at.day(), at.hour(), at.minute(), at.second()];
        for (value, separator) in fields.into_iter().zip(*b"--T::") {
            text.byte(separator);
            text.digits(value, 2);
        }
        let (fraction, digits) = match nanos {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
            n if n % 1_000 == 0 => (n / 1_000, 6),
            n => (n, 9),
        };
        if digits > 0 {
            text.byte(b'.');
            text.digits(fraction, digits);
        }
        text.byte(b'Z');
        Some(text)
    }
}

/// An audit line's detail, a JSON object encoded once where the line is made: a request's
/// line builds no JSON tree, and the journal copies the text instead of walking one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditDetail(Box<serde_json::value::RawValue>);

impl AuditDetail {
    /// The detail `detail` serializes to (a struct or map of the line's facts).
    pub fn of<T: Serialize + ?Sized>(detail: &T) -> Self {
        Self(serde_json::value::to_raw_value(detail).expect("audit details serialize"))
    }

    fn as_json(&self) -> &str {
        self.0.get()
    }
}

impl From<serde_json::Value> for AuditDetail {
    fn from(value: serde_json::Value) -> Self {
        Self::of(&value)
    }
}

impl PartialEq for AuditDetail {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

/// Where a node's audit lines go. A trait object, so the data plane can be handed the
/// control plane's audit log without depending on its database.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Keeps the line, returning once it is kept. [`ModelError::AuditRefused`] when it
    /// cannot be: the caller then refuses what the line describes (nothing goes unaudited).
    async fn record(&self, entry: AuditEntry) -> Result<(), ModelError>;
}

/// An audit sink whose backlog an admin can see: the console's overview shows lines waiting
/// for the control plane.
pub trait AuditQueue: AuditSink {
    fn backlog(&self) -> AuditBacklog;
}

/// Audit lines kept on the node but not yet stored in the control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditBacklog {
    /// The control plane is not taking lines: they wait on the node.
    pub spooling: bool,
    /// Lines waiting.
    pub spooled: u64,
    /// Bytes waiting.
    pub spool_bytes: u64,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let chrono_text = |at: &DateTime<Utc>| serde_json::to_string(at).unwrap();
        let ours = |at: &DateTime<Utc>| {
            let mut out = Vec::new();
            rfc3339(at, &mut serde_json::Serializer::new(&mut out)).unwrap();
            String::from_utf8(out).unwrap()
        };
        let base = Utc.with_ymd_and_hms(2026, 12, 7, 9, 5, 3).unwrap();
        let mut times = vec![
            base,
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc::now(),
        ];
        for nanos in [
            1,
            7_000,
            120_000_000,
            999_999_999,
            123_456_789,
            5_000_000,
            40_500,
        ] {
            times.push(base + chrono::Duration::nanoseconds(nanos));
        }
        // A spread of instants over four centuries, each with its own fraction.
        let mut seed: u64 = 0x5eed;
        for _ in 0..2000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let secs = (seed >> 20) % (400 * 365 * 86_400);
            let nanos = (seed % 1_000_000_000) as u32;
            let nanos =
                [nanos, nanos / 1000 * 1000, nanos / 1_000_000 * 1_000_000][(seed % 3) as usize];
            times.push(
                Utc.timestamp_opt(secs as i64 + 946_684_800 - 200 * 365 * 86_400, nanos)
                    .unwrap(),
            );
        }
        let mut entry = AuditEntry {
            event_id: uuid::Uuid::nil(),
            at: base,
            actor: "a".into(),
            action: "request".into(),
            target: "t".into(),
            outcome: "allowed".into(),
            detail: serde_json::json!({}).into(),
        };
        for at in &times {
            assert_eq!(ours(at), chrono_text(at), "{at:?}");
            // The text a store writes as the column is the JSON's string.
            entry.at = *at;
            let text = entry.with_at_text(|text| {
                assert!(!text.contains(['"', '\\']), "{text}");
                serde_json::json!(text).to_string()
            });
            assert_eq!(text, chrono_text(at));
        }
        // The line reads back as the instant it was.
        entry.at = base + chrono::Duration::nanoseconds(120_000_000);
        let back: AuditEntry =
            serde_json::from_str(&serde_json::to_string(&entry).unwrap()).unwrap();
        assert_eq!(back, entry);
    }
}
