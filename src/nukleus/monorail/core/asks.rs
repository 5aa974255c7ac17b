//! Requests of `backend` resources: asked of a worker, answered by its
//! `RA`, failed when no worker takes or answers them.

use serde_json::{json, Value};

use super::{AnswerError, Ask, Monorail, MonorailError, Waiting};
use crate::broker::{Outlet, SessionKey};
use crate::name::VhostPath;
use crate::nukleus::monorail::params::Params;
use crate::protocol::ErrorId;
use crate::storage::ResourceSource;

impl Monorail {
    /// Requests for workers made since the last call.
    pub fn take_asks(&mut self) -> Vec<Ask> {
        std::mem::take(&mut self.asks)
    }

    /// No worker took request `id`, or none answered in time: its session
    /// gets `ASSIGNATION_FAILED` (if it still waits).
    pub fn fail_request(&mut self, id: u64, why: &str, out: &mut dyn Outlet) {
        if let Some(waiting) = self.waiting.remove(&id) {
            let error = MonorailError::new(ErrorId::AssignationFailed, why).during(waiting.handler);
            self.send_error(waiting.key, &error, out);
        }
    }

    /// A worker's answer (`RA`) to request `id` of `vhost`: passed on to
    /// the waiting session as it is.
    pub fn answer(
        &mut self,
        vhost: &VhostPath,
        id: u64,
        payload: &[u8],
        out: &mut dyn Outlet,
    ) -> Result<(), AnswerError> {
        if self.waiting.get(&id).is_none_or(|w| &w.vhost != vhost) {
            return Err(AnswerError::NotFound);
        }
        let Some(waiting) = self.waiting.remove(&id) else {
            return Err(AnswerError::NotFound);
        };
        let handler = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|v| v.get("handler").and_then(Value::as_str).map(str::to_owned));
        if !matches!(
            handler.as_deref(),
            Some("list" | "item" | "remove" | "error")
        ) {
            let error =
                MonorailError::new(ErrorId::InternalError, "the worker's answer is malformed")
                    .during(waiting.handler);
            self.send_error(waiting.key, &error, out);
            return Err(AnswerError::Malformed);
        }
        self.send(waiting.key, payload, out);
        Ok(())
    }

    /// Asks a worker on behalf of session `key`.
    pub(super) fn ask(
        &mut self,
        key: SessionKey,
        handler: &'static str,
        params: &Params,
        out: &mut dyn Outlet,
    ) {
        let Some(session) = self.sessions.get(&key) else {
            return;
        };
        if self.waiting.len() >= self.max_waiting {
            let why = "too many requests wait for backend workers, try again";
            let error = MonorailError::new(ErrorId::InternalError, why).during(handler);
            self.send_error(key, &error, out);
            return;
        }
        let id = self.next_request;
        self.next_request += 1;
        let request = match &self.node {
            Some(node) => format!("{id}@{node}"),
            None => id.to_string(),
        };
        let payload = json!({":resource": {
            "data": {"request": request, "resource": session.resource,
                     "handler": handler, "params": params.as_value()},
            "sid": session.sid,
            "user": session.user,
        }});
        self.asks.push(Ask {
            id,
            vhost: session.vhost.clone(),
            payload: serde_json::to_vec(&payload).unwrap_or_default(),
        });
        let vhost = session.vhost.clone();
        self.waiting.insert(
            id,
            Waiting {
                key,
                vhost,
                handler,
            },
        );
    }

    pub(super) fn is_backend(&self, key: SessionKey) -> bool {
        self.resource_of(key)
            .is_some_and(|r| r.source == ResourceSource::Backend)
    }
}
