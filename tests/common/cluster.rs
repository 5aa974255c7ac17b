//! Three (or more) real webrocket-server processes forming a cluster on
//! loopback, for black-box cluster tests.
//!
//! Every port is bound by the node itself on port 0 and read back from
//! its ready line (`cluster=`); a restarted node asks for the cluster
//! address it had, so its peers find it where they knew it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::ServerProcess;

/// The cluster cookie every test node shares.
pub const COOKIE: &str = "test-cluster-cookie-0123456789abcdef";

/// Nodes `n0..nN` with their cluster addresses. Node `i > 0` is given node
/// `i - 1` as its only seed, so the others are learnt by gossip.
pub struct TestCluster {
    /// The running nodes (`None` while stopped).
    pub nodes: Vec<Option<ServerProcess>>,
    /// Each node's cluster address, as its ready line said.
    pub addrs: Vec<SocketAddr>,
    config: String,
}

impl TestCluster {
    /// Starts `n` nodes with `config` plus a `[cluster]` section.
    pub fn start(n: usize, config: &str) -> TestCluster {
        Self::start_with(n, config, "")
    }

    /// [`TestCluster::start`] with more `[cluster]` keys (`cluster`).
    pub fn start_with(n: usize, config: &str, cluster: &str) -> TestCluster {
        let config = format!("{config}\n[cluster]\ncookie = \"{COOKIE}\"\n{cluster}\n");
        let mut cluster = TestCluster {
            nodes: Vec::new(),
            addrs: Vec::new(),
            config,
        };
        for i in 0..n {
            let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
            let node = cluster.spawn(i, any, tempfile::tempdir().expect("tempdir"));
            cluster.addrs.push(node.cluster_addr());
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    fn spawn(&self, i: usize, addr: SocketAddr, dir: tempfile::TempDir) -> ServerProcess {
        let name = format!("n{i}");
        let addr = addr.to_string();
        let mut args = vec!["--node-name", &name, "--cluster-addr", &addr];
        let seed = i.checked_sub(1).map(|j| self.addrs[j].to_string());
        if let Some(seed) = &seed {
            args.extend(["--seed", seed]);
        }
        ServerProcess::start_in(dir, &self.config, &args)
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &ServerProcess {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// Kills node `i` with SIGKILL and keeps its files for a restart.
    pub fn kill(&mut self, i: usize) -> tempfile::TempDir {
        let mut node = self.nodes[i].take().expect("node is running");
        signal(node.child.id(), "-KILL");
        let _ = node.child.wait();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut node.dir, dir)
    }

    /// Starts node `i` again on the same addresses and files.
    pub fn restart(&mut self, i: usize, dir: tempfile::TempDir) {
        let node = self.spawn(i, self.addrs[i], dir);
        self.nodes[i] = Some(node);
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to node `i`.
    pub fn signal(&self, i: usize, sig: &str) {
        signal(self.node(i).child.id(), sig);
    }

    /// Node `i`'s counters.
    pub fn counters(&self, i: usize) -> BTreeMap<String, i64> {
        webrocket::admin::stats::read_counters(&self.node(i).run_dir)
    }

    /// One counter of node `i` (0 when absent).
    pub fn counter(&self, i: usize, label: &str) -> i64 {
        self.counters(i).get(label).copied().unwrap_or(0)
    }

    /// Waits until node `i` sees peer `peer` up (`true`) or down.
    pub fn wait_peer(&self, i: usize, peer: usize, up: bool, within: Duration) {
        let label = format!("cluster.peer.n{peer}.up");
        let want = i64::from(up);
        assert!(
            wait_until(within, || self.counter(i, &label) == want),
            "n{i} does not see n{peer} {} within {within:?}: {:?}",
            if up { "up" } else { "down" },
            self.counters(i)
        );
    }

    /// Waits until every other running node knows that node `i` has
    /// subscribers for `channels` channels (interest travels after the
    /// `subscribed` answer, asynchronously).
    pub fn wait_interest(&self, i: usize, channels: i64, within: Duration) {
        let label = format!("cluster.peer.n{i}.interest");
        for j in (0..self.nodes.len()).filter(|&j| j != i && self.nodes[j].is_some()) {
            assert!(
                wait_until(within, || self.counter(j, &label) == channels),
                "n{j} does not see n{i}'s interest in {channels} channels within {within:?}: {:?}",
                self.counters(j)
            );
        }
    }

    /// Waits until every running node sees every other running node up.
    pub fn wait_formed(&self, within: Duration) {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect();
        for &i in &running {
            for &j in &running {
                if i != j {
                    self.wait_peer(i, j, true, within);
                }
            }
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Polls `ready` every 50 ms until it holds or `within` passes.
pub fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A blocking WebSocket client that can also wait a short while for a
/// message that may not come.
pub struct Ws {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
}

impl Ws {
    /// Connects to `url`.
    pub fn connect(url: &str) -> Ws {
        let (ws, _) = tungstenite::connect(url).expect("ws connect");
        let mut ws = Ws { ws };
        ws.timeout(Duration::from_secs(5));
        let greeting = ws.recv();
        assert!(
            greeting["connected"]["sid"].as_str().map(str::len) == Some(32),
            "first message {greeting}"
        );
        ws
    }

    fn timeout(&mut self, wait: Duration) {
        if let tungstenite::stream::MaybeTlsStream::Plain(stream) = self.ws.get_ref() {
            stream.set_read_timeout(Some(wait)).expect("timeout");
        }
    }

    /// Sends `{event: payload}`.
    pub fn send(&mut self, event: &str, payload: serde_json::Value) {
        let text = serde_json::json!({ event: payload }).to_string();
        self.ws
            .send(tungstenite::Message::text(text))
            .expect("ws send");
    }

    /// The next JSON message (5 s at most).
    pub fn recv(&mut self) -> serde_json::Value {
        self.try_recv(Duration::from_secs(5))
            .expect("a message within 5 s")
    }

    /// The next JSON message, or `None` after `wait`.
    pub fn try_recv(&mut self, wait: Duration) -> Option<serde_json::Value> {
        self.timeout(wait);
        loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(text)) => {
                    return Some(serde_json::from_str(text.as_str()).expect("json"))
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("ws read: {e}"),
            }
        }
    }

    /// Sends a request and returns the next message.
    pub fn request(&mut self, event: &str, payload: serde_json::Value) -> serde_json::Value {
        self.send(event, payload);
        self.recv()
    }
}
