//! The ROUTER socket's two tasks and the state they share with the broker
//! thread.
//!
//! ```text
//! backend sockets ──> receive task ──> lobby (RD/HB/QT)
//!                                 └──> Inbox::send (BC/OC/CC/DS) ──> broker
//! broker thread ── Backend::trigger ──> lobby.pick ──┐
//! broker thread ── request replies ─────────────────┤ unbounded queue
//!                                                    v
//!                     send task ──> backend sockets (TR, OK/ER, HB, QT)
//! ```
//!
//! The broker thread never waits: it picks a worker under a short lock and
//! queues the trigger. The send task is the only writer; each write is
//! bounded by [`WRITE_TIMEOUT`] so a stuck worker delays the others at most
//! that long and is then dropped from the lobby, its trigger re-dispatched.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use zeromq::{RouterRecvHalf, RouterSendHalf, SocketRecv, SocketSend, ZmqMessage};

use super::frames::{self, Inbound, Outbound};
use super::identity::{Identity, Role};
use super::lobby::{Lobby, WorkerId};
use super::stats::{bump, Counters};
use crate::broker::NoWorker;
use crate::name::{AccessToken, VhostPath};
use crate::node::{Changes, Inbox};
use crate::nukleus::webrocket::Task;
use crate::protocol::backend::{BackendReply, BackendRequest, ServerBroadcast};

// Writes normally land in the kernel's buffer at once; only a worker that
// stopped reading makes them wait.
pub use crate::limits::BACKEND_WRITE_TIMEOUT as WRITE_TIMEOUT;

// A backend that floods the exchange with requests while not reading its
// answers (each write then waits the write timeout) fills the queue.
pub use crate::limits::BACKEND_OUT_QUEUE as OUT_QUEUE;

/// Work for the send task.
pub(super) enum Outgoing {
    /// A trigger already assigned to `worker`.
    Trigger {
        worker: WorkerId,
        vhost: VhostPath,
        payload: Vec<u8>,
    },
    /// Frames (after the identity) for the socket with routing id `to`.
    Frames { to: Vec<u8>, frames: Vec<Vec<u8>> },
    /// Send `QT` to every worker, then stop.
    Quit(oneshot::Sender<()>),
}

/// Timing and size settings of the exchange.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub heartbeat_interval: Duration,
    pub worker_timeout: Duration,
    pub max_message_size: usize,
}

/// What the broker thread and both tasks share.
pub(super) struct Shared {
    pub lobby: Mutex<Lobby>,
    pub out: mpsc::Sender<Outgoing>,
    pub counters: Counters,
    pub inbox: Inbox,
    pub changes: Arc<Changes>,
    pub settings: Settings,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    /// The vhost's token now, from the durable state (so a regenerated
    /// token applies to the very next message or trigger).
    fn current_token(&self, vhost: &VhostPath) -> Option<AccessToken> {
        self.changes
            .with_state(|state| state.vhosts.get(vhost).map(|v| v.token.clone()))
    }

    fn send_frames(&self, to: &[u8], message: Outbound<'_>) {
        let queued = self.out.try_send(Outgoing::Frames {
            to: to.to_vec(),
            frames: message.encode(),
        });
        if let Err(mpsc::error::TrySendError::Full(_)) = queued {
            bump(&self.counters.dropped_replies);
        }
    }

    /// The next ready worker of `vhost`; workers whose token went stale are
    /// dropped and told `ER 402`.
    fn pick(&self, vhost: &VhostPath) -> Option<WorkerId> {
        let current = self.current_token(vhost);
        let mut stale = Vec::new();
        let picked = lock(&self.lobby).pick(vhost, current.as_ref(), &mut stale);
        for id in stale {
            bump(&self.counters.workers_revoked);
            tracing::info!(worker = ?id, %vhost, "worker dropped: vhost token changed");
            self.send_frames(id.as_bytes(), Outbound::Error(frames::BAD_IDENTITY));
        }
        picked
    }

    /// [`crate::broker::Backend::trigger`]: runs on the broker thread, never
    /// waits.
    pub(super) fn trigger(&self, vhost: &VhostPath, payload: &[u8]) -> Result<(), NoWorker> {
        let Some(worker) = self.pick(vhost) else {
            bump(&self.counters.dropped_no_worker);
            return Err(NoWorker);
        };
        let queued = self.out.try_send(Outgoing::Trigger {
            worker,
            vhost: vhost.clone(),
            payload: payload.to_vec(),
        });
        if queued.is_err() {
            // The send task is far behind, or the exchange is shutting
            // down: no worker can take it now.
            bump(&self.counters.dropped_no_worker);
            return Err(NoWorker);
        }
        bump(&self.counters.triggers_accepted);
        Ok(())
    }

    /// [`crate::broker::Backend::session_event`]: `SE` to every worker of
    /// `vhost` that asked; dropped (and counted) when the send queue is
    /// full.
    pub(super) fn session_event(&self, vhost: &VhostPath, payload: &[u8]) {
        let listeners = lock(&self.lobby).listeners(vhost);
        for id in listeners {
            self.send_frames(id.as_bytes(), Outbound::SessionEvent(payload));
        }
    }

    /// One message from a backend socket: `[identity, "", CMD, args...]`.
    fn on_message<F: AsRef<[u8]>>(self: &Arc<Self>, message: &[F]) {
        let Some((routing_id, rest)) = message.split_first() else {
            return;
        };
        let routing_id = routing_id.as_ref();
        let identity = match Identity::parse(routing_id) {
            Ok(identity) => identity,
            Err(error) => {
                tracing::debug!(%error, "backend message refused");
                bump(&self.counters.bad_identity);
                self.send_frames(routing_id, Outbound::Error(frames::BAD_IDENTITY));
                return;
            }
        };
        let worker = WorkerId::from(&identity);
        if let Err(error) = identity.verify(self.current_token(identity.vhost()).as_ref()) {
            tracing::debug!(%error, id = %identity.redacted(), "backend message refused");
            bump(&self.counters.bad_identity);
            if lock(&self.lobby).remove(&worker).is_some() {
                bump(&self.counters.workers_revoked);
            }
            self.send_frames(routing_id, Outbound::Error(frames::BAD_IDENTITY));
            return;
        }
        let size: usize = rest.iter().map(|f| f.as_ref().len()).sum();
        if size > self.settings.max_message_size {
            bump(&self.counters.bad_frames);
            self.send_frames(routing_id, Outbound::Error(frames::BAD_REQUEST));
            return;
        }
        let now = Instant::now();
        if identity.role() == Role::Worker {
            lock(&self.lobby).seen(&worker, now);
        }
        match frames::decode(identity.role(), rest) {
            Ok(Inbound::Ready { events }) => self.on_ready(&identity, now, events),
            Ok(Inbound::Heartbeat) => {}
            Ok(Inbound::Quit) => {
                if lock(&self.lobby).remove(&worker).is_some() {
                    bump(&self.counters.workers_quit);
                    tracing::info!(id = %identity.redacted(), "worker quit");
                }
            }
            Ok(Inbound::Request(request)) => self.on_request(&identity, request),
            Ok(Inbound::Resource(request)) => {
                bump(&self.counters.requests);
                let vhost = identity.vhost().clone();
                let reply = self.reply_to(&identity);
                super::resources::dispatch(&self.changes, &self.inbox, vhost, request, reply);
            }
            Err(error) => {
                tracing::debug!(%error, id = %identity.redacted(), "bad backend frames");
                bump(&self.counters.bad_frames);
                self.send_frames(routing_id, Outbound::Error(error.code()));
            }
        }
    }

    fn on_ready(&self, identity: &Identity, now: Instant, events: bool) {
        match lock(&self.lobby).ready_for(identity, now, events) {
            Ok(true) => {
                bump(&self.counters.workers_joined);
                tracing::info!(id = %identity.redacted(), "worker ready");
            }
            Ok(false) => {}
            Err(full) => {
                tracing::warn!(%full, "worker refused");
                self.send_frames(identity.as_bytes(), Outbound::Error(403));
            }
        }
    }

    /// Where the outcome of a request goes: `OK` or `ER <code>` back to
    /// the socket that asked.
    fn reply_to(self: &Arc<Self>, identity: &Identity) -> BackendReply {
        let shared = Arc::clone(self);
        let to = identity.as_bytes().to_vec();
        Box::new(move |result| {
            if result.is_err() {
                bump(&shared.counters.request_errors);
            }
            shared.send_frames(&to, Outbound::reply(result));
        })
    }

    fn on_request(self: &Arc<Self>, identity: &Identity, request: BackendRequest) {
        if let BackendRequest::BroadcastExcept {
            channel,
            event,
            data,
            skip,
        } = &request
        {
            self.inbox.relay(&ServerBroadcast::Channel {
                vhost: identity.vhost().clone(),
                channel: channel.clone(),
                event: event.clone(),
                data: data.as_ref().map(|d| d.get().to_owned()),
                skip: skip.clone(),
            });
        }
        bump(&self.counters.requests);
        let shared = Arc::clone(self);
        let to = identity.as_bytes().to_vec();
        self.inbox.send(Task::Backend {
            vhost: identity.vhost().clone(),
            request,
            reply: Box::new(move |result| {
                if result.is_err() {
                    bump(&shared.counters.request_errors);
                }
                shared.send_frames(&to, Outbound::reply(result));
            }),
        });
    }
}

/// Reads the ROUTER until the process ends.
pub(super) async fn receive(shared: Arc<Shared>, mut socket: RouterRecvHalf) {
    loop {
        match socket.recv().await {
            Ok(message) => shared.on_message(&message.into_vec()),
            Err(error) => {
                tracing::error!(%error, "backend socket stopped receiving");
                return;
            }
        }
    }
}

/// Writes everything queued for backend sockets and the heartbeats.
pub(super) async fn send(
    shared: Arc<Shared>,
    mut socket: RouterSendHalf,
    mut inbox: mpsc::Receiver<Outgoing>,
) {
    let mut ticker = tokio::time::interval(shared.settings.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = inbox.recv() => match item {
                Some(Outgoing::Trigger { worker, vhost, payload }) => {
                    deliver(&shared, &mut socket, worker, &vhost, &payload).await;
                }
                Some(Outgoing::Frames { to, frames }) => {
                    if !write(&mut socket, &to, frames).await {
                        bump(&shared.counters.write_failures);
                    }
                }
                Some(Outgoing::Quit(done)) => {
                    let workers = lock(&shared.lobby).ids();
                    for id in workers {
                        write(&mut socket, id.as_bytes(), Outbound::Quit.encode()).await;
                    }
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
            _ = ticker.tick() => heartbeat(&shared, &mut socket).await,
        }
    }
}

/// Writes a trigger to `worker`, or to the next ready worker of the vhost
/// if `worker` left meanwhile or the write fails.
async fn deliver(
    shared: &Shared,
    socket: &mut RouterSendHalf,
    mut worker: WorkerId,
    vhost: &VhostPath,
    payload: &[u8],
) {
    loop {
        let present = lock(&shared.lobby).contains(&worker);
        if present
            && write(
                socket,
                worker.as_bytes(),
                Outbound::Trigger(payload).encode(),
            )
            .await
        {
            bump(&shared.counters.triggers_written);
            return;
        }
        if present {
            bump(&shared.counters.write_failures);
            lock(&shared.lobby).remove(&worker);
            tracing::info!(?worker, %vhost, "worker dropped: write failed");
        }
        // Each failure removes a worker, so this ends.
        match shared.pick(vhost) {
            Some(next) => {
                bump(&shared.counters.triggers_redispatched);
                worker = next;
            }
            None => {
                bump(&shared.counters.dropped_undeliverable);
                tracing::warn!(%vhost, "trigger lost: no other ready worker");
                return;
            }
        }
    }
}

/// Drops silent workers and sends `HB` to the others.
async fn heartbeat(shared: &Shared, socket: &mut RouterSendHalf) {
    let (expired, alive) = {
        let mut lobby = lock(&shared.lobby);
        let expired = lobby.expire(Instant::now(), shared.settings.worker_timeout);
        (expired, lobby.ids())
    };
    for id in expired {
        bump(&shared.counters.workers_expired);
        tracing::info!(worker = ?id, "worker expired");
        // If it is merely slow, QT tells it to send RD again.
        write(socket, id.as_bytes(), Outbound::Quit.encode()).await;
    }
    for id in alive {
        if !write(socket, id.as_bytes(), Outbound::Heartbeat.encode()).await {
            bump(&shared.counters.write_failures);
            lock(&shared.lobby).remove(&id);
        }
    }
}

/// One message to the socket with routing id `to`. `false` if it has gone
/// or did not take the message in time.
async fn write(socket: &mut RouterSendHalf, to: &[u8], frames: Vec<Vec<u8>>) -> bool {
    let mut message = ZmqMessage::from(to.to_vec());
    for frame in frames {
        message.push_back(frame.into());
    }
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_timeout_is_shorter_than_the_default_heartbeat() {
        // A stuck worker must not stall heartbeats to the others long
        // enough for them to expire.
        assert!(WRITE_TIMEOUT < crate::limits::DEFAULT_HEARTBEAT_INTERVAL);
    }
}
