//! Crash test: a child process commits changes and reports each one it got
//! an `Ok` for; the parent kills it with SIGKILL at a random moment and
//! checks that every acknowledged change survived.
//!
//! The child is this test binary run again with [`CHILD_ENV`] set, running
//! only [`child_commits_until_killed`].

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;

use super::{Change, State, Store, StoreOptions};
use crate::name::{AccessToken, ChannelName, Permissions, VhostPath};

const CHILD_ENV: &str = "WEBROCKET_STORAGE_CRASH_CHILD_DIR";
const CHILD_TEST: &str = "storage::crash_tests::child_commits_until_killed";

/// Small thresholds, so that kills also land inside compactions.
const OPTIONS: StoreOptions = StoreOptions {
    compact_after_records: 40,
    compact_after_bytes: u64::MAX,
};

fn vhost() -> VhostPath {
    VhostPath::parse("/crash").unwrap()
}

fn channel(i: u64) -> ChannelName {
    ChannelName::parse(&format!("c{i}")).unwrap()
}

fn channel_count(state: &State) -> u64 {
    state
        .vhosts
        .get("/crash")
        .map_or(0, |v| v.channels.len() as u64)
}

/// Runs only in the child: commits channel c<n>, c<n+1>, ... forever,
/// printing `ack <n>` after each commit returned `Ok`.
#[test]
fn child_commits_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // a normal test run: nothing to do
    };
    let (mut store, mut state) = Store::open_with(Path::new(&dir), OPTIONS).unwrap();
    if state.vhosts.is_empty() {
        let add = Change::AddVhost {
            path: vhost(),
            token: AccessToken::generate(),
            anonymous: Permissions::NONE,
            auto_create_channels: true,
        };
        store.commit_and_apply(&mut state, &add).unwrap();
    }
    let mut stdout = std::io::stdout();
    for i in channel_count(&state).. {
        let change = Change::AddChannel {
            vhost: vhost(),
            channel: channel(i),
        };
        store.commit_and_apply(&mut state, &change).unwrap();
        writeln!(stdout, "ack {i}").unwrap();
        stdout.flush().unwrap();
    }
}

/// Starts the child, kills it after `delay`, returns the acknowledged
/// indexes.
fn run_child_and_kill(dir: &Path, delay: Duration) -> Vec<u64> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print "test <name> ... " on the same line first.
            if let Some((_, i)) = line.split_once("ack ") {
                let _ = tx.send(i.trim().parse::<u64>().unwrap());
            }
        }
    });
    // Wait for the first ack so that the kill lands while committing, not
    // while the process starts.
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL: no destructors, no flushes
    child.wait().unwrap();
    reader.join().unwrap();
    std::iter::once(first).chain(rx.try_iter()).collect()
}

#[test]
fn every_acknowledged_change_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut acknowledged_total = 0;
    let mut stored_before = 0;
    for round in 0..4 {
        let delay = Duration::from_millis(rng.random_range(5..300));
        let acks = run_child_and_kill(dir.path(), delay);
        let (_, state) = Store::open_with(dir.path(), OPTIONS).unwrap();
        let stored = channel_count(&state);
        let vhost = &state.vhosts["/crash"];
        for &i in &acks {
            assert!(
                vhost.channels.contains(&channel(i)),
                "round {round}: acknowledged c{i} lost ({stored} stored)"
            );
        }
        assert_eq!(
            acks[0], stored_before,
            "round {round}: resumed after the last commit"
        );
        assert!(
            acks.windows(2).all(|w| w[1] == w[0] + 1),
            "round {round}: every ack was read: {acks:?}"
        );
        // The child commits in order, so the store holds a prefix: every
        // acknowledged change plus at most the one in flight.
        let last = acks[acks.len() - 1];
        assert!(stored == last + 1 || stored == last + 2, "round {round}");
        assert!((0..stored).all(|i| vhost.channels.contains(&channel(i))));
        eprintln!(
            "round {round}: killed after {delay:?}, {} acks, {stored} stored",
            acks.len()
        );
        acknowledged_total += acks.len();
        stored_before = stored;
    }
    assert!(acknowledged_total > 4, "the child made progress");
}
