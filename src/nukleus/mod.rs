//! The nukleus data path: frames over rings in memory-mapped files, control
//! commands, the agent runner, and the tcp, tls, ws, webrocket and echo
//! nuklei.
//!
//! - [`frame`]: the stream frames (BEGIN, DATA, END, RESET, WINDOW) and
//!   stream ids; [`command`]: the control commands and responses (layouts
//!   and byte tests; pure).
//! - [`control`]: a client of another nukleus's control file (what the
//!   server and tools use to CAPTURE, ROUTE, BIND...).
//! - [`plumbing`]: a nukleus's own control file, the streams files it
//!   captured and routed, and the ring-draining loop they share.
//! - [`runner`]: agents, thread groups, the signals that wake them.
//! - [`metrics`]: counters a nukleus publishes; [`slab`]: the slot
//!   allocator for per-connection state.
//! - [`tcp`]: sockets (the only sockets of the data path); [`tls`]: rustls
//!   between tcp and ws; [`ws`]: the WebSocket protocol engine (pure) and
//!   its nukleus; [`webrocket`]: the broker's nukleus; [`echo`]: an echo
//!   handler for conformance runs.
//!
//! Dependency rule: `frame`, `command` and `ws`'s protocol engine are pure;
//! only `tcp` touches sockets; everything talks to its neighbours through
//! [`plumbing`] (streams files) and nothing else. The nuklei import the
//! layers below them only (`broker`, `protocol`, `stream`, `name`,
//! `limits`); what they need from above is a trait
//! ([`webrocket::ClusterLink`], [`crate::broker::Persist`]).

pub mod command;
pub mod control;
pub mod echo;
pub mod frame;
pub mod metrics;
pub mod monorail;
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

/// A map keyed by (streams file index, stream id), hashed the same cheap way.
pub type StreamMap<V> = HashMap<(usize, frame::StreamId), V, BuildHasherDefault<IdHasher>>;

/// Frames a nukleus handles from one ring per round: large enough that a
/// round sees several frames for the same connection (so they leave in one
/// write) even when one broadcast is tens of thousands of frames, which
/// means about a whole ring (a 16 MiB ring holds ~170 Ki small frames);
/// bounded so that other rings are not starved. At 16 Ki a broadcast to
/// 10,000 subscribers left in one or two messages per write, and fan-out
/// fell to a sixth of what it was at 1,000 subscribers.
pub const ROUND_FRAMES: usize = 256 * 1024;

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
        self.0 = self.0.rotate_left(29) ^ n as u64;
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(29) ^ n as u64;
    }
}
