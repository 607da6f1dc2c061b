//! The fleet state machine: [`FleetState`] in memory, applied from committed log entries,
//! and snapshotted whole to `snapshot.bin` (written to a temporary file, fsynced, renamed).
//!
//! On open the last snapshot is loaded; openraft then re-applies the log after it up to
//! the saved committed id. The daemon reads the state through a [`FleetHandle`].

use std::fs::{self, File};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use shoal_protocol::{FleetState, MemberAddr, Response, frame};
use tokio::sync::watch;

use crate::apply::{ApplyCtx, apply};
use crate::{FleetConfig, StoreError, TypeConfig};

/// The snapshot's file inside the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_TMP: &str = "snapshot.bin.tmp";

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

/// Read access to the applied fleet state, for the API and the leader's loops.
#[derive(Clone)]
pub struct FleetHandle {
    state: Arc<RwLock<FleetState>>,
    applied: watch::Receiver<Option<u64>>,
}

impl FleetHandle {
    /// Runs `f` on the state as applied so far. Keep `f` short: applies wait for it.
    pub fn read<T>(&self, f: impl FnOnce(&FleetState) -> T) -> T {
        // A panic while holding the lock aborts the daemon, so poison is not survivable.
        f(&self.state.read().expect("fleet state lock poisoned"))
    }

    /// The index of the last applied log entry, updated after every apply batch and
    /// snapshot install; wait on it to read your own writes.
    pub fn applied(&self) -> watch::Receiver<Option<u64>> {
        self.applied.clone()
    }
}

/// The state machine openraft drives.
pub struct StateMachineStore<C: FleetConfig = TypeConfig> {
    dir: PathBuf,
    state: Arc<RwLock<FleetState>>,
    last_applied: Option<LogId<NodeIdOf<C>>>,
    membership: Membership<C>,
    applied_tx: watch::Sender<Option<u64>>,
    /// Makes snapshot ids unique among those built by this process.
    snapshots_built: Arc<AtomicU64>,
}

impl<C: FleetConfig> StateMachineStore<C> {
    /// Opens the state machine kept in `dir`, starting from `snapshot.bin` if there is one.
    pub fn open(dir: &Path) -> std::result::Result<Self, StoreError> {
        let (state, last_applied, membership) = match read_snapshot::<C>(dir)? {
            Some(snapshot) => {
                tracing::info!(
                    last_log = ?snapshot.meta.last_log_id,
                    machines = snapshot.state.machines.len(),
                    "fleet state loaded from snapshot"
                );
                let meta = snapshot.meta;
                (snapshot.state, meta.last_log_id, meta.last_membership)
            }
            None => (FleetState::default(), None, Membership::<C>::default()),
        };
        let (applied_tx, _) = watch::channel(last_applied.as_ref().map(|id| id.index));
        Ok(StateMachineStore {
            dir: dir.to_path_buf(),
            state: Arc::new(RwLock::new(state)),
            last_applied,
            membership,
            applied_tx,
            snapshots_built: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A handle for reading the state; it stays valid while Raft runs.
    pub fn handle(&self) -> FleetHandle {
        FleetHandle {
            state: self.state.clone(),
            applied: self.applied_tx.subscribe(),
        }
    }

    fn publish_applied(&self) {
        self.applied_tx
            .send_replace(self.last_applied.as_ref().map(|id| id.index));
    }
}

/// Builds a snapshot from a copy of the state taken when openraft asked for the builder,
/// so applies that run meanwhile cannot slip into a snapshot labelled with an older id.
pub struct FleetSnapshotBuilder<C: FleetConfig = TypeConfig> {
    dir: PathBuf,
    state: FleetState,
    last_applied: Option<LogId<NodeIdOf<C>>>,
    membership: Membership<C>,
    snapshots_built: Arc<AtomicU64>,
}

impl<C: FleetConfig> RaftSnapshotBuilder<C> for FleetSnapshotBuilder<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, C> {
        let serial = self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &self.last_applied {
            Some(id) => format!("{}-{}-{serial}", id.leader_id, id.index),
            None => format!("none-{serial}"),
        };
        let stored = StoredSnapshot::<C> {
            meta: SnapshotMeta {
                last_log_id: self.last_applied.clone(),
                last_membership: self.membership.clone(),
                snapshot_id,
            },
            state: std::mem::take(&mut self.state),
        };
        let signature = Some(stored.meta.signature());
        let bytes = persist(&self.dir, &stored)
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(signature), ErrorVerb::Write))?;
        tracing::info!(
            snapshot_id = %stored.meta.snapshot_id,
            bytes = bytes.len(),
            machines = stored.state.machines.len(),
            "fleet snapshot built"
        );
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl<C: FleetConfig> RaftStateMachine<C> for StateMachineStore<C> {
    type SnapshotBuilder = FleetSnapshotBuilder<C>;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeIdOf<C>>>, Membership<C>), C> {
        Ok((self.last_applied.clone(), self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, C>
    where
        I: IntoIterator<Item = openraft::Entry<C>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut responses = Vec::new();
        {
            let mut state = self.state.write().expect("fleet state lock poisoned");
            for entry in entries {
                let log_id = entry.log_id;
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Done,
                    EntryPayload::Normal(cmd) => {
                        let ctx = ApplyCtx {
                            log_index: log_id.index,
                        };
                        apply(&mut state, cmd, &ctx)
                    }
                    EntryPayload::Membership(membership) => {
                        self.membership = StoredMembership::new(Some(log_id.clone()), membership);
                        Response::Done
                    }
                };
                self.last_applied = Some(log_id);
                responses.push(response);
            }
        }
        tracing::trace!(count = responses.len(), last = ?self.last_applied, "entries applied");
        self.publish_applied();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        FleetSnapshotBuilder {
            dir: self.dir.clone(),
            state: self
                .state
                .read()
                .expect("fleet state lock poisoned")
                .clone(),
            last_applied: self.last_applied.clone(),
            membership: self.membership.clone(),
            snapshots_built: self.snapshots_built.clone(),
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
        let received: StoredSnapshot<C> = frame::decode(snapshot.get_ref())
            .map_err(StoreError::from)
            .map_err(failed(ErrorVerb::Read))?;
        let stored = StoredSnapshot::<C> {
            meta: meta.clone(),
            state: received.state,
        };
        persist(&self.dir, &stored)
            .await
            .map_err(failed(ErrorVerb::Write))?;
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            last_log = ?meta.last_log_id,
            machines = stored.state.machines.len(),
            "fleet snapshot installed"
        );
        *self.state.write().expect("fleet state lock poisoned") = stored.state;
        self.last_applied = meta.last_log_id.clone();
        self.membership = meta.last_membership.clone();
        self.publish_applied();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, C> {
        current_snapshot(self.dir.clone())
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}

/// The persisted snapshot, if any, as openraft hands it to a follower.
async fn current_snapshot<C: FleetConfig>(
    dir: PathBuf,
) -> std::result::Result<Option<Snapshot<C>>, StoreError> {
    let Some(bytes) = tokio::task::spawn_blocking(move || read_snapshot_bytes(&dir)).await?? else {
        return Ok(None);
    };
    let stored: StoredSnapshot<C> = frame::decode(&bytes)?;
    Ok(Some(Snapshot {
        meta: stored.meta,
        snapshot: Box::new(Cursor::new(bytes)),
    }))
}

/// Encodes `snapshot` and makes it `dir/snapshot.bin` atomically; returns the bytes.
async fn persist<C: FleetConfig>(
    dir: &Path,
    snapshot: &StoredSnapshot<C>,
) -> std::result::Result<Vec<u8>, StoreError> {
    let bytes = frame::encode(snapshot)?;
    let dir = dir.to_path_buf();
    let written = bytes.clone();
    tokio::task::spawn_blocking(move || write_atomically(&dir, &written)).await??;
    Ok(bytes)
}

fn write_atomically(dir: &Path, bytes: &[u8]) -> std::result::Result<(), StoreError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let path = dir.join(SNAPSHOT_FILE);
    let mut file = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &tmp, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync", dir, e))
}

fn read_snapshot_bytes(dir: &Path) -> std::result::Result<Option<Vec<u8>>, StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", &path, e)),
    }
}

fn read_snapshot<C: FleetConfig>(
    dir: &Path,
) -> std::result::Result<Option<StoredSnapshot<C>>, StoreError> {
    match read_snapshot_bytes(dir)? {
        Some(bytes) => Ok(Some(frame::decode(&bytes)?)),
        None => Ok(None),
    }
}
