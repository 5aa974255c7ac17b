use super::*;
use crate::storage::history_log::{encode_close, encode_message, encode_run, encode_start};

const MAX: usize = 1 << 20;

fn names() -> (VhostPath, ChannelName) {
    (
        VhostPath::try_from("/chat").unwrap(),
        ChannelName::parse("room").unwrap(),
    )
}

fn messages(epoch: u64, offsets: std::ops::RangeInclusive<u64>, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    encode_run(epoch, *offsets.start(), true, &mut out);
    for offset in offsets {
        encode_message(offset, 1000 + offset, &vec![b'x'; size], &mut out);
    }
    out
}

fn offsets(loaded: &Loaded) -> Vec<u64> {
    loaded
        .items()
        .iter()
        .filter_map(|item| match item {
            Item::Message { offset, .. } => Some(*offset),
            Item::Run { .. } => None,
        })
        .collect()
}

fn reopen(dir: &Path) -> Vec<Loaded> {
    let (mut files, loaded) = HistoryFiles::open(dir, MAX).unwrap();
    files.syncer.stop();
    loaded
}

#[test]
fn appends_survive_a_crash_and_continue_under_the_same_boot() {
    let dir = tempfile::tempdir().unwrap();
    let (vhost, channel) = names();
    let (mut files, loaded) = HistoryFiles::open(dir.path(), MAX).unwrap();
    assert!(loaded.is_empty());
    assert_eq!(
        files.append(&vhost, &channel, &messages(7, 1..=3, 10), 0),
        Next::Done
    );
    let mut more = Vec::new();
    encode_message(4, 5, b"four", &mut more);
    assert_eq!(files.append(&vhost, &channel, &more, 0), Next::Done);
    // No close: as after kill -9.
    std::mem::forget(files);
    let loaded = reopen(dir.path());
    let [one] = &loaded[..] else {
        panic!("{loaded:?}")
    };
    assert_eq!(
        (one.vhost.as_str(), one.channel.as_str()),
        ("/chat", "room")
    );
    assert_eq!(one.trusted, fs::read_to_string(BOOT_ID).is_ok());
    assert_eq!(offsets(one), [1, 2, 3, 4]);
    assert_eq!(
        one.items()[0],
        Item::Run {
            epoch: 7,
            offset: 1,
            minted: true
        }
    );
}

#[test]
fn a_clean_close_is_trusted_under_another_boot_and_an_unclosed_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join(HISTORY_DIR);
    fs::create_dir_all(&history).unwrap();
    let (vhost, channel) = names();
    let mut bytes = encode_start("another-boot", &vhost, &channel);
    bytes.extend_from_slice(&messages(7, 1..=2, 3));
    let path = history.join(file_name(&vhost, &channel));
    fs::write(&path, &bytes).unwrap();
    let loaded = reopen(dir.path());
    assert!(!loaded[0].trusted);
    assert_eq!(offsets(&loaded[0]), [1, 2]);
    encode_close(&mut bytes);
    fs::write(&path, &bytes).unwrap();
    assert!(reopen(dir.path())[0].trusted);
}

#[test]
fn a_torn_tail_is_cut_and_the_run_not_continued() {
    let dir = tempfile::tempdir().unwrap();
    let (vhost, channel) = names();
    let (mut files, _) = HistoryFiles::open(dir.path(), MAX).unwrap();
    files.append(&vhost, &channel, &messages(7, 1..=3, 10), 0);
    files.close();
    let path = dir
        .path()
        .join(HISTORY_DIR)
        .join(file_name(&vhost, &channel));
    let len = fs::metadata(&path).unwrap().len();
    // Cut inside the last message (CLOSE is 9 bytes).
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 9 - 5)
        .unwrap();
    let loaded = reopen(dir.path());
    assert!(!loaded[0].trusted);
    assert_eq!(offsets(&loaded[0]), [1, 2]);
}

#[test]
fn a_corrupt_record_sets_the_file_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (vhost, channel) = names();
    let (mut files, _) = HistoryFiles::open(dir.path(), MAX).unwrap();
    files.append(&vhost, &channel, &messages(7, 1..=3, 10), 0);
    files.close();
    let path = dir
        .path()
        .join(HISTORY_DIR)
        .join(file_name(&vhost, &channel));
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() - 9 - 3;
    bytes[at] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    assert!(reopen(dir.path()).is_empty());
    assert!(!path.exists());
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    assert_eq!(fs::read(PathBuf::from(aside)).unwrap(), bytes);
    // Garbage that is not a history file at all goes the same way.
    fs::write(&path, b"hello").unwrap();
    assert!(reopen(dir.path()).is_empty());
}

#[test]
fn a_file_is_compacted_at_twice_its_live_size_and_removed_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (vhost, channel) = names();
    let (mut files, _) = HistoryFiles::open(dir.path(), MAX).unwrap();
    let path = dir
        .path()
        .join(HISTORY_DIR)
        .join(file_name(&vhost, &channel));
    let size = 1000;
    let per = (history_log::MESSAGE_OVERHEAD + size) as u64;
    // The channel holds its last 100 messages: ~100 KiB live.
    let live = 100 * per;
    let mut offset = 1;
    let mut rewrites = 0;
    let mut first = 1;
    assert_eq!(
        files.append(&vhost, &channel, &messages(7, 1..=1, size), live),
        Next::Done
    );
    for _ in 0..1000 {
        offset += 1;
        let mut one = Vec::new();
        encode_message(offset, 0, &vec![b'y'; size], &mut one);
        if files.append(&vhost, &channel, &one, live) == Next::Rewrite {
            rewrites += 1;
            first = offset.saturating_sub(99);
            files.rewrite(&vhost, &channel, &messages(7, first..=offset, size));
        }
        assert!(fs::metadata(&path).unwrap().len() <= 2 * live + per + 200);
    }
    assert!(rewrites >= 5, "{rewrites}");
    assert!(!temp_path(&path).exists());
    std::mem::forget(files);
    let loaded = reopen(dir.path());
    assert_eq!(offsets(&loaded[0]), (first..=offset).collect::<Vec<_>>());
    let (mut files, _) = HistoryFiles::open(dir.path(), MAX).unwrap();
    files.remove(&vhost, &channel);
    assert!(!path.exists());
}
