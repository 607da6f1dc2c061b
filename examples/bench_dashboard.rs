//! The web dashboard with 50 machines, in a real browser (issue 17): first paint and bytes of
//! the fleet page's first load, and the delay from a heartbeat to the card showing it.
//! Run: `cargo run --release -p shoal-examples --example bench_dashboard`
//!
//! The fleet: 3 in-process `shoald` nodes (`Cluster::start(3)`, test timings but gossip as
//! shipped, HTTPS on loopback) and 47 gossip-only machines, each a real `shoal_gossip::Gossip` node with the
//! cluster key publishing sealed announcements of made-up figures. An admin approves each
//! one, so the leader records it and the dashboard shows it as it would a real machine.
//! Their peer RPC address leads nowhere, so they stay Raft learners that never catch up.
//!
//! ```text
//!  47 Gossip (fake figures) --sealed UDP--> 3 nodes --/ui/live--> headless chromium
//!  this program: sets a fake machine's load at t0 -----------------> card text at t1
//! ```
//!
//! Everything runs on 127.0.0.1 and every wait has a deadline.

// The browser helper of the dashboard's browser test, shared rather than copied.
#[path = "../tests/cluster/dashboard/browser.rs"]
#[allow(dead_code)]
mod browser;
#[path = "common/poll.rs"]
mod poll;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use shoal_daemon::config::Timings;
use shoal_daemon::testsuite::{Cluster, TEST_KEY, TEST_SECRET, get_json, init_logs};
use shoal_gossip::{ClusterKey, Gossip, GossipConfig, bind_udp};
use shoal_protocol::{MachineId, MachineInfo, MemberAddr, Resources};
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use browser::Browser;
use poll::poll;

/// Machines the page shows: the real nodes plus the gossip-only ones.
const MACHINES: usize = 50;
const NODES: usize = 3;
/// Cold loads of the fleet page.
const LOADS: usize = 5;
/// Heartbeats whose card is watched.
const HEARTBEATS: usize = 20;
/// Longest a card may take to show a heartbeat before the round counts as lost.
const CARD_DEADLINE: Duration = Duration::from_secs(5);

/// One gossip-only machine: its announced info (change it to send a heartbeat at once)
/// and its gossip node.
struct FakeMachine {
    id: MachineId,
    info: watch::Sender<MachineInfo>,
    gossip: Gossip,
}

/// The gossip-only machines, run on a runtime (and thread) of their own so that their work
/// does not delay the real nodes' tasks on the benchmark's runtime. Dropping it stops them.
struct Fakes {
    machines: Vec<(MachineId, watch::Sender<MachineInfo>)>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fakes {
    async fn start(n: u64, template: MachineInfo, seeds: Vec<String>) -> anyhow::Result<Fakes> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ready_tx.send(Err(anyhow::Error::from(err)));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut fakes = Vec::new();
                for i in 0..n {
                    match start_fake(i, &template, &seeds).await {
                        Ok(fake) => fakes.push(fake),
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return;
                        }
                    }
                }
                let handles = fakes.iter().map(|f| (f.id, f.info.clone())).collect();
                let _ = ready_tx.send(Ok(handles));
                let _ = stop_rx.await;
                for fake in fakes {
                    fake.gossip.shutdown().await;
                }
            });
        });
        let machines = tokio::time::timeout(Duration::from_secs(60), ready_rx)
            .await
            .context("the gossip-only machines did not start within 60 s")?
            .context("the gossip-only machines' thread ended")??;
        Ok(Fakes {
            machines,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The id of gossip-only machine `i`.
fn fake_id(i: u64) -> MachineId {
    MachineId(0xfa4e_0000_0000_0000 + i)
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Starts gossip-only machine `i`, announcing `template`'s version and level with its own
/// name, address and figures, seeded with the real nodes' gossip addresses.
async fn start_fake(
    i: u64,
    template: &MachineInfo,
    seeds: &[String],
) -> anyhow::Result<FakeMachine> {
    let (socket, addr) = bind_udp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await?;
    let id = fake_id(i);
    let mut labels = template.labels.clone();
    labels.insert("bench", "fake")?;
    labels.insert("tier", if i.is_multiple_of(2) { "web" } else { "db" })?;
    let gib = 1u64 << 30;
    let info = MachineInfo {
        id,
        name: format!("fake-{i:02}"),
        hostname: format!("fake-{i:02}.bench"),
        addr: MemberAddr {
            // Not a peer id: Raft's calls to this learner fail at once, before any dial.
            peer_id: "fake".into(),
            p2p_addr: "127.0.0.1:9".into(),
            api_addr: "127.0.0.1:9".into(),
            gossip_addr: addr.to_string(),
        },
        labels,
        resources: Resources {
            cpu_cores: 8,
            cpu_usage: 0.05 + (i as f32 % 10.0) / 20.0,
            load: 0.25,
            memory_total_bytes: 32 * gib,
            memory_used_bytes: (4 + i % 20) * gib,
            disk_total_bytes: 500 * gib,
            disk_free_bytes: (100 + i * 5) * gib,
        },
        running: 0,
        draining: false,
        diagnosis: Vec::new(),
        images: Vec::new(),
        gpus: Vec::new(),
        started_at_ms: now_ms() as u64,
        ..template.clone()
    };
    let (tx, rx) = watch::channel(info);
    // Gossip as shipped, as the nodes run it here.
    let shipped = Timings::default();
    let key = ClusterKey::from_secret(TEST_SECRET)?;
    let config = GossipConfig {
        seeds: seeds.to_vec(),
        gossip_interval: shipped.gossip_interval,
        heartbeat_interval: shipped.heartbeat_interval,
        initial_interval: shipped.gossip_interval,
        max_interval: shipped.gossip_interval * 20,
        ..GossipConfig::new(id, now_ms() as u64, addr, "shoal", key)
    };
    let gossip = Gossip::start(config, rx, socket).await?;
    Ok(FakeMachine {
        id,
        info: tx,
        gossip,
    })
}

/// `/proc/loadavg`'s three load averages.
fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Median and max of `values` (sorted here).
fn median_max(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[values.len() - 1])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    init_logs();
    let overall = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(300), run()).await;
    match result {
        Ok(outcome) => outcome?,
        Err(_) => bail!("the benchmark did not finish within 300 s"),
    }
    eprintln!("bench_dashboard took {:.1?}", overall.elapsed());
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "bench_dashboard at {commit}: {NODES} nodes + {} gossip-only machines",
        MACHINES - NODES
    );

    // The fleet: test timings, except that gossip runs at the shipped pace (a round and a
    // heartbeat every 500 ms, OFFLINE after 3 s without one), as the figure is about it.
    let shipped = Timings::default();
    let timings = Timings {
        gossip_interval: shipped.gossip_interval,
        heartbeat_interval: shipped.heartbeat_interval,
        offline_after: shipped.offline_after,
        stale_after: Duration::from_secs(6),
        dead_after: Duration::from_secs(12),
        ..Timings::fast()
    };
    let cluster = Cluster::start_with(NODES, timings).await?;
    let api = cluster.api(0);
    let template = cluster.node(0).info.borrow().clone();
    let seeds: Vec<String> = (0..NODES)
        .map(|i| cluster.node(i).info.borrow().addr.gossip_addr.clone())
        .collect();
    let fake_count = (MACHINES - NODES) as u64;
    for i in 0..fake_count {
        Box::pin(shoal_daemon::admission::approve_with_key(
            cluster.node(0),
            TEST_KEY,
            fake_id(i),
        ))
        .await
        .map_err(|err| anyhow::anyhow!("approving {}: {}", fake_id(i), err.message))?;
    }
    let fakes = Fakes::start(fake_count, template, seeds).await?;
    let started = Instant::now();
    poll(
        Duration::from_secs(60),
        50,
        "50 machines ONLINE in /v1/machines",
        async || {
            let list: Value = get_json(&format!("{api}/v1/machines?status=online")).await;
            (list["machines"].as_array()?.len() == MACHINES).then_some(())
        },
    )
    .await?;
    println!(
        "all {MACHINES} machines ONLINE in GET /v1/machines after {:.1?}",
        started.elapsed()
    );

    // The browser, logged in once.
    let shots = tempfile::tempdir()?;
    let browser = Browser::start(shots.path()).await;
    browser.log_in(&api, TEST_KEY).await;
    let cards = browser.count(".card").await;
    if cards != MACHINES {
        bail!("the fleet page shows {cards} cards, not {MACHINES}");
    }
    browser
        .wait_js(
            "50 machines in the summary",
            "return document.querySelector('[data-sum=machines]').textContent.trim() === '50';",
        )
        .await;
    // Under load a gossip-only machine's heartbeat can take longer than offline_after to
    // arrive (see BENCHMARKS.md): say how many the page shows ONLINE rather than fail.
    let online = browser
        .js(
            "return document.querySelector('[data-count=online]').textContent.trim();",
            vec![],
        )
        .await;
    println!("the page shows {MACHINES} cards, {online} ONLINE in the summary");

    // 1 and 2: cold loads.
    let mut paints = Vec::new();
    let mut contentful = Vec::new();
    let mut dom_ready = Vec::new();
    let mut bytes = Vec::new();
    let mut parts = Value::Null;
    for _ in 0..LOADS {
        browser.goto("about:blank").await;
        browser.cdp("Network.clearBrowserCache", json!({})).await;
        browser.goto(&format!("{api}/")).await;
        browser.wait_live().await;
        let figures = browser
            .js(
                "const nav = performance.getEntriesByType('navigation')[0];
                 const paint = (name) => {
                   const p = performance.getEntriesByName(name)[0];
                   return p ? p.startTime : -1;
                 };
                 const entries = [nav, ...performance.getEntriesByType('resource')];
                 return {
                   first_paint: paint('first-paint'),
                   first_contentful_paint: paint('first-contentful-paint'),
                   dom_content_loaded: nav.domContentLoadedEventEnd,
                   cards: document.querySelectorAll('.card').length,
                   parts: entries.map((e) => ({name: e.name.replace(location.origin, ''),
                     transfer: e.transferSize, encoded: e.encodedBodySize,
                     decoded: e.decodedBodySize})),
                 };",
                vec![],
            )
            .await;
        if figures["cards"] != json!(MACHINES) {
            bail!("a load showed {} cards", figures["cards"]);
        }
        let transferred: u64 = figures["parts"]
            .as_array()
            .context("resource entries")?
            .iter()
            .map(|p| p["transfer"].as_u64().unwrap_or(0))
            .sum();
        paints.push(figures["first_paint"].as_f64().unwrap_or(-1.0));
        contentful.push(figures["first_contentful_paint"].as_f64().unwrap_or(-1.0));
        dom_ready.push(figures["dom_content_loaded"].as_f64().unwrap_or(-1.0));
        bytes.push(transferred as f64);
        parts = figures["parts"].clone();
    }
    browser.screenshot("fleet-50").await;
    println!("\nfleet page, {LOADS} cold loads (cache cleared before each), {MACHINES} cards:");
    println!(
        "  what was fetched (last load): name, transferSize, encodedBodySize, decodedBodySize"
    );
    for part in parts.as_array().into_iter().flatten() {
        println!(
            "    {:<40} {:>7} {:>7} {:>7}",
            part["name"].as_str().unwrap_or("?"),
            part["transfer"].as_u64().unwrap_or(0),
            part["encoded"].as_u64().unwrap_or(0),
            part["decoded"].as_u64().unwrap_or(0)
        );
    }
    for (name, values) in [
        ("first paint (ms)", &mut paints),
        ("first contentful paint (ms)", &mut contentful),
        ("DOMContentLoaded end (ms)", &mut dom_ready),
        ("bytes over HTTP (document + assets)", &mut bytes),
    ] {
        let (median, max) = median_max(values);
        println!("  {name:<38} median {median:>9.1}  max {max:>9.1}");
    }

    // 2b: what the live socket sends first (not in Resource Timing): the same cookie, read
    // by a client of our own for 2.5 s (the first figures tick and two more).
    let cookie = browser.session_cookie().await;
    let ws_url = format!("{}/ui/live", cluster.ws(0));
    let mut request = ws_url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("cookie", format!("shoal_session={cookie}").parse()?);
    request.headers_mut().insert("origin", api.parse()?);
    let (mut socket, _) = shoal_daemon::testsuite::ws_connect(request).await?;
    let mut frames = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(Some(message)) = tokio::time::timeout_at(until, socket.next()).await {
        let message = message?;
        if message.is_text() {
            let text = message.into_text()?;
            let value: Value = serde_json::from_str(text.as_str())?;
            let cards = value["machines"].as_array().map_or(0, Vec::len);
            frames.push((
                value["type"].as_str().unwrap_or("?").to_string(),
                cards,
                text.len(),
            ));
        }
    }
    drop(socket);
    println!("  live socket, first 2.5 s (payload bytes, no compression): ");
    for (kind, cards, len) in &frames {
        println!("    {kind:<8} {cards:>3} cards {len:>7} bytes");
    }

    // 3: heartbeat to card. The page notes (Date.now()) each change of a card's load text.
    browser.goto(&format!("{api}/")).await;
    browser.wait_live().await;
    browser
        .js(
            "window.shoalSeen = [];
             const seen = new MutationObserver((changes) => {
               const at = Date.now();
               for (const c of changes) {
                 const el = c.target.nodeType === 1 ? c.target : c.target.parentElement;
                 const card = el.closest('.card');
                 window.shoalSeen.push([card.dataset.id, el.textContent, at]);
               }
             });
             for (const el of document.querySelectorAll('.card [data-f=load]')) {
               seen.observe(el, {childList: true, characterData: true, subtree: true});
             }",
            vec![],
        )
        .await;
    let mut delays = Vec::new();
    let mut gossip_delays = Vec::new();
    let mut lost = 0;
    for round in 0..HEARTBEATS {
        let (fake_id, fake_info) = &fakes.machines[(round * 7) % fakes.machines.len()];
        let load = 10.0 + round as f32 + 0.5;
        let text = format!("{load:.2}");
        // Spread the changes over the live socket's tick and gossip's round.
        tokio::time::sleep(Duration::from_millis(150 + (round as u64 * 137) % 400)).await;
        // When node 0 (the page's node) has the heartbeat in its gossip view.
        let mut peers = cluster.node(0).peers.clone();
        let target = *fake_id;
        let at_node = tokio::spawn(async move {
            let start = Instant::now();
            loop {
                let has = peers
                    .borrow_and_update()
                    .iter()
                    .any(|p| p.info.id == target && p.info.resources.load == load);
                if has {
                    return Some(now_ms());
                }
                if start.elapsed() > CARD_DEADLINE {
                    return None;
                }
                let _ = tokio::time::timeout(Duration::from_millis(5), peers.changed()).await;
            }
        });
        let sent = now_ms();
        fake_info.send_modify(|info| info.resources.load = load);
        let id = fake_id.to_string();
        let shown = poll(CARD_DEADLINE, 50, "the card", async || {
            let seen = browser
                .js(
                    "const [id, text] = arguments;
                     const hit = window.shoalSeen.find((s) => s[0] === id && s[1] === text);
                     return hit ? hit[2] : null;",
                    vec![json!(id), json!(text)],
                )
                .await;
            seen.as_f64()
        })
        .await;
        match shown {
            Ok(at) => delays.push(at - sent),
            Err(_) => lost += 1,
        }
        if let Ok(Some(at)) = at_node.await {
            gossip_delays.push(at - sent);
        }
    }
    if delays.is_empty() {
        bail!("no card showed any of {HEARTBEATS} heartbeats within {CARD_DEADLINE:?}");
    }
    let (median, max) = median_max(&mut delays);
    println!(
        "\nheartbeat to card, {} of {HEARTBEATS} heartbeats (a fake machine's load changed, \
         to the page's MutationObserver): median {median:.0} ms, max {max:.0} ms, {lost} not shown within {CARD_DEADLINE:?}",
        delays.len()
    );
    println!(
        "  all (ms): {}",
        delays
            .iter()
            .map(|d| format!("{d:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    if !gossip_delays.is_empty() {
        let (median, max) = median_max(&mut gossip_delays);
        println!(
            "  of which heartbeat to node 0's gossip view ({} seen): median {median:.0} ms, max {max:.0} ms",
            gossip_delays.len()
        );
    }
    println!("machine load at the end: {}", uptime());

    browser.close().await;
    drop(fakes);
    cluster.shutdown().await;
    Ok(())
}
