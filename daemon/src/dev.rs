//! `shoald dev`: a local fleet of one or more nodes on loopback, in one process, with
//! its data in a local directory and no config.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context;

use crate::cli::DevArgs;
use crate::config::Settings;
use crate::identity;
use crate::node::{Listeners, Node, RunningNode, shutdown_signal};

/// The dev fleet's load threshold: high enough that host load never makes a node BUSY.
const DEV_LOAD_THRESHOLD: f32 = 1000.0;

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 9 {
        anyhow::bail!("--nodes: must be between 1 and 9");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let secret = identity::load_or_create_secret(&args.data_dir, None)?;
    let key = identity::load_or_create_dev_key(&args.data_dir)?;
    // One CA for the dev fleet, in its data directory (where `shoal` looks for it) and in
    // every node's, as joining would put it there.
    let ca = crate::tls::FleetCa::load_or_create(&args.data_dir)?;
    let (ca_cert, _) = crate::tls::paths(&args.data_dir);
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = |i: usize, offset: u16| args.base_port + 10 * i as u16 + offset;
    let mut nodes: Vec<RunningNode> = Vec::new();
    for i in 0..args.nodes {
        let settings = Settings {
            node_name: Some(format!("dev-{}", i + 1)),
            data_dir: args.data_dir.join(format!("node-{}", i + 1)),
            bind: loopback,
            api_port: port(i, 0),
            gossip_port: port(i, 1),
            p2p_port: port(i, 2),
            join: if i == 0 {
                Vec::new()
            } else {
                vec![format!("127.0.0.1:{}", port(0, 1))]
            },
            labels: vec!["dev=true".to_string()],
            allow_process_jobs: true,
            // Every dev node samples the same host: its load would make all of them BUSY
            // at once whenever the host is busy, so the dev fleet does not go by load.
            load_threshold: DEV_LOAD_THRESHOLD,
            cluster_secret: Some(secret.clone()),
            bootstrap_key: Some(key.clone()),
            ..Settings::default()
        };
        if crate::tls::FleetCa::load(&settings.data_dir)?.is_none() {
            ca.store(&settings.data_dir)?;
        }
        if let Some(first) = nodes.first() {
            // The dev fleet's machines join with the secret: admit each, as an admin would.
            std::fs::create_dir_all(&settings.data_dir)?;
            let keypair = identity::load_or_create_keypair(&settings.data_dir)?;
            let id = identity::machine_id(&keypair.public().to_peer_id());
            crate::admission::approve_with_key(&first.node, &key, id)
                .await
                .map_err(|err| anyhow::anyhow!("admitting dev-{}: {}", i + 1, err.message))?;
        }
        let config = settings.validate()?;
        let listeners = Listeners::bind(&config).await?;
        nodes.push(Node::start(config, listeners).await?);
    }
    println!(
        "shoal dev fleet: {} node(s), data in {}",
        args.nodes,
        args.data_dir.display()
    );
    for running in &nodes {
        println!(
            "  {}  api https://{}",
            running.node.config.node_name, running.node.api_addr
        );
    }
    let ca_cert = std::path::absolute(&ca_cert).unwrap_or(ca_cert);
    println!(
        "try: export SHOAL_ADDR=https://{} SHOAL_TOKEN={key} SHOAL_CACERT={}\n     shoal machines ls",
        nodes[0].node.api_addr,
        ca_cert.display()
    );
    println!(
        "(the admin API key is kept in {})",
        args.data_dir.join("admin.key").display()
    );
    println!(
        "dashboard: https://{}/ (paste the SHOAL_TOKEN key; the browser needs the CA above, or \
         an exception for this address)",
        nodes[0].node.api_addr
    );
    shutdown_signal().await;
    for running in nodes {
        running.shutdown().await;
    }
    Ok(())
}
