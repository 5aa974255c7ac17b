//! The nukleus data path: frames over rings in memory-mapped files, control
//! commands, the agent runner, and the tcp, ws and echo nuklei.
//!
//! Dependency rule: `frame`, `command` and `ws`'s protocol engine are pure;
//! only `tcp` touches sockets; everything talks to its neighbours through
//! [`plumbing`] (streams files) and nothing else.

pub mod command;
pub mod control;
pub mod echo;
pub mod frame;
pub mod plumbing;
pub mod runner;
pub mod slab;
pub mod tcp;
pub mod tls;
pub mod webrocket;
pub mod ws;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by stream ids or refs; they are unique sequential integers, so
/// hashing them is wasted work.
pub type IdMap<V> = HashMap<i64, V, BuildHasherDefault<IdHasher>>;

/// Identity hasher for [`IdMap`].
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = n as u64;
    }
}

/// Frames copied out of a ring so that handling them may write to other
/// rings of the same nukleus. Reused: no allocation in steady state.
#[derive(Debug, Default)]
pub struct FrameBatch {
    data: Vec<u8>,
    index: Vec<(i32, usize, usize)>,
}

impl FrameBatch {
    /// Appends a frame.
    pub fn push(&mut self, type_id: i32, body: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(body);
        self.index.push((type_id, start, self.data.len()));
    }

    /// The frames in order.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &[u8])> {
        self.index
            .iter()
            .map(|&(type_id, start, end)| (type_id, &self.data[start..end]))
    }

    /// Empties the batch, keeping its buffers (but not huge ones).
    pub fn clear(&mut self) {
        self.index.clear();
        if self.data.capacity() > 4 << 20 {
            self.data = Vec::new();
        } else {
            self.data.clear();
        }
    }

    /// True when the batch holds no frames.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}
