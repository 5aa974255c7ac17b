//! webrocket-server: runs one webrocket node. Parses the command line and
//! the configuration, sets up logging and the runtime, and hands over to
//! [`webrocket::server::run`].

use std::process::ExitCode;

use clap::Parser;
use webrocket::config::{Config, ServerArgs};
use webrocket::server::{self, Listeners};

fn load(args: &ServerArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.apply_env();
    config.apply_args(args)?;
    config.validate()?;
    Ok(config)
}

/// Completes on SIGINT or SIGTERM.
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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
    let result = runtime.block_on(async {
        let listeners = Listeners::bind(&config).await?;
        server::run(config, listeners, terminated()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("webrocket-server: {error}");
            ExitCode::FAILURE
        }
    }
}
