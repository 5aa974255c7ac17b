//! The inboxes of the broker thread's nuklei: work from other threads
//! (admin changes, backend requests, cluster deliveries, AMQP feeds),
//! queued without blocking.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

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
    /// Tasks sent while the inbox is held ([`Inbox::hold`]).
    held: Arc<Mutex<Option<Vec<Task>>>>,
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
            held: Arc::default(),
        };
        (inbox, receiver, monorail_receiver)
    }

    /// Queues `task` for the broker. A task sent after the broker stopped
    /// is dropped (its replies are never called).
    pub fn send(&self, task: Task) {
        if let Some(held) = lock(&self.held).as_mut() {
            held.push(task);
            return;
        }
        if self.tasks.send(task).is_ok() {
            self.signal.wake();
        }
    }

    /// Holds the tasks sent from now on until the returned guard is
    /// dropped, then hands them over as one [`Task::Batch`]: the broker
    /// takes them in one round rather than starting on the first while the
    /// rest are still being decoded (a burst of cluster deliveries then
    /// reaches each subscriber in one write). Order is kept: every task
    /// sent meanwhile, from any thread, is in the batch in the order sent.
    pub fn hold(&self) -> Holding<'_> {
        let mut held = lock(&self.held);
        let outermost = held.is_none();
        if outermost {
            *held = Some(Vec::new());
        }
        Holding {
            inbox: self,
            outermost,
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

/// The inbox held ([`Inbox::hold`]); dropping it sends what was held.
pub struct Holding<'a> {
    inbox: &'a Inbox,
    outermost: bool,
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        if !self.outermost {
            return;
        }
        let Some(mut tasks) = lock(&self.inbox.held).take() else {
            return;
        };
        let task = match tasks.len() {
            0 => return,
            1 => tasks.pop(),
            _ => Some(Task::Batch(tasks)),
        };
        if task.is_some_and(|task| self.inbox.tasks.send(task).is_ok()) {
            self.inbox.signal.wake();
        }
    }
}

/// The lock, even if a thread panicked holding it (the list stays valid).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(task: Task) -> Option<CloseReason> {
        match task {
            Task::CloseAll(reason) => Some(reason),
            _ => None,
        }
    }

    /// What is sent while the inbox is held arrives as one batch, in the
    /// order sent, from this thread and others, once the outermost hold
    /// ends; nothing arrives before.
    #[test]
    fn a_hold_hands_over_one_batch_in_order() {
        let (inbox, tasks, _monorail) = Inbox::new(Signal::for_thread());
        inbox.send(Task::CloseAll(CloseReason::ClientClosed));
        let held = inbox.hold();
        inbox.send(Task::CloseAll(CloseReason::Disconnect));
        let other = inbox.clone();
        std::thread::spawn(move || other.send(Task::CloseAll(CloseReason::ProtocolError)))
            .join()
            .expect("sender thread");
        let nested = inbox.hold();
        inbox.send(Task::CloseAll(CloseReason::InvalidData));
        drop(nested);
        let before: Vec<_> = tasks.try_iter().filter_map(closed).collect();
        assert_eq!(before, [CloseReason::ClientClosed], "held tasks wait");
        drop(held);
        let Ok(Task::Batch(batch)) = tasks.try_recv() else {
            panic!("one batch expected");
        };
        let batch: Vec<_> = batch.into_iter().filter_map(closed).collect();
        assert_eq!(
            batch,
            [
                CloseReason::Disconnect,
                CloseReason::ProtocolError,
                CloseReason::InvalidData
            ]
        );
        assert!(tasks.try_recv().is_err());
        // Released: sent at once again; a hold with one task sends it as is.
        inbox.send(Task::CloseAll(CloseReason::ClientClosed));
        drop(inbox.hold());
        let held = inbox.hold();
        inbox.send(Task::CloseAll(CloseReason::Disconnect));
        drop(held);
        let after: Vec<_> = tasks.try_iter().filter_map(closed).collect();
        assert_eq!(after, [CloseReason::ClientClosed, CloseReason::Disconnect]);
    }
}
