//! GPUs: what a machine publishes about each of its GPUs, and the one GPU fit check that
//! the leader's scheduler and the machine's runner share.
//!
//! ```text
//!  machine: GPU source (NVML) ─▶ MachineInfo.gpus (facts and live use) ─▶ gossip
//!  leader:  free = GPUs − those held by jobs placed there − reserved this pass
//!           fit(job.gpus, free)? ─▶ placed : waits, saying how many are free
//!  machine: free indices = GPUs − those its own runs hold
//!           pick(job.gpus, free indices) ─▶ the lowest n, handed to the container
//! ```

use serde::{Deserialize, Serialize};

/// Most GPUs a machine publishes; more are cut (the machine logs it).
pub const MAX_GPUS: usize = 16;
/// The range of a job's or template's `gpus`.
pub const GPUS_RANGE: std::ops::RangeInclusive<u32> = 1..=MAX_GPUS as u32;
/// Longest GPU model name or UUID kept, in bytes; longer ones are cut.
pub const MAX_GPU_TEXT: usize = 96;

/// One GPU of a machine: what it is, and how much of it is in use now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Gpu {
    /// The GPU's index on its machine, as the driver numbers it (`docker run --gpus` takes
    /// it as a device id).
    pub index: u32,
    /// The driver's UUID of the GPU (`GPU-...`).
    pub uuid: String,
    /// The model, e.g. `NVIDIA A100-SXM4-40GB`.
    pub model: String,
    /// Memory installed, in MiB.
    pub memory_mb: u64,
    /// Memory in use now, in MiB.
    #[serde(default)]
    pub memory_used_mb: u64,
    /// How busy the GPU was over the driver's last sample period, 0 to 100.
    #[serde(default)]
    pub utilization_percent: u32,
}

impl Gpu {
    /// The GPU with its text cut to [`MAX_GPU_TEXT`] and its use held to what can be.
    pub fn bounded(mut self) -> Gpu {
        cut(&mut self.uuid);
        cut(&mut self.model);
        self.memory_used_mb = self.memory_used_mb.min(self.memory_mb);
        self.utilization_percent = self.utilization_percent.min(100);
        self
    }

    /// The GPU without its live use: what the log keeps of it.
    pub fn fact(&self) -> Gpu {
        Gpu {
            memory_used_mb: 0,
            utilization_percent: 0,
            ..self.clone()
        }
    }
}

/// Cuts `text` to at most [`MAX_GPU_TEXT`] bytes, on a character boundary.
fn cut(text: &mut String) {
    if text.len() > MAX_GPU_TEXT {
        let mut end = MAX_GPU_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// Keeps at most [`MAX_GPUS`] GPUs, each bounded; says how many were cut.
pub fn bounded(gpus: Vec<Gpu>) -> (Vec<Gpu>, usize) {
    let cut = gpus.len().saturating_sub(MAX_GPUS);
    let kept = gpus.into_iter().take(MAX_GPUS).map(Gpu::bounded).collect();
    (kept, cut)
}

/// Checks a job's or template's `gpus`: 1 to [`MAX_GPUS`], for containers only.
pub fn check_gpus(gpus: Option<u32>, has_image: bool) -> Result<(), String> {
    let Some(n) = gpus else { return Ok(()) };
    if !GPUS_RANGE.contains(&n) {
        return Err(format!(
            "gpus must be between {} and {}, got {n}",
            GPUS_RANGE.start(),
            GPUS_RANGE.end()
        ));
    }
    if !has_image {
        return Err(
            "gpus are handed to a container: set image too (a process job gets none)".into(),
        );
    }
    Ok(())
}

/// The GPU fit check: whether `free` GPUs are enough for a job that asks for `want`
/// (none asked is always enough). The scheduler asks it of a machine's free count, and
/// the runner through [`pick`] of its free indices.
pub fn fits(want: Option<u32>, free: u32) -> bool {
    want.is_none_or(|n| n <= free)
}

/// The GPUs a run gets: the lowest `want` of the `free` indices, or why there are too
/// few. `None` asked gets none.
pub fn pick(want: Option<u32>, free: &[u32]) -> Result<Vec<u32>, String> {
    let Some(n) = want else {
        return Ok(Vec::new());
    };
    let count = u32::try_from(free.len()).unwrap_or(u32::MAX);
    if !fits(want, count) {
        return Err(format!(
            "this machine has {count} free GPU{} now, the job needs {n}",
            if count == 1 { "" } else { "s" }
        ));
    }
    let mut free = free.to_vec();
    free.sort_unstable();
    free.dedup();
    free.truncate(n as usize);
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32) -> Gpu {
        Gpu {
            index,
            uuid: format!("GPU-{index}"),
            model: "Test GPU".into(),
            memory_mb: 1000,
            ..Gpu::default()
        }
    }

    #[test]
    fn at_most_sixteen_gpus_are_kept_each_bounded() {
        let many: Vec<Gpu> = (0..20).map(gpu).collect();
        let (kept, cut) = bounded(many);
        assert_eq!((kept.len(), cut), (MAX_GPUS, 4));
        let odd = Gpu {
            model: "é".repeat(100),
            memory_used_mb: 5000,
            utilization_percent: 400,
            ..gpu(0)
        }
        .bounded();
        assert!(odd.model.len() <= MAX_GPU_TEXT);
        assert_eq!((odd.memory_used_mb, odd.utilization_percent), (1000, 100));
    }

    #[test]
    fn gpus_are_one_to_sixteen_for_containers() {
        assert_eq!(check_gpus(None, false), Ok(()));
        assert_eq!(check_gpus(Some(2), true), Ok(()));
        assert!(
            check_gpus(Some(0), true)
                .unwrap_err()
                .contains("between 1 and 16")
        );
        assert!(check_gpus(Some(17), true).unwrap_err().contains("got 17"));
        assert!(
            check_gpus(Some(1), false)
                .unwrap_err()
                .contains("set image too")
        );
    }

    #[test]
    fn a_run_gets_the_lowest_free_gpus_or_a_reason() {
        assert_eq!(pick(None, &[]), Ok(vec![]));
        assert_eq!(pick(Some(2), &[3, 1, 2]), Ok(vec![1, 2]));
        assert_eq!(
            pick(Some(2), &[1]),
            Err("this machine has 1 free GPU now, the job needs 2".into())
        );
        assert!(fits(Some(2), 2) && !fits(Some(2), 1) && fits(None, 0));
    }
}
