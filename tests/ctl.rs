//! webrocket-ctl against a real server process: every command, its effect
//! on WebSocket clients, persistence across a restart, the cookie, and the
//! exit codes.
//!
//! The ctl binary belongs to another package, so cargo does not build it
//! for these tests: `tests/run-all.sh` builds the workspace first (by hand:
//! `cargo build -p webrocket-ctl`).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::ServerProcess;
use serde_json::{json, Value};
use tungstenite::Message;

/// No vhosts from the config: the tests make their own.
const EMPTY_CONFIG: &str = "[server]\n";

/// webrocket-ctl, beside the server binary cargo built for these tests.
fn ctl_binary() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_BIN_EXE_webrocket-server")).with_file_name("webrocket-ctl");
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace, as tests/run-all.sh does)",
        path.display()
    );
    path
}

/// Runs ctl against `server`, which it finds by address and storage
/// directory (so it reads the cookie file itself), feeding `stdin`.
fn ctl_with(server: &ServerProcess, args: &[&str], stdin: &str, extra: &[&str]) -> Output {
    let mut child = Command::new(ctl_binary())
        .arg("--admin-addr")
        .arg(server.admin.to_string())
        .arg("--storage-dir")
        .arg(server.dir.path().join("data"))
        .args(extra)
        .args(args)
        .env_remove("WEBROCKET_COOKIE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn webrocket-ctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for webrocket-ctl")
}

/// Runs ctl and expects success; returns its stdout.
fn ok(server: &ServerProcess, args: &[&str]) -> String {
    ok_in(server, args, "")
}

fn ok_in(server: &ServerProcess, args: &[&str], stdin: &str) -> String {
    let output = ctl_with(server, args, stdin, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "ctl {args:?} failed: {stdout}{stderr}"
    );
    stdout
}

/// Runs ctl with `--json` and parses what it prints.
fn json_of(server: &ServerProcess, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(server, &all)).expect("--json output parses")
}

/// Runs ctl and expects exit code `code`; returns its stderr.
fn fails(server: &ServerProcess, args: &[&str], extra: &[&str], code: i32) -> String {
    let output = ctl_with(server, args, "", extra);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "ctl {args:?}: {stderr}");
    stderr
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn connect(server: &ServerProcess, vhost: &str) -> Socket {
    let (socket, response) = tungstenite::connect(server.url(vhost)).expect("connect");
    assert_eq!(response.status(), 101);
    let mut socket = socket;
    let greeting = read_json(&mut socket);
    assert!(
        greeting.get("connected").is_some(),
        "first message {greeting}"
    );
    socket
}

fn read_json(socket: &mut Socket) -> Value {
    loop {
        match socket.read().expect("read") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON reply"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Sends one client event and returns the reply.
fn ask(socket: &mut Socket, event: Value) -> Value {
    socket.send(Message::text(event.to_string())).expect("send");
    read_json(socket)
}

fn authenticate(socket: &mut Socket, user: &str, secret: &str) -> Value {
    ask(
        socket,
        json!({"authenticate": {"user": user, "secret": secret}}),
    )
}

#[test]
fn vhost_commands_change_what_clients_can_reach() {
    let server = ServerProcess::start(EMPTY_CONFIG, &[]);
    assert_eq!(ok(&server, &["list_vhosts"]), "no vhosts\n");
    let added = ok(&server, &["add_vhost", "/chat"]);
    assert!(added.starts_with("vhost /chat added\ntoken: "), "{added}");
    connect(&server, "/chat");

    let stderr = fails(&server, &["add_vhost", "/chat"], &[], 1);
    assert!(
        stderr.contains("already exists") && stderr.contains("ALREADY_EXISTS"),
        "{stderr}"
    );

    let shown = json_of(&server, &["show_vhost", "/chat"]);
    let token = shown["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 40);
    let text = ok(&server, &["show_vhost", "/chat"]);
    assert!(text.contains(&format!("token: {token}")), "{text}");
    let fresh = ok(&server, &["regenerate_vhost_token", "/chat"]);
    let fresh = fresh
        .trim()
        .strip_prefix("token: ")
        .expect("token line")
        .to_owned();
    assert_ne!(fresh, token);
    assert_eq!(json_of(&server, &["show_vhost", "/chat"])["token"], fresh);

    ok(&server, &["add_vhost", "/a/b", "--anonymous", "READ"]);
    let listed = json_of(&server, &["list_vhosts"]);
    assert_eq!(listed["vhosts"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        ok(&server, &["list_vhosts"]),
        "/a/b  users: 0  channels: 0\n/chat  users: 0  channels: 0\n"
    );

    assert_eq!(
        ok(&server, &["delete_vhost", "/chat"]),
        "vhost /chat deleted\n"
    );
    assert!(
        tungstenite::connect(server.url("/chat")).is_err(),
        "deleted vhost still served"
    );
    fails(&server, &["show_vhost", "/chat"], &[], 1);
    assert_eq!(ok(&server, &["clear_vhosts"]), "1 vhost(s) deleted\n");
    assert_eq!(ok(&server, &["list_vhosts"]), "no vhosts\n");
}

#[test]
fn channel_commands() {
    let server = ServerProcess::start(EMPTY_CONFIG, &[]);
    ok(&server, &["add_vhost", "/chat"]);
    assert_eq!(
        ok(&server, &["add_channel", "/chat", "news"]),
        "channel news added to /chat\n"
    );
    ok(&server, &["add_channel", "/chat", "sports"]);
    assert_eq!(ok(&server, &["list_channels", "/chat"]), "news\nsports\n");
    assert_eq!(
        ok(&server, &["delete_channel", "/chat", "news"]),
        "channel news deleted from /chat\n"
    );
    fails(&server, &["delete_channel", "/chat", "news"], &[], 1);
    let listed = json_of(&server, &["list_channels", "/chat"]);
    assert_eq!(listed, json!({"vhost": "/chat", "channels": ["sports"]}));
    assert_eq!(
        ok(&server, &["clear_channels", "/chat"]),
        "1 channel(s) deleted from /chat\n"
    );
    assert_eq!(ok(&server, &["list_channels", "/chat"]), "no channels\n");
    let stderr = fails(&server, &["list_channels", "/nope"], &[], 1);
    assert!(stderr.contains("not found"), "{stderr}");
}

#[test]
fn user_commands_decide_who_authenticates_and_what_they_may_do() {
    let server = ServerProcess::start(EMPTY_CONFIG, &[]);
    ok(&server, &["add_vhost", "/chat"]);
    let added = ok_in(&server, &["add_user", "/chat", "alice", "READ"], "s3cret\n");
    assert_eq!(added, "user added: alice  READ  (secret)\n");

    let mut socket = connect(&server, "/chat");
    assert_eq!(
        authenticate(&mut socket, "alice", "wrong")["err"],
        "INVALID_CREDENTIALS"
    );
    assert_eq!(
        authenticate(&mut socket, "alice", "s3cret"),
        json!({"authenticated": "alice"})
    );
    assert_eq!(
        ask(&mut socket, json!({"subscribe": {"channel": "news"}})),
        json!({"subscribed": "news"})
    );
    let broadcast = json!({"broadcast": {"event": "hi", "channel": "news", "data": 1}});
    assert_eq!(ask(&mut socket, broadcast.clone())["err"], "ACCESS_DENIED");

    let updated = ok(
        &server,
        &["set_permissions", "/chat", "alice", "READ|WRITE"],
    );
    assert_eq!(updated, "user updated: alice  READ|WRITE  (secret)\n");
    let mut socket = connect(&server, "/chat");
    authenticate(&mut socket, "alice", "s3cret");
    ask(&mut socket, json!({"subscribe": {"channel": "news"}}));
    // The sender is subscribed: it gets the delivery and the reply.
    let first = ask(&mut socket, broadcast);
    let second = match socket.read().expect("read") {
        Message::Text(text) => serde_json::from_str::<Value>(text.as_str()).expect("JSON"),
        other => panic!("unexpected {other:?}"),
    };
    let delivery = json!({"hi": {"channel": "news", "data": 1, "user": "alice"}});
    let replies = [first, second];
    assert!(
        replies.contains(&json!({"broadcasted": "news"})),
        "{replies:?}"
    );
    assert!(replies.contains(&delivery), "{replies:?}");

    ok_in(&server, &["set_secret", "/chat", "alice"], "n3w\n");
    let mut socket = connect(&server, "/chat");
    assert_eq!(
        authenticate(&mut socket, "alice", "s3cret")["err"],
        "INVALID_CREDENTIALS"
    );
    assert_eq!(
        authenticate(&mut socket, "alice", "n3w"),
        json!({"authenticated": "alice"})
    );
    let stderr = fails(&server, &["set_secret", "/chat", "alice"], &[], 2);
    assert!(stderr.contains("empty secret"), "{stderr}");

    ok(
        &server,
        &["add_user", "/chat", "bob", "NONE", "--no-secret"],
    );
    assert_eq!(
        ok(&server, &["list_users", "/chat"]),
        "alice  READ|WRITE  (secret)\nbob  NONE  (no secret)\n"
    );
    assert_eq!(
        ok(&server, &["delete_user", "/chat", "bob"]),
        "user bob deleted from /chat\n"
    );
    let users = json_of(&server, &["list_users", "/chat"]);
    assert_eq!(
        users["users"],
        json!([{"name": "alice", "permissions": ["READ", "WRITE"], "has_secret": true}])
    );
    fails(&server, &["delete_user", "/chat", "bob"], &[], 1);
}

#[test]
fn worker_and_node_commands() {
    let server = ServerProcess::start(EMPTY_CONFIG, &[]);
    ok(&server, &["add_vhost", "/chat"]);
    assert!(ok(&server, &["list_workers", "/chat"]).starts_with("no workers"));
    let workers = json_of(&server, &["list_workers", "/chat"]);
    assert_eq!(workers["workers"], json!([]));
    fails(&server, &["list_workers", "/nope"], &[], 1);

    let nodes = ok(&server, &["list_nodes"]);
    assert!(nodes.starts_with("webrocket  up  uptime "), "{nodes}");
    assert!(
        nodes.contains(&format!("websocket={}", server.websocket)),
        "{nodes}"
    );
    assert!(
        !nodes.contains("backend=127.0.0.1:0 "),
        "port 0 resolved: {nodes}"
    );
    let nodes = json_of(&server, &["list_nodes"]);
    assert_eq!(nodes["nodes"][0]["admin_addr"], server.admin.to_string());
    assert_eq!(nodes["nodes"][0]["state"], "up");
}

#[test]
fn changes_survive_a_restart() {
    let server = ServerProcess::start(EMPTY_CONFIG, &[]);
    ok(&server, &["add_vhost", "/keep"]);
    ok(&server, &["add_channel", "/keep", "news"]);
    ok(
        &server,
        &["add_user", "/keep", "carol", "ALL", "--secret", "pw"],
    );
    let before = json_of(&server, &["show_vhost", "/keep"]);
    let dir = server.stop();

    let server = ServerProcess::start_in(dir, EMPTY_CONFIG, &[]);
    assert_eq!(json_of(&server, &["show_vhost", "/keep"]), before);
    assert_eq!(before["channels"], json!(["news"]));
    let mut socket = connect(&server, "/keep");
    assert_eq!(
        authenticate(&mut socket, "carol", "pw"),
        json!({"authenticated": "carol"})
    );
}

#[test]
fn the_cookie_is_required_and_checked() {
    let server = ServerProcess::start(EMPTY_CONFIG, &[]);
    let wrong = "0000000000000000000000000000000000000000";
    let stderr = fails(&server, &["list_vhosts"], &["--cookie", wrong], 1);
    assert!(
        stderr.contains("FORBIDDEN") && stderr.contains("403"),
        "{stderr}"
    );

    let cookie = std::fs::read_to_string(server.dir.path().join("data/webrocket.cookie")).unwrap();
    let output = Command::new(ctl_binary())
        .args(["--admin-addr", &server.admin.to_string(), "list_vhosts"])
        .env("WEBROCKET_COOKIE", cookie.trim())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let output = Command::new(ctl_binary())
        .args(["--admin-addr", &server.admin.to_string(), "list_vhosts"])
        .env("WEBROCKET_COOKIE", wrong)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));

    let stderr = fails(&server, &["list_vhosts"], &["--node-name", "other"], 2);
    assert!(stderr.contains("other.cookie"), "{stderr}");
    let stderr = fails(
        &server,
        &["list_vhosts"],
        &["--admin-addr", "127.0.0.1:1"],
        3,
    );
    assert!(
        stderr.contains("cannot talk to the admin endpoint"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    let server = ServerProcess::start(EMPTY_CONFIG, &[]);
    for args in [
        &["add_vhost", "chat"][..],
        &["add_vhost"],
        &["add_channel", "/chat", "bad name"],
        &["add_user", "/chat", "alice", "FLY"],
        &["set_permissions", "/chat", ".alice", "READ"],
        &["no_such_command"],
        &[],
    ] {
        fails(&server, args, &[], 2);
    }
    assert_eq!(
        ok(&server, &["list_vhosts"]),
        "no vhosts\n",
        "nothing was changed"
    );
    let help = ok(&server, &["add_user", "--help"]);
    assert!(help.contains("Usage: webrocket-ctl add_user"), "{help}");
    assert!(help.contains("Discouraged"), "{help}");
    let help = ok(&server, &["--help"]);
    for command in [
        "list_vhosts",
        "regenerate_vhost_token",
        "clear_channels",
        "set_secret",
        "list_nodes",
    ] {
        assert!(help.contains(command), "{command} missing from {help}");
    }
}
