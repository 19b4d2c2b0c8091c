/// What a caller of the model, the admin store or the audit sink does next, without knowing
/// which database stands behind them.
///
/// `Invalid` and `NotFound` are the caller's input, `Conflict` a concurrent or duplicate write,
/// `Unavailable` means the control plane could not be reached (retry later). The console maps
/// each to its HTTP status; the messages are shown to the admin as they are.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
    /// An audit line the sink could not keep; the action it describes must not go ahead.
    #[error("{0}")]
    AuditRefused(String),
    /// Anything else the store failed with (a database error), as it described it.
    #[error("{0}")]
    Internal(String),
}
