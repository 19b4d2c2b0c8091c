//! The audit journal: the decisions' log on the node's own disk, written before each answer.
//!
//! The journal is a directory of numbered segment files. Each process run appends to a new
//! segment (older ones are only read), rolling to the next past [`SEGMENT_BYTES`]. A segment
//! starts with a header line naming the node that wrote it; every line is
//! `<crc32 of the JSON, 8 hex digits> <JSON>\n`, so a record torn by a power loss, overwritten
//! by garbage or flipped on disk is recognised and skipped instead of shipped wrong.
//!
//! Appends use group commit: a caller puts its line in the pending buffer, then takes the file
//! lock; if a previous holder already wrote its line it is done, otherwise it writes every
//! pending line in one `write` (and one `fdatasync` when each batch is synced). Concurrent
//! requests therefore share system calls without any thread hand-off.
//!
//! The lines a run writes are also kept in memory, up to [`TAIL_BYTES`] of them, with where
//! each one lies in its segment. The shipper takes them from there while it keeps up, so the
//! common case never reads back what was just written; the files are read only
//! for earlier runs' records, after a damaged write, and when PostgreSQL fell so far behind
//! that the oldest records left memory.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shoal_model::AuditEntry;

/// Size past which the writing run starts a new segment (shipped segments are deleted whole).
pub(super) const SEGMENT_BYTES: u64 = 16 << 20;

/// Lines' worth of this run's records kept in memory for the shipper; past it the oldest go
/// (they stay on disk).
const TAIL_BYTES: u64 = 4 << 20;

const SUFFIX: &str = ".log";
const CURSOR: &str = "cursor";
const MAGIC: &str = "shoal-audit-journal";

const PENDING: u8 = 0;
const WRITTEN: u8 = 1;
const FAILED: u8 = 2;

#[derive(Serialize, Deserialize)]
struct Header {
    journal: String,
    version: u32,
    node: String,
}

/// Where the shipper is: everything before `offset` in `segment` (and every earlier segment)
/// is stored in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

/// A record the reader could not use, with where it was.
#[derive(Debug)]
pub(super) struct Damage {
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// Records read from one segment, and where the next read starts.
pub(super) struct Read {
    /// The node named by the segment's header (the records are shipped under its name).
    pub node: Option<String>,
    /// Each record's JSON, checked against its checksum (and, from the files, parsed).
    pub records: Vec<Bytes>,
    /// The records as `COPY` rows, when they came from memory: built from the typed entry
    /// when it was journaled, so the shipper does not take the JSON apart again.
    pub rows: Option<Vec<Bytes>>,
    pub damaged: Vec<Damage>,
    pub next: Cursor,
    /// Bytes consumed, damaged lines included.
    pub bytes: u64,
    /// The segment is closed and read to its end: once the records are stored it can go.
    pub finished: Option<PathBuf>,
    /// Records read from segments this run wrote.
    pub this_run: bool,
}

/// Records staged and not yet known to be written.
pub(super) struct Staged(Arc<AtomicU8>);

impl Staged {
    pub fn written(&self) -> bool {
        self.0.load(Ordering::Acquire) != PENDING
    }
}

struct Pending {
    buf: Vec<u8>,
    /// The length of each line in `buf`.
    lines: Vec<usize>,
    /// Each line's record as a `COPY` row, and each row's length.
    rows: Vec<u8>,
    row_lens: Vec<usize>,
    slots: Vec<Arc<AtomicU8>>,
}

/// A record this run wrote: where its line lies, its JSON (a slice of the written batch) and
/// its `COPY` row.
struct Kept {
    segment: u64,
    start: u64,
    end: u64,
    json: Bytes,
    row: Bytes,
}

impl Kept {
    /// What it holds against the tail's bound.
    fn size(&self) -> u64 {
        self.end - self.start + self.row.len() as u64
    }
}

#[derive(Default)]
struct Tail {
    kept: VecDeque<Kept>,
    bytes: u64,
}

struct Active {
    file: Arc<File>,
    segment: u64,
    len: u64,
    /// A failed write may have left part of a line: the next write starts a fresh one.
    torn: bool,
    last_error: String,
}

pub(super) struct Journal {
    dir: PathBuf,
    node: String,
    sync_each_batch: bool,
    pending: Mutex<Pending>,
    active: Mutex<Active>,
    /// The active segment and its length up to the last complete batch: the reader never
    /// reads past it, so it never sees a batch half written.
    tip: Mutex<Cursor>,
    first_segment: u64,
    cursor_file: Mutex<Option<File>>,
    tail: Mutex<Tail>,
    tail_max_bytes: u64,
    pub appended_records: AtomicU64,
    pub appended_bytes: AtomicU64,
}

impl Journal {
    /// Opens the journal in `dir` and starts this run's segment. Returns the bytes earlier
    /// runs left unshipped (from the saved cursor on).
    pub fn open(dir: &Path, node: &str, sync_each_batch: bool) -> std::io::Result<(Self, u64)> {
        std::fs::create_dir_all(dir)?;
        let segments = segments(dir)?;
        let cursor = load_cursor(dir);
        let mut backlog = 0;
        for &(n, ref path) in &segments {
            let len = std::fs::metadata(path)?.len();
            backlog += match cursor {
                Some(c) if c.segment == n => len.saturating_sub(c.offset),
                Some(c) if c.segment > n => 0,
                _ => len,
            };
        }
        let first_segment = segments.last().map_or(1, |(n, _)| n + 1);
        let (file, header) = create_segment(dir, first_segment, node)?;
        let journal = Self {
            dir: dir.to_path_buf(),
            node: node.to_string(),
            sync_each_batch,
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                lines: Vec::new(),
                rows: Vec::new(),
                row_lens: Vec::new(),
                slots: Vec::new(),
            }),
            active: Mutex::new(Active {
                file: Arc::new(file),
                segment: first_segment,
                len: header,
                torn: false,
                last_error: String::new(),
            }),
            tip: Mutex::new(Cursor {
                segment: first_segment,
                offset: header,
            }),
            first_segment,
            cursor_file: Mutex::new(None),
            tail: Mutex::new(Tail::default()),
            tail_max_bytes: TAIL_BYTES,
            appended_records: AtomicU64::new(0),
            appended_bytes: AtomicU64::new(header),
        };
        Ok((journal, backlog))
    }

    /// Writes records (synced too when each batch is); returns once they are in the file.
    /// Blocking: a `write` to the page cache, plus an `fdatasync` when each batch is synced.
    pub fn append(&self, entries: &[AuditEntry]) -> Result<(), String> {
        let staged = self.stage(entries);
        self.commit(&staged)
    }

    /// Puts records' lines in the pending buffer, unwritten: the next [`Journal::commit`]
    /// writes them, whoever calls it, together with every other line staged by then.
    pub fn stage(&self, entries: &[AuditEntry]) -> Staged {
        let slot = Arc::new(AtomicU8::new(PENDING));
        {
            let mut p = self.pending.lock().expect("journal pending");
            for entry in entries {
                let (line_at, row_at) = (p.buf.len(), p.rows.len());
                let Pending { buf, rows, .. } = &mut *p;
                encode_record(buf, rows, &self.node, entry);
                let (line, row) = (p.buf.len() - line_at, p.rows.len() - row_at);
                p.lines.push(line);
                p.row_lens.push(row);
            }
            p.slots.push(slot.clone());
        }
        Staged(slot)
    }

    /// Returns once the staged records are in the file: written by this call along with every
    /// line staged so far, or already by another caller's.
    pub fn commit(&self, Staged(slot): &Staged) -> Result<(), String> {
        let mut active = self.active.lock().expect("journal file");
        match slot.load(Ordering::Acquire) {
            WRITTEN => return Ok(()),
            FAILED => return Err(active.last_error.clone()),
            _ => {}
        }
        let (buf, lines, rows, row_lens, slots) = {
            let mut p = self.pending.lock().expect("journal pending");
            (
                std::mem::take(&mut p.buf),
                std::mem::take(&mut p.lines),
                std::mem::take(&mut p.rows),
                std::mem::take(&mut p.row_lens),
                std::mem::take(&mut p.slots),
            )
        };
        let result = self.write_batch(&mut active, &buf);
        let state = match &result {
            Ok(()) => {
                self.appended_records
                    .fetch_add(lines.len() as u64, Ordering::Relaxed);
                let start = active.len - buf.len() as u64;
                let batch = (Bytes::from(buf), Bytes::from(rows));
                self.keep(active.segment, start, batch, &lines, &row_lens);
                *self.tip.lock().expect("journal tip") = Cursor {
                    segment: active.segment,
                    offset: active.len,
                };
                WRITTEN
            }
            Err(e) => {
                active.last_error = e.to_string();
                FAILED
            }
        };
        for s in &slots {
            s.store(state, Ordering::Release);
        }
        result.map_err(|e| e.to_string())
    }

    /// Keeps a written batch's records (its lines and their rows) for the shipper, dropping
    /// the oldest past the bound.
    fn keep(
        &self,
        segment: u64,
        start: u64,
        (batch, rows): (Bytes, Bytes),
        lines: &[usize],
        row_lens: &[usize],
    ) {
        let mut tail = self.tail.lock().expect("journal tail");
        let (mut at, mut row_at) = (0, 0);
        for (&len, &row_len) in lines.iter().zip(row_lens) {
            // The line is `<crc> <JSON>\n`.
            let json = batch.slice(at + 9..at + len - 1);
            tail.kept.push_back(Kept {
                segment,
                start: start + at as u64,
                end: start + (at + len) as u64,
                json,
                row: rows.slice(row_at..row_at + row_len),
            });
            tail.bytes += (len + row_len) as u64;
            at += len;
            row_at += row_len;
        }
        while tail.bytes > self.tail_max_bytes {
            let Some(old) = tail.kept.pop_front() else {
                break;
            };
            tail.bytes -= old.size();
        }
    }

    /// Up to `max` records from `cursor` on out of memory, when memory holds the record that
    /// starts there; `None` sends the caller to [`Journal::read`]. Records before the cursor
    /// (shipped from the files) are let go.
    pub fn take(&self, cursor: Cursor, max: usize) -> Option<Read> {
        let mut tail = self.tail.lock().expect("journal tail");
        while let Some(k) = tail.kept.front() {
            if (k.segment, k.end) > (cursor.segment, cursor.offset) {
                break;
            }
            tail.bytes -= k.size();
            tail.kept.pop_front();
        }
        let first = tail.kept.front()?;
        if (first.segment, first.start) != (cursor.segment, cursor.offset) {
            return None;
        }
        let mut rows = Vec::new();
        let mut read = Read {
            node: None,
            records: Vec::new(),
            rows: None,
            damaged: Vec::new(),
            next: cursor,
            bytes: 0,
            finished: None,
            this_run: true,
        };
        while read.records.len() < max {
            match tail.kept.front() {
                Some(k) if (k.segment, k.start) == (read.next.segment, read.next.offset) => {}
                _ => break,
            }
            let k = tail.kept.pop_front().expect("front checked");
            tail.bytes -= k.size();
            read.bytes += k.end - k.start;
            read.next.offset = k.end;
            read.records.push(k.json);
            rows.push(k.row);
        }
        read.rows = Some(rows);
        Some(read)
    }

    /// The end of the last complete batch: a cursor there has shipped everything.
    pub fn tip(&self) -> Cursor {
        *self.tip.lock().expect("journal tip")
    }

    fn write_batch(&self, active: &mut Active, buf: &[u8]) -> std::io::Result<()> {
        if active.len >= SEGMENT_BYTES {
            // The closed segment is synced here: the interval sync only follows the active one.
            active.file.sync_data()?;
            let segment = active.segment + 1;
            let (file, header) = create_segment(&self.dir, segment, &self.node)?;
            self.appended_bytes.fetch_add(header, Ordering::Relaxed);
            *active = Active {
                file: Arc::new(file),
                segment,
                len: header,
                torn: false,
                last_error: String::new(),
            };
        }
        let mut file = &*active.file;
        if active.torn {
            file.write_all(b"\n")?;
            active.len += 1;
            self.appended_bytes.fetch_add(1, Ordering::Relaxed);
            active.torn = false;
        }
        if let Err(e) = file.write_all(buf) {
            let len = file.metadata().map_or(active.len, |m| m.len());
            self.appended_bytes
                .fetch_add(len - active.len, Ordering::Relaxed);
            active.len = len;
            active.torn = true;
            return Err(e);
        }
        active.len += buf.len() as u64;
        self.appended_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        if self.sync_each_batch {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Flushes the active segment to the device (the interval policy's tick). The file lock is
    /// held only to clone the handle, so appends go on during the sync.
    pub fn sync(&self) -> std::io::Result<()> {
        let file = self.active.lock().expect("journal file").file.clone();
        file.sync_data()
    }

    /// Reads up to `max` records from `cursor` on, within one segment.
    pub fn read(&self, cursor: Cursor, max: usize) -> std::io::Result<Option<Read>> {
        let tip = *self.tip.lock().expect("journal tip");
        // The cursor's segment by name; the directory is listed only to find the next one.
        let named = segment_path(&self.dir, cursor.segment);
        let found = if named.exists() {
            Some((cursor.segment, named))
        } else {
            segments(&self.dir)?
                .into_iter()
                .find(|(n, _)| *n >= cursor.segment)
        };
        let Some((segment, path)) = found else {
            return Ok(None);
        };
        let offset = if segment == cursor.segment {
            cursor.offset
        } else {
            0
        };
        let mut file = File::open(&path)?;
        let limit = if segment == tip.segment {
            tip.offset
        } else {
            file.metadata()?.len()
        };
        let mut read = Read {
            node: None,
            records: Vec::new(),
            rows: None,
            damaged: Vec::new(),
            next: Cursor { segment, offset },
            bytes: 0,
            finished: None,
            this_run: segment >= self.first_segment,
        };
        let mut reader = BufReader::new(&mut file);
        let mut line = Vec::new();
        // The header names the node whatever the cursor: read it first.
        let header_len = reader.by_ref().take(limit).read_until(b'\n', &mut line)? as u64;
        read.node = decode::<Header>(&line)
            .ok()
            .filter(|h| h.journal == MAGIC)
            .map(|h| h.node);
        let mut position = offset;
        if offset == 0 {
            if read.node.is_none() && header_len > 0 {
                read.damaged.push(Damage {
                    file: path.clone(),
                    offset: 0,
                    reason: "no journal header (the records are shipped under this node's name)"
                        .into(),
                });
            }
            position = if read.node.is_some() { header_len } else { 0 };
        }
        reader.seek(SeekFrom::Start(position))?;
        let mut reader = reader.take(limit.saturating_sub(position));
        while read.records.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)? as u64;
            if n == 0 {
                break;
            }
            let at = position;
            position += n;
            if line.last() != Some(&b'\n') {
                read.damaged.push(Damage {
                    file: path.clone(),
                    offset: at,
                    reason: format!("a record torn at the end of the file ({n} bytes)"),
                });
                continue;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match decode::<AuditEntry>(&line) {
                Ok(_) => read
                    .records
                    .push(Bytes::copy_from_slice(&line[9..line.len() - 1])),
                Err(reason) => read.damaged.push(Damage {
                    file: path.clone(),
                    offset: at,
                    reason,
                }),
            }
        }
        read.bytes = position - offset;
        read.next = Cursor {
            segment,
            offset: position,
        };
        if segment != tip.segment && position >= limit {
            read.finished = Some(path);
        }
        Ok(Some(read))
    }

    /// Remembers how far PostgreSQL has the journal, overwriting a fixed-width line in place
    /// (no truncation, no new file per batch). Not synced: a cursor lost or torn only makes
    /// the next run ship a segment again, and the insert skips what it already has.
    pub fn save_cursor(&self, cursor: Cursor) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let mut file = self.cursor_file.lock().expect("journal cursor");
        if file.is_none() {
            *file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(self.dir.join(CURSOR))?,
            );
        }
        let line = format!("{:020} {:020}\n", cursor.segment, cursor.offset);
        file.as_ref()
            .expect("opened above")
            .write_all_at(line.as_bytes(), 0)
    }

    pub fn cursor(&self) -> Cursor {
        load_cursor(&self.dir).unwrap_or(Cursor {
            segment: 0,
            offset: 0,
        })
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut line = Vec::new();
    encode_into(&mut line, value);
    line
}

/// Appends `entry`'s line to `line` and its `COPY` row to `row`. The line is what
/// [`encode_into`] writes for it, written field by field: the id and the time are formatted
/// once for both and need no escaping, only the free text goes through serde's escaping, and
/// the detail is already JSON (serde's way cost 3,500 instructions more per request).
pub(super) fn encode_record(line: &mut Vec<u8>, row: &mut Vec<u8>, node: &str, entry: &AuditEntry) {
    let mut id = uuid::Uuid::encode_buffer();
    let id = entry.event_id.hyphenated().encode_lower(&mut id);
    // Both buffers start empty for each batch (their bytes go to the shipper's tail), so
    // growing them piece by piece reallocated eight times a line: room is made once.
    let text = entry.actor.len()
        + entry.action.len()
        + entry.target.len()
        + entry.outcome.len()
        + entry.detail_json().len();
    line.reserve(text + 128);
    row.reserve(text + node.len() + 80);
    entry.with_at_text(|at| {
        let start = line.len();
        line.extend_from_slice(b"00000000 {\"event_id\":\"");
        line.extend_from_slice(id.as_bytes());
        line.extend_from_slice(b"\",\"at\":\"");
        line.extend_from_slice(at.as_bytes());
        line.push(b'"');
        for (name, value) in [
            (&b",\"actor\":"[..], &entry.actor),
            (b",\"action\":", &entry.action),
            (b",\"target\":", &entry.target),
            (b",\"outcome\":", &entry.outcome),
        ] {
            line.extend_from_slice(name);
            serde_json::to_writer(&mut *line, value).expect("a string serializes");
        }
        line.extend_from_slice(b",\"detail\":");
        line.extend_from_slice(entry.detail_json().as_bytes());
        line.push(b'}');
        seal(line, start);
        super::copy_row(row, node, (id, at), entry);
    });
}

/// Appends `value`'s line to `buf`: the JSON is written in place after room for its checksum.
fn encode_into<T: Serialize>(buf: &mut Vec<u8>, value: &T) {
    let start = buf.len();
    buf.extend_from_slice(b"00000000 ");
    serde_json::to_writer(&mut *buf, value).expect("journal records serialize");
    seal(buf, start);
}

/// Fills in the checksum of the line that starts at `start` (its JSON follows the room for
/// it) and ends the line.
fn seal(buf: &mut Vec<u8>, start: usize) {
    let crc = crc32fast::hash(&buf[start + 9..]);
    // `{crc:08x}`, without the formatting machinery (a third of this function's cost).
    hex::encode_to_slice(crc.to_be_bytes(), &mut buf[start..start + 8]).expect("8 hex digits fit");
    buf.push(b'\n');
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.len() < 10 || line[8] != b' ' {
        return Err("not a journal record (no checksum)".into());
    }
    let (crc, json) = (&line[..8], &line[9..]);
    let crc = std::str::from_utf8(crc)
        .ok()
        .and_then(|c| u32::from_str_radix(c, 16).ok())
        .ok_or("not a journal record (no checksum)")?;
    if crc32fast::hash(json) != crc {
        return Err("checksum mismatch (damaged on disk)".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("checksum good but not a record: {e}"))
}

fn create_segment(dir: &Path, n: u64, node: &str) -> std::io::Result<(File, u64)> {
    let path = segment_path(dir, n);
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    let header = encode(&Header {
        journal: MAGIC.into(),
        version: 1,
        node: node.into(),
    });
    file.write_all(&header)?;
    file.sync_data()?;
    // The new name survives a machine crash too.
    File::open(dir)?.sync_all()?;
    Ok((file, header.len() as u64))
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}{SUFFIX}"))
}

/// The segment files, oldest first; other files in the directory are left alone.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_suffix(SUFFIX))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((n, entry.path()));
    }
    found.sort();
    Ok(found)
}

fn load_cursor(dir: &Path) -> Option<Cursor> {
    let text = std::fs::read_to_string(dir.join(CURSOR)).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Cursor {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> AuditEntry {
        AuditEntry {
            event_id: uuid::Uuid::from_u128(u128::from(i) + 1),
            at: chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(i), 0).unwrap(),
            actor: "user:x".into(),
            action: "request".into(),
            target: "api".into(),
            outcome: "allowed".into(),
            detail: serde_json::json!({ "request_id": format!("r{i}") }).into(),
        }
    }

    fn parsed(json: &Bytes) -> AuditEntry {
        serde_json::from_slice(json).unwrap()
    }

    /// Reads everything from the saved cursor on, as the shipper does, deleting finished
    /// segments; returns (node, record) pairs and the damage seen.
    fn drain(journal: &Journal) -> (Vec<(Option<String>, AuditEntry)>, Vec<Damage>) {
        let (mut records, mut damaged) = (Vec::new(), Vec::new());
        let mut cursor = journal.cursor();
        while let Some(read) = journal.read(cursor, 7).unwrap() {
            if read.bytes == 0 && read.finished.is_none() {
                break;
            }
            records.extend(read.records.iter().map(|r| (read.node.clone(), parsed(r))));
            damaged.extend(read.damaged);
            cursor = read.next;
            if let Some(done) = read.finished {
                std::fs::remove_file(done).unwrap();
                cursor = Cursor {
                    segment: cursor.segment + 1,
                    offset: 0,
                };
            }
            journal.save_cursor(cursor).unwrap();
        }
        (records, damaged)
    }

    /// Ships as the shipper does, memory first and the files when memory cannot continue;
    /// returns the records and how many came from memory.
    fn ship_all(journal: &Journal, cursor: &mut Cursor, max: usize) -> (Vec<AuditEntry>, usize) {
        let (mut records, mut from_memory) = (Vec::new(), 0);
        loop {
            if let Some(read) = journal.take(*cursor, max) {
                from_memory += read.records.len();
                records.extend(read.records.iter().map(parsed));
                *cursor = read.next;
                continue;
            }
            if *cursor == journal.tip() {
                return (records, from_memory);
            }
            let read = journal.read(*cursor, max).unwrap().unwrap();
            records.extend(read.records.iter().map(parsed));
            *cursor = read.next;
            if read.finished.is_some() {
                *cursor = Cursor {
                    segment: cursor.segment + 1,
                    offset: 0,
                };
            }
        }
    }

    #[test]
    fn a_shipper_that_keeps_up_takes_records_from_memory_and_one_behind_reads_the_files() {
        for (tail_max_lines, batch, max) in [(1_000, 3, 5), (4, 3, 5), (1, 7, 2), (10, 1, 1)] {
            let dir = tempfile::tempdir().unwrap();
            let (mut journal, _) = Journal::open(dir.path(), "n1", false).unwrap();
            let (mut line, mut row) = (Vec::new(), Vec::new());
            encode_record(&mut line, &mut row, "n1", &entry(0));
            // A record held in memory is its line and its row.
            let line = (line.len() + row.len()) as u64;
            journal.tail_max_bytes = tail_max_lines * line;
            let mut cursor = journal.cursor();
            let (mut shipped, mut from_memory) = (Vec::new(), 0);
            let mut next = 0;
            for round in 0..12u32 {
                for _ in 0..=round % 4 {
                    journal
                        .append(&(next..next + batch).map(entry).collect::<Vec<_>>())
                        .unwrap();
                    next += batch;
                }
                // Every third round the shipper is away and falls behind.
                if round % 3 != 2 {
                    let (records, memory) = ship_all(&journal, &mut cursor, max);
                    shipped.extend(records);
                    from_memory += memory;
                }
            }
            let (records, memory) = ship_all(&journal, &mut cursor, max);
            shipped.extend(records);
            from_memory += memory;
            let ids: Vec<_> = shipped.iter().map(|r| r.event_id).collect();
            let want: Vec<_> = (0..next).map(|i| entry(i).event_id).collect();
            assert_eq!(
                ids, want,
                "tail {tail_max_lines} lines, batch {batch}, max {max}"
            );
            let kept = journal.tail.lock().unwrap();
            assert!(kept.kept.is_empty() && kept.bytes == 0);
            if tail_max_lines >= 1_000 {
                // The first read starts before this run's header, so it goes to the file.
                assert!(
                    from_memory >= (next as usize) - max,
                    "{from_memory} of {next}"
                );
            } else {
                assert!(
                    from_memory > 0 && from_memory < next as usize,
                    "{from_memory}"
                );
            }
        }
    }

    #[test]
    fn records_are_read_once_in_order_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (first, backlog) = Journal::open(dir.path(), "n1", false).unwrap();
        assert_eq!(backlog, 0);
        for i in 0..10 {
            first.append(&[entry(i)]).unwrap();
        }
        let (read, damaged) = drain(&first);
        assert!(damaged.is_empty(), "{damaged:?}");
        let ids: Vec<_> = read.iter().map(|(_, r)| r.event_id).collect();
        assert_eq!(ids, (0..10).map(|i| entry(i).event_id).collect::<Vec<_>>());
        first.append(&[entry(10), entry(11)]).unwrap();
        drop(first);
        // A crash before those two were shipped: the next run starts a segment of its own and
        // finds exactly the two left (plus its own later records).
        let (second, backlog) = Journal::open(dir.path(), "n1", false).unwrap();
        assert!(backlog > 0);
        second.append(&[entry(12)]).unwrap();
        let (read, damaged) = drain(&second);
        assert!(damaged.is_empty(), "{damaged:?}");
        let ids: Vec<_> = read.iter().map(|(_, r)| r.event_id).collect();
        assert_eq!(ids, [10, 11, 12].map(|i| entry(i).event_id));
        assert!(read.iter().all(|(n, _)| n.as_deref() == Some("n1")));
        assert_eq!(
            segments(dir.path()).unwrap().len(),
            1,
            "shipped segments removed"
        );
    }

    #[test]
    fn damaged_records_are_skipped_and_reported_at_their_offset() {
        let dir = tempfile::tempdir().unwrap();
        let header = encode(&Header {
            journal: MAGIC.into(),
            version: 1,
            node: "n1".into(),
        });
        let good = encode(&entry(1));
        let mut flipped = encode(&entry(2));
        let at = flipped.len() / 2;
        flipped[at] ^= 0x01;
        let garbage = b"\xff\xfe\x00 not a record\n".to_vec();
        let torn = encode(&entry(4))[..30].to_vec();
        let file: Vec<u8> = [
            header.clone(),
            good.clone(),
            flipped.clone(),
            garbage.clone(),
            encode(&entry(3)),
            torn,
        ]
        .concat();
        std::fs::write(dir.path().join("00000000000000000001.log"), &file).unwrap();
        let (journal, backlog) = Journal::open(dir.path(), "n1", false).unwrap();
        assert_eq!(backlog, file.len() as u64);
        let (read, damaged) = drain(&journal);
        let ids: Vec<_> = read.iter().map(|(_, r)| r.event_id).collect();
        assert_eq!(ids, [1, 3].map(|i| entry(i).event_id));
        let offsets: Vec<u64> = damaged.iter().map(|d| d.offset).collect();
        let flipped_at = (header.len() + good.len()) as u64;
        let garbage_at = flipped_at + flipped.len() as u64;
        let torn_at = file.len() as u64 - 30;
        assert_eq!(offsets, [flipped_at, garbage_at, torn_at], "{damaged:?}");
        assert!(
            damaged[0].reason.contains("checksum mismatch"),
            "{damaged:?}"
        );
        assert!(damaged[2].reason.contains("torn"), "{damaged:?}");
    }

    #[test]
    fn another_nodes_segment_keeps_its_name_and_a_headerless_file_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (other, _) = Journal::open(dir.path(), "other-node", false).unwrap();
            other.append(&[entry(1)]).unwrap();
        }
        std::fs::write(
            dir.path().join("00000000000000000002.log"),
            encode(&entry(2)),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a segment").unwrap();
        let (journal, _) = Journal::open(dir.path(), "me", false).unwrap();
        journal.append(&[entry(3)]).unwrap();
        let (read, damaged) = drain(&journal);
        let got: Vec<_> = read.iter().map(|(n, r)| (n.clone(), r.event_id)).collect();
        assert_eq!(
            got,
            [
                (Some("other-node".to_string()), entry(1).event_id),
                (None, entry(2).event_id),
                (Some("me".to_string()), entry(3).event_id),
            ]
        );
        assert_eq!(damaged.len(), 1, "the missing header reported: {damaged:?}");
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn a_torn_cursor_means_shipping_again_never_skipping() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (j, _) = Journal::open(dir.path(), "n1", false).unwrap();
            j.append(&[entry(1), entry(2)]).unwrap();
            j.save_cursor(Cursor {
                segment: 1,
                offset: 10_000,
            })
            .unwrap();
        }
        std::fs::write(dir.path().join(CURSOR), "garbage").unwrap();
        let (j, _) = Journal::open(dir.path(), "n1", false).unwrap();
        let (read, _) = drain(&j);
        assert_eq!(read.len(), 2);
    }

    #[test]
    fn concurrent_appends_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), "n1", true).unwrap();
        let journal = Arc::new(journal);
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let j = journal.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        j.append(&[entry(t * 1000 + i)]).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(journal.appended_records.load(Ordering::Relaxed), 1600);
        let (read, damaged) = drain(&journal);
        assert!(damaged.is_empty());
        let mut ids: Vec<_> = read.iter().map(|(_, r)| r.event_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1600);
    }

    #[test]
    fn one_commit_writes_every_line_staged_before_it_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), "n1", false).unwrap();
        let staged: Vec<_> = (0..3).map(|i| journal.stage(&[entry(i)])).collect();
        assert!(staged.iter().all(|s| !s.written()));
        assert_eq!(journal.appended_records.load(Ordering::Relaxed), 0);
        journal.commit(&staged[1]).unwrap();
        assert!(staged.iter().all(Staged::written));
        assert_eq!(journal.appended_records.load(Ordering::Relaxed), 3);
        // The others' commits find their lines written and write nothing again.
        for s in &staged {
            journal.commit(s).unwrap();
        }
        let (read, damaged) = drain(&journal);
        assert!(damaged.is_empty());
        let got: Vec<_> = read.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, (0..3).map(entry).collect::<Vec<_>>());
    }
}
