//! Durable vhosts, users and channels; user secrets; the node cookie.
//!
//! The state ([`State`]) changes only through [`Change`]s. Each change is
//! appended to `state.log` and fsynced *before* it is acknowledged or
//! applied in memory ([`Store::commit`], [`Store::commit_and_apply`]). Now
//! and then the whole state is written to `state.snapshot` and the log
//! starts over ([`Store::compact`]). File layouts: [`record`].
//!
//! # Recovery rules
//!
//! Files in the storage directory: `state.snapshot` (generation S, may be
//! absent: S = 0 and an empty state), `state.log` (generation L), and
//! possibly `*.tmp` files. Snapshots and log headers are only ever written
//! by "write a temp file, fsync, rename over, fsync the directory", so each
//! is either wholly old or wholly new. On [`Store::open`]:
//!
//! 1. `*.tmp` files are leftovers of an interrupted replacement: deleted.
//! 2. The snapshot is loaded; any damage in it is an error (it cannot be
//!    a torn write).
//! 3. No log: a fresh empty log of generation S is created.
//! 4. L < S: compaction stopped after the new snapshot was in place but
//!    before the new log was; the snapshot holds every change of that log,
//!    so the log is replaced by a fresh one of generation S.
//! 5. L > S: the snapshot is missing or older than the log; an error, as
//!    replaying would silently lose the changes in between.
//! 6. L = S: the log's records are replayed in order. Replay stops at the
//!    first record that is cut short (a torn append) or whose length or
//!    CRC is wrong; that tail was never acknowledged (commits fsync before
//!    returning), so it is logged with `tracing::warn`, cut off, and never
//!    loaded. A corrupt (not merely short) tail is first copied to
//!    `state.log.corrupt`. A record with a good CRC that does not decode is
//!    an error. A change that does not apply to the state is skipped: it
//!    was a no-op when it was made too.
//!
//! Compaction order: snapshot S+1 (temp, fsync, rename, dir fsync), then a
//! fresh log S+1 the same way. A crash between the two is rule 4. A failed
//! compaction (a full or failing disk) leaves the files in the old or the
//! rule-4 state: nothing is appended to the old log until a compaction
//! succeeds, and [`Store::commit_and_apply`] redoes it (same generation,
//! same state) before its change, so the store takes changes again once
//! the disk does. A failed fsync of an append still poisons the store until
//! it is reopened: what reached the disk is unknown until recovery reads it.
//!
//! Config-declared vhosts are applied at each start with
//! [`seed_from_config`].
//!
//! Durable channel histories have files of their own, with their own,
//! weaker, write rules (written per broker round, fsynced once a second):
//! [`history_log`] (layout) and [`history_files`] (files and recovery).
//!
//! I/O: files only, no sockets, no tokio.

mod diff;
pub(crate) mod files;
pub mod history_files;
pub mod history_log;
pub mod record;
mod resource;
mod secret;
mod seed;
mod state;
mod store;

pub use secret::{hash_secret, load_or_create_cookie, read_cookie, verify_secret, COOKIE_LEN};
pub use seed::seed_from_config;
pub use state::{
    item_id, Change, ChannelOptions, Entity, ResourceRecord, ResourceSource, State, StateError,
    UserRecord, VhostRecord,
};
pub use store::{StorageError, Store, StoreOptions, CORRUPT_COPY_FILE, LOG_FILE, SNAPSHOT_FILE};

#[cfg(test)]
mod crash_tests;

/// The store and the state it holds: the node's durable state, changed
/// only by committing a [`Change`] to `store` and applying it to `state`.
pub struct Durable {
    /// The log on disk.
    pub store: Store,
    /// What the log says.
    pub state: State,
}
