//! Work the broker hands to the glue to finish off its thread: secret
//! checks (`auth`) and, on a cluster, the channel changes the broker makes
//! itself, which are acknowledged only once the cluster has confirmed them.
//!
//! On a single node the broker commits a channel it creates (auto-created
//! on `subscribe`, `OC`) or closes (`CC`) to local storage and answers at
//! once. On a cluster ([`crate::broker::Persist::replicated`]) the change
//! must be committed by a majority first, which takes network round trips
//! the broker thread must not wait for:
//!
//! - `subscribe` to a channel it would create returns
//!   [`Outcome::Replicate`]; the session's later messages are held (as
//!   during a secret check) until the glue reports the cluster's answer
//!   with [`Broker::finish_replicate`]. The channel itself reaches the
//!   broker like any committed change (`apply_change`), before that answer.
//! - `OC` / `CC` return [`ChannelOp::Replicate`]; the glue answers the
//!   backend when the cluster has confirmed, and the committed change does
//!   the work (on every node).

use std::collections::VecDeque;

use crate::name::{ChannelName, Permissions, SessionId};
use crate::protocol::{ClientError, ErrorId, Position};
use crate::storage::Change;

use super::auth::SecretCheck;
use super::io::Io;
use super::session::{Hold, SessionKey};
use super::Broker;

/// What the glue must do after handing the broker a message.
#[derive(Debug)]
#[must_use = "a pending outcome must be completed (finish_authenticate, finish_replicate)"]
pub enum Outcome {
    /// Nothing more.
    Done,
    /// Run [`SecretCheck::verify`] off the broker thread, then call
    /// [`Broker::finish_authenticate`] with the check and its result.
    CheckSecret(SecretCheck),
    /// Have the cluster commit [`PendingChange::change`], then call
    /// [`Broker::finish_replicate`] with the answer.
    Replicate(PendingChange),
}

/// A channel a session's `subscribe` creates, waiting for the cluster.
#[derive(Debug)]
pub struct PendingChange {
    key: SessionKey,
    sid: SessionId,
    channel: ChannelName,
    since: Option<Position>,
    change: Change,
}

impl PendingChange {
    /// The change to commit.
    pub fn change(&self) -> &Change {
        &self.change
    }

    /// The session waiting for it.
    pub fn key(&self) -> SessionKey {
        self.key
    }
}

/// What a backend's `OC` / `CC` needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum ChannelOp {
    /// Done here (or nothing to do): answer `OK`.
    Done,
    /// Answer `OK` once the cluster has committed this change (`597` if it
    /// cannot); the committed change does the work.
    Replicate(Change),
}

impl Broker {
    /// Holds `key`'s later messages until the cluster has confirmed
    /// `change`, which creates `channel` for its `subscribe`.
    pub(super) fn hold_for(
        &mut self,
        key: SessionKey,
        channel: &ChannelName,
        since: Option<Position>,
        change: Change,
    ) -> Outcome {
        let Some(session) = self.sessions.get_mut(&key) else {
            return Outcome::Done;
        };
        session.hold = Hold::held();
        Outcome::Replicate(PendingChange {
            key,
            sid: session.sid.clone(),
            channel: channel.clone(),
            since,
            change,
        })
    }

    /// Second phase of a `subscribe` that creates a channel on a cluster:
    /// `confirmed` is the cluster's answer (`Err`: why the change was not
    /// committed). The channel has reached the broker through
    /// [`Broker::apply_change`] by now if it was committed; the session is
    /// subscribed, or told `INTERNAL_ERROR`, and its held messages are
    /// handled. Returns the outcome of the first held message that needs
    /// more work off the thread (the rest stay held).
    ///
    /// A pending change for a session that has closed since is ignored.
    pub fn finish_replicate(
        &mut self,
        pending: PendingChange,
        confirmed: Result<(), ConsensusError>,
        io: &mut Io<'_>,
    ) -> Outcome {
        let Some(held) = self.release(pending.key, &pending.sid) else {
            return Outcome::Done;
        };
        let key = pending.key;
        let result = match confirmed {
            Ok(()) => self.subscribe_existing(key, &pending.channel, pending.since, io.outlet),
            Err(why) => {
                tracing::warn!(channel = %pending.channel, %why, "a channel was not created");
                Err(ClientError::new(ErrorId::InternalError)
                    .with_event("subscribe")
                    .with_channel(pending.channel.as_str())
                    .with_message("the cluster did not confirm the new channel"))
            }
        };
        if let Err(error) = result {
            self.send_error(key, &error, io.outlet);
        }
        let outcome = self.resume(key, held, io);
        self.reap(io.outlet);
        outcome
    }

    /// Ends the hold of session `key` (if it is still the session `sid`
    /// and held) and returns the messages held meanwhile.
    pub(super) fn release(
        &mut self,
        key: SessionKey,
        sid: &SessionId,
    ) -> Option<VecDeque<Box<[u8]>>> {
        let session = self.sessions.get_mut(&key)?;
        if &session.sid != sid {
            return None;
        }
        match std::mem::take(&mut session.hold) {
            Hold::Held(hold) => Some(hold.held),
            Hold::Ready => None,
        }
    }

    /// Handles `held` in order until one of them needs work off the thread
    /// again; what is left stays held for the next round.
    pub(super) fn resume(
        &mut self,
        key: SessionKey,
        mut held: VecDeque<Box<[u8]>>,
        io: &mut Io<'_>,
    ) -> Outcome {
        while let Some(message) = held.pop_front() {
            if !self.sessions.contains_key(&key) {
                break;
            }
            let outcome = self.handle(key, &message, io);
            if matches!(outcome, Outcome::Done) {
                continue;
            }
            if let Some(Hold::Held(hold)) = self.sessions.get_mut(&key).map(|s| &mut s.hold) {
                hold.held_bytes = held.iter().map(|m| m.len()).sum();
                hold.held = held;
            }
            return outcome;
        }
        Outcome::Done
    }

    /// Subscribes `key` to `name`, which must exist by now (the cluster
    /// created it): `CHANNEL_NOT_FOUND` if it was deleted again meanwhile.
    fn subscribe_existing(
        &mut self,
        key: SessionKey,
        name: &ChannelName,
        since: Option<Position>,
        outlet: &mut dyn super::Outlet,
    ) -> Result<(), ClientError> {
        self.require(key, Permissions::READ, "subscribe", Some(name))?;
        let Some(session) = self.sessions.get(&key) else {
            return Ok(());
        };
        let vhost = session.vhost.clone();
        let exists = self
            .vhosts
            .get(&vhost)
            .is_some_and(|v| v.channels.contains_key(name));
        if !exists {
            return Err(ClientError::new(ErrorId::ChannelNotFound)
                .with_event("subscribe")
                .with_channel(name.as_str()));
        }
        self.join(key, &vhost, name, since, outlet)
    }
}

/// Why the cluster did not confirm a change (no leader with a majority in
/// time, or this node has not joined yet). The change may still be
/// committed later, or never. Defined here, below the cluster, because the
/// broker hears it for the channels it creates; the cluster's own reasons
/// (`cluster::raft::ProposeError`) are carried as their message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// No leader with a majority confirmed it in time.
    #[error("{0}")]
    NotConfirmed(String),
    /// This node's replicated log cannot be written (a full disk): it
    /// refuses changes until it can again.
    #[error("{0}")]
    Storage(String),
}
