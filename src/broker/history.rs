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
//! A durable history (the channel's `history_durable` option) also
//! writes what it does down as it goes, in the records of
//! [`crate::storage::history_log`]: a RUN for each new run, a MESSAGE for
//! each message kept. The broker hands that journal to the files once per
//! round; [`History::snapshot`] is the whole history in the same records
//! (for a compaction) and [`History::restore`] reads them back at start.
//! Dropping old messages is not written down: replaying the records under
//! the same bounds drops them again.
//!
//! Pure: time is passed in ([`Clock::now`], the one reading of the
//! clocks, is made once, by the broker at its creation).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::protocol::{Epoch, Position};
use crate::storage::history_log::{self, Item};
use crate::storage::ChannelOptions;

/// Wall-clock time for the monotonic instants a history keeps, so that a
/// message's time can be written down and read back after a restart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    at: Instant,
    wall_ms: u64,
}

impl Clock {
    /// `at` is `wall_ms` milliseconds after the Unix epoch.
    pub fn new(at: Instant, wall_ms: u64) -> Self {
        Clock { at, wall_ms }
    }

    /// The clocks now.
    pub fn now() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock::new(Instant::now(), u64::try_from(wall.as_millis()).unwrap_or(0))
    }

    /// Milliseconds since the Unix epoch at `at`.
    fn wall_ms(&self, at: Instant) -> u64 {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if at >= self.at {
            self.wall_ms.saturating_add(ms(at - self.at))
        } else {
            self.wall_ms.saturating_sub(ms(self.at - at))
        }
    }

    /// The instant of `wall_ms` (`now` if it is further back than the
    /// monotonic clock reaches).
    fn instant(&self, wall_ms: u64, now: Instant) -> Instant {
        let age = self.wall_ms(now).saturating_sub(wall_ms);
        now.checked_sub(Duration::from_millis(age)).unwrap_or(now)
    }
}

/// The records a durable history has not handed over yet.
#[derive(Debug)]
struct Journal {
    records: Vec<u8>,
    clock: Clock,
}

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
    /// Records to write, when the history is durable.
    journal: Option<Journal>,
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
            journal: None,
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
                freed = self.restart(source.mint(), 1, true);
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
            freed += self.restart(position.epoch, position.offset, false);
        }
        self.next = position.offset + 1;
        let size = delivery.len();
        if size > self.bounds.bytes {
            freed += self.restart(position.epoch, self.next, self.minted);
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
            freed += self.restart(position.epoch, next, self.minted);
            return Pushed {
                added: 0,
                freed,
                kept: false,
            };
        }
        if let Some(journal) = &mut self.journal {
            let at_ms = journal.clock.wall_ms(now);
            history_log::encode_message(position.offset, at_ms, delivery, &mut journal.records);
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

    /// Starts a new run of `epoch` at `offset` (`minted`: by this node);
    /// returns the bytes freed.
    fn restart(&mut self, epoch: Epoch, offset: u64, minted: bool) -> usize {
        let freed = self.bytes;
        self.entries.clear();
        self.bytes = 0;
        self.epoch = Some(epoch);
        self.minted = minted;
        self.start = offset;
        self.next = offset;
        if let Some(journal) = &mut self.journal {
            history_log::encode_run(epoch.0, offset, minted, &mut journal.records);
        }
        freed
    }

    /// Makes the history durable (`Some`: it journals from now on) or not.
    pub fn set_durable(&mut self, clock: Option<Clock>) {
        match clock {
            Some(clock) if self.journal.is_none() => {
                self.journal = Some(Journal {
                    records: Vec::new(),
                    clock,
                })
            }
            Some(_) => {}
            None => self.journal = None,
        }
    }

    /// Whether the history is durable.
    pub fn is_durable(&self) -> bool {
        self.journal.is_some()
    }

    /// Whether there are records to hand over.
    pub fn journal_is_empty(&self) -> bool {
        self.journal.as_ref().is_none_or(|j| j.records.is_empty())
    }

    /// The records written since the last call (empty when not durable).
    pub fn take_journal(&mut self) -> Vec<u8> {
        self.journal
            .as_mut()
            .map(|j| std::mem::take(&mut j.records))
            .unwrap_or_default()
    }

    /// About the bytes the history's file holds after a compaction.
    pub fn file_bytes(&self) -> u64 {
        let framing = self.entries.len() * history_log::MESSAGE_OVERHEAD;
        (self.bytes + framing + history_log::RUN_LEN) as u64
    }

    /// The whole history as records (RUN, then each message), for a new
    /// file; the journal starts over after it. Empty before the first run.
    pub fn snapshot(&mut self, now: Instant) -> Vec<u8> {
        let Some(journal) = &mut self.journal else {
            return Vec::new();
        };
        journal.records.clear();
        let mut out = Vec::new();
        let Some(epoch) = self.epoch else {
            return out;
        };
        history_log::encode_run(epoch.0, self.start, self.minted, &mut out);
        for entry in &self.entries {
            // An entry's wall-clock time from its age now.
            let at_ms = journal
                .clock
                .wall_ms(now)
                .saturating_sub(now.saturating_duration_since(entry.at).as_millis() as u64);
            history_log::encode_message(entry.offset, at_ms, &entry.delivery, &mut out);
        }
        out
    }

    /// Replays `items` read from the history's file into this (empty)
    /// history, within its bounds and `budget` bytes; `clock` reads the
    /// messages' times. The last run goes on being this node's (same
    /// epoch, next offset) only when `trusted` and the file says this node
    /// minted it. Nothing is journaled.
    pub fn restore(
        &mut self,
        items: &[Item<'_>],
        trusted: bool,
        clock: Clock,
        now: Instant,
        budget: usize,
    ) {
        let journal = self.journal.take();
        for item in items {
            match *item {
                Item::Run {
                    epoch,
                    offset,
                    minted,
                } => {
                    self.restart(Epoch(epoch), offset, minted);
                }
                Item::Message {
                    offset,
                    at_ms,
                    delivery,
                } => {
                    let epoch = self.epoch.unwrap_or(Epoch(0));
                    let at = clock.instant(at_ms, now);
                    let room = budget.saturating_sub(self.bytes);
                    self.push(Position { offset, epoch }, delivery, at, room);
                }
            }
        }
        self.evict(now, 0);
        self.minted &= trusted;
        self.journal = journal;
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
#[path = "history_tests.rs"]
mod tests;
