//! Runs nuklei ("agents") on threads with an idle strategy that never spins
//! when there is nothing to do, yet wakes within microseconds when a frame is
//! written for it.
//!
//! A thread runs a group of agents round-robin. When a whole round finds no
//! work, the thread spins a little, yields a little, and then parks. Before
//! parking it raises its [`Signal`]'s `parked` flag and looks for work once
//! more; a writer that commits a frame for one of its agents calls
//! [`Signal::notify`], which wakes it only if the flag is up, so the common,
//! busy case costs one load. Writers in other processes cannot notify: a
//! parked thread also wakes on a timeout that grows from 1 ms to
//! [`MAX_PARK`] while idle, which bounds their latency.

use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// The longest a parked thread sleeps before looking again.
pub const MAX_PARK: Duration = Duration::from_millis(50);
const SPINS: u32 = 20;
const YIELDS: u32 = 10;
/// The most rounds an agent waits for the others to settle before its
/// [`Agent::on_settled`] runs anyway.
pub const MAX_UNSETTLED_ROUNDS: u32 = 8;

/// A single-threaded state machine the runner drives.
pub trait Agent: Send {
    /// The nukleus name, for logs.
    fn name(&self) -> &str;

    /// Does whatever is ready; returns how much it did (0 = idle).
    fn do_work(&mut self, now: Instant) -> usize;

    /// Called after [`Agent::do_work`] when the other agents of the thread
    /// found no work in the same round: what they had to pass on has been
    /// passed. The agent at the edge (tcp) writes and reads its sockets
    /// here, so that a batch of input crosses the whole path before the
    /// answers leave, in one write per connection. Also called after
    /// [`MAX_UNSETTLED_ROUNDS`] busy rounds, so a steady load cannot hold
    /// output back. Returns how much it did, as `do_work`.
    fn on_settled(&mut self, _now: Instant) -> usize {
        0
    }

    /// When the agent next needs to run even without input (timers).
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Agents that own an I/O poller block in it instead of parking the
    /// thread; they return true when they did.
    fn park(&mut self, _timeout: Duration) -> bool {
        false
    }

    /// Called once per idle stretch, when the thread has found no work for
    /// a while (about 60 ms): a moment to give back memory a burst left.
    fn on_idle(&mut self) {}

    /// Called once when the runner stops.
    fn on_close(&mut self) {}
}

/// Wakes a parked runner thread.
#[derive(Debug)]
pub struct Signal {
    parked: AtomicBool,
    waker: Waker,
}

#[derive(Debug)]
enum Waker {
    Thread(OnceLock<Thread>),
    Poller(mio::Waker),
}

impl Signal {
    /// A signal that unparks the thread that runs it.
    pub fn for_thread() -> Arc<Signal> {
        Arc::new(Signal {
            parked: AtomicBool::new(false),
            waker: Waker::Thread(OnceLock::new()),
        })
    }

    /// A signal that wakes a mio poller.
    pub fn for_poller(waker: mio::Waker) -> Arc<Signal> {
        Arc::new(Signal {
            parked: AtomicBool::new(false),
            waker: Waker::Poller(waker),
        })
    }

    /// Tells the runner that a frame was committed for it; wakes it if it is
    /// parked. Call after the frame is published.
    pub fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) {
            self.wake();
        }
    }

    /// Wakes the runner unconditionally (shutdown, commands from this
    /// process).
    pub fn wake(&self) {
        match &self.waker {
            Waker::Thread(thread) => {
                if let Some(thread) = thread.get() {
                    thread.unpark();
                }
            }
            Waker::Poller(waker) => {
                if let Err(error) = waker.wake() {
                    tracing::warn!(%error, "could not wake poller");
                }
            }
        }
    }

    fn set_parked(&self, parked: bool) {
        self.parked.store(parked, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }
}

/// The signals of every nukleus running in this process, by nukleus name, so
/// that a writer can wake the reader of the streams file it writes to.
#[derive(Debug, Default)]
pub struct Signals {
    by_name: Mutex<HashMap<String, Arc<Signal>>>,
}

impl Signals {
    /// Records the signal that wakes `nukleus`.
    pub fn register(&self, nukleus: &str, signal: Arc<Signal>) {
        if let Ok(mut map) = self.by_name.lock() {
            map.insert(nukleus.to_string(), signal);
        }
    }

    /// The signal that wakes `nukleus`, if it runs in this process.
    pub fn get(&self, nukleus: &str) -> Option<Arc<Signal>> {
        self.by_name.lock().ok()?.get(nukleus).cloned()
    }

    /// Wakes every runner (shutdown).
    pub fn wake_all(&self) {
        if let Ok(map) = self.by_name.lock() {
            map.values().for_each(|signal| signal.wake());
        }
    }
}

/// Agents that share one thread and one signal.
pub struct Group {
    name: String,
    agents: Vec<Box<dyn Agent>>,
    signal: Arc<Signal>,
    /// Per agent: the work its `do_work` did this round, and the rounds
    /// since its `on_settled` last ran.
    done: Vec<usize>,
    unsettled: Vec<u32>,
}

impl Group {
    /// A group woken by `signal` (use [`Signal::for_poller`] when one of the
    /// agents parks in a poller).
    pub fn new(name: &str, signal: Arc<Signal>) -> Self {
        Group {
            name: name.to_string(),
            agents: Vec::new(),
            signal,
            done: Vec::new(),
            unsettled: Vec::new(),
        }
    }

    /// Adds an agent.
    pub fn add(&mut self, agent: Box<dyn Agent>) {
        self.agents.push(agent);
        self.done.push(0);
        self.unsettled.push(0);
    }

    /// Starts the thread; it runs until `stop` is set (and the signal woken).
    pub fn spawn(mut self, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("nukleus-{}", self.name))
            .spawn(move || {
                if let Waker::Thread(cell) = &self.signal.waker {
                    let _ = cell.set(std::thread::current());
                }
                self.run(&stop);
                for agent in &mut self.agents {
                    agent.on_close();
                }
            })
    }

    fn work(&mut self) -> usize {
        let now = Instant::now();
        let mut total = 0;
        for (agent, done) in self.agents.iter_mut().zip(&mut self.done) {
            *done = agent.do_work(now);
            total += *done;
        }
        let round = total;
        for ((agent, &done), unsettled) in self
            .agents
            .iter_mut()
            .zip(&self.done)
            .zip(&mut self.unsettled)
        {
            *unsettled += 1;
            if round == done || *unsettled >= MAX_UNSETTLED_ROUNDS {
                *unsettled = 0;
                total += agent.on_settled(now);
            }
        }
        total
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut idle_rounds = 0u32;
        let mut park = Duration::from_millis(1);
        let mut tidied = false;
        while !stop.load(Ordering::Acquire) {
            if self.work() > 0 {
                idle_rounds = 0;
                park = Duration::from_millis(1);
                tidied = false;
                continue;
            }
            if park == MAX_PARK && !tidied {
                self.agents.iter_mut().for_each(|a| a.on_idle());
                tidied = true;
            }
            idle_rounds = idle_rounds.saturating_add(1);
            if idle_rounds < SPINS {
                std::hint::spin_loop();
                continue;
            }
            if idle_rounds < SPINS + YIELDS {
                std::thread::yield_now();
                continue;
            }
            self.signal.set_parked(true);
            if self.work() == 0 && !stop.load(Ordering::Acquire) {
                let timeout = self.timeout(park);
                self.park(timeout);
                park = (park * 2).min(MAX_PARK);
            } else {
                idle_rounds = 0;
            }
            self.signal.set_parked(false);
        }
    }

    fn timeout(&self, park: Duration) -> Duration {
        let now = Instant::now();
        self.agents
            .iter()
            .filter_map(|a| a.deadline())
            .map(|d| d.saturating_duration_since(now))
            .fold(park, Duration::min)
    }

    fn park(&mut self, timeout: Duration) {
        for agent in &mut self.agents {
            if agent.park(timeout) {
                return;
            }
        }
        std::thread::park_timeout(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counter {
        pending: Arc<AtomicUsize>,
        done: Arc<AtomicUsize>,
        rounds: Arc<AtomicUsize>,
    }

    impl Agent for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn do_work(&mut self, _now: Instant) -> usize {
            self.rounds.fetch_add(1, Ordering::Relaxed);
            let n = self.pending.swap(0, Ordering::AcqRel);
            self.done.fetch_add(n, Ordering::AcqRel);
            n
        }
    }

    #[test]
    fn parked_thread_wakes_on_notify_and_idles_otherwise() {
        let pending = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let rounds = Arc::new(AtomicUsize::new(0));
        let signal = Signal::for_thread();
        let mut group = Group::new("test", signal.clone());
        group.add(Box::new(Counter {
            pending: pending.clone(),
            done: done.clone(),
            rounds: rounds.clone(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = group.spawn(stop.clone()).unwrap();

        // Idle: after settling, the thread runs a handful of rounds per
        // second (timeouts), not millions.
        std::thread::sleep(Duration::from_millis(300));
        let before = rounds.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
        let idle_rounds = rounds.load(Ordering::Relaxed) - before;
        assert!(idle_rounds < 100, "idle thread ran {idle_rounds} rounds");

        pending.store(5, Ordering::Release);
        signal.notify();
        let deadline = Instant::now() + Duration::from_secs(5);
        while done.load(Ordering::Acquire) < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(done.load(Ordering::Acquire), 5);

        stop.store(true, Ordering::Release);
        signal.wake();
        handle.join().unwrap();
    }
}
