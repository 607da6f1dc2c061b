//! The events a node keeps: the last [`EVENTS_KEPT`] in memory for clients that resume
//! (`since=INDEX`), and a broadcast for clients that follow.
//!
//! ```text
//!  state machine: EventRing::publish(last index, events) ─┬─▶ ring (oldest entries dropped)
//!                                                          └─▶ broadcast ─▶ each Follower
//!  API: EventFeed::follow(since) = backlog from the ring + a Follower, taken under one
//!  lock, so nothing falls between the two and nothing comes twice.
//! ```
//!
//! The state machine owns the [`EventRing`]; readers hold an [`EventFeed`], which does not
//! keep the broadcast open, so followers end when the state machine goes (at shutdown).
//!
//! The ring answers `since` only when it holds every event after it: it forgets old
//! entries and starts over when the node installs a snapshot (the entries the snapshot
//! covers were never applied here), and says so with [`Gone`] rather than leave a gap.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use shoal_protocol::events::Event;
use tokio::sync::broadcast;

/// Events each node keeps for clients that resume.
pub const EVENTS_KEPT: usize = 10_000;

/// Applied batches a follower may fall behind by before its stream ends.
pub const FOLLOW_BACKLOG: usize = 1024;

/// Events after `since` are no longer all here: the node keeps those after `oldest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "events after index {since} are no longer kept on this node: it has every event after \
     index {oldest}; resume with since >= {oldest}, or read the current state and follow from now"
)]
pub struct Gone {
    pub since: u64,
    pub oldest: u64,
}

/// Why a [`Follower`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    /// The follower fell more than [`FOLLOW_BACKLOG`] batches behind.
    #[error(
        "this stream fell too far behind the fleet's events; reconnect with since={resume_from}"
    )]
    Lagged { resume_from: u64 },
    /// The node installed a snapshot: it never applied the entries the snapshot covers,
    /// so it has no events for them.
    #[error(
        "this node caught up from a snapshot and has no events up to index {oldest}; \
         reconnect (another node may still have them) with since={resume_from}"
    )]
    Skipped { resume_from: u64, oldest: u64 },
    /// The node is shutting down.
    #[error("the node is shutting down; reconnect with since={resume_from}")]
    Closed { resume_from: u64 },
}

impl FollowError {
    /// Every event up to this index was handed out.
    pub fn resume_from(&self) -> u64 {
        match *self {
            FollowError::Lagged { resume_from }
            | FollowError::Skipped { resume_from, .. }
            | FollowError::Closed { resume_from } => resume_from,
        }
    }
}

/// What the broadcast carries: one applied batch, or the news that the ring started over.
/// Events are shared between the ring and the broadcast, not copied: an applied entry's
/// events are made once and freed once.
#[derive(Debug, Clone)]
enum Live {
    Events {
        last: u64,
        events: Arc<[Arc<Event>]>,
    },
    Reset {
        oldest: u64,
    },
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    capacity: usize,
    /// Every event with a greater index is in `events`.
    oldest: u64,
    /// The last applied index published.
    last: u64,
}

/// The node's recent events, as the state machine publishes them.
pub struct EventRing {
    ring: Arc<Mutex<Ring>>,
    live: broadcast::Sender<Live>,
}

/// Read access to an [`EventRing`], for the API.
#[derive(Clone)]
pub struct EventFeed {
    ring: Arc<Mutex<Ring>>,
    live: broadcast::WeakSender<Live>,
}

fn lock(ring: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    // A panic while holding the lock aborts the daemon, so poison is not survivable.
    ring.lock().expect("event ring lock poisoned")
}

impl EventRing {
    /// An empty ring holding up to `capacity` events (whole entries are dropped, so a few
    /// more for a moment), for a state machine whose last applied index is `applied`.
    pub fn new(capacity: usize, applied: u64) -> Self {
        EventRing {
            ring: Arc::new(Mutex::new(Ring {
                events: VecDeque::new(),
                capacity: capacity.max(1),
                oldest: applied,
                last: applied,
            })),
            live: broadcast::channel(FOLLOW_BACKLOG).0,
        }
    }

    /// A reader of this ring.
    pub fn feed(&self) -> EventFeed {
        EventFeed {
            ring: self.ring.clone(),
            live: self.live.downgrade(),
        }
    }

    /// Adds the events of entries applied up to `last` (in order) and hands them to
    /// followers.
    pub fn publish(&self, last: u64, events: Vec<Event>) {
        let mut ring = lock(&self.ring);
        ring.last = ring.last.max(last);
        if events.is_empty() {
            return;
        }
        let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        ring.events.extend(events.iter().cloned());
        while ring.events.len() > ring.capacity {
            let dropped = ring.events.pop_front().expect("longer than capacity").index;
            // Drop the rest of that entry too, so `oldest` marks a whole entry.
            while ring.events.front().is_some_and(|e| e.index == dropped) {
                ring.events.pop_front();
            }
            ring.oldest = dropped;
        }
        // Sent under the lock, so a follow() sees each batch either in its backlog or
        // live, never both. No receivers is fine.
        let _ = self.live.send(Live::Events {
            last,
            events: events.into(),
        });
    }

    /// Forgets every event: the node installed a snapshot up to `applied`.
    pub fn reset(&self, applied: u64) {
        let mut ring = lock(&self.ring);
        ring.events.clear();
        ring.oldest = applied;
        ring.last = applied;
        let _ = self.live.send(Live::Reset { oldest: applied });
    }
}

impl EventFeed {
    /// The index every kept event comes after, and the last applied index.
    pub fn bounds(&self) -> (u64, u64) {
        let ring = lock(&self.ring);
        (ring.oldest, ring.last)
    }

    /// Every kept event with an index above `since`, in order.
    pub fn since(&self, since: u64) -> Result<Vec<Event>, Gone> {
        let ring = lock(&self.ring);
        Self::backlog(&ring, since)
    }

    /// Every kept event, in order.
    pub fn kept(&self) -> Vec<Event> {
        lock(&self.ring)
            .events
            .iter()
            .map(|e| Event::clone(e))
            .collect()
    }

    fn backlog(ring: &Ring, since: u64) -> Result<Vec<Event>, Gone> {
        if since < ring.oldest {
            return Err(Gone {
                since,
                oldest: ring.oldest,
            });
        }
        let start = ring.events.partition_point(|e| e.index <= since);
        Ok(ring
            .events
            .range(start..)
            .map(|e| Event::clone(e))
            .collect())
    }

    /// The events after `since` (none without it) and a follower for every later one.
    pub fn follow(&self, since: Option<u64>) -> Result<(Vec<Event>, Follower), Gone> {
        let ring = lock(&self.ring);
        let backlog = match since {
            Some(since) => Self::backlog(&ring, since)?,
            None => Vec::new(),
        };
        let follower = Follower {
            // None once the ring is gone: the follower ends at once.
            live: self.live.upgrade().map(|live| live.subscribe()),
            // A client ahead of this node (it read another) waits for the node to catch up.
            after: since.unwrap_or(0).max(ring.last),
        };
        Ok((backlog, follower))
    }
}

/// Live events after a point, batch by batch as entries apply.
pub struct Follower {
    live: Option<broadcast::Receiver<Live>>,
    /// Every event up to this index was handed out (or came before the follow began).
    after: u64,
}

impl Follower {
    /// Every event up to this index was handed out.
    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next applied batch's events after the position, in order. Ends with an error
    /// rather than skip any: reconnect with `since` = [`FollowError::resume_from`].
    pub async fn next(&mut self) -> Result<Vec<Event>, FollowError> {
        let closed = FollowError::Closed {
            resume_from: self.after,
        };
        let Some(receiver) = &mut self.live else {
            return Err(closed);
        };
        loop {
            let live = match receiver.recv().await {
                Ok(live) => live,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Err(FollowError::Lagged {
                        resume_from: self.after,
                    });
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(FollowError::Closed {
                        resume_from: self.after,
                    });
                }
            };
            match live {
                Live::Events { last, events } => {
                    let fresh: Vec<Event> = events
                        .iter()
                        .filter(|e| e.index > self.after)
                        .map(|e| Event::clone(e))
                        .collect();
                    self.after = self.after.max(last);
                    if !fresh.is_empty() {
                        return Ok(fresh);
                    }
                }
                Live::Reset { oldest } if oldest > self.after => {
                    return Err(FollowError::Skipped {
                        resume_from: self.after,
                        oldest,
                    });
                }
                Live::Reset { .. } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shoal_protocol::events::Topic;

    use super::*;

    fn event(index: u64, seq: u32) -> Event {
        Event {
            index,
            seq,
            at_ms: None,
            topic: Topic::Job,
            kind: "job_submitted".into(),
            subject: Some(index.to_string()),
            detail: shoal_protocol::events::Detail::of(&json!({})),
        }
    }

    fn ids(events: &[Event]) -> Vec<(u64, u32)> {
        events.iter().map(|e| (e.index, e.seq)).collect()
    }

    #[test]
    fn resumes_after_an_index_while_it_keeps_every_later_event() {
        let ring = EventRing::new(4, 0);
        ring.publish(2, vec![event(1, 0), event(2, 0)]);
        ring.publish(3, vec![]);
        ring.publish(5, vec![event(4, 0), event(4, 1), event(5, 0)]);
        // Five events in a ring of four: entry 1 went.
        assert_eq!(ring.feed().bounds(), (1, 5));
        assert_eq!(
            ids(&ring.feed().since(1).unwrap()),
            [(2, 0), (4, 0), (4, 1), (5, 0)]
        );
        assert_eq!(
            ids(&ring.feed().since(3).unwrap()),
            [(4, 0), (4, 1), (5, 0)]
        );
        assert_eq!(ids(&ring.feed().since(4).unwrap()), [(5, 0)]);
        assert!(ring.feed().since(5).unwrap().is_empty());
        assert_eq!(ring.feed().kept(), ring.feed().since(1).unwrap());
        assert!(
            ring.feed().since(99).unwrap().is_empty(),
            "ahead of this node"
        );
        let gone = ring.feed().since(0).unwrap_err();
        assert_eq!(
            gone,
            Gone {
                since: 0,
                oldest: 1
            }
        );
        assert!(gone.to_string().contains("since >= 1"), "{gone}");
    }

    #[test]
    fn an_entry_is_dropped_whole() {
        let ring = EventRing::new(2, 0);
        ring.publish(1, vec![event(1, 0), event(1, 1)]);
        ring.publish(2, vec![event(2, 0)]);
        // Dropping (1, 0) takes (1, 1) with it: since=0 would miss it, since=1 misses nothing.
        assert_eq!(ring.feed().bounds(), (1, 2));
        assert!(ring.feed().since(0).is_err());
        assert_eq!(ids(&ring.feed().since(1).unwrap()), [(2, 0)]);
    }

    #[test]
    fn a_ring_opened_on_a_snapshot_or_reset_by_one_has_nothing_before_it() {
        let ring = EventRing::new(10, 40);
        assert_eq!(ring.feed().since(39).unwrap_err().oldest, 40);
        assert!(ring.feed().since(40).unwrap().is_empty());
        ring.publish(41, vec![event(41, 0)]);
        ring.reset(90);
        assert_eq!(ring.feed().since(41).unwrap_err().oldest, 90);
        assert!(ring.feed().since(90).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_follower_gets_the_backlog_then_every_later_batch_once() {
        let ring = EventRing::new(10, 0);
        ring.publish(2, vec![event(1, 0), event(2, 0)]);
        let (backlog, mut follower) = ring.feed().follow(Some(1)).unwrap();
        assert_eq!(ids(&backlog), [(2, 0)]);
        assert_eq!(follower.position(), 2);
        ring.publish(3, vec![event(3, 0), event(3, 1)]);
        ring.publish(4, vec![]);
        ring.publish(5, vec![event(5, 0)]);
        assert_eq!(ids(&follower.next().await.unwrap()), [(3, 0), (3, 1)]);
        assert_eq!(ids(&follower.next().await.unwrap()), [(5, 0)]);
        assert_eq!(follower.position(), 5);

        // Without since: only what comes next.
        let (backlog, mut fresh) = ring.feed().follow(None).unwrap();
        assert!(backlog.is_empty());
        ring.publish(6, vec![event(6, 0)]);
        assert_eq!(ids(&fresh.next().await.unwrap()), [(6, 0)]);
        assert!(ring.feed().follow(Some(0)).is_ok());
    }

    #[tokio::test]
    async fn a_client_ahead_of_this_node_waits_for_it() {
        let ring = EventRing::new(10, 0);
        ring.publish(3, vec![event(3, 0)]);
        let (backlog, mut follower) = ring.feed().follow(Some(5)).unwrap();
        assert!(backlog.is_empty());
        ring.publish(6, vec![event(4, 0), event(5, 0), event(6, 0)]);
        assert_eq!(ids(&follower.next().await.unwrap()), [(6, 0)]);
    }

    #[tokio::test]
    async fn a_lagging_follower_is_told_where_to_resume() {
        let ring = EventRing::new(10_000, 0);
        let (_, mut follower) = ring.feed().follow(Some(0)).unwrap();
        ring.publish(1, vec![event(1, 0)]);
        assert_eq!(ids(&follower.next().await.unwrap()), [(1, 0)]);
        for index in 2..(FOLLOW_BACKLOG as u64 + 10) {
            ring.publish(index, vec![event(index, 0)]);
        }
        let err = follower.next().await.unwrap_err();
        assert_eq!(err, FollowError::Lagged { resume_from: 1 });
        assert!(err.to_string().contains("since=1"), "{err}");
        // What it missed is still in the ring.
        assert_eq!(ring.feed().since(err.resume_from()).unwrap()[0].index, 2);
    }

    #[tokio::test]
    async fn a_snapshot_under_a_follower_ends_it() {
        let ring = EventRing::new(10, 0);
        let (_, mut follower) = ring.feed().follow(Some(0)).unwrap();
        ring.reset(50);
        let err = follower.next().await.unwrap_err();
        assert_eq!(
            err,
            FollowError::Skipped {
                resume_from: 0,
                oldest: 50
            }
        );
    }

    #[tokio::test]
    async fn followers_end_when_the_ring_goes() {
        let ring = EventRing::new(10, 0);
        let feed = ring.feed();
        ring.publish(3, vec![event(3, 0)]);
        let (_, mut follower) = feed.follow(None).unwrap();
        drop(ring);
        let err = follower.next().await.unwrap_err();
        assert_eq!(err, FollowError::Closed { resume_from: 3 });
        let (_, mut late) = feed.follow(Some(0)).unwrap();
        assert_eq!(
            late.next().await.unwrap_err(),
            FollowError::Closed { resume_from: 3 }
        );
    }
}
