//! A one-to-many broadcast buffer for command responses (Agrona's
//! `BroadcastTransmitter` and `CopyBroadcastReceiver`).
//!
//! Layout: `descriptor::record` and `descriptor::broadcast`. The transmitter
//! never waits: it overwrites the oldest records. Before overwriting it
//! announces the end of the new record as the *tail intent*; a receiver copies
//! a record out, then checks that the intent has not reached the copied bytes.
//! If it has, the receiver was lapped: it counts that and jumps to the latest
//! whole record. Bytes are copied with atomic word accesses (`load_words` /
//! `store_words`) because a lapped copy races with the transmitter by design.

use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use thiserror::Error;

use super::descriptor::{align, broadcast, check_bounds, check_capacity, record, LayoutError};
use super::region::Region;

/// Why a response was not transmitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BroadcastError {
    /// The body is larger than the buffer accepts.
    #[error("broadcast body of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Body length asked for.
        len: usize,
        /// Capacity / 8.
        max: usize,
    },
    /// Negative type ids are reserved (padding is -1).
    #[error("record type {0} is reserved")]
    ReservedType(i32),
}

/// The buffer's place in a region, shared by both ends.
#[derive(Clone)]
struct Area {
    region: Arc<Region>,
    base: usize,
    capacity: usize,
    trailer: usize,
}

impl Area {
    fn new(region: Arc<Region>, offset: usize, capacity: usize) -> Result<Area, LayoutError> {
        check_capacity(capacity)?;
        check_bounds(offset, capacity + broadcast::LENGTH, region.len())?;
        Ok(Area {
            region,
            base: offset,
            capacity,
            trailer: offset + capacity,
        })
    }

    fn index(&self, position: i64) -> usize {
        (position as usize) & (self.capacity - 1)
    }

    fn counter(&self, which: usize, order: Ordering) -> i64 {
        self.region.load_i64(self.trailer + which, order)
    }
}

/// Bytes a broadcast buffer of `capacity` occupies: data then trailer.
pub const fn required_length(capacity: usize) -> usize {
    capacity + broadcast::LENGTH
}

/// The one writing end. Never waits; overwrites what receivers missed.
pub struct BroadcastTransmitter {
    area: Area,
}

impl BroadcastTransmitter {
    /// A transmitter over the buffer whose data starts at `offset`.
    pub fn new(
        region: Arc<Region>,
        offset: usize,
        capacity: usize,
    ) -> Result<BroadcastTransmitter, LayoutError> {
        Ok(BroadcastTransmitter {
            area: Area::new(region, offset, capacity)?,
        })
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.area.capacity
    }

    /// Largest body: capacity / 8.
    pub fn max_body(&self) -> usize {
        self.area.capacity / 8
    }

    /// Publishes one record to every receiver.
    pub fn transmit(&mut self, type_id: i32, body: &[u8]) -> Result<(), BroadcastError> {
        if type_id < 0 {
            return Err(BroadcastError::ReservedType(type_id));
        }
        if body.len() > self.max_body() {
            return Err(BroadcastError::TooLong {
                len: body.len(),
                max: self.max_body(),
            });
        }
        let area = &self.area;
        let region = &area.region;
        let length = record::HEADER + body.len();
        let aligned = align(length);
        let mut start = area.counter(broadcast::TAIL, Relaxed);
        let mut index = area.index(start);
        let to_end = area.capacity - index;
        let wraps = aligned > to_end;
        let end = start + aligned as i64 + if wraps { to_end as i64 } else { 0 };
        // Announce before touching any byte a receiver may still be copying;
        // the fence orders the announcement before the writes below.
        region.store_i64(area.trailer + broadcast::TAIL_INTENT, end, Relaxed);
        fence(Release);
        if wraps {
            let at = area.base + index;
            region.store_i32(at + record::LENGTH, to_end as i32, Relaxed);
            region.store_i32(at + record::TYPE, record::PADDING, Relaxed);
            start += to_end as i64;
            index = 0;
        }
        let at = area.base + index;
        region.store_i32(at + record::LENGTH, length as i32, Relaxed);
        region.store_i32(at + record::TYPE, type_id, Relaxed);
        region.store_words(at + record::HEADER, body);
        region.store_i64(area.trailer + broadcast::LATEST, start, Relaxed);
        region.store_i64(area.trailer + broadcast::TAIL, end, Release);
        Ok(())
    }
}

impl fmt::Debug for BroadcastTransmitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastTransmitter")
            .field("capacity", &self.area.capacity)
            .finish()
    }
}

/// One reading end. Starts at the current tail: it sees what is transmitted
/// after it was created.
pub struct BroadcastReceiver {
    area: Area,
    /// Position of the next record to read.
    cursor: i64,
    lapped: u64,
    /// The copy handed to the handler, validated after copying.
    scratch: Vec<u8>,
}

impl BroadcastReceiver {
    /// A receiver over the buffer whose data starts at `offset`.
    pub fn new(
        region: Arc<Region>,
        offset: usize,
        capacity: usize,
    ) -> Result<BroadcastReceiver, LayoutError> {
        let area = Area::new(region, offset, capacity)?;
        let cursor = area.counter(broadcast::TAIL, Acquire);
        Ok(BroadcastReceiver {
            scratch: vec![0; capacity / 8],
            area,
            cursor,
            lapped: 0,
        })
    }

    /// How many times the transmitter overwrote records before this receiver
    /// read them (each time it skipped to the latest record).
    pub fn lapped_count(&self) -> u64 {
        self.lapped
    }

    /// Hands every whole record transmitted since the last call to `handler`,
    /// in order; returns how many. Stops at the tail seen on entry, so a busy
    /// transmitter cannot keep it looping.
    pub fn receive(&mut self, mut handler: impl FnMut(i32, &[u8])) -> usize {
        let stop = self.area.counter(broadcast::TAIL, Acquire);
        let mut handled = 0;
        while self.cursor < stop {
            // Acquire on each pass: a resync may move the cursor to records
            // newer than `stop`, which must not be read before they are whole.
            if self.cursor >= self.area.counter(broadcast::TAIL, Acquire) {
                break;
            }
            if let Some((type_id, len)) = self.copy_next() {
                handler(type_id, &self.scratch[..len]);
                handled += 1;
            }
        }
        handled
    }

    /// Copies the record at the cursor into `scratch` and moves past it;
    /// `None` for padding, or after a lap (cursor moved to the latest).
    fn copy_next(&mut self) -> Option<(i32, usize)> {
        let area = &self.area;
        let index = area.index(self.cursor);
        let at = area.base + index;
        let length = area.region.load_i32(at + record::LENGTH, Relaxed);
        let type_id = area.region.load_i32(at + record::TYPE, Relaxed);
        // Until validated, these may be torn garbage: bound everything.
        let length = usize::try_from(length)
            .ok()
            .filter(|&l| l >= record::HEADER && index + l <= area.capacity);
        let body = length.map(|l| l - record::HEADER);
        let copied = match body {
            Some(len) if type_id != record::PADDING && len <= self.scratch.len() => {
                area.region
                    .load_words(at + record::HEADER, &mut self.scratch[..len]);
                Some(len)
            }
            _ => None,
        };
        if !self.intact() {
            self.resync();
            return None;
        }
        let Some(length) = length else {
            // Intact yet malformed: only a foreign writer does that. Skip
            // everything written so far rather than spin on it.
            self.lapped += 1;
            self.cursor = self.area.counter(broadcast::TAIL, Acquire);
            return None;
        };
        self.cursor += align(length) as i64;
        if type_id == record::PADDING {
            return None;
        }
        copied.map(|len| (type_id, len))
    }

    /// Whether the transmitter has not started overwriting the record at the
    /// cursor (checked after copying it).
    fn intact(&self) -> bool {
        // Pairs with the transmitter's release fence: if the copy saw any of
        // its new bytes, this load sees the intent that preceded them.
        fence(Acquire);
        let intent = self.area.counter(broadcast::TAIL_INTENT, Relaxed);
        self.cursor + self.area.capacity as i64 > intent
    }

    fn resync(&mut self) {
        self.lapped += 1;
        self.cursor = self.area.counter(broadcast::LATEST, Acquire);
    }
}

impl fmt::Debug for BroadcastReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastReceiver")
            .field("capacity", &self.area.capacity)
            .field("cursor", &self.cursor)
            .field("lapped", &self.lapped)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(capacity: usize) -> (Arc<Region>, BroadcastTransmitter, BroadcastReceiver) {
        let region = Arc::new(Region::anonymous(required_length(capacity)).unwrap());
        let tx = BroadcastTransmitter::new(Arc::clone(&region), 0, capacity).unwrap();
        let rx = BroadcastReceiver::new(Arc::clone(&region), 0, capacity).unwrap();
        (region, tx, rx)
    }

    fn drain(rx: &mut BroadcastReceiver) -> Vec<(i32, Vec<u8>)> {
        let mut out = Vec::new();
        rx.receive(|t, b| out.push((t, b.to_vec())));
        out
    }

    #[test]
    fn every_receiver_sees_every_record() {
        let (region, mut tx, mut a) = pair(1024);
        let mut b = BroadcastReceiver::new(Arc::clone(&region), 0, 1024).unwrap();
        tx.transmit(0x4000_0001, b"one").unwrap();
        tx.transmit(0, b"").unwrap();
        let expected = vec![(0x4000_0001, b"one".to_vec()), (0, Vec::new())];
        assert_eq!(drain(&mut a), expected);
        assert_eq!(drain(&mut b), expected);
        assert_eq!(drain(&mut a), vec![]);
        assert_eq!(a.lapped_count(), 0);
    }

    #[test]
    fn record_and_trailer_bytes() {
        let (region, mut tx, _) = pair(64);
        tx.transmit(9, b"abc").unwrap();
        assert_eq!(
            region.window(0, 16),
            &[11, 0, 0, 0, 9, 0, 0, 0, b'a', b'b', b'c', 0, 0, 0, 0, 0]
        );
        assert_eq!(region.window(64, 8), &16i64.to_le_bytes(), "tail intent");
        assert_eq!(region.window(72, 8), &16i64.to_le_bytes(), "tail");
        assert_eq!(region.window(80, 8), &0i64.to_le_bytes(), "latest");
    }

    #[test]
    fn a_late_receiver_starts_at_the_tail() {
        let (region, mut tx, _) = pair(1024);
        tx.transmit(1, b"before").unwrap();
        let mut late = BroadcastReceiver::new(region, 0, 1024).unwrap();
        tx.transmit(2, b"after").unwrap();
        assert_eq!(drain(&mut late), vec![(2, b"after".to_vec())]);
    }

    #[test]
    fn padding_is_skipped_when_keeping_up() {
        let (region, mut tx, mut rx) = pair(128);
        for i in 0..7u8 {
            tx.transmit(1, &[i; 8]).unwrap(); // 0..112
        }
        assert_eq!(drain(&mut rx).len(), 7);
        tx.transmit(2, &[9; 16]).unwrap(); // padding 112..128, then 128..152
        assert_eq!(
            region.window(112, 8),
            &[16, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(region.window(0, 8), &[24, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(drain(&mut rx), vec![(2, vec![9; 16])]);
        assert_eq!(rx.lapped_count(), 0);
    }

    #[test]
    fn lapped_during_a_wrap() {
        let (region, mut tx, mut rx) = pair(128);
        for i in 0..7u8 {
            tx.transmit(1, &[i; 8]).unwrap(); // 0..112
        }
        assert_eq!(drain(&mut rx).len(), 7); // cursor at 112
        tx.transmit(2, &[0; 16]).unwrap(); // padding 112..128, then 128..152
        for i in 0..6u8 {
            tx.transmit(3, &[i; 8]).unwrap(); // 152..248
        }
        tx.transmit(4, b"last").unwrap(); // padding 248..256, then 256..272
        assert_eq!(region.load_i32(120, Relaxed), 8);
        assert_eq!(region.load_i32(124, Relaxed), record::PADDING);
        // Position 112 + 128 was overwritten before the receiver came back.
        assert_eq!(drain(&mut rx), vec![(4, b"last".to_vec())]);
        assert_eq!(rx.lapped_count(), 1);
    }

    #[test]
    fn lapped_receiver_resynchronises_to_the_latest() {
        let (_, mut tx, mut rx) = pair(256);
        tx.transmit(1, b"seen").unwrap();
        assert_eq!(drain(&mut rx).len(), 1);
        for i in 0..100 {
            tx.transmit(2, &[i as u8; 20]).unwrap();
        }
        let got = drain(&mut rx);
        assert_eq!(rx.lapped_count(), 1);
        assert_eq!(got, vec![(2, vec![99; 20])]);
        tx.transmit(3, b"next").unwrap();
        assert_eq!(drain(&mut rx), vec![(3, b"next".to_vec())]);
        assert_eq!(rx.lapped_count(), 1);
    }

    #[test]
    fn errors_for_oversize_and_reserved_types() {
        let (_, mut tx, mut rx) = pair(256);
        assert_eq!(tx.max_body(), 32);
        assert_eq!(tx.capacity(), 256);
        assert_eq!(
            tx.transmit(1, &[0; 33]),
            Err(BroadcastError::TooLong { len: 33, max: 32 })
        );
        assert_eq!(tx.transmit(-1, b""), Err(BroadcastError::ReservedType(-1)));
        tx.transmit(1, &[0; 32]).unwrap();
        assert_eq!(drain(&mut rx), vec![(1, vec![0; 32])]);
    }

    #[test]
    fn concurrent_receiver_never_sees_a_torn_record() {
        let (region, mut tx, _) = pair(1024);
        let mut rx = BroadcastReceiver::new(Arc::clone(&region), 0, 1024).unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            let mut count = 0;
            while last < 49_999 {
                count += rx.receive(|_, body| {
                    let seq = u64::from_le_bytes(body[..8].try_into().unwrap());
                    assert!(seq >= last, "went backwards");
                    assert!(body[8..].iter().all(|&b| b == seq as u8), "torn");
                    last = seq;
                });
            }
            (count, rx.lapped_count())
        });
        for seq in 0..50_000u64 {
            let mut body = seq.to_le_bytes().to_vec();
            body.resize(8 + (seq % 100) as usize, seq as u8);
            tx.transmit(1, &body).unwrap();
        }
        let (count, lapped) = reader.join().unwrap();
        assert!(count > 0);
        assert!(count as u64 + lapped <= 50_000);
    }
}
