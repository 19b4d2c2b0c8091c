//! Gossip error accounting: memberlist logs one line per bad packet, so a peer with the wrong
//! key (or an attacker) could flood the logs. [`GossipLogFilter`] counts every memberlist
//! warning and error by message, lets only a few per message through each window, and keeps
//! the counts for `/cluster/status`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};

/// memberlist's tracing target prefix.
const GOSSIP_TARGET: &str = "memberlist";

/// Lines let through per message per window; the rest are counted and summarized.
const PER_WINDOW: u64 = 5;
const WINDOW: Duration = Duration::from_secs(10);

/// Counts of gossip warnings and errors; cheap to clone and share.
#[derive(Clone, Default)]
pub struct GossipErrors {
    /// Keyed by call site (file and line), so the map is bounded by memberlist's code, not by
    /// what peers send; the message shown is the first one seen there.
    inner: Arc<Mutex<BTreeMap<&'static str, Entry>>>,
}

#[derive(Default)]
struct Entry {
    message: String,
    total: u64,
    window_start: Option<Instant>,
    in_window: u64,
    suppressed: u64,
}

/// One kind of gossip error and how often it happened since start.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GossipErrorCount {
    pub message: String,
    pub count: u64,
}

impl GossipErrors {
    /// Every kind seen so far, most frequent first.
    pub fn counts(&self) -> Vec<GossipErrorCount> {
        let mut counts: Vec<GossipErrorCount> = self
            .inner
            .lock()
            .expect("gossip error counts")
            .values()
            .map(|e| GossipErrorCount {
                message: e.message.clone(),
                count: e.total,
            })
            .collect();
        counts.sort_by_key(|c| std::cmp::Reverse(c.count));
        counts
    }

    /// Lines held back since the last call, per message (for a periodic summary line).
    pub fn take_suppressed(&self) -> Vec<GossipErrorCount> {
        let mut inner = self.inner.lock().expect("gossip error counts");
        inner
            .values_mut()
            .filter(|e| e.suppressed > 0)
            .map(|e| GossipErrorCount {
                message: e.message.clone(),
                count: std::mem::take(&mut e.suppressed),
            })
            .collect()
    }

    /// Records one event; `true` if it may be written out.
    fn record(&self, site: &'static str, message: impl FnOnce() -> String) -> bool {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("gossip error counts");
        let entry = inner.entry(site).or_insert_with(|| Entry {
            message: message(),
            ..Entry::default()
        });
        entry.total += 1;
        let fresh = entry
            .window_start
            .is_none_or(|start| now.duration_since(start) >= WINDOW);
        if fresh {
            entry.window_start = Some(now);
            entry.in_window = 0;
        }
        entry.in_window += 1;
        if entry.in_window > PER_WINDOW {
            entry.suppressed += 1;
            false
        } else {
            true
        }
    }
}

/// A per-layer filter for the log output: everything passes except memberlist warnings and
/// errors beyond the per-window allowance.
#[derive(Clone)]
pub struct GossipLogFilter {
    errors: GossipErrors,
}

impl GossipLogFilter {
    pub fn new() -> (Self, GossipErrors) {
        let errors = GossipErrors::default();
        (
            Self {
                errors: errors.clone(),
            },
            errors,
        )
    }
}

fn is_gossip_problem(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with(GOSSIP_TARGET) && *meta.level() <= Level::WARN
}

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Filter<S> for GossipLogFilter {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        if !is_gossip_problem(event.metadata()) {
            return true;
        }
        let site = event.metadata().name();
        self.errors.record(site, || {
            let mut visitor = MessageVisitor(String::new());
            event.record(&mut visitor);
            let message = if visitor.0.is_empty() {
                site.to_string()
            } else {
                visitor.0
            };
            shorten(message)
        })
    }
}

/// At most 160 characters (messages can embed peer-sent ids of any length and alphabet).
fn shorten(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(160) {
        message.truncate(cut);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(shorten("é".repeat(200)).chars().count(), 160);
        assert_eq!(shorten("short".into()), "short");
    }

    #[test]
    fn only_a_few_lines_per_window_pass_and_all_are_counted() {
        let (filter, errors) = GossipLogFilter::new();
        let passed = (0..100)
            .filter(|i| {
                filter.errors.record("listener.rs:194", || {
                    format!("failed to decode message {i}")
                })
            })
            .count();
        assert_eq!(passed as u64, PER_WINDOW);
        assert_eq!(
            errors.counts(),
            [GossipErrorCount {
                message: "failed to decode message 0".into(),
                count: 100
            }]
        );
        assert_eq!(errors.take_suppressed()[0].count, 100 - PER_WINDOW);
        assert!(
            errors.take_suppressed().is_empty(),
            "summaries are taken once"
        );
    }
}
