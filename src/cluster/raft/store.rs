//! openraft's storage (the v1 `RaftStorage`, split by `Adaptor`): the raft
//! log, vote and applied position in `raft.json` in the storage directory,
//! and the state machine, which is the node's existing [`crate::storage`]
//! state: a committed entry is applied through
//! [`Handle::apply_committed`] (local store commit, data path, broker).
//!
//! `raft.json` is rewritten whole (temp file, fsync, rename, directory
//! fsync) on every change: administrative changes are rare and small.
//! Entries are never purged (snapshots are off), so the file grows with
//! the number of changes ever made.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::{Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogState, RaftLogReader, RaftSnapshotBuilder, RaftStorage, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use super::{NodeId, TypeConfig};
use crate::server::Handle;
use crate::storage::State;

/// File of the raft log and vote, in the storage directory.
pub const RAFT_FILE: &str = "raft.json";

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// What `raft.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    log: BTreeMap<u64, Entry<TypeConfig>>,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
}

/// The raft storage of one node.
#[derive(Clone)]
pub struct RaftStore {
    inner: Arc<tokio::sync::Mutex<Persisted>>,
    path: PathBuf,
    handle: Arc<Handle>,
}

fn io_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::new(ErrorSubject::Store, verb, AnyError::new(&e)).into()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl RaftStore {
    /// Opens (or starts) the raft files of the node behind `handle`.
    pub fn open(handle: Arc<Handle>) -> Result<RaftStore, String> {
        let path = handle.config.server.storage_dir.join(RAFT_FILE);
        let persisted = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(RaftStore {
            inner: Arc::new(tokio::sync::Mutex::new(persisted)),
            path,
            handle,
        })
    }

    async fn save(&self, persisted: &Persisted) -> Result<(), StorageError<NodeId>> {
        let bytes = serde_json::to_vec(persisted).map_err(|e| io_err(ErrorVerb::Write, e))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
            .await
            .map_err(|e| io_err(ErrorVerb::Write, e))?
            .map_err(|e| io_err(ErrorVerb::Write, e))
    }
}

impl RaftLogReader<TypeConfig> for RaftStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        Ok(inner.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for RaftStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let state = self.handle.with_state(State::clone);
        let data = serde_json::to_vec(&state).map_err(|e| io_err(ErrorVerb::Read, e))?;
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id: format!("{:?}", inner.last_applied),
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStorage<TypeConfig> for RaftStore {
    type LogReader = Self;
    type SnapshotBuilder = Self;

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.vote = Some(*vote);
        self.save(&inner).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.committed = committed;
        self.save(&inner).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.committed)
    }

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let last = inner.log.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn append_to_log<I>(&mut self, entries: I) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
    {
        let mut inner = self.inner.lock().await;
        for entry in entries {
            inner.log.insert(entry.log_id.index, entry);
        }
        self.save(&inner).await
    }

    async fn delete_conflict_logs_since(
        &mut self,
        log_id: LogId<NodeId>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.log.retain(|index, _| *index < log_id.index);
        self.save(&inner).await
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.log.retain(|index, _| *index > log_id.index);
        inner.last_purged = Some(log_id);
        self.save(&inner).await
    }

    async fn last_applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply_to_state_machine(
        &mut self,
        entries: &[Entry<TypeConfig>],
    ) -> Result<Vec<Result<(), String>>, StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            let result = match &entry.payload {
                EntryPayload::Blank => Ok(()),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Ok(())
                }
                EntryPayload::Normal(change) => {
                    let handle = Arc::clone(&self.handle);
                    let change = change.clone();
                    // Storage fsyncs and data-path commands block.
                    tokio::task::spawn_blocking(move || handle.apply_committed(change))
                        .await
                        .map_err(|e| io_err(ErrorVerb::Write, e))?
                }
            };
            inner.last_applied = Some(entry.log_id);
            results.push(result);
        }
        self.save(&inner).await?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let state: State =
            serde_json::from_slice(snapshot.get_ref()).map_err(|e| io_err(ErrorVerb::Read, e))?;
        let handle = Arc::clone(&self.handle);
        tokio::task::spawn_blocking(move || handle.replace_state(state))
            .await
            .map_err(|e| io_err(ErrorVerb::Write, e))?
            .map_err(|e| io_err(ErrorVerb::Write, e))?;
        let mut inner = self.inner.lock().await;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        if let Some(last) = meta.last_log_id {
            inner.log.retain(|index, _| *index > last.index);
            inner.last_purged = Some(last);
        }
        self.save(&inner).await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        // Snapshots are off (`SnapshotPolicy::Never`, nothing purged): a
        // lagging node always catches up from the log.
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry};

    #[test]
    fn the_persisted_log_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RAFT_FILE);
        let log_id = LogId::new(CommittedLeaderId::new(3, 7), 5);
        let mut persisted = Persisted {
            vote: Some(Vote::new(3, 7)),
            committed: Some(log_id),
            last_applied: Some(log_id),
            ..Persisted::default()
        };
        persisted.log.insert(
            5,
            Entry {
                log_id,
                payload: EntryPayload::Normal(crate::storage::Change::ClearVhosts),
            },
        );
        write_atomic(&path, &serde_json::to_vec(&persisted).unwrap()).unwrap();
        write_atomic(&path, &serde_json::to_vec(&persisted).unwrap()).unwrap();
        let back: Persisted = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back.vote, persisted.vote);
        assert_eq!(back.committed, Some(log_id));
        assert_eq!(back.last_applied, Some(log_id));
        let entry = &back.log[&5];
        assert_eq!(entry.log_id, log_id);
        assert!(matches!(
            entry.payload,
            EntryPayload::Normal(crate::storage::Change::ClearVhosts)
        ));
        assert!(!path.with_extension("json.tmp").exists());
    }
}
