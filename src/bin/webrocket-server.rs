//! webrocket-server: runs one webrocket node.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use webrocket::admin::Admin;
use webrocket::cluster::Cluster;
use webrocket::config::{Config, ServerArgs};
use webrocket::exchange;
use webrocket::protocol::CloseReason;
use webrocket::server::Server;

fn load(args: &ServerArgs) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    config.apply_env();
    config.apply_args(args).map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn main() -> ExitCode {
    let args = ServerArgs::parse();
    if args.print_default_config {
        print!("{}", webrocket::config::DEFAULT_CONFIG_TOML);
        return ExitCode::SUCCESS;
    }
    let config = match load(&args) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("webrocket-server: bad configuration:\n{problems}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // The consensus engine is chatty about peers that are down;
        // its warnings are enough unless asked for with RUST_LOG.
        tracing_subscriber::EnvFilter::new(format!("{},openraft=warn", config.log.level))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("webrocket-server: cannot start runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Bound before the node starts, so its address (port 0 resolved) is
    // known and the broker gets its backend from the start.
    let (exchange, backend_addr) = match runtime.block_on(exchange::bind(&config)) {
        Ok(bound) => bound,
        Err(error) => {
            eprintln!("webrocket-server: backend exchange: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The cluster's ROUTER is bound before the node starts too: the broker's
    // backend hands triggers to other nodes when this one has no worker.
    let cluster = match runtime.block_on(Cluster::bind(&config)) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("webrocket-server: cluster: {error}");
            return ExitCode::FAILURE;
        }
    };
    let start = Server::start(&config, |handle| match &cluster {
        Some(cluster) => cluster.backend(exchange.backend(handle)),
        None => exchange.backend(handle),
    });
    let mut server = match start {
        Ok(server) => server,
        Err(error) => {
            eprintln!("webrocket-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(cluster) = &cluster {
        let handle = Arc::clone(&server.handle);
        let workers: Arc<dyn webrocket::admin::WorkerDirectory> = Arc::new(exchange.clone());
        runtime.block_on(async { cluster.start(handle, Some(workers)) });
    }
    // The admin API shares the runtime; bound here so that port 0 can be
    // reported in the ready line.
    let admin_listener =
        match runtime.block_on(tokio::net::TcpListener::bind(config.server.admin_addr)) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!(
                    "webrocket-server: admin endpoint {}: {error}",
                    config.server.admin_addr
                );
                return ExitCode::FAILURE;
            }
        };
    let admin_addr = admin_listener
        .local_addr()
        .unwrap_or(config.server.admin_addr);
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = Admin::new(Arc::clone(&server.handle)).with_workers(Arc::new(exchange.clone()));
    let admin_task = runtime.spawn(async move {
        let stopped = async {
            let _ = admin_stopped.await;
        };
        if let Err(error) = admin.serve(admin_listener, stopped).await {
            tracing::error!(%error, "admin endpoint failed");
        }
    });
    // One line for people and scripts (tests read the addresses from it).
    println!(
        "webrocket-server ready node={} websocket={} backend={} admin={} run_dir={}",
        config.server.node_name,
        server.handle.websocket_addr(),
        backend_addr,
        admin_addr,
        server.handle.run_dir.display()
    );
    runtime.block_on(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    eprintln!("webrocket-server: cannot watch SIGTERM: {error}");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
    tracing::info!("shutting down");
    // A clustered node leaves gracefully: no new clients, the peers count it
    // out at once (and take over its channels), then its clients are told
    // to reconnect elsewhere (1012) rather than that the service is gone.
    if let Some(cluster) = &cluster {
        server.stop_accepting();
        runtime.block_on(cluster.leave());
        server.close_sessions(CloseReason::Leaving);
    }
    let _ = stop_admin.send(());
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(2), admin_task).await;
    });
    if let Some(cluster) = &cluster {
        cluster.shutdown();
    }
    runtime.block_on(exchange.shutdown());
    server.shutdown();
    ExitCode::SUCCESS
}
