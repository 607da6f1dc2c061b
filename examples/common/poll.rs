//! Waiting for a condition in the benchmarks, with a deadline.

use std::time::{Duration, Instant};

/// Calls `check` every `every_ms` until it gives `Some`, failing after `timeout`.
pub async fn poll<T>(
    timeout: Duration,
    every_ms: u64,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        anyhow::ensure!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
}
