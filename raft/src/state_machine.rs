//! The fleet state machine: [`FleetState`] in memory, applied from committed log entries,
//! and snapshotted whole to `snapshot.bin` (see [`crate::snapshot_file`]).
//!
//! On open the last snapshot is loaded; openraft then re-applies the log after it up to
//! the saved committed id. The daemon reads the state through a [`FleetHandle`], and
//! the events applying makes through its [`EventFeed`] (see [`crate::events`]). The state,
//! the last applied log id and the membership sit behind one lock, so a copy taken through
//! the handle ([`FleetHandle::copy`], what backups encode) is labelled with exactly the
//! log position it holds.

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use shoal_protocol::{Decoded, FleetState, MemberAddr, Response};
use tokio::sync::watch;

use crate::apply::ApplyCtx;
use crate::events::{EVENTS_KEPT, EventFeed, EventRing, apply_with_events, membership_event};
use crate::snapshot_file::SnapshotFile;
use crate::snapshot_format;
use crate::{FleetConfig, StoreError, TypeConfig};

type NodeIdOf<C> = <C as openraft::RaftTypeConfig>::NodeId;
type Membership<C> = StoredMembership<NodeIdOf<C>, MemberAddr>;
type Result<T, C> = std::result::Result<T, StorageError<NodeIdOf<C>>>;

/// What `snapshot.bin` holds and what a leader sends a lagging follower, frame-encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct StoredSnapshot<C: FleetConfig = TypeConfig> {
    pub meta: SnapshotMeta<NodeIdOf<C>, MemberAddr>,
    pub state: FleetState,
}

/// The applied state and where in the log it stands, changed together under one lock.
struct Replica<C: FleetConfig> {
    state: FleetState,
    last_applied: Option<LogId<NodeIdOf<C>>>,
    membership: Membership<C>,
}

type SharedReplica<C> = Arc<RwLock<Replica<C>>>;

/// Read access to the applied fleet state, for the API and the leader's loops.
pub struct FleetHandle<C: FleetConfig = TypeConfig> {
    replica: SharedReplica<C>,
    applied: watch::Receiver<Option<u64>>,
    events: EventFeed,
    halted: Arc<RwLock<Option<String>>>,
}

impl<C: FleetConfig> Clone for FleetHandle<C> {
    fn clone(&self) -> Self {
        FleetHandle {
            replica: self.replica.clone(),
            applied: self.applied.clone(),
            events: self.events.clone(),
            halted: self.halted.clone(),
        }
    }
}

impl<C: FleetConfig> FleetHandle<C> {
    /// Runs `f` on the state as applied so far. Keep `f` short: applies wait for it.
    pub fn read<T>(&self, f: impl FnOnce(&FleetState) -> T) -> T {
        // A panic while holding the lock aborts the daemon, so poison is not survivable.
        f(&self
            .replica
            .read()
            .expect("fleet state lock poisoned")
            .state)
    }

    /// A point-in-time copy of the state with the log id and membership it was applied
    /// up to, ready to encode. The lock is held only to clone; encode the copy elsewhere.
    /// `None` before this replica applied anything.
    pub fn copy(&self) -> Option<StoredSnapshot<C>> {
        let replica = self.replica.read().expect("fleet state lock poisoned");
        let last = replica.last_applied.clone()?;
        Some(StoredSnapshot {
            meta: SnapshotMeta {
                snapshot_id: format!("{}-{}-copy", last.leader_id, last.index),
                last_log_id: Some(last),
                last_membership: replica.membership.clone(),
            },
            state: replica.state.clone(),
        })
    }

    /// The index of the last applied log entry, updated after every apply batch and
    /// snapshot install; wait on it to read your own writes.
    pub fn applied(&self) -> watch::Receiver<Option<u64>> {
        self.applied.clone()
    }

    /// The events applying made: recent ones kept, later ones as they come.
    pub fn events(&self) -> &EventFeed {
        &self.events
    }

    /// Why this replica stopped applying the log, if it did: an entry it cannot read
    /// (written by a newer build). Raft stops on this node until it is upgraded.
    pub fn halted(&self) -> Option<String> {
        self.halted.read().expect("halt lock poisoned").clone()
    }
}

/// The state machine openraft drives.
pub struct StateMachineStore<C: FleetConfig = TypeConfig> {
    replica: SharedReplica<C>,
    applied_tx: watch::Sender<Option<u64>>,
    snapshot_file: Arc<SnapshotFile<C>>,
    events: EventRing,
    halted: Arc<RwLock<Option<String>>>,
}

impl<C: FleetConfig> StateMachineStore<C> {
    /// Opens the state machine kept in `dir`, starting from `snapshot.bin` if there is one.
    pub fn open(dir: &Path) -> std::result::Result<Self, StoreError> {
        let (snapshot_file, snapshot) = SnapshotFile::open(dir)?;
        let (state, last_applied, membership) = match snapshot {
            Some(snapshot) => {
                tracing::info!(
                    last_log = ?snapshot.meta.last_log_id,
                    machines = snapshot.state.machines.len(),
                    jobs = snapshot.state.jobs.len(),
                    "fleet state loaded from snapshot"
                );
                let meta = snapshot.meta;
                (snapshot.state, meta.last_log_id, meta.last_membership)
            }
            None => (FleetState::default(), None, Membership::<C>::default()),
        };
        let (applied_tx, _) = watch::channel(last_applied.as_ref().map(|id| id.index));
        let events = EventRing::new(EVENTS_KEPT, last_applied.as_ref().map_or(0, |id| id.index));
        Ok(StateMachineStore {
            replica: Arc::new(RwLock::new(Replica {
                state,
                last_applied,
                membership,
            })),
            applied_tx,
            snapshot_file,
            events,
            halted: Arc::default(),
        })
    }

    /// A handle for reading the state; it stays valid while Raft runs.
    pub fn handle(&self) -> FleetHandle<C> {
        FleetHandle {
            replica: self.replica.clone(),
            applied: self.applied_tx.subscribe(),
            events: self.events.feed(),
            halted: self.halted.clone(),
        }
    }

    fn publish_applied(&self, last: Option<&LogId<NodeIdOf<C>>>) {
        self.applied_tx.send_replace(last.map(|id| id.index));
    }
}

/// Builds a snapshot from a copy of the state taken when openraft asked for the builder,
/// so applies that run meanwhile cannot slip into a snapshot labelled with an older id.
/// The copy shares the state's persistent maps, so taking it holds the lock for next to
/// no time however many jobs are kept; applies that follow copy only what they change.
pub struct FleetSnapshotBuilder<C: FleetConfig = TypeConfig> {
    state: FleetState,
    last_applied: Option<LogId<NodeIdOf<C>>>,
    membership: Membership<C>,
    snapshot_file: Arc<SnapshotFile<C>>,
}

impl<C: FleetConfig> RaftSnapshotBuilder<C> for FleetSnapshotBuilder<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, C> {
        let stored = StoredSnapshot::<C> {
            meta: SnapshotMeta {
                last_log_id: self.last_applied.clone(),
                last_membership: self.membership.clone(),
                snapshot_id: self.snapshot_file.next_id(self.last_applied.as_ref()),
            },
            // The builder holds its own copy, taken when it was made; one build per builder.
            state: std::mem::take(&mut self.state),
        };
        let meta = stored.meta.clone();
        let (machines, jobs) = (stored.state.machines.len(), stored.state.jobs.len());
        let started = std::time::Instant::now();
        let bytes = self.snapshot_file.save(stored).await.map_err(|e| {
            e.into_storage(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            )
        })?;
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            bytes,
            machines,
            jobs,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fleet snapshot built"
        );
        // The snapshot went straight to the file, and is not read back: openraft (pinned at
        // 0.9.25) keeps only the meta of a snapshot it asked to be built, and reads the data
        // through `get_current_snapshot` when a follower needs it.
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}

impl<C: FleetConfig> RaftStateMachine<C> for StateMachineStore<C> {
    type SnapshotBuilder = FleetSnapshotBuilder<C>;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeIdOf<C>>>, Membership<C>), C> {
        let replica = self.replica.read().expect("fleet state lock poisoned");
        Ok((replica.last_applied.clone(), replica.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, C>
    where
        I: IntoIterator<Item = openraft::Entry<C>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut responses = Vec::new();
        let mut events = Vec::new();
        let mut halt = None;
        let last_applied = {
            let mut replica = self.replica.write().expect("fleet state lock poisoned");
            let Replica {
                state,
                last_applied,
                membership,
            } = &mut *replica;
            for entry in entries {
                let log_id = entry.log_id;
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Done,
                    EntryPayload::Normal(command) => match command.decode() {
                        Ok(Decoded::Known(cmd)) => {
                            let ctx = ApplyCtx {
                                log_index: log_id.index,
                            };
                            apply_with_events(state, cmd, &ctx, &mut events)
                        }
                        Ok(Decoded::Unknown { tag, detail }) => {
                            halt = Some(format!(
                                "log entry {} holds a command this build cannot apply ({tag}: \
                                 {detail}); it was written by a newer shoald: upgrade this machine",
                                log_id.index
                            ));
                            break;
                        }
                        Err(err) => {
                            halt = Some(format!(
                                "log entry {} holds a command that does not read ({err}): \
                                 the log is damaged",
                                log_id.index
                            ));
                            break;
                        }
                    },
                    EntryPayload::Membership(membership_now) => {
                        let voters = membership_now
                            .voter_ids()
                            .map(|id| id.to_string())
                            .collect();
                        let learners = membership_now
                            .learner_ids()
                            .map(|id| id.to_string())
                            .collect();
                        events.push(membership_event(log_id.index, voters, learners));
                        *membership = StoredMembership::new(Some(log_id.clone()), membership_now);
                        Response::Done
                    }
                };
                *last_applied = Some(log_id);
                responses.push(response);
            }
            last_applied.clone()
        };
        tracing::trace!(count = responses.len(), last = ?last_applied, "entries applied");
        if let Some(last) = &last_applied {
            self.events.publish(last.index, events);
        }
        self.publish_applied(last_applied.as_ref());
        if let Some(reason) = halt {
            // Applying past it would diverge from the replicas that understood it: stop
            // here, loudly, and let Raft shut down on this node until it is upgraded.
            tracing::error!(%reason, "stopped applying the fleet log");
            *self.halted.write().expect("halt lock poisoned") = Some(reason.clone());
            return Err(StoreError::Halted(reason)
                .into_storage(ErrorSubject::StateMachine, ErrorVerb::Write));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let replica = self.replica.read().expect("fleet state lock poisoned");
        FleetSnapshotBuilder {
            state: replica.state.clone(),
            last_applied: replica.last_applied.clone(),
            membership: replica.membership.clone(),
            snapshot_file: self.snapshot_file.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, C> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeIdOf<C>, MemberAddr>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), C> {
        let failed = |verb| {
            let subject = ErrorSubject::Snapshot(Some(meta.signature()));
            move |e: StoreError| e.into_storage(subject, verb)
        };
        let bytes = snapshot.into_inner();
        let (received, bytes) = tokio::task::spawn_blocking(move || {
            snapshot_format::decode::<C>(&bytes).map(|received| (received, bytes))
        })
        .await
        .map_err(StoreError::from)
        .and_then(|decoded| decoded)
        .map_err(failed(ErrorVerb::Read))?;
        if received.meta == *meta {
            self.snapshot_file
                .save_encoded(meta.last_log_id.clone(), bytes)
                .await
        } else {
            let stored = StoredSnapshot::<C> {
                meta: meta.clone(),
                state: received.state.clone(),
            };
            self.snapshot_file.save(stored).await.map(|_| ())
        }
        .map_err(failed(ErrorVerb::Write))?;
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            last_log = ?meta.last_log_id,
            machines = received.state.machines.len(),
            jobs = received.state.jobs.len(),
            "fleet snapshot installed"
        );
        let replaced = std::mem::replace(
            &mut *self.replica.write().expect("fleet state lock poisoned"),
            Replica {
                state: received.state,
                last_applied: meta.last_log_id.clone(),
                membership: meta.last_membership.clone(),
            },
        );
        // Freeing a large state takes a while: not under the lock, nor on the task that
        // applies entries next.
        tokio::task::spawn_blocking(move || drop(replaced));
        self.events
            .reset(meta.last_log_id.as_ref().map_or(0, |id| id.index));
        self.publish_applied(meta.last_log_id.as_ref());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, C> {
        self.snapshot_file
            .load()
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}
