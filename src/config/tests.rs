use super::*;
use clap::Parser;

fn problems(text: &str) -> Vec<ConfigProblem> {
    Config::parse(text).expect_err("should be rejected").0
}

fn paths(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|p| p.path).collect()
}

#[test]
fn an_empty_file_gives_the_built_in_defaults() {
    let config = Config::parse("").unwrap();
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.backend.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(config.backend.liveness, 3);
    assert_eq!(config.backend.worker_timeout(), Duration::from_secs(6));
    assert!(!config.cluster.enabled());
    assert_eq!(config.log.level, "info");
    assert!(config.vhosts.is_empty());
    assert_eq!(config.server.websocket_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(config.server.backend_addr.to_string(), "127.0.0.1:8081");
    assert_eq!(config.server.admin_addr.to_string(), "127.0.0.1:8082");
}

#[test]
fn the_default_is_the_shipped_file() {
    let config = Config::default();
    assert_eq!(config, Config::parse(DEFAULT_CONFIG_TOML).unwrap());
    let chat = config.vhost("/chat").unwrap();
    assert_eq!(chat.anonymous, Permissions::NONE);
    assert!(chat.auto_create_channels);
    assert_eq!(chat.users[0].name.as_str(), "admin");
    assert_eq!(chat.users[0].permissions, Permissions::ALL);
}

#[test]
fn a_full_file_parses() {
    let config = Config::parse(
        r#"
        [server]
        node_name = "n1"
        websocket_addr = "127.0.0.1:0"
        backend_addr = "127.0.0.1:0"
        admin_addr = "127.0.0.1:0"
        storage_dir = "/var/lib/webrocket"
        run_dir = "/run/webrocket"
        echo_path = "/echo"
        threads = 2
        [tls]
        cert = "c.pem"
        key = "k.pem"
        [limits]
        max_message_size = "1MiB"
        max_pending_bytes = 2097152
        idle_timeout = "0"
        [backend]
        heartbeat_interval = "500ms"
        liveness = 5
        [cluster]
        addr = "0.0.0.0:8083"
        seeds = ["n2:8083", "[::1]:8083"]
        cookie = "0123456789abcdef0123"
        [log]
        level = "warn,webrocket::broker=debug"
        [[vhost]]
        path = "/a"
        anonymous = "READ"
        auto_create_channels = false
        channels = ["x", "y"]
        [[vhost.user]]
        name = "u@example.com"
        permissions = ["WRITE"]
        [[vhost]]
        path = "/b/c"
        "#,
    )
    .unwrap();
    assert_eq!(config.server.nukleus_dir(), Path::new("/run/webrocket/n1"));
    assert_eq!(
        config.server.cookie_path(),
        Path::new("/var/lib/webrocket/n1.cookie")
    );
    assert_eq!(config.server.thread_count(), 2);
    assert!(config.tls.paths().is_some());
    assert_eq!(config.limits.max_message_size, 1 << 20);
    assert_eq!(config.limits.idle_timeout(), None);
    assert_eq!(config.backend.worker_timeout(), Duration::from_millis(2500));
    assert_eq!(config.cluster.seeds[1].port(), 8083);
    assert_eq!(config.vhosts.len(), 2);
    assert_eq!(config.vhosts[0].anonymous, Permissions::READ);
    assert_eq!(config.vhosts[0].users[0].secret_hash, None);
    assert!(config.vhosts[1].auto_create_channels);
    assert!(!format!("{:?}", config.cluster).contains("0123456789abcdef"));
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = r#"
[server]
websocket_addr = "nowhere"
node_name = "a b"
bogus = 1

[limits]
idle_timeout = "5 minutes"
max_frame_size = "64KB"

[backend]
heartbeat_interval = 2

[tls]
cert = "c.pem"

[[vhost]]
path = "chat"

[[vhost]]
path = "/dup"
channels = ["ok", "not ok"]
[[vhost.user]]
name = "x y"
secret_hash = "plain"
[[vhost.user]]
permissions = ["FLY"]

[[vhost]]
path = "/dup"

[typo]
"#;
    let found = problems(text);
    let got: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        got,
        [
            "server.websocket_addr",
            "server.node_name",
            "server.bogus",
            "limits.idle_timeout",
            "limits.max_frame_size",
            "backend.heartbeat_interval",
            "vhost[0].path",
            "vhost[1].channels",
            "vhost[1].user[0].name",
            "vhost[1].user[0].secret_hash",
            "vhost[1].user[1].name",
            "vhost[1].user[1].permissions",
            "typo",
            "tls.key",
            "vhost[2].path",
        ],
        "{found:#?}"
    );
    let by_path = |path: &str| found.iter().find(|p| p.path == path).unwrap();
    let name = by_path("vhost[1].user[0].name");
    assert_eq!(
        name.to_string(),
        r#"vhost[1].user[0].name: invalid user name "x y": character ' ' at byte 1 is not allowed (line 24, column 8)"#
    );
    assert_eq!(by_path("server.websocket_addr").location, Some((3, 18)));
    assert!(by_path("limits.idle_timeout")
        .message
        .contains("invalid duration"));
    assert!(by_path("server.bogus").message.contains("unknown field"));
    assert!(by_path("vhost[1].user[1].name").message.contains("missing"));
    assert!(by_path("vhost[2].path")
        .message
        .contains("duplicate vhost path"));
}

#[test]
fn a_syntax_error_has_a_line_and_column() {
    let found = problems("[server]\nnode_name = \"x\"\nthreads = = 2\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "");
    assert_eq!(found[0].location.map(|l| l.0), Some(3));
}

#[test]
fn wrong_section_types_are_reported() {
    assert_eq!(paths("server = 5\nvhost = \"x\"\n"), ["server", "vhost"]);
    assert_eq!(
        paths("[[vhost]]\npath = \"/a\"\nuser = 3\n"),
        ["vhost[0].user"]
    );
}

#[test]
fn relations_between_values_are_checked() {
    let text = r#"
        [server]
        websocket_addr = "0.0.0.0:9000"
        admin_addr = "127.0.0.1:9000"
        echo_path = "/a"
        threads = 5000
        [limits]
        ring_capacity = "3MiB"
        [backend]
        liveness = 0
        [cluster]
        seeds = ["n2:1"]
        cookie = "short"
        [log]
        level = "loud"
        [[vhost]]
        path = "/a"
        channels = ["x", "x"]
        [[vhost.user]]
        name = "u"
        [[vhost.user]]
        name = "u"
    "#;
    assert_eq!(
        paths(text),
        [
            "server.admin_addr",
            "server.threads",
            "backend.liveness",
            "cluster.seeds",
            "cluster.cookie",
            "log.level",
            "limits.ring_capacity",
            "vhost[0].path",
            "vhost[0].user[1].name",
            "vhost[0].channels[1]",
        ]
    );
}

#[test]
fn port_zero_never_clashes() {
    let text = "[server]\nwebsocket_addr = \"127.0.0.1:0\"\nbackend_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\n";
    assert!(Config::parse(text).is_ok());
}

#[test]
fn secret_hashes_must_be_argon2_phc_strings() {
    let ok = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
    let file = |hash: &str| {
        format!(
            "[[vhost]]\npath = \"/a\"\n[[vhost.user]]\nname = \"u\"\nsecret_hash = \"{hash}\"\n"
        )
    };
    assert!(Config::parse(&file(ok)).is_ok());
    for bad in [
        "",
        "$md5$abc",
        "$pbkdf2-sha256$i=1$c2FsdA$aGFzaA",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
    ] {
        assert_eq!(paths(&file(bad)), ["vhost[0].user[0].secret_hash"], "{bad}");
    }
}

#[test]
fn flags_override_the_file_and_are_validated() {
    let mut config = Config::parse("").unwrap();
    let args = ServerArgs::parse_from([
        "webrocket-server",
        "--websocket-addr",
        "127.0.0.1:9080",
        "--node-name",
        "n7",
        "--storage-dir",
        "/tmp/s",
        "--run-dir",
        "/tmp/r",
        "--echo-path",
        "/echo",
        "--cluster-addr",
        "127.0.0.1:9083",
        "--seed",
        "n8:9083",
    ]);
    config.apply_args(&args).unwrap();
    assert_eq!(config.server.websocket_addr.to_string(), "127.0.0.1:9080");
    assert_eq!(config.server.node_name.as_str(), "n7");
    assert_eq!(config.server.cookie_path(), Path::new("/tmp/s/n7.cookie"));
    assert_eq!(config.server.nukleus_dir(), Path::new("/tmp/r/n7"));
    assert_eq!(config.server.echo_path.as_ref().unwrap().as_str(), "/echo");
    assert_eq!(config.cluster.seeds[0].to_string(), "n8:9083");
    assert_eq!(config.server.backend_addr.to_string(), "127.0.0.1:8081");

    let only_cert = ServerArgs::parse_from(["webrocket-server", "--cert", "c.pem"]);
    let err = config.apply_args(&only_cert).unwrap_err();
    assert_eq!(err.0[0].path, "tls.key");
}

#[test]
fn the_cluster_cookie_comes_from_the_environment() {
    let mut config = Config::parse("[cluster]\ncookie = \"from-the-file-0000\"").unwrap();
    config.apply_env_with(|_| None);
    assert_eq!(config.cluster.cookie.as_deref(), Some("from-the-file-0000"));
    config.apply_env_with(|name| (name == CLUSTER_COOKIE_ENV).then(|| "from-env-000000000".into()));
    assert_eq!(config.cluster.cookie.as_deref(), Some("from-env-000000000"));
}

#[test]
fn the_run_dir_defaults_to_shared_memory() {
    let config = Config::parse("[server]\nnode_name = \"n\"").unwrap();
    let run_dir = config.server.resolved_run_dir();
    if Path::new("/dev/shm").is_dir() {
        assert_eq!(run_dir, Path::new("/dev/shm/webrocket"));
    } else {
        assert_eq!(run_dir, std::env::temp_dir().join("webrocket"));
    }
    assert_eq!(config.nukleus_dir(), run_dir.join("n"));
}

#[test]
fn load_reports_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigLoadError::Read { .. }));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nthreads = \"x\"\n").unwrap();
    let err = Config::load(&bad).unwrap_err();
    assert!(err.to_string().contains("bad.toml"), "{err}");
    assert!(err.to_string().contains("server.threads"), "{err}");
}

#[test]
fn allowed_origins_must_be_origins() {
    let ok = Config::parse(
        "[[vhost]]\npath = \"/chat\"\nallowed_origins = [\"https://a.example\", \"http://localhost:8080\", \"null\"]\n",
    )
    .unwrap();
    assert_eq!(ok.vhost("/chat").unwrap().allowed_origins.len(), 3);
    let long = format!("https://{}.example", "a".repeat(250));
    let text = format!(
        "[[vhost]]\npath = \"/chat\"\nallowed_origins = [\"https://a.example/path\", \"a b\", \"example.com\", \"{long}\", \"https://ok.example\"]\n"
    );
    assert_eq!(
        paths(&text),
        [
            "vhost[0].allowed_origins[0]",
            "vhost[0].allowed_origins[1]",
            "vhost[0].allowed_origins[2]",
            "vhost[0].allowed_origins[3]",
        ]
    );
}
