//! Shared-memory streams: memory-mapped regions, rings, the broadcast buffer,
//! counters, and the two file kinds built from them.
//!
//! Pure (no tokio, no sockets). The only `unsafe` code of the crate lives in
//! [`region`]; the binary layouts are described once in [`descriptor`].
//!
//! - [`Region`]: a mapped file with checked atomic accessors.
//! - [`Ring`]: records from one or many writers to one reader; `try_claim`
//!   and `write` return [`RingFull`] instead of waiting.
//! - [`BroadcastTransmitter`] / [`BroadcastReceiver`]: one writer, many
//!   readers; slow readers are lapped and resynchronise.
//! - [`CountersManager`] / [`Counter`] / [`CountersReader`]: labelled values
//!   for the monitor.
//! - [`StreamsFile`], [`ControlFile`], [`ControlClient`]: the files of the
//!   nukleus data path (`<run>/<nukleus>/streams/<source>`, `<run>/<nukleus>/control`).

pub mod broadcast;
pub mod counters;
pub mod descriptor;
pub mod files;
pub mod region;
pub mod ring;

pub use broadcast::{BroadcastError, BroadcastReceiver, BroadcastTransmitter};
pub use counters::{Counter, CountersFull, CountersManager, CountersReader};
pub use descriptor::LayoutError;
pub use files::{ControlClient, ControlFile, ControlLayout, StreamsFile};
pub use region::Region;
pub use ring::{Claim, Ring, RingFull, Writers};
