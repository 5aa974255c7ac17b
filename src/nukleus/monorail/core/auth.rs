//! `authenticate`: the vhost's users and their argon2 secrets, checked
//! off this thread; the session's later messages wait meanwhile.

use std::collections::VecDeque;

use super::{AuthCheck, Monorail, MonorailError, Outcome};
use crate::broker::{Outlet, SessionKey};
use crate::name::{Permissions, UserName};
use crate::nukleus::monorail::message;
use crate::protocol::ErrorId;

impl Monorail {
    pub(super) fn authenticate(
        &mut self,
        key: SessionKey,
        user: &str,
        secret: Option<String>,
        out: &mut dyn Outlet,
    ) -> Outcome {
        let session = self.sessions.get(&key)?;
        let fail = |id, why: &str| MonorailError::new(id, why).during("authenticate");
        let Ok(name) = UserName::parse(user) else {
            let error = fail(
                ErrorId::InvalidUserName,
                ErrorId::InvalidUserName.description(),
            );
            self.send_error(key, &error, out);
            return None;
        };
        let record = self
            .state
            .vhosts
            .get(&session.vhost)
            .and_then(|v| v.users.get(&name));
        let Some(record) = record else {
            let error = fail(ErrorId::UserNotFound, ErrorId::UserNotFound.description());
            self.send_error(key, &error, out);
            return None;
        };
        match (&record.secret_hash, secret) {
            (None, _) => {
                let permissions = record.permissions;
                self.become_user(key, name, permissions, out);
                None
            }
            (Some(hash), Some(secret)) => {
                let check = AuthCheck {
                    key,
                    user: name,
                    hash: hash.clone(),
                    secret,
                };
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.held = Some(VecDeque::new());
                    session.held_bytes = 0;
                }
                Some(check)
            }
            (Some(_), None) => {
                let error = fail(
                    ErrorId::InvalidCredentials,
                    ErrorId::InvalidCredentials.description(),
                );
                self.send_error(key, &error, out);
                None
            }
        }
    }

    pub(super) fn become_user(
        &mut self,
        key: SessionKey,
        user: UserName,
        permissions: Permissions,
        out: &mut dyn Outlet,
    ) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        session.permissions = permissions;
        if !permissions.contains(Permissions::READ) {
            session.watches.clear();
        }
        let reply = message::authenticated(user.as_str());
        session.user = Some(user);
        self.send(key, &reply, out);
    }

    /// The verifier's answer. The check is good only for the hash it was
    /// made against: a user deleted or re-keyed meanwhile fails. Held
    /// messages are then handled in order (one of them may start another
    /// check, which comes back).
    pub fn finish_authenticate(
        &mut self,
        check: AuthCheck,
        verified: bool,
        out: &mut dyn Outlet,
    ) -> Outcome {
        let key = check.key;
        let session = self.sessions.get_mut(&key)?;
        let held = session.held.take().unwrap_or_default();
        let vhost = session.vhost.clone();
        let current = self
            .state
            .vhosts
            .get(&vhost)
            .and_then(|v| v.users.get(&check.user));
        match current {
            Some(user) if verified && user.secret_hash.as_deref() == Some(check.hash.as_str()) => {
                let permissions = user.permissions;
                self.become_user(key, check.user, permissions, out);
            }
            Some(_) => {
                let error = MonorailError::new(
                    ErrorId::InvalidCredentials,
                    ErrorId::InvalidCredentials.description(),
                )
                .during("authenticate");
                self.send_error(key, &error, out);
            }
            None => {
                let error =
                    MonorailError::new(ErrorId::UserNotFound, ErrorId::UserNotFound.description())
                        .during("authenticate");
                self.send_error(key, &error, out);
            }
        }
        self.replay(key, held, out)
    }

    /// The verifier is full: the check fails at once with `INTERNAL_ERROR`.
    pub fn refuse_check(&mut self, check: AuthCheck, out: &mut dyn Outlet) -> Outcome {
        let key = check.key;
        let held = self.sessions.get_mut(&key)?.held.take().unwrap_or_default();
        let error = MonorailError::new(
            ErrorId::InternalError,
            "too many secret checks at once, try again",
        )
        .during("authenticate");
        self.send_error(key, &error, out);
        self.replay(key, held, out)
    }

    pub(super) fn replay(
        &mut self,
        key: SessionKey,
        mut held: VecDeque<Vec<u8>>,
        out: &mut dyn Outlet,
    ) -> Outcome {
        while let Some(bytes) = held.pop_front() {
            if let Some(check) = self.on_message(key, &bytes, out) {
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.held_bytes = held.iter().map(Vec::len).sum();
                    session.held = Some(held);
                }
                return Some(check);
            }
        }
        None
    }
}
