//! `authenticate`, in two phases.
//!
//! Secrets are stored as slow password hashes (argon2), and checking one
//! takes tens of milliseconds: far too long for the broker thread, which
//! serves every session. So `authenticate` with a secret returns a
//! [`SecretCheck`] for the glue to run elsewhere (a blocking pool), and the
//! glue reports the result with [`Broker::finish_authenticate`]. Meanwhile
//! the session's later messages are held, so replies keep request order.
//!
//! Rules:
//! - unknown user: `USER_NOT_FOUND`; a user with a secret and none given, or
//!   the wrong one: `INVALID_CREDENTIALS`. A user without a secret accepts
//!   any (or no) secret.
//! - on success the session takes the user's permissions; if the new
//!   permissions lack READ, every subscription is dropped and reported
//!   `unsubscribed` before `authenticated` is sent.
//! - on failure the session stays as it was (same user, same
//!   subscriptions).
//! - if the user is deleted or its secret changes while the check runs, the
//!   result is `USER_NOT_FOUND` / `INVALID_CREDENTIALS`: a check is only good
//!   for the hash it was made against.

use std::fmt;

use crate::name::{SessionId, UserName};
use crate::protocol::{ClientError, ErrorId, Reply};

use super::io::{Io, Outlet};
use super::pending::Outcome;
use super::session::{Hold, SessionKey};
use super::Broker;

const AUTHENTICATE: &str = "authenticate";

/// A pending secret check for one session.
pub struct SecretCheck {
    key: SessionKey,
    sid: SessionId,
    user: UserName,
    hash: String,
    secret: String,
}

impl SecretCheck {
    /// The session being authenticated.
    pub fn key(&self) -> SessionKey {
        self.key
    }

    /// The user it wants to become.
    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// Compares the secret with the stored hash. Slow by design: call it off
    /// the broker thread.
    pub fn verify(&self) -> bool {
        crate::storage::verify_secret(&self.hash, &self.secret)
    }
}

// The secret stays out of logs.
impl fmt::Debug for SecretCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCheck")
            .field("key", &self.key)
            .field("sid", &self.sid)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// First phase: resolve the user; finish at once unless a secret must be
    /// checked.
    pub(super) fn authenticate(
        &mut self,
        key: SessionKey,
        user: UserName,
        secret: Option<String>,
        io: &mut Io<'_>,
    ) -> Outcome {
        let Some(session) = self.sessions.get(&key) else {
            return Outcome::Done;
        };
        let record = self
            .vhosts
            .get(&session.vhost)
            .and_then(|v| v.users.get(&user));
        let Some(record) = record else {
            self.send_error(key, &user_not_found(&user), io.outlet);
            return Outcome::Done;
        };
        match (&record.secret_hash, secret) {
            (None, _) => {
                self.authenticated(key, user, io.outlet);
                Outcome::Done
            }
            (Some(_), None) => {
                self.send_error(key, &invalid_credentials(), io.outlet);
                Outcome::Done
            }
            (Some(hash), Some(secret)) => {
                let check = SecretCheck {
                    key,
                    sid: session.sid.clone(),
                    user,
                    hash: hash.clone(),
                    secret,
                };
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.hold = Hold::held();
                }
                Outcome::CheckSecret(check)
            }
        }
    }

    /// Second phase: applies the result of `check` (`verified` is what
    /// [`SecretCheck::verify`] returned), then handles the messages held
    /// meanwhile. Returns the outcome of the first of them that needs work
    /// off the thread again (the rest stay held).
    ///
    /// A check for a session that has closed since is ignored.
    pub fn finish_authenticate(
        &mut self,
        check: SecretCheck,
        verified: bool,
        io: &mut Io<'_>,
    ) -> Outcome {
        let key = check.key;
        let Some(held) = self.release(key, &check.sid) else {
            return Outcome::Done;
        };
        let current_hash = self
            .sessions
            .get(&key)
            .and_then(|s| self.vhosts.get(&s.vhost))
            .and_then(|v| v.users.get(&check.user))
            .map(|record| record.secret_hash.as_deref());
        match current_hash {
            None => self.send_error(key, &user_not_found(&check.user), io.outlet),
            Some(hash) if verified && hash == Some(check.hash.as_str()) => {
                self.authenticated(key, check.user, io.outlet);
            }
            Some(_) => self.send_error(key, &invalid_credentials(), io.outlet),
        }
        let outcome = self.resume(key, held, io);
        self.reap(io.outlet);
        outcome
    }

    /// A secret check the glue could not run (too many are waiting): the
    /// `authenticate` is answered `INTERNAL_ERROR` at once, the session
    /// stays as it was, and its held messages are handled. Returns like
    /// [`Broker::finish_authenticate`].
    pub fn refuse_secret_check(&mut self, check: SecretCheck, io: &mut Io<'_>) -> Outcome {
        let key = check.key;
        let Some(held) = self.release(key, &check.sid) else {
            return Outcome::Done;
        };
        let busy = ClientError::new(ErrorId::InternalError)
            .with_event(AUTHENTICATE)
            .with_message("the server is too busy to check secrets now; try again");
        self.send_error(key, &busy, io.outlet);
        let outcome = self.resume(key, held, io);
        self.reap(io.outlet);
        outcome
    }

    /// Makes `key` user `user`, drops what it may no longer read, and says
    /// `authenticated`.
    fn authenticated(&mut self, key: SessionKey, user: UserName, outlet: &mut dyn Outlet) {
        self.become_user(key, Some(user.clone()));
        self.session_event(key, crate::protocol::SessionEvent::Authenticated);
        self.drop_unreadable(key, outlet);
        self.send_reply(key, &Reply::Authenticated(user.as_str()), outlet);
    }

    /// Sets the session's user (`None`: anonymous) and the permissions that
    /// go with it.
    pub(super) fn become_user(&mut self, key: SessionKey, user: Option<UserName>) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if let Some(vhost) = self.vhosts.get(&session.vhost) {
            session.permissions = vhost.permissions_of(user.as_ref());
        }
        session.user = user;
    }
}

fn user_not_found(user: &UserName) -> ClientError {
    ClientError::new(ErrorId::UserNotFound)
        .with_event(AUTHENTICATE)
        .with_message(format!("no user {user} in this vhost"))
}

fn invalid_credentials() -> ClientError {
    ClientError::new(ErrorId::InvalidCredentials).with_event(AUTHENTICATE)
}
