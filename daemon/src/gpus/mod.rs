//! This machine's GPUs: a small source trait (NVML, or a fake for tests), the labels a
//! machine with GPUs publishes, and the sampling that keeps `MachineInfo.gpus` live.
//!
//! ```text
//!  start:  source() ─▶ NVML (driver library loaded at run time) │ fake (tests)
//!          first read ─▶ labels gpu=true, gpu_count, gpu_model, gpu_memory_mb
//!  every sample_interval: read ─▶ bounded (16 at most) ─▶ MachineInfo.gpus ─▶ gossip
//!  a run's start: HeldGpus::take (lowest free) ─▶ RunSpec.gpus ─▶ DeviceRequest (handoff)
//! ```
//!
//! Without a driver the NVML source reads no GPUs: one info line at start, no labels,
//! nothing fails. Where work may go and which GPUs a run gets is decided by
//! [`shoal_protocol::gpus`] (the scheduler and the runner share it).

mod fake;
pub mod handoff;
mod held;
mod nvml;

use std::sync::Arc;

use shoal_protocol::{Gpu, LabelError, Labels};

pub use fake::FakeGpus;
pub use held::HeldGpus;
pub use nvml::NvmlGpus;

/// The label every machine with a GPU carries (`gpu=true`).
pub const GPU_LABEL: &str = "gpu";
/// How many GPUs the machine has.
pub const GPU_COUNT_LABEL: &str = "gpu_count";
/// The model of GPU 0, label-safe (spaces become '-').
pub const GPU_MODEL_LABEL: &str = "gpu_model";
/// The memory of GPU 0, in MiB.
pub const GPU_MEMORY_LABEL: &str = "gpu_memory_mb";

/// Where a machine learns about its GPUs.
pub trait GpuSource: Send + Sync {
    /// The GPUs now, with their use; an error when they could not be read this time.
    fn read(&self) -> Result<Vec<Gpu>, String>;
}

/// The source `config` asks for: the fake tests set, else NVML.
pub fn source(config: &crate::Config) -> Arc<dyn GpuSource> {
    match &config.fake_gpus {
        Some(fake) => Arc::new(fake.clone()),
        None => Arc::new(NvmlGpus::open()),
    }
}

/// Reads a GPU source for the sample loop: bounded to [`shoal_protocol::gpus::MAX_GPUS`],
/// and each problem logged once (not every sample) until it changes.
pub struct GpuSampler {
    source: Arc<dyn GpuSource>,
    last_error: Option<String>,
    said_cut: bool,
}

impl GpuSampler {
    pub fn new(source: Arc<dyn GpuSource>) -> Self {
        GpuSampler {
            source,
            last_error: None,
            said_cut: false,
        }
    }

    /// The GPUs now, or `None` when this read failed (their last reading stands).
    pub fn sample(&mut self) -> Option<Vec<Gpu>> {
        match self.source.read() {
            Ok(gpus) => {
                self.last_error = None;
                let (gpus, cut) = shoal_protocol::gpus::bounded(gpus);
                if cut > 0 && !self.said_cut {
                    tracing::warn!(
                        cut,
                        kept = gpus.len(),
                        "this machine has more gpus than a machine publishes: the rest are left out"
                    );
                }
                self.said_cut = cut > 0;
                Some(gpus)
            }
            Err(error) => {
                if self.last_error.as_ref() != Some(&error) {
                    tracing::warn!(%error, "reading the gpus failed: their last reading stands");
                    self.last_error = Some(error);
                }
                None
            }
        }
    }
}

/// Adds the GPU labels to `labels` when `gpus` has any: `gpu=true`, `gpu_count`, and
/// the model and memory of GPU 0. All of them or, when they do not fit, none.
pub fn add_labels(labels: &mut Labels, gpus: &[Gpu]) -> Result<(), LabelError> {
    let Some(first) = gpus.first() else {
        return Ok(());
    };
    let mut with = labels.clone();
    with.insert(GPU_LABEL, "true")?;
    with.insert(GPU_COUNT_LABEL, &gpus.len().to_string())?;
    with.insert(GPU_MODEL_LABEL, &label_safe(&first.model))?;
    with.insert(GPU_MEMORY_LABEL, &first.memory_mb.to_string())?;
    *labels = with;
    Ok(())
}

/// `model` as a label value: runs of spaces and other unprintable characters become one
/// '-', at most 128 bytes; `unknown` when nothing is left.
pub fn label_safe(model: &str) -> String {
    let mut out = String::new();
    for c in model.chars() {
        if c.is_ascii_graphic() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(shoal_protocol::labels::MAX_VALUE_LEN);
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "unknown".to_string()
    } else {
        out.to_string()
    }
}

/// The GPU indices of `gpus` that no run in `held` has.
pub fn free_indices(gpus: &[Gpu], held: &[u32]) -> Vec<u32> {
    gpus.iter()
        .map(|gpu| gpu.index)
        .filter(|index| !held.contains(index))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, model: &str, memory_mb: u64) -> Gpu {
        Gpu {
            index,
            uuid: format!("GPU-{index}"),
            model: model.into(),
            memory_mb,
            ..Gpu::default()
        }
    }

    #[test]
    fn a_machine_with_gpus_says_so_in_its_labels() {
        let mut labels = Labels::from_pairs(["zone=attic"]).unwrap();
        let gpus = [
            gpu(0, "NVIDIA A100-SXM4-40GB", 40960),
            gpu(1, "NVIDIA T4", 15360),
        ];
        add_labels(&mut labels, &gpus).unwrap();
        let pairs: Vec<(&str, &str)> = labels.iter().collect();
        assert_eq!(
            pairs,
            [
                ("gpu", "true"),
                ("gpu_count", "2"),
                ("gpu_memory_mb", "40960"),
                ("gpu_model", "NVIDIA-A100-SXM4-40GB"),
                ("zone", "attic"),
            ]
        );
    }

    #[test]
    fn gpu_labels_that_do_not_fit_are_all_left_out() {
        let many: Vec<String> = (0..shoal_protocol::labels::MAX_LABELS - 2)
            .map(|i| format!("k{i}=v"))
            .collect();
        let mut labels = Labels::from_pairs(many.iter().map(String::as_str)).unwrap();
        let before = labels.clone();
        assert!(add_labels(&mut labels, &[gpu(0, "a", 1)]).is_err());
        assert_eq!(labels, before);
    }

    #[test]
    fn a_machine_without_gpus_gets_no_gpu_label() {
        let mut labels = Labels::new();
        add_labels(&mut labels, &[]).unwrap();
        assert!(labels.is_empty());
    }

    #[test]
    fn a_model_name_becomes_a_label_value() {
        assert_eq!(label_safe("  Tesla  V100\tPCIe "), "Tesla-V100-PCIe");
        assert_eq!(label_safe("\u{1F600}"), "unknown");
        assert_eq!(label_safe(&"x".repeat(300)).len(), 128);
        let mut labels = Labels::new();
        assert!(add_labels(&mut labels, &[gpu(0, "é\u{0}ü long name", 1)]).is_ok());
    }

    #[test]
    fn free_gpus_are_those_no_run_holds() {
        let gpus = [gpu(0, "a", 1), gpu(1, "a", 1), gpu(2, "a", 1)];
        assert_eq!(free_indices(&gpus, &[1]), [0, 2]);
        assert_eq!(free_indices(&gpus, &[]), [0, 1, 2]);
    }

    #[test]
    fn too_many_gpus_are_cut_to_sixteen_and_a_failed_read_keeps_the_last() {
        let fake = FakeGpus::new((0..20).map(|i| gpu(i, "a", 1)).collect());
        let mut sampler = GpuSampler::new(Arc::new(fake.clone()));
        assert_eq!(sampler.sample().map(|gpus| gpus.len()), Some(16));
        fake.set(Err("the driver went away".into()));
        assert_eq!(sampler.sample(), None);
        assert_eq!(sampler.last_error.as_deref(), Some("the driver went away"));
    }
}
