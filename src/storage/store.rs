//! [`Store`]: the append-only change log with snapshots. The file layouts
//! are in [`super::record`], the recovery rules in [`super`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::files::{create_private_dir, remove_stale_temp, replace_atomically};
use super::record::{
    decode_header, decode_record, encode_header, encode_record, Decoded, HEADER_LEN, LOG_MAGIC,
    MAX_LOG_RECORD, SNAPSHOT_MAGIC,
};
use super::state::{Change, State, StateError};

/// The change log's file name in the storage directory.
pub const LOG_FILE: &str = "state.log";
/// The snapshot's file name in the storage directory.
pub const SNAPSHOT_FILE: &str = "state.snapshot";
/// Where a log is copied before a corrupt (not merely torn) tail is cut off,
/// so that the cut bytes can still be inspected.
pub const CORRUPT_COPY_FILE: &str = "state.log.corrupt";

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file is damaged in a way recovery must not guess about.
    #[error("{} is damaged: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The change does not fit the state.
    #[error(transparent)]
    State(#[from] StateError),
    /// A change or the state could not be encoded as JSON.
    #[error("cannot encode for storage: {0}")]
    Encode(#[source] serde_json::Error),
    /// The change does not fit in a log record.
    #[error("change of {len} bytes is too large to store")]
    TooLarge {
        /// Its encoded size.
        len: usize,
    },
    /// An earlier failure left the files in a state only recovery on
    /// reopening may touch; nothing more is written.
    #[error("storage in {} failed earlier and must be reopened", dir.display())]
    Poisoned {
        /// The storage directory.
        dir: PathBuf,
    },
    /// A compaction failed part way; [`Store::commit_and_apply`] finishes
    /// it before the next change, [`Store::commit`] alone cannot.
    #[error("storage in {} has an unfinished compaction", dir.display())]
    UnfinishedCompaction {
        /// The storage directory.
        dir: PathBuf,
    },
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// When [`Store::commit_and_apply`] compacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Compact once the log holds this many records.
    pub compact_after_records: u64,
    /// Compact once the log is this many bytes long.
    pub compact_after_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            compact_after_records: 10_000,
            compact_after_bytes: 8 << 20,
        }
    }
}

/// The durable store of one node: `state.snapshot` plus `state.log` in one
/// directory. Single writer: one process, one `Store` per directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    log: File,
    generation: u64,
    log_len: u64,
    log_records: u64,
    options: StoreOptions,
    poisoned: bool,
    /// A compaction failed after it may have put the new snapshot in
    /// place: the old log must not be appended to until one succeeds.
    unfinished_compaction: bool,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with default options,
    /// recovering after a crash, and returns it with the recovered state.
    pub fn open(dir: &Path) -> Result<(Store, State), StorageError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// [`Store::open`] with explicit compaction thresholds.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<(Store, State), StorageError> {
        create_private_dir(dir).map_err(io_error("create", dir))?;
        let log_path = dir.join(LOG_FILE);
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        for path in [&log_path, &snapshot_path] {
            remove_stale_temp(path).map_err(io_error("remove the temporary copy of", path))?;
        }
        let (generation, mut state) = read_snapshot(&snapshot_path)?.unwrap_or_default();
        let (log_len, log_records) = recover_log(dir, generation, &mut state)?;
        let log = open_append(&log_path)?;
        let store = Store {
            dir: dir.to_owned(),
            log,
            generation,
            log_len,
            log_records,
            options,
            poisoned: false,
            unfinished_compaction: false,
        };
        Ok((store, state))
    }

    /// Appends `change` to the log and fsyncs it. When this returns `Ok` the
    /// change survives a crash; the caller applies it in memory only then.
    /// Prefer [`Store::commit_and_apply`], which also checks and compacts.
    pub fn commit(&mut self, change: &Change) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        if self.unfinished_compaction {
            return Err(StorageError::UnfinishedCompaction {
                dir: self.dir.clone(),
            });
        }
        let payload = serde_json::to_vec(change).map_err(StorageError::Encode)?;
        if payload.len() > MAX_LOG_RECORD {
            return Err(StorageError::TooLarge { len: payload.len() });
        }
        let mut frame = Vec::with_capacity(payload.len() + 8);
        encode_record(&payload, &mut frame);
        if let Err(e) = self.log.write_all(&frame) {
            self.cut_partial_write();
            return Err(io_error("append to", &self.log_path())(e));
        }
        if let Err(e) = self.log.sync_data() {
            // After a failed fsync the kernel may have dropped the pages:
            // what is on disk is unknown until recovery reads it.
            self.poisoned = true;
            return Err(io_error("fsync", &self.log_path())(e));
        }
        self.log_len += frame.len() as u64;
        self.log_records += 1;
        Ok(())
    }

    /// Checks `change` against `state`, commits it, applies it to `state`,
    /// and compacts when the log has grown past the thresholds. A failed
    /// compaction does not fail the (already durable) change; it is logged,
    /// and the next call finishes it first (a full disk that has room again
    /// takes changes again), refusing its change while it cannot.
    pub fn commit_and_apply(
        &mut self,
        state: &mut State,
        change: &Change,
    ) -> Result<(), StorageError> {
        state.check(change)?;
        if self.unfinished_compaction {
            // Nothing was committed since the failed attempt, so `state`
            // is still what it was snapshotting.
            self.compact(state)?;
        }
        self.commit(change)?;
        state.apply(change)?;
        if self.needs_compaction() {
            if let Err(error) = self.compact(state) {
                tracing::error!(dir = %self.dir.display(), %error, "storage compaction failed");
            }
        }
        Ok(())
    }

    /// True when the log has passed a compaction threshold.
    pub fn needs_compaction(&self) -> bool {
        self.log_records >= self.options.compact_after_records
            || self.log_len >= self.options.compact_after_bytes
    }

    /// Writes `state` as the new snapshot and starts an empty log. `state`
    /// must be the result of every change committed so far.
    pub fn compact(&mut self, state: &State) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(self.poisoned_error());
        }
        // Once the new snapshot may be on disk, appending to the old log
        // would write changes that recovery discards: no commit until the
        // new log is in place. Redoing the whole compaction is always safe
        // (rules 4 and 6 of the module docs), so a failed one is retried.
        self.unfinished_compaction = true;
        let next = self.generation + 1;
        write_snapshot(&self.dir.join(SNAPSHOT_FILE), next, state)?;
        let log_path = self.log_path();
        create_log(&log_path, next)?;
        self.log = open_append(&log_path)?;
        self.generation = next;
        self.log_len = HEADER_LEN as u64;
        self.log_records = 0;
        self.unfinished_compaction = false;
        tracing::debug!(dir = %self.dir.display(), generation = next, "storage compacted");
        Ok(())
    }

    /// The storage directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records in the current log (since the last snapshot).
    pub fn log_records(&self) -> u64 {
        self.log_records
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    fn poisoned_error(&self) -> StorageError {
        StorageError::Poisoned {
            dir: self.dir.clone(),
        }
    }

    /// Removes the bytes of a failed append so that later records do not
    /// follow garbage (which would hide them from recovery).
    fn cut_partial_write(&mut self) {
        let cut = self
            .log
            .set_len(self.log_len)
            .and_then(|()| self.log.sync_data());
        if cut.is_err() {
            self.poisoned = true;
        }
    }
}

fn open_append(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_error("open", path))
}

fn create_log(path: &Path, generation: u64) -> Result<(), StorageError> {
    replace_atomically(path, &encode_header(LOG_MAGIC, generation))
        .map_err(io_error("create", path))
}

fn write_snapshot(path: &Path, generation: u64, state: &State) -> Result<(), StorageError> {
    let payload = serde_json::to_vec(state).map_err(StorageError::Encode)?;
    let mut bytes = encode_header(SNAPSHOT_MAGIC, generation).to_vec();
    encode_record(&payload, &mut bytes);
    replace_atomically(path, &bytes).map_err(io_error("write", path))
}

/// Reads a whole file, `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

/// The snapshot's generation and state. A snapshot is only ever replaced
/// atomically, so any damage is reported rather than repaired.
fn read_snapshot(path: &Path) -> Result<Option<(u64, State)>, StorageError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let generation =
        decode_header(SNAPSHOT_MAGIC, &bytes).ok_or_else(|| corrupt("bad header".into()))?;
    let body = &bytes[HEADER_LEN..];
    let payload = match decode_record(body, u32::MAX as usize) {
        Decoded::Record(payload, size) if size == body.len() => payload,
        Decoded::Record(..) => return Err(corrupt("trailing bytes".into())),
        other => return Err(corrupt(format!("bad record: {other:?}"))),
    };
    let state = serde_json::from_slice(payload).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some((generation, state)))
}

/// Brings `state.log` in line with the snapshot at `generation`, replaying
/// it into `state`; returns the log's valid length and record count.
fn recover_log(dir: &Path, generation: u64, state: &mut State) -> Result<(u64, u64), StorageError> {
    let path = dir.join(LOG_FILE);
    let fresh = (HEADER_LEN as u64, 0);
    let Some(bytes) = read_optional(&path)? else {
        create_log(&path, generation)?;
        return Ok(fresh);
    };
    let corrupt = |reason: String| StorageError::Corrupt {
        path: path.clone(),
        reason,
    };
    let log_generation =
        decode_header(LOG_MAGIC, &bytes).ok_or_else(|| corrupt("bad header".into()))?;
    if log_generation < generation {
        // Compaction stopped after the snapshot was renamed into place: the
        // snapshot already holds every change of this log.
        tracing::info!(path = %path.display(), "replacing a log already folded into the snapshot");
        create_log(&path, generation)?;
        return Ok(fresh);
    }
    if log_generation > generation {
        return Err(corrupt(format!(
            "log generation {log_generation} is newer than snapshot generation {generation}; \
             the snapshot is missing or older than the log"
        )));
    }
    let replayed = replay(&bytes, &path, state)?;
    if replayed.valid_len < bytes.len() {
        cut_tail(dir, &path, &bytes, &replayed)?;
    }
    Ok((replayed.valid_len as u64, replayed.records))
}

struct Replayed {
    valid_len: usize,
    records: u64,
    damage: Option<Damage>,
}

/// Why replay stopped before the end of the log.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The file ends inside a record: the classic crash during an append.
    Torn,
    /// A length or checksum is wrong: a torn sector or a damaged disk.
    Corrupt(&'static str),
}

impl Damage {
    fn reason(self) -> &'static str {
        match self {
            Damage::Torn => "torn record",
            Damage::Corrupt(reason) => reason,
        }
    }
}

fn replay(bytes: &[u8], path: &Path, state: &mut State) -> Result<Replayed, StorageError> {
    let mut offset = HEADER_LEN;
    let mut records = 0;
    let damage = loop {
        let (payload, size) = match decode_record(&bytes[offset..], MAX_LOG_RECORD) {
            Decoded::Record(payload, size) => (payload, size),
            Decoded::End => break None,
            Decoded::Torn => break Some(Damage::Torn),
            Decoded::Corrupt(reason) => break Some(Damage::Corrupt(reason)),
        };
        // The checksum matched, so this is a record we wrote: failing to
        // decode it is a format problem, and dropping it would lose data.
        let change: Change =
            serde_json::from_slice(payload).map_err(|e| StorageError::Corrupt {
                path: path.to_owned(),
                reason: format!("record at byte {offset} does not decode: {e}"),
            })?;
        if let Err(error) = state.apply(&change) {
            // Such a change was a no-op when it was made, so it is one now.
            tracing::warn!(path = %path.display(), offset, %error, "skipping a logged change that does not apply");
        }
        offset += size;
        records += 1;
    };
    Ok(Replayed {
        valid_len: offset,
        records,
        damage,
    })
}

/// Truncates the log after its last intact record.
fn cut_tail(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    replayed: &Replayed,
) -> Result<(), StorageError> {
    let damage = replayed.damage.unwrap_or(Damage::Torn);
    tracing::warn!(
        path = %path.display(),
        offset = replayed.valid_len,
        dropped_bytes = bytes.len() - replayed.valid_len,
        reason = damage.reason(),
        "cutting a damaged tail off the storage log; records after it are not loaded"
    );
    if let Damage::Corrupt(_) = damage {
        let copy = dir.join(CORRUPT_COPY_FILE);
        fs::write(&copy, bytes).map_err(io_error("write", &copy))?;
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    file.set_len(replayed.valid_len as u64)
        .and_then(|()| file.sync_all())
        .map_err(io_error("truncate", path))
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
