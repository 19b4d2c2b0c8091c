//! Admin accounts (argon2id) and their sessions, stored in PostgreSQL so a session made on one
//! node is valid on every node behind the load balancer.

use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use chrono::{DateTime, Utc};
use shoal_model::{AdminIdentity, AdminSummary, Session, check_admin_name};

use crate::store::{Store, insert_audit};
use crate::{ControlPlaneError, crypto};

pub const MIN_PASSWORD_LEN: usize = 12;
const MAX_PASSWORD_LEN: usize = 1024;

fn check_password(password: &str) -> Result<(), ControlPlaneError> {
    let len = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        return Err(ControlPlaneError::Invalid(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters, got {len}"
        )));
    }
    Ok(())
}

fn check_username(username: &str) -> Result<(), ControlPlaneError> {
    check_admin_name(username).map_err(ControlPlaneError::Invalid)
}

/// argon2id with the crate's recommended parameters, off the async runtime (it is slow on
/// purpose).
async fn hash_password(password: &str) -> Result<String, ControlPlaneError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let hash: PasswordHash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| ControlPlaneError::Database(format!("argon2 hashing failed: {e}")))?;
        Ok(hash.to_string())
    })
    .await
    .map_err(|e| ControlPlaneError::Database(format!("hashing task failed: {e}")))?
}

async fn verify_password(password: &str, hash: &str) -> bool {
    let password = password.to_string();
    let hash = hash.to_string();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

impl Store {
    pub async fn create_admin(
        &self,
        actor: &str,
        username: &str,
        password: &str,
    ) -> Result<(), ControlPlaneError> {
        check_username(username)?;
        check_password(password)?;
        let hash = hash_password(password).await?;
        let mut tx = self.pool().begin().await?;
        sqlx::query("INSERT INTO admins (username, password_hash) VALUES ($1, $2)")
            .bind(username)
            .bind(hash)
            .execute(&mut *tx)
            .await
            .map_err(|e| match ControlPlaneError::from(e) {
                ControlPlaneError::Conflict(_) => {
                    ControlPlaneError::Conflict(format!("admin {username:?} already exists"))
                }
                other => other,
            })?;
        // The account and its audit line commit together, or neither does.
        insert_audit(
            &mut tx,
            self.node(),
            actor,
            "admin.create",
            username,
            "ok",
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every admin account with its number of live sessions.
    pub async fn list_admins(&self) -> Result<Vec<AdminSummary>, ControlPlaneError> {
        let rows: Vec<(String, bool, DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT a.username, a.disabled, a.created_at,
                    (SELECT count(*) FROM admin_sessions s
                      WHERE s.admin_id = a.id AND s.expires_at > now())
               FROM admins a ORDER BY a.username",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(username, disabled, created_at, sessions)| AdminSummary {
                username,
                disabled,
                created_at,
                sessions,
            })
            .collect())
    }

    /// Disables (ending every session at once: sessions are checked on every request, on
    /// every node) or re-enables an admin. The last enabled admin cannot be disabled, so the
    /// console can never lock everyone out.
    pub async fn set_admin_disabled(
        &self,
        actor: &str,
        username: &str,
        disabled: bool,
    ) -> Result<(), ControlPlaneError> {
        let mut tx = self.pool().begin().await?;
        // Serializes concurrent disables so two admins cannot each disable the other.
        sqlx::query("LOCK TABLE admins IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE admins SET disabled = $2, updated_at = now() WHERE username = $1 RETURNING id",
        )
        .bind(username)
        .bind(disabled)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Err(ControlPlaneError::NotFound(format!("admin {username:?}")));
        };
        if disabled {
            let enabled: i64 = sqlx::query_scalar("SELECT count(*) FROM admins WHERE NOT disabled")
                .fetch_one(&mut *tx)
                .await?;
            if enabled == 0 {
                return Err(ControlPlaneError::Conflict(format!(
                    "admin {username:?} is the last enabled admin and cannot be disabled"
                )));
            }
            sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let action = if disabled {
            "admin.disable"
        } else {
            "admin.enable"
        };
        insert_audit(
            &mut tx,
            self.node(),
            actor,
            action,
            username,
            "ok",
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets a new password and ends every session of that admin.
    pub async fn reset_admin_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(), ControlPlaneError> {
        check_password(password)?;
        let hash = hash_password(password).await?;
        let mut tx = self.pool().begin().await?;
        let updated: Option<i64> = sqlx::query_scalar(
            "UPDATE admins SET password_hash = $2, updated_at = now() WHERE username = $1 RETURNING id",
        )
        .bind(username)
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = updated else {
            return Err(ControlPlaneError::NotFound(format!("admin {username:?}")));
        };
        sqlx::query("DELETE FROM admin_sessions WHERE admin_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.audit(
            "cli",
            "admin.reset_password",
            username,
            "ok",
            serde_json::json!({}),
        )
        .await
    }

    /// Checks a username and password and opens a session; `None` for bad credentials (the
    /// caller must not say which part was wrong). Both outcomes are audited.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        ttl: Duration,
    ) -> Result<Option<Session>, ControlPlaneError> {
        // Oversized input is refused before it reaches argon2 or the audit log.
        if check_username(username).is_err() || password.len() > MAX_PASSWORD_LEN {
            let shown: String = username.chars().take(64).collect();
            self.audit(
                &shown,
                "admin.login",
                &shown,
                "denied",
                serde_json::json!({}),
            )
            .await?;
            return Ok(None);
        }
        let row: Option<(i64, String, bool)> =
            sqlx::query_as("SELECT id, password_hash, disabled FROM admins WHERE username = $1")
                .bind(username)
                .fetch_optional(self.pool())
                .await?;
        let accepted = match &row {
            Some((_, hash, disabled)) => verify_password(password, hash).await && !disabled,
            None => {
                // Spend the same time as a real check so a failed login does not reveal
                // whether the account exists.
                hash_password(password).await?;
                false
            }
        };
        let Some((id, _, _)) = row.filter(|_| accepted) else {
            self.audit(
                username,
                "admin.login",
                username,
                "denied",
                serde_json::json!({}),
            )
            .await?;
            return Ok(None);
        };
        let token = crypto::random_token(32);
        let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
        sqlx::query(
            "INSERT INTO admin_sessions (token_sha256, admin_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(crypto::sha256(token.as_bytes()))
        .bind(id)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        self.audit(
            username,
            "admin.login",
            username,
            "ok",
            serde_json::json!({}),
        )
        .await?;
        Ok(Some(Session {
            token,
            username: username.to_string(),
            expires_at,
        }))
    }

    /// The admin a session token belongs to, if the session is live and the admin enabled.
    pub async fn session(&self, token: &str) -> Result<Option<AdminIdentity>, ControlPlaneError> {
        let username: Option<String> = sqlx::query_scalar(
            "SELECT a.username FROM admin_sessions s JOIN admins a ON a.id = s.admin_id
              WHERE s.token_sha256 = $1 AND s.expires_at > now() AND NOT a.disabled",
        )
        .bind(crypto::sha256(token.as_bytes()))
        .fetch_optional(self.pool())
        .await?;
        Ok(username.map(|username| AdminIdentity { username }))
    }

    /// Ends the session (and sweeps expired ones); audited when the session existed.
    pub async fn logout(&self, token: &str) -> Result<(), ControlPlaneError> {
        let username: Option<String> = sqlx::query_scalar(
            "WITH gone AS (
                DELETE FROM admin_sessions WHERE token_sha256 = $1 OR expires_at < now()
                RETURNING token_sha256, admin_id)
             SELECT a.username FROM gone JOIN admins a ON a.id = gone.admin_id
              WHERE gone.token_sha256 = $1",
        )
        .bind(crypto::sha256(token.as_bytes()))
        .fetch_optional(self.pool())
        .await?;
        if let Some(username) = username {
            self.audit(
                &format!("admin:{username}"),
                "admin.logout",
                &username,
                "ok",
                serde_json::json!({}),
            )
            .await?;
        }
        Ok(())
    }
}
