//! A backend's `DS` or `KS` for a session that is not on this node: asked
//! of every peer that is up, answered by the first that holds the session,
//! or `ER 404` when all say no or after [`DIRECT_WAIT`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use super::shared::{lock, Shared};
use super::wire::PeerMessage;
use crate::name::{EventName, SessionId, VhostPath};
use crate::node::Inbox;
use crate::nukleus::webrocket::Task;
use crate::protocol::backend::code::NOT_FOUND;
use crate::protocol::backend::BackendReply;

/// How long a `DS` waits for the other nodes' answers.
const DIRECT_WAIT: Duration = Duration::from_secs(1);

/// Where a `DS`'s outcome goes.
type DirectReply = BackendReply;

pub(super) struct PendingDirect {
    waiting: usize,
    reply: DirectReply,
}

impl Shared {
    pub(super) fn on_direct(
        self: &Arc<Self>,
        inbox: &Inbox,
        from: &str,
        request: u64,
        (vhost, sid, event): (VhostPath, SessionId, EventName),
        data: Option<String>,
    ) {
        // The names were checked when the message was decoded; the payload
        // must still be JSON.
        let parsed = match data {
            Some(text) => RawValue::from_string(text)
                .ok()
                .map(|data| (vhost, sid, event, Some(data))),
            None => Some((vhost, sid, event, None)),
        };
        let shared = Arc::clone(self);
        let from = from.to_owned();
        let answer = move |found: bool| {
            let mut inner = shared.inner();
            shared.send_control(
                &mut inner,
                &from,
                &PeerMessage::DirectReply { request, found },
            );
        };
        match parsed {
            Some((vhost, sid, event, data)) => inbox.send(Task::ClusterDirect {
                vhost,
                sid,
                event,
                data,
                reply: Box::new(answer),
            }),
            None => answer(false),
        }
    }

    /// A peer's `KS`: the broker closes the session if it is here; the
    /// answer is a `DSR` like a `DS`'s.
    pub(super) fn on_close_session(
        self: &Arc<Self>,
        inbox: &Inbox,
        from: &str,
        request: u64,
        (vhost, sid): (VhostPath, SessionId),
        code: u16,
        reason: String,
    ) {
        let shared = Arc::clone(self);
        let from = from.to_owned();
        inbox.send(Task::ClusterClose {
            vhost,
            sid,
            code,
            reason,
            reply: Box::new(move |found: bool| {
                let mut inner = shared.inner();
                shared.send_control(
                    &mut inner,
                    &from,
                    &PeerMessage::DirectReply { request, found },
                );
            }),
        });
    }

    /// Sends a `DS` for a session not on this node to every peer that is
    /// up; `reply` gets `Ok` from the first that has it, 404 when all say
    /// no or after [`DIRECT_WAIT`].
    pub fn direct(
        self: &Arc<Self>,
        vhost: &VhostPath,
        sid: &SessionId,
        event: &EventName,
        data: Option<&RawValue>,
        reply: DirectReply,
    ) {
        self.ask_peers(
            |request| PeerMessage::Direct {
                request,
                vhost: vhost.clone(),
                sid: sid.clone(),
                event: event.clone(),
                data: data.map(|d| d.get().to_owned()),
            },
            reply,
        );
    }

    /// A backend's `KS` for a session not on this node, asked like a `DS`.
    pub fn close_session(
        self: &Arc<Self>,
        vhost: &VhostPath,
        sid: &SessionId,
        code: u16,
        reason: &str,
        reply: DirectReply,
    ) {
        self.ask_peers(
            |request| PeerMessage::CloseSession {
                request,
                vhost: vhost.clone(),
                sid: sid.clone(),
                code,
                reason: reason.to_owned(),
            },
            reply,
        );
    }

    /// Sends the message `make` builds for a new request number to every
    /// peer that is up; `reply` gets `Ok` from the first that found the
    /// session, 404 when all say no or after [`DIRECT_WAIT`].
    fn ask_peers(self: &Arc<Self>, make: impl FnOnce(u64) -> PeerMessage, reply: DirectReply) {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let message = make(request);
        let mut inner = self.inner();
        let peers: Vec<String> = inner.membership.up().cloned().collect();
        if peers.is_empty() {
            drop(inner);
            reply(Err(NOT_FOUND));
            return;
        }
        lock(&self.directs).insert(
            request,
            PendingDirect {
                waiting: peers.len(),
                reply,
            },
        );
        for peer in &peers {
            self.send_control(&mut inner, peer, &message);
        }
        drop(inner);
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            tokio::time::sleep(DIRECT_WAIT).await;
            if let Some(pending) = lock(&shared.directs).remove(&request) {
                (pending.reply)(Err(NOT_FOUND));
            }
        });
    }

    pub(super) fn direct_answered(&self, request: u64, found: bool) {
        let mut directs = lock(&self.directs);
        let done = match directs.get_mut(&request) {
            Some(pending) => {
                pending.waiting = pending.waiting.saturating_sub(1);
                found || pending.waiting == 0
            }
            None => false,
        };
        if done {
            if let Some(pending) = directs.remove(&request) {
                drop(directs);
                (pending.reply)(if found { Ok(()) } else { Err(NOT_FOUND) });
            }
        }
    }
}
