//! A memory-mapped region: the only module of the crate with `unsafe` code.
//!
//! A [`Region`] maps a whole file (or anonymous memory) with memmap2's
//! [`MmapRaw`], which hands out raw pointers only. Everything above this
//! module (rings, broadcast buffer, counters) works with byte offsets and the
//! checked accessors below, so the reasoning about raw memory stays here.
//!
//! # Contract
//!
//! The memory is shared with other threads and other processes, so Rust's
//! borrow rules cannot see who touches what. The accessors come in two kinds:
//!
//! - **Atomic accessors** (`load_*`, `store_*`, `compare_exchange_i64`,
//!   `fetch_add_i64`, `load_words`, `store_words`) may race with anything
//!   else that also uses atomic accessors: that is their purpose.
//! - **Plain accessors** (`window`, `window_mut`, `zero`, `release`) are private to
//!   the `stream` module (their soundness rests on the ring protocol of
//!   `stream::ring`, so no code outside it can call them) and require that
//!   the caller *owns* the bytes for as
//!   long as it uses them: no other thread or process writes them meanwhile
//!   (and, for the `mut` forms, nobody reads them either). The ring protocol
//!   guarantees this: a writer owns what it claimed until it publishes, the
//!   reader owns what was published until it moves the head.
//!
//! A region whose file is truncated by another process while mapped raises
//! SIGBUS on access; memmap2 documents this as a crash, not memory
//! unsafety. Offsets out of bounds or misaligned are programming errors and
//! panic.
#![allow(unsafe_code)]

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};

use memmap2::{MmapMut, MmapRaw, UncheckedAdvice};

// The layouts are little-endian (descriptor.rs) and the accessors store
// native integers, so a big-endian target would write foreign files.
#[cfg(target_endian = "big")]
compile_error!("webrocket's shared-memory layouts assume a little-endian target");

/// A shared, memory-mapped byte region. Cheap to share with `Arc`.
pub struct Region {
    map: MmapRaw,
    /// Private anonymous memory rather than a shared file mapping: decides
    /// how [`Region::release`] gives pages back.
    anonymous: bool,
}

impl Region {
    /// Creates (or truncates) the file at `path` with `len` zero bytes and
    /// maps it.
    pub fn create(path: &Path, len: usize) -> io::Result<Region> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a region needs at least one byte",
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(len as u64)?;
        Self::map(&file)
    }

    /// Maps the whole of an existing file at `path`, read-write.
    pub fn open(path: &Path) -> io::Result<Region> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        if file.metadata()?.len() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is empty", path.display()),
            ));
        }
        Self::map(&file)
    }

    /// Maps `len` zeroed bytes of anonymous memory (tests, in-process rings).
    pub fn anonymous(len: usize) -> io::Result<Region> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a region needs at least one byte",
            ));
        }
        let map = MmapMut::map_anon(len)?;
        Ok(Region {
            map: MmapRaw::from(map),
            anonymous: true,
        })
    }

    fn map(file: &File) -> io::Result<Region> {
        let map = MmapRaw::map_raw(file)?;
        // Mappings are page aligned; offset alignment checks rely on it.
        debug_assert_eq!(map.as_ptr() as usize % 4096, 0);
        Ok(Region {
            map,
            anonymous: false,
        })
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the region has no bytes (never true for a mapped region).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Panics unless `offset..offset + size` lies inside the region and
    /// `offset` is a multiple of `align`; returns the address.
    fn check(&self, offset: usize, size: usize, align: usize) -> *mut u8 {
        let end = offset.checked_add(size);
        assert!(
            end.is_some_and(|end| end <= self.len()),
            "region access {offset}+{size} out of bounds (length {})",
            self.len()
        );
        assert!(
            offset.is_multiple_of(align),
            "region access at {offset} not aligned to {align}"
        );
        // SAFETY: `offset + size <= len`, so the result stays inside (or one
        // past the end of) the mapping, which is a single allocation.
        unsafe { self.map.as_mut_ptr().add(offset) }
    }

    fn atomic_i32(&self, offset: usize) -> &AtomicI32 {
        let ptr = self.check(offset, 4, 4).cast::<i32>();
        // SAFETY: `ptr` is in bounds and 4-aligned (checked, and the mapping
        // is page aligned); the mapping lives as long as `&self`. Concurrent
        // non-atomic access to these bytes is excluded by the module contract.
        unsafe { AtomicI32::from_ptr(ptr) }
    }

    fn atomic_i64(&self, offset: usize) -> &AtomicI64 {
        let ptr = self.check(offset, 8, 8).cast::<i64>();
        // SAFETY: as in `atomic_i32`, with 8-byte bounds and alignment.
        unsafe { AtomicI64::from_ptr(ptr) }
    }

    fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        let ptr = self.check(offset, 8, 8).cast::<u64>();
        // SAFETY: as in `atomic_i32`, with 8-byte bounds and alignment.
        unsafe { AtomicU64::from_ptr(ptr) }
    }

    /// Atomically loads the `i32` at `offset` (4-aligned).
    pub fn load_i32(&self, offset: usize, order: Ordering) -> i32 {
        self.atomic_i32(offset).load(order)
    }

    /// Atomically stores `value` at `offset` (4-aligned).
    pub fn store_i32(&self, offset: usize, value: i32, order: Ordering) {
        self.atomic_i32(offset).store(value, order);
    }

    /// Atomically loads the `i64` at `offset` (8-aligned).
    pub fn load_i64(&self, offset: usize, order: Ordering) -> i64 {
        self.atomic_i64(offset).load(order)
    }

    /// Atomically stores `value` at `offset` (8-aligned).
    pub fn store_i64(&self, offset: usize, value: i64, order: Ordering) {
        self.atomic_i64(offset).store(value, order);
    }

    /// Compare-and-swap of the `i64` at `offset` (AcqRel on success, Acquire
    /// on failure); returns the previous value as `Ok` when it swapped.
    pub fn compare_exchange_i64(&self, offset: usize, current: i64, new: i64) -> Result<i64, i64> {
        self.atomic_i64(offset)
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
    }

    /// Atomically adds `delta` to the `i64` at `offset` (AcqRel); returns the
    /// previous value.
    pub fn fetch_add_i64(&self, offset: usize, delta: i64) -> i64 {
        self.atomic_i64(offset).fetch_add(delta, Ordering::AcqRel)
    }

    /// Stores `src` at `offset` (8-aligned) as relaxed atomic 64-bit words,
    /// zero-filling the last word: writes `src.len()` rounded up to 8 bytes.
    /// For bytes a reader may copy at the same time (seqlock style).
    pub fn store_words(&self, offset: usize, src: &[u8]) {
        self.check(offset, src.len().next_multiple_of(8), 8);
        for (i, chunk) in src.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.atomic_u64(offset + i * 8)
                .store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
    }

    /// Copies `dst.len()` bytes from `offset` (8-aligned) with relaxed atomic
    /// 64-bit loads, so it may race with `store_words`; the caller validates
    /// the copy afterwards (fence + sequence check).
    pub fn load_words(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len().next_multiple_of(8), 8);
        for (i, chunk) in dst.chunks_mut(8).enumerate() {
            let word = self.atomic_u64(offset + i * 8).load(Ordering::Relaxed);
            chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
        }
    }

    /// Borrows `len` bytes at `offset`.
    ///
    /// Contract: the caller owns these bytes while the borrow lives - no
    /// thread or process writes them (module docs).
    pub(super) fn window(&self, offset: usize, len: usize) -> &[u8] {
        let ptr = self.check(offset, len, 1);
        // SAFETY: in bounds (checked) and valid while `&self` keeps the map
        // alive; no concurrent writer by the ownership contract above.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }

    /// Mutably borrows `len` bytes at `offset`.
    ///
    /// Contract: the caller exclusively owns these bytes while the borrow
    /// lives - nobody else reads or writes them, and the caller holds no
    /// other window over them (module docs).
    #[allow(clippy::mut_from_ref)] // shared memory: exclusivity is by protocol
    pub(super) fn window_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        let ptr = self.check(offset, len, 1);
        // SAFETY: in bounds (checked) and valid while `&self` keeps the map
        // alive; exclusive by the ownership contract above.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }

    /// Sets `len` bytes at `offset` to zero. Contract: as `window_mut`.
    pub(super) fn zero(&self, offset: usize, len: usize) {
        let ptr = self.check(offset, len, 1);
        // SAFETY: in bounds (checked); exclusive by contract.
        unsafe { std::ptr::write_bytes(ptr, 0, len) }
    }

    /// Gives the memory of the whole pages inside `offset..offset + len`
    /// back to the system (a hole punched in the file, or dropped anonymous
    /// pages); they read as zero afterwards and cost memory again only when
    /// written. Returns the bytes released. Contract: as `window_mut`, and
    /// the bytes must be zero already, so that no reader can tell.
    pub(super) fn release(&self, offset: usize, len: usize) -> io::Result<usize> {
        self.check(offset, len, 1);
        let page = page_size();
        let start = offset.next_multiple_of(page);
        let end = (offset + len) / page * page;
        if end <= start {
            return Ok(0);
        }
        let advice = if self.anonymous {
            UncheckedAdvice::DontNeed
        } else {
            UncheckedAdvice::Remove
        };
        // SAFETY: in bounds and page aligned (the mapping starts on a page);
        // the caller owns the bytes and they are zero, and both advices make
        // the pages read as zero, so no observer sees a change.
        unsafe {
            self.map
                .unchecked_advise_range(advice, start, end - start)?
        };
        Ok(end - start)
    }
}

/// The system's page size, asked once.
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size)
            .ok()
            .filter(|s| s.is_power_of_two())
            .unwrap_or(4096)
    })
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn anonymous_region_starts_zeroed() {
        let region = Region::anonymous(256).unwrap();
        assert_eq!(region.len(), 256);
        assert!(!region.is_empty());
        assert_eq!(region.window(0, 256), &[0u8; 256][..]);
    }

    #[test]
    fn integers_are_little_endian_in_memory() {
        let region = Region::anonymous(64).unwrap();
        region.store_i32(4, 0x0102_0304, Ordering::Release);
        region.store_i64(8, -2, Ordering::Release);
        assert_eq!(region.window(4, 4), &[4, 3, 2, 1]);
        assert_eq!(
            region.window(8, 8),
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(region.load_i32(4, Ordering::Acquire), 0x0102_0304);
        assert_eq!(region.load_i64(8, Ordering::Acquire), -2);
    }

    #[test]
    fn compare_exchange_and_fetch_add() {
        let region = Region::anonymous(64).unwrap();
        assert_eq!(region.compare_exchange_i64(16, 0, 5), Ok(0));
        assert_eq!(region.compare_exchange_i64(16, 0, 7), Err(5));
        assert_eq!(region.fetch_add_i64(16, 3), 5);
        assert_eq!(region.load_i64(16, Ordering::Relaxed), 8);
    }

    #[test]
    fn words_round_trip_and_zero_fill() {
        let region = Region::anonymous(64).unwrap();
        region.window_mut(0, 24).fill(0xaa);
        region.store_words(0, b"hello, world");
        let mut out = [0u8; 12];
        region.load_words(0, &mut out);
        assert_eq!(&out, b"hello, world");
        // The last word is zero-filled; the word after it is untouched.
        assert_eq!(region.window(12, 4), &[0, 0, 0, 0]);
        assert_eq!(region.window(16, 8), &[0xaa; 8]);
    }

    #[test]
    fn windows_and_zero() {
        let region = Region::anonymous(32).unwrap();
        region.window_mut(3, 3).copy_from_slice(b"abc");
        assert_eq!(region.window(3, 3), b"abc");
        region.window_mut(3, 1)[0] = b'x';
        assert_eq!(region.window(3, 3), b"xbc");
        region.zero(0, 32);
        assert_eq!(region.window(0, 32), &[0u8; 32][..]);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_panics() {
        Region::anonymous(16)
            .unwrap()
            .load_i64(16, Ordering::Relaxed);
    }

    #[test]
    #[should_panic(expected = "not aligned")]
    fn misaligned_panics() {
        Region::anonymous(16)
            .unwrap()
            .load_i64(4, Ordering::Relaxed);
    }

    #[test]
    fn file_regions_share_memory_between_mappings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region");
        let a = Region::create(&path, 4096).unwrap();
        let b = Region::open(&path).unwrap();
        assert_eq!(b.len(), 4096);
        a.store_i64(128, 42, Ordering::Release);
        assert_eq!(b.load_i64(128, Ordering::Acquire), 42);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
    }

    #[test]
    fn open_rejects_missing_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Region::open(&dir.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let err = Region::open(&empty).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            Region::anonymous(0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn region_is_shared_across_threads() {
        let region = Arc::new(Region::anonymous(64).unwrap());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let region = Arc::clone(&region);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        region.fetch_add_i64(0, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(region.load_i64(0, Ordering::Acquire), 2000);
    }
}
