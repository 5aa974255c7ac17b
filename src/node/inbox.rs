//! The inboxes of the broker thread's nuklei: work from other threads
//! (admin changes, backend requests, cluster deliveries, AMQP feeds),
//! queued without blocking.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};

use crate::nukleus::monorail;
use crate::nukleus::runner::Signal;
use crate::nukleus::webrocket::Task;
use crate::protocol::backend::ServerBroadcast;
use crate::protocol::CloseReason;
use crate::storage::Change;

/// Queues [`Task`]s for the webrocket nukleus and [`monorail::Task`]s for
/// the monorail nukleus, and wakes the thread that runs them. Cheap to
/// clone.
#[derive(Clone)]
pub struct Inbox {
    tasks: Sender<Task>,
    monorail: Sender<monorail::Task>,
    signal: Arc<Signal>,
    peers: Arc<OnceLock<Arc<dyn Peers>>>,
}

/// The other nodes of the cluster, as far as server broadcasts go: each
/// delivers what it gets to its own sessions. The cluster implements it.
pub trait Peers: Send + Sync {
    /// Passes `broadcast` to every node that is up (best effort, not
    /// ordered with channel broadcasts).
    fn relay(&self, broadcast: &ServerBroadcast);

    /// Passes `message` to node `node` only: `None` when `node` is this
    /// node, `Some(false)` when it is not up.
    fn send_to(&self, node: &str, message: &ServerBroadcast) -> Option<bool>;
}

impl Inbox {
    /// An inbox whose tasks the webrocket and monorail nuklei read from the
    /// returned receivers; `signal` wakes the thread that runs them.
    pub fn new(signal: Arc<Signal>) -> (Inbox, Receiver<Task>, Receiver<monorail::Task>) {
        let (tasks, receiver) = mpsc::channel();
        let (monorail, monorail_receiver) = mpsc::channel();
        let inbox = Inbox {
            tasks,
            monorail,
            signal,
            peers: Arc::default(),
        };
        (inbox, receiver, monorail_receiver)
    }

    /// Queues `task` for the broker. A task sent after the broker stopped
    /// is dropped (its replies are never called).
    pub fn send(&self, task: Task) {
        if self.tasks.send(task).is_ok() {
            self.signal.wake();
        }
    }

    /// Queues `task` for the monorail nukleus.
    pub fn to_monorail(&self, task: monorail::Task) {
        if self.monorail.send(task).is_ok() {
            self.signal.wake();
        }
    }

    /// Tells both nuklei a change that is durable and in the state.
    pub fn apply(&self, change: &Change) {
        self.send(Task::Apply(change.clone()));
        self.to_monorail(monorail::Task::Apply(change.clone()));
    }

    /// Closes every session of both nuklei with `reason`.
    pub fn close_all(&self, reason: CloseReason) {
        self.send(Task::CloseAll(reason));
        self.to_monorail(monorail::Task::CloseAll(reason));
    }

    /// Plugs in the other nodes (once, when the cluster starts).
    pub fn set_peers(&self, peers: Arc<dyn Peers>) {
        let _ = self.peers.set(peers);
    }

    /// Passes `message` to node `node` (see [`Peers::send_to`]); `None`
    /// on a single node.
    pub fn send_to(&self, node: &str, message: &ServerBroadcast) -> Option<bool> {
        self.peers.get()?.send_to(node, message)
    }

    /// Passes a server broadcast the backend asked of this node to the
    /// other nodes (nothing on a single node).
    pub fn relay(&self, broadcast: &ServerBroadcast) {
        if let Some(peers) = self.peers.get() {
            peers.relay(broadcast);
        }
    }
}
