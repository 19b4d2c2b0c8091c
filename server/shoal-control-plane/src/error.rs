/// Everything that can go wrong talking to or validating the control plane.
///
/// Variants map to what a caller does next: `Invalid` and `NotFound` are the caller's input,
/// `Conflict` is a concurrent or duplicate write, `Unavailable` means PostgreSQL could not be
/// reached (retry later; a node keeps serving its last config meanwhile).
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("config snapshot {path}: {message}")]
    Snapshot { path: String, message: String },
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for ControlPlaneError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => ControlPlaneError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("23505") => ControlPlaneError::Conflict(format!(
                    "already exists ({})",
                    db.constraint().unwrap_or("unique constraint")
                )),
                Some("23514") | Some("23502") | Some("22P02") | Some("23503") => {
                    ControlPlaneError::Invalid(db.message().to_string())
                }
                // admin_shutdown, crash_shutdown, cannot_connect_now, connection exceptions
                Some(c) if c.starts_with("57P") || c.starts_with("08") => {
                    ControlPlaneError::Unavailable(db.message().to_string())
                }
                _ => ControlPlaneError::Database(db.message().to_string()),
            },
            _ => ControlPlaneError::Database(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for ControlPlaneError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => match ControlPlaneError::from(inner) {
                ControlPlaneError::Unavailable(m) => ControlPlaneError::Unavailable(m),
                other => ControlPlaneError::Migration(other.to_string()),
            },
            other => ControlPlaneError::Migration(other.to_string()),
        }
    }
}

impl ControlPlaneError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ControlPlaneError::Unavailable(_))
    }
}

/// What the admin store's callers see: the outcomes they act on, anything else with its
/// message as it is.
impl From<ControlPlaneError> for shoal_model::ModelError {
    fn from(e: ControlPlaneError) -> Self {
        use shoal_model::ModelError;
        match e {
            ControlPlaneError::Invalid(m) => ModelError::Invalid(m),
            ControlPlaneError::NotFound(m) => ModelError::NotFound(m),
            ControlPlaneError::Conflict(m) => ModelError::Conflict(m),
            ControlPlaneError::Unavailable(m) => ModelError::Unavailable(m),
            other => ModelError::Internal(other.to_string()),
        }
    }
}
