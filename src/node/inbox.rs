//! The broker thread's inbox: work from other threads (admin changes,
//! backend requests, cluster deliveries), queued without blocking.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use crate::nukleus::runner::Signal;
use crate::nukleus::webrocket::Task;

/// Queues [`Task`]s for the webrocket nukleus and wakes its thread. Cheap
/// to clone.
#[derive(Clone)]
pub struct Inbox {
    tasks: Sender<Task>,
    signal: Arc<Signal>,
}

impl Inbox {
    /// An inbox whose tasks the webrocket nukleus reads from the returned
    /// receiver; `signal` wakes the thread that runs it.
    pub fn new(signal: Arc<Signal>) -> (Inbox, Receiver<Task>) {
        let (tasks, receiver) = mpsc::channel();
        (Inbox { tasks, signal }, receiver)
    }

    /// Queues `task` and wakes the broker. A task sent after the broker
    /// stopped is dropped (its replies are never called).
    pub fn send(&self, task: Task) {
        if self.tasks.send(task).is_ok() {
            self.signal.wake();
        }
    }
}
