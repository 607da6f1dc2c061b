//! The typed view of every verified peer, built from chitchat node states.
//!
//! [`PeerTracker::update`] is pure given `now_ms`: it takes plain [`NodeSnapshot`]s read
//! under the chitchat lock and returns the [`PeerView`]s. Only values that open with the
//! cluster key count. Per machine it keeps the newest announcement by (generation, seq); an
//! older or replayed one never advances `last_heartbeat_ms` nor replaces the info.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chitchat::{ChitchatId, NodeState};
use shoal_protocol::{Announcement, MachineId, MachineInfo, UnixMillis};
use tracing::{debug, warn};

use crate::status::Observation;
use crate::{ClusterKey, GossipError, auth, keys};

/// Most distinct unverifiable nodes warned about; later ones are logged at debug only.
const MAX_REJECTED_REMEMBERED: usize = 1024;

/// What this node knows about one machine, including itself.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub info: MachineInfo,
    /// The sequence number of the newest announcement seen.
    pub seq: u64,
    /// Chitchat's failure detector says the machine's current node is up, and its state
    /// opens with the cluster key.
    pub live: bool,
    /// Local wall clock (Unix ms) when this node first saw the newest announcement.
    pub last_heartbeat_ms: UnixMillis,
    /// How long ago that was.
    pub heartbeat_age: Duration,
}

impl PeerView {
    /// The input status derivation takes.
    pub fn observation(&self) -> Observation {
        Observation {
            live: self.live,
            heartbeat_age: self.heartbeat_age,
            load: self.info.resources.load,
            running: self.info.running,
            max_running: self.info.max_running,
            draining: self.info.draining,
        }
    }
}

/// One chitchat node as read under the chitchat lock: plain data, no borrow.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSnapshot {
    pub node: ChitchatId,
    /// The sealed value of [`keys::ANNOUNCE`], if the node published one.
    pub announce: Option<String>,
    /// Chitchat counts the node live (failure detector and liveness predicate).
    pub live: bool,
}

impl NodeSnapshot {
    pub fn from_state(state: &NodeState, live: bool) -> Self {
        NodeSnapshot {
            node: state.chitchat_id().clone(),
            announce: state.get(keys::ANNOUNCE).map(str::to_string),
            live,
        }
    }
}

#[derive(Debug)]
struct Tracked {
    announcement: Announcement,
    generation: u64,
    last_heartbeat_ms: UnixMillis,
}

/// Turns snapshots into views and remembers, per machine, the newest announcement seen.
///
/// Machines that vanish from chitchat stay in the view, not live, with a growing age, so
/// status derivation can carry them on to STALE and DEAD. Their sequence numbers are never
/// forgotten, so a replay after chitchat forgot them does not count as a heartbeat.
///
/// A value already opened is not opened again: an update costs a string comparison per
/// node whose announcement has not changed since the last one, so the view can be refreshed
/// every time a delta arrives.
#[derive(Debug)]
pub struct PeerTracker {
    key: ClusterKey,
    peers: BTreeMap<MachineId, Tracked>,
    rejected: HashSet<ChitchatId>,
    /// Per chitchat node of the last update, its sealed value and the machine it opened to
    /// (`None`: it did not open).
    opened: HashMap<ChitchatId, (String, Option<MachineId>)>,
}

impl PeerTracker {
    pub fn new(key: ClusterKey) -> Self {
        PeerTracker {
            key,
            peers: BTreeMap::new(),
            rejected: HashSet::new(),
            opened: HashMap::new(),
        }
    }

    /// Folds the snapshots in and returns every known machine, ordered by id.
    pub fn update(&mut self, now_ms: UnixMillis, nodes: &[NodeSnapshot]) -> Vec<PeerView> {
        let mut verified = Vec::new();
        let mut opened = HashMap::with_capacity(nodes.len());
        for snapshot in nodes {
            let Some(value) = &snapshot.announce else {
                continue;
            };
            let generation = snapshot.node.generation_id;
            let (value, id) = match self.opened.remove(&snapshot.node) {
                Some((seen, id)) if seen == *value => (seen, id),
                _ => match auth::open(&self.key, &snapshot.node, value) {
                    Ok(announcement) => {
                        let id = announcement.info.id;
                        self.observe(now_ms, generation, announcement);
                        (value.clone(), Some(id))
                    }
                    Err(err) => {
                        self.rejected(&snapshot.node, &err);
                        (value.clone(), None)
                    }
                },
            };
            if let Some(id) = id {
                verified.push((id, generation, snapshot.live));
            }
            opened.insert(snapshot.node.clone(), (value, id));
        }
        self.opened = opened;
        let live: HashSet<MachineId> = verified
            .into_iter()
            .filter(|(id, generation, live)| *live && self.peers[id].generation == *generation)
            .map(|(id, _, _)| id)
            .collect();
        self.peers
            .iter()
            .map(|(id, tracked)| PeerView {
                info: tracked.announcement.info.clone(),
                seq: tracked.announcement.seq,
                live: live.contains(id),
                last_heartbeat_ms: tracked.last_heartbeat_ms,
                heartbeat_age: Duration::from_millis(
                    now_ms.saturating_sub(tracked.last_heartbeat_ms),
                ),
            })
            .collect()
    }

    fn observe(&mut self, now_ms: UnixMillis, generation: u64, announcement: Announcement) {
        let fresh = Tracked {
            announcement,
            generation,
            last_heartbeat_ms: now_ms,
        };
        match self.peers.entry(fresh.announcement.info.id) {
            Entry::Vacant(entry) => {
                debug!(machine_id = %entry.key(), generation, "machine joined the gossip view");
                entry.insert(fresh);
            }
            Entry::Occupied(mut entry) => {
                let known = entry.get();
                let newer = (generation, fresh.announcement.seq)
                    > (known.generation, known.announcement.seq);
                if newer {
                    entry.insert(fresh);
                }
            }
        }
    }

    fn rejected(&mut self, node: &ChitchatId, err: &GossipError) {
        if self.rejected.contains(node) || self.rejected.len() >= MAX_REJECTED_REMEMBERED {
            debug!(node = ?node, error = %err, "ignoring unverified gossip node");
            return;
        }
        warn!(node = ?node, error = %err, "ignoring gossip node whose state does not verify with the cluster key");
        self.rejected.insert(node.clone());
    }
}

#[cfg(test)]
mod tests {
    use shoal_protocol::Labels;

    use super::*;

    fn key() -> ClusterKey {
        ClusterKey::from_secret("fleet").unwrap()
    }

    fn node(id: u64, generation: u64) -> ChitchatId {
        let addr = format!("127.0.0.1:{}", 7000 + id).parse().unwrap();
        ChitchatId::new(MachineId(id).to_string(), generation, addr)
    }

    fn info(id: u64, zone: &str) -> MachineInfo {
        MachineInfo {
            id: MachineId(id),
            labels: Labels::from_pairs([format!("zone={zone}").as_str()]).unwrap(),
            ..MachineInfo::default()
        }
    }

    fn sealed_with(key: &ClusterKey, node: &ChitchatId, seq: u64, zone: &str) -> String {
        let id = node.node_id.parse::<MachineId>().unwrap().0;
        let ann = Announcement {
            info: info(id, zone),
            seq,
            sent_at_ms: 0,
        };
        auth::seal(key, node, &ann).unwrap()
    }

    fn snap(node: ChitchatId, seq: u64, zone: &str, live: bool) -> NodeSnapshot {
        NodeSnapshot {
            announce: Some(sealed_with(&key(), &node, seq, zone)),
            node,
            live,
        }
    }

    #[test]
    fn only_verified_nodes_are_viewed() {
        let mut tracker = PeerTracker::new(key());
        let other_key = ClusterKey::from_secret("intruder").unwrap();
        let intruder = NodeSnapshot {
            announce: Some(sealed_with(&other_key, &node(9, 1), 1, "x")),
            node: node(9, 1),
            live: true,
        };
        let unannounced = NodeSnapshot {
            node: node(8, 1),
            announce: None,
            live: true,
        };
        let garbage = NodeSnapshot {
            node: node(7, 1),
            announce: Some("not.a value".into()),
            live: true,
        };
        let views = tracker.update(
            1_000,
            &[
                snap(node(2, 1), 1, "b", false),
                intruder,
                snap(node(1, 1), 1, "a", true),
                unannounced,
                garbage,
            ],
        );
        let ids: Vec<_> = views.iter().map(|v| (v.info.id.0, v.live)).collect();
        assert_eq!(ids, [(1, true), (2, false)]);
        assert_eq!(views[0].info.labels.get("zone"), Some("a"));
    }

    #[test]
    fn newer_seq_advances_the_heartbeat_and_replays_do_not() {
        let mut tracker = PeerTracker::new(key());
        let n = node(1, 1);
        tracker.update(1_000, &[snap(n.clone(), 5, "a", true)]);
        let views = tracker.update(1_500, &[snap(n.clone(), 6, "b", true)]);
        assert_eq!((views[0].seq, views[0].last_heartbeat_ms), (6, 1_500));
        assert_eq!(views[0].heartbeat_age, Duration::ZERO);

        // The same seq again, then an older one replayed: nothing moves.
        tracker.update(2_000, &[snap(n.clone(), 6, "b", true)]);
        let views = tracker.update(2_500, &[snap(n, 4, "old", true)]);
        assert_eq!(views[0].seq, 6);
        assert_eq!(views[0].last_heartbeat_ms, 1_500);
        assert_eq!(views[0].heartbeat_age, Duration::from_millis(1_000));
        assert_eq!(views[0].info.labels.get("zone"), Some("b"));
    }

    #[test]
    fn a_value_seen_before_counts_as_it_did_and_a_replaced_one_is_opened_again() {
        let mut tracker = PeerTracker::new(key());
        let n = node(1, 1);
        let genuine = snap(n.clone(), 5, "a", true);
        let forged = NodeSnapshot {
            announce: Some(sealed_with(
                &ClusterKey::from_secret("guess").unwrap(),
                &n,
                6,
                "x",
            )),
            ..genuine.clone()
        };
        // Unchanged (the opened value is remembered): still verified and live.
        for at in [1_000, 1_100] {
            let views = tracker.update(at, std::slice::from_ref(&genuine));
            assert!(views[0].live);
            assert_eq!(views[0].last_heartbeat_ms, 1_000);
        }
        // Replaced by a value that does not open, then by the genuine one again.
        assert!(!tracker.update(1_200, std::slice::from_ref(&forged))[0].live);
        assert!(!tracker.update(1_300, std::slice::from_ref(&forged))[0].live);
        let views = tracker.update(1_400, &[genuine]);
        assert!(views[0].live);
        assert_eq!(views[0].seq, 5);
    }

    #[test]
    fn forged_state_neither_changes_info_nor_counts_as_live() {
        let mut tracker = PeerTracker::new(key());
        let n = node(1, 1);
        tracker.update(1_000, &[snap(n.clone(), 5, "a", true)]);
        let forged = NodeSnapshot {
            announce: Some(sealed_with(
                &ClusterKey::from_secret("guess").unwrap(),
                &n,
                99,
                "evil",
            )),
            node: n,
            live: true,
        };
        let views = tracker.update(2_000, &[forged]);
        assert_eq!(views[0].seq, 5);
        assert_eq!(views[0].info.labels.get("zone"), Some("a"));
        assert!(!views[0].live);
    }

    #[test]
    fn a_new_generation_wins_and_an_old_one_is_ignored() {
        let mut tracker = PeerTracker::new(key());
        tracker.update(1_000, &[snap(node(1, 1), 50, "old", true)]);
        // Restarted: seq starts over under a higher generation; the old node lingers, dead.
        let views = tracker.update(
            2_000,
            &[
                snap(node(1, 1), 50, "old", false),
                snap(node(1, 2), 1, "new", true),
            ],
        );
        assert_eq!(views.len(), 1);
        assert_eq!((views[0].seq, views[0].live), (1, true));
        assert_eq!(views[0].info.labels.get("zone"), Some("new"));
        assert_eq!(views[0].last_heartbeat_ms, 2_000);

        // The old generation live again (or replayed) never wins back.
        let views = tracker.update(
            3_000,
            &[
                snap(node(1, 1), 51, "old", true),
                snap(node(1, 2), 1, "new", false),
            ],
        );
        assert_eq!(views[0].info.labels.get("zone"), Some("new"));
        assert!(!views[0].live, "liveness follows the newest generation");
        assert_eq!(views[0].last_heartbeat_ms, 2_000);
    }

    #[test]
    fn vanished_machines_stay_known_and_age() {
        let mut tracker = PeerTracker::new(key());
        tracker.update(1_000, &[snap(node(1, 1), 1, "a", true)]);
        let views = tracker.update(61_000, &[]);
        assert_eq!(views.len(), 1);
        assert!(!views[0].live);
        assert_eq!(views[0].heartbeat_age, Duration::from_secs(60));
        // A replay after chitchat forgot the node is still not a heartbeat.
        let views = tracker.update(62_000, &[snap(node(1, 1), 1, "a", true)]);
        assert_eq!(views[0].last_heartbeat_ms, 1_000);
    }

    #[test]
    fn observation_carries_the_published_load() {
        let mut tracker = PeerTracker::new(key());
        let views = tracker.update(1_000, &[snap(node(1, 1), 1, "a", true)]);
        let obs = views[0].observation();
        assert!(obs.live);
        assert_eq!(obs.heartbeat_age, Duration::ZERO);
        assert_eq!(obs.max_running, 0);
    }
}
