//! The broker's side of the cluster: a hook that decides where a broadcast
//! is ordered, and hears when this node gains or loses interest in a
//! channel. The broker stays pure: the hook is a trait the glue implements
//! (`crate::cluster::BrokerLink`).
//!
//! Interest is reported on transitions only: a channel's local subscriber
//! count going 0 -> 1 (`subscribed = true`) or 1 -> 0 (`false`), whatever
//! caused it (subscribe, unsubscribe, logout, close, channel or vhost
//! deletion).

use std::fmt;

use crate::name::{ChannelName, VhostPath};

use super::io::Outlet;
use super::Broker;

/// Where a broadcast goes, as the hook decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This node orders the broadcast: deliver it to local subscribers now.
    /// The hook has already queued it for the other nodes with interest.
    Local,
    /// Another node orders it (the hook sent it there), or it was dropped;
    /// deliver nothing here now.
    Remote,
}

/// What the broker asks of the cluster. Called on the broker thread; must
/// not block.
pub trait ClusterHook: Send {
    /// Decides who orders a broadcast of `delivery` (the encoded client
    /// message) on `channel`. `hops` counts how many nodes it crossed
    /// already (0 for one that starts here).
    fn route(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        delivery: &[u8],
        hops: u8,
    ) -> Route;

    /// The local subscriber count of `channel` went 0 -> 1 (`true`) or
    /// 1 -> 0 (`false`).
    fn interest(&mut self, vhost: &VhostPath, channel: &ChannelName, subscribed: bool);
}

/// The hook slot, so [`Broker`] can stay `Debug`.
#[derive(Default)]
pub(crate) struct HookSlot(pub Option<Box<dyn ClusterHook>>);

impl fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "HookSlot(set)"
        } else {
            "HookSlot(none)"
        })
    }
}

impl HookSlot {
    /// Reports a transition if there is a hook.
    pub fn interest(&mut self, vhost: &VhostPath, channel: &ChannelName, subscribed: bool) {
        if let Some(hook) = self.0.as_mut() {
            hook.interest(vhost, channel, subscribed);
        }
    }
}

impl Broker {
    /// Joins a cluster: from now on broadcasts are routed through `hook`,
    /// which first hears about every channel that has local subscribers.
    pub fn set_cluster(&mut self, mut hook: Box<dyn ClusterHook>) {
        for (path, vhost) in &self.vhosts {
            for (name, channel) in &vhost.channels {
                if channel.len() > 0 {
                    hook.interest(path, name, true);
                }
            }
        }
        self.cluster.0 = Some(hook);
    }

    /// Delivers a broadcast another node ordered to the local subscribers
    /// of `channel`, without routing it again. Returns how many took it.
    pub fn deliver_remote(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        delivery: &[u8],
        outlet: &mut dyn Outlet,
    ) -> u64 {
        self.buf.clear();
        self.buf.extend_from_slice(delivery);
        let delivered = self.fan_out_here(vhost, channel, outlet);
        self.reap(outlet);
        delivered
    }

    /// A broadcast another node sent here to be ordered: routes it again
    /// (with `hops`) and delivers it locally if this node orders it.
    pub fn sequence_remote(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        delivery: &[u8],
        hops: u8,
        outlet: &mut dyn Outlet,
    ) -> u64 {
        if let Some(hook) = self.cluster.0.as_mut() {
            if hook.route(vhost, channel, delivery, hops) == Route::Remote {
                return 0;
            }
        }
        self.deliver_remote(vhost, channel, delivery, outlet)
    }

    /// Asks the hook where the broadcast in `self.buf` is ordered; `true`
    /// when it is delivered here now.
    pub(super) fn route_here(&mut self, vhost: &VhostPath, channel: &ChannelName) -> bool {
        match self.cluster.0.as_mut() {
            Some(hook) => hook.route(vhost, channel, &self.buf, 0) == Route::Local,
            None => true,
        }
    }
}
