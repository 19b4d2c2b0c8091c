//! The decision audit log: every data-plane decision (and admin change made on a node) becomes
//! a row in `audit_log`. A record is first appended to the node's on-disk journal (see
//! `journal`), before the answer it describes leaves; a shipper task then inserts the journal
//! into PostgreSQL in batches, in order, and keeps it on disk while PostgreSQL is away.
//!
//! Durability: a killed process loses nothing (the record is in the page cache before the
//! answer); a machine crash loses at most what was written since the last `fdatasync`, which
//! runs every `fsync_interval` or, with [`Fsync::EachBatch`], before each batch is answered.
//! Records carry a unique `event_id` and the insert skips ids already stored, so shipping
//! again after a crash between insert and cursor save writes nothing twice. Past
//! `spool_max_bytes` of unshipped journal, or when the journal cannot be written, `record`
//! fails and the data plane refuses requests it could not audit.

mod journal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use shoal_lifecycle::Stage;
use shoal_model::{AuditBacklog, AuditEntry, AuditQueue, AuditSink, ModelError};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use journal::{Cursor, Journal};

/// When the journal is flushed to the device (a killed process loses nothing either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before each batch of concurrent records is answered: nothing lost to a machine crash,
    /// at the device's flush latency per batch.
    EachBatch,
    /// Every interval, apart from the answers: a machine crash loses at most that much.
    Every(Duration),
}

#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub node: String,
    /// The journal's directory.
    pub journal_dir: PathBuf,
    /// A spool left by an earlier version (one JSON line per record): imported into the
    /// journal at start, then removed.
    pub legacy_spool: Option<PathBuf>,
    pub fsync: Fsync,
    pub spool_max_bytes: u64,
    pub batch_max: usize,
    pub flush_interval: Duration,
    pub retry_interval: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditStatus {
    /// Records stored in PostgreSQL by this run.
    pub written: u64,
    /// Records written to the journal by this run.
    pub journaled: u64,
    /// Records on disk not yet stored in PostgreSQL (this run's).
    pub spooled: u64,
    /// Journal bytes not yet stored in PostgreSQL (earlier runs' included).
    pub spool_bytes: u64,
    /// PostgreSQL is not taking records: they wait in the journal.
    pub spooling: bool,
    /// Records skipped because they were damaged on disk.
    pub damaged: u64,
    /// Records PostgreSQL refused for what they hold (a NUL in a text, say), kept in the
    /// journal directory's [`SET_ASIDE`] file instead of blocking every record after them.
    pub set_aside: u64,
    pub last_error: Option<String>,
    /// How long records have been waiting for PostgreSQL: since the last successful write
    /// while some wait, 0 when nothing waits.
    pub flush_lag_ms: u64,
}

#[derive(Default)]
struct Stats {
    written: AtomicU64,
    /// Records of this run's segments stored in PostgreSQL.
    shipped_records: AtomicU64,
    shipped_bytes: AtomicU64,
    backlog_bytes: AtomicU64,
    spooling: AtomicBool,
    damaged: AtomicU64,
    set_aside: AtomicU64,
    /// Unix milliseconds of the last write to PostgreSQL (or of the start).
    last_write_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
enum AuditRefused {
    #[error("the audit spool is full ({bytes} bytes) while PostgreSQL is unreachable")]
    SpoolFull { bytes: u64 },
    #[error("the audit journal cannot be written: {0}")]
    Journal(String),
    #[error("the audit journal cannot be opened: {0}")]
    Unopened(String),
}

/// Handle to the node's audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    journal: Result<Arc<Journal>, Arc<str>>,
    stats: Arc<Stats>,
    fsync: Fsync,
    max_bytes: u64,
    /// Wakes the shipper early when a full batch is waiting.
    full_batch: Arc<tokio::sync::Notify>,
    batch_max: u64,
}

impl AuditLog {
    /// Opens the journal and starts the shipper (`audit writer`) and the interval sync
    /// (`audit sync`) as tasks of `stage`; both stop when it does, the shipper after one last
    /// pass. A journal that cannot be opened is reported on every record (the node refuses
    /// requests) rather than stopping the node.
    pub fn spawn(pool: PgPool, options: AuditOptions, stage: &Stage) -> Self {
        let stats = Arc::new(Stats::default());
        stats.last_write_ms.store(unix_ms(), Ordering::Relaxed);
        let journal = Journal::open(
            &options.journal_dir,
            &options.node,
            options.fsync == Fsync::EachBatch,
        )
        .map_err(|e| {
            let message = format!("{}: {e}", options.journal_dir.display());
            tracing::error!("audit: cannot open the journal {message}; requests are refused");
            Arc::<str>::from(message)
        })
        .map(|(journal, backlog)| {
            stats.backlog_bytes.store(backlog, Ordering::Relaxed);
            stats.spooling.store(backlog > 0, Ordering::Relaxed);
            Arc::new(journal)
        });
        let full_batch = Arc::new(tokio::sync::Notify::new());
        let log = Self {
            journal: journal.clone(),
            stats: stats.clone(),
            fsync: options.fsync,
            max_bytes: options.spool_max_bytes,
            full_batch: full_batch.clone(),
            batch_max: options.batch_max.max(1) as u64,
        };
        let Ok(journal) = journal else {
            return log;
        };
        if let Some(legacy) = &options.legacy_spool {
            import_legacy(&journal, legacy);
        }
        if let Fsync::Every(interval) = options.fsync {
            stage.spawn(
                "audit sync",
                sync_every(journal.clone(), interval, stage.token()),
            );
        }
        let shipper = Shipper {
            pool,
            journal,
            options,
            stats,
            full_batch,
        };
        stage.spawn("audit writer", shipper.run(stage.token()));
        log
    }

    /// Puts the record in the journal; returns once it is there (and on the device, with
    /// [`Fsync::EachBatch`]). Refused, never silently dropped, when it could not be kept.
    async fn keep(&self, record: AuditEntry) -> Result<(), AuditRefused> {
        let journal = match &self.journal {
            Ok(j) => j,
            Err(e) => return Err(AuditRefused::Unopened(e.to_string())),
        };
        let bytes = self.spool_bytes(journal);
        if bytes >= self.max_bytes {
            return Err(AuditRefused::SpoolFull { bytes });
        }
        match self.fsync {
            // A write to the page cache takes microseconds: done in place, no hand-off. The
            // line is staged and the task goes to the back of its thread's queue once, so
            // that the other requests the thread has ready stage theirs before one `write`
            // takes them all: under wrk's load 0.26-0.48 writes per request instead of 1.
            // Alone, it costs one more poll of the task. A request dropped meanwhile still
            // has its line written.
            Fsync::Every(_) => {
                let staged = Commit {
                    journal,
                    staged: journal.stage(std::slice::from_ref(&record)),
                };
                behind_ready_tasks().await;
                staged.run()
            }
            // A device flush can take milliseconds: off the async workers.
            Fsync::EachBatch => {
                let journal = journal.clone();
                tokio::task::spawn_blocking(move || journal.append(&[record]))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            }
        }
        .map_err(AuditRefused::Journal)?;
        // The shipper sleeps between passes; under heavy load it is woken once a full batch
        // waits instead of waiting out the interval.
        if self.unshipped_records(journal) >= self.batch_max {
            self.full_batch.notify_one();
        }
        Ok(())
    }

    fn spool_bytes(&self, journal: &Journal) -> u64 {
        (journal.appended_bytes.load(Ordering::Relaxed)
            + self.stats.backlog_bytes.load(Ordering::Relaxed))
        .saturating_sub(self.stats.shipped_bytes.load(Ordering::Relaxed))
    }

    fn unshipped_records(&self, journal: &Journal) -> u64 {
        journal
            .appended_records
            .load(Ordering::Relaxed)
            .saturating_sub(self.stats.shipped_records.load(Ordering::Relaxed))
    }

    pub fn status(&self) -> AuditStatus {
        let (journaled, spooled, spool_bytes) = match &self.journal {
            Ok(j) => (
                j.appended_records.load(Ordering::Relaxed),
                self.unshipped_records(j),
                self.spool_bytes(j),
            ),
            Err(_) => (0, 0, 0),
        };
        let spooling = self.stats.spooling.load(Ordering::Relaxed);
        let flush_lag_ms = if spooled > 0 || spooling {
            unix_ms().saturating_sub(self.stats.last_write_ms.load(Ordering::Relaxed))
        } else {
            0
        };
        let last_error = match &self.journal {
            Err(e) => Some(format!("cannot open the journal {e}")),
            Ok(_) => self.stats.last_error.lock().expect("audit stats").clone(),
        };
        AuditStatus {
            written: self.stats.written.load(Ordering::Relaxed),
            journaled,
            spooled,
            spool_bytes,
            spooling,
            damaged: self.stats.damaged.load(Ordering::Relaxed),
            set_aside: self.stats.set_aside.load(Ordering::Relaxed),
            last_error,
            flush_lag_ms,
        }
    }
}

/// Staged records, committed when run or, if their request is dropped first, when dropped: a
/// staged line is never left unwritten.
struct Commit<'a> {
    journal: &'a Journal,
    staged: journal::Staged,
}

impl Commit<'_> {
    fn run(&self) -> Result<(), String> {
        self.journal.commit(&self.staged)
    }
}

impl Drop for Commit<'_> {
    fn drop(&mut self) {
        if !self.staged.written()
            && let Err(e) = self.journal.commit(&self.staged)
        {
            tracing::warn!("audit journal write failed: {e}");
        }
    }
}

/// Returns after the tasks already ready on this thread have run: the task wakes itself from
/// within its own poll, so it is queued behind them without waiting for the I/O driver's
/// turn, as `tokio::task::yield_now` does.
async fn behind_ready_tasks() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

#[async_trait]
impl AuditSink for AuditLog {
    async fn record(&self, entry: AuditEntry) -> Result<(), ModelError> {
        self.keep(entry)
            .await
            .map_err(|e| ModelError::AuditRefused(e.to_string()))
    }
}

impl AuditQueue for AuditLog {
    fn backlog(&self) -> AuditBacklog {
        let status = self.status();
        AuditBacklog {
            spooling: status.spooling,
            spooled: status.spooled,
            spool_bytes: status.spool_bytes,
        }
    }
}

async fn sync_every(journal: Arc<Journal>, interval: Duration, stop: CancellationToken) {
    let mut synced = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let appended = journal.appended_bytes.load(Ordering::Relaxed);
        if appended != synced {
            let j = journal.clone();
            match tokio::task::spawn_blocking(move || j.sync()).await {
                Ok(Ok(())) => synced = appended,
                Ok(Err(e)) => tracing::error!("audit: cannot flush the journal to disk: {e}"),
                Err(e) => tracing::error!("audit: journal flush task failed: {e}"),
            }
        }
    }
}

/// Moves the records of an earlier version's spool into the journal, read and appended in
/// chunks (the spool may be as large as `spool_max_bytes`), skipping lines that are not
/// records (reported with their line number), then removes the spool.
fn import_legacy(journal: &Journal, path: &std::path::Path) {
    use std::io::BufRead as _;
    const CHUNK: usize = 1_000;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::error!(spool = %path.display(), "audit: cannot read the old spool: {e}");
            return;
        }
    };
    let mut reader = std::io::BufReader::new(file);
    let (mut line, mut number, mut imported) = (Vec::new(), 0usize, 0usize);
    let mut chunk = Vec::with_capacity(CHUNK);
    let result = loop {
        line.clear();
        let read = match reader.read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) => break Err(e.to_string()),
        };
        if read > 0 {
            number += 1;
            match serde_json::from_slice::<AuditEntry>(&line) {
                Ok(r) => chunk.push(r),
                Err(e) if !line.iter().all(u8::is_ascii_whitespace) => tracing::error!(
                    spool = %path.display(),
                    line = number,
                    "audit: unreadable spool line skipped: {e}"
                ),
                Err(_) => {}
            }
        }
        if chunk.len() >= CHUNK || (read == 0 && !chunk.is_empty()) {
            if let Err(e) = journal.append(&chunk) {
                break Err(e);
            }
            imported += chunk.len();
            chunk.clear();
        }
        if read == 0 {
            break journal
                .sync()
                .and_then(|()| std::fs::remove_file(path))
                .map_err(|e| e.to_string());
        }
    };
    match result {
        Ok(()) => tracing::info!(
            records = imported,
            spool = %path.display(),
            "audit: the old spool moved into the journal"
        ),
        // What was appended is shipped; the spool stays and is imported again at the next
        // start (the insert skips records already stored).
        Err(e) => {
            tracing::error!(spool = %path.display(), "audit: cannot import the old spool: {e}")
        }
    }
}

struct Shipper {
    pool: PgPool,
    journal: Arc<Journal>,
    options: AuditOptions,
    stats: Arc<Stats>,
    full_batch: Arc<tokio::sync::Notify>,
}

impl Shipper {
    async fn run(self, stop: CancellationToken) {
        let mut cursor = self.journal.cursor();
        loop {
            let shipped = self.ship(&mut cursor).await;
            let wait = if shipped {
                self.options.flush_interval
            } else {
                self.options.retry_interval
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                // While PostgreSQL is away a full batch waits all the time: retry on the clock.
                _ = self.full_batch.notified(), if shipped => {}
            }
        }
        // What the last requests journaled goes to PostgreSQL now if it answers; otherwise it
        // stays on disk, flushed to the device, for the next start.
        self.ship(&mut cursor).await;
        let journal = self.journal.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || journal.sync()).await {
            tracing::error!("audit: cannot flush the journal to disk: {e}");
        }
    }

    /// Ships everything journaled so far; false when PostgreSQL did not take a batch.
    async fn ship(&self, cursor: &mut Cursor) -> bool {
        loop {
            let (from, max) = (*cursor, self.options.batch_max.max(1));
            if let Some(read) = self.journal.take(from, max) {
                if !self.store(read, cursor).await {
                    return false;
                }
                continue;
            }
            if from == self.journal.tip() {
                return self.caught_up();
            }
            let journal = self.journal.clone();
            let read = match tokio::task::spawn_blocking(move || journal.read(from, max)).await {
                Ok(Ok(Some(read))) => read,
                Ok(Ok(None)) => return true,
                Ok(Err(e)) => {
                    self.fail(format!("cannot read the journal: {e}"));
                    return false;
                }
                Err(e) => {
                    self.fail(format!("journal read task failed: {e}"));
                    return false;
                }
            };
            if read.bytes == 0 && read.finished.is_none() {
                return self.caught_up();
            }
            if !self.store(read, cursor).await {
                return false;
            }
        }
    }

    /// Inserts what was read and moves the cursor past it; false when PostgreSQL did not
    /// take it (records taken from memory are read again from the journal next time).
    async fn store(&self, read: journal::Read, cursor: &mut Cursor) -> bool {
        let node = read.node.as_deref().unwrap_or(&self.options.node);
        let stored = match read.records.is_empty() {
            true => Ok(0),
            false => match insert(&self.pool, node, &read.records, read.rows.as_deref()).await {
                Ok(()) => Ok(0),
                Err(e) if refused_for_content(&e) => self.insert_each(node, &read.records).await,
                Err(e) => Err(e.to_string()),
            },
        };
        let set_aside = match stored {
            Ok(n) => n,
            Err(e) => {
                if !self.stats.spooling.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        journal = %self.options.journal_dir.display(),
                        "audit: cannot write to the control plane ({e}); decisions wait in the journal"
                    );
                }
                *self.stats.last_error.lock().expect("audit stats") = Some(e);
                return false;
            }
        };
        for d in &read.damaged {
            tracing::error!(
                file = %d.file.display(),
                offset = d.offset,
                "audit: damaged journal record skipped: {}",
                d.reason
            );
        }
        let records = read.records.len() as u64;
        self.stats
            .written
            .fetch_add(records - set_aside, Ordering::Relaxed);
        self.stats.set_aside.fetch_add(set_aside, Ordering::Relaxed);
        if read.this_run {
            self.stats
                .shipped_records
                .fetch_add(records, Ordering::Relaxed);
        }
        self.stats
            .damaged
            .fetch_add(read.damaged.len() as u64, Ordering::Relaxed);
        self.stats
            .shipped_bytes
            .fetch_add(read.bytes, Ordering::Relaxed);
        if records > 0 {
            self.stats.last_write_ms.store(unix_ms(), Ordering::Relaxed);
        }
        *cursor = read.next;
        if let Some(done) = read.finished {
            *cursor = Cursor {
                segment: cursor.segment + 1,
                offset: 0,
            };
            if let Err(e) = std::fs::remove_file(&done) {
                tracing::error!(file = %done.display(), "audit: cannot remove a shipped journal segment: {e}");
            }
        }
        if let Err(e) = self.journal.save_cursor(*cursor) {
            tracing::error!("audit: cannot save the journal cursor: {e}");
        }
        true
    }

    /// Stores records one at a time after PostgreSQL refused their batch for what one of
    /// them holds: that record goes to the [`SET_ASIDE`] file, logged, and the rest are
    /// stored in order (a retried batch skips those already stored). Returns how many were
    /// set aside; `Err` when PostgreSQL or the file failed otherwise (retried later).
    async fn insert_each(&self, node: &str, records: &[bytes::Bytes]) -> Result<u64, String> {
        let mut set_aside = 0;
        for record in records {
            match insert_skipping_stored(&self.pool, node, std::slice::from_ref(record)).await {
                Ok(()) => {}
                Err(e) if refused_for_content(&e) => {
                    let path = self.options.journal_dir.join(SET_ASIDE);
                    // The file is synced: off the runtime's workers, as the journal's reads are.
                    let (file, node_name, line, error) = (
                        path.clone(),
                        node.to_string(),
                        record.clone(),
                        e.to_string(),
                    );
                    tokio::task::spawn_blocking(move || {
                        set_aside_record(&file, &node_name, &line, &error)
                    })
                    .await
                    .map_err(|join| join.to_string())
                    .and_then(|written| written.map_err(|io| io.to_string()))
                    .map_err(|io| {
                        format!("PostgreSQL refused a record ({e}) and it cannot be set aside in {}: {io}", path.display())
                    })?;
                    tracing::error!(
                        file = %path.display(),
                        "audit: PostgreSQL refused a record for what it holds ({e}); \
                         it is kept in the file instead, and the records after it are stored"
                    );
                    set_aside += 1;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(set_aside)
    }

    fn caught_up(&self) -> bool {
        if self.stats.spooling.swap(false, Ordering::Relaxed) {
            tracing::info!("audit: control plane back; journaled decisions written");
        }
        self.stats.last_write_ms.store(unix_ms(), Ordering::Relaxed);
        *self.stats.last_error.lock().expect("audit stats") = None;
        true
    }

    fn fail(&self, message: String) {
        tracing::error!("audit: {message}");
        *self.stats.last_error.lock().expect("audit stats") = Some(message);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The file in the journal directory holding the records PostgreSQL refused for their content:
/// one JSON object per line, with the record as journaled, its node and PostgreSQL's error.
pub const SET_ASIDE: &str = "set-aside.jsonl";

/// PostgreSQL refused the statement for what a record holds, not for the connection or the
/// server's state: a data exception (class 22: a NUL byte, an escape `jsonb` does not take,
/// a value out of range), a program limit (54: a value too large) or a constraint other than
/// the unique `event_id` (23). Sending it again would fail the same way forever.
fn refused_for_content(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    code.starts_with("22")
        || code.starts_with("54")
        || (code.starts_with("23") && !db.is_unique_violation())
}

/// Appends a refused record to the set-aside file, flushed to the device before the cursor
/// moves past it: set aside, never lost.
fn set_aside_record(
    path: &std::path::Path,
    node: &str,
    record: &[u8],
    error: &str,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let record = match serde_json::from_slice::<&serde_json::value::RawValue>(record) {
        Ok(raw) => serde_json::json!(raw),
        // Checked when journaled; kept as text should it ever not be JSON.
        Err(_) => serde_json::json!(String::from_utf8_lossy(record)),
    };
    let mut line = serde_json::to_vec(&serde_json::json!({
        "set_aside_at": chrono::Utc::now().to_rfc3339(),
        "node": node,
        "error": error,
        "record": record,
    }))?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(&line)?;
    file.sync_data()
}

/// Stores a batch with `COPY`, in order: for PostgreSQL about half the work of an `INSERT`
/// that takes the JSON apart and checks each id for a conflict (measured in
/// docs/benchmarks.md), and on a node sharing its machine with PostgreSQL that work competes
/// with the data plane. A batch holding an id already stored (shipped again after a crash
/// between the insert and the cursor's save) fails as a whole, and is then stored by
/// [`insert_skipping_stored`], as is a record this code cannot take apart. `rows` are the
/// batch's rows when the journal built them (this run's records, from memory; joined here,
/// not under the journal's lock the appending requests take).
async fn insert(
    pool: &PgPool,
    node: &str,
    batch: &[bytes::Bytes],
    rows: Option<&[bytes::Bytes]>,
) -> Result<(), sqlx::Error> {
    use sqlx::postgres::PgPoolCopyExt as _;
    let rows = match rows {
        Some(rows) => rows.concat(),
        None => match copy_rows(node, batch) {
            Some(rows) => rows,
            None => return insert_skipping_stored(pool, node, batch).await,
        },
    };
    let copied = async {
        let mut copy = pool
            .copy_in_raw(
                "COPY audit_log (event_id, at, node, actor, action, target, outcome, detail) \
                 FROM STDIN",
            )
            .await?;
        copy.send(rows).await?;
        copy.finish().await
    };
    match copied.await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            insert_skipping_stored(pool, node, batch).await
        }
        other => other.map(drop),
    }
}

/// One record's columns as the journal holds them; text PostgreSQL parses as it would the
/// JSON path's casts.
#[derive(serde::Deserialize)]
struct CopyRecord<'a> {
    #[serde(borrow)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    at: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    actor: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    target: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    outcome: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    detail: &'a serde_json::value::RawValue,
}

/// The batch in `COPY`'s text format; `None` when a record is not the shape this expects.
fn copy_rows(node: &str, batch: &[bytes::Bytes]) -> Option<Vec<u8>> {
    let mut rows = Vec::with_capacity(batch.iter().map(|r| r.len()).sum::<usize>());
    for record in batch {
        let r: CopyRecord = serde_json::from_slice(record).ok()?;
        push_row(
            &mut rows,
            [
                &r.event_id,
                &r.at,
                node,
                &r.actor,
                &r.action,
                &r.target,
                &r.outcome,
                r.detail.get(),
            ],
        );
    }
    Some(rows)
}

/// `entry`'s `COPY` row, as [`copy_rows`] builds it from the entry's JSON; `id` and `at` are
/// its `event_id` and `at` as text (the journal line has them already).
fn copy_row(rows: &mut Vec<u8>, node: &str, (id, at): (&str, &str), entry: &AuditEntry) {
    push_row(
        rows,
        [
            id,
            at,
            node,
            &entry.actor,
            &entry.action,
            &entry.target,
            &entry.outcome,
            entry.detail_json(),
        ],
    );
}

fn push_row(rows: &mut Vec<u8>, columns: [&str; 8]) {
    for (i, column) in columns.into_iter().enumerate() {
        if i > 0 {
            rows.push(b'\t');
        }
        copy_text(rows, column);
    }
    rows.push(b'\n');
}

/// A column in `COPY`'s text format: the backslash, the delimiters and carriage return escaped.
/// Found with `memchr`'s vector search: a column rarely has any, and the detail is hundreds
/// of bytes (a byte-by-byte loop cost 2,700 instructions per line).
fn copy_text(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    // Most columns are a few bytes: looked at directly, cheaper than setting up the searches.
    if bytes.len() < 64
        && !bytes
            .iter()
            .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    // A carriage return is rarer still (never in JSON text): searched for only when present.
    let returns = memchr::memchr(b'\r', bytes).is_some();
    let next = |from: usize| {
        let rest = &bytes[from..];
        let other = memchr::memchr3(b'\\', b'\t', b'\n', rest);
        let cr = returns.then(|| memchr::memchr(b'\r', rest)).flatten();
        other.into_iter().chain(cr).min().map(|i| from + i)
    };
    let mut start = 0;
    while let Some(found) = next(start) {
        out.extend_from_slice(&bytes[start..found]);
        out.extend_from_slice(match bytes[found] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        start = found + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Stores a batch skipping ids already stored: the records' JSON, as the journal holds it,
/// goes over as one array that PostgreSQL takes apart.
async fn insert_skipping_stored(
    pool: &PgPool,
    node: &str,
    batch: &[bytes::Bytes],
) -> Result<(), sqlx::Error> {
    let mut array = Vec::with_capacity(batch.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
    array.push(b'[');
    for (i, record) in batch.iter().enumerate() {
        if i > 0 {
            array.push(b',');
        }
        array.extend_from_slice(record);
    }
    array.push(b']');
    // Checked when written (serde_json) and when read back (checksum): UTF-8 either way.
    let array = String::from_utf8(array).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO audit_log (event_id, at, node, actor, action, target, outcome, detail)
         SELECT (r->>'event_id')::uuid, (r->>'at')::timestamptz, $2, r->>'actor', r->>'action',
                r->>'target', r->>'outcome', r->'detail'
           FROM jsonb_array_elements(($1::text)::jsonb) WITH ORDINALITY AS x(r, n)
          ORDER BY n
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(array)
    .bind(node)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row built from the typed entry (this run's records) is the row built from its
    /// journal JSON (earlier runs' records): either way PostgreSQL stores the same line.
    #[test]
    fn rows_from_the_entry_and_from_its_json_are_the_same() {
        use chrono::TimeZone as _;
        let awkward = [
            "tab\there",
            "line\nbreak\r\n",
            "back\\slash \\. \\N \\t",
            "quote \" and ' and \u{1} and \u{7f}",
            "ünïcødé ✓ 𝄞",
            "",
        ];
        let base = chrono::Utc.with_ymd_and_hms(2026, 12, 7, 9, 5, 3).unwrap();
        let times = [
            base,
            base + chrono::Duration::nanoseconds(120_000_000),
            base + chrono::Duration::nanoseconds(40_500),
            base + chrono::Duration::nanoseconds(123_456_789),
            chrono::Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
        ];
        for (i, text) in awkward.iter().enumerate() {
            for at in times {
                let entry = AuditEntry {
                    event_id: uuid::Uuid::now_v7(),
                    at,
                    actor: format!("user:{text}"),
                    action: "request".into(),
                    target: (*text).to_string(),
                    outcome: "allowed".into(),
                    detail: serde_json::json!({"text": text, "n": i, "list": [text, null]}).into(),
                };
                let (mut line, mut from_entry) = (Vec::new(), Vec::new());
                journal::encode_record(&mut line, &mut from_entry, "node\ta", &entry);
                // The line is the entry's JSON as serde writes it, after its checksum.
                let json = serde_json::to_vec(&entry).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&line[9..line.len() - 1]),
                    String::from_utf8_lossy(&json)
                );
                assert_eq!(journal::decode::<AuditEntry>(&line).unwrap(), entry);
                let from_json = copy_rows("node\ta", &[json.into()]).expect("a record's JSON");
                assert_eq!(
                    String::from_utf8_lossy(&from_entry),
                    String::from_utf8_lossy(&from_json)
                );
                // One line per row, eight columns: nothing inside a column delimits.
                let row = String::from_utf8(from_entry).unwrap();
                assert_eq!(row.matches('\n').count(), 1, "{row:?}");
                assert_eq!(row.matches('\t').count(), 7, "{row:?}");
            }
        }
    }
}
