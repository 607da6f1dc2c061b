//! `snapshot.bin`: the one persisted snapshot of the fleet state, replaced atomically
//! (write a temporary file, fsync, rename, fsync the directory).
//!
//! openraft builds snapshots in a task of their own, so a build can finish while a newer
//! snapshot is being installed; writes are serialized here and never replace a newer
//! snapshot with an older one.

use std::fs::{self, File};
use std::io::{BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::{LogId, Snapshot};

use crate::state_machine::StoredSnapshot;
use crate::{FleetConfig, StoreError, snapshot_format};

/// How much less CPU the snapshot encoder asks for than the rest of the node (a nice
/// value, on Linux).
const ENCODER_NICENESS: i32 = 10;

/// Runs `work` on a thread of its own, at a lower priority than the node's other threads
/// where the system allows. Encoding a large state takes seconds of CPU; on a machine with
/// few cores it must not take them from the task that applies the log (with the same
/// priority, an apply waited up to 45 ms behind the encoder on 2 cores; see BENCHMARKS.md).
async fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("shoal-snapshot".into())
        .spawn(move || {
            lower_priority();
            let _ = done.send(work());
        })
        .map_err(encoder_error)?;
    result
        .await
        .map_err(|_| encoder_error(std::io::Error::other("it stopped without an answer")))?
}

fn encoder_error(source: std::io::Error) -> StoreError {
    StoreError::Io {
        action: "running the snapshot encoder for",
        path: SNAPSHOT_FILE.to_string(),
        source,
    }
}

/// Lowers the calling thread's priority by [`ENCODER_NICENESS`]; best effort.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(err) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), ENCODER_NICENESS)
    {
        tracing::debug!(%err, "could not lower the snapshot encoder's priority");
    }
}

/// How much of an encoded snapshot is gathered before it goes to the file.
const WRITE_BUFFER: usize = 1 << 20;

/// The snapshot's file inside the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
const SNAPSHOT_TMP: &str = "snapshot.bin.tmp";

type NodeIdOf<C> = <C as openraft::RaftTypeConfig>::NodeId;

pub(crate) struct SnapshotFile<C: FleetConfig> {
    dir: PathBuf,
    /// The last log id of the snapshot on disk; the lock is held while writing.
    on_disk: Mutex<Option<LogId<NodeIdOf<C>>>>,
    /// Makes snapshot ids unique among those built by this process.
    built: AtomicU64,
}

impl<C: FleetConfig> SnapshotFile<C> {
    /// Opens the snapshot file in `dir` and loads the snapshot, if there is one.
    pub(crate) fn open(dir: &Path) -> Result<(Arc<Self>, Option<StoredSnapshot<C>>), StoreError> {
        let stored: Option<StoredSnapshot<C>> = match read_bytes(dir)? {
            Some(bytes) => Some(snapshot_format::decode(&bytes).map_err(|e| {
                StoreError::Snapshot(format!("{}: {e}", dir.join(SNAPSHOT_FILE).display()))
            })?),
            None => None,
        };
        let on_disk = stored.as_ref().and_then(|s| s.meta.last_log_id.clone());
        let file = SnapshotFile {
            dir: dir.to_path_buf(),
            on_disk: Mutex::new(on_disk),
            built: AtomicU64::new(0),
        };
        Ok((Arc::new(file), stored))
    }

    /// A fresh snapshot id for a snapshot up to `last`.
    pub(crate) fn next_id(&self, last: Option<&LogId<NodeIdOf<C>>>) -> String {
        let serial = self.built.fetch_add(1, Ordering::Relaxed);
        match last {
            Some(id) => format!("{}-{}-{serial}", id.leader_id, id.index),
            None => format!("none-{serial}"),
        }
    }

    /// Encodes `snapshot` straight into the file (on a thread of its own: it walks the
    /// whole state) and makes it the file on disk, unless the file already holds a newer
    /// one. Returns the bytes written (none when a newer one was there).
    pub(crate) async fn save(
        self: &Arc<Self>,
        snapshot: StoredSnapshot<C>,
    ) -> Result<u64, StoreError> {
        let this = self.clone();
        in_background(move || {
            let last = snapshot.meta.last_log_id.clone();
            let taken_at_ms = shoal_protocol::now_ms();
            this.persist_with(last, |file| {
                let out = BufWriter::with_capacity(WRITE_BUFFER, file);
                snapshot_format::encode_to(&snapshot, taken_at_ms, out)
            })
        })
        .await
    }

    /// Makes already encoded snapshot bytes the file on disk, unless the file already
    /// holds a newer one.
    pub(crate) async fn save_encoded(
        self: &Arc<Self>,
        last: Option<LogId<NodeIdOf<C>>>,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.persist(last, &bytes)).await?
    }

    fn persist(&self, last: Option<LogId<NodeIdOf<C>>>, bytes: &[u8]) -> Result<(), StoreError> {
        self.persist_with(last, |file| write_all(file, bytes))
            .map(|_| ())
    }

    /// Makes what `write` writes the file on disk, unless the file already holds a newer
    /// snapshot; returns the bytes written.
    fn persist_with(
        &self,
        last: Option<LogId<NodeIdOf<C>>>,
        write: impl FnOnce(&mut File) -> std::io::Result<u64>,
    ) -> Result<u64, StoreError> {
        let mut on_disk = self.on_disk.lock().expect("snapshot file lock poisoned");
        if last < *on_disk {
            tracing::info!(last = ?last, on_disk = ?*on_disk, "older snapshot not persisted");
            return Ok(0);
        }
        let written = write_atomically_with(&self.dir, write)?;
        *on_disk = last;
        Ok(written)
    }

    /// The snapshot on disk, as openraft hands it to a lagging follower.
    pub(crate) async fn load(&self) -> Result<Option<Snapshot<C>>, StoreError> {
        let dir = self.dir.clone();
        let Some(bytes) = tokio::task::spawn_blocking(move || read_bytes(&dir)).await?? else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta: snapshot_format::read_meta::<C>(&bytes)?,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

pub(crate) fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomically_with(dir, |file| write_all(file, bytes)).map(|_| ())
}

fn write_all(file: &mut File, bytes: &[u8]) -> std::io::Result<u64> {
    file.write_all(bytes).map(|()| bytes.len() as u64)
}

/// Writes the snapshot file with `write` (into a temporary file, synced, then renamed over
/// the old one); returns what `write` says it wrote.
fn write_atomically_with(
    dir: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<u64>,
) -> Result<u64, StoreError> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let path = dir.join(SNAPSHOT_FILE);
    let mut file = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
    let written = write(&mut file)
        .and_then(|written| file.sync_all().map(|()| written))
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &tmp, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync", dir, e))?;
    Ok(written)
}

fn read_bytes(dir: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("read", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, SnapshotMeta};
    use shoal_protocol::{FleetState, MachineId};

    use super::*;
    use crate::TypeConfig;

    fn snapshot(file: &SnapshotFile<TypeConfig>, index: u64) -> StoredSnapshot {
        let last = LogId::new(CommittedLeaderId::new(1, MachineId(1)), index);
        StoredSnapshot {
            meta: SnapshotMeta {
                snapshot_id: file.next_id(Some(&last)),
                last_log_id: Some(last),
                last_membership: Default::default(),
            },
            state: FleetState::default(),
        }
    }

    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let (file, loaded) = SnapshotFile::<TypeConfig>::open(dir.path()).unwrap();
        assert!(loaded.is_none());
        assert!(file.load().await.unwrap().is_none());

        let newer = snapshot(&file, 5);
        file.save(newer.clone()).await.unwrap();
        file.save(snapshot(&file, 3)).await.unwrap();
        let current = file.load().await.unwrap().expect("a snapshot");
        assert_eq!(current.meta, newer.meta);

        let (_, loaded) = SnapshotFile::<TypeConfig>::open(dir.path()).unwrap();
        assert_eq!(loaded, Some(newer));
        assert!(!dir.path().join(SNAPSHOT_TMP).exists());
    }
}
