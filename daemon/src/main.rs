//! `shoald`: run a fleet node, or a local dev fleet.

use anyhow::Context;
use clap::Parser;
use shoal_daemon::cli::{Cli, Commands};
use shoal_daemon::node::shutdown_signal;
use shoal_daemon::{Listeners, Node, Settings, dev};

#[global_allocator]
static ALLOCATOR: shoal_daemon::Allocator = shoal_daemon::Allocator;

fn main() -> anyhow::Result<()> {
    // Everything the daemon writes (the Raft log, keys, output) is its user's alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // A panic leaves a node half-alive; abort so systemd restarts it whole, unless it
    // happened serving one request or starting one run, which it ends.
    shoal_daemon::isolate::install_panic_hook();
    if let Err(why) = shoal_daemon::logging::init() {
        eprintln!("error: {why}");
        std::process::exit(2);
    }

    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Some(Commands::Dev(args)) => dev::run(args).await,
            Some(Commands::Init {
                data_dir,
                config,
                cluster_secret_file,
            }) => {
                // The config is read only for what the flags leave out.
                let (data_dir, cluster_secret_file) = match data_dir {
                    Some(dir) => (dir, cluster_secret_file),
                    None => {
                        let settings = Settings::load(config.as_deref())?;
                        let secret = cluster_secret_file.or(settings.cluster_secret_file);
                        (settings.data_dir, secret)
                    }
                };
                let key = shoal_daemon::identity::init_bootstrap_key(&data_dir)?;
                shoal_daemon::tls::FleetCa::load_or_create(&data_dir)?;
                let (ca_cert, _) = shoal_daemon::tls::paths(&data_dir);
                println!("the fleet's first admin API key (shown once; store it now):\n{key}");
                println!(
                    "the fleet CA, for `shoal --cacert` or SHOAL_CACERT: {}",
                    ca_cert.display()
                );
                if let Some(path) = &cluster_secret_file {
                    let made = shoal_daemon::identity::init_secret_file(path)?;
                    let said = if made { "made" } else { "kept (it was there)" };
                    println!(
                        "the cluster secret: {} ({said}, 0600); give every machine a copy",
                        path.display()
                    );
                }
                shoal_daemon::identity::give_to_data_dir_owner(
                    &data_dir,
                    cluster_secret_file.as_deref(),
                )?;
                println!(
                    "start shoald on {} to form the fleet; it records this key",
                    data_dir.display()
                );
                Ok(())
            }
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
            Some(Commands::Completions { shell }) => {
                use clap::CommandFactory;
                use std::io::Write;
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "shoald", &mut script);
                // A reader that stops early (`| head`) is no error.
                let _ = std::io::stdout().write_all(&script);
                Ok(())
            }
            Some(Commands::Man { dir }) => {
                use clap::CommandFactory;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                for (name, page) in shoal_daemon::cli::man_pages(Cli::command()) {
                    let path = dir.join(name);
                    std::fs::write(&path, page)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                Ok(())
            }
            Some(Commands::Restore { file, force, run }) => {
                let config = run.clone().overlay(Settings::load(run.config.as_deref())?);
                let config = config.validate()?;
                let report = shoal_daemon::restore::restore(&file, &config, force)?;
                shoal_daemon::identity::give_to_data_dir_owner(&config.data_dir, None)?;
                print!("{report}");
                Ok(())
            }
            Some(Commands::Run(args)) => run(*args).await,
            Some(Commands::Join {
                token,
                peer,
                no_run,
                run: args,
            }) => join(token, peer, no_run, *args).await,
            None => run(cli.run).await,
        }
    })
}

/// `shoald join`: presents the token, keeps the secret it brings, and runs with the fleet's
/// machines as seeds.
async fn join(
    token: String,
    peer: String,
    no_run: bool,
    args: shoal_daemon::cli::RunArgs,
) -> anyhow::Result<()> {
    let settings = args
        .clone()
        .overlay(Settings::load(args.config.as_deref())?);
    let peer = if peer.contains(':') {
        peer
    } else {
        format!("{peer}:{}", shoal_daemon::config::DEFAULT_P2P_PORT)
    };
    let name = settings.node_name();
    let joined =
        shoal_daemon::join::request(&settings.data_dir, settings.bind, &peer, &token, &name)
            .await?;
    shoal_daemon::identity::store_secret(&settings.data_dir, &joined.cluster_secret)?;
    println!(
        "joined the fleet through {peer}; seeds {}",
        joined.gossip_seeds.join(", ")
    );
    if no_run {
        shoal_daemon::identity::give_to_data_dir_owner(&settings.data_dir, None)?;
        println!(
            "kept in {}; start the service now: systemctl enable --now shoald",
            settings.data_dir.display()
        );
        return Ok(());
    }
    let mut args = args;
    args.join = joined.gossip_seeds;
    run(args).await
}

async fn run(args: shoal_daemon::cli::RunArgs) -> anyhow::Result<()> {
    let file = Settings::load(args.config.as_deref())?;
    let mut settings = args.overlay(file);
    // A machine that joined with a token (`shoald join --no-run`) finds the fleet through
    // the addresses the join brought, and waits to be added rather than form a fleet.
    for seed in shoal_daemon::join::kept_seeds(&settings.data_dir) {
        if !settings.join.contains(&seed) {
            settings.join.push(seed);
        }
    }
    let config = settings.validate()?;
    let listeners = Listeners::bind(&config).await?;
    let mut running = Node::start(config, listeners).await?;
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        _ = running.wait() => anyhow::bail!("a node task stopped unexpectedly"),
    }
    // systemd and Docker wait 10 s before SIGKILL; stop well within that. What is left
    // then is safe to drop: the log is on disk, containers are adopted after the restart.
    if tokio::time::timeout(SHUTDOWN_DEADLINE, running.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("not every task stopped within {SHUTDOWN_DEADLINE:?}; exiting anyway");
    }
    Ok(())
}

/// How long `shoald` takes at most to stop after SIGTERM.
const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(4);
