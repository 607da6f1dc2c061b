//! Which of this machine's GPUs its runs hold, so two runs never get the same one. A run
//! takes its GPUs before it starts (the lowest free ones, through the same check the
//! scheduler made: [`shoal_protocol::gpus::pick`]) and gives them back when it ends or
//! fails to start.

use std::collections::HashMap;
use std::sync::Mutex;

use shoal_protocol::{Gpu, JobId};

/// GPU indices held, by attempt.
#[derive(Debug, Default)]
pub struct HeldGpus {
    runs: Mutex<HashMap<(JobId, u32), Vec<u32>>>,
}

impl HeldGpus {
    /// Takes `want` of `gpus` for the attempt (none when `None`), or says why it cannot:
    /// fewer are free than it needs.
    pub fn take(
        &self,
        job: JobId,
        attempt: u32,
        want: Option<u32>,
        gpus: &[Gpu],
    ) -> Result<Vec<u32>, String> {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let held: Vec<u32> = runs
            .iter()
            .filter(|(key, _)| **key != (job, attempt))
            .flat_map(|(_, indices)| indices.iter().copied())
            .collect();
        let free = super::free_indices(gpus, &held);
        let picked = shoal_protocol::gpus::pick(want, &free)?;
        if !picked.is_empty() {
            runs.insert((job, attempt), picked.clone());
        }
        Ok(picked)
    }

    /// Marks `indices` held by the attempt (a container adopted after a restart).
    pub fn hold(&self, job: JobId, attempt: u32, indices: Vec<u32>) {
        if !indices.is_empty() {
            let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            runs.insert((job, attempt), indices);
        }
    }

    /// Gives the attempt's GPUs back.
    pub fn release(&self, job: JobId, attempt: u32) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.remove(&(job, attempt));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpus(n: u32) -> Vec<Gpu> {
        (0..n)
            .map(|index| Gpu {
                index,
                ..Gpu::default()
            })
            .collect()
    }

    #[test]
    fn runs_take_the_lowest_free_gpus_and_give_them_back() {
        let held = HeldGpus::default();
        let all = gpus(3);
        assert_eq!(held.take(JobId(1), 1, Some(2), &all), Ok(vec![0, 1]));
        assert_eq!(
            held.take(JobId(2), 1, Some(2), &all),
            Err("this machine has 1 free GPU now, the job needs 2".into())
        );
        assert_eq!(held.take(JobId(3), 1, Some(1), &all), Ok(vec![2]));
        assert_eq!(held.take(JobId(4), 1, None, &all), Ok(vec![]));
        held.release(JobId(1), 1);
        assert_eq!(held.take(JobId(2), 1, Some(2), &all), Ok(vec![0, 1]));
    }

    #[test]
    fn an_adopted_run_holds_its_gpus() {
        let held = HeldGpus::default();
        held.hold(JobId(1), 1, vec![1]);
        assert_eq!(held.take(JobId(2), 1, Some(2), &gpus(3)), Ok(vec![0, 2]));
    }
}
