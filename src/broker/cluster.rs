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

use crate::name::{ChannelName, SessionId, UserName, VhostPath};
use crate::protocol::Position;

use super::io::Outlet;
use super::Broker;

/// Where a broadcast goes, as the hook decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// This node orders the broadcast: the broker numbers it (when the
    /// channel keeps a history), hands it to [`ClusterHook::deliver`] for
    /// the other nodes and delivers it to local subscribers.
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

    /// Sends a broadcast this node ordered to the other nodes: those with
    /// interest in `channel`, or every node that is up when it has a
    /// `position` (each node keeps the history of such channels, so a
    /// client recovers on any node).
    fn deliver(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        delivery: &[u8],
        position: Option<Position>,
    );

    /// A member of presence channel `channel` joined or left on this node.
    fn presence(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        sid: &SessionId,
        user: Option<&UserName>,
        joined: bool,
    );

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
    /// Reports a presence change if there is a hook.
    pub fn presence(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        sid: &SessionId,
        user: Option<&UserName>,
        joined: bool,
    ) {
        if let Some(hook) = self.0.as_mut() {
            hook.presence(vhost, channel, sid, user, joined);
        }
    }

    /// Hands a broadcast this node ordered to the hook, if there is one.
    pub fn deliver(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        delivery: &[u8],
        position: Option<Position>,
    ) {
        if let Some(hook) = self.0.as_mut() {
            hook.deliver(vhost, channel, delivery, position);
        }
    }

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
    /// of `channel`, without routing it again, and keeps it at `position`
    /// when the channel keeps a history. Returns how many took it.
    pub fn deliver_remote(
        &mut self,
        vhost: &VhostPath,
        channel: &ChannelName,
        delivery: &[u8],
        position: Option<Position>,
        outlet: &mut dyn Outlet,
    ) -> u64 {
        if let Some(position) = position {
            self.keep(vhost, channel, position, delivery);
        }
        self.buf.clear();
        self.buf.extend_from_slice(delivery);
        let delivered = self.fan_out_here(vhost, channel, outlet);
        self.reap(outlet);
        delivered
    }

    /// A broadcast another node sent here to be ordered: routes it again
    /// (with `hops`) and, if this node orders it, numbers it, sends it to
    /// the other nodes and delivers it locally.
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
        self.buf.clear();
        self.buf.extend_from_slice(delivery);
        let position = self.sequence(vhost, channel);
        self.cluster.deliver(vhost, channel, &self.buf, position);
        let delivered = self.fan_out_here(vhost, channel, outlet);
        self.reap(outlet);
        delivered
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::tests::{broadcast, channel, unsubscribe, vhost, World};
    use super::*;
    use crate::protocol::CloseReason;

    /// What the broker told the hook.
    #[derive(Default)]
    struct Log {
        interest: Vec<(String, bool)>,
        routed: Vec<(String, u8)>,
    }

    struct FakeHook {
        log: Arc<Mutex<Log>>,
        route: Route,
    }

    impl ClusterHook for FakeHook {
        fn route(&mut self, _: &VhostPath, channel: &ChannelName, _: &[u8], hops: u8) -> Route {
            self.log
                .lock()
                .unwrap()
                .routed
                .push((channel.to_string(), hops));
            self.route
        }

        fn deliver(&mut self, _: &VhostPath, _: &ChannelName, _: &[u8], _: Option<Position>) {}

        fn presence(
            &mut self,
            _: &VhostPath,
            _: &ChannelName,
            _: &SessionId,
            _: Option<&UserName>,
            _: bool,
        ) {
        }

        fn interest(&mut self, _: &VhostPath, channel: &ChannelName, subscribed: bool) {
            self.log
                .lock()
                .unwrap()
                .interest
                .push((channel.to_string(), subscribed));
        }
    }

    fn join(world: &mut World, route: Route) -> Arc<Mutex<Log>> {
        let log = Arc::new(Mutex::new(Log::default()));
        let hook = FakeHook {
            log: Arc::clone(&log),
            route,
        };
        world.broker.set_cluster(Box::new(hook));
        log
    }

    fn interest(log: &Arc<Mutex<Log>>) -> Vec<(String, bool)> {
        std::mem::take(&mut log.lock().unwrap().interest)
    }

    #[test]
    fn interest_is_reported_on_first_and_last_subscriber_only() {
        let mut w = World::new();
        let early = w.subscriber(1, "rw", &["news"]);
        // Joining replays what is already subscribed.
        let log = join(&mut w, Route::Local);
        assert_eq!(interest(&log), [("news".to_string(), true)]);
        let second = w.subscriber(2, "rw", &["news", "sport"]);
        assert_eq!(interest(&log), [("sport".to_string(), true)]);
        w.send(early, &unsubscribe("news"));
        assert!(interest(&log).is_empty(), "news still has a subscriber");
        // Closing the last subscriber drops both channels.
        w.broker.close_session(second, CloseReason::ClientClosed);
        let mut lost = interest(&log);
        lost.sort();
        assert_eq!(
            lost,
            [("news".to_string(), false), ("sport".to_string(), false)]
        );
        // Logout and channel deletion count too.
        let third = w.subscriber(3, "rw", &["news"]);
        w.send(third, r#"{"logout": true}"#);
        assert_eq!(
            interest(&log),
            [("news".to_string(), true), ("news".to_string(), false)]
        );
        w.subscriber(4, "rw", &["news"]);
        let (broker, mut io) = w.io();
        broker
            .close_channel(&vhost("/v"), &channel("news"), &mut io)
            .unwrap();
        assert_eq!(
            interest(&log),
            [("news".to_string(), true), ("news".to_string(), false)]
        );
    }

    #[test]
    fn a_broadcast_ordered_elsewhere_is_not_delivered_here_but_acknowledged() {
        let mut w = World::new();
        let sub = w.subscriber(1, "rw", &["news"]);
        let publisher = w.login(2, "rw");
        let log = join(&mut w, Route::Remote);
        w.send(publisher, &broadcast("e", "news", "1"));
        assert_eq!(w.take(publisher), [r#"{"broadcasted":"news"}"#]);
        assert!(w.take(sub).is_empty());
        assert_eq!(log.lock().unwrap().routed, [("news".to_string(), 0)]);
        // The sequenced copy comes back and is delivered without routing.
        let delivery = br#"{"e":{"channel":"news","data":1,"user":"rw"}}"#;
        let (broker, io) = w.io();
        assert_eq!(
            broker.deliver_remote(&vhost("/v"), &channel("news"), delivery, None, io.outlet),
            1
        );
        assert_eq!(w.take(sub), [String::from_utf8(delivery.to_vec()).unwrap()]);
        assert_eq!(log.lock().unwrap().routed.len(), 1);
    }

    #[test]
    fn a_forwarded_broadcast_is_routed_with_its_hops() {
        let mut w = World::new();
        let sub = w.subscriber(1, "rw", &["news"]);
        let log = join(&mut w, Route::Local);
        let (broker, io) = w.io();
        assert_eq!(
            broker.sequence_remote(&vhost("/v"), &channel("news"), b"{}", 1, io.outlet),
            1
        );
        assert_eq!(w.take(sub), ["{}"]);
        assert_eq!(log.lock().unwrap().routed, [("news".to_string(), 1)]);
        // Without a cluster, a subscriber is served as before.
        let mut single = World::new();
        let s = single.subscriber(1, "rw", &["news"]);
        let p = single.login(2, "rw");
        single.send(p, &broadcast("e", "news", "2"));
        assert_eq!(single.take(s).len(), 1);
    }
}
