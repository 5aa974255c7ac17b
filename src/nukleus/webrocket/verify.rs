//! Secret checks off the broker thread: argon2 is slow by design, and the
//! broker must never wait for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::broker::SecretCheck;
use crate::nukleus::runner::Signal;

/// A secret check that can run on a verifier thread.
pub trait Verify: Send + 'static {
    /// Compares the secret with the stored hash (slow by design).
    fn verify(&self) -> bool;
}

impl Verify for SecretCheck {
    fn verify(&self) -> bool {
        SecretCheck::verify(self)
    }
}

/// Threads that verify secrets and hand the results back. Shared by the
/// webrocket and monorail nuklei, each with checks of its own type.
pub struct Verifier<C: Verify = SecretCheck> {
    checks: Option<Sender<C>>,
    results: Receiver<(C, bool)>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Checks submitted whose result has not been taken yet.
    pending: AtomicUsize,
    /// `limits.max_pending_secret_checks`.
    max_pending: usize,
}

impl<C: Verify> Verifier<C> {
    /// Starts `threads` verifier threads; `signal` wakes the broker when a
    /// result is ready. At most `max_pending` checks wait or run at once.
    pub fn start(threads: usize, max_pending: usize, signal: Arc<Signal>) -> std::io::Result<Self> {
        let (checks, inbox) = mpsc::channel::<C>();
        let (done, results) = mpsc::channel();
        let inbox = Arc::new(Mutex::new(inbox));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let inbox = Arc::clone(&inbox);
            let done = done.clone();
            let signal = Arc::clone(&signal);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("verify-{i}"))
                    .spawn(move || loop {
                        let next = match inbox.lock() {
                            Ok(inbox) => inbox.recv(),
                            Err(_) => return,
                        };
                        let Ok(check) = next else { return };
                        let verified = check.verify();
                        if done.send((check, verified)).is_err() {
                            return;
                        }
                        signal.wake();
                    })?,
            );
        }
        Ok(Verifier {
            checks: Some(checks),
            results,
            threads: handles,
            pending: AtomicUsize::new(0),
            max_pending,
        })
    }

    /// Queues a check, or hands it back when `max_pending` checks are
    /// already waiting or running.
    pub fn submit(&self, check: C) -> Result<(), C> {
        if self.pending.load(Ordering::Relaxed) >= self.max_pending {
            return Err(check);
        }
        let Some(checks) = &self.checks else {
            return Err(check);
        };
        match checks.send(check) {
            Ok(()) => {
                self.pending.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::SendError(check)) => Err(check),
        }
    }

    /// A finished check, if any.
    pub fn try_result(&self) -> Option<(C, bool)> {
        let result = self.results.try_recv().ok()?;
        self.pending.fetch_sub(1, Ordering::Relaxed);
        Some(result)
    }
}

impl<C: Verify> Drop for Verifier<C> {
    fn drop(&mut self) {
        self.checks = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::broker::{Backend, Broker, Io, NoWorker, Outcome, Outlet, Persist, SessionKey};
    use crate::limits::Limits;
    use crate::name::{AccessToken, Permissions, UserName, VhostPath};
    use crate::protocol::CloseReason;
    use crate::storage::{Change, State, StorageError, UserRecord, VhostRecord};

    struct Nothing;

    impl Outlet for Nothing {
        fn send(&mut self, _key: SessionKey, _payload: &[u8]) -> bool {
            true
        }
        fn close(&mut self, _key: SessionKey, _reason: CloseReason) {}
    }

    impl Backend for Nothing {
        fn trigger(&mut self, _vhost: &VhostPath, _payload: &[u8]) -> Result<(), NoWorker> {
            Err(NoWorker)
        }

        fn session_event(&mut self, _vhost: &VhostPath, _payload: &[u8]) {}
    }

    impl Persist for Nothing {
        fn commit(&mut self, _change: &Change) -> Result<(), StorageError> {
            Ok(())
        }

        fn propose(&mut self, _change: Change, _completion: crate::broker::Completion) {}
    }

    /// Vhost `/v` with user `u`, whose secret is `s`.
    fn state() -> State {
        let user = UserRecord {
            secret_hash: Some(crate::storage::hash_secret("s")),
            permissions: Permissions::READ,
        };
        let vhost = VhostRecord {
            resources: Default::default(),
            token: AccessToken::generate(),
            anonymous: Permissions::NONE,
            auto_create_channels: true,
            users: BTreeMap::from([(UserName::parse("u").unwrap(), user)]),
            channels: BTreeSet::new(),
            channel_defaults: Default::default(),
            channel_options: Default::default(),
        };
        State {
            vhosts: BTreeMap::from([(VhostPath::parse("/v").unwrap(), vhost)]),
        }
    }

    /// The secret check of a new session `k` authenticating as `u`.
    fn check(broker: &mut Broker, k: u64) -> SecretCheck {
        let key = SessionKey(k);
        broker
            .open_session(key, &VhostPath::parse("/v").unwrap())
            .unwrap();
        let (mut outlet, mut backend, mut persist) = (Nothing, Nothing, Nothing);
        let mut io = Io {
            outlet: &mut outlet,
            backend: &mut backend,
            persist: &mut persist,
        };
        let message = br#"{"authenticate": {"user": "u", "secret": "s"}}"#;
        match broker.on_message(key, message, &mut io) {
            Outcome::CheckSecret(check) => check,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn checks_beyond_the_bound_are_handed_back() {
        let mut broker = Broker::new(&state(), &Limits::default());
        let verifier = Verifier::start(1, 2, Signal::for_thread()).unwrap();
        assert!(verifier.submit(check(&mut broker, 1)).is_ok());
        assert!(verifier.submit(check(&mut broker, 2)).is_ok());
        let refused = verifier
            .submit(check(&mut broker, 3))
            .expect_err("over the bound");
        assert_eq!(refused.key(), SessionKey(3));
        // Taking a result makes room again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while verifier.try_result().is_none() {
            assert!(Instant::now() < deadline, "no result");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(verifier.submit(refused).is_ok());
    }
}
