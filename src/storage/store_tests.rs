use std::fs;

use super::*;
use crate::name::{AccessToken, ChannelName, Permissions, VhostPath};
use crate::storage::record;

fn vhost() -> VhostPath {
    VhostPath::parse("/v").unwrap()
}

fn add_vhost() -> Change {
    Change::AddVhost {
        path: vhost(),
        token: AccessToken::generate(),
        anonymous: Permissions::READ,
        auto_create_channels: true,
    }
}

fn add_channel(i: usize) -> Change {
    Change::AddChannel {
        vhost: vhost(),
        channel: ChannelName::parse(&format!("c{i}")).unwrap(),
    }
}

/// Opens a store in `dir` and commits the vhost plus `n` channels.
fn store_with(dir: &Path, n: usize, options: StoreOptions) -> (Store, State) {
    let (mut store, mut state) = Store::open_with(dir, options).unwrap();
    store.commit_and_apply(&mut state, &add_vhost()).unwrap();
    for i in 0..n {
        store.commit_and_apply(&mut state, &add_channel(i)).unwrap();
    }
    (store, state)
}

fn channels(state: &State) -> Vec<String> {
    state.vhosts["/v"]
        .channels
        .iter()
        .map(|c| c.to_string())
        .collect()
}

fn never_compact() -> StoreOptions {
    StoreOptions {
        compact_after_records: u64::MAX,
        compact_after_bytes: u64::MAX,
    }
}

#[test]
fn a_fresh_directory_opens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (_, state) = Store::open(&dir.path().join("new")).unwrap();
    assert_eq!(state, State::default());
    assert!(dir.path().join("new").join(LOG_FILE).exists());
}

#[test]
fn changes_are_replayed_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (store, state) = store_with(dir.path(), 3, never_compact());
    assert_eq!(store.log_records(), 4);
    drop(store);
    let (store, reopened) = Store::open(dir.path()).unwrap();
    assert_eq!(reopened, state);
    assert_eq!(store.log_records(), 4);
    assert_eq!(channels(&reopened), ["c0", "c1", "c2"]);
}

#[test]
fn a_change_that_does_not_fit_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut state) = store_with(dir.path(), 1, never_compact());
    let len = fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    let err = store
        .commit_and_apply(&mut state, &add_channel(0))
        .unwrap_err();
    assert!(matches!(
        err,
        StorageError::State(StateError::AlreadyExists(_))
    ));
    assert_eq!(fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(), len);
}

#[test]
fn a_logged_change_that_does_not_apply_is_skipped_on_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = store_with(dir.path(), 1, never_compact());
    store.commit(&add_channel(0)).unwrap(); // duplicate: a no-op
    store.commit(&add_channel(1)).unwrap();
    drop(store);
    let (_, state) = Store::open(dir.path()).unwrap();
    assert_eq!(channels(&state), ["c0", "c1"]);
}

/// Damages the log with `damage`, reopens, and checks that the first two
/// channels survive, the third is gone, and the store keeps working.
fn survives_tail_damage(damage: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let (store, _) = store_with(&dir, 3, never_compact());
    drop(store);
    let log = dir.join(LOG_FILE);
    let mut bytes = fs::read(&log).unwrap();
    damage(&mut bytes);
    fs::write(&log, &bytes).unwrap();

    let (mut store, mut state) = Store::open(&dir).unwrap();
    assert_eq!(channels(&state), ["c0", "c1"]);
    assert_eq!(store.log_records(), 3);
    store.commit_and_apply(&mut state, &add_channel(9)).unwrap();
    drop(store);
    let (_, state) = Store::open(&dir).unwrap();
    assert_eq!(channels(&state), ["c0", "c1", "c9"]);
    dir
}

fn last_record_start(bytes: &[u8]) -> usize {
    let mut offset = record::HEADER_LEN;
    let mut last = offset;
    while let record::Decoded::Record(_, size) = record::decode_record(&bytes[offset..], 1 << 20) {
        last = offset;
        offset += size;
    }
    last
}

#[test]
fn a_torn_last_record_is_cut_off() {
    let dir = survives_tail_damage(|bytes| {
        let len = bytes.len();
        bytes.truncate(len - 3);
    });
    assert!(
        !dir.join(CORRUPT_COPY_FILE).exists(),
        "a torn write is not corruption"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_record_torn_inside_its_header_is_cut_off() {
    let dir = survives_tail_damage(|bytes| {
        let start = last_record_start(bytes);
        bytes.truncate(start + 5);
    });
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_flipped_byte_in_the_last_record_is_detected() {
    let dir = survives_tail_damage(|bytes| {
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
    });
    assert!(dir.join(CORRUPT_COPY_FILE).exists(), "damaged log kept");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_corrupt_length_is_detected() {
    let dir = survives_tail_damage(|bytes| {
        let start = last_record_start(bytes);
        bytes[start + 3] = 0xff;
    });
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_log_compacts_into_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compact_after_records: 5,
        compact_after_bytes: u64::MAX,
    };
    let (store, state) = store_with(dir.path(), 12, options);
    assert!(dir.path().join(SNAPSHOT_FILE).exists());
    assert_eq!(store.log_records(), 13 % 5);
    drop(store);
    let (store, reopened) = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(reopened, state);
    assert_eq!(store.log_records(), 3);
    assert_eq!(channels(&reopened).len(), 12);
}

#[test]
fn compaction_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compact_after_records: u64::MAX,
        compact_after_bytes: 400,
    };
    let (store, state) = store_with(dir.path(), 20, options);
    assert!(fs::metadata(dir.path().join(LOG_FILE)).unwrap().len() < 400);
    drop(store);
    assert_eq!(Store::open(dir.path()).unwrap().1, state);
}

#[test]
fn a_compaction_interrupted_before_the_new_log_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut state) = store_with(dir.path(), 3, never_compact());
    let old_log = fs::read(dir.path().join(LOG_FILE)).unwrap();
    store.compact(&state).unwrap();
    store.commit_and_apply(&mut state, &add_channel(7)).unwrap();
    store.compact(&state).unwrap();
    drop(store);
    // The crash: snapshot N+1 is in place, the log is still generation N.
    let mut stale = old_log;
    stale[8..16].copy_from_slice(&1u64.to_le_bytes());
    fs::write(dir.path().join(LOG_FILE), stale).unwrap();
    fs::write(dir.path().join("state.log.tmp"), b"half").unwrap();

    let (store, reopened) = Store::open(dir.path()).unwrap();
    assert_eq!(reopened, state, "replayed nothing twice, lost nothing");
    assert_eq!(store.log_records(), 0);
    assert!(!dir.path().join("state.log.tmp").exists());
}

#[test]
fn a_log_newer_than_the_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, state) = store_with(dir.path(), 2, never_compact());
    store.compact(&state).unwrap();
    drop(store);
    fs::remove_file(dir.path().join(SNAPSHOT_FILE)).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("newer than snapshot"), "{err}");
}

#[test]
fn a_damaged_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, state) = store_with(dir.path(), 2, never_compact());
    store.compact(&state).unwrap();
    drop(store);
    let path = dir.path().join(SNAPSHOT_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, bytes).unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn a_log_with_a_bad_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(LOG_FILE), b"garbage").unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(StorageError::Corrupt { .. })
    ));
}

#[test]
fn a_failed_compaction_is_finished_before_the_next_change() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compact_after_records: 5,
        compact_after_bytes: u64::MAX,
    };
    let (mut store, mut state) = store_with(dir.path(), 2, options);
    // A directory where the snapshot's temporary file goes makes writing
    // the snapshot fail, as a full disk would.
    let blocker = crate::storage::files::temp_path(&dir.path().join(SNAPSHOT_FILE));
    fs::create_dir(&blocker).unwrap();
    store.commit_and_apply(&mut state, &add_channel(2)).unwrap();
    // The fifth record: durable, although the compaction after it fails.
    store.commit_and_apply(&mut state, &add_channel(3)).unwrap();
    let refused = store.commit_and_apply(&mut state, &add_channel(4));
    assert!(
        matches!(refused, Err(StorageError::Io { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        store.commit(&add_channel(4)),
        Err(StorageError::UnfinishedCompaction { .. })
    ));
    assert_eq!(channels(&state).len(), 4);

    // Room again: the next change finishes the compaction and is taken.
    fs::remove_dir(&blocker).unwrap();
    store.commit_and_apply(&mut state, &add_channel(4)).unwrap();
    assert!(dir.path().join(SNAPSHOT_FILE).exists());
    assert_eq!(store.log_records(), 1);
    drop(store);
    let (_, reopened) = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(reopened, state);
    assert_eq!(channels(&reopened).len(), 5);
}
