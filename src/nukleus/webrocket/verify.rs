//! Secret checks off the broker thread: argon2 is slow by design, and the
//! broker must never wait for it.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::broker::SecretCheck;
use crate::nukleus::runner::Signal;

/// Threads that verify secrets and hand the results back.
pub struct Verifier {
    checks: Option<Sender<SecretCheck>>,
    results: Receiver<(SecretCheck, bool)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Verifier {
    /// Starts `threads` verifier threads; `signal` wakes the broker when a
    /// result is ready.
    pub fn start(threads: usize, signal: Arc<Signal>) -> std::io::Result<Self> {
        let (checks, inbox) = mpsc::channel::<SecretCheck>();
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
        })
    }

    /// Queues a check.
    pub fn submit(&self, check: SecretCheck) {
        if let Some(checks) = &self.checks {
            let _ = checks.send(check);
        }
    }

    /// A finished check, if any.
    pub fn try_result(&self) -> Option<(SecretCheck, bool)> {
        self.results.try_recv().ok()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.checks = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
