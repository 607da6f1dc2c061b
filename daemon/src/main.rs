//! `shoald`: run a fleet node, or a local dev fleet.

use anyhow::Context;
use clap::Parser;
use shoal_daemon::cli::{Cli, Commands};
use shoal_daemon::node::shutdown_signal;
use shoal_daemon::{Listeners, Node, Settings, dev};

fn main() -> anyhow::Result<()> {
    // A panic leaves a node half-alive; abort so systemd restarts it whole.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    // openraft logs every failed replication attempt to an unreachable machine; the
    // leader's own status transitions say the same thing once.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG").unwrap_or_else(|_| {
                "info,openraft=warn,openraft::replication=off,chitchat=warn,libp2p=warn".into()
            }),
        )
        .init();

    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Some(Commands::Dev(args)) => dev::run(args).await,
            Some(Commands::Diagnose { data_dir, config }) => {
                let data_dir = match data_dir {
                    Some(dir) => dir,
                    None => Settings::load(config.as_deref())?.data_dir,
                };
                if !shoal_daemon::diagnose::print_diagnosis(&data_dir).await? {
                    std::process::exit(1);
                }
                Ok(())
            }
            Some(Commands::Run(args)) => run(*args).await,
            None => run(cli.run).await,
        }
    })
}

async fn run(args: shoal_daemon::cli::RunArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref())?;
    let config = args.overlay(settings).validate()?;
    let listeners = Listeners::bind(&config).await?;
    let mut running = Node::start(config, listeners).await?;
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = running.wait() => anyhow::bail!("a node task stopped unexpectedly"),
    }
    running.shutdown().await;
    Ok(())
}
