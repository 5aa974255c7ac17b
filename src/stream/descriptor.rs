//! Binary layouts of the shared-memory files, described once.
//!
//! Every integer is little-endian. Offsets are in bytes. The man page
//! documents the same tables; the tests at the bottom check them byte for
//! byte against what the ring, broadcast buffer and files really write.

use thiserror::Error;

/// Records start on multiples of this many bytes.
pub const ALIGNMENT: usize = 8;

/// Positions and counters that different cores write live on separate slots
/// of this size (two 64-byte cache lines, so adjacent-line prefetch does not
/// cause false sharing either; as Agrona).
pub const SLOT: usize = 128;

/// Smallest data capacity of a ring or broadcast buffer.
pub const MIN_CAPACITY: usize = 64;

/// Largest data capacity: record lengths are `i32`.
pub const MAX_CAPACITY: usize = 1 << 30;

/// Rounds `len` up to a multiple of [`ALIGNMENT`].
pub const fn align(len: usize) -> usize {
    (len + ALIGNMENT - 1) & !(ALIGNMENT - 1)
}

/// A record: header then body, the next record at `align(length)`.
///
/// ```text
///  0               4               8
///  +---------------+---------------+--------------------------------+
///  | length    i32 | type      i32 | body (length - 8 bytes)  ...   |
///  +---------------+---------------+--------------------------------+
///
///  length = header + body, without the alignment padding
///  length == 0   free (the reader zeroes what it consumed)
///  length <  0   claimed by a writer, not yet published (-length)
///  length >  0   published; type == PADDING means "skip to the end"
/// ```
///
/// Type 0 is a real frame (RESET), so padding is marked by type -1, never by
/// type 0, and negative types are reserved.
pub mod record {
    /// Offset of the `i32` length.
    pub const LENGTH: usize = 0;
    /// Offset of the `i32` type id.
    pub const TYPE: usize = 4;
    /// Header size; the body starts here.
    pub const HEADER: usize = 8;
    /// Type id of a padding record (wrap filler or aborted claim).
    pub const PADDING: i32 = -1;
}

/// The ring trailer, after `capacity` bytes of records.
///
/// ```text
///  capacity +   0  reserved (keeps the tail off the data's last lines)
///  capacity + 128  tail               i64  next position to claim
///  capacity + 256  head cache         i64  writers' copy of head
///  capacity + 384  head               i64  next position to read
///  capacity + 512  correlation id     i64  counter for command ids
///  capacity + 640  consumer heartbeat i64  reader's liveness stamp
///  capacity + 768  end
/// ```
///
/// Positions grow forever; `position & (capacity - 1)` is the byte index.
pub mod trailer {
    use super::SLOT;
    /// Tail position (writers).
    pub const TAIL: usize = SLOT;
    /// Writers' cached head, re-read from `HEAD` only when space looks short.
    pub const HEAD_CACHE: usize = 2 * SLOT;
    /// Head position (reader).
    pub const HEAD: usize = 3 * SLOT;
    /// Correlation id counter.
    pub const CORRELATION: usize = 4 * SLOT;
    /// Consumer heartbeat.
    pub const CONSUMER_HEARTBEAT: usize = 5 * SLOT;
    /// Trailer size.
    pub const LENGTH: usize = 6 * SLOT;
}

/// The broadcast trailer, after `capacity` bytes of records (same record
/// header as the ring).
///
/// ```text
///  capacity +  0  tail intent i64  end of the record being written
///  capacity +  8  tail        i64  end of the last whole record
///  capacity + 16  latest      i64  start of the last whole record
///  capacity + 24  reserved up to 128
/// ```
pub mod broadcast {
    use super::SLOT;
    /// Tail intent: set before a record is overwritten.
    pub const TAIL_INTENT: usize = 0;
    /// Tail: set after a record is whole.
    pub const TAIL: usize = 8;
    /// Latest: where a lapped receiver resynchronises.
    pub const LATEST: usize = 16;
    /// Trailer size.
    pub const LENGTH: usize = SLOT;
}

/// The counters: a metadata area and a values area, one slot per counter in
/// each, counter `id` at `id * 128` of both.
///
/// ```text
///  metadata record (128 bytes)          value slot (128 bytes)
///  0   state        i32                 0   value i64
///  4   type id      i32                 8   reserved up to 128
///  8   label length i32
///  12  version      i32 (odd while the record is rewritten)
///  16  label        UTF-8, up to 112 bytes
/// ```
pub mod counters {
    use super::SLOT;
    /// Offset of the `i32` state.
    pub const STATE: usize = 0;
    /// Offset of the `i32` type id.
    pub const TYPE: usize = 4;
    /// Offset of the `i32` label length.
    pub const LABEL_LENGTH: usize = 8;
    /// Offset of the `i32` version (seqlock for readers in other processes).
    pub const VERSION: usize = 12;
    /// Offset of the label bytes.
    pub const LABEL: usize = 16;
    /// Longest label in bytes; longer ones are truncated.
    pub const MAX_LABEL: usize = SLOT - LABEL;
    /// Size of a metadata record.
    pub const METADATA_LENGTH: usize = SLOT;
    /// Offset of the `i64` value in its slot.
    pub const VALUE: usize = 0;
    /// Size of a value slot.
    pub const VALUE_LENGTH: usize = SLOT;
    /// Never allocated: readers stop here.
    pub const UNUSED: i32 = 0;
    /// In use.
    pub const ALLOCATED: i32 = 1;
    /// Freed, may be allocated again.
    pub const RECLAIMED: i32 = -1;
}

/// The 64-byte header at the start of both file kinds.
///
/// ```text
///  streams file                         control file
///  0   magic "WRSF"                     0   magic "WRCF"
///  4   version i32 = 1                  4   version i32 = 1
///  8   forward ring capacity  i64       8   command ring capacity   i64
///  16  throttle ring capacity i64       16  response buffer capacity i64
///  24  reserved (zero) up to 64         24  counters metadata length i64
///                                       32  counters values length   i64
///                                       40  reserved (zero) up to 64
///  64  forward ring + trailer           64  command ring + trailer
///      throttle ring + trailer              response buffer + trailer
///                                           counters metadata
///                                           counters values
/// ```
pub mod file {
    /// Header size.
    pub const HEADER: usize = 64;
    /// Offset of the magic (4 ASCII bytes, read as one `i32`).
    pub const MAGIC: usize = 0;
    /// Offset of the `i32` version.
    pub const VERSION: usize = 4;
    /// Current version of both layouts.
    pub const CURRENT_VERSION: i32 = 1;
    /// Streams file magic, "WRSF".
    pub const STREAMS_MAGIC: i32 = i32::from_le_bytes(*b"WRSF");
    /// Control file magic, "WRCF".
    pub const CONTROL_MAGIC: i32 = i32::from_le_bytes(*b"WRCF");
    /// Streams: forward ring capacity.
    pub const FORWARD_CAPACITY: usize = 8;
    /// Streams: throttle ring capacity.
    pub const THROTTLE_CAPACITY: usize = 16;
    /// Control: command ring capacity.
    pub const COMMANDS_CAPACITY: usize = 8;
    /// Control: response broadcast buffer capacity.
    pub const RESPONSES_CAPACITY: usize = 16;
    /// Control: counters metadata length.
    pub const COUNTERS_METADATA: usize = 24;
    /// Control: counters values length.
    pub const COUNTERS_VALUES: usize = 32;
}

/// A ring, broadcast buffer or counters area does not fit its region.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// Data capacities must be powers of two in
    /// [`MIN_CAPACITY`]..=[`MAX_CAPACITY`].
    #[error("capacity {0} is not a power of two between {MIN_CAPACITY} and {MAX_CAPACITY}")]
    Capacity(usize),
    /// The area ends past the region, or starts misaligned.
    #[error("area of {len} bytes at offset {offset} does not fit a region of {region} bytes")]
    Bounds {
        /// Start of the area.
        offset: usize,
        /// Length of the area.
        len: usize,
        /// Length of the region.
        region: usize,
    },
}

/// Checks a ring or broadcast data capacity.
pub fn check_capacity(capacity: usize) -> Result<(), LayoutError> {
    if capacity.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        Ok(())
    } else {
        Err(LayoutError::Capacity(capacity))
    }
}

/// Checks that `len` bytes at `offset` (a multiple of [`ALIGNMENT`]) fit a
/// region of `region` bytes.
pub fn check_bounds(offset: usize, len: usize, region: usize) -> Result<(), LayoutError> {
    let fits = offset.is_multiple_of(ALIGNMENT)
        && offset.checked_add(len).is_some_and(|end| end <= region);
    if fits {
        Ok(())
    } else {
        Err(LayoutError::Bounds {
            offset,
            len,
            region,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rounds_up_to_eight() {
        assert_eq!(align(0), 0);
        assert_eq!(align(1), 8);
        assert_eq!(align(8), 8);
        assert_eq!(align(9), 16);
    }

    #[test]
    fn trailer_is_six_slots_like_agrona() {
        assert_eq!(trailer::TAIL, 128);
        assert_eq!(trailer::HEAD_CACHE, 256);
        assert_eq!(trailer::HEAD, 384);
        assert_eq!(trailer::CORRELATION, 512);
        assert_eq!(trailer::CONSUMER_HEARTBEAT, 640);
        assert_eq!(trailer::LENGTH, 768);
    }

    #[test]
    fn magics_are_ascii_in_the_file() {
        assert_eq!(file::STREAMS_MAGIC.to_le_bytes(), *b"WRSF");
        assert_eq!(file::CONTROL_MAGIC.to_le_bytes(), *b"WRCF");
        assert_eq!(counters::MAX_LABEL, 112);
    }

    #[test]
    fn capacity_and_bounds_checks() {
        assert!(check_capacity(64).is_ok());
        assert!(check_capacity(1 << 20).is_ok());
        assert_eq!(check_capacity(32), Err(LayoutError::Capacity(32)));
        assert_eq!(check_capacity(96), Err(LayoutError::Capacity(96)));
        assert!(check_bounds(64, 100, 164).is_ok());
        assert!(check_bounds(64, 101, 164).is_err());
        assert!(check_bounds(4, 8, 64).is_err());
        assert!(check_bounds(usize::MAX - 3, 8, 64).is_err());
    }
}
