//! The two ends of one run: the caller's [`RunHandle`] (wait, cancel, read output) and the
//! executor's [`RunControl`] (hears cancels, writes output, reports the outcome).
//!
//! ```text
//!  RunHandle::cancel(grace) ──watch──▶ RunControl::cancelled() ─▶ executor stops the run
//!  RunHandle::restart(how)  ──watch──▶ RunControl::restarts()  ─▶ executor restarts it
//!  RunHandle::wait()        ◀─watch── RunControl::finish(outcome)
//!  RunHandle::output()      ◀─────── OutputWriter (RunControl::output)
//! ```
//!
//! Both ends are plain channels, so an executor is a task that owns the I/O and holds a
//! `RunControl`; the handle never touches a process or a socket.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Outcome;
use super::output::{Output, OutputWriter, output_channel};

/// The caller's end of a started run. Clones share the run.
#[derive(Clone)]
pub struct RunHandle {
    job: u64,
    attempt: u32,
    output: Output,
    outcome: watch::Receiver<Option<Outcome>>,
    cancel: Arc<watch::Sender<Option<Duration>>>,
    restarts: Arc<watch::Sender<Restarts>>,
}

/// How a run is restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Restart {
    /// The same process or container is started again (`docker restart`).
    #[default]
    InPlace,
    /// The container is made anew from its image reference, as it is on the machine now
    /// (after `batch update` pulled a newer one), with the same settings.
    OntoCurrentImage,
}

/// The restarts asked of a run: how many so far, and how many of them onto the current
/// image. A supervisor that sees more of those than it has done makes the container anew,
/// so a recreate is never lost to an in-place restart asked just after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    pub count: u32,
    pub onto_current_image: u32,
}

/// The executor's end of a run.
pub struct RunControl {
    /// Where the run's stdout and stderr go.
    pub output: OutputWriter,
    outcome: watch::Sender<Option<Outcome>>,
    cancel: watch::Receiver<Option<Duration>>,
    restarts: watch::Receiver<Restarts>,
}

/// A new run for attempt `attempt` of job `job`, keeping at most `output_limit` bytes of
/// output. Executors (and fakes in tests) call this and keep the [`RunControl`].
pub fn run_channel(job: u64, attempt: u32, output_limit: usize) -> (RunHandle, RunControl) {
    let (writer, output) = output_channel(output_limit);
    let (outcome_tx, outcome_rx) = watch::channel(None);
    let (cancel_tx, cancel_rx) = watch::channel(None);
    let (restart_tx, restart_rx) = watch::channel(Restarts::default());
    (
        RunHandle {
            job,
            attempt,
            output,
            outcome: outcome_rx,
            cancel: Arc::new(cancel_tx),
            restarts: Arc::new(restart_tx),
        },
        RunControl {
            output: writer,
            outcome: outcome_tx,
            cancel: cancel_rx,
            restarts: restart_rx,
        },
    )
}

impl RunHandle {
    pub fn job(&self) -> u64 {
        self.job
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run's output, readable and followable while it runs and after.
    pub fn output(&self) -> &Output {
        &self.output
    }

    /// The outcome if the run has ended, without waiting.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.borrow().clone()
    }

    /// Waits for the run to end. If the executor stops watching the run before it ends
    /// (its task panicked, or a Docker executor was dropped and left the container for
    /// adoption), this gives [`Outcome::Failed`] saying so.
    pub async fn wait(&self) -> Outcome {
        let mut outcome = self.outcome.clone();
        match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone().expect("waited for an outcome"),
            Err(_) => Outcome::Failed {
                error: "the executor stopped watching the run before it ended".into(),
            },
        }
    }

    /// Asks the executor to stop the run: SIGTERM (or `docker stop`), then SIGKILL once
    /// `grace` has passed. Returns at once; [`Self::wait`] then gives
    /// [`Outcome::Cancelled`]. A second cancel with a shorter grace shortens it if the
    /// executor has not acted yet; cancelling an ended run does nothing.
    pub fn cancel(&self, grace: Duration) {
        self.cancel.send_modify(|asked| {
            *asked = Some(asked.map_or(grace, |earlier| earlier.min(grace)));
        });
    }
}

impl RunHandle {
    /// Asks the executor to restart the run as `how` says: the same run goes on with its
    /// process started again. Executors that cannot restart ignore it.
    pub fn restart(&self, how: Restart) {
        self.restarts.send_modify(|restarts| {
            restarts.count = restarts.count.wrapping_add(1);
            if how == Restart::OntoCurrentImage {
                restarts.onto_current_image = restarts.onto_current_image.wrapping_add(1);
            }
        });
    }
}

impl RunControl {
    /// Changes each time a restart is asked.
    pub fn restarts(&self) -> watch::Receiver<Restarts> {
        self.restarts.clone()
    }

    /// Resolves with the grace once a cancel is asked; never, if every handle is dropped
    /// without asking.
    pub async fn cancelled(&mut self) -> Duration {
        let asked = self
            .cancel
            .wait_for(Option::is_some)
            .await
            .map(|grace| *grace);
        match asked {
            Ok(grace) => grace.expect("waited for a cancel"),
            Err(_) => std::future::pending().await,
        }
    }

    /// Ends the run: closes its output and wakes every waiter with `outcome`.
    pub fn finish(self, outcome: Outcome) {
        self.output.close();
        self.outcome.send_replace(Some(outcome));
    }
}

impl Drop for RunControl {
    /// An abandoned run's followers end rather than wait forever.
    fn drop(&mut self) {
        self.output.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::output::Stream;

    #[tokio::test]
    async fn wait_returns_the_outcome_to_every_clone() {
        let (handle, control) = run_channel(7, 2, 1024);
        let other = handle.clone();
        assert_eq!(handle.outcome(), None);
        control.output.push(Stream::Stdout, b"hi\n");
        control.finish(Outcome::Exited { exit_code: 3 });
        assert_eq!(handle.wait().await, Outcome::Exited { exit_code: 3 });
        assert_eq!(other.wait().await, Outcome::Exited { exit_code: 3 });
        let snap = other.output().snapshot();
        assert!(snap.closed, "finishing closes the output");
        assert_eq!(snap.text(), "hi\n");
        assert_eq!((handle.job(), handle.attempt()), (7, 2));
    }

    #[tokio::test]
    async fn cancel_reaches_the_executor_with_the_shortest_grace() {
        let (handle, mut control) = run_channel(1, 1, 1024);
        handle.cancel(Duration::from_secs(10));
        handle.cancel(Duration::from_secs(2));
        handle.cancel(Duration::from_secs(5));
        assert_eq!(control.cancelled().await, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn no_cancel_once_every_handle_is_gone() {
        let (handle, mut control) = run_channel(1, 1, 1024);
        drop(handle);
        let asked = tokio::time::timeout(Duration::from_secs(3600), control.cancelled()).await;
        assert!(asked.is_err(), "a dropped handle is not a cancel");
    }

    #[tokio::test]
    async fn a_run_abandoned_by_its_executor_reports_failed() {
        let (handle, control) = run_channel(1, 1, 1024);
        drop(control);
        assert!(handle.output().snapshot().closed);
        match handle.wait().await {
            Outcome::Failed { error } => assert!(error.contains("stopped watching"), "{error}"),
            other => panic!("expected Failed, got {other:?}"),
        }
    }
}
