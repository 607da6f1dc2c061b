//! How fast a machine's new figures spread through sealed gossip, and what gossip costs in
//! CPU, with 50 machines (issue 17's heartbeat-to-card delay is mostly this).
//! Run: `cargo run --release -p shoal-gossip --example bench_gossip [-- MACHINES INTERVAL_MS]`
//!
//! MACHINES (default 50) real `shoal_gossip::Gossip` nodes on 127.0.0.1, each on a UDP port of
//! its own, all in this one process on a runtime of 2 threads, seeded with the first three,
//! gossiping every INTERVAL_MS (default 500, as shipped) and republishing their figures every
//! second (as shipped) and at once when they change. Once every node sees every other, 30
//! rounds each change one machine's load and time how long until node 0 (say, the node a
//! dashboard is open on) has it in its verified view, and until every node has.
//! The CPU figure is the whole process's user + system time while idle-gossiping, per machine.
//!
//! Everything runs on 127.0.0.1 and every wait has a deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_gossip::{ClusterKey, Gossip, GossipConfig, PeerView, bind_udp};
use shoal_protocol::{MachineId, MachineInfo, MemberAddr, Resources};
use tokio::sync::watch;

const ROUNDS: usize = 30;
/// Longest one change may take to reach every node before the round counts as lost.
const ROUND_DEADLINE: Duration = Duration::from_secs(10);

struct Machine {
    info: watch::Sender<MachineInfo>,
    peers: watch::Receiver<std::sync::Arc<Vec<PeerView>>>,
    gossip: Gossip,
}

fn id(i: usize) -> MachineId {
    MachineId(0xb0_0000 + i as u64)
}

async fn start(
    i: usize,
    socket: shoal_gossip::GossipSocket,
    addr: SocketAddr,
    seeds: &[String],
    interval: Duration,
) -> anyhow::Result<Machine> {
    let info = MachineInfo {
        id: id(i),
        name: format!("m{i:02}"),
        hostname: format!("m{i:02}.bench"),
        addr: MemberAddr {
            peer_id: "bench".into(),
            p2p_addr: "127.0.0.1:9".into(),
            api_addr: "127.0.0.1:9".into(),
            gossip_addr: addr.to_string(),
        },
        resources: Resources {
            cpu_cores: 8,
            cpu_usage: 0.25,
            load: 0.5,
            memory_total_bytes: 32 << 30,
            memory_used_bytes: 8 << 30,
            disk_total_bytes: 500 << 30,
            disk_free_bytes: 200 << 30,
        },
        ..MachineInfo::default()
    };
    let (tx, rx) = watch::channel(info);
    let key = ClusterKey::from_secret("bench-gossip-secret")?;
    let config = GossipConfig {
        seeds: seeds.to_vec(),
        gossip_interval: interval,
        ..GossipConfig::new(id(i), 1, addr, "bench", key)
    };
    let gossip = Gossip::start(config, rx, socket).await?;
    Ok(Machine {
        info: tx,
        peers: gossip.peers(),
        gossip,
    })
}

/// The process's user + system CPU time so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn has(peers: &watch::Receiver<std::sync::Arc<Vec<PeerView>>>, who: MachineId, load: f32) -> bool {
    peers
        .borrow()
        .iter()
        .any(|p| p.info.id == who && p.info.resources.load == load)
}

fn median_max(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[values.len() - 1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let machines: usize = args.first().map_or(Ok(50), |a| a.parse())?;
    let interval = Duration::from_millis(args.get(1).map_or(Ok(500), |a| a.parse())?);
    if machines < 2 {
        bail!("MACHINES must be at least 2");
    }
    tokio::time::timeout(Duration::from_secs(300), run(machines, interval))
        .await
        .context("the benchmark did not finish within 300 s")?
}

async fn run(count: usize, interval: Duration) -> anyhow::Result<()> {
    let mut sockets = Vec::new();
    for _ in 0..count {
        sockets.push(bind_udp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await?);
    }
    let seeds: Vec<String> = sockets.iter().take(3).map(|(_, a)| a.to_string()).collect();
    let mut fleet = Vec::new();
    for (i, (socket, addr)) in sockets.into_iter().enumerate() {
        fleet.push(start(i, socket, addr, &seeds, interval).await?);
    }
    println!("bench_gossip: {count} machines, gossip every {interval:?}, 2 runtime threads");

    let started = Instant::now();
    loop {
        let everyone = fleet
            .iter()
            .all(|m| m.peers.borrow().iter().filter(|p| p.live).count() == count);
        if everyone {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the {count} machines did not all see each other within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "every machine sees all {count} after {:.1?}",
        started.elapsed()
    );

    let (cpu_before, wall_before) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = cpu_time() - cpu_before;
    let wall = wall_before.elapsed();
    println!(
        "idle gossip CPU: {:.1} ms per second per machine ({:.0}% of one core for all {count})",
        cpu.as_secs_f64() * 1000.0 / wall.as_secs_f64() / count as f64,
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
    );

    let mut to_node0 = Vec::new();
    let mut to_all = Vec::new();
    let mut lost = 0;
    for round in 0..ROUNDS {
        let who = 1 + (round * 7) % (count - 1);
        let load = 10.0 + round as f32 + 0.5;
        // Spread the changes over the gossip interval.
        tokio::time::sleep(interval / 3 + Duration::from_millis((round as u64 * 37) % 200)).await;
        let sent = Instant::now();
        fleet[who]
            .info
            .send_modify(|info| info.resources.load = load);
        let mut node0 = None;
        loop {
            if node0.is_none() && has(&fleet[0].peers, id(who), load) {
                node0 = Some(sent.elapsed());
            }
            if node0.is_some() && fleet.iter().all(|m| has(&m.peers, id(who), load)) {
                to_all.push(sent.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if sent.elapsed() > ROUND_DEADLINE {
                lost += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Some(at) = node0 {
            to_node0.push(at.as_secs_f64() * 1000.0);
        }
    }
    if to_node0.is_empty() || to_all.is_empty() {
        bail!("no change reached every machine within {ROUND_DEADLINE:?}");
    }
    let (median, max) = median_max(&mut to_node0);
    println!(
        "change to node 0's view, {} rounds: median {median:.0} ms, max {max:.0} ms",
        to_node0.len()
    );
    let (median, max) = median_max(&mut to_all);
    println!(
        "change to every machine's view, {} rounds: median {median:.0} ms, max {max:.0} ms, {lost} not everywhere within {ROUND_DEADLINE:?}",
        to_all.len()
    );
    for machine in fleet {
        machine.gossip.shutdown().await;
    }
    Ok(())
}
