//! The raft files in the storage directory, described once:
//!
//! ```text
//! raft.json      the small state: vote, committed and applied position,
//!                last purged entry, membership. Replaced atomically.
//! raft.log       the entries after the last purge, in index order:
//!                +-------------------------------+
//!                | header: "WRRFLOG\x01", 0 (16) |
//!                +-------------------------------+
//!                | record: one entry (JSON)      |  appended, then fsynced
//!                | ...                           |
//!                +-------------------------------+
//!                Rewritten whole (temp, fsync, rename) when entries are
//!                dropped: a conflicting tail, or the prefix a snapshot
//!                covers.
//! raft.snapshot  the last snapshot: one record holding its metadata
//!                (JSON), one holding the state (JSON). Replaced atomically.
//! ```
//!
//! Records use [`crate::storage::record`]'s framing (length, CRC-32). An
//! append is fsynced before it returns, so a torn or corrupt tail of
//! `raft.log` was never acknowledged: it is cut off at open (with a
//! warning), like the tail of `state.log`.
//!
//! Blocking file I/O; no tokio.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use openraft::{Entry, LogId, SnapshotMeta, StoredMembership, Vote};
use serde::{Deserialize, Serialize};

use super::{NodeId, TypeConfig};
use crate::storage::files::replace_atomically;
use crate::storage::record::{self, Decoded};

/// The small state, in `raft.json`.
pub const META_FILE: &str = "raft.json";
/// The entries, in `raft.log`.
pub const LOG_FILE: &str = "raft.log";
/// The last snapshot, in `raft.snapshot`.
pub const SNAPSHOT_FILE: &str = "raft.snapshot";
/// Magic of `raft.log`; the last byte is the format version.
pub const LOG_MAGIC: [u8; 8] = *b"WRRFLOG\x01";
use crate::limits::MAX_RAFT_SNAPSHOT as MAX_SNAPSHOT;

/// Raft's membership as stored.
pub type Membership = StoredMembership<NodeId, openraft::BasicNode>;
/// A snapshot's metadata.
pub type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// What `raft.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hard {
    /// The vote.
    pub vote: Option<Vote<NodeId>>,
    /// The last committed entry known here.
    pub committed: Option<LogId<NodeId>>,
    /// The last entry dropped from the log.
    pub last_purged: Option<LogId<NodeId>>,
    /// The last entry applied to the state.
    pub last_applied: Option<LogId<NodeId>>,
    /// The membership in effect at `last_applied`.
    pub membership: Membership,
    /// Entries of the first layout, which kept them in this file; moved to
    /// `raft.log` at open.
    #[serde(default, skip_serializing)]
    log: BTreeMap<u64, Entry<TypeConfig>>,
}

/// A snapshot as stored: its metadata and the serialized state.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    /// Position and membership it covers.
    pub meta: Meta,
    /// The state, as JSON.
    pub data: Vec<u8>,
}

/// Everything the files held at open.
#[derive(Debug, Default)]
pub struct Loaded {
    /// `raft.json`.
    pub hard: Hard,
    /// `raft.log`, by index.
    pub entries: BTreeMap<u64, Entry<TypeConfig>>,
    /// `raft.snapshot`.
    pub snapshot: Option<StoredSnapshot>,
}

/// The open raft files of one node.
pub struct RaftFiles {
    dir: PathBuf,
    log: File,
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

impl RaftFiles {
    /// Opens the raft files in `dir` (creating an empty log), cutting off
    /// a torn or corrupt log tail.
    pub fn open(dir: &Path) -> io::Result<(RaftFiles, Loaded)> {
        let meta_path = dir.join(META_FILE);
        let mut hard: Hard = match std::fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| invalid(&meta_path, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Hard::default(),
            Err(e) => return Err(e),
        };
        let snapshot = read_snapshot(&dir.join(SNAPSHOT_FILE))?;
        let (mut entries, valid_len) = read_log(&dir.join(LOG_FILE))?;
        let log = open_log(&dir.join(LOG_FILE), valid_len)?;
        let mut files = RaftFiles {
            dir: dir.to_owned(),
            log,
        };
        let legacy = std::mem::take(&mut hard.log);
        if !legacy.is_empty() && entries.is_empty() {
            files.rewrite(legacy.values())?;
            files.save_hard(&hard)?;
            entries = legacy;
        }
        let purged = hard.last_purged.map_or(0, |id| id.index + 1);
        entries.retain(|index, _| *index >= purged);
        Ok((
            files,
            Loaded {
                hard,
                entries,
                snapshot,
            },
        ))
    }

    /// Replaces `raft.json`.
    pub fn save_hard(&self, hard: &Hard) -> io::Result<()> {
        let bytes = serde_json::to_vec(hard).map_err(io::Error::other)?;
        replace_atomically(&self.dir.join(META_FILE), &bytes)
    }

    /// Appends `entries` to `raft.log` and fsyncs.
    pub fn append<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry<TypeConfig>>,
    ) -> io::Result<()> {
        let mut out = Vec::new();
        for entry in entries {
            let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
            record::encode_record(&json, &mut out);
        }
        self.log.write_all(&out)?;
        self.log.sync_data()
    }

    /// Replaces `raft.log` with exactly `entries`.
    pub fn rewrite<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry<TypeConfig>>,
    ) -> io::Result<()> {
        let path = self.dir.join(LOG_FILE);
        let mut out = record::encode_header(LOG_MAGIC, 0).to_vec();
        for entry in entries {
            let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
            record::encode_record(&json, &mut out);
        }
        replace_atomically(&path, &out)?;
        self.log = OpenOptions::new().append(true).open(&path)?;
        Ok(())
    }

    /// Replaces `raft.snapshot`.
    pub fn save_snapshot(&self, snapshot: &StoredSnapshot) -> io::Result<()> {
        let meta = serde_json::to_vec(&snapshot.meta).map_err(io::Error::other)?;
        let mut out = Vec::with_capacity(meta.len() + snapshot.data.len() + 16);
        record::encode_record(&meta, &mut out);
        record::encode_record(&snapshot.data, &mut out);
        replace_atomically(&self.dir.join(SNAPSHOT_FILE), &out)
    }
}

/// The entries of the log at `path` and the length of its intact part.
fn read_log(path: &Path) -> io::Result<(BTreeMap<u64, Entry<TypeConfig>>, u64)> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((BTreeMap::new(), 0)),
        Err(e) => return Err(e),
    };
    if bytes.len() < record::HEADER_LEN {
        // Never got past its creation: nothing was appended.
        return Ok((BTreeMap::new(), 0));
    }
    if record::decode_header(LOG_MAGIC, &bytes).is_none() {
        return Err(invalid(path, "not a raft log (bad header)"));
    }
    let mut entries = BTreeMap::new();
    let mut at = record::HEADER_LEN;
    loop {
        match record::decode_record(&bytes[at..], record::MAX_LOG_RECORD) {
            Decoded::Record(payload, used) => {
                let entry: Entry<TypeConfig> =
                    serde_json::from_slice(payload).map_err(|e| invalid(path, e))?;
                // A later entry replaces what was at its index and after.
                let index = entry.log_id.index;
                entries.split_off(&index);
                entries.insert(index, entry);
                at += used;
            }
            Decoded::End => break,
            Decoded::Torn | Decoded::Corrupt(_) => {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    "cutting off an unacknowledged raft log tail"
                );
                break;
            }
        }
    }
    Ok((entries, at as u64))
}

/// Opens the log for appending after its first `valid_len` bytes (a fresh
/// log when there are none).
fn open_log(path: &Path, valid_len: u64) -> io::Result<File> {
    if valid_len == 0 {
        replace_atomically(path, &record::encode_header(LOG_MAGIC, 0))?;
    } else {
        let file = OpenOptions::new().write(true).open(path)?;
        if file.metadata()?.len() != valid_len {
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
    }
    OpenOptions::new().append(true).open(path)
}

fn read_snapshot(path: &Path) -> io::Result<Option<StoredSnapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Written atomically: any damage is an error, not a torn write.
    let Decoded::Record(meta, used) = record::decode_record(&bytes, record::MAX_LOG_RECORD) else {
        return Err(invalid(path, "damaged snapshot metadata"));
    };
    let Decoded::Record(data, _) = record::decode_record(&bytes[used..], MAX_SNAPSHOT) else {
        return Err(invalid(path, "damaged snapshot state"));
    };
    let meta: Meta = serde_json::from_slice(meta).map_err(|e| invalid(path, e))?;
    Ok(Some(StoredSnapshot {
        meta,
        data: data.to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 7), index),
            payload: EntryPayload::Normal(crate::storage::Change::ClearVhosts),
        }
    }

    fn indexes(loaded: &Loaded) -> Vec<(u64, u64)> {
        loaded
            .entries
            .values()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    #[test]
    fn entries_survive_a_reopen_and_rewrites_drop_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, loaded) = RaftFiles::open(dir.path()).unwrap();
        assert!(loaded.entries.is_empty());
        files.append(&[entry(1, 1), entry(1, 2)]).unwrap();
        files.append(&[entry(1, 3)]).unwrap();
        drop(files);
        let (mut files, loaded) = RaftFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&loaded), [(1, 1), (1, 2), (1, 3)]);
        files.rewrite(&[entry(1, 2), entry(1, 3)]).unwrap();
        files.append(&[entry(2, 4)]).unwrap();
        drop(files);
        let (_, loaded) = RaftFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&loaded), [(1, 2), (1, 3), (2, 4)]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, _) = RaftFiles::open(dir.path()).unwrap();
        files.append(&[entry(1, 1), entry(1, 2)]).unwrap();
        drop(files);
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        drop(file);
        let (mut files, loaded) = RaftFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&loaded), [(1, 1)]);
        files.append(&[entry(2, 2)]).unwrap();
        drop(files);
        let (_, loaded) = RaftFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&loaded), [(1, 1), (2, 2)]);
    }

    #[test]
    fn a_later_entry_replaces_the_tail_from_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, _) = RaftFiles::open(dir.path()).unwrap();
        files
            .append(&[entry(1, 1), entry(1, 2), entry(1, 3)])
            .unwrap();
        files.append(&[entry(2, 2)]).unwrap();
        drop(files);
        let (_, loaded) = RaftFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&loaded), [(1, 1), (2, 2)]);
    }

    #[test]
    fn hard_state_and_snapshot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = RaftFiles::open(dir.path()).unwrap();
        let log_id = LogId::new(CommittedLeaderId::new(3, 7), 5);
        let hard = Hard {
            vote: Some(Vote::new(3, 7)),
            committed: Some(log_id),
            last_purged: Some(log_id),
            last_applied: Some(log_id),
            ..Hard::default()
        };
        files.save_hard(&hard).unwrap();
        let snapshot = StoredSnapshot {
            meta: Meta {
                last_log_id: Some(log_id),
                last_membership: Membership::default(),
                snapshot_id: "s1".into(),
            },
            data: b"{\"vhosts\":{}}".to_vec(),
        };
        files.save_snapshot(&snapshot).unwrap();
        drop(files);
        let (_, loaded) = RaftFiles::open(dir.path()).unwrap();
        assert_eq!(loaded.hard.vote, hard.vote);
        assert_eq!(loaded.hard.last_purged, Some(log_id));
        let back = loaded.snapshot.expect("a snapshot");
        assert_eq!(back.meta.snapshot_id, "s1");
        assert_eq!(back.data, snapshot.data);
    }

    #[test]
    fn entries_kept_in_raft_json_by_the_first_layout_move_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let old = serde_json::json!({
            "vote": null, "committed": null, "last_purged": null,
            "last_applied": null, "membership": Membership::default(),
            "log": { "1": entry(1, 1), "2": entry(1, 2) },
        });
        std::fs::write(dir.path().join(META_FILE), old.to_string()).unwrap();
        let (_, loaded) = RaftFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&loaded), [(1, 1), (1, 2)]);
        let (_, again) = RaftFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&again), [(1, 1), (1, 2)]);
        let meta = std::fs::read_to_string(dir.path().join(META_FILE)).unwrap();
        assert!(!meta.contains("\"log\""), "{meta}");
    }
}
