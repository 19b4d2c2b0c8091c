//! Connecting to PostgreSQL and migrating its schema.

use std::time::Duration;

use shoal_config::ControlPlaneConfig;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::ControlPlaneError;

/// Migrations embedded at build time, so a node never depends on files beside its binary.
fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("../../migrations");
    migrator.set_ignore_missing(true);
    // We hold our own lock; sqlx's would be a second, redundant one.
    migrator.set_locking(false);
    migrator
}

/// Arbitrary but fixed: every Shoal node contends on this advisory lock to migrate.
const MIGRATION_LOCK: i64 = 0x5348_4f41_4c4d_4947; // "SHOALMIG"

/// Where the database is, without the password, for logs and error messages.
pub fn describe_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}/{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432),
            u.path().trim_start_matches('/')
        ),
        Err(_) => "<unparseable database URL>".to_string(),
    }
}

/// A pool that connects on first use: a node must start (and serve its snapshot) even when
/// PostgreSQL is down, so nothing here waits for the database.
pub fn pool(config: &ControlPlaneConfig, application: &str) -> Result<PgPool, ControlPlaneError> {
    let url = config.database_url().expose();
    let options: PgConnectOptions = url.parse().map_err(|_| {
        ControlPlaneError::Invalid(format!(
            "database URL for {} is not a valid PostgreSQL URL",
            describe_url(url)
        ))
    })?;
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.connect_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_lazy_with(options.application_name(application)))
}

/// Applies pending migrations once across any number of nodes starting together: the first
/// takes the advisory lock and migrates, the others wait, then find nothing to do.
/// Returns the number of migrations this call applied.
///
/// Migrations this binary does not know (a newer node already ran them during a rolling
/// upgrade) are tolerated, since every migration is additive.
pub async fn migrate(pool: &PgPool) -> Result<usize, ControlPlaneError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = run_pending(pool).await;
    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn run_pending(pool: &PgPool) -> Result<usize, ControlPlaneError> {
    let table_exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    let before: i64 = if table_exists {
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?
    } else {
        0
    };
    migrator().run(pool).await?;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(after - before).unwrap_or(0))
}

/// Number of migrations this binary carries, for status output.
pub fn known_migrations() -> usize {
    migrator().iter().count()
}
