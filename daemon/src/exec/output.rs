//! A job's output: stdout and stderr interleaved as they arrive, kept in memory up to a
//! bound (the newest bytes win), readable at any time and followable while the job runs.
//!
//! ```text
//!  executor ──OutputWriter::push──▶ [ pieces, oldest dropped past the limit ] ──snapshot──▶ API
//!                                          │ watch of bytes written
//!                                          └──────────────▶ Follower::next ──▶ log streaming
//! ```
//!
//! Every byte has an offset: its position in everything the job ever wrote. A follower asks
//! for the bytes from its offset on; if they were dropped before it read them, the next
//! chunk starts later than asked, so the gap shows in the offsets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The default bound on what is kept of one attempt's output: the last 1 MiB.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1 << 20;

/// Pieces from one stream are merged while the last piece is smaller than this, so a job
/// that writes a byte at a time does not cost a piece per byte.
const MERGE_BELOW: usize = 16 << 10;

/// Which of the job's streams a chunk came from.
pub use shoal_protocol::api::LogStream as Stream;

/// Consecutive bytes from one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub stream: Stream,
    /// Position of the first byte in everything the job wrote, counting from 0.
    pub offset: u64,
    pub data: Vec<u8>,
}

impl Chunk {
    /// The offset just past this chunk.
    pub fn end(&self) -> u64 {
        self.offset + self.data.len() as u64
    }
}

/// What is kept of the output at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSnapshot {
    /// The kept bytes, oldest first, in the order they arrived.
    pub chunks: Vec<Chunk>,
    /// Bytes written before the kept ones and dropped to stay within the limit.
    pub dropped: u64,
    /// Bytes written in all, kept or not.
    pub total: u64,
    /// True once the job has ended and no more output will come.
    pub closed: bool,
}

impl OutputSnapshot {
    /// The kept bytes of both streams, interleaved as they arrived.
    pub fn bytes(&self) -> Vec<u8> {
        self.chunks
            .iter()
            .flat_map(|c| c.data.iter().copied())
            .collect()
    }

    /// The kept bytes at or after `offset` only.
    pub fn since(mut self, offset: u64) -> OutputSnapshot {
        self.chunks.retain(|c| c.end() > offset);
        if let Some(first) = self.chunks.first_mut()
            && first.offset < offset
        {
            let skip = (offset - first.offset) as usize;
            first.data.drain(..skip);
            first.offset = offset;
        }
        self
    }

    /// [`Self::bytes`] as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

struct State {
    pieces: VecDeque<Chunk>,
    held: usize,
    limit: usize,
    total: u64,
    closed: bool,
}

impl State {
    /// The kept bytes from `offset` on, up to the end of the piece holding `offset` (or the
    /// oldest kept piece when `offset` was dropped).
    fn chunk_from(&self, offset: u64) -> Option<Chunk> {
        let index = self.pieces.partition_point(|p| p.end() <= offset);
        let piece = self.pieces.get(index)?;
        let skip = offset.saturating_sub(piece.offset) as usize;
        Some(Chunk {
            stream: piece.stream,
            offset: piece.offset + skip as u64,
            data: piece.data[skip..].to_vec(),
        })
    }

    fn trim(&mut self) {
        while self.held > self.limit {
            let excess = self.held - self.limit;
            let front = self.pieces.front_mut().expect("held bytes live in pieces");
            if front.data.len() <= excess {
                self.held -= front.data.len();
                self.pieces.pop_front();
            } else {
                front.data.drain(..excess);
                front.offset += excess as u64;
                self.held -= excess;
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Bytes written so far; bumped on every push and on close to wake followers.
    written: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (every mutation is
        // complete before anything can panic), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The executor's side: appends output and closes it when the job has ended.
#[derive(Clone)]
pub struct OutputWriter {
    shared: Arc<Shared>,
}

/// The readers' side: snapshots and followers. Cheap to clone.
#[derive(Clone)]
pub struct Output {
    shared: Arc<Shared>,
}

/// A bounded output keeping at most `limit` bytes (at least 1).
pub fn output_channel(limit: usize) -> (OutputWriter, Output) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pieces: VecDeque::new(),
            held: 0,
            limit: limit.max(1),
            total: 0,
            closed: false,
        }),
        written: watch::Sender::new(0),
    });
    (
        OutputWriter {
            shared: shared.clone(),
        },
        Output { shared },
    )
}

impl OutputWriter {
    /// Appends bytes from one stream; ignored once closed.
    pub fn push(&self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let total = {
            let mut state = self.shared.lock();
            if state.closed {
                return;
            }
            let offset = state.total;
            match state.pieces.back_mut() {
                Some(last) if last.stream == stream && last.data.len() < MERGE_BELOW => {
                    last.data.extend_from_slice(data)
                }
                _ => state.pieces.push_back(Chunk {
                    stream,
                    offset,
                    data: data.to_vec(),
                }),
            }
            state.held += data.len();
            state.total += data.len() as u64;
            state.trim();
            state.total
        };
        self.shared.written.send_replace(total);
    }

    /// Marks the output complete: followers end once they have read what is kept.
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        *self.shared.written.borrow()
    }

    pub fn close(&self) {
        let total = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.total
        };
        // send_modify wakes receivers even when the value is unchanged.
        self.shared.written.send_modify(|written| *written = total);
    }
}

impl Output {
    /// What is kept now.
    pub fn snapshot(&self) -> OutputSnapshot {
        let state = self.shared.lock();
        OutputSnapshot {
            chunks: state.pieces.iter().cloned().collect(),
            dropped: state.total - state.held as u64,
            total: state.total,
            closed: state.closed,
        }
    }

    /// Follows the output from the oldest kept byte.
    pub fn follow(&self) -> Follower {
        self.follow_from(0)
    }

    /// Follows the output from `offset` (e.g. [`OutputSnapshot::total`] for only what
    /// comes after a snapshot).
    pub fn follow_from(&self, offset: u64) -> Follower {
        Follower {
            shared: self.shared.clone(),
            next: offset,
            written: self.shared.written.subscribe(),
        }
    }
}

/// Reads the output chunk by chunk as it arrives.
pub struct Follower {
    shared: Arc<Shared>,
    next: u64,
    written: watch::Receiver<u64>,
}

impl Follower {
    /// The next kept bytes at or after the follower's offset, waiting for them while the
    /// job runs; `None` once the output is closed and everything kept has been read.
    pub async fn next(&mut self) -> Option<Chunk> {
        loop {
            // Mark the current value seen before looking, so a push after the look wakes us.
            self.written.borrow_and_update();
            {
                let state = self.shared.lock();
                if let Some(chunk) = state.chunk_from(self.next) {
                    self.next = chunk.end();
                    return Some(chunk);
                }
                if state.closed {
                    return None;
                }
            }
            // The sender lives in `shared`, which we hold: this cannot fail.
            let _ = self.written.changed().await;
        }
    }

    /// The offset the next chunk is asked from.
    pub fn offset(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keeps_both_streams_interleaved_in_arrival_order() {
        let (writer, output) = output_channel(1024);
        writer.push(Stream::Stdout, b"one\n");
        writer.push(Stream::Stderr, b"two\n");
        writer.push(Stream::Stdout, b"three\n");
        let snap = output.snapshot();
        assert_eq!(snap.text(), "one\ntwo\nthree\n");
        let streams: Vec<_> = snap.chunks.iter().map(|c| c.stream).collect();
        assert_eq!(streams, [Stream::Stdout, Stream::Stderr, Stream::Stdout]);
        assert_eq!((snap.dropped, snap.total, snap.closed), (0, 14, false));
    }

    #[test]
    fn keeps_only_the_last_limit_bytes_and_counts_the_dropped() {
        let (writer, output) = output_channel(10);
        writer.push(Stream::Stdout, b"0123456");
        writer.push(Stream::Stderr, b"789ab");
        writer.push(Stream::Stdout, b"cd");
        let snap = output.snapshot();
        assert_eq!(snap.text(), "456789abcd");
        assert_eq!((snap.dropped, snap.total), (4, 14));
        assert_eq!(
            snap.chunks[0].offset, 4,
            "the first kept byte keeps its offset"
        );

        // One write larger than the limit keeps its own tail.
        writer.push(Stream::Stderr, b"ABCDEFGHIJKLMNOP");
        let snap = output.snapshot();
        assert_eq!(snap.text(), "GHIJKLMNOP");
        assert_eq!((snap.dropped, snap.total), (20, 30));
        assert_eq!(snap.chunks.len(), 1);
    }

    #[test]
    fn merges_small_writes_of_one_stream() {
        let (writer, output) = output_channel(DEFAULT_OUTPUT_LIMIT);
        for _ in 0..1000 {
            writer.push(Stream::Stdout, b"x");
        }
        writer.push(Stream::Stderr, b"e");
        let snap = output.snapshot();
        assert_eq!(snap.chunks.len(), 2);
        assert_eq!(snap.chunks[0].data.len(), 1000);
        assert_eq!(snap.chunks[1].offset, 1000);
    }

    #[test]
    fn nothing_is_kept_after_close() {
        let (writer, output) = output_channel(64);
        writer.push(Stream::Stdout, b"before");
        writer.close();
        writer.push(Stream::Stdout, b"after");
        let snap = output.snapshot();
        assert_eq!(snap.text(), "before");
        assert!(snap.closed);
    }

    #[test]
    fn since_cuts_the_snapshot_at_an_offset() {
        let (writer, output) = output_channel(64);
        writer.push(Stream::Stdout, b"abc");
        writer.push(Stream::Stderr, b"def");
        let snap = output.snapshot().since(4);
        assert_eq!(snap.text(), "ef");
        assert_eq!(
            (snap.chunks[0].offset, snap.chunks[0].stream),
            (4, Stream::Stderr)
        );
        assert_eq!(snap.total, 6);
        assert!(output.snapshot().since(6).chunks.is_empty());
        assert_eq!(output.snapshot().since(0).text(), "abcdef");
    }

    #[tokio::test]
    async fn a_follower_reads_the_backlog_then_new_chunks_then_ends_on_close() {
        let (writer, output) = output_channel(1024);
        writer.push(Stream::Stdout, b"old\n");
        let mut follower = output.follow();
        assert_eq!(follower.next().await.unwrap().data, b"old\n");

        let waiting = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(chunk) = follower.next().await {
                seen.push((chunk.stream, chunk.offset, chunk.data));
            }
            seen
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the follower waits for more output");
        writer.push(Stream::Stderr, b"new\n");
        tokio::time::sleep(Duration::from_millis(20)).await;
        writer.push(Stream::Stderr, b"more\n");
        writer.close();
        let seen = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the follower ends when the output closes")
            .unwrap();
        let text: Vec<u8> = seen.iter().flat_map(|(_, _, d)| d.clone()).collect();
        assert_eq!(text, b"new\nmore\n");
        assert_eq!(seen[0].0, Stream::Stderr);
        assert_eq!(seen[0].1, 4);
    }

    #[tokio::test]
    async fn a_slow_follower_sees_the_gap_in_offsets() {
        let (writer, output) = output_channel(8);
        let mut follower = output.follow();
        writer.push(Stream::Stdout, b"aaaa");
        writer.push(Stream::Stderr, b"bbbbbbbb");
        writer.close();
        let chunk = follower.next().await.unwrap();
        assert_eq!(chunk.offset, 4, "the first 4 bytes were dropped unread");
        assert_eq!(chunk.data, b"bbbbbbbb");
        assert_eq!(follower.next().await, None);
    }

    #[tokio::test]
    async fn follow_from_the_end_of_a_snapshot_gives_only_what_comes_after() {
        let (writer, output) = output_channel(64);
        writer.push(Stream::Stdout, b"seen");
        let snap = output.snapshot();
        let mut follower = output.follow_from(snap.total);
        writer.push(Stream::Stdout, b"-fresh");
        let chunk = follower.next().await.unwrap();
        assert_eq!((chunk.offset, chunk.data.as_slice()), (4, &b"-fresh"[..]));
        assert_eq!(follower.offset(), 10);
    }
}
