//! Following the control plane: load at start, then LISTEN/NOTIFY plus a revision poll, with
//! reconnect backoff and a local snapshot for when PostgreSQL is away.
//!
//! The watcher is the only writer of the node's live config. It swaps a whole validated
//! [`ConfigSnapshot`] in one step (arc-swap), so readers never lock and never see half a change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use chrono::Utc;
use rand::Rng as _;
use shoal_lifecycle::Stage;
use shoal_model::{
    ConfigHandle, ConfigSnapshot, ConfigSource, ControlPlaneStatus, Rejection, Trigger,
};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{ControlPlaneError, db, load, snapshot};

/// The channel the schema's triggers notify on.
const CHANNEL: &str = "shoal_config";

#[derive(Debug, Clone)]
pub struct WatcherOptions {
    pub poll_interval: Duration,
    pub connect_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub migrate_on_start: bool,
    pub snapshot_path: PathBuf,
}

impl WatcherOptions {
    pub fn from_config(config: &shoal_config::NodeConfig) -> Self {
        let cp = &config.control_plane;
        Self {
            poll_interval: cp.poll_interval,
            connect_timeout: cp.connect_timeout,
            reconnect_min: cp.reconnect_min,
            reconnect_max: cp.reconnect_max,
            migrate_on_start: cp.migrate_on_start,
            snapshot_path: config.data_dir.join("config-snapshot.json"),
        }
    }
}

/// Starts following the control plane as the task `config watcher` of `stage`, until the
/// stage stops (an apply in progress finishes first).
pub fn spawn(pool: PgPool, options: WatcherOptions, stage: &Stage) -> ConfigHandle {
    let config = Arc::new(ArcSwapOption::empty());
    let (status_tx, status_rx) = watch::channel(ControlPlaneStatus::default());
    let watcher = Watcher {
        pool,
        options,
        config: config.clone(),
        status: status_tx,
        migrated: false,
        logged_backwards: None,
    };
    stage.spawn("config watcher", watcher.run(stage.token()));
    ConfigHandle::new(config, status_rx)
}

struct Watcher {
    pool: PgPool,
    options: WatcherOptions,
    config: Arc<ArcSwapOption<ConfigSnapshot>>,
    status: watch::Sender<ControlPlaneStatus>,
    migrated: bool,
    /// Database revision last reported as behind ours, so it is logged once, not per poll.
    logged_backwards: Option<i64>,
}

/// What the LISTEN task reports to the watcher.
enum Listen {
    Notified,
    /// The LISTEN connection dropped and came back: notifications may have been lost.
    Resumed,
    Failed(ControlPlaneError),
}

impl Watcher {
    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(self.options.reconnect_min, self.options.reconnect_max);
        let mut tried_snapshot = false;
        loop {
            // Not raced against `cancel` here: an apply in progress (swap + snapshot write)
            // finishes before the watcher stops; `follow` checks `cancel` between steps.
            let Err(error) = self.follow(&cancel).await else {
                return;
            };
            if self.status.borrow().connected {
                backoff.reset();
            }
            self.mark_disconnected(&error);
            if !tried_snapshot && self.config.load().is_none() {
                tried_snapshot = true;
                self.start_from_snapshot();
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_wait()) => {}
            }
        }
    }

    /// One connected session: returns `Ok` only on cancellation.
    async fn follow(&mut self, cancel: &CancellationToken) -> Result<(), ControlPlaneError> {
        let connect = tokio::time::timeout(self.options.connect_timeout, async {
            let mut l = PgListener::connect_with(&self.pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, ControlPlaneError>(l)
        });
        let listener = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            connected = connect => connected.map_err(|_| {
                ControlPlaneError::Unavailable(format!(
                    "no connection within {}",
                    humantime_secs(self.options.connect_timeout)
                ))
            })??,
        };
        if self.options.migrate_on_start && !self.migrated {
            let applied = db::migrate(&self.pool).await?;
            self.migrated = true;
            if applied > 0 {
                tracing::info!(applied, "applied database migrations");
            } else {
                tracing::info!("database schema up to date");
            }
            self.status
                .send_modify(|s| s.migrations_applied = Some(applied));
        }
        self.mark_connected();
        self.catch_up(Trigger::Connect).await?;

        let (events_tx, mut events) = mpsc::channel(16);
        #[expect(
            clippy::disallowed_methods,
            reason = "a child of the watcher task: aborted when this connection's loop ends"
        )]
        let listen_task = tokio::spawn(listen(listener, events_tx));
        let _stop_listen = AbortOnDrop(listen_task);
        let mut poll = tokio::time::interval(self.options.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                event = events.recv() => match event {
                    Some(Listen::Notified) => self.catch_up(Trigger::Notification).await?,
                    Some(Listen::Resumed) => {
                        tracing::info!("LISTEN connection was re-established; checking for missed changes");
                        self.catch_up(Trigger::Connect).await?
                    }
                    Some(Listen::Failed(e)) => return Err(e),
                    None => return Err(ControlPlaneError::Unavailable("LISTEN task ended".into())),
                },
                _ = poll.tick() => self.catch_up(Trigger::Poll).await?,
            }
        }
    }

    /// Loads and applies the database's revision if it is newer than the one in force.
    async fn catch_up(&mut self, trigger: Trigger) -> Result<(), ControlPlaneError> {
        let head = load::head_revision(&self.pool).await?;
        let (applied, source) = {
            let s = self.status.borrow();
            (s.revision, s.source)
        };
        if let Some(applied) = applied {
            if head < applied {
                if self.logged_backwards != Some(head) {
                    self.logged_backwards = Some(head);
                    let error = format!(
                        "database is at config revision {head}, behind revision {applied} in force \
                         on this node (restored from an older backup?); keeping revision {applied}. \
                         To apply the database's config, run: UPDATE config_head SET revision = {}",
                        applied + 1
                    );
                    tracing::error!(head, applied, "{error}");
                    self.status.send_modify(|s| {
                        s.rejected = Some(Rejection {
                            revision: head,
                            error,
                        })
                    });
                }
                return Ok(());
            }
            if head == applied && source == Some(ConfigSource::Database) {
                return Ok(());
            }
        }
        if self
            .status
            .borrow()
            .rejected
            .as_ref()
            .is_some_and(|r| r.revision == head)
        {
            return Ok(());
        }
        match load::load_config(&self.pool).await {
            Ok(config) => {
                self.apply(config, ConfigSource::Database, trigger).await;
                Ok(())
            }
            Err(ControlPlaneError::Invalid(error)) => {
                tracing::error!(
                    revision = head,
                    in_force = applied,
                    "config revision refused, previous config stays in force: {error}"
                );
                self.status.send_modify(|s| {
                    s.rejected = Some(Rejection {
                        revision: head,
                        error,
                    })
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn apply(&mut self, config: ConfigSnapshot, source: ConfigSource, via: Trigger) {
        let revision = config.revision;
        let config = Arc::new(config);
        self.config.store(Some(config.clone()));
        let now = Utc::now();
        self.status.send_modify(|s| {
            s.revision = Some(revision);
            s.source = Some(source);
            s.applied_at = Some(now);
            s.applied_via = Some(via);
            if s.rejected.as_ref().is_some_and(|r| r.revision <= revision) {
                s.rejected = None;
            }
        });
        self.logged_backwards = None;
        tracing::info!(revision, source = ?source, via = ?via, "config applied");
        if source == ConfigSource::Database {
            let path = self.options.snapshot_path.clone();
            let written =
                tokio::task::spawn_blocking(move || snapshot::write(&path, &config)).await;
            let error = match written {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("snapshot task failed: {e}")),
            };
            if let Some(e) = &error {
                tracing::warn!("could not save config snapshot: {e}");
            }
            self.status.send_modify(|s| s.snapshot_error = error);
        }
    }

    fn start_from_snapshot(&mut self) {
        let path = &self.options.snapshot_path;
        match snapshot::read(path) {
            Ok(Some(stored)) => {
                tracing::warn!(
                    revision = stored.config.revision,
                    written_at = %stored.written_at,
                    path = %path.display(),
                    "control plane unreachable at start: serving the config snapshot until it is back"
                );
                let revision = stored.config.revision;
                self.config.store(Some(Arc::new(stored.config)));
                self.status.send_modify(|s| {
                    s.revision = Some(revision);
                    s.source = Some(ConfigSource::Snapshot);
                    s.applied_at = Some(Utc::now());
                    s.applied_via = Some(Trigger::Snapshot);
                });
            }
            Ok(None) => tracing::warn!(
                path = %path.display(),
                "control plane unreachable at start and no config snapshot exists yet; not ready until the database is reached"
            ),
            Err(e) => {
                tracing::error!(
                    "control plane unreachable at start and the snapshot is unusable: {e}"
                );
                self.status
                    .send_modify(|s| s.snapshot_error = Some(e.to_string()));
            }
        }
    }

    fn mark_connected(&mut self) {
        let before = self.status.borrow().clone();
        if !before.connected {
            match before.disconnected_since {
                Some(since) if before.reached => tracing::info!(
                    down_for_s = (Utc::now() - since).num_milliseconds() as f64 / 1000.0,
                    "control plane reachable again"
                ),
                _ => tracing::info!("control plane connected"),
            }
        }
        self.status.send_modify(|s| {
            s.connected = true;
            s.reached = true;
            s.disconnected_since = None;
            s.last_error = None;
        });
    }

    /// Logs once per outage (the first failure), not once per retry.
    fn mark_disconnected(&mut self, error: &ControlPlaneError) {
        let message = error.to_string();
        let first_failure = {
            let s = self.status.borrow();
            s.connected || s.disconnected_since.is_none()
        };
        if first_failure {
            let revision = self.status.borrow().revision;
            tracing::warn!(
                serving_revision = revision,
                "control plane unreachable, serving the last known config and retrying with backoff: {message}"
            );
        } else {
            tracing::debug!("control plane still unreachable: {message}");
        }
        self.status.send_modify(|s| {
            s.connected = false;
            s.disconnected_since.get_or_insert_with(Utc::now);
            s.last_error = Some(message);
        });
    }
}

/// Capped exponential backoff with equal jitter: each wait is half the current step plus a
/// random part of the other half, so the nodes that lost the database together do not all
/// come back in the same instant, and none waits less than half a step.
struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            step: min,
        }
    }

    /// After a session that was connected: the next outage starts from the shortest wait.
    fn reset(&mut self) {
        self.step = self.min;
    }

    fn next_wait(&mut self) -> Duration {
        let half = self.step / 2;
        let wait = half + rand::rng().random_range(Duration::ZERO..=half);
        self.step = (self.step * 2).min(self.max);
        wait
    }
}

/// Forwards notifications; runs in its own task because a half-read message must never be
/// dropped by a `select!` on the main loop.
async fn listen(mut listener: PgListener, events: mpsc::Sender<Listen>) {
    loop {
        let event = match listener.try_recv().await {
            Ok(Some(_)) => Listen::Notified,
            Ok(None) => Listen::Resumed,
            Err(e) => Listen::Failed(e.into()),
        };
        let failed = matches!(event, Listen::Failed(_));
        if events.send(event).await.is_err() || failed {
            return;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap_with_half_a_step_of_jitter_and_restart_after_a_reset() {
        let mut backoff = Backoff::new(50 * MS, 500 * MS);
        for _ in 0..3 {
            let waits: Vec<Duration> = (0..8).map(|_| backoff.next_wait()).collect();
            let steps = [50, 100, 200, 400, 500, 500, 500, 500];
            for (wait, step) in waits.iter().zip(steps) {
                let step = step * MS;
                assert!(
                    *wait >= step / 2 && *wait <= step,
                    "{wait:?} outside {:?}..={step:?} in {waits:?}",
                    step / 2
                );
            }
            backoff.reset();
        }
    }

    #[test]
    fn the_jitter_spreads_the_waits_of_nodes_that_failed_together() {
        let waits: std::collections::BTreeSet<Duration> = (0..64)
            .map(|_| Backoff::new(MS * 400, MS * 400).next_wait())
            .collect();
        assert!(waits.len() > 32, "64 nodes' first waits: {waits:?}");
    }
}
