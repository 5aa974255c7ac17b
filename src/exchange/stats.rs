//! Exchange counters: what the endpoint did and, above all, what it could
//! not deliver and why. Shared between the broker thread (triggers) and the
//! endpoint tasks, so they are atomics.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub triggers_accepted: AtomicU64,
    pub triggers_written: AtomicU64,
    pub triggers_redispatched: AtomicU64,
    pub dropped_no_worker: AtomicU64,
    pub dropped_undeliverable: AtomicU64,
    pub write_failures: AtomicU64,
    pub workers_joined: AtomicU64,
    pub workers_quit: AtomicU64,
    pub workers_expired: AtomicU64,
    pub workers_revoked: AtomicU64,
    pub bad_identity: AtomicU64,
    pub bad_frames: AtomicU64,
    pub requests: AtomicU64,
    pub request_errors: AtomicU64,
    pub dropped_replies: AtomicU64,
}

/// Adds one to `counter`.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the exchange's counters (admin API, monitor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeStats {
    /// Ready workers now, all vhosts.
    pub workers: u64,
    /// Triggers a worker was picked for.
    pub triggers_accepted: u64,
    /// Triggers written to a worker's connection.
    pub triggers_written: u64,
    /// Triggers moved to another worker after a failed write or because
    /// their worker left first.
    pub triggers_redispatched: u64,
    /// Triggers refused with `ASSIGNATION_FAILED`: no ready worker.
    pub dropped_no_worker: u64,
    /// Triggers lost: their worker failed and no other was ready.
    pub dropped_undeliverable: u64,
    /// Writes to a backend socket that failed or timed out.
    pub write_failures: u64,
    /// Workers that sent `RD`.
    pub workers_joined: u64,
    /// Workers that sent `QT`.
    pub workers_quit: u64,
    /// Workers dropped for silence.
    pub workers_expired: u64,
    /// Workers dropped because their vhost's token changed.
    pub workers_revoked: u64,
    /// Messages answered `ER 402`.
    pub bad_identity: u64,
    /// Messages answered `ER 400`/`451`/`404` before reaching the broker.
    pub bad_frames: u64,
    /// Requests (`BC`, `OC`, `CC`, `DS`) handed to the broker.
    pub requests: u64,
    /// Requests the broker answered with `ER`.
    pub request_errors: u64,
    /// Answers not queued because the send queue was full (a backend
    /// sending much faster than it reads).
    pub dropped_replies: u64,
    /// Connections cut for a frame or message over twice
    /// `limits.max_backend_message_size`, or more than 64 frames, before
    /// any of it was read.
    pub peers_cut_off: u64,
}

impl Counters {
    /// Reads every counter; `workers` comes from the lobby.
    pub(crate) fn snapshot(&self, workers: usize) -> ExchangeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExchangeStats {
            workers: workers as u64,
            triggers_accepted: get(&self.triggers_accepted),
            triggers_written: get(&self.triggers_written),
            triggers_redispatched: get(&self.triggers_redispatched),
            dropped_no_worker: get(&self.dropped_no_worker),
            dropped_undeliverable: get(&self.dropped_undeliverable),
            write_failures: get(&self.write_failures),
            workers_joined: get(&self.workers_joined),
            workers_quit: get(&self.workers_quit),
            workers_expired: get(&self.workers_expired),
            workers_revoked: get(&self.workers_revoked),
            bad_identity: get(&self.bad_identity),
            bad_frames: get(&self.bad_frames),
            requests: get(&self.requests),
            request_errors: get(&self.request_errors),
            dropped_replies: get(&self.dropped_replies),
            // Counted by the guard, filled in by the exchange.
            peers_cut_off: 0,
        }
    }
}
