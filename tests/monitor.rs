//! webrocket-monitor against a real server: WebSocket traffic moves the
//! counters it reads from the node's control files, `--once --json` and
//! `--once` report them, and the terminal UI draws and quits on `q` (in
//! tmux, when tmux is installed).
//!
//! The monitor binary is built with the workspace (`tests/run-all.sh` runs
//! `cargo build --workspace --all-targets` first).

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ServerProcess, BASIC_CONFIG};
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Client = WebSocket<MaybeTlsStream<TcpStream>>;

/// `target/<profile>/webrocket-monitor`, next to this test's own `deps/`.
fn monitor_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join("webrocket-monitor");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace, as tests/run-all.sh does)",
        path.display()
    );
    path
}

fn monitor(args: &[&str]) -> Output {
    Command::new(monitor_binary())
        .args(args)
        .env_remove("WEBROCKET_COOKIE")
        .stdin(Stdio::null())
        .output()
        .expect("run webrocket-monitor")
}

fn connect(server: &ServerProcess) -> Client {
    let (mut ws, _) = tungstenite::connect(server.url("/chat")).expect("connect to /chat");
    let greeting = read_text(&mut ws);
    assert!(
        greeting.starts_with(r#"{"connected":{"sid":""#),
        "{greeting}"
    );
    ws
}

fn read_text(ws: &mut Client) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Subscribes to `news` and broadcasts `count` messages on it, reading
/// every reply and delivery, plus one unknown event for an error count.
/// Returns the number of messages sent.
fn traffic(ws: &mut Client, count: usize) -> usize {
    ws.send(Message::text(r#"{"subscribe": {"channel": "news"}}"#))
        .unwrap();
    assert_eq!(read_text(ws), r#"{"subscribed":"news"}"#);
    for i in 0..count {
        let message =
            format!(r#"{{"broadcast": {{"event": "e", "channel": "news", "data": {i}}}}}"#);
        ws.send(Message::text(message)).unwrap();
        // A delivery (we are subscribed) and the `broadcasted` reply.
        let replies = [read_text(ws), read_text(ws)];
        assert!(
            replies.iter().any(|r| r.contains("broadcasted")),
            "{replies:?}"
        );
    }
    ws.send(Message::text(r#"{"no_such_event": true}"#))
        .unwrap();
    assert!(read_text(ws).contains("UNDEFINED_EVENT"));
    count + 2
}

fn json_snapshot(args: &[&str]) -> Value {
    let output = monitor(args);
    assert!(
        output.status.success(),
        "monitor {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON document")
}

fn value(doc: &Value, label: &str) -> i64 {
    doc["values"][label]
        .as_i64()
        .unwrap_or_else(|| panic!("no {label} in {doc:#}"))
}

/// `--once --json` on the node in `node_dir`, sampled 100 ms apart.
fn once_json_args(node_dir: &str) -> [&str; 6] {
    [
        "--node-dir",
        node_dir,
        "--once",
        "--json",
        "--interval",
        "100ms",
    ]
}

/// Polls `--once --json` until `ready` holds: the broker publishes its
/// counters every 200 ms.
fn wait_for(args: &[&str], ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let doc = json_snapshot(args);
        if ready(&doc) || Instant::now() > deadline {
            return doc;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn once_json_reports_counters_moved_by_traffic() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let node_dir = server.run_dir.to_str().expect("utf-8 path").to_owned();
    let mut ws = connect(&server);
    let sent = traffic(&mut ws, 5) as i64;

    let args = once_json_args(&node_dir);
    let doc = wait_for(&args, |d| {
        d["values"]["broker.messages_in"].as_i64() >= Some(sent)
    });
    assert_eq!(doc["node"], "webrocket", "the node dir names the node");
    assert!(
        doc["source"].as_str().unwrap().starts_with("files "),
        "{doc:#}"
    );
    // The measured time between the two samples: the interval plus the
    // time taking a sample costs.
    let interval = doc["interval_ms"].as_u64().expect("interval_ms");
    assert!((100..1000).contains(&interval), "{interval}");
    assert!(value(&doc, "broker.messages_in") >= sent, "{doc:#}");
    assert_eq!(value(&doc, "broker.sessions"), 1, "one client is connected");
    assert!(value(&doc, "broker.sessions_opened") >= 1);
    assert!(value(&doc, "broker.broadcasts") >= 5);
    assert!(value(&doc, "broker.deliveries") >= 5);
    assert!(value(&doc, "broker.bytes_in") > 0);
    assert!(value(&doc, "broker.messages_out") >= sent);
    assert_eq!(value(&doc, "broker.subscriptions"), 1);
    assert_eq!(value(&doc, "broker.errors.UNDEFINED_EVENT"), 1);
    assert!(
        doc["rates"]["broker.messages_in"].is_number(),
        "counters have rates"
    );
    assert!(
        doc["rates"].get("broker.sessions").is_none(),
        "gauges have none"
    );

    // The same node through --run-dir and --node-name.
    let run_dir = server.run_dir.parent().expect("node dir has a parent");
    let doc = json_snapshot(&[
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--node-name",
        "webrocket",
        "--once",
        "--json",
        "--interval",
        "50ms",
    ]);
    assert!(value(&doc, "broker.messages_in") >= sent);

    // A close is counted by reason once the client leaves.
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    let doc = wait_for(&args, |d| {
        d["values"]["broker.sessions"].as_i64() == Some(0)
    });
    assert_eq!(value(&doc, "broker.sessions"), 0);
    assert_eq!(value(&doc, "broker.closes.client_closed"), 1, "{doc:#}");
}

#[test]
fn once_rates_cover_traffic_during_the_interval() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let mut ws = connect(&server);
    let child = Command::new(monitor_binary())
        .args(["--node-dir", server.run_dir.to_str().unwrap()])
        .args(["--once", "--json", "--interval", "1500ms"])
        .env_remove("WEBROCKET_COOKIE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn monitor");
    // The first sample is taken at once; this traffic falls in the interval.
    std::thread::sleep(Duration::from_millis(300));
    traffic(&mut ws, 20);
    let output = child.wait_with_output().expect("monitor output");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: Value = serde_json::from_slice(&output.stdout).expect("json");
    let rate = doc["rates"]["broker.messages_in"].as_f64().expect("a rate");
    assert!(rate > 5.0, "22 messages in 1.5 s, got {rate}/s: {doc:#}");
    let broadcasts = doc["rates"]["broker.broadcasts"].as_f64().expect("a rate");
    assert!(broadcasts > 5.0, "{doc:#}");
}

#[test]
fn once_plain_text_shows_every_panel() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let mut ws = connect(&server);
    traffic(&mut ws, 3);
    let node_dir = server.run_dir.to_str().unwrap().to_owned();
    let args = [
        "--node-dir",
        &node_dir,
        "--once",
        "--json",
        "--interval",
        "50ms",
    ];
    wait_for(&args, |d| {
        d["values"]["broker.broadcasts"].as_i64() >= Some(3)
    });

    let output = monitor(&["--node-dir", &node_dir, "--once", "--interval", "100ms"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    for heading in [
        "TRAFFIC",
        "SESSIONS",
        "BACKEND",
        "VHOSTS",
        "CLOSES BY REASON",
        "ERRORS BY ID",
        "CLUSTER NODES",
    ] {
        assert!(text.contains(heading), "{heading} missing:\n{text}");
    }
    let broadcasts = text
        .lines()
        .find(|l| l.contains("broadcasts"))
        .expect("row");
    assert!(
        broadcasts.split_whitespace().any(|w| w == "3"),
        "{broadcasts}"
    );
    assert!(text.contains("UNDEFINED_EVENT"), "{text}");
    assert!(text.contains("this node"), "{text}");
}

#[test]
fn missing_node_reports_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("data");
    let output = monitor(&[
        "--run-dir",
        dir.path().to_str().unwrap(),
        "--node-name",
        "ghost",
        "--storage-dir",
        storage.to_str().unwrap(),
        "--once",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no control files under"), "{stderr}");
    assert!(stderr.contains("ghost"), "{stderr}");
    assert!(
        stderr.contains("ghost.cookie"),
        "the admin fallback was tried: {stderr}"
    );
}

/// A tmux server on a private socket, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "mon"]).stdout).into_owned()
    }

    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if screen.contains(what) || Instant::now() > deadline {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn tui_draws_the_panels_and_quits_on_q() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipping the terminal UI test (the drawing is unit-tested with ratatui's TestBackend)");
        return;
    }
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let mut ws = connect(&server);
    traffic(&mut ws, 2);
    let tmux = Tmux {
        socket: format!("webrocket-monitor-test-{}", std::process::id()),
    };
    let command = format!(
        "'{}' --node-dir '{}' --interval 200ms; echo monitor-exit=$?; sleep 60",
        monitor_binary().display(),
        server.run_dir.display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "mon",
        "-x",
        "140",
        "-y",
        "45",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&started.stderr)
    );

    let screen = tmux.wait_for("rates over");
    for text in [
        "webrocket-monitor",
        "node webrocket",
        "Traffic",
        "messages in",
        "Sessions",
        "Workers & triggers",
        "Vhosts",
        "Cluster nodes",
        "this node",
        "Errors by id",
        "UNDEFINED_EVENT",
        "Closes by reason",
        "q, Esc or Ctrl-C to quit",
    ] {
        assert!(
            screen.contains(text),
            "{text:?} missing from the screen:\n{screen}"
        );
    }

    tmux.run(&["send-keys", "-t", "mon", "q"]);
    let screen = tmux.wait_for("monitor-exit=");
    assert!(
        screen.contains("monitor-exit=0"),
        "q did not quit cleanly:\n{screen}"
    );
    assert!(
        !screen.contains("Traffic"),
        "the main screen is restored:\n{screen}"
    );
}

/// A broadcast reaches ws as one MULTICAST for all its subscribers and
/// leaves for tcp as one too (the `ws.multicast*` counters), and every
/// subscriber still gets every message whole and in order, small and large,
/// with its own replies in between.
#[test]
fn a_broadcast_crosses_the_data_path_once_for_all_its_subscribers() {
    let server = ServerProcess::start(BASIC_CONFIG, &[]);
    let node_dir = server.run_dir.to_str().expect("utf-8 path").to_owned();
    let mut subscribers: Vec<Client> = (0..3).map(|_| connect(&server)).collect();
    for ws in &mut subscribers {
        ws.send(Message::text(r#"{"subscribe": {"channel": "wide"}}"#))
            .unwrap();
        assert_eq!(read_text(ws), r#"{"subscribed":"wide"}"#);
    }
    let mut publisher = connect(&server);
    // Sizes around the point where tcp writes a frame without queueing it
    // (the largest stays under the 64 KiB message limit).
    let sizes = [1, 100, 2_100, 30_000, 5];
    let count = 40;
    for i in 0..count {
        let data = "x".repeat(sizes[i % sizes.len()]);
        let message = format!(
            r#"{{"broadcast": {{"event": "e", "channel": "wide", "data": "{i}:{data}"}}}}"#
        );
        publisher.send(Message::text(message)).unwrap();
        // A reply of the subscriber's own between two broadcasts.
        if i == count / 2 {
            subscribers[1]
                .send(Message::text(r#"{"no_such_event": true}"#))
                .unwrap();
        }
    }
    for (n, ws) in subscribers.iter_mut().enumerate() {
        let mut seen = 0;
        let mut errors = 0;
        while seen < count {
            let text = read_text(ws);
            if text.contains("UNDEFINED_EVENT") {
                errors += 1;
                continue;
            }
            let data = format!("{seen}:{}", "x".repeat(sizes[seen % sizes.len()]));
            let expected = format!(r#"{{"e":{{"channel":"wide","data":"{data}","user":null}}}}"#);
            assert!(
                text == expected,
                "subscriber {n}, message {seen}: {:.80}",
                text
            );
            seen += 1;
        }
        if n == 1 && errors == 0 {
            assert!(read_text(ws).contains("UNDEFINED_EVENT"));
        }
    }
    let args = once_json_args(&node_dir);
    let doc = wait_for(&args, |d| {
        d["values"]["ws.multicasts"].as_i64() >= Some(count as i64)
    });
    assert!(value(&doc, "ws.multicasts") >= count as i64, "{doc:#}");
    assert!(
        value(&doc, "ws.multicast_streams") >= 3 * count as i64 / 2,
        "most deliveries left in a MULTICAST to tcp: {doc:#}"
    );
}
