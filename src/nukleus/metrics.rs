//! Named counters a nukleus keeps in the counters region of its control
//! file, where the monitor reads them without costing the nukleus anything
//! but a store.

use crate::stream::{Counter, CountersManager};

/// A counter that is simply absent when the region is full (the nukleus
/// works the same; the monitor shows less).
pub struct Metric(Option<Counter>);

impl Metric {
    /// Allocates `label` in `manager`.
    pub fn new(manager: &CountersManager, label: &str) -> Self {
        match manager.allocate(label) {
            Ok(counter) => Metric(Some(counter)),
            Err(error) => {
                tracing::warn!(%error, %label, "no room for counter");
                Metric(None)
            }
        }
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        if let Some(counter) = &self.0 {
            counter.add(n as i64);
        }
    }

    /// Sets a gauge.
    pub fn set(&self, value: u64) {
        if let Some(counter) = &self.0 {
            counter.set(value as i64);
        }
    }
}
