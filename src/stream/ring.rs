//! A ring buffer of records over a shared region (Agrona's
//! `OneToOneRingBuffer` / `ManyToOneRingBuffer`).
//!
//! Layout: `descriptor::record` and `descriptor::trailer`. Writers claim space
//! by moving the tail (a plain store with one writer, a CAS with many), write
//! the body, then publish the header length with a release store. The one
//! reader acquire-loads headers from the head, stops at the first length that
//! is not positive, and release-stores the head past what it consumed.
//!
//! What the reader consumed keeps its old bytes on a one-writer ring: its
//! writer puts a record's header (claimed, -length) in place before it
//! moves the tail past it, and the reader reads no further than the tail it
//! acquired, so it never meets an old lap's bytes where a header should be.
//! (Shortening a claim leaves a zero length where the next record would
//! start, for a reader that acquired the longer tail.) On a many-writer ring
//! the CAS moves the tail before the header can be written, so the reader
//! zeroes what it consumed and stops at the first zero length, as Agrona's
//! does.
//!
//! Roles are a contract, as in Agrona: one reader, and in
//! [`Writers::One`] mode one writer, whether they are threads or processes.
//! Breaking it corrupts records (not memory safety of Rust data, but the
//! bodies handed out could be overwritten while borrowed).

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicI64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

use thiserror::Error;

use super::descriptor::{align, check_bounds, check_capacity, record, trailer, LayoutError};
use super::region::Region;

/// How many writers a ring has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// One writer: claims move the tail with plain stores.
    One,
    /// Many writers (threads or processes): claims CAS the tail.
    Many,
}

/// Why a write did not happen. Never a wait, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RingFull {
    /// Not enough free space right now; retry after the reader caught up.
    #[error("ring full: no space for {required} bytes")]
    NoSpace {
        /// Bytes the record needed, header and alignment included.
        required: usize,
    },
    /// The body is larger than the ring accepts at all.
    #[error("record body of {len} bytes exceeds the ring maximum of {max}")]
    TooLong {
        /// Body length asked for.
        len: usize,
        /// [`Ring::max_body`].
        max: usize,
    },
    /// Negative type ids are reserved (padding is -1).
    #[error("record type {0} is reserved")]
    ReservedType(i32),
}

/// A ring buffer in a shared region. See the module docs for roles.
pub struct Ring {
    region: Arc<Region>,
    /// Offset of the data area in the region; the trailer follows it.
    base: usize,
    capacity: usize,
    writers: Writers,
    /// Absolute trailer offsets.
    tail: usize,
    head_cache: usize,
    head: usize,
    correlation: usize,
    heartbeat: usize,
    /// The tail when [`Ring::release_free_space`] last found the ring empty
    /// (this handle's memory, not the shared region's).
    released_at: AtomicI64,
}

impl Ring {
    /// Bytes a ring of `capacity` occupies: data then trailer.
    pub const fn required_length(capacity: usize) -> usize {
        capacity + trailer::LENGTH
    }

    /// A ring whose data area starts at `offset` of `region`.
    pub fn new(
        region: Arc<Region>,
        offset: usize,
        capacity: usize,
        writers: Writers,
    ) -> Result<Ring, LayoutError> {
        check_capacity(capacity)?;
        check_bounds(offset, Self::required_length(capacity), region.len())?;
        let end = offset + capacity;
        Ok(Ring {
            region,
            base: offset,
            capacity,
            writers,
            tail: end + trailer::TAIL,
            head_cache: end + trailer::HEAD_CACHE,
            head: end + trailer::HEAD,
            correlation: end + trailer::CORRELATION,
            heartbeat: end + trailer::CONSUMER_HEARTBEAT,
            released_at: AtomicI64::new(0),
        })
    }

    /// A ring in its own anonymous memory (tests, in-process queues).
    pub fn anonymous(capacity: usize, writers: Writers) -> io::Result<Ring> {
        check_capacity(capacity).map_err(invalid_input)?;
        let region = Arc::new(Region::anonymous(Self::required_length(capacity))?);
        Ring::new(region, 0, capacity, writers).map_err(invalid_input)
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Largest record body: capacity / 8.
    pub fn max_body(&self) -> usize {
        self.capacity / 8
    }

    /// The writer mode this handle claims with.
    pub fn writers(&self) -> Writers {
        self.writers
    }

    /// Whether every claimed record has been read.
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// Bytes claimed and not yet read (headers and padding included).
    pub fn size(&self) -> usize {
        let head = self.region.load_i64(self.head, Acquire);
        let tail = self.region.load_i64(self.tail, Acquire);
        usize::try_from(tail - head).unwrap_or(0)
    }

    /// The writer's position: bytes claimed since the ring was made.
    pub fn tail_position(&self) -> i64 {
        self.region.load_i64(self.tail, Acquire)
    }

    /// Gives the memory under the ring's free space back to the system,
    /// whole pages at a time, so that a ring which carried a burst and went
    /// quiet holds no memory for it. Free space belongs to the writer, and
    /// nothing reads it before the writer writes it again (the reader stops
    /// at the tail), so no one can tell. For the one writer of a [`Writers::One`] ring,
    /// between its writes; a no-op on many-writer rings, and on a ring that
    /// carried nothing since it was last found empty. Returns the bytes
    /// released (0 where the file system cannot punch holes).
    pub fn release_free_space(&self) -> usize {
        if self.writers != Writers::One {
            return 0;
        }
        let tail = self.region.load_i64(self.tail, Relaxed);
        // Acquire: the reader's zeroes below the head are visible.
        let head = self.region.load_i64(self.head, Acquire);
        if tail == self.released_at.load(Relaxed) {
            return 0;
        }
        if head == tail {
            self.released_at.store(tail, Relaxed);
        }
        let Ok(free) = usize::try_from(self.capacity as i64 - (tail - head)) else {
            return 0;
        };
        let index = self.index(tail);
        let first = free.min(self.capacity - index);
        [(index, first), (0, free - first)]
            .into_iter()
            .filter(|&(_, len)| len > 0)
            .map(|(at, len)| self.region.release(self.base + at, len).unwrap_or(0))
            .sum()
    }

    /// A fresh id from the ring's shared counter; the first is 1.
    pub fn next_correlation_id(&self) -> i64 {
        self.region.fetch_add_i64(self.correlation, 1) + 1
    }

    /// Stamps the reader's liveness (a time of the reader's choosing).
    pub fn set_consumer_heartbeat(&self, stamp: i64) {
        self.region.store_i64(self.heartbeat, stamp, Release);
    }

    /// The last stamp of [`set_consumer_heartbeat`](Self::set_consumer_heartbeat).
    pub fn consumer_heartbeat(&self) -> i64 {
        self.region.load_i64(self.heartbeat, Acquire)
    }

    /// Writes one record whose body is the concatenation of `parts`.
    pub fn write(&self, type_id: i32, parts: &[&[u8]]) -> Result<(), RingFull> {
        let len = parts.iter().map(|part| part.len()).sum();
        let mut claim = self.try_claim(type_id, len)?;
        let mut at = 0;
        for part in parts {
            claim[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        claim.commit();
        Ok(())
    }

    /// Claims space for a body of `len` bytes (zeroed on a many-writer
    /// ring; holding old bytes on a one-writer ring). The claim publishes on
    /// [`Claim::commit`] and turns into padding when dropped uncommitted.
    /// The reader cannot pass an open claim, so commit promptly.
    pub fn try_claim(&self, type_id: i32, len: usize) -> Result<Claim<'_>, RingFull> {
        if type_id < 0 {
            return Err(RingFull::ReservedType(type_id));
        }
        if len > self.max_body() {
            return Err(RingFull::TooLong {
                len,
                max: self.max_body(),
            });
        }
        let length = record::HEADER + len;
        let at = match self.writers {
            Writers::One => self.base + self.claim_one(length, type_id)?,
            Writers::Many => {
                let at = self.base + self.claim_many(align(length))?;
                self.claimed_header(at, length, type_id);
                at
            }
        };
        Ok(Claim {
            ring: self,
            at,
            length,
            open: true,
        })
    }

    /// Handles up to `limit` published records in order, skipping padding,
    /// then frees their space. Returns how many records were handled.
    ///
    /// The handler may write to this ring but must not read it: the body it
    /// borrows is the space a nested read would free.
    pub fn read(&self, limit: usize, mut handler: impl FnMut(i32, &[u8])) -> usize {
        let head = self.region.load_i64(self.head, Relaxed);
        // One writer: no further than the tail (see the module docs).
        let end = match self.writers {
            Writers::One => {
                let tail = self.region.load_i64(self.tail, Acquire);
                usize::try_from(tail - head).map_or(0, |n| n.min(self.capacity))
            }
            Writers::Many => self.capacity,
        };
        let mut consumed = 0;
        let mut handled = 0;
        while handled < limit && consumed < end {
            let index = self.index(head + consumed as i64);
            let at = self.base + index;
            let length = self.region.load_i32(at + record::LENGTH, Acquire);
            let Ok(length) = usize::try_from(length) else {
                break; // claimed, not yet published
            };
            if length < record::HEADER || index + length > self.capacity {
                break; // free (0) or corrupt: nothing readable here
            }
            consumed += align(length);
            let type_id = self.region.load_i32(at + record::TYPE, Relaxed);
            if type_id != record::PADDING {
                handler(
                    type_id,
                    self.region
                        .window(at + record::HEADER, length - record::HEADER),
                );
                handled += 1;
            }
        }
        if consumed > 0 {
            self.release(head, consumed);
        }
        handled
    }

    /// Moves the head past `len` bytes from `head`, zeroing them first on a
    /// many-writer ring.
    fn release(&self, head: i64, len: usize) {
        if self.writers == Writers::Many {
            let index = self.index(head);
            let first = len.min(self.capacity - index);
            self.region.zero(self.base + index, first);
            self.region.zero(self.base, len - first);
        }
        // Release: writers that acquire the head also see the zeroes, and
        // that the reader is done with the bodies.
        self.region.store_i64(self.head, head + len as i64, Release);
    }

    /// The header of a claimed, unpublished record.
    fn claimed_header(&self, at: usize, length: usize, type_id: i32) {
        // Lengths fit i32: capacity <= 2^30 (descriptor::MAX_CAPACITY).
        self.region
            .store_i32(at + record::LENGTH, -(length as i32), Release);
        self.region.store_i32(at + record::TYPE, type_id, Relaxed);
    }

    fn index(&self, position: i64) -> usize {
        (position as usize) & (self.capacity - 1)
    }

    /// One writer: tail and head cache are ours, plain stores suffice. The
    /// padding and the claimed header are in place before the tail moves.
    fn claim_one(&self, length: usize, type_id: i32) -> Result<usize, RingFull> {
        let required = align(length);
        let tail = self.region.load_i64(self.tail, Relaxed);
        let head = self.region.load_i64(self.head_cache, Relaxed);
        let (index, padding) = self.find_space(tail, head, required, Relaxed)?;
        let index = self.place(index, padding);
        self.claimed_header(self.base + index, length, type_id);
        self.region
            .store_i64(self.tail, tail + (required + padding) as i64, Release);
        Ok(index)
    }

    /// Many writers: the CAS on the tail decides who owns the space.
    fn claim_many(&self, required: usize) -> Result<usize, RingFull> {
        loop {
            // Acquire: the cache was stored by a writer that acquired the
            // head, so the reader's zeroes are visible through it.
            let head = self.region.load_i64(self.head_cache, Acquire);
            let tail = self.region.load_i64(self.tail, Acquire);
            let (index, padding) = self.find_space(tail, head, required, Release)?;
            let next = tail + (required + padding) as i64;
            if self
                .region
                .compare_exchange_i64(self.tail, tail, next)
                .is_ok()
            {
                return Ok(self.place(index, padding));
            }
        }
    }

    /// Where a record of `required` bytes goes after `tail`, and how much
    /// padding precedes it, checking against the cached `head` first and the
    /// real head only when short (storing it back into the cache).
    fn find_space(
        &self,
        tail: i64,
        mut head: i64,
        required: usize,
        cache_order: std::sync::atomic::Ordering,
    ) -> Result<(usize, usize), RingFull> {
        let full = Err(RingFull::NoSpace { required });
        let free = |head: i64| self.capacity as i64 - (tail - head);
        if required as i64 > free(head) {
            head = self.region.load_i64(self.head, Acquire);
            if required as i64 > free(head) {
                return full;
            }
            self.region.store_i64(self.head_cache, head, cache_order);
        }
        let index = self.index(tail);
        let to_end = self.capacity - index;
        if required <= to_end {
            return Ok((index, 0));
        }
        // Wrap: the record goes to index 0, so [0, required) must be free,
        // i.e. the reader must be at least `required` into this lap.
        if required > self.index(head) {
            head = self.region.load_i64(self.head, Acquire);
            if required > self.index(head) || required as i64 + to_end as i64 > free(head) {
                return full;
            }
            self.region.store_i64(self.head_cache, head, cache_order);
        }
        Ok((index, to_end))
    }

    /// Writes the padding record of a wrapping claim; returns the record's
    /// data index.
    /// One writer: returns the last `bytes` of the newest claim to the ring.
    fn give_back(&self, bytes: usize) {
        let tail = self.region.load_i64(self.tail, Relaxed);
        self.region
            .store_i64(self.tail, tail - bytes as i64, Release);
    }

    fn place(&self, index: usize, padding: usize) -> usize {
        if padding == 0 {
            return index;
        }
        let at = self.base + index;
        self.region
            .store_i32(at + record::TYPE, record::PADDING, Relaxed);
        self.region
            .store_i32(at + record::LENGTH, padding as i32, Release);
        0
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity)
            .field("writers", &self.writers)
            .field("size", &self.size())
            .finish()
    }
}

/// Space claimed in a ring: derefs to the body (see [`Ring::try_claim`]). Commit
/// publishes it; dropping it uncommitted turns it into padding.
#[must_use = "a claim is aborted when dropped; call commit() to publish"]
pub struct Claim<'a> {
    ring: &'a Ring,
    /// Absolute offset of the record header.
    at: usize,
    /// Header + body.
    length: usize,
    open: bool,
}

impl Claim<'_> {
    /// Publishes the record to the reader.
    pub fn commit(mut self) {
        self.finish(None);
    }

    /// Gives the space up explicitly (same as dropping).
    pub fn abort(mut self) {
        self.finish(Some(record::PADDING));
    }

    /// Shortens the body to `len` bytes, giving the rest back to the ring
    /// (one-writer rings; a many-writer claim keeps its length).
    pub fn truncate(&mut self, len: usize) {
        let new_length = record::HEADER + len;
        if self.ring.writers != Writers::One || !self.open || new_length >= self.length {
            return;
        }
        let given_back = align(self.length) - align(new_length);
        if given_back > 0 {
            // A reader that acquired the longer tail stops here once this
            // record is published (given back space is whole records long,
            // so a header fits).
            let next = self.at + align(new_length);
            self.ring
                .region
                .store_i32(next + record::LENGTH, 0, Relaxed);
        }
        self.ring.give_back(given_back);
        self.length = new_length;
    }

    /// Gives the whole claim back without leaving a padding record
    /// (one-writer rings; elsewhere the same as [`Claim::abort`]). The body
    /// must not have been written.
    pub fn cancel(mut self) {
        if self.ring.writers != Writers::One {
            return self.abort();
        }
        self.open = false;
        let region = &self.ring.region;
        region.store_i32(self.at + record::TYPE, 0, Relaxed);
        region.store_i32(self.at + record::LENGTH, 0, Release);
        self.ring.give_back(align(self.length));
    }

    fn finish(&mut self, retype: Option<i32>) {
        if !self.open {
            return;
        }
        self.open = false;
        let region = &self.ring.region;
        if let Some(type_id) = retype {
            region.store_i32(self.at + record::TYPE, type_id, Relaxed);
        }
        region.store_i32(self.at + record::LENGTH, self.length as i32, Release);
    }
}

impl Deref for Claim<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // The claimed space is ours until we publish it.
        self.ring
            .region
            .window(self.at + record::HEADER, self.length - record::HEADER)
    }
}

impl DerefMut for Claim<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.ring
            .region
            .window_mut(self.at + record::HEADER, self.length - record::HEADER)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.finish(Some(record::PADDING));
    }
}

impl fmt::Debug for Claim<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("len", &(self.length - record::HEADER))
            .finish()
    }
}

fn invalid_input(error: LayoutError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, error)
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
