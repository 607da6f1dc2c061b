//! Who may lead, and when a node stops saying it does.
//!
//! Raft's own election timer lets a voter cut off from the fleet raise its term again and
//! again; when the partition heals, that term forces an election the fleet did not need.
//! From protocol level 4 ([`PREVOTE_LEVEL`]) elections go through here instead: a voter
//! that has heard from no leader for an election timeout first asks the other voters over
//! peer RPC whether they have not either (a pre-vote), and stands only when a quorum says
//! so. Below that level (an older build cannot answer) Raft's timer elects as before.
//!
//! ```text
//!  append from the leader ─▶ heard_from_leader()            tick (every raft heartbeat)
//!                                                              │
//!   leader: no quorum answered for 2 × election_max ─▶ cut off ◀┤
//!   member: no leader heard for election_max    ─▶ cut off ◀───┤
//!   voter, no leader for election_max + jitter ─▶ PreVote to every voter ─▶ quorum? elect
//! ```
//!
//! A cut-off node answers as if there were no leader ([`crate::node::Node::leader`]):
//! writes wait for one, and `/health` says why with a 503.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;
use openraft::ServerState;
use rand::Rng;
use serde::{Deserialize, Serialize};
use shoal_protocol::MachineId;
use shoal_protocol::levels::PREVOTE_LEVEL;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Timings;
use crate::node::Node;
use crate::p2p::{PeerRequest, PeerResponse};

/// What a voter about to stand for election asks the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVote {
    /// The term it would stand in.
    pub term: u64,
    /// The index of its last log entry.
    pub last_log_index: Option<u64>,
}

/// This node's view of its leader: when it last heard one, and whether it is cut off.
pub struct Leadership {
    heard_leader: Mutex<Instant>,
    cut_off: Mutex<Option<String>>,
    /// The candidate this voter last said yes to (itself while it asks), and when: one
    /// candidate per `election_min`, so voters that time out together do not all stand
    /// and split the vote.
    promised: Mutex<Option<(PeerId, Instant)>>,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership {
            heard_leader: Mutex::new(Instant::now()),
            cut_off: Mutex::new(None),
            promised: Mutex::new(None),
        }
    }
}

impl Leadership {
    /// A leader this node follows reached it (an append or snapshot it accepted), or it
    /// gave its vote to a candidate: either way, no election of its own for a while.
    pub fn heard_from_leader(&self) {
        *self.heard_leader.lock().expect("leadership lock") = Instant::now();
    }

    fn heard_leader_at(&self) -> Instant {
        *self.heard_leader.lock().expect("leadership lock")
    }

    /// Why this node can neither lead nor reach a leader now, if it cannot.
    pub fn cut_off(&self) -> Option<String> {
        self.cut_off.lock().expect("leadership lock").clone()
    }

    /// Promises this window's pre-vote to `candidate`, unless another one has it. A
    /// promise held by `yielding` (this voter, when the candidate's log is ahead of its
    /// own: that candidate would refuse it anyway) gives way.
    fn promise(&self, candidate: PeerId, window: Duration, yielding: Option<PeerId>) -> bool {
        let mut promised = self.promised.lock().expect("leadership lock");
        match *promised {
            Some((to, at)) if to != candidate && at.elapsed() < window && Some(to) != yielding => {
                false
            }
            _ => {
                *promised = Some((candidate, Instant::now()));
                true
            }
        }
    }

    fn set_cut_off(&self, reason: Option<String>) {
        let mut cut_off = self.cut_off.lock().expect("leadership lock");
        match (&*cut_off, &reason) {
            (None, Some(reason)) => tracing::warn!(%reason, "cut off from the fleet"),
            (Some(_), None) => tracing::info!("in touch with a quorum again"),
            _ => {}
        }
        *cut_off = reason;
    }
}

/// The answer to a pre-vote: yes only from a voter that has not heard from a leader for
/// `election_min` either (a leader says no while a quorum answers it), whose log the
/// candidate's reaches, and that has promised no other candidate (itself included, unless
/// the candidate's log is ahead of its own) in the last `election_min`. Raft's vote still checks the log in full; this keeps a machine
/// back from a partition from standing while the fleet has a leader, and voters that time
/// out together from splitting the vote.
pub fn answer_pre_vote(node: &Node, from: PeerId, ask: &PreVote) -> bool {
    let (state, term, last_log_index) = {
        let metrics = node.raft.metrics();
        let metrics = metrics.borrow();
        (metrics.state, metrics.current_term, metrics.last_log_index)
    };
    if state == ServerState::Leader {
        return node.leadership.cut_off().is_some();
    }
    let window = node.config.timings.raft_election_min;
    let quiet = node.leadership.heard_leader_at().elapsed();
    // A voter whose own log is behind the candidate's cannot win before it: its own
    // standing must not keep the one that can from being elected.
    let ahead = ask.last_log_index > last_log_index;
    quiet >= window
        && ask.term > term
        && ask.last_log_index >= last_log_index
        && node
            .leadership
            .promise(from, window, ahead.then(|| node.p2p.local_peer_id()))
}

/// Keeps the cut-off verdict true, chooses who runs elections (this loop, or Raft's timer
/// below [`PREVOTE_LEVEL`]) and stands for election when a quorum agrees it is time.
pub async fn leadership_loop(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let timings = node.config.timings.clone();
    let mut metrics = node.raft.metrics();
    let mut tick = tokio::time::interval(timings.raft_heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When a quorum last answered this node as leader, from Raft's metrics.
    let mut quorum_acked = Instant::now();
    let mut raft_elects: Option<bool> = None;
    let mut was_leader = false;
    let mut jitter = election_jitter(&timings);
    let mut earliest = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tick.tick() => {}
        }
        // Raft publishes metrics when something happens; unchanged since the last tick,
        // the quorum's last answer is as old as it was, and ageing.
        if metrics.has_changed().unwrap_or(false)
            && let Some(ms) = metrics.borrow_and_update().millis_since_quorum_ack
        {
            quorum_acked = Instant::now() - Duration::from_millis(ms);
        }

        let prevote = node.fleet.read(|state| state.fleet_level) >= PREVOTE_LEVEL;
        if raft_elects != Some(!prevote) {
            node.raft.runtime_config().elect(!prevote);
            raft_elects = Some(!prevote);
            tracing::debug!(prevote, "elections go by pre-vote: {prevote}");
        }

        let view = View::of(&node);
        let leads = view.state == ServerState::Leader;
        if leads && !was_leader {
            // Just elected (or restored as leader at start): the quorum has until an
            // election timeout from now to answer.
            quorum_acked = Instant::now();
        }
        was_leader = leads;
        let quiet = node.leadership.heard_leader_at().elapsed();
        let reason = if leads {
            let unanswered = quorum_acked.elapsed();
            if view.voters.len() > 1 && unanswered > LEADER_PATIENCE * timings.raft_election_max {
                Some(format!(
                    "this machine leads term {} but no quorum of voters has answered it for {} ms",
                    view.term,
                    unanswered.as_millis()
                ))
            } else {
                node.leadership.heard_from_leader();
                None
            }
        } else if view.member && quiet > timings.raft_election_max {
            Some(format!(
                "no leader has reached this machine for {} ms",
                quiet.as_millis()
            ))
        } else {
            None
        };
        node.leadership.set_cut_off(reason);

        let due = quiet >= timings.raft_election_max + jitter && Instant::now() >= earliest;
        if prevote && view.voters.contains(&node.id) && !leads && due {
            jitter = election_jitter(&timings);
            earliest = Instant::now() + timings.raft_election_min + jitter;
            let me = node.p2p.local_peer_id();
            if node.leadership.promise(me, timings.raft_election_min, None)
                && pre_vote_round(&node, &view).await
            {
                tracing::info!(
                    term = view.term + 1,
                    "a quorum of voters has heard no leader: standing for election"
                );
                let trigger = node.raft.trigger();
                match tokio::time::timeout(timings.raft_election_min, trigger.elect()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::warn!(%err, "could not start an election"),
                    Err(_) => tracing::warn!("raft did not take the election in time"),
                }
            }
        }
    }
}

/// How many election timeouts a leader waits for a quorum's answer before it stops acting
/// as one: a follower elects a successor after one (and a spread), so a leader truly cut
/// off is replaced by then; a loaded fleet's slow answers get the second.
const LEADER_PATIENCE: u32 = 2;

/// A random spread in `[0, election_max - election_min]`, so voters do not all stand at once.
fn election_jitter(timings: &Timings) -> Duration {
    let spread = timings
        .raft_election_max
        .saturating_sub(timings.raft_election_min)
        .as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=spread))
}

/// What the loop needs of Raft's metrics at one moment.
struct View {
    state: ServerState,
    term: u64,
    last_log_index: Option<u64>,
    member: bool,
    voters: BTreeSet<MachineId>,
    /// Every voter set a quorum is needed in (two while the membership changes).
    quorums: Vec<BTreeSet<MachineId>>,
}

impl View {
    fn of(node: &Node) -> View {
        let metrics = node.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        View {
            state: metrics.state,
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            member: membership.get_node(&node.id).is_some(),
            voters: membership.voter_ids().collect(),
            quorums: membership.get_joint_config().clone(),
        }
    }
}

/// Asks every other voter at once, for at most `election_min`; true as soon as the voters
/// that said yes, this one included, are a majority of every voter set (a dead voter's
/// silence is not waited for).
async fn pre_vote_round(node: &Node, view: &View) -> bool {
    let ask = PreVote {
        term: view.term + 1,
        last_log_index: view.last_log_index,
    };
    let wait = node.config.timings.raft_election_min;
    let asks = view.voters.iter().filter(|id| **id != node.id).map(|&id| {
        let ask = ask.clone();
        async move {
            let addr = node.member_addr(id)?;
            let answer = node
                .p2p
                .request(
                    &addr.peer_id,
                    &addr.p2p_addr,
                    PeerRequest::PreVote(ask),
                    wait,
                )
                .await;
            matches!(answer, Ok(PeerResponse::PreVote { granted: true })).then_some(id)
        }
    });
    let mut asks: FuturesUnordered<_> = asks.collect();
    let mut granted = BTreeSet::from([node.id]);
    while !has_quorum(&view.quorums, &granted) {
        match asks.next().await {
            Some(Some(id)) => {
                granted.insert(id);
            }
            Some(None) => {}
            None => return false,
        }
    }
    true
}

/// Whether `granted` holds a majority of every set in `quorums`.
fn has_quorum(quorums: &[BTreeSet<MachineId>], granted: &BTreeSet<MachineId>) -> bool {
    quorums
        .iter()
        .all(|voters| voters.intersection(granted).count() * 2 > voters.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<MachineId> {
        ids.iter().map(|id| MachineId(*id)).collect()
    }

    #[test]
    fn a_quorum_is_a_majority_of_every_voter_set() {
        let three = vec![set(&[1, 2, 3])];
        assert!(has_quorum(&three, &set(&[1, 2])));
        assert!(!has_quorum(&three, &set(&[1])));
        assert!(
            !has_quorum(&three, &set(&[1, 4, 5])),
            "non-voters do not count"
        );
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(
            !has_quorum(&joint, &set(&[1, 2])),
            "both sets need a majority"
        );
        assert!(has_quorum(&joint, &set(&[2, 3, 4])));
        assert!(
            has_quorum(&[set(&[7])], &set(&[7])),
            "a lone voter elects itself"
        );
    }

    #[test]
    fn one_candidate_per_window_unless_the_voter_yields_its_own_promise() {
        let (me, a, b) = (PeerId::random(), PeerId::random(), PeerId::random());
        let window = Duration::from_secs(60);
        let leadership = Leadership::default();
        assert!(leadership.promise(me, window, None), "standing itself");
        assert!(!leadership.promise(a, window, None), "promised to itself");
        assert!(
            leadership.promise(a, window, Some(me)),
            "a candidate whose log is ahead takes its place"
        );
        assert!(
            leadership.promise(a, window, None),
            "asked again: still yes"
        );
        assert!(
            !leadership.promise(b, window, Some(me)),
            "only its own promise yields"
        );
        assert!(leadership.promise(b, Duration::ZERO, None), "a window ends");
    }
}
