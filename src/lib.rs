//! webrocket: a WebRocket-compatible clustered real-time message broker.
//!
//! # Layout
//!
//! Each module names its dependency rule; pure modules import no tokio and no
//! sockets.
//!
//! - [`stream`]: memory-mapped regions, rings, broadcast buffer, counters
//!   (pure; the only `unsafe` code lives in `stream::region`).
//! - [`nukleus`]: frames, control commands, the agent runner, and the tcp, ws,
//!   echo and monorail (MonoRail resources) nuklei (I/O only in
//!   `nukleus::tcp`).
//! - [`name`], [`limits`]: validated identifiers and every bound (pure).
//! - [`config`]: the configuration tree, loading and validation (pure).
//! - [`storage`]: durable vhosts, users and channels, and the files of
//!   durable channel histories (file I/O only).
//! - [`protocol`]: the client JSON protocol and its error table (pure).
//! - [`broker`]: the webrocket nukleus: vhosts, channels, sessions (pure state
//!   machine driven by frames).
//! - [`guard`]: the frame-size guard in front of the ZeroMQ ports (tokio;
//!   its framing check is pure).
//! - [`node`]: the running node as narrow capabilities (the broker's inbox,
//!   the data path's bindings, the durable state and the one way it
//!   changes, the [`node::Consensus`] trait). Imports only the layers above
//!   in this list.
//! - [`exchange`]: the ZeroMQ backend exchange (imports `node`).
//! - [`cluster`]: membership, links between nodes, raft (imports `node`,
//!   `exchange`'s worker directory).
//! - [`admin`]: the admin HTTP API (imports `node`, `cluster`, `exchange`).
//! - [`server`]: the composition root that builds and wires everything and
//!   owns the ordered shutdown; nothing imports it.
//!
//! Arrows point down this list only: no module imports one listed after
//! it (`broker` knows the cluster, the backend and storage as traits that
//! `node` and `cluster` implement).
#![deny(unsafe_code)]

pub mod admin;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod exchange;
pub mod guard;
pub mod limits;
pub mod name;
pub mod node;
pub mod nukleus;
pub mod protocol;
pub mod server;
pub mod storage;
pub mod stream;
