//! The images this machine's engine holds, published in its heartbeat every
//! [`IMAGE_FACTS_EVERY`] (`MachineInfo::images`), so the scheduler can prefer a machine
//! that need not pull.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::node::Node;

/// How often the engine's image list is read.
pub const IMAGE_FACTS_EVERY: Duration = Duration::from_secs(30);

/// Reads the engine's images and publishes their keys when they changed, until shutdown.
pub async fn publish_loop(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(IMAGE_FACTS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tick.tick() => {}
        }
        if !node.runner.has_docker() {
            continue;
        }
        let keys = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            keys = node.runner.docker().image_keys() => keys,
        };
        match keys {
            Ok(keys) => {
                node.info.send_if_modified(|info| {
                    std::mem::replace(&mut info.images, keys.clone()) != keys
                });
            }
            Err(error) => tracing::debug!(%error, "cannot list the engine's images"),
        }
    }
}
