//! Every node, on every apply: learns the gossip keys the log holds that it does not, and
//! moves its keyring to the newest in three steps (see `shoal_gossip::keyring`):
//!
//! ```text
//!  new generation applied ─▶ accepting(new)   seal old, open old or new
//!        timings.gossip_key_switch ─▶ rotate_to(new)   seal new, open new or old
//!        timings.gossip_key_grace  ─▶ new(new)         the old key is refused
//! ```
//!
//! The switch waits long enough for every node to open the new key before any seals
//! with it; the grace lets datagrams sealed with the old one drain. A node restarted
//! mid-way starts from `gossip.keyring` (sealing with what it stored, opening the other)
//! and goes on from there.

use std::sync::Arc;

use shoal_gossip::{Gossip, GossipKeyring};
use tokio::sync::watch;
use tokio::time::Instant;

use super::chain::open_newer;
use crate::node::Node;

/// Keeps `gossip`'s keyring on the newest key of the log, until shutdown.
pub async fn rollout_loop(
    node: Arc<Node>,
    gossip: Arc<Gossip>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut applied = node.fleet.applied();
    let timings = node.config.timings.clone();
    // The old key goes when this passes (a restart opening two keys starts one too).
    let mut drop_old_at = gossip
        .keyring()
        .other()
        .map(|_| Instant::now() + timings.gossip_key_grace);
    let mut warned = None;
    loop {
        learn_from_log(&node, &mut warned);
        let newest = node.gossip_keys.newest();
        let ring = gossip.keyring();
        if ring.current().generation() < newest.generation() {
            if ring.for_generation(newest.generation()).is_none() {
                match ring.accepting(newest.clone()) {
                    Ok(accepting) => gossip.set_keyring(accepting),
                    Err(err) => tracing::warn!(%err, "cannot open the new gossip key"),
                }
            }
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(timings.gossip_key_switch) => {}
            }
            match gossip.keyring().rotate_to(newest.clone()) {
                Ok(rotated) => gossip.set_keyring(rotated),
                Err(err) => tracing::warn!(%err, "cannot seal with the new gossip key"),
            }
            if let Err(err) = node.gossip_keys.sealing_with(newest.generation()) {
                tracing::error!(error = %format!("{err:#}"), "cannot store the gossip keyring");
            }
            tracing::info!(
                generation = newest.generation(),
                "gossip sealed with a new key"
            );
            drop_old_at = Some(Instant::now() + timings.gossip_key_grace);
            continue;
        }
        let grace_over = async {
            match drop_old_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = log_rotated(&node, &mut applied) => {}
            _ = grace_over => {
                drop_old_at = None;
                let current = gossip.keyring().current().clone();
                tracing::info!(generation = current.generation(), "the old gossip key is refused from now on");
                gossip.set_keyring(GossipKeyring::new(current));
            }
        }
    }
}

/// Returns once an applied entry took the log's gossip key past the newest this node
/// holds: most applies change nothing here, and cost one read of the generation.
async fn log_rotated(node: &Node, applied: &mut watch::Receiver<Option<u64>>) {
    loop {
        if applied.changed().await.is_err() {
            return std::future::pending().await;
        }
        let logged = node.fleet.read(|state| state.gossip_keys.generation());
        if logged > node.gossip_keys.newest_generation() {
            return;
        }
    }
}

/// Opens and stores the keys the applied log holds that this node does not; says once
/// (per generation) why it cannot.
fn learn_from_log(node: &Node, warned: &mut Option<u32>) {
    let log = node.fleet.read(|state| {
        (state.gossip_keys.generation() > node.gossip_keys.newest_generation())
            .then(|| state.gossip_keys.clone())
    });
    let Some(log) = log else { return };
    match open_newer(&log, &node.gossip_keys.all()) {
        Ok(keys) if keys.is_empty() => {}
        Ok(keys) => {
            let generation = keys.last().map(|key| key.generation());
            if let Err(err) = node.gossip_keys.learn(keys) {
                tracing::error!(error = %format!("{err:#}"), "cannot store the gossip keyring");
            }
            tracing::info!(?generation, "learned a new gossip key from the log");
        }
        Err(why) => {
            if *warned != Some(log.generation()) {
                *warned = Some(log.generation());
                tracing::error!(generation = log.generation(), %why, "cannot follow the gossip key rotation");
            }
        }
    }
}
