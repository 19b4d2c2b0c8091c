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
    pub detail: serde_json::Value,
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
