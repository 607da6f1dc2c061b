//! The real GPU source: NVIDIA's management library through `nvml-wrapper`, which loads
//! `libnvidia-ml.so` at run time, so `shoald` starts on machines without it. No driver
//! (or no permission to reach it) means no GPUs: one info line at start, and every read
//! answers none.

use nvml_wrapper::Nvml;
use shoal_protocol::Gpu;

use super::GpuSource;

/// NVML when the driver answered at start; nothing otherwise.
pub struct NvmlGpus {
    nvml: Option<Nvml>,
}

impl NvmlGpus {
    /// Loads NVML; a machine without the driver gets a source that reads no GPUs.
    pub fn open() -> Self {
        match Nvml::init() {
            Ok(nvml) => {
                tracing::info!("nvidia driver found: this machine publishes its gpus");
                NvmlGpus { nvml: Some(nvml) }
            }
            Err(err) => {
                tracing::info!(reason = %err, "no nvidia driver: this machine has no gpus to offer");
                NvmlGpus { nvml: None }
            }
        }
    }
}

impl GpuSource for NvmlGpus {
    fn read(&self) -> Result<Vec<Gpu>, String> {
        let Some(nvml) = &self.nvml else {
            return Ok(Vec::new());
        };
        let count = nvml
            .device_count()
            .map_err(|err| format!("counting gpus: {err}"))?;
        // Never more than a machine publishes, however many the driver claims.
        let count = count.min(shoal_protocol::gpus::MAX_GPUS as u32 + 1);
        (0..count).map(|index| read_one(nvml, index)).collect()
    }
}

/// GPU `index`: its facts, and its use (0 where the GPU does not report it).
fn read_one(nvml: &Nvml, index: u32) -> Result<Gpu, String> {
    let device = nvml
        .device_by_index(index)
        .map_err(|err| format!("gpu {index}: {err}"))?;
    let memory = device
        .memory_info()
        .map_err(|err| format!("gpu {index} memory: {err}"))?;
    const MIB: u64 = 1 << 20;
    Ok(Gpu {
        index,
        uuid: device.uuid().unwrap_or_default(),
        model: device.name().unwrap_or_else(|_| "unknown".to_string()),
        memory_mb: memory.total / MIB,
        memory_used_mb: memory.used / MIB,
        utilization_percent: device.utilization_rates().map(|u| u.gpu).unwrap_or(0),
    }
    .bounded())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without the driver (this one, and CI's) the source opens, reads no
    /// GPUs and fails nothing; on one with it, what it reads is bounded.
    #[test]
    fn without_a_driver_there_are_no_gpus_and_nothing_fails() {
        let source = NvmlGpus::open();
        let gpus = source.read();
        if source.nvml.is_none() {
            assert_eq!(gpus, Ok(Vec::new()));
        } else {
            let gpus = gpus.expect("a driver that answered at start reads its gpus");
            assert!(gpus.len() <= shoal_protocol::gpus::MAX_GPUS + 1);
        }
        let read = source.read().unwrap_or_default();
        let mut labels = shoal_protocol::Labels::new();
        super::super::add_labels(&mut labels, &read).unwrap();
        assert_eq!(labels.get("gpu").is_some(), !read.is_empty());
    }
}
