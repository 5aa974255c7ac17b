use super::*;

fn bounds(size: u32, bytes: usize) -> Bounds {
    Bounds {
        size,
        ttl: Duration::ZERO,
        bytes,
    }
}

fn at(offset: u64, epoch: u64) -> Position {
    Position {
        offset,
        epoch: Epoch(epoch),
    }
}

fn lost(r: &Recovery<'_>) -> bool {
    matches!(r, Recovery::Lost)
}

#[test]
fn the_sequencer_numbers_from_one_and_keeps_the_last_n() {
    let mut source = EpochSource { base: 7, count: 0 };
    let mut h = History::new(bounds(3, 1 << 20));
    let now = Instant::now();
    for i in 1..=5u64 {
        let (p, _) = h.sequence(&mut source);
        assert_eq!(p, at(i, 8));
        assert!(h.push(p, format!("m{i}").as_bytes(), now, usize::MAX).kept);
    }
    assert_eq!(h.last(), Some(at(5, 8)));
    let (r, _) = h.since(at(2, 8), now);
    assert_eq!(r, Recovery::Complete(vec![&b"m3"[..], b"m4", b"m5"]));
    let (r, _) = h.since(at(5, 8), now);
    assert_eq!(r, Recovery::Complete(vec![]));
    // Too far back, ahead of the run, or another epoch: lost.
    assert!(lost(&h.since(at(1, 8), now).0));
    assert!(lost(&h.since(at(6, 8), now).0));
    assert!(lost(&h.since(at(4, 9), now).0));
    assert_eq!(h.bytes(), 6);
}

#[test]
fn a_gap_or_a_new_epoch_starts_a_new_run() {
    let mut h = History::new(bounds(0, 1 << 20));
    let now = Instant::now();
    for i in 1..=3 {
        h.push(at(i, 1), b"x", now, usize::MAX);
    }
    // Offset 4 never arrived.
    h.push(at(5, 1), b"y", now, usize::MAX);
    assert!(lost(&h.since(at(3, 1), now).0));
    assert_eq!(
        h.since(at(4, 1), now).0,
        Recovery::Complete(vec![&b"y"[..]])
    );
    h.push(at(1, 2), b"z", now, usize::MAX);
    assert!(lost(&h.since(at(5, 1), now).0));
    assert_eq!(
        h.since(at(0, 2), now).0,
        Recovery::Complete(vec![&b"z"[..]])
    );
    // A node that did not mint the epoch starts its own when it orders.
    let mut source = EpochSource {
        base: 100,
        count: 0,
    };
    assert_eq!(h.sequence(&mut source).0, at(1, 101));
}

#[test]
fn bytes_and_age_bound_the_run() {
    let mut h = History::new(bounds(0, 10));
    let now = Instant::now();
    for i in 1..=4 {
        h.push(at(i, 1), b"abcd", now, usize::MAX);
    }
    assert_eq!(h.bytes(), 8);
    assert!(lost(&h.since(at(1, 1), now).0));
    assert!(!lost(&h.since(at(2, 1), now).0));
    // Larger than the channel may hold: delivered, not kept, and the
    // run restarts after it.
    let p = h.push(at(5, 1), &[0; 11], now, usize::MAX);
    assert!(!p.kept);
    assert_eq!(h.bytes(), 0);
    assert!(lost(&h.since(at(4, 1), now).0));
    assert_eq!(h.since(at(5, 1), now).0, Recovery::Complete(vec![]));
    let mut aged = History::new(Bounds {
        size: 0,
        ttl: Duration::from_secs(1),
        bytes: 100,
    });
    aged.push(at(1, 1), b"old", now, usize::MAX);
    aged.push(
        at(2, 1),
        b"new",
        now + Duration::from_millis(900),
        usize::MAX,
    );
    let later = now + Duration::from_millis(1500);
    assert_eq!(
        aged.since(at(1, 1), later).0,
        Recovery::Complete(vec![&b"new"[..]])
    );
    assert!(lost(&aged.since(at(0, 1), later).0));
}

#[test]
fn the_node_budget_drops_this_channels_oldest_first() {
    let mut h = History::new(bounds(0, 100));
    let now = Instant::now();
    h.push(at(1, 1), b"aaaa", now, usize::MAX);
    h.push(at(2, 1), b"bbbb", now, usize::MAX);
    let p = h.push(at(3, 1), b"cccc", now, 0);
    assert_eq!((p.added, p.freed, p.kept), (4, 4, true));
    assert_eq!(h.newest(10, 100, now).0, vec![&b"bbbb"[..], b"cccc"]);
    // Nothing of its own left to drop: not kept.
    let mut empty = History::new(bounds(0, 100));
    assert!(!empty.push(at(1, 1), b"x", now, 0).kept);
    assert_eq!(empty.since(at(1, 1), now).0, Recovery::Complete(vec![]));
}

#[test]
fn newest_respects_limit_and_bytes() {
    let mut h = History::new(bounds(0, 100));
    let now = Instant::now();
    for (i, m) in [&b"a"[..], b"bb", b"ccc"].iter().enumerate() {
        h.push(at(i as u64 + 1, 1), m, now, usize::MAX);
    }
    assert_eq!(h.newest(2, 100, now).0, vec![&b"bb"[..], b"ccc"]);
    assert_eq!(h.newest(10, 5, now).0, vec![&b"bb"[..], b"ccc"]);
    assert_eq!(h.newest(10, 2, now).0, Vec::<&[u8]>::new());
}

/// The records of `journal` as a history file reads them back.
fn read_back(journal: &[u8]) -> Vec<u8> {
    let vhost = crate::name::VhostPath::try_from("/v").unwrap();
    let channel = crate::name::ChannelName::parse("c").unwrap();
    let mut file = history_log::encode_start("boot", &vhost, &channel);
    file.extend_from_slice(journal);
    file
}

fn items(file: &[u8]) -> Vec<Item<'_>> {
    history_log::parse(file, 1 << 20).unwrap().items
}

#[test]
fn a_durable_history_comes_back_with_its_run_and_epoch() {
    let clock = Clock::new(Instant::now(), 1_000_000);
    let now = Instant::now();
    let mut source = EpochSource { base: 7, count: 0 };
    let mut h = History::new(bounds(3, 1 << 20));
    h.set_durable(Some(clock));
    for i in 1..=5u64 {
        let (p, _) = h.sequence(&mut source);
        h.push(p, format!("m{i}").as_bytes(), now, usize::MAX);
    }
    assert!(!h.journal_is_empty());
    let file = read_back(&h.take_journal());
    assert!(h.journal_is_empty());
    let mut later = EpochSource {
        base: 100,
        count: 0,
    };
    // Trusted: the same run goes on, and the bounds hold.
    let mut back = History::new(bounds(3, 1 << 20));
    back.set_durable(Some(clock));
    back.restore(&items(&file), true, clock, now, usize::MAX);
    assert_eq!(back.last(), Some(at(5, 8)));
    assert_eq!(back.bytes(), 6);
    assert_eq!(
        back.since(at(2, 8), now).0,
        Recovery::Complete(vec![&b"m3"[..], b"m4", b"m5"])
    );
    assert!(back.journal_is_empty());
    assert_eq!(back.sequence(&mut later).0, at(6, 8));
    // Not trusted: the messages are there, the next one starts an epoch.
    let mut doubtful = History::new(bounds(3, 1 << 20));
    doubtful.restore(&items(&file), false, clock, now, usize::MAX);
    assert_eq!(
        doubtful.since(at(4, 8), now).0,
        Recovery::Complete(vec![&b"m5"[..]])
    );
    assert_eq!(doubtful.sequence(&mut later).0, at(1, 101));
    // A snapshot reads back as the same history.
    let snapshot = read_back(&back.snapshot(now));
    let mut again = History::new(bounds(3, 1 << 20));
    again.restore(&items(&snapshot), true, clock, now, usize::MAX);
    assert_eq!(again.last(), Some(at(5, 8)));
    assert_eq!(
        again.since(at(2, 8), now).0,
        Recovery::Complete(vec![&b"m3"[..], b"m4", b"m5"])
    );
}

#[test]
fn restored_messages_keep_their_age() {
    let start = Instant::now();
    let clock = Clock::new(start, 1_000_000);
    let mut h = History::new(Bounds {
        size: 0,
        ttl: Duration::from_secs(10),
        bytes: 100,
    });
    h.set_durable(Some(clock));
    h.push(at(1, 1), b"old", start, usize::MAX);
    h.push(at(2, 1), b"new", start + Duration::from_secs(8), usize::MAX);
    let file = read_back(&h.take_journal());
    // Read back 4 s later: the first is 12 s old and goes.
    let now = start + Duration::from_secs(12);
    let mut back = History::new(h.bounds);
    back.restore(&items(&file), true, clock, now, usize::MAX);
    assert_eq!(
        back.since(at(1, 1), now).0,
        Recovery::Complete(vec![&b"new"[..]])
    );
    assert!(lost(&back.since(at(0, 1), now).0));
}
