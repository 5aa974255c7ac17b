//! Session events for backends, and a backend closing a session.
//!
//! The broker records each session opened, authenticated and closed (with
//! its close reason and code) as an `SE` payload; the glue takes them
//! after each round and hands them to the backend exchange, which sends
//! them to the workers of the vhost that asked (`RD events`). Recording is
//! an allocation per session change, never per message.

use crate::name::{SessionId, VhostPath};
use crate::protocol::{encode_session_event, CloseReason, SessionEvent};

use super::backend::NotFound;
use super::io::Outlet;
use super::session::SessionKey;
use super::Broker;

impl Broker {
    /// Records `event` for session `key`.
    pub(super) fn session_event(&mut self, key: SessionKey, event: SessionEvent<'_>) {
        let Some(session) = self.sessions.get(&key) else {
            return;
        };
        let mut payload = Vec::with_capacity(96);
        encode_session_event(
            &mut payload,
            event,
            session.sid.as_str(),
            session.user.as_ref().map(|u| u.as_str()),
        );
        self.session_events.push((session.vhost.clone(), payload));
    }

    /// Records that `key` is closing for `reason` (with close `code`).
    pub(super) fn session_closing(&mut self, key: SessionKey, reason: CloseReason, code: u16) {
        self.session_event(key, SessionEvent::Closed(reason.label(), code));
    }

    /// The session events recorded since the last call, with their vhost.
    pub fn take_session_events(&mut self) -> Vec<(VhostPath, Vec<u8>)> {
        std::mem::take(&mut self.session_events)
    }

    /// `KS`: closes session `sid` of `vhost` with a backend's close `code`
    /// and `reason`. `NotFound` when it is not on this node.
    pub fn close_by_backend(
        &mut self,
        vhost: &VhostPath,
        sid: &SessionId,
        code: u16,
        reason: &str,
        outlet: &mut dyn Outlet,
    ) -> Result<(), NotFound> {
        let key = self
            .session_by_sid(sid)
            .filter(|key| self.sessions.get(key).is_some_and(|s| &s.vhost == vhost))
            .ok_or_else(|| NotFound(sid.clone()))?;
        self.session_closing(key, CloseReason::Backend, code);
        if self.detach(key).is_some() {
            outlet.close_with(key, code, reason);
            self.outbox.stats.count_close(CloseReason::Backend);
        }
        self.reap(outlet);
        Ok(())
    }
}
