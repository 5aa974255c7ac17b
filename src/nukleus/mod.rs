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
pub mod metrics;
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
