//! Starts the real webrocket-server binary on port 0 for black-box tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server process that is killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub websocket: SocketAddr,
    pub admin: SocketAddr,
    pub run_dir: PathBuf,
    pub dir: tempfile::TempDir,
    pub ready_line: String,
}

impl ServerProcess {
    /// Starts the server with a config file made of `config` and extra flags.
    pub fn start(config: &str, args: &[&str]) -> ServerProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, config, args)
    }

    /// Starts the server keeping its files in `dir` (for restarts).
    pub fn start_in(dir: tempfile::TempDir, config: &str, args: &[&str]) -> ServerProcess {
        let config_path = dir.path().join("webrocket.toml");
        std::fs::write(&config_path, config).expect("write config");
        let storage = dir.path().join("data");
        let run = dir.path().join("run");
        let mut child = Command::new(env!("CARGO_BIN_EXE_webrocket-server"))
            .arg("-c")
            .arg(&config_path)
            .args(["--websocket-addr", "127.0.0.1:0"])
            .args(["--backend-addr", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0"])
            .arg("--storage-dir")
            .arg(&storage)
            .arg("--run-dir")
            .arg(&run)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn webrocket-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready_line = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("webrocket-server ready") => break line,
                Some(Ok(_)) => continue,
                other => panic!("server did not become ready: {other:?}"),
            }
        };
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        let field = |name: &str| -> String {
            ready_line
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {ready_line}"))
                .to_string()
        };
        let websocket = field("websocket").parse().expect("websocket addr");
        let run_dir = PathBuf::from(field("run_dir"));
        let admin = field("admin").parse().expect("admin addr");
        ServerProcess {
            child,
            websocket,
            admin,
            run_dir,
            dir,
            ready_line,
        }
    }

    /// The cluster address from the ready line.
    pub fn cluster_addr(&self) -> SocketAddr {
        let field = self
            .ready_line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("cluster="))
            .unwrap_or_else(|| panic!("no cluster= in {}", self.ready_line));
        field.parse().expect("the node's cluster address")
    }

    /// The ws:// URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.websocket, path)
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(mut self) -> tempfile::TempDir {
        unsafe_free_sigterm(self.child.id());
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }
}

fn unsafe_free_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a raw HTTP request and returns the whole response (until close or
/// timeout).
pub fn http(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// A config with one open vhost and the echo endpoint.
pub const BASIC_CONFIG: &str = r#"
[server]
echo_path = "/echo"

[[vhost]]
path = "/chat"
anonymous = ["READ", "WRITE"]
"#;
