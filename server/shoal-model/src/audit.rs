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
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub detail: AuditDetail,
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
