//! Rings across processes: each test re-executes its own binary as the
//! writer (told so by environment variables) on a file in a tempdir, while
//! the parent reads and checks every record: once, intact, in order per
//! writer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use webrocket::stream::{ControlFile, ControlLayout, StreamsFile};

/// Which child role the re-executed binary plays.
const ROLE: &str = "WEBROCKET_RING_TEST_ROLE";
/// The shared file.
const FILE: &str = "WEBROCKET_RING_TEST_FILE";
/// The child's writer id.
const WRITER: &str = "WEBROCKET_RING_TEST_WRITER";

const COUNT: u64 = 20_000;
const DEADLINE: Duration = Duration::from_secs(30);
const DONE: i32 = 0x4000_0001;

/// Writer, sequence, a sequence-derived payload and a CRC over all of it.
fn body(writer: u8, seq: u64) -> Vec<u8> {
    let mut body = vec![writer];
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend((0..seq % 53).map(|i| (seq as u8) ^ (i as u8)));
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// Checks a body and the per-writer order; returns the writer.
fn check(body: &[u8], next: &mut [u64]) -> usize {
    let (data, crc) = body.split_at(body.len() - 4);
    assert_eq!(crc32fast::hash(data).to_le_bytes(), crc, "torn record");
    let writer = usize::from(data[0]);
    let seq = u64::from_le_bytes(data[1..9].try_into().unwrap());
    assert_eq!(seq, next[writer], "writer {writer}: lost or reordered");
    assert_eq!(body, &self::body(data[0], seq)[..]);
    next[writer] += 1;
    writer
}

fn spawn(test: &str, role: &str, path: &Path, writer: u8) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(FILE, path)
        .env(WRITER, writer.to_string())
        .stdout(Stdio::null()) // the harness chatter; panics go to stderr
        .spawn()
        .unwrap()
}

/// The role this process plays, if it is a child, with its file and id.
fn child_role() -> Option<(String, PathBuf, u8)> {
    let role = std::env::var(ROLE).ok()?;
    let path = PathBuf::from(std::env::var(FILE).unwrap());
    let writer = std::env::var(WRITER).unwrap().parse().unwrap();
    Some((role, path, writer))
}

/// Retries `attempt` until it succeeds or the deadline passes.
fn until(started: Instant, what: &str, mut attempt: impl FnMut() -> bool) {
    while !attempt() {
        assert!(started.elapsed() < DEADLINE, "timed out: {what}");
        // Spinning, not yielding, keeps writers racing for the tail.
        std::hint::spin_loop();
    }
}

/// The writer processes; killed if the parent fails first, so no child
/// outlives a failed test.
struct Children(Vec<Child>);

impl Children {
    /// Fails if a child already exited unsuccessfully.
    fn assert_running(&mut self) {
        for child in &mut self.0 {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "child writer failed early: {status}");
            }
        }
    }

    fn assert_exited_ok(mut self) {
        for mut child in self.0.drain(..) {
            assert!(child.wait().unwrap().success(), "child writer failed");
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn streams_file_between_processes() {
    if let Some((role, path, writer)) = child_role() {
        if role == "streams" {
            streams_writer(&path, writer);
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ws/streams/tcp");
    let file = StreamsFile::create(&path, 4096).unwrap();
    let mut children = Children(vec![spawn(
        "streams_file_between_processes",
        "streams",
        &path,
        0,
    )]);
    let started = Instant::now();
    let mut next = [0u64];
    let mut seen = 0u64;
    until(started, "forward records", || {
        let read = file.forward.read(64, |type_id, body| {
            assert_eq!(type_id, 2);
            check(body, &mut next);
        });
        seen += read as u64;
        if seen < COUNT {
            children.assert_running();
        }
        seen >= COUNT
    });
    assert_eq!(file.forward.read(usize::MAX, |_, _| panic!("extra")), 0);
    file.throttle.write(DONE, &[&seen.to_le_bytes()]).unwrap();
    children.assert_exited_ok();
}

fn streams_writer(path: &Path, writer: u8) {
    let file = StreamsFile::open(path).unwrap();
    let started = Instant::now();
    for seq in 0..COUNT {
        let body = body(writer, seq);
        until(started, "forward space", || {
            file.forward.write(2, &[&body]).is_ok()
        });
    }
    let mut done = None;
    until(started, "throttle DONE", || {
        file.throttle.read(1, |type_id, body| {
            done = Some((type_id, u64::from_le_bytes(body.try_into().unwrap())));
        });
        done.is_some()
    });
    assert_eq!(done, Some((DONE, COUNT)));
}

#[test]
fn control_commands_from_two_processes() {
    if let Some((role, path, writer)) = child_role() {
        if role == "commands" {
            command_writer(&path, writer);
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tcp/control");
    let layout = ControlLayout {
        commands: 4096,
        responses: 1024,
        counters: 1024,
    };
    let mut control = ControlFile::create(&path, layout).unwrap();
    let received = control.counters.allocate("commands.received").unwrap();
    let test = "control_commands_from_two_processes";
    let mut children = Children((0..2).map(|w| spawn(test, "commands", &path, w)).collect());
    let started = Instant::now();
    let mut next = [0u64; 2];
    let mut correlations = std::collections::HashSet::new();
    let mut finished = Vec::new();
    until(started, "commands", || {
        control.commands.read(64, |type_id, body| {
            assert_eq!(type_id, 0x11);
            let (id, body) = body.split_at(8);
            assert!(correlations.insert(i64::from_le_bytes(id.try_into().unwrap())));
            let writer = check(body, &mut next);
            received.increment();
            if next[writer] == COUNT {
                finished.push(writer as u8);
            }
        });
        for writer in finished.drain(..) {
            control.responses.transmit(DONE, &[writer]).unwrap();
        }
        if next.iter().any(|&n| n < COUNT) {
            children.assert_running();
        }
        next.iter().all(|&n| n == COUNT)
    });
    assert_eq!(received.get(), 2 * COUNT as i64);
    children.assert_exited_ok();
}

fn command_writer(path: &Path, writer: u8) {
    let mut control = ControlFile::open(path).unwrap();
    let started = Instant::now();
    for seq in 0..COUNT {
        let id = control.commands.next_correlation_id();
        let body = body(writer, seq);
        until(started, "command space", || {
            control
                .commands
                .write(0x11, &[&id.to_le_bytes(), &body])
                .is_ok()
        });
    }
    let mut done = false;
    until(started, "DONE response", || {
        control.responses.receive(|type_id, body| {
            done |= type_id == DONE && body == [writer];
        });
        done
    });
    let mut counted = None;
    control.counters.for_each(|_, label, value| {
        if label == "commands.received" {
            counted = Some(value);
        }
    });
    let counted = counted.expect("counter visible to the client");
    assert!(counted >= COUNT as i64, "counter {counted} < {COUNT}");
}
