//! A GPU source for tests: it reports the GPUs a test gives it, and the test may change
//! them (their use, or fail the next reads) while the node runs. It touches no driver.

use std::sync::{Arc, Mutex};

use shoal_protocol::Gpu;

use super::GpuSource;

/// GPUs a test chose; clones share them.
#[derive(Debug, Clone)]
pub struct FakeGpus {
    state: Arc<Mutex<Result<Vec<Gpu>, String>>>,
}

impl FakeGpus {
    pub fn new(gpus: Vec<Gpu>) -> Self {
        FakeGpus {
            state: Arc::new(Mutex::new(Ok(gpus))),
        }
    }

    /// `n` GPUs of `model` with `memory_mb` each, numbered from 0.
    pub fn of(n: u32, model: &str, memory_mb: u64) -> Self {
        FakeGpus::new(
            (0..n)
                .map(|index| Gpu {
                    index,
                    uuid: format!("GPU-fake-{index}"),
                    model: model.to_string(),
                    memory_mb,
                    ..Gpu::default()
                })
                .collect(),
        )
    }

    /// Later reads give `gpus` (or fail with the error).
    pub fn set(&self, gpus: Result<Vec<Gpu>, String>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = gpus;
    }
}

impl GpuSource for FakeGpus {
    fn read(&self) -> Result<Vec<Gpu>, String> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
