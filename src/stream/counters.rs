//! Counters in a shared region, for the monitor (Agrona's `CountersManager`
//! and `CountersReader`, simplified).
//!
//! Layout: `descriptor::counters`. Counter `id` has a 128-byte metadata record
//! (state, type id, label) and a 128-byte value slot, so a busy counter does
//! not share a cache line with anything. The manager rewrites a record under
//! a version number (odd while writing) so a reader in another process never
//! reports a half-written label, even when an id is freed and reused.

use std::fmt;
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex, PoisonError};

use thiserror::Error;

use super::descriptor::{check_bounds, counters as layout, LayoutError};
use super::region::Region;

/// Every counter id is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("all {capacity} counters are in use")]
pub struct CountersFull {
    /// How many counters the region holds.
    pub capacity: usize,
}

/// Where the two areas are.
#[derive(Clone)]
struct Areas {
    region: Arc<Region>,
    metadata: usize,
    values: usize,
    capacity: usize,
}

impl Areas {
    fn new(
        region: Arc<Region>,
        metadata: usize,
        values: usize,
        capacity: usize,
    ) -> Result<Areas, LayoutError> {
        check_bounds(metadata, capacity * layout::METADATA_LENGTH, region.len())?;
        check_bounds(values, capacity * layout::VALUE_LENGTH, region.len())?;
        Ok(Areas {
            region,
            metadata,
            values,
            capacity,
        })
    }

    fn meta(&self, id: usize) -> usize {
        self.metadata + id * layout::METADATA_LENGTH
    }

    fn value(&self, id: usize) -> usize {
        self.values + id * layout::VALUE_LENGTH + layout::VALUE
    }
}

/// Which ids are free; only the manager's process knows.
#[derive(Default)]
struct Ids {
    /// Ids below this have been allocated at some point.
    high_water: usize,
    /// Freed ids, reused before new ones.
    free: Vec<usize>,
}

/// The owning side: allocates and frees counters. Shareable (`&self`).
pub struct CountersManager {
    areas: Areas,
    ids: Mutex<Ids>,
}

impl CountersManager {
    /// A manager for `capacity` counters whose metadata starts at `metadata`
    /// and values at `values` in `region`. Picks up records already there.
    pub fn new(
        region: Arc<Region>,
        metadata: usize,
        values: usize,
        capacity: usize,
    ) -> Result<CountersManager, LayoutError> {
        let areas = Areas::new(region, metadata, values, capacity)?;
        let mut ids = Ids::default();
        while ids.high_water < capacity {
            let state = areas.region.load_i32(areas.meta(ids.high_water), Acquire);
            match state {
                layout::UNUSED => break,
                layout::RECLAIMED => ids.free.push(ids.high_water),
                _ => {}
            }
            ids.high_water += 1;
        }
        Ok(CountersManager {
            areas,
            ids: Mutex::new(ids),
        })
    }

    /// How many counters the region holds.
    pub fn capacity(&self) -> usize {
        self.areas.capacity
    }

    /// A reader over the same region.
    pub fn reader(&self) -> CountersReader {
        CountersReader {
            areas: self.areas.clone(),
        }
    }

    /// Allocates a counter with type id 0; see [`allocate_typed`](Self::allocate_typed).
    pub fn allocate(&self, label: &str) -> Result<Counter, CountersFull> {
        self.allocate_typed(0, label)
    }

    /// Allocates a counter starting at 0. Labels longer than
    /// `descriptor::counters::MAX_LABEL` bytes are truncated at a character
    /// boundary.
    pub fn allocate_typed(&self, type_id: i32, label: &str) -> Result<Counter, CountersFull> {
        let id = {
            let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
            match ids.free.pop() {
                Some(id) => id,
                None if ids.high_water < self.areas.capacity => {
                    ids.high_water += 1;
                    ids.high_water - 1
                }
                None => {
                    return Err(CountersFull {
                        capacity: self.areas.capacity,
                    })
                }
            }
        };
        let label = truncate(label, layout::MAX_LABEL);
        let region = &self.areas.region;
        let meta = self.areas.meta(id);
        let version = region.load_i32(meta + layout::VERSION, Relaxed);
        region.store_i32(meta + layout::VERSION, version.wrapping_add(1), Relaxed);
        fence(Release); // the odd version is visible before any new byte
        region.store_i32(meta + layout::TYPE, type_id, Relaxed);
        region.store_i32(meta + layout::LABEL_LENGTH, label.len() as i32, Relaxed);
        region.store_words(meta + layout::LABEL, label.as_bytes());
        region.store_i64(self.areas.value(id), 0, Relaxed);
        region.store_i32(meta + layout::STATE, layout::ALLOCATED, Release);
        region.store_i32(meta + layout::VERSION, version.wrapping_add(2), Release);
        Ok(Counter {
            region: Arc::clone(region),
            value: self.areas.value(id),
            id: id as i32,
        })
    }

    /// Frees a counter; its id may be handed out again.
    pub fn free(&self, counter: Counter) {
        let Ok(id) = usize::try_from(counter.id) else {
            return;
        };
        let meta = self.areas.meta(id);
        let region = &self.areas.region;
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        // A counter of another manager (or a double free) must not poison
        // the free list.
        let ours = Arc::ptr_eq(&counter.region, region) && counter.value == self.areas.value(id);
        if ours && region.load_i32(meta + layout::STATE, Acquire) == layout::ALLOCATED {
            region.store_i32(meta + layout::STATE, layout::RECLAIMED, Release);
            ids.free.push(id);
        }
    }
}

impl fmt::Debug for CountersManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountersManager")
            .field("capacity", &self.areas.capacity)
            .finish()
    }
}

/// Longest prefix of `label` of at most `max` bytes ending on a character.
fn truncate(label: &str, max: usize) -> &str {
    let mut end = label.len().min(max);
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

/// One counter's value slot. Single writer: updates are release stores, not
/// read-modify-write, so two threads updating one counter lose counts.
pub struct Counter {
    region: Arc<Region>,
    value: usize,
    id: i32,
}

impl Counter {
    /// The counter's id (its index in the region).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Adds one.
    pub fn increment(&self) {
        self.add(1);
    }

    /// Adds `delta` (may be negative).
    pub fn add(&self, delta: i64) {
        let value = self.region.load_i64(self.value, Relaxed);
        self.set(value.wrapping_add(delta));
    }

    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.region.store_i64(self.value, value, Release);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.region.load_i64(self.value, Acquire)
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counter")
            .field("id", &self.id)
            .field("value", &self.get())
            .finish()
    }
}

/// A read-only view of the counters, usable from any process that mapped
/// the file.
#[derive(Clone)]
pub struct CountersReader {
    areas: Areas,
}

impl CountersReader {
    /// A reader for `capacity` counters laid out as for [`CountersManager::new`].
    pub fn new(
        region: Arc<Region>,
        metadata: usize,
        values: usize,
        capacity: usize,
    ) -> Result<CountersReader, LayoutError> {
        Ok(CountersReader {
            areas: Areas::new(region, metadata, values, capacity)?,
        })
    }

    /// How many counters the region holds.
    pub fn capacity(&self) -> usize {
        self.areas.capacity
    }

    /// Calls `f(id, label, value)` for every allocated counter, in id order.
    /// A record being rewritten at that moment is skipped.
    pub fn for_each(&self, mut f: impl FnMut(i32, &str, i64)) {
        let mut label = [0u8; layout::MAX_LABEL];
        for id in 0..self.areas.capacity {
            match self.read(id, &mut label) {
                Slot::Unused => break,
                Slot::Skip => {}
                Slot::Allocated(len, value) => {
                    let text = String::from_utf8_lossy(&label[..len]);
                    f(id as i32, &text, value);
                }
            }
        }
    }

    /// The value of counter `id`, if it is allocated.
    pub fn value(&self, id: i32) -> Option<i64> {
        let id = usize::try_from(id)
            .ok()
            .filter(|&id| id < self.areas.capacity)?;
        let state = self
            .areas
            .region
            .load_i32(self.areas.meta(id) + layout::STATE, Acquire);
        (state == layout::ALLOCATED)
            .then(|| self.areas.region.load_i64(self.areas.value(id), Acquire))
    }

    /// Copies record `id` under its version: a seqlock read.
    fn read(&self, id: usize, label: &mut [u8; layout::MAX_LABEL]) -> Slot {
        let region = &self.areas.region;
        let meta = self.areas.meta(id);
        let version = region.load_i32(meta + layout::VERSION, Acquire);
        let state = region.load_i32(meta + layout::STATE, Acquire);
        if state == layout::UNUSED && version == 0 {
            return Slot::Unused;
        }
        if state != layout::ALLOCATED || version % 2 != 0 {
            return Slot::Skip;
        }
        let len = region.load_i32(meta + layout::LABEL_LENGTH, Relaxed);
        let len = usize::try_from(len).unwrap_or(0).min(layout::MAX_LABEL);
        region.load_words(meta + layout::LABEL, &mut label[..len]);
        let value = region.load_i64(self.areas.value(id), Acquire);
        fence(Acquire); // pairs with the manager's release fence
        if region.load_i32(meta + layout::VERSION, Relaxed) != version {
            return Slot::Skip;
        }
        Slot::Allocated(len, value)
    }
}

impl fmt::Debug for CountersReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountersReader")
            .field("capacity", &self.areas.capacity)
            .finish()
    }
}

enum Slot {
    /// Never allocated: no later id is either.
    Unused,
    /// Free, or being rewritten.
    Skip,
    /// Label length and value.
    Allocated(usize, i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manager(capacity: usize) -> (Arc<Region>, CountersManager) {
        let len = capacity * 256;
        let region = Arc::new(Region::anonymous(len).unwrap());
        let manager = CountersManager::new(Arc::clone(&region), 0, len / 2, capacity).unwrap();
        (region, manager)
    }

    fn all(reader: &CountersReader) -> Vec<(i32, String, i64)> {
        let mut out = Vec::new();
        reader.for_each(|id, label, value| out.push((id, label.to_string(), value)));
        out
    }

    #[test]
    fn labels_and_values_are_visible_to_readers() {
        let (region, manager) = manager(8);
        let a = manager.allocate("sessions").unwrap();
        let b = manager.allocate_typed(3, "frames in").unwrap();
        a.increment();
        a.increment();
        b.add(40);
        b.add(2);
        assert_eq!((a.get(), b.get()), (2, 42));
        let reader = CountersReader::new(region, 0, 8 * 128, 8).unwrap();
        assert_eq!(
            all(&reader),
            vec![(0, "sessions".into(), 2), (1, "frames in".into(), 42)]
        );
        b.set(-5);
        assert_eq!(reader.value(1), Some(-5));
        assert_eq!(reader.value(2), None);
        assert_eq!(reader.value(-1), None);
        assert_eq!(reader.capacity(), 8);
    }

    #[test]
    fn metadata_and_value_bytes() {
        let (region, manager) = manager(4);
        let counter = manager.allocate_typed(7, "abc").unwrap();
        counter.set(0x0102);
        let meta = region.window(0, 24);
        assert_eq!(
            &meta[..16],
            &[1, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(&meta[16..24], &[b'a', b'b', b'c', 0, 0, 0, 0, 0]);
        assert_eq!(region.window(4 * 128, 8), &0x0102i64.to_le_bytes());
    }

    #[test]
    fn freed_ids_are_reused_and_hidden_meanwhile() {
        let (_, manager) = manager(2);
        let a = manager.allocate("a").unwrap();
        let b = manager.allocate("b").unwrap();
        assert_eq!(
            manager.allocate("c").unwrap_err(),
            CountersFull { capacity: 2 }
        );
        b.set(9);
        manager.free(a);
        let reader = manager.reader();
        assert_eq!(all(&reader), vec![(1, "b".into(), 9)]);
        let c = manager.allocate("c").unwrap();
        assert_eq!(c.id(), 0);
        assert_eq!(c.get(), 0, "a reused slot starts at zero");
        assert_eq!(all(&reader), vec![(0, "c".into(), 0), (1, "b".into(), 9)]);
    }

    #[test]
    fn long_labels_are_truncated_on_a_character() {
        let (_, manager) = manager(2);
        let long = "é".repeat(100); // 200 bytes
        manager.allocate(&long).unwrap();
        let labels: Vec<String> = all(&manager.reader()).into_iter().map(|c| c.1).collect();
        assert_eq!(labels, vec!["é".repeat(56)]);
        assert_eq!(truncate("abc", 2), "ab");
    }

    #[test]
    fn a_new_manager_picks_up_existing_records() {
        let (region, manager) = manager(4);
        let a = manager.allocate("a").unwrap();
        manager.allocate("b").unwrap();
        manager.free(a);
        let again = CountersManager::new(region, 0, 512, 4).unwrap();
        assert_eq!(again.allocate("c").unwrap().id(), 0);
        assert_eq!(again.allocate("d").unwrap().id(), 2);
    }

    #[test]
    fn foreign_counters_are_not_freed() {
        let (_, one) = manager(2);
        let (_, two) = manager(2);
        let foreign = two.allocate("x").unwrap();
        one.allocate("y").unwrap();
        one.free(foreign);
        assert_eq!(one.allocate("z").unwrap().id(), 1);
        assert!(one.allocate("w").is_err());
    }

    #[test]
    fn bad_layout_is_rejected() {
        let region = Arc::new(Region::anonymous(1024).unwrap());
        assert!(CountersManager::new(Arc::clone(&region), 0, 512, 5).is_err());
        assert!(CountersReader::new(region, 512, 0, 4).is_ok());
    }
}
