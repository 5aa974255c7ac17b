//! A channel's recent messages, numbered, for recovery.
//!
//! Every message of a channel with a history gets a [`Position`]: an
//! `offset` that grows by one per message and the `epoch` those offsets
//! belong to. An epoch is one run of one sequencer: the node that orders
//! the channel mints a new epoch (random per process start, plus a
//! counter) the first time it orders the channel and starts its offsets at
//! 1; other nodes store what the sequencer's deliveries carry. Within an
//! epoch an offset names one message on every node. A new sequencer (after
//! a node died or left, or a restart) starts a new epoch, so a client that
//! asks for an offset of the old epoch learns that it cannot recover
//! rather than getting another message under the same number.
//!
//! A [`History`] covers a contiguous run of offsets `start..next` of one
//! epoch and holds the messages still within its bounds (count, age,
//! bytes). A delivery that does not continue the run (another epoch, or a
//! gap because a peer message was lost) starts a new run at that offset:
//! what the history answers is never missing a message in the middle.
//!
//! Pure: time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::protocol::{Epoch, Position};
use crate::storage::ChannelOptions;

/// Mints epochs: a random base per process, plus one per new run.
#[derive(Debug)]
pub(crate) struct EpochSource {
    base: u64,
    count: u64,
}

impl EpochSource {
    /// A source with a random base.
    pub fn random() -> Self {
        EpochSource {
            base: rand::random(),
            count: 0,
        }
    }

    /// A new epoch, never returned before by this source.
    pub fn mint(&mut self) -> Epoch {
        self.count += 1;
        Epoch(self.base.wrapping_add(self.count))
    }
}

/// One kept message.
#[derive(Debug)]
struct Entry {
    offset: u64,
    at: Instant,
    delivery: Box<[u8]>,
}

/// The bounds a history keeps to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Most messages (0: none).
    pub size: u32,
    /// Oldest age (zero: none).
    pub ttl: Duration,
    /// Most bytes.
    pub bytes: usize,
}

impl Bounds {
    /// The bounds of `options` under the per-channel byte limit.
    pub fn new(options: &ChannelOptions, bytes: usize) -> Self {
        Bounds {
            size: options.history_size,
            ttl: Duration::from_millis(options.history_ttl_ms),
            bytes,
        }
    }
}

/// What a history answers to `since`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recovery<'a> {
    /// Every message after `since`, in order (possibly none).
    Complete(Vec<&'a [u8]>),
    /// The history does not reach back to `since`, or it is of another
    /// epoch.
    Lost,
}

/// A channel's recent messages (see the module docs).
#[derive(Debug)]
pub(crate) struct History {
    /// The epoch of the run; `None` before the first message.
    epoch: Option<Epoch>,
    /// Whether this node minted `epoch` (it sequences the run).
    minted: bool,
    /// First offset the run covers (messages before it were dropped).
    start: u64,
    /// Offset the next message of the run gets.
    next: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    bounds: Bounds,
}

impl History {
    /// An empty history.
    pub fn new(bounds: Bounds) -> Self {
        History {
            epoch: None,
            minted: false,
            start: 1,
            next: 1,
            entries: VecDeque::new(),
            bytes: 0,
            bounds,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The last position of the run, if there was a message.
    pub fn last(&self) -> Option<Position> {
        let epoch = self.epoch?;
        (self.next > 1).then_some(Position {
            offset: self.next - 1,
            epoch,
        })
    }

    /// Replaces the bounds; `freed` gets the bytes dropped.
    pub fn set_bounds(&mut self, bounds: Bounds, now: Instant) -> usize {
        self.bounds = bounds;
        self.evict(now, 0)
    }

    /// The position the next message gets when this node orders the
    /// channel: the run goes on if this node minted it, else a new epoch
    /// from `source` starts at offset 1. Call [`History::push`] with it.
    pub fn sequence(&mut self, source: &mut EpochSource) -> (Position, usize) {
        let mut freed = 0;
        let epoch = match self.epoch {
            Some(epoch) if self.minted => epoch,
            _ => {
                freed = self.restart(source.mint(), 1);
                self.minted = true;
                self.epoch.unwrap_or(Epoch(0))
            }
        };
        let position = Position {
            offset: self.next,
            epoch,
        };
        (position, freed)
    }

    /// Keeps `delivery` at `position`, within the bounds and `budget` (the
    /// bytes the node may still add). Returns the bytes added and freed,
    /// and whether it was kept.
    pub fn push(
        &mut self,
        position: Position,
        delivery: &[u8],
        now: Instant,
        budget: usize,
    ) -> Pushed {
        let mut freed = 0;
        if self.epoch != Some(position.epoch) || position.offset != self.next {
            freed += self.restart(position.epoch, position.offset);
            self.minted = false;
        }
        self.next = position.offset + 1;
        let size = delivery.len();
        if size > self.bounds.bytes {
            freed += self.restart(position.epoch, self.next);
            return Pushed {
                added: 0,
                freed,
                kept: false,
            };
        }
        freed += self.evict(now, size);
        // The node's budget: make room from this channel's oldest first.
        while size > budget.saturating_add(freed) && self.pop().map(|n| freed += n).is_some() {}
        if size > budget.saturating_add(freed) {
            let next = self.next;
            freed += self.restart(position.epoch, next);
            return Pushed {
                added: 0,
                freed,
                kept: false,
            };
        }
        self.entries.push_back(Entry {
            offset: position.offset,
            at: now,
            delivery: delivery.into(),
        });
        self.bytes += size;
        Pushed {
            added: size,
            freed,
            kept: true,
        }
    }

    /// The messages after offset `since` of `epoch`, if the run still
    /// holds all of them.
    pub fn since(&mut self, since: Position, now: Instant) -> (Recovery<'_>, usize) {
        let freed = self.evict(now, 0);
        let covered = self.epoch == Some(since.epoch)
            && since.offset + 1 >= self.start
            && since.offset < self.next;
        if !covered {
            return (Recovery::Lost, freed);
        }
        let messages = self
            .entries
            .iter()
            .filter(|e| e.offset > since.offset)
            .map(|e| &*e.delivery)
            .collect();
        (Recovery::Complete(messages), freed)
    }

    /// The newest messages, at most `limit` of them and `max_bytes` in
    /// all, oldest first.
    pub fn newest(&mut self, limit: usize, max_bytes: usize, now: Instant) -> (Vec<&[u8]>, usize) {
        let freed = self.evict(now, 0);
        let mut taken = 0;
        let mut out: Vec<&[u8]> = Vec::new();
        for entry in self.entries.iter().rev().take(limit) {
            if taken + entry.delivery.len() > max_bytes {
                break;
            }
            taken += entry.delivery.len();
            out.push(&entry.delivery);
        }
        out.reverse();
        (out, freed)
    }

    /// Starts a new run of `epoch` at `offset`; returns the bytes freed.
    fn restart(&mut self, epoch: Epoch, offset: u64) -> usize {
        let freed = self.bytes;
        self.entries.clear();
        self.bytes = 0;
        self.epoch = Some(epoch);
        self.start = offset;
        self.next = offset;
        freed
    }

    /// Drops the oldest message; its size, or `None` when empty.
    fn pop(&mut self) -> Option<usize> {
        let entry = self.entries.pop_front()?;
        self.start = entry.offset + 1;
        self.bytes -= entry.delivery.len();
        Some(entry.delivery.len())
    }

    /// Drops what is past the bounds, leaving room for `incoming` more
    /// bytes and one more message; returns the bytes freed.
    fn evict(&mut self, now: Instant, incoming: usize) -> usize {
        let mut freed = 0;
        let room = usize::from(incoming > 0);
        while let Some(front) = self.entries.front() {
            let too_many =
                self.bounds.size > 0 && self.entries.len() + room > self.bounds.size as usize;
            let too_big = self.bytes + incoming > self.bounds.bytes;
            let too_old = !self.bounds.ttl.is_zero()
                && now.saturating_duration_since(front.at) > self.bounds.ttl;
            if !(too_many || too_big || too_old) {
                break;
            }
            freed += self.pop().unwrap_or(0);
        }
        freed
    }
}

/// What [`History::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// Bytes now held for the message.
    pub added: usize,
    /// Bytes dropped to make room (or by a restart).
    pub freed: usize,
    /// Whether the message was kept.
    pub kept: bool,
}

#[cfg(test)]
mod tests {
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
}
