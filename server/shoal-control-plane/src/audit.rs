//! The decision audit log: every data-plane decision becomes a row in `audit_log`, written in
//! batches. When PostgreSQL cannot take them, batches go to a local append-only spool file
//! (one JSON line per record, fsynced per batch) and are replayed, oldest first, once it is
//! back. Records carry a unique `event_id` and the insert ignores ids already stored, so a
//! replay interrupted half-way and started again writes nothing twice.
//!
//! Durability: a record is safe once inserted or once its batch is fsynced to the spool; the
//! records still queued in memory (at most `flush_interval` worth) are written on shutdown but
//! lost if the process is killed. While the spool holds anything, new batches are appended to
//! it rather than inserted, so each node's records reach the table in the order they were
//! made. A spool over `spool_max_bytes` refuses new records (`record` fails), and the data
//! plane refuses requests it could not audit.

use std::io::Write as _;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records waiting for the writer before `record` refuses more (back-pressure).
const QUEUE: usize = 100_000;

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

#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub node: String,
    pub spool_path: PathBuf,
    pub spool_max_bytes: u64,
    pub batch_max: usize,
    pub flush_interval: Duration,
    pub retry_interval: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditStatus {
    pub written: u64,
    pub spooled: u64,
    pub spool_bytes: u64,
    pub spooling: bool,
    pub last_error: Option<String>,
    /// Records in memory waiting for the next flush.
    pub queued: usize,
    /// How long records have been waiting for PostgreSQL: since the last successful write
    /// while some wait (in memory or in the spool), 0 when nothing waits.
    pub flush_lag_ms: u64,
}

#[derive(Default)]
struct Stats {
    written: AtomicU64,
    spooled: AtomicU64,
    spool_bytes: AtomicU64,
    spooling: AtomicBool,
    /// Unix milliseconds of the last write to PostgreSQL (or of the start).
    last_write_ms: AtomicU64,
    /// The spool could not be written: records are refused from then on.
    failed: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuditRefused {
    #[error("the audit queue is full")]
    QueueFull,
    #[error("the audit spool is full ({bytes} bytes) while PostgreSQL is unreachable")]
    SpoolFull { bytes: u64 },
    #[error("the audit log has stopped")]
    Stopped,
    #[error("the audit spool cannot be written while PostgreSQL is unreachable")]
    SpoolFailed,
}

/// Handle to the node's audit writer; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditEntry>,
    stats: Arc<Stats>,
    max_bytes: u64,
    /// Wakes the writer early when a full batch is waiting.
    full_batch: Arc<tokio::sync::Notify>,
    batch_max: usize,
}

impl AuditLog {
    /// Starts the writer; it drains what is queued and stops when `stop` fires.
    pub fn spawn(
        pool: PgPool,
        options: AuditOptions,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        stats.last_write_ms.store(unix_ms(), Ordering::Relaxed);
        let spool_bytes = std::fs::metadata(&options.spool_path).map_or(0, |m| m.len());
        stats.spool_bytes.store(spool_bytes, Ordering::Relaxed);
        stats.spooling.store(spool_bytes > 0, Ordering::Relaxed);
        let full_batch = Arc::new(tokio::sync::Notify::new());
        let log = Self {
            tx,
            stats: stats.clone(),
            max_bytes: options.spool_max_bytes,
            full_batch: full_batch.clone(),
            batch_max: options.batch_max.max(1),
        };
        let writer = Writer {
            pool,
            options,
            stats,
            full_batch,
        };
        (log, tokio::spawn(writer.run(rx, stop)))
    }

    /// Queues a record; refused (never silently dropped) when it could not be kept.
    pub fn record(&self, record: AuditEntry) -> Result<(), AuditRefused> {
        if self.stats.failed.load(Ordering::Relaxed) {
            return Err(AuditRefused::SpoolFailed);
        }
        let bytes = self.stats.spool_bytes.load(Ordering::Relaxed);
        if bytes >= self.max_bytes {
            return Err(AuditRefused::SpoolFull { bytes });
        }
        self.tx.try_send(record).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AuditRefused::QueueFull,
            mpsc::error::TrySendError::Closed(_) => AuditRefused::Stopped,
        })?;
        // The writer sleeps between flushes; under heavy load it is woken once per full
        // batch instead of waiting out the interval (never once per record).
        let queued = self.tx.max_capacity() - self.tx.capacity();
        if queued.is_multiple_of(self.batch_max) {
            self.full_batch.notify_one();
        }
        Ok(())
    }

    pub fn status(&self) -> AuditStatus {
        let queued = self.tx.max_capacity() - self.tx.capacity();
        let spooling = self.stats.spooling.load(Ordering::Relaxed);
        let flush_lag_ms = if queued > 0 || spooling {
            unix_ms().saturating_sub(self.stats.last_write_ms.load(Ordering::Relaxed))
        } else {
            0
        };
        AuditStatus {
            written: self.stats.written.load(Ordering::Relaxed),
            spooled: self.stats.spooled.load(Ordering::Relaxed),
            spool_bytes: self.stats.spool_bytes.load(Ordering::Relaxed),
            spooling,
            last_error: self.stats.last_error.lock().expect("audit stats").clone(),
            queued,
            flush_lag_ms,
        }
    }
}

struct Writer {
    pool: PgPool,
    options: AuditOptions,
    stats: Arc<Stats>,
    full_batch: Arc<tokio::sync::Notify>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<AuditEntry>, stop: CancellationToken) {
        let mut retry = tokio::time::interval(self.options.retry_interval);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Vec::new();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = retry.tick() => {
                    if self.stats.spooling.load(Ordering::Relaxed)
                        || self.stats.failed.load(Ordering::Relaxed)
                    {
                        self.replay_spool().await;
                    }
                    continue;
                }
                first = rx.recv() => match first {
                    Some(r) => batch.push(r),
                    None => break,
                },
            }
            // Sleep rather than wait on the queue: a writer waiting on it is woken by every
            // record, which on the request path costs a cross-thread wake-up per request.
            // A full batch waiting wakes it early.
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(self.options.flush_interval) => {}
                _ = self.full_batch.notified() => {}
            }
            while let Ok(r) = rx.try_recv() {
                batch.push(r);
            }
            while !batch.is_empty() {
                let rest = batch.split_off(batch.len().min(self.options.batch_max.max(1)));
                self.write(batch).await;
                batch = rest;
            }
        }
        // Shutdown: everything still queued is written or spooled.
        rx.close();
        let mut rest = Vec::new();
        while let Some(r) = rx.recv().await {
            rest.push(r);
        }
        for chunk in rest.chunks(self.options.batch_max.max(1)) {
            self.write(chunk.to_vec()).await;
        }
    }

    async fn write(&self, batch: Vec<AuditEntry>) {
        if batch.is_empty() {
            return;
        }
        if !self.stats.spooling.load(Ordering::Relaxed) {
            match insert(&self.pool, &self.options.node, &batch).await {
                Ok(()) => {
                    self.stats
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    self.stats.last_write_ms.store(unix_ms(), Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        spool = %self.options.spool_path.display(),
                        "audit: cannot write to the control plane ({e}); spooling locally"
                    );
                    *self.stats.last_error.lock().expect("audit stats") = Some(e.to_string());
                }
            }
        }
        self.spool(&batch);
    }

    /// Appends and fsyncs; the only way records leave memory when PostgreSQL is away.
    fn spool(&self, batch: &[AuditEntry]) {
        let mut text = String::new();
        for r in batch {
            text.push_str(&serde_json::to_string(r).expect("audit records serialize"));
            text.push('\n');
        }
        let result = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.options.spool_path)
            .and_then(|mut f| {
                // A crash mid-append leaves a torn last line: end it, so the first new record
                // starts a line of its own (the torn one is skipped at replay).
                if ends_torn(&mut f)? {
                    f.write_all(b"\n")?;
                }
                f.write_all(text.as_bytes())?;
                f.sync_data()
            });
        match result {
            Ok(()) => {
                self.stats.spooling.store(true, Ordering::Relaxed);
                self.stats
                    .spooled
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.stats
                    .spool_bytes
                    .fetch_add(text.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.failed.store(true, Ordering::Relaxed);
                tracing::error!(
                    spool = %self.options.spool_path.display(),
                    records = batch.len(),
                    "audit: cannot write the spool either: {e}; these records are lost and \
                     requests are refused until the control plane takes records again"
                );
            }
        }
    }

    /// Inserts the spool, oldest first, in batches read as they go (the file is never held in
    /// memory whole), and empties it once every line is stored. Nothing is read while
    /// PostgreSQL does not answer.
    async fn replay_spool(&self) {
        if let Err(e) = sqlx::query("SELECT 1").execute(&self.pool).await {
            *self.stats.last_error.lock().expect("audit stats") = Some(e.to_string());
            return;
        }
        let path = &self.options.spool_path;
        let file = match tokio::fs::File::open(path).await {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!(spool = %path.display(), "audit: cannot read the spool: {e}");
                return;
            }
        };
        let (mut line, mut number, mut stored) = (Vec::new(), 0usize, 0u64);
        let mut batch = Vec::with_capacity(self.options.batch_max);
        let mut reader = file.map(tokio::io::BufReader::new);
        if let Some(reader) = reader.as_mut() {
            loop {
                line.clear();
                let read = match reader.read_until(b'\n', &mut line).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(spool = %path.display(), "audit: cannot read the spool: {e}");
                        return;
                    }
                };
                if read > 0 {
                    number += 1;
                    match serde_json::from_slice::<AuditEntry>(&line) {
                        Ok(r) => batch.push(r),
                        Err(e) if !line.iter().all(u8::is_ascii_whitespace) => tracing::error!(
                            spool = %path.display(),
                            line = number,
                            "audit: unreadable spool line skipped: {e}"
                        ),
                        Err(_) => {}
                    }
                }
                if batch.len() >= self.options.batch_max || (read == 0 && !batch.is_empty()) {
                    if let Err(e) = insert(&self.pool, &self.options.node, &batch).await {
                        *self.stats.last_error.lock().expect("audit stats") = Some(e.to_string());
                        return;
                    }
                    stored += batch.len() as u64;
                    batch.clear();
                }
                if read == 0 {
                    break;
                }
            }
        }
        // Everything read is stored; nothing was appended meanwhile (this task is the only
        // writer), so the spool can go.
        let emptied = match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(f) => f.set_len(0).and_then(|()| f.sync_all()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = emptied {
            tracing::error!(spool = %path.display(), "audit: cannot empty the spool: {e}");
            return;
        }
        tracing::info!(
            records = stored,
            "audit: control plane back; spooled records written"
        );
        self.stats.written.fetch_add(stored, Ordering::Relaxed);
        self.stats.last_write_ms.store(unix_ms(), Ordering::Relaxed);
        self.stats.spool_bytes.store(0, Ordering::Relaxed);
        self.stats.spooling.store(false, Ordering::Relaxed);
        self.stats.failed.store(false, Ordering::Relaxed);
        *self.stats.last_error.lock().expect("audit stats") = None;
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether the file's last byte is not a newline (a torn append).
fn ends_torn(file: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

async fn insert(pool: &PgPool, node: &str, batch: &[AuditEntry]) -> Result<(), sqlx::Error> {
    let ids: Vec<String> = batch.iter().map(|r| r.event_id.to_string()).collect();
    let at: Vec<DateTime<Utc>> = batch.iter().map(|r| r.at).collect();
    let actors: Vec<&str> = batch.iter().map(|r| r.actor.as_str()).collect();
    let actions: Vec<&str> = batch.iter().map(|r| r.action.as_str()).collect();
    let targets: Vec<&str> = batch.iter().map(|r| r.target.as_str()).collect();
    let outcomes: Vec<&str> = batch.iter().map(|r| r.outcome.as_str()).collect();
    let details: Vec<String> = batch.iter().map(|r| r.detail.to_string()).collect();
    sqlx::query(
        "INSERT INTO audit_log (event_id, at, node, actor, action, target, outcome, detail)
         SELECT e::uuid, a, $3, ac, act, t, o, d::jsonb
           FROM UNNEST($1::text[], $2::timestamptz[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::text[]) AS x(e, a, ac, act, t, o, d)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(ids)
    .bind(at)
    .bind(node)
    .bind(actors)
    .bind(actions)
    .bind(targets)
    .bind(outcomes)
    .bind(details)
    .execute(pool)
    .await?;
    Ok(())
}
