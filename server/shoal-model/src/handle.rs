//! The node's live config as its readers see it: the revision in force behind one `ArcSwap`
//! (readers never lock and never see half a change) and the control plane's status on a
//! `watch` channel, so a reader can wait for the next revision. The control plane's watcher is
//! the only writer; the data plane and the console only read.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use crate::ConfigSnapshot;

/// Where the config in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigSource {
    Database,
    Snapshot,
}

/// What made the node look at the database: shown in status so an operator (and a test) can
/// tell a notification from the safety-net poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Connect,
    Notification,
    Poll,
    Snapshot,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejection {
    pub revision: i64,
    pub error: String,
}

/// The node's view of the control plane, published on every change.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ControlPlaneStatus {
    pub connected: bool,
    /// True once the database was reached since this process started.
    pub reached: bool,
    pub revision: Option<i64>,
    pub source: Option<ConfigSource>,
    pub applied_at: Option<DateTime<Utc>>,
    pub applied_via: Option<Trigger>,
    pub disconnected_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The newest revision refused by validation; the previous config stays in force.
    pub rejected: Option<Rejection>,
    /// Set when the snapshot file could not be read at start or written after an apply.
    pub snapshot_error: Option<String>,
    pub migrations_applied: Option<usize>,
}

/// Read side of the node's config; cheap to clone and share.
#[derive(Clone)]
pub struct ConfigHandle {
    config: Arc<ArcSwapOption<ConfigSnapshot>>,
    status: watch::Receiver<ControlPlaneStatus>,
}

impl ConfigHandle {
    /// Reads what the writer stores in `config` and publishes on `status`.
    pub fn new(
        config: Arc<ArcSwapOption<ConfigSnapshot>>,
        status: watch::Receiver<ControlPlaneStatus>,
    ) -> Self {
        Self { config, status }
    }

    /// The config in force; `None` until the first load from the database or a snapshot.
    pub fn current(&self) -> Option<Arc<ConfigSnapshot>> {
        self.config.load_full()
    }

    pub fn status(&self) -> ControlPlaneStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<ControlPlaneStatus> {
        self.status.clone()
    }

    /// Waits until this node applied `revision` or later; returns the revision in force, or
    /// `None` if the wait timed out or the watcher stopped.
    pub async fn wait_for_revision(&self, revision: i64, timeout: Duration) -> Option<i64> {
        let mut rx = self.status.clone();
        let reached = rx.wait_for(|s| s.revision.is_some_and(|r| r >= revision));
        match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(status)) => status.revision,
            _ => None,
        }
    }
}
