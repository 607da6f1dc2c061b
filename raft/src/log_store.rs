//! The Raft log, vote, committed and last-purged log ids in one redb file, `raft.redb`.
//!
//! Entries are frame-encoded under their u64 index. Every write is one redb transaction,
//! committed durably (fsync) before the call returns, and run on tokio's blocking pool
//! because redb blocks.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, StorageError, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_protocol::frame;

use crate::{FleetConfig, StoreError, TypeConfig};

/// The log store's file inside the data directory.
pub const LOG_FILE: &str = "raft.redb";

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

type NodeIdOf<C> = <C as openraft::RaftTypeConfig>::NodeId;
type Result<T, C> = std::result::Result<T, StorageError<NodeIdOf<C>>>;

/// The durable Raft log. Cloning it is cheap; clones share the database (a clone is also
/// the log reader openraft's replication tasks use).
pub struct LogStore<C: FleetConfig = TypeConfig> {
    db: Arc<Database>,
    /// Appends waiting for the next fsync; see [`flush_loop`].
    flusher: Arc<Flusher<C>>,
    /// Entries handed to the flusher and not yet written, readable meanwhile.
    unflushed: Unflushed,
    /// The last committed index plus one (0: nothing committed yet), for metrics.
    commit_index: Arc<AtomicU64>,
    _config: PhantomData<C>,
}

/// Reads the commit index a [`LogStore`] last saw, from anywhere.
#[derive(Clone)]
pub struct CommitIndex(Arc<AtomicU64>);

impl CommitIndex {
    /// The highest log index known committed, if any.
    pub fn get(&self) -> Option<u64> {
        self.0.load(Ordering::Relaxed).checked_sub(1)
    }
}

/// Tells whether a [`LogStore`]'s database is still open: it closes once the store, its
/// clones and its flush thread are all gone, and only then can it be opened again.
#[derive(Clone)]
pub struct StoreOpen(std::sync::Weak<Database>);

impl StoreOpen {
    pub fn is_open(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl<C: FleetConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            flusher: self.flusher.clone(),
            unflushed: self.unflushed.clone(),
            commit_index: self.commit_index.clone(),
            _config: PhantomData,
        }
    }
}

/// Opens the database, waiting a moment if this process is still closing it (a node that
/// was just stopped in the same process lets go of it from another thread).
fn create_when_released(path: &Path) -> std::result::Result<Database, redb::DatabaseError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

impl<C: FleetConfig> LogStore<C> {
    /// Opens `dir/raft.redb`, creating the file and its tables if needed. `dir` must exist.
    pub fn open(dir: &Path) -> std::result::Result<Self, StoreError> {
        let path = dir.join(LOG_FILE);
        let db = create_when_released(&path)?;
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        tracing::debug!(path = %path.display(), "raft log opened");
        let db = Arc::new(db);
        let (queue, pending) = std::sync::mpsc::channel();
        let flusher_db = db.clone();
        let unflushed = Unflushed::default();
        let flusher_unflushed = unflushed.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop::<C>(&flusher_db, &flusher_unflushed, pending))
            .map_err(|e| StoreError::io("start flusher for", &path, e))?;
        let flusher = Arc::new(Flusher {
            queue: Some(queue),
            thread: Some(thread),
        });
        Ok(LogStore {
            db,
            flusher,
            unflushed,
            commit_index: Arc::new(AtomicU64::new(0)),
            _config: PhantomData,
        })
    }

    /// Waits until everything queued for the flusher so far is written.
    async fn flushed(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.flusher.send(FlushJob::Barrier(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// A handle on the commit index this store is told about.
    pub fn commit_index(&self) -> CommitIndex {
        CommitIndex(self.commit_index.clone())
    }

    /// A way to see when the database has closed, without keeping it open.
    pub fn open_watch(&self) -> StoreOpen {
        StoreOpen(Arc::downgrade(&self.db))
    }

    /// Runs `f` on the database in tokio's blocking pool.
    async fn blocking<T, F>(&self, f: F) -> std::result::Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> std::result::Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await?
    }

    async fn read_meta<T>(&self, key: &'static str) -> std::result::Result<Option<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(META)?;
            let value = table.get(key)?;
            Ok(value.map(|v| frame::decode(v.value())).transpose()?)
        })
        .await
    }

    /// Sets `key` to `value`, or deletes it when `value` is `None`, durably.
    /// Writes one meta value, fsynced before it returns.
    async fn write_meta<T>(
        &self,
        key: &'static str,
        value: Option<&T>,
    ) -> std::result::Result<(), StoreError>
    where
        T: Serialize,
    {
        let bytes = value.map(frame::encode).transpose()?;
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(META)?;
                match &bytes {
                    Some(bytes) => table.insert(key, bytes.as_slice())?,
                    None => table.remove(key)?,
                };
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

/// Encoded entries by index, handed to the flusher and not yet in redb.
#[derive(Clone, Default)]
struct Unflushed(Arc<std::sync::Mutex<std::collections::BTreeMap<u64, Arc<Vec<u8>>>>>);

impl Unflushed {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, Arc<Vec<u8>>>> {
        self.0.lock().expect("unflushed log lock")
    }
}

/// What the flusher is asked to do, in order.
enum FlushJob<C: FleetConfig> {
    Append {
        entries: Vec<(u64, Arc<Vec<u8>>)>,
        callback: LogFlushed<C>,
    },
    Committed(Vec<u8>),
    /// Answered once everything queued before it is written.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The flush thread and its queue. Dropping the last store closes the queue and waits for
/// the thread, so the database file is released when the store is.
struct Flusher<C: FleetConfig> {
    queue: Option<std::sync::mpsc::Sender<FlushJob<C>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<C: FleetConfig> Flusher<C> {
    fn send(&self, job: FlushJob<C>) -> std::result::Result<(), FlushJob<C>> {
        let queue = self
            .queue
            .as_ref()
            .expect("queue lives as long as the store");
        queue.send(job).map_err(|unsent| unsent.0)
    }
}

impl<C: FleetConfig> Drop for Flusher<C> {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Group commit. `append` returns at once: its entries wait in [`Unflushed`] (readers see
/// them there) and its callback in the queue. This thread writes everything queued so far
/// in one durable redb transaction (one fsync), then tells openraft those appends are
/// flushed. Under load one fsync covers many appends; idle, an append waits for one fsync.
/// The Raft core never waits on the disk. Ends when the store is dropped.
fn flush_loop<C: FleetConfig>(
    db: &Database,
    unflushed: &Unflushed,
    queue: std::sync::mpsc::Receiver<FlushJob<C>>,
) {
    while let Ok(first) = queue.recv() {
        let mut entries: Vec<(u64, Arc<Vec<u8>>)> = Vec::new();
        let mut callbacks = Vec::new();
        let mut committed = None;
        let mut barriers = Vec::new();
        for job in std::iter::once(first).chain(queue.try_iter()) {
            match job {
                FlushJob::Append {
                    entries: more,
                    callback,
                } => {
                    entries.extend(more);
                    callbacks.push(callback);
                }
                FlushJob::Committed(bytes) => committed = Some(bytes),
                FlushJob::Barrier(done) => barriers.push(done),
            }
        }
        let written = (|| -> std::result::Result<(), StoreError> {
            let txn = db.begin_write()?;
            {
                let mut logs = txn.open_table(LOGS)?;
                for (index, bytes) in &entries {
                    logs.insert(*index, bytes.as_slice())?;
                }
                if let Some(bytes) = &committed {
                    txn.open_table(META)?.insert(COMMITTED, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })();
        {
            // Forget what is now in redb, unless a newer append replaced it meanwhile.
            let mut map = unflushed.lock();
            for (index, bytes) in &entries {
                if map.get(index).is_some_and(|held| Arc::ptr_eq(held, bytes)) {
                    map.remove(index);
                }
            }
        }
        for callback in callbacks {
            let result = written
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string()));
            callback.log_io_completed(result);
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
}

fn decode_entry<C: FleetConfig>(
    bytes: &[u8],
) -> std::result::Result<openraft::Entry<C>, StoreError> {
    Ok(frame::decode(bytes)?)
}

impl<C: FleetConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB>(&mut self, range: RB) -> Result<Vec<openraft::Entry<C>>, C>
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        // Unflushed first: an entry the flusher writes meanwhile is then found in redb.
        let mut found: std::collections::BTreeMap<u64, Arc<Vec<u8>>> = self
            .unflushed
            .lock()
            .range(bounds)
            .map(|(i, b)| (*i, b.clone()))
            .collect();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOGS)?;
            for item in table.range(bounds)? {
                let (key, value) = item?;
                found
                    .entry(key.value())
                    .or_insert_with(|| Arc::new(value.value().to_vec()));
            }
            found
                .values()
                .map(|bytes| decode_entry::<C>(bytes))
                .collect()
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl<C: FleetConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, C> {
        let unflushed_last = self
            .unflushed
            .lock()
            .last_key_value()
            .map(|(i, b)| (*i, b.clone()));
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            let last_purged_log_id: Option<LogId<NodeIdOf<C>>> = meta
                .get(LAST_PURGED)?
                .map(|v| frame::decode(v.value()))
                .transpose()?;
            let logs = txn.open_table(LOGS)?;
            let last_log_id = match (unflushed_last, logs.last()?) {
                (Some((index, bytes)), last)
                    if last.as_ref().is_none_or(|(k, _)| k.value() <= index) =>
                {
                    Some(decode_entry::<C>(&bytes)?.log_id)
                }
                (_, Some((_, value))) => Some(decode_entry::<C>(value.value())?.log_id),
                (_, None) => last_purged_log_id.clone(),
            };
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeIdOf<C>>) -> Result<(), C> {
        self.write_meta(VOTE, Some(vote))
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeIdOf<C>>>, C> {
        self.read_meta(VOTE)
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeIdOf<C>>>) -> Result<(), C> {
        // The committed id only saves re-applying entries after a restart; it need not be
        // fsynced on its own (the next log append makes it durable), which saves an fsync
        // per commit.
        self.commit_index.store(
            committed.as_ref().map_or(0, |id| id.index + 1),
            Ordering::Relaxed,
        );
        // Written with the next flush: it only saves re-applying entries after a restart.
        if let Some(id) = committed {
            let bytes = frame::encode(&id).map_err(|e| {
                StoreError::from(e).into_storage(ErrorSubject::Store, ErrorVerb::Write)
            })?;
            let _ = self.flusher.send(FlushJob::Committed(bytes));
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeIdOf<C>>>, C> {
        self.read_meta(COMMITTED)
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), C>
    where
        I: IntoIterator<Item = openraft::Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut last = None;
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = frame::encode(&entry).map_err(|e| {
                StoreError::from(e)
                    .into_storage(ErrorSubject::Log(entry.log_id.clone()), ErrorVerb::Write)
            })?;
            encoded.push((entry.log_id.index, bytes));
            last = Some(entry.log_id);
        }
        let count = encoded.len();
        let entries: Vec<(u64, Arc<Vec<u8>>)> =
            encoded.into_iter().map(|(i, b)| (i, Arc::new(b))).collect();
        {
            let mut map = self.unflushed.lock();
            for (index, bytes) in &entries {
                map.insert(*index, bytes.clone());
            }
        }
        tracing::trace!(count, last = ?last, "raft log entries queued for flush");
        if let Err(FlushJob::Append { callback, .. }) =
            self.flusher.send(FlushJob::Append { entries, callback })
        {
            callback.log_io_completed(Err(std::io::Error::other(
                "the raft log flusher has stopped",
            )));
            return Err(StoreError::io(
                "append to",
                Path::new(LOG_FILE),
                std::io::Error::other("flusher stopped"),
            )
            .into_storage(ErrorSubject::Logs, ErrorVerb::Write));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeIdOf<C>>) -> Result<(), C> {
        tracing::debug!(since = %log_id, "raft log truncated");
        let since = log_id.index;
        self.flushed().await;
        self.unflushed.lock().retain(|index, _| *index < since);
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            txn.open_table(LOGS)?.retain_in(since.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<NodeIdOf<C>>) -> Result<(), C> {
        tracing::debug!(upto = %log_id, "raft log purged");
        let upto = log_id.index;
        self.flushed().await;
        self.unflushed.lock().retain(|index, _| *index > upto);
        let purged = frame::encode(&log_id)
            .map_err(|e| StoreError::from(e).into_storage(ErrorSubject::Logs, ErrorVerb::Delete))?;
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            txn.open_table(META)?
                .insert(LAST_PURGED, purged.as_slice())?;
            txn.open_table(LOGS)?.retain_in(..=upto, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
