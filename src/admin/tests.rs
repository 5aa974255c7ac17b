//! The admin API over a real node (threads, data path, storage) and real
//! HTTP on port 0, spoken to with a raw HTTP/1.1 client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Admin, NodeView, WorkerDirectory, WorkerInfo};
use crate::config::Config;
use crate::name::VhostPath;
use crate::server::{Listeners, Server};
use crate::storage::{verify_secret, Store};

struct Node {
    server: Server,
    admin: SocketAddr,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

fn start(workers: Option<Arc<dyn WorkerDirectory>>) -> Node {
    start_with(workers, |_| {})
}

/// [`start`] with the config changed by `edit` first.
fn start_with(workers: Option<Arc<dyn WorkerDirectory>>, edit: impl FnOnce(&mut Config)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    edit(&mut config);
    // The shipped config declares a demo vhost; these tests start empty.
    config.vhosts.clear();
    config.server.websocket_addr = "127.0.0.1:0".parse().unwrap();
    config.server.storage_dir = dir.path().join("data");
    config.server.run_dir = Some(dir.path().join("run"));
    let server = Server::start(&config, Listeners::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let admin = listener.local_addr().unwrap();
    let api = Admin::new(NodeView {
        config: config.clone(),
        cookie: server.cookie.clone(),
        changes: Arc::clone(&server.changes),
        data_path: Arc::clone(&server.data_path),
        cluster: None,
        workers,
    });
    runtime.spawn(api.serve(listener, std::future::pending()));
    Node {
        server,
        admin,
        runtime,
        dir,
    }
}

impl Node {
    fn cookie(&self) -> String {
        self.server.cookie.clone()
    }

    /// `(status, JSON body)` of a request with the node cookie.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let cookie = format!("X-WebRocket-Cookie: {}\r\n", self.cookie());
        let (status, text) = self.raw(method, path, &cookie, body);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `(status, body text)` with `headers` (each ending in CRLF).
    fn raw(&self, method: &str, path: &str, headers: &str, body: Option<Value>) -> (u16, String) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(self.admin).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n{headers}\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }
}

#[test]
fn vhosts_are_added_shown_listed_retokened_and_deleted() {
    let node = start(None);
    let (status, created) = node.call("POST", "/vhosts", Some(json!({"path": "/chat"})));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["path"], "/chat");
    assert_eq!(created["anonymous"], json!([]));
    assert_eq!(created["auto_create_channels"], true);
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 40);

    let (status, again) = node.call("POST", "/vhosts", Some(json!({"path": "/chat"})));
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("ALREADY_EXISTS"))
    );
    let (status, bad) = node.call("POST", "/vhosts", Some(json!({"path": "chat"})));
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("INVALID_VHOST_PATH"))
    );
    let (status, bad) = node.call("POST", "/vhosts", Some(json!({"pth": "/x"})));
    assert_eq!((status, bad["code"].as_str()), (400, Some("BAD_REQUEST")));

    let body = json!({"path": "/a/b", "anonymous": "READ", "auto_create_channels": false});
    assert_eq!(node.call("POST", "/vhosts", Some(body)).0, 201);
    let (_, list) = node.call("GET", "/vhosts", None);
    let paths: Vec<&str> = list["vhosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/a/b", "/chat"]);
    let (status, shown) = node.call("GET", "/vhosts/a%2Fb", None);
    assert_eq!(status, 200);
    assert_eq!(shown["anonymous"], json!(["READ"]));
    assert_eq!(shown["auto_create_channels"], false);

    let (status, fresh) = node.call("POST", "/vhosts/chat/token", None);
    assert_eq!(status, 200);
    assert_ne!(fresh["token"].as_str().unwrap(), token);
    let (_, shown) = node.call("GET", "/vhosts/%2Fchat", None);
    assert_eq!(shown["token"], fresh["token"]);

    assert_eq!(node.call("DELETE", "/vhosts/chat", None).0, 200);
    let (status, missing) = node.call("GET", "/vhosts/chat", None);
    assert_eq!((status, missing["code"].as_str()), (404, Some("NOT_FOUND")));
    assert_eq!(node.call("DELETE", "/vhosts/chat", None).0, 404);
    let (status, cleared) = node.call("DELETE", "/vhosts", None);
    assert_eq!((status, cleared["deleted"].as_u64()), (200, Some(1)));
    assert_eq!(node.call("GET", "/vhosts", None).1, json!({"vhosts": []}));
}

#[test]
fn channels_are_added_listed_deleted_and_cleared() {
    let node = start(None);
    node.call("POST", "/vhosts", Some(json!({"path": "/chat"})));
    for name in ["news", "room.1"] {
        let (status, body) =
            node.call("POST", "/vhosts/chat/channels", Some(json!({"name": name})));
        assert_eq!(status, 201, "{body}");
    }
    let (status, bad) = node.call("POST", "/vhosts/chat/channels", Some(json!({"name": ".x"})));
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("INVALID_CHANNEL_NAME"))
    );
    let (_, list) = node.call("GET", "/vhosts/chat/channels", None);
    assert_eq!(
        list,
        json!({"vhost": "/chat", "channels": ["news", "room.1"]})
    );
    assert_eq!(
        node.call("DELETE", "/vhosts/chat/channels/news", None).0,
        200
    );
    assert_eq!(
        node.call("DELETE", "/vhosts/chat/channels/news", None).0,
        404
    );
    let (_, cleared) = node.call("DELETE", "/vhosts/chat/channels", None);
    assert_eq!(cleared["deleted"], 1);
    let (_, list) = node.call("GET", "/vhosts/chat/channels", None);
    assert_eq!(list["channels"], json!([]));
    assert_eq!(node.call("GET", "/vhosts/nope/channels", None).0, 404);
}

#[test]
fn users_get_hashed_secrets_and_new_permissions() {
    let node = start(None);
    node.call("POST", "/vhosts", Some(json!({"path": "/chat"})));
    let body = json!({"name": "alice", "permissions": "READ|WRITE", "secret": "s3cret"});
    let (status, alice) = node.call("POST", "/vhosts/chat/users", Some(body));
    assert_eq!(status, 201, "{alice}");
    assert_eq!(
        alice,
        json!({"name": "alice", "permissions": ["READ", "WRITE"], "has_secret": true})
    );
    let vhost = VhostPath::parse("/chat").unwrap();
    let hash = node.server.changes.with_state(|state| {
        state.vhosts[&vhost].users["alice"]
            .secret_hash
            .clone()
            .unwrap()
    });
    assert!(verify_secret(&hash, "s3cret"));
    assert!(!hash.contains("s3cret"));

    let body = json!({"name": "bob", "permissions": ["MANAGE"]});
    assert_eq!(node.call("POST", "/vhosts/chat/users", Some(body)).0, 201);
    let body = json!({"name": "eve", "permissions": "FLY"});
    let (status, bad) = node.call("POST", "/vhosts/chat/users", Some(body));
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("INVALID_PERMISSIONS"))
    );
    let body = json!({"name": "eve", "permissions": "READ", "secret": ""});
    assert_eq!(node.call("POST", "/vhosts/chat/users", Some(body)).0, 400);

    let body = json!({"permissions": "READ"});
    let (status, alice) = node.call("PUT", "/vhosts/chat/users/alice/permissions", Some(body));
    assert_eq!(
        (status, alice["permissions"].clone()),
        (200, json!(["READ"]))
    );
    let body = json!({"secret": null});
    let (_, alice) = node.call("PUT", "/vhosts/chat/users/alice/secret", Some(body));
    assert_eq!(alice["has_secret"], false);
    let body = json!({"secret": "new"});
    let (status, _) = node.call("PUT", "/vhosts/chat/users/nobody/secret", Some(body));
    assert_eq!(status, 404);

    let (_, list) = node.call("GET", "/vhosts/chat/users", None);
    assert_eq!(list["users"].as_array().unwrap().len(), 2);
    assert_eq!(node.call("DELETE", "/vhosts/chat/users/bob", None).0, 200);
    assert_eq!(node.call("DELETE", "/vhosts/chat/users/bob", None).0, 404);
}

#[test]
fn every_route_needs_the_cookie() {
    let node = start(None);
    for (method, path) in [
        ("GET", "/vhosts"),
        ("DELETE", "/vhosts"),
        ("GET", "/metrics"),
        ("GET", "/nope"),
    ] {
        let (status, body) = node.raw(method, path, "", None);
        assert_eq!(status, 403, "{method} {path}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], "FORBIDDEN");
        let wrong = "X-WebRocket-Cookie: 0000000000000000000000000000000000000000\r\n";
        assert_eq!(node.raw(method, path, wrong, None).0, 403);
    }
    let bearer = format!("Authorization: Bearer {}\r\n", node.cookie());
    assert_eq!(node.raw("GET", "/vhosts", &bearer, None).0, 200);
    let (status, body) = node.call("GET", "/nope", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, body) = node.call("PATCH", "/vhosts", None);
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED"))
    );
}

#[test]
fn stats_and_metrics_show_counters_and_sizes() {
    let node = start(None);
    node.call("POST", "/vhosts", Some(json!({"path": "/chat"})));
    node.call(
        "POST",
        "/vhosts/chat/channels",
        Some(json!({"name": "news"})),
    );
    let (status, stats) = node.call("GET", "/stats", None);
    assert_eq!(status, 200);
    assert_eq!(stats["node"], "webrocket");
    assert!(stats["counters"]["broker.sessions"].is_i64(), "{stats}");
    assert!(
        stats["counters"]["broker.errors.ACCESS_DENIED"].is_i64(),
        "{stats}"
    );
    assert_eq!(
        stats["totals"],
        json!({"vhosts": 1, "users": 0, "channels": 1})
    );
    assert_eq!(stats["vhosts"][0]["path"], "/chat");

    let cookie = format!("X-WebRocket-Cookie: {}\r\n", node.cookie());
    let (status, text) = node.raw("GET", "/metrics", &cookie, None);
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE webrocket_broker_sessions gauge\nwebrocket_broker_sessions 0\n"),
        "{text}"
    );
    assert!(
        text.contains("webrocket_broker_errors{id=\"ACCESS_DENIED\"} 0"),
        "{text}"
    );
    assert!(text.contains("webrocket_storage_channels 1"), "{text}");
}

struct TwoWorkers;

impl WorkerDirectory for TwoWorkers {
    fn workers(&self, vhost: &VhostPath) -> Vec<WorkerInfo> {
        ["w1", "w2"]
            .iter()
            .map(|id| WorkerInfo {
                identity: format!("dlr:{vhost}:0a1b2c…:{id}"),
                vhost: vhost.to_string(),
                ready_for_ms: 7,
                idle_ms: 5,
                triggers: 1,
            })
            .collect()
    }

    fn counters(&self) -> Vec<(String, i64)> {
        vec![("exchange.workers".into(), 2)]
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        Some("127.0.0.1:4242".parse().unwrap())
    }
}

#[test]
fn workers_come_from_the_directory_when_there_is_one() {
    let node = start(None);
    node.call("POST", "/vhosts", Some(json!({"path": "/chat"})));
    let (status, none) = node.call("GET", "/vhosts/chat/workers", None);
    assert_eq!(status, 200);
    assert_eq!(none["workers"], json!([]));
    assert!(none["note"].is_string());
    assert_eq!(node.call("GET", "/vhosts/nope/workers", None).0, 404);

    let node = start(Some(Arc::new(TwoWorkers)));
    node.call("POST", "/vhosts", Some(json!({"path": "/chat"})));
    let (_, two) = node.call("GET", "/vhosts/chat/workers", None);
    assert_eq!(two["workers"][1]["identity"], "dlr:/chat:0a1b2c…:w2");
    assert_eq!(two["workers"][1]["idle_ms"], 5);
    assert!(two.get("note").is_none());
    let (_, stats) = node.call("GET", "/stats", None);
    assert_eq!(stats["counters"]["exchange.workers"], 2);
    let (_, nodes) = node.call("GET", "/nodes", None);
    assert_eq!(nodes["nodes"][0]["backend_addr"], "127.0.0.1:4242");
}

#[test]
fn nodes_list_this_node() {
    let node = start(None);
    let (status, nodes) = node.call("GET", "/nodes", None);
    assert_eq!(status, 200);
    let this = &nodes["nodes"][0];
    assert_eq!(this["name"], "webrocket");
    assert_eq!(this["state"], "up");
    assert_eq!(this["admin_addr"], node.admin.to_string());
    let websocket = node.server.websocket_addr().to_string();
    assert_eq!(this["websocket_addr"], websocket);
}

#[test]
fn acknowledged_changes_are_on_disk() {
    let mut node = start(None);
    node.call("POST", "/vhosts", Some(json!({"path": "/chat"})));
    node.call(
        "POST",
        "/vhosts/chat/users",
        Some(json!({"name": "a", "permissions": "ALL"})),
    );
    node.runtime.block_on(node.server.shutdown());
    let storage = node.dir.path().join("data");
    let (_, state) = Store::open(&storage).unwrap();
    let vhost = &state.vhosts[&VhostPath::parse("/chat").unwrap()];
    assert!(vhost.users.contains_key("a"));
    drop(node.runtime);
}

#[test]
fn bodies_over_the_limit_are_refused_with_413() {
    let node = start(None);
    let limit = node.server.config.limits.max_admin_body_size;
    let big = json!({ "name": "x".repeat(limit + 16) });
    let (status, body) = node.call("POST", "/vhosts", Some(big));
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE", "{body}");
    let (status, _) = node.call("POST", "/vhosts", Some(json!({ "path": "/fits" })));
    assert_eq!(status, 201);
}

#[test]
fn count_limits_are_enforced_with_409() {
    let node = start_with(None, |config| {
        config.limits.max_vhosts = 1;
        config.limits.max_users_per_vhost = 1;
        config.limits.max_channels_per_vhost = 1;
    });
    let (status, _) = node.call("POST", "/vhosts", Some(json!({"path": "/one"})));
    assert_eq!(status, 201);
    let (status, body) = node.call("POST", "/vhosts", Some(json!({"path": "/two"})));
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("LIMIT_REACHED")),
        "{body}"
    );
    let user = json!({"name": "u1", "permissions": "READ"});
    assert_eq!(node.call("POST", "/vhosts/one/users", Some(user)).0, 201);
    let user = json!({"name": "u2", "permissions": "READ"});
    let (status, body) = node.call("POST", "/vhosts/one/users", Some(user));
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("LIMIT_REACHED")),
        "{body}"
    );
    let channel = json!({"name": "c1"});
    assert_eq!(
        node.call("POST", "/vhosts/one/channels", Some(channel)).0,
        201
    );
    let (status, body) = node.call("POST", "/vhosts/one/channels", Some(json!({"name": "c2"})));
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("LIMIT_REACHED")),
        "{body}"
    );
}
