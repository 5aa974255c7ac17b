//! The running node as the parts above the data path see it: small
//! capabilities built by [`crate::server`] and handed to the backend
//! exchange, the cluster and the admin API, none of which imports
//! `server` (nor each other's internals).
//!
//! ```text
//!   server (composition root)
//!     |  builds and hands out
//!     v
//!   admin ----> cluster ----> exchange
//!     \            |             /
//!      `-----> node (this) <----'
//!               |  Inbox      queue work for the broker thread's nuklei
//!               |  DataPath   vhost and resource bindings on the ws
//!               |             nukleus, the tcp BIND
//!               |  Feeds      AMQP consumers of `amqp` resources
//!               |  Changes    the durable state and the one way it changes
//!               |  Consensus  the replicated log (the cluster implements it)
//!               v
//!   nukleus, broker, storage, config, limits, name
//! ```
//!
//! Dependency rule: `node` imports only the layers below it. What a lower
//! layer needs from a higher one is a trait defined here or below
//! ([`Consensus`], [`crate::broker::Persist`], [`crate::broker::Backend`],
//! [`crate::nukleus::webrocket::ClusterLink`]); `server` plugs the
//! implementations in.

mod changes;
mod consensus;
mod data_path;
mod feeds;
mod inbox;

pub use changes::{ChangeError, Changes, LimitError};
pub use consensus::{Consensus, ConsensusError};
pub use data_path::DataPath;
pub use feeds::Feeds;
pub use inbox::{Holding, Inbox, Peers};

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking over a poisoned one (a panicking holder left the
/// value consistent: every critical section here is one assignment or one
/// commit).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
