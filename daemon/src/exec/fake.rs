//! An in-memory [`Executor`] for unit tests of code that dispatches runs: every start is
//! recorded with its [`RunControl`], and the test decides what the run writes and how it
//! ends. It touches no process and no engine.

use std::sync::{Arc, Mutex};

use super::{
    DEFAULT_OUTPUT_LIMIT, ExecError, Executor, RunControl, RunHandle, RunSpec, run_channel,
};

/// One run the fake was asked to start.
pub struct FakeRun {
    pub spec: RunSpec,
    /// Write output with `control.output.push`, end the run with `control.finish`, and see a
    /// cancel with `control.cancelled().await`.
    pub control: RunControl,
}

/// Records starts; refuses them while [`FakeExecutor::refuse`] is set.
#[derive(Clone, Default)]
pub struct FakeExecutor {
    started: Arc<Mutex<Vec<FakeRun>>>,
    refusal: Arc<Mutex<Option<String>>>,
}

impl FakeExecutor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the runs started since the last call, oldest first.
    pub fn take_started(&self) -> Vec<FakeRun> {
        std::mem::take(&mut *self.started.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes later starts fail with [`ExecError::DockerUnavailable`] carrying `reason`, or
    /// succeed again with `None`.
    pub fn refuse(&self, reason: Option<String>) {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = reason;
    }
}

#[async_trait::async_trait]
impl Executor for FakeExecutor {
    async fn start(&self, spec: RunSpec) -> Result<RunHandle, ExecError> {
        if let Some(reason) = self
            .refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(ExecError::DockerUnavailable(reason));
        }
        let (handle, control) = run_channel(spec.job, spec.attempt, DEFAULT_OUTPUT_LIMIT);
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(FakeRun { spec, control });
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::exec::{Outcome, Stream};

    #[tokio::test]
    async fn the_test_drives_each_run() {
        let fake = FakeExecutor::new();
        let executor: Arc<dyn Executor> = Arc::new(fake.clone());
        let spec = RunSpec {
            job: 4,
            attempt: 1,
            command: vec!["make".into()],
            ..RunSpec::default()
        };
        let handle = executor.start(spec.clone()).await.unwrap();
        let mut runs = fake.take_started();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].spec, spec);
        let run = runs.pop().unwrap();

        handle.cancel(Duration::from_secs(1));
        let mut control = run.control;
        assert_eq!(control.cancelled().await, Duration::from_secs(1));
        control.output.push(Stream::Stderr, b"terminated\n");
        control.finish(Outcome::Cancelled);
        assert_eq!(handle.wait().await, Outcome::Cancelled);
        assert_eq!(handle.output().snapshot().text(), "terminated\n");

        fake.refuse(Some("no engine".into()));
        assert!(matches!(
            executor.start(spec).await,
            Err(ExecError::DockerUnavailable(reason)) if reason == "no engine"
        ));
    }
}
