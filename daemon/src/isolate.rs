//! Panics that end one unit of work, not the daemon.
//!
//! `shoald` aborts on a panic (systemd then restarts it whole): a panic in a task that
//! holds the node's state could leave it half-alive. A request or the start of one run
//! holds nothing the node needs afterwards, so it is polled through [`isolate`]: a panic
//! inside ends it with an error (a 500 for a request, a failed attempt for a run) and the
//! daemon runs on. The panic hook asks [`in_isolation`] whether the panic it sees is one
//! of those.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Poll;

thread_local! {
    /// How many isolated polls this thread is inside.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether this thread is polling an isolated future: a panic now ends that work alone.
pub fn in_isolation() -> bool {
    DEPTH.with(|depth| depth.get() > 0)
}

/// Runs `work` to its end, or to a panic inside it: `Err` with the panic's message then.
/// Work it spawned runs on its own (and is not isolated).
pub async fn isolate<F: Future>(work: F) -> Result<F::Output, String> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        DEPTH.with(|depth| depth.set(depth.get() + 1));
        let polled = catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx)));
        DEPTH.with(|depth| depth.set(depth.get() - 1));
        match polled {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(message(payload.as_ref()))),
        }
    })
    .await
}

/// What a panic said, as far as it was text.
fn message(payload: &(dyn Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(text), _) => text.to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_string(),
    }
}

/// The daemon's panic hook: a panic inside [`isolate`] is logged and ends that work; any
/// other aborts the process after `default_hook` has reported it.
pub fn install_panic_hook() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if in_isolation() {
            tracing::error!(panic = %info, "one request or run panicked: it ends with an error, the daemon runs on");
            return;
        }
        default_hook(info);
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_ends_the_work_with_its_message() {
        let ended = isolate(async {
            tokio::task::yield_now().await;
            assert!(in_isolation());
            panic!("no number")
        })
        .await;
        assert_eq!(ended, Err::<(), _>("no number".to_string()));
        assert!(!in_isolation(), "the scope ends with the work");
        assert_eq!(isolate(async { 7 }).await, Ok(7));
    }
}
