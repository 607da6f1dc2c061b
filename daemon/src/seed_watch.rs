//! A machine told where to join (`join` seeds) that hears from no machine of a fleet says
//! so every `timings.seed_warning`, naming its seeds, instead of waiting in silence.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::node::Node;

/// Warns until the node knows a leader or hears another machine, then waits quietly for
/// shutdown (a node task that ends early stops the node).
pub async fn warn_loop(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let seeds = node.config.seeds();
    if seeds.is_empty() {
        let _ = shutdown.wait_for(|stop| *stop).await;
        return;
    }
    let every = node.config.timings.seed_warning;
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(started + every, every);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tick.tick() => {}
        }
        let heard = node.leader().is_some()
            || node
                .peers
                .borrow()
                .iter()
                .any(|peer| peer.live && peer.info.id != node.id);
        if heard {
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
        tracing::warn!(
            seeds = %seeds.join(", "),
            waited_s = started.elapsed().as_secs(),
            "no machine of a fleet answers: are the seeds members' gossip addresses (port {}), \
             reachable from here, and is this machine's cluster secret theirs?",
            crate::config::DEFAULT_GOSSIP_PORT
        );
    }
}
