//! openraft's storage (the v1 `RaftStorage`, split by `Adaptor`): the raft
//! log, vote and snapshot in the files of [`super::files`], and the state
//! machine, which is the node's existing [`crate::storage`] state: a
//! committed entry is applied through [`Changes::apply_committed`] (local
//! store commit, data path, broker).
//!
//! Snapshots are the whole state as JSON, taken every `snapshot_every`
//! applied changes (`[cluster]`); openraft then drops the log before it
//! but for as many entries again. A snapshot received from the leader
//! replaces the state through [`Changes::replace_state`], which tells the
//! broker and the data path what changed.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogState, RaftLogReader, RaftSnapshotBuilder, RaftStorage, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};

use super::files::{Hard, Membership, RaftFiles, StoredSnapshot};
use super::{NodeId, NotApplied, StartError, TypeConfig};
use crate::node::{ChangeError, Changes};
use crate::storage::State;

/// What the store holds in memory.
#[derive(Debug, Default)]
struct Inner {
    hard: Hard,
    log: BTreeMap<u64, Entry<TypeConfig>>,
    snapshot: Option<StoredSnapshot>,
}

/// The raft storage of one node.
#[derive(Clone)]
pub struct RaftStore {
    inner: Arc<tokio::sync::Mutex<Inner>>,
    files: Arc<Mutex<RaftFiles>>,
    changes: Arc<Changes>,
}

fn io_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::new(ErrorSubject::Store, verb, AnyError::new(&e)).into()
}

impl RaftStore {
    /// Opens (or starts) the raft files in `dir` of the node whose durable
    /// state is `changes`.
    pub fn open(changes: Arc<Changes>, dir: &std::path::Path) -> Result<RaftStore, StartError> {
        let (files, loaded) = RaftFiles::open(dir)?;
        Ok(RaftStore {
            inner: Arc::new(tokio::sync::Mutex::new(Inner {
                hard: loaded.hard,
                log: loaded.entries,
                snapshot: loaded.snapshot,
            })),
            files: Arc::new(Mutex::new(files)),
            changes,
        })
    }

    /// Finishes a snapshot install a crash interrupted: `raft.snapshot` is
    /// saved before the state is replaced and `raft.json` updated, so a
    /// snapshot newer than the applied position is installed again.
    pub async fn recover(&self) -> Result<(), StartError> {
        let mut inner = self.inner.lock().await;
        let Some(snapshot) = inner.snapshot.clone() else {
            return Ok(());
        };
        let (Some(last), applied) = (snapshot.meta.last_log_id, inner.hard.last_applied) else {
            return Ok(());
        };
        if applied.is_some_and(|a| a.index >= last.index) {
            return Ok(());
        }
        let state: State = serde_json::from_slice(&snapshot.data)?;
        let changes = Arc::clone(&self.changes);
        tokio::task::spawn_blocking(move || changes.replace_state(state)).await??;
        inner.hard.last_applied = Some(last);
        inner.hard.membership = snapshot.meta.last_membership.clone();
        if inner.hard.last_purged.is_none_or(|p| p.index < last.index) {
            inner.hard.last_purged = Some(last);
        }
        inner.log = inner.log.split_off(&(last.index + 1));
        self.save_hard(&inner.hard).await?;
        self.rewrite_log(&inner).await?;
        tracing::warn!(last = ?last, "finished a raft snapshot install cut short by a crash");
        Ok(())
    }

    /// Runs blocking file work `f` off the runtime's workers.
    async fn with_files<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut RaftFiles) -> std::io::Result<R> + Send + 'static,
    ) -> Result<R, StorageError<NodeId>> {
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || {
            let mut guard = match files.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            f(&mut guard)
        })
        .await
        .map_err(|e| io_err(ErrorVerb::Write, e))?
        .map_err(|e| io_err(ErrorVerb::Write, e))
    }

    async fn save_hard(&self, hard: &Hard) -> Result<(), StorageError<NodeId>> {
        let hard = hard.clone();
        self.with_files(move |files| files.save_hard(&hard)).await
    }

    async fn rewrite_log(&self, inner: &Inner) -> Result<(), StorageError<NodeId>> {
        let entries: Vec<Entry<TypeConfig>> = inner.log.values().cloned().collect();
        self.with_files(move |files| files.rewrite(&entries)).await
    }
}

fn snapshot_of(stored: &StoredSnapshot) -> Snapshot<TypeConfig> {
    Snapshot {
        meta: stored.meta.clone(),
        snapshot: Box::new(Cursor::new(stored.data.clone())),
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
        // Holding `inner` keeps entries from being applied meanwhile, so
        // the state is exactly the one at `last_applied`.
        let mut inner = self.inner.lock().await;
        let state = self.changes.with_state(State::clone);
        let data = serde_json::to_vec(&state).map_err(|e| io_err(ErrorVerb::Read, e))?;
        let last = inner.hard.last_applied;
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: last,
                last_membership: inner.hard.membership.clone(),
                snapshot_id: last.map_or_else(|| "empty".to_owned(), |id| id.to_string()),
            },
            data,
        };
        let to_save = stored.clone();
        self.with_files(move |files| files.save_snapshot(&to_save))
            .await?;
        let snapshot = snapshot_of(&stored);
        inner.snapshot = Some(stored);
        tracing::info!(last = ?last, "raft snapshot taken");
        Ok(snapshot)
    }
}

impl RaftStorage<TypeConfig> for RaftStore {
    type LogReader = Self;
    type SnapshotBuilder = Self;

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.hard.vote = Some(*vote);
        self.save_hard(&inner.hard).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.hard.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.hard.committed = committed;
        self.save_hard(&inner.hard).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.hard.committed)
    }

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        let last = inner.log.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.hard.last_purged,
            last_log_id: last.or(inner.hard.last_purged),
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
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let to_write = entries.clone();
        self.with_files(move |files| files.append(&to_write))
            .await?;
        for entry in entries {
            inner.log.insert(entry.log_id.index, entry);
        }
        Ok(())
    }

    async fn delete_conflict_logs_since(
        &mut self,
        log_id: LogId<NodeId>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        inner.log.split_off(&log_id.index);
        self.rewrite_log(&inner).await
    }

    async fn purge_logs_upto(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        // Never past what is applied here: openraft may purge up to a
        // snapshot from the leader before that snapshot is installed, and
        // a crash in between must still find the entries it applies next.
        // What is kept is dropped by the next purge.
        let log_id = match inner.hard.last_applied {
            Some(applied) if applied.index < log_id.index => applied,
            Some(_) => log_id,
            None => return Ok(()),
        };
        if inner
            .hard
            .last_purged
            .is_some_and(|p| p.index >= log_id.index)
        {
            return Ok(());
        }
        // raft.json first: if the rewrite below does not happen, the
        // entries left in the log are skipped at open.
        inner.hard.last_purged = Some(log_id);
        self.save_hard(&inner.hard).await?;
        inner.log = inner.log.split_off(&(log_id.index + 1));
        self.rewrite_log(&inner).await
    }

    async fn last_applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let inner = self.inner.lock().await;
        Ok((inner.hard.last_applied, inner.hard.membership.clone()))
    }

    async fn apply_to_state_machine(
        &mut self,
        entries: &[Entry<TypeConfig>],
    ) -> Result<Vec<Result<(), NotApplied>>, StorageError<NodeId>> {
        let mut inner = self.inner.lock().await;
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            let result = match &entry.payload {
                EntryPayload::Blank => Ok(()),
                EntryPayload::Membership(m) => {
                    inner.hard.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Ok(())
                }
                EntryPayload::Normal(change) => {
                    let changes = Arc::clone(&self.changes);
                    let change = change.clone();
                    // Storage fsyncs and data-path commands block.
                    let applied =
                        tokio::task::spawn_blocking(move || changes.apply_committed(change))
                            .await
                            .map_err(|e| io_err(ErrorVerb::Write, e))?;
                    match applied {
                        // The storage failed (a full disk): the entry is not
                        // applied, and must not count as applied. openraft
                        // stops; the node starts it again once the disk
                        // takes writes, and applies the entry then.
                        Err(ChangeError::Storage(error))
                            if !matches!(error, crate::storage::StorageError::State(_)) =>
                        {
                            return Err(io_err(ErrorVerb::Write, error));
                        }
                        // The state refused it (as on every node).
                        Err(refused) => Err(NotApplied {
                            reason: refused.to_string(),
                        }),
                        Ok(()) => Ok(()),
                    }
                }
            };
            inner.hard.last_applied = Some(entry.log_id);
            results.push(result);
        }
        self.save_hard(&inner.hard).await?;
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
        let data = snapshot.into_inner();
        let state: State = serde_json::from_slice(&data).map_err(|e| io_err(ErrorVerb::Read, e))?;
        let mut inner = self.inner.lock().await;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let to_save = stored.clone();
        self.with_files(move |files| files.save_snapshot(&to_save))
            .await?;
        let changes = Arc::clone(&self.changes);
        tokio::task::spawn_blocking(move || changes.replace_state(state))
            .await
            .map_err(|e| io_err(ErrorVerb::Write, e))?
            .map_err(|e| io_err(ErrorVerb::Write, e))?;
        inner.hard.last_applied = meta.last_log_id;
        inner.hard.membership = meta.last_membership.clone();
        if let Some(last) = meta.last_log_id {
            inner.hard.last_purged = Some(last);
            inner.log = inner.log.split_off(&(last.index + 1));
        }
        self.save_hard(&inner.hard).await?;
        self.rewrite_log(&inner).await?;
        inner.snapshot = Some(stored);
        tracing::info!(last = ?meta.last_log_id, "raft snapshot installed from the leader");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.inner.lock().await.snapshot.as_ref().map(snapshot_of))
    }
}
