//! Faults a test can turn on in one node (feature `testsuite`): answers to forwarded
//! writes lost on the way back, local proposals openraft never answers, and a panic in the
//! next request it serves or the next run it starts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use shoal_protocol::Command;

/// The faults of one node; all off by default.
#[derive(Debug, Default)]
pub struct Faults {
    /// Drop the answer of every Nth forwarded write this node answers (0: none).
    drop_every: AtomicU64,
    forwards: AtomicU64,
    dropped: AtomicU64,
    /// Local proposals of job reports are never answered.
    unanswered_reports: AtomicBool,
    /// The next API request panics.
    panicking_request: AtomicBool,
    /// The next run this node starts panics.
    panicking_start: AtomicBool,
}

impl Faults {
    /// From now on the answer to every `n`th forwarded write this node handles is lost
    /// after the write applied, as if the connection broke then; 0 turns it off.
    pub fn drop_every_nth_forward_answer(&self, n: u64) {
        self.drop_every.store(n, Ordering::SeqCst);
    }

    /// How many answers were dropped so far.
    pub fn forward_answers_dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Counts one answered forward; true when its answer is to be dropped.
    pub(crate) fn drop_forward_answer(&self) -> bool {
        let every = self.drop_every.load(Ordering::SeqCst);
        if every == 0 {
            return false;
        }
        let n = self.forwards.fetch_add(1, Ordering::SeqCst) + 1;
        let drop = n.is_multiple_of(every);
        if drop {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
        drop
    }

    /// While on, local proposals of job reports wait forever, as one does when openraft
    /// drops it unanswered (they are never proposed).
    pub fn never_answer_reports(&self, on: bool) {
        self.unanswered_reports.store(on, Ordering::SeqCst);
    }

    /// Whether a local proposal of `cmd` is to go unanswered.
    pub(crate) fn unanswered(&self, cmd: &Command) -> bool {
        self.unanswered_reports.load(Ordering::SeqCst)
            && matches!(cmd.inner(), Command::ReportJob { .. })
    }

    /// The next API request this node serves panics, as a bug would.
    pub fn panic_in_next_request(&self) {
        self.panicking_request.store(true, Ordering::SeqCst);
    }

    /// The next run this node starts panics, as a bug would.
    pub fn panic_in_next_start(&self) {
        self.panicking_start.store(true, Ordering::SeqCst);
    }

    /// Panics if a test asked for a panic in this request.
    pub(crate) fn maybe_panic_in_request(&self) {
        if self.panicking_request.swap(false, Ordering::SeqCst) {
            panic!("a panic a test asked for in this request");
        }
    }

    /// Panics if a test asked for a panic in this start.
    pub(crate) fn maybe_panic_in_start(&self) {
        if self.panicking_start.swap(false, Ordering::SeqCst) {
            panic!("a panic a test asked for in this start");
        }
    }
}
